"""Tests for segbook.models.unet: shapes, the three input policies, valid padding, overlap-tile inference."""
from __future__ import annotations

import pytest
import torch

from segbook.models.unet import (DoubleConv, UNet, UpBlock, center_crop, mirror_pad, predict_tiled, unet,
                                 unet_paper)
from segbook.nn.conv import ConvBNAct
from segbook.nn.upsample import UPSAMPLER_KINDS
from segbook.sizes import unet_trace


def small(**kw) -> UNet:
    torch.manual_seed(0)
    kw.setdefault("depth", 2)
    kw.setdefault("width", 4)
    return unet(**kw).eval()


@pytest.mark.parametrize("upsampling", UPSAMPLER_KINDS)
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_shapes_and_widths(depth, upsampling):
    net = small(depth=depth, upsampling=upsampling, num_classes=5)
    assert net.widths == [4 * 2 ** level for level in range(depth + 1)]
    with torch.no_grad():
        maps = net.features(torch.rand(2, 3, 32, 32))
    for level in range(depth):
        assert maps[f"enc{level}"].shape == (2, 4 * 2 ** level, 32 >> level, 32 >> level)
        assert maps[f"dec{level}"].shape == (2, 4 * 2 ** level, 32 >> level, 32 >> level)
    assert maps["bottom"].shape == (2, 4 * 2 ** depth, 32 >> depth, 32 >> depth)
    assert maps["logits"].shape == (2, 5, 32, 32)


