"""Tests for segbook.experiments.upsampling (chapter 3's decoders, SR nets and training loop)."""
import copy

import matplotlib

matplotlib.use("Agg")
import pytest
import torch
import torch.nn.functional as F

from segbook.checkerboard import checkerboard_score
from segbook.experiments.upsampling import (
    DOWNSAMPLERS, Autoencoder, DownsamplingEncoder, PermutationBatches, SuperResolutionNet, UpsamplingDecoder,
    downsample_pairs, evaluate_regression, flat_images, input_gradient, interior, mse_loss,
    scene_images, train_regression,
)
from segbook.nn.upsample import UPSAMPLERS


@pytest.mark.parametrize("kind", UPSAMPLERS)
def test_shapes(kind):
    torch.manual_seed(0)
    assert UpsamplingDecoder(kind, in_channels=4, width=6, out_channels=2, num_upsamples=3)(torch.randn(1, 4, 3, 5)).shape == (1, 2, 24, 40)
    assert SuperResolutionNet(kind, width=8)(torch.rand(2, 3, 8, 6)).shape == (2, 3, 16, 12)
    assert SuperResolutionNet(kind, width=8, num_upsamples=2, final_conv=False, residual=True)(torch.rand(1, 3, 4, 4)).shape == (1, 3, 16, 16)
    assert Autoencoder(kind, width=8, num_stages=2)(torch.rand(2, 3, 12, 8)).shape == (2, 3, 12, 8)


def test_random_init_decoder_on_a_constant_input():
    # transposed convs print a grid on a flat input; resize-convs stay flat away from the border
    scores = {}
    for kind in UPSAMPLERS:
        torch.manual_seed(0)
        with torch.no_grad():
            out = UpsamplingDecoder(kind, in_channels=4, width=8, num_upsamples=3)(torch.ones(1, 4, 8, 8))
        scores[kind] = checkerboard_score(interior(out, 16), 8).item()
    assert scores["transposed3"] > 0.5 and scores["transposed4"] > 0.5
    assert scores["nearest"] < 1e-6 and scores["bilinear"] < 1e-6


def test_input_gradient_of_strided_convs_is_periodic():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 64, 64)
    scores = {}
    for kind in DOWNSAMPLERS:
        torch.manual_seed(1)
        g = input_gradient(DownsamplingEncoder(kind, width=8), x)
        assert g.shape == (2, 64, 64)
        scores[kind] = checkerboard_score(interior(g, 16), 8).mean().item()
    assert scores["strided3"] > 5 * scores["conv+avgpool"]
    with pytest.raises(ValueError, match="unknown downsampler"):
        DownsamplingEncoder("maxpool")


def test_downsample_pairs_and_flat_images():
    x = torch.rand(3, 3, 8, 8)
    low, high = downsample_pairs(x)
    assert low.shape == (3, 3, 4, 4) and high is x
    torch.testing.assert_close(low[0, 0, 0, 0], x[0, 0, :2, :2].mean())
    with pytest.raises(ValueError, match="multiples"):
        downsample_pairs(torch.rand(1, 3, 7, 8))
    f = flat_images(5, 6, seed=1)
    assert f.shape == (5, 3, 6, 6) and (f.amax((-2, -1)) == f.amin((-2, -1))).all()
    assert ((f >= 0.1) & (f <= 0.9)).all()
    assert torch.equal(f, flat_images(5, 6, seed=1)) and not torch.equal(f, flat_images(5, 6, seed=2))
    with pytest.raises(ValueError, match="margin"):
        interior(torch.rand(4, 4), 2)


def test_scene_images_from_a_dataset_without_tensors():
    class Items:
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return torch.full((3, 4, 4), float(i)), torch.zeros(4, 4, dtype=torch.long)

    imgs = scene_images(Items())
    assert imgs.shape == (3, 3, 4, 4) and imgs[2].max() == 2


