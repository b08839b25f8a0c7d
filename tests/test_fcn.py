"""Tests for segbook.models.fcn: feature strides, any input size, summation skips, the three variants."""
import pytest
import torch

from segbook.analysis import count_params
from segbook.models.backbones import VGGBackbone
from segbook.models.fcn import FCN, MIN_INPUT_SIZE, FCNHead, ScoreLayer, _fcn, fcn8s, fcn16s, fcn32s, patch_classifier

SMALL = dict(num_classes=5, width=4, hidden=8)
BUILDERS = {"fcn32s": fcn32s, "fcn16s": fcn16s, "fcn8s": fcn8s}


def _randomise_skips(model):
    # The skip score layers start at zero (as in the paper); give them weights so skips matter.
    torch.manual_seed(5)
    with torch.no_grad():
        for layer in model.score_skips.values():
            layer.conv.weight.normal_(0, 0.5)
            layer.conv.bias.normal_(0, 0.5)
    return model


@pytest.mark.parametrize("name", list(BUILDERS))
@pytest.mark.parametrize("hw", [(32, 32), (64, 64), (50, 70), (33, 47), (96, 40), (63, 65), (100, 37)])
def test_output_matches_input_size(name, hw):
    model = _randomise_skips(BUILDERS[name](**SMALL)).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, *hw))
    assert out.shape == (2, 5, *hw)
    assert torch.isfinite(out).all()


def test_train_mode_and_backward_on_odd_size():
    model = fcn8s(**SMALL).train()
    x = torch.rand(2, 3, 50, 70)
    out = model(x)
    torch.nn.functional.cross_entropy(out, torch.randint(0, 5, (2, 50, 70))).backward()
    assert model.score_skips["pool3"].conv.weight.grad.abs().sum() > 0
    assert model.backbone.stages["pool1"][0][0].weight.grad.abs().sum() > 0


def test_variants_differ_only_in_skips():
    torch.manual_seed(0)
    models = {name: b(**SMALL) for name, b in BUILDERS.items()}
    keys = {name: set(m.state_dict()) for name, m in models.items()}
    extra16 = keys["fcn16s"] - keys["fcn32s"]
    extra8 = keys["fcn8s"] - keys["fcn16s"]
    assert keys["fcn32s"] <= keys["fcn16s"] <= keys["fcn8s"]
    assert extra16 and all(k.startswith(("score_skips.pool4", "upsample_skips.pool4")) for k in extra16)
    assert extra8 and all(k.startswith(("score_skips.pool3", "upsample_skips.pool3")) for k in extra8)
    # the shared layers have the same shapes, so weights move between variants
    missing, unexpected = models["fcn8s"].load_state_dict(models["fcn32s"].state_dict(), strict=False)
    assert not unexpected and set(missing) == extra16 | extra8
    # parameter counts differ by exactly the skip layers: score (C*K + K) and 2x upsampling (K*K*4*4)
    k = 5
    p = {name: count_params(m) for name, m in models.items()}
    assert p["fcn16s"] - p["fcn32s"] == 32 * k + k + k * k * 16
    assert p["fcn8s"] - p["fcn16s"] == 16 * k + k + k * k * 16
    assert [m.output_stride for m in models.values()] == [32, 16, 8]
    assert [m.variant for m in models.values()] == ["fcn32s", "fcn16s", "fcn8s"]


def test_zero_initialised_skips_start_as_the_coarser_net():
    # With zero skip scores and bilinear 2x upsampling, FCN-8s's stride-8 map is the FCN-32s score
    # map upsampled 4x by two bilinear steps: no skip information enters.
    torch.manual_seed(0)
    m8 = fcn8s(**SMALL).eval()
    maps = m8.score_maps(torch.rand(1, 3, 64, 64))
    assert torch.equal(maps["fuse_pool4"], maps["up_pool4"])
    assert torch.equal(maps["fuse_pool3"], maps["up_pool3"])