class _HandWrittenUpBlock(torch.nn.Module):
    """UpBlock as it was before it used make_upsampler (the reference for the bitwise test below)."""

    def __init__(self, in_channels, skip_channels, out_channels, upsampling):
        super().__init__()
        self.upsampling = upsampling
        if upsampling == "transposed2":
            self.up = torch.nn.ConvTranspose2d(in_channels, in_channels // 2, kernel_size=2, stride=2)
        else:
            self.up = ConvBNAct(in_channels, in_channels // 2, 3, padding=1)
        self.convs = DoubleConv(skip_channels + in_channels // 2, out_channels)

    def forward(self, x, skip):
        if self.upsampling == "bilinear":
            x = torch.nn.functional.interpolate(x, size=(2 * x.shape[-2], 2 * x.shape[-1]), mode="bilinear",
                                                align_corners=False)
        return self.convs(torch.cat([skip, self.up(x)], dim=1))


@pytest.mark.parametrize("upsampling", ["transposed2", "bilinear"])
def test_up_block_through_make_upsampler_equals_the_hand_written_block(upsampling):
    """Same seed -> the same parameters (creation order and init), outputs and gradients, bit for bit."""
    blocks = []
    for cls in (_HandWrittenUpBlock, UpBlock):
        torch.manual_seed(3)
        blocks.append(cls(8, 4, 4, upsampling=upsampling) if cls is UpBlock else cls(8, 4, 4, upsampling))
    ref, new = blocks
    assert [t.shape for t in ref.state_dict().values()] == [t.shape for t in new.state_dict().values()]
    assert all(torch.equal(a, b) for a, b in zip(ref.state_dict().values(), new.state_dict().values()))
    x, skip = torch.rand(2, 8, 3, 5), torch.rand(2, 4, 6, 10)
    outs = []
    for block in (ref, new):
        out = block(x, skip)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        outs.append(out.detach())
    assert torch.equal(outs[0], outs[1])
    assert all(torch.equal(a.grad, b.grad) for a, b in zip(ref.parameters(), new.parameters()))


def test_up_block_resize_kinds_end_in_batch_norm_and_relu():
    assert isinstance(UpBlock(8, 4, 4, upsampling="transposed2").up, torch.nn.ConvTranspose2d)
    for kind in ("nearest", "bilinear"):
        up = UpBlock(8, 4, 4, upsampling=kind).up
        assert [type(m).__name__ for m in up] == ["ResizeConv2d", "BatchNorm2d", "ReLU"]
        assert up[0].mode == kind and up[0].conv.bias is None


def test_forward_is_encode_decode_resize_output():
    for policy, size in (("strict", (16, 16)), ("pad", (13, 9)), ("resize", (13, 9))):
        net = small(input_policy=policy)
        x = torch.rand(2, 3, *size)
        with torch.no_grad():
            out = net(x)
            assert torch.equal(out, net.resize_output(net.decode(net.encode(x)), x))
            assert out.shape[-2:] == size
            if policy == "strict":
                maps = net.features(x)
                assert torch.equal(out, maps["logits"])
                assert list(maps) == ["enc0", "enc1", "bottom", "dec1", "dec0", "logits"]
                assert list(net.contracting_path(x)) == ["enc0", "enc1", "bottom"]


def test_concatenated_skip_channels():
    block = UpBlock(16, 8, 8)
    assert block.convs.in_channels == 8 + 8        # skip channels + half the input channels
    out = block(torch.rand(2, 16, 4, 4), torch.rand(2, 8, 8, 8))
    assert out.shape == (2, 8, 8, 8)


def test_double_conv_valid_loses_four_pixels():
    assert DoubleConv(3, 4, padding="valid")(torch.rand(1, 3, 20, 17)).shape == (1, 4, 16, 13)
    assert DoubleConv(3, 4, padding="same")(torch.rand(1, 3, 20, 17)).shape == (1, 4, 20, 17)


def test_strict_names_nearest_valid_sizes():
    net = small(depth=3)
    with pytest.raises(ValueError, match=r"height 65 \(nearest that work: 64 or 72\)"):
        net(torch.rand(1, 3, 65, 64))
    assert net(torch.rand(1, 3, 72, 64)).shape == (1, 6, 72, 64)


def test_the_raw_mismatch_is_what_strict_prevents():
    """Without the check, a 7x7 input to a depth-1 net fails inside torch.cat (the 7 -> 3 -> 6 pitfall)."""
    net = small(depth=1)
    with pytest.raises(RuntimeError, match="Sizes of tensors must match"):
        net.features(torch.rand(1, 3, 7, 7))
    with pytest.raises(ValueError, match="nearest that work: 6 or 8"):
        net(torch.rand(1, 3, 7, 7))


@pytest.mark.parametrize("policy", ["pad", "resize"])
@pytest.mark.parametrize("hw", [(33, 47), (64, 64), (17, 90), (8, 9)])
def test_pad_and_resize_return_the_input_size(policy, hw):
    net = small(depth=3, input_policy=policy)
    with torch.no_grad():
        assert net(torch.rand(2, 3, *hw)).shape == (2, 6, *hw)


def test_policies_agree_on_valid_sizes():
    strict = small(depth=2)
    for policy in ("pad", "resize"):
        other = small(depth=2, input_policy=policy)
        other.load_state_dict(strict.state_dict())
        x = torch.rand(2, 3, 24, 40)
        with torch.no_grad():
            torch.testing.assert_close(other(x), strict(x))


def test_valid_padding_strict_and_pad():
    strict = small(depth=2, padding="valid")
    assert strict.context_margin == 20 and strict.min_input_size == 44
    x = torch.rand(1, 3, 60, 76)
    with torch.no_grad():
        out = strict(x)
    assert out.shape[-2:] == strict.output_size(60, 76) == (unet_trace(60, 2, "valid").output_size, 36)
    with pytest.raises(ValueError, match="nearest that work: 56 or 60"):
        strict(torch.rand(1, 3, 58, 60))
    padded = small(depth=2, padding="valid", input_policy="pad")
    padded.load_state_dict(strict.state_dict())
    with torch.no_grad():
        full = padded(x)
    assert full.shape[-2:] == (60, 76)
    m = strict.context_margin  # where the strict output is defined, 'pad' gives the same logits
    torch.testing.assert_close(full[..., m:60 - m, m:76 - m], out)
    with torch.no_grad():
        assert padded(torch.rand(1, 3, 9, 5)).shape[-2:] == (9, 5)


def test_valid_with_resize_is_refused():
    with pytest.raises(ValueError, match="resize.*same"):
        unet(padding="valid", input_policy="resize")


@pytest.mark.parametrize("kw,match", [({"depth": 0}, "depth"), ({"width": 0}, "width"),
                                      ({"padding": "full"}, "padding"), ({"upsampling": "transposed"}, "upsampling"),
                                      ({"input_policy": "crop"}, "input_policy")])
def test_bad_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        unet(**kw)


@pytest.mark.parametrize("kw", [{"num_classes": True}, {"width": 16.0}, {"depth": "3"}, {"in_channels": None}])
def test_arguments_of_the_wrong_type_raise_type_error(kw):
    with pytest.raises(TypeError, match=next(iter(kw))):
        unet(**kw)


def test_builders_are_keyword_only():
    with pytest.raises(TypeError):
        unet(6)
    with pytest.raises(TypeError):
        unet_paper(2)


def test_bad_inputs_get_clear_errors():
    net = small()
    with pytest.raises(ValueError, match="add a batch dimension"):
        net(torch.rand(3, 16, 16))
    with pytest.raises(ValueError, match="3 input channels"):
        net(torch.rand(1, 1, 16, 16))
    with pytest.raises(TypeError, match="float"):
        net(torch.zeros(1, 3, 16, 16, dtype=torch.uint8))


def test_paper_configuration_572_to_388():
    net = unet_paper()
    assert sum(p.numel() for p in net.parameters()) > 31_000_000   # about 31M, as in the paper
    assert net.widths == [64, 128, 256, 512, 1024] and net.context_margin == 92
    assert net.output_size(572, 572) == (388, 388)


def test_center_crop_and_mirror_pad():
    x = torch.arange(25.0).view(1, 1, 5, 5)
    assert center_crop(x, (3, 3)).flatten().tolist() == [6, 7, 8, 11, 12, 13, 16, 17, 18]
    with pytest.raises(ValueError, match="larger"):
        center_crop(x, (6, 5))
    row = torch.tensor([[[[0.0, 1.0, 2.0]]]])
    assert mirror_pad(row, 0, 0, 2, 5).flatten().tolist() == [2, 1, 0, 1, 2, 1, 0, 1, 2, 1]
    with pytest.raises(ValueError, match="one pixel"):
        mirror_pad(torch.rand(1, 1, 1, 4), 1, 0, 0, 0)


@pytest.mark.parametrize("padding,tile,margin", [("same", 32, 4), ("valid", 60, 20), ("valid", 64, 22)])
def test_predict_tiled_keeps_each_windows_centre(padding, tile, margin):
    net = small(depth=2, padding=padding)
    images = torch.rand(1, 3, 45, 70)
    out = predict_tiled(net, images, tile=tile, margin=margin)
    assert out.shape == (1, 6, 45, 70)
    # The first window covers mirrored rows/cols [-margin, tile - margin); its centre is image [0, step).
    step = tile - 2 * margin
    window = mirror_pad(images, margin, margin, margin, margin)[..., :tile, :tile]
    with torch.no_grad():
        expected = net(window)
    crop = margin - net.context_margin
    torch.testing.assert_close(out[..., :min(step, 45), :min(step, 70)],
                               expected[..., crop:crop + min(step, 45), crop:crop + min(step, 70)])


def test_predict_tiled_rejects_bad_tiles():
    net = small(depth=2, padding="valid")
    with pytest.raises(ValueError, match="context margin"):
        predict_tiled(net, torch.rand(1, 3, 50, 50), tile=60, margin=10)
    with pytest.raises(ValueError, match="not a size"):
        predict_tiled(net, torch.rand(1, 3, 50, 50), tile=62, margin=20)
    with pytest.raises(ValueError, match="strict"):
        predict_tiled(small(input_policy="pad"), torch.rand(1, 3, 50, 50), tile=32, margin=4)


def test_trains_one_step_and_batch_of_one_check():
    net = small(depth=2).train()
    x, y = torch.rand(2, 3, 16, 16), torch.randint(0, 6, (2, 16, 16))
    loss = torch.nn.functional.cross_entropy(net(x), y)
    loss.backward()
    assert all(p.grad is not None for p in net.parameters())
    with pytest.raises(ValueError, match="batch of one"):
        net(torch.rand(1, 3, 4, 4))


def test_golden_output():
    """A seeded small net's logits: an init or layout change shows up here first."""
    net = small(depth=2)
    torch.manual_seed(1)
    with torch.no_grad():
        out = net(torch.rand(1, 3, 16, 16))
    assert out.shape == (1, 6, 16, 16)
    assert abs(out.mean().item() - (-0.070100)) < 1e-4 and abs(out.abs().mean().item() - 0.293558) < 1e-4


def test_set_input_policy_switches_without_touching_weights():
    net = small(depth=2)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    assert net.set_input_policy("pad") is net and net.min_input_size == 2 and net.size_multiple == 1
    with torch.no_grad():
        assert net(torch.rand(1, 3, 13, 9)).shape[-2:] == (13, 9)
    net.set_input_policy("strict")
    assert net.size_multiple == 4
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    with pytest.raises(ValueError, match="input_policy"):
        net.set_input_policy("crop")


def test_predict_tiled_needs_a_batch_dimension():
    net = small(depth=2)
    with pytest.raises(ValueError, match=r"images must be a tensor \[N, C, H, W\], got shape \(3, 40, 40\).*x\.unsqueeze\(0\)"):
        predict_tiled(net, torch.rand(3, 40, 40), tile=32, margin=4)
    assert predict_tiled(net, torch.rand(3, 40, 40).unsqueeze(0), tile=32, margin=4).shape == (1, 6, 40, 40)


def test_width_names_the_first_level_and_state_dict_keys_are_stable():
    # `width` as in fcn8s / deeplabv3 / cifar_resnet (it was `base_width`); checkpoints keep their keys
    net = unet(num_classes=2, depth=1, width=2)
    assert net.width == 2 and net.widths == [2, 4]
    with pytest.raises(TypeError, match="base_width"):
        unet(num_classes=2, depth=1, base_width=2)
    convs = [f"{p}.{i}.0.weight" for p in ("encoder.0", "bottom") for i in (0, 1)]
    bn = [f"{p}.{i}.1.{n}" for p in ("encoder.0", "bottom") for i in (0, 1)
          for n in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]
    dec = ["decoder.0.up.weight", "decoder.0.up.bias"] + [
        f"decoder.0.convs.{i}.{j}" for i in (0, 1)
        for j in ("0.weight", "1.weight", "1.bias", "1.running_mean", "1.running_var", "1.num_batches_tracked")]
    assert sorted(net.state_dict()) == sorted(convs + bn + dec + ["head.weight", "head.bias"])