def test_train_regression_learns_and_is_reproducible():
    gen = torch.Generator().manual_seed(0)
    high = F.interpolate(torch.rand(64, 3, 4, 4, generator=gen), size=(8, 8), mode="bilinear", align_corners=False)
    low, _ = downsample_pairs(high)
    results = []
    for _ in range(2):
        torch.manual_seed(0)
        model = SuperResolutionNet("nearest", width=8)
        before = evaluate_regression(model, low, high)["mse"]
        hist = train_regression(model, low, high, steps=60, batch_size=16, lr=5e-3, seed=3)
        after = evaluate_regression(model, low, high)
        results.append(after["mse"])
        assert len(hist.step_loss) == 60 and hist.total_seconds > 0 and hist.task == "regression"
        assert after["mse"] < 0.5 * before
        assert after["outputs"].shape == high.shape and 0 <= after["checkerboard"] <= 1
    assert results[0] == results[1]
    with pytest.raises(ValueError, match="length"):
        train_regression(model, low[:3], high, steps=1)
    with pytest.raises(ValueError, match="steps"):
        train_regression(model, low, high, steps=0)


def _reference_regression_loop(model, inputs, targets, *, steps, batch_size, lr, seed):
    """The loop train_regression was before it became a fit call (kept here as the reference)."""
    import math

    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5 * (1 + math.cos(math.pi * t / steps)))
    gen = torch.Generator().manual_seed(seed)
    n = inputs.shape[0]
    order, pos, losses = torch.randperm(n, generator=gen), 0, []
    model.train()
    for _ in range(steps):
        if pos + batch_size > n:
            order, pos = torch.randperm(n, generator=gen), 0
        idx = order[pos: pos + batch_size]
        pos += batch_size
        loss = F.mse_loss(model(inputs[idx]).float(), targets[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    model.eval()
    return losses


@pytest.mark.parametrize("kind", ["transposed4", "bilinear"])
def test_train_regression_is_fit_with_the_old_loops_numbers_bitwise(kind):
    """fit(task="regression", optimizer="adam", cosine per step, PermutationBatches) == the former hand loop,
    bit for bit, over several fresh permutations (52 samples, batches of 16: a new permutation every 3 steps)."""
    gen = torch.Generator().manual_seed(1)
    high = F.interpolate(torch.rand(52, 3, 4, 4, generator=gen), size=(8, 8), mode="bilinear", align_corners=False)
    low, _ = downsample_pairs(high)
    torch.manual_seed(2)
    model = SuperResolutionNet(kind, width=8, final_conv=False, residual=True)
    ref = copy.deepcopy(model)
    rng = torch.get_rng_state()
    hist = train_regression(model, low, high, steps=20, batch_size=16, lr=4e-3, seed=5)
    assert torch.equal(torch.get_rng_state(), rng)  # the global random state is left alone
    want = _reference_regression_loop(ref, low, high, steps=20, batch_size=16, lr=4e-3, seed=5)
    assert hist.step_loss == want
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), ref.state_dict().values()))


def test_permutation_batches_draw_without_replacement_and_repeat():
    x, y = torch.arange(10).float().view(10, 1), torch.arange(10)
    batches = PermutationBatches(x, y, batch_size=4, steps=5, seed=3)
    assert len(batches) == 5
    got = [b for b in batches]
    assert len(got) == 5 and all(xb.shape == (4, 1) and torch.equal(xb[:, 0].long(), yb) for xb, yb in got)
    # 10 samples, batches of 4: two batches per permutation (8 distinct samples), then a fresh one
    first = torch.cat([got[0][1], got[1][1]])
    assert len(set(first.tolist())) == 8
    gen = torch.Generator().manual_seed(3)
    perm = torch.randperm(10, generator=gen)
    assert torch.equal(first, perm[:8]) and torch.equal(got[2][1], torch.randperm(10, generator=gen)[:4])
    assert all(torch.equal(a[1], b[1]) for a, b in zip(got, batches))  # every iteration starts from the seed
    with pytest.raises(ValueError, match="differ in length"):
        PermutationBatches(x, y[:3], batch_size=4, steps=1)
    with pytest.raises(ValueError, match="batch_size"):
        PermutationBatches(x, y, batch_size=0, steps=1)


def test_mse_loss_is_float32_mse():
    out, target = torch.rand(2, 3, dtype=torch.bfloat16), torch.rand(2, 3)
    loss = mse_loss(out, target)
    assert loss.dtype == torch.float32 and torch.equal(loss, F.mse_loss(out.float(), target))