def test_fusion_is_a_sum():
    model = _randomise_skips(fcn8s(**SMALL)).eval()
    with torch.no_grad():
        maps = model.score_maps(torch.rand(2, 3, 50, 70))
    for name, stride in (("pool4", 16), ("pool3", 8)):
        fused = maps[f"fuse_{name}"]
        assert fused.shape == (2, 5, -(-50 // stride), -(-70 // stride))  # K channels: not a concatenation
        torch.testing.assert_close(fused, maps[f"up_{name}"] + maps[f"score_{name}"])
        assert maps[f"score_{name}"].abs().max() > 0.1


def test_zeroing_a_skip_score_removes_its_contribution():
    torch.manual_seed(0)
    model = _randomise_skips(fcn8s(**SMALL)).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        before = model.score_maps(x)
        model.score_skips["pool3"].conv.weight.zero_()
        model.score_skips["pool3"].conv.bias.zero_()
        after = model.score_maps(x)
    # the pool4 path is untouched, the pool3 term is gone: the stride-8 map is the upsampled stride-16 map
    torch.testing.assert_close(after["fuse_pool4"], before["fuse_pool4"])
    torch.testing.assert_close(after["fuse_pool3"], after["up_pool3"])
    torch.testing.assert_close(after["fuse_pool3"], before["fuse_pool3"] - before["score_pool3"], atol=1e-5, rtol=1e-5)
    assert (after["out"] - before["out"]).abs().max() > 1e-3  # the skip did contribute before


def test_output_is_the_upsampled_finest_map():
    model = _randomise_skips(fcn8s(**SMALL)).eval()
    with torch.no_grad():
        maps = model.score_maps(torch.rand(1, 3, 64, 64))
    ref = torch.nn.functional.interpolate(maps["fuse_pool3"], size=(64, 64), mode="bilinear", align_corners=False)
    torch.testing.assert_close(maps["out"], ref)


def test_learned_upsampling_starts_bilinear_and_can_be_frozen():
    from segbook.nn.upsample import bilinear_kernel

    model = fcn16s(**SMALL)
    up = model.upsample_skips["pool4"]
    torch.testing.assert_close(up.weight.detach(), bilinear_kernel(5, 4))
    assert up.weight.requires_grad
    frozen = fcn16s(**SMALL, learnable_upsample=False)
    assert not frozen.upsample_skips["pool4"].weight.requires_grad


def test_heads_are_sequentials():
    head = FCNHead(32, 16, 6)
    assert isinstance(head, torch.nn.Sequential) and list(dict(head.named_children())) == [
        "fc6", "drop6", "fc7", "drop7", "score_fr"]
    assert head(torch.rand(1, 32, 3, 5)).shape == (1, 6, 3, 5)
    score = ScoreLayer(8, 6)
    assert isinstance(score, torch.nn.Sequential) and score.conv.weight.abs().sum() == 0
    assert ScoreLayer(8, 6, zero_init=False).conv.weight.abs().sum() > 0


def test_input_errors():
    model = fcn8s(**SMALL).eval()
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        model(torch.rand(3, 64, 64))
    with pytest.raises(TypeError, match="float"):
        model(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))
    with pytest.raises(ValueError, match="3 input channels, got 1"):
        model(torch.rand(1, 1, 64, 64))
    with pytest.raises(ValueError, match=f"at least {MIN_INPUT_SIZE}; got height 31 \\(nearest that work: {MIN_INPUT_SIZE}\\)"):
        model(torch.rand(1, 3, 31, 64))
    with pytest.raises(TypeError):
        model([torch.rand(1, 3, 64, 64)])


def test_batch_of_one_in_training_gives_a_clear_error():
    model = fcn8s(num_classes=3, width=4).train()
    with pytest.raises(ValueError, match="batch of one 32x32 image"):
        model(torch.rand(1, 3, 32, 32))
    assert model.eval()(torch.rand(1, 3, 32, 32)).shape == (1, 3, 32, 32)
    assert model.train()(torch.rand(2, 3, 32, 32)).shape == (2, 3, 32, 32)


def test_constructor_errors():
    bb = VGGBackbone(widths=(4, 8, 16, 32, 32))
    with pytest.raises(ValueError, match="skips"):
        FCN(bb, 5, skips=("pool3",))
    with pytest.raises(ValueError, match="skips"):
        FCN(bb, 5, skips=("pool3", "pool4"))
    with pytest.raises(ValueError, match="num_classes"):
        FCN(bb, 0)
    with pytest.raises(TypeError):
        fcn8s(5)  # keyword-only


def test_patch_classifier_shapes():
    clf = patch_classifier(num_classes=6, width=8).eval()
    assert clf(torch.rand(3, 3, 16, 16)).shape == (3, 6)


@pytest.mark.parametrize("name", list(BUILDERS))
def test_forward_is_score_maps_out_and_encode_decode_resize(name):
    model = _randomise_skips(BUILDERS[name](**SMALL)).eval()
    x = torch.rand(2, 3, 45, 67)
    with torch.no_grad():
        out, maps = model(x), model.score_maps(x)
        assert torch.equal(out, maps["out"])
        coarse = model.decode(model.encode(x))
        assert torch.equal(coarse, list(maps.values())[-2]) and coarse.shape[-1] == -(-67 // model.output_stride)
        assert torch.equal(out, model.resize_output(coarse, x))


@pytest.mark.parametrize("kw,err", [
    ({"width": 4.0}, TypeError), ({"hidden": 8.0}, TypeError), ({"hidden": 0}, ValueError),
    ({"dropout": "0.1"}, TypeError), ({"dropout": 2.0}, ValueError), ({"learnable_upsample": 1}, TypeError),
    ({"num_classes": 5.0}, TypeError),
])
def test_builder_arguments_are_checked(kw, err):
    with pytest.raises(err, match=next(iter(kw))):
        fcn8s(**{**SMALL, **kw})


def test_fcn_builder_is_keyword_only():
    with pytest.raises(TypeError):
        _fcn((), 5, 3, 4, (1, 1, 2, 2, 2), 8, 0.1, True)  # noqa
    model = _fcn(skips=("pool4",), num_classes=5, in_channels=3, width=4, depths=(1, 1, 2, 2, 2), hidden=None,
                 dropout=0.1, learnable_upsample=False)
    assert model.variant == "fcn16s" and model.head.fc6[0].out_channels == 32
    assert not model.upsample_skips["pool4"].weight.requires_grad