def test_input_errors():
    with pytest.raises(ValueError, match=r"\[N, 3, h, w\]"):
        SuperResolutionNet("nearest")(torch.rand(1, 1, 4, 4))
    with pytest.raises(ValueError, match="multiples of 8"):
        Autoencoder("nearest", width=4)(torch.rand(1, 3, 12, 12))
    with pytest.raises(ValueError, match="num_upsamples"):
        UpsamplingDecoder("nearest", num_upsamples=0)


@pytest.mark.parametrize("kind,init", [("transposed3", None), ("transposed4", "bilinear"), ("nearest", None),
                                       ("pixelshuffle", "icnr")])
def test_segmentation_decoder_net_shapes_and_flat_start(kind, init):
    from segbook.experiments.upsampling import SegmentationDecoderNet

    torch.manual_seed(0)
    net = SegmentationDecoderNet(kind, 6, width=8, init=init).eval()
    assert net(torch.rand(2, 3, 16, 16)).shape == (2, 6, 16, 16)
    if init is not None or kind == "nearest":                  # these start without a grid: flat in, flat out
        out = net(torch.full((1, 3, 64, 64), 0.5))[..., 16:-16, 16:-16]   # beyond the border's reach
        assert (out - out.mean((-2, -1), keepdim=True)).abs().max().item() < 1e-5
    with pytest.raises(ValueError, match="multiples of 4"):
        net(torch.rand(1, 3, 10, 10))


def test_interior_mask_and_segmentation_grid():
    from segbook.experiments.upsampling import SegmentationDecoderNet, interior_mask, segmentation_grid

    masks = torch.zeros(1, 12, 12, dtype=torch.long)
    masks[0, 2:10, 2:10] = 3
    inner = interior_mask(masks, 2)
    assert inner.sum().item() == 16 and inner[0, 4:8, 4:8].all()
    assert interior_mask(masks, 2, foreground_only=False)[0, 0].sum() == 0     # the image border is excluded
    torch.manual_seed(1)
    net = SegmentationDecoderNet("transposed3", 4, width=8)
    m = torch.zeros(3, 16, 16, dtype=torch.long)
    m[:, 3:13, 3:13] = 1
    g = segmentation_grid(net, torch.rand(3, 3, 16, 16), m)
    assert set(g) == {"logit_grid", "margin", "interior_error", "label_grid", "interior_pixels"}
    assert g["interior_pixels"] == 3 * 36 and 0 <= g["interior_error"] <= 1 and g["logit_grid"] >= 0


def test_output_padding_table_two_sizes_one_output():
    from segbook.experiments.upsampling import output_padding_table

    rows = output_padding_table([5, 6])
    assert [r["conv output h"] for r in rows] == [3, 3]
    assert [r["output_padding for H"] for r in rows] == [0, 1]
    assert rows[0]["transposed, output_padding=0"] == 5 and rows[1]["transposed, output_padding=1"] == 6


def test_foreground_labels_merges_object_classes():
    from segbook.experiments.upsampling import foreground_labels

    img, mask = torch.rand(3, 4, 4), torch.tensor([[0, 1, 2, 5]] * 4)
    out_img, out_mask = foreground_labels(img, mask)
    assert out_img is img and out_mask.tolist() == [[0, 1, 1, 1]] * 4 and out_mask.dtype == torch.long


# ----------------------------------------------------------------------------------------------
# The chapter's studies (one call each)
# ----------------------------------------------------------------------------------------------
def test_scatter_agreement_matches_torch_on_every_setting():
    from segbook.experiments.upsampling import scatter_agreement

    check = scatter_agreement(seed=0)
    assert len(check.settings) == 163       # the chapter's grid: the settings torch accepts
    assert all(op < max(s, d) for _, s, _, op, d in check.settings)
    assert check.sizes_ok and check.max_error < 1e-10
    small = scatter_agreement(seed=1, kernel_sizes=(3,), strides=(2,), paddings=(1,), output_paddings=(0, 1),
                              dilations=(1,))
    assert small.settings == [(3, 2, 1, 0, 1), (3, 2, 1, 1, 1)] and small.max_error < 1e-10
    assert scatter_agreement(seed=2).settings == check.settings   # the grid does not depend on the seed
    with pytest.raises(ValueError, match="no valid"):
        scatter_agreement(seed=0, strides=(1,), output_paddings=(1,), dilations=(1,))


def test_init_checkerboards_flat_for_resize_conv_grid_for_transposed():
    from segbook.experiments.upsampling import init_checkerboards

    variants = {"transposed3": ("transposed3", None), "nearest": ("nearest", None),
                "bilinear_t4": ("transposed4", "bilinear")}
    study = init_checkerboards(variants, seed=1, in_channels=4, width=8)
    assert set(study.outputs) == set(variants) and study.outputs["nearest"].shape == (64, 64)
    assert study.score["transposed3"] > 0.5 and study.relative["transposed3"] > 0.05
    assert study.score["nearest"] < 0.01 and study.score["bilinear_t4"] < 0.01
    again = init_checkerboards({"transposed3": ("transposed3", None)}, seed=1, in_channels=4, width=8)
    assert torch.equal(again.outputs["transposed3"], study.outputs["transposed3"])   # the seed, per variant
    with pytest.raises(ValueError, match="at least one"):
        init_checkerboards({}, seed=0)


def test_gradient_checkerboards_strided_vs_avgpool():
    from segbook.experiments.upsampling import gradient_checkerboards

    torch.manual_seed(0)
    images = torch.rand(2, 3, 64, 64)
    study = gradient_checkerboards(images, seed=1, width=8)
    assert set(study.maps) == set(DOWNSAMPLERS) and study.maps["strided3"].shape == (64, 64)
    assert study.score["strided3"] > 5 * study.score["conv+avgpool"]
    # the same as building the encoder after manual_seed(seed) by hand
    torch.manual_seed(1)
    g = input_gradient(DownsamplingEncoder("strided4", width=8), images)
    torch.testing.assert_close(study.maps["strided4"], g[0], rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        gradient_checkerboards(images[0], seed=0)


def test_flat_amplitude_in_grey_levels():
    from segbook.experiments.upsampling import flat_amplitude

    flat = torch.full((2, 3, 24, 24), 0.5)
    assert flat_amplitude(flat) == 0.0
    sign = (-1.0) ** (torch.arange(24).view(-1, 1) + torch.arange(24).view(1, -1))
    checker = flat + 0.01 * sign
    assert flat_amplitude(checker) == pytest.approx(0.01 * 255, rel=1e-4)
    assert flat_amplitude(checker, grey=1.0, margin=2) == pytest.approx(0.01, rel=1e-4)


def test_sr_pairs_shapes_and_seeds():
    from segbook.data import ShapesSegmentation
    from segbook.experiments.upsampling import sr_pairs

    (low, high), (v_low, v_high) = sr_pairs(3, n_train=4, n_val=2, size=32)
    assert low.shape == (4, 3, 16, 16) and high.shape == (4, 3, 32, 32) and v_low.shape == (2, 3, 16, 16)
    assert torch.equal(v_high, scene_images(ShapesSegmentation(2, size=32, seed=4)))   # validation: seed + 1
    with pytest.raises(ValueError, match="n_val"):
        sr_pairs(0, n_train=4, n_val=0, size=32)


def _tiny_sr_study(seeds=(0, 1)):
    from segbook.experiments.upsampling import sr_pairs, train_super_resolution

    pairs = {s: sr_pairs(s, n_train=16, n_val=4, size=32) for s in seeds}
    flats = {s: flat_images(4, 16, seed=s + 5) for s in seeds}
    runs = train_super_resolution(pairs, flats, kinds=("transposed3", "nearest"), width=4, steps=3, batch_size=4)
    return pairs, flats, runs


def test_train_super_resolution_matches_the_loop_it_replaces():
    from segbook.experiments.upsampling import flat_amplitude

    pairs, flats, runs = _tiny_sr_study()
    assert list(runs) == ["transposed3", "nearest"] and [r["seed"] for r in runs["nearest"]] == [0, 1]
    run = runs["transposed3"][1]
    assert set(run) == {"seed", "model", "hist", "flat_amp_init", "val"} and len(run["hist"].step_loss) == 3
    # by hand: manual_seed(s + 2), the init amplitude, train_regression(seed=s + 2), evaluate_regression
    (low, high), (v_low, v_high) = pairs[1]
    torch.manual_seed(3)
    model = SuperResolutionNet("transposed3", width=4, final_conv=False, residual=True)
    with torch.no_grad():
        assert flat_amplitude(model(flats[1])) == run["flat_amp_init"] > 0
    hist = train_regression(model, low, high, steps=3, batch_size=4, lr=4e-3, seed=3)
    assert hist.step_loss == run["hist"].step_loss
    assert evaluate_regression(model, v_low, v_high)["mse"] == run["val"]["mse"]
    with pytest.raises(ValueError, match="flats has no images"):
        from segbook.experiments.upsampling import train_super_resolution
        train_super_resolution(pairs, {0: flats[0]}, steps=1)


def test_interpolation_baseline_flat_responses_and_table():
    from segbook.experiments.upsampling import add_flat_responses, interpolation_baseline, super_resolution_table

    pairs, flats, runs = _tiny_sr_study()
    with pytest.raises(ValueError, match="add_flat_responses"):
        super_resolution_table(runs, [])
    base = interpolation_baseline(pairs, flats)
    assert len(base) == 2 and set(base[0]) == {"mse", "checkerboard", "flat_amp", "target"}
    assert base[0]["flat_amp"] < 1e-3 and base[0]["mse"] > 0        # interpolating a constant gives it back
    _, (v_low, v_high) = pairs[1]
    up = F.interpolate(v_low, size=v_high.shape[-2:], mode="bilinear", align_corners=False)
    assert base[1]["mse"] == F.mse_loss(up, v_high).item()
    assert add_flat_responses(runs, flats) is runs
    assert runs["nearest"][0]["flat"].shape == (4, 3, 32, 32)
    assert runs["nearest"][0]["flat_amp"] < 1e-3                     # resize-conv: flat by construction
    from segbook.experiments.upsampling import flat_amplitude
    with torch.inference_mode():
        by_hand = flat_amplitude(runs["transposed3"][1]["model"](flats[1]))   # each run on its own seed's flats
    assert runs["transposed3"][1]["flat_amp"] == by_hand
    table = super_resolution_table(runs, base)
    assert [r["upsampler"] for r in table] == ["bilinear interpolation (no net)", "transposed k3 s2",
                                               "nearest + conv"]
    assert table[0]["params"] == 0 and table[0]["flat amplitude at init"] == "—"
    from segbook.analysis import count_params
    from segbook.seeds import spread
    assert table[1]["params"] == count_params(runs["transposed3"][0]["model"])
    assert table[2]["val MSE"] == spread(r["val"]["mse"] for r in runs["nearest"]).format(".3g")


def test_train_segmentation_decoders_runs_and_seeds():
    from segbook.data import ShapesSegmentation
    from segbook.experiments.upsampling import foreground_labels, train_segmentation_decoders

    data = {s: (ShapesSegmentation(32, size=32, seed=s, transform=foreground_labels),
                ShapesSegmentation(8, size=32, seed=s + 1, transform=foreground_labels)) for s in (0,)}
    variants = {"transposed3": ("transposed3", None), "bilinear_t4": ("transposed4", "bilinear")}
    runs = train_segmentation_decoders(data, variants, width=4, epochs=1, lr=1e-2)
    assert list(runs) == list(variants) and len(runs["transposed3"]) == 1
    run = runs["bilinear_t4"][0]
    assert {"seed", "model", "params", "grid_init", "logit_grid", "margin", "miou", "boundary_f1"} <= set(run)
    assert run["grid_init"] < 0.01 * runs["transposed3"][0]["grid_init"]   # bilinear init starts without a grid
    assert 0 <= run["miou"] <= 1 and not run["model"].training
    again = train_segmentation_decoders(data, {"transposed3": variants["transposed3"]}, width=4, epochs=1, lr=1e-2)
    assert again["transposed3"][0]["miou"] == runs["transposed3"][0]["miou"]   # manual_seed(s + 6) per decoder
    with pytest.raises(ValueError, match="epochs"):
        train_segmentation_decoders(data, variants, epochs=0)
