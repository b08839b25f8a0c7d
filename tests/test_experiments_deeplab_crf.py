"""Tests for segbook.experiments.deeplab_crf: batch CRF refinement, scores, grid search."""
import math
from types import SimpleNamespace

import pytest
import torch

from segbook.crf import dense_crf
from segbook.experiments.deeplab_crf import (
    crf_grid_search, crf_refine, seconds_per_image, segmentation_scores, to_uint8_hwc,
)


def _scene(n=2, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    target = torch.zeros(n, size, size, dtype=torch.long)
    target[:, 4:12, 3:10] = 1
    images = torch.full((n, 3, size, size), 0.2)
    images[:, 0][target == 1] = 0.9
    noisy = torch.nn.functional.one_hot(target, 2).permute(0, 3, 1, 2).float() * 2 + torch.randn(n, 2, size, size, generator=g)
    return images, noisy.softmax(1), target


def test_to_uint8_hwc():
    x = torch.rand(2, 3, 5, 7)
    y = to_uint8_hwc(x)
    assert y.shape == (2, 5, 7, 3) and y.dtype.name == "uint8" and y.flags["C_CONTIGUOUS"]
    assert int(y[1, 2, 3, 0]) == round(float(x[1, 0, 2, 3]) * 255)
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        to_uint8_hwc(torch.rand(3, 5, 7))
    with pytest.raises(TypeError, match="float"):
        to_uint8_hwc(torch.zeros(1, 3, 2, 2, dtype=torch.uint8))


def test_crf_refine_is_dense_crf_per_image():
    images, probs, _ = _scene()
    out = crf_refine(images, probs, backend="exact", iterations=3)
    assert out.shape == probs.shape
    one = torch.as_tensor(dense_crf(to_uint8_hwc(images)[1], probs[1], backend="exact", iterations=3))
    torch.testing.assert_close(out[1], one.float())
    with pytest.raises(ValueError, match="differ"):
        crf_refine(images[:1], probs)


def test_scores_are_perfect_on_the_target():
    _, _, target = _scene()
    s = segmentation_scores(target, target, 2)
    assert s == {"miou": 1.0, "boundary_f1": 1.0}


def test_crf_cleans_noise_and_grid_search_picks_a_qualifying_setting():
    images, probs, target = _scene(size=20)
    best, rows = crf_grid_search(images, probs, target, 2, {"bilateral_compat": [0.5, 5]}, backend="exact",
                                 base={"iterations": 5, "bilateral_sxy": 10})
    assert rows[0]["setting"] == "no CRF" and len(rows) == 3
    assert best["iterations"] == 5 and best["bilateral_compat"] in (0.5, 5)
    chosen = next(r for r in rows[1:] if r["bilateral_compat"] == best["bilateral_compat"])
    assert chosen["miou"] >= rows[0]["miou"]
    assert max(r["boundary_f1"] for r in rows[1:]) > rows[0]["boundary_f1"]  # the CRF removes speckle
    with pytest.raises(ValueError, match="grid"):
        crf_grid_search(images, probs, target, 2, {})


def test_seconds_per_image_is_the_best_repeat_divided_by_the_images(monkeypatch):
    """A fake clock that only crf_refine advances (6, 2, then 4 s for 2 images): the result is the
    best repeat per image, 1.0 s, and backend and parameters reach crf_refine on every repeat."""
    import segbook.experiments.deeplab_crf as deeplab_crf

    clock, durations, calls = [0.0], iter([6.0, 2.0, 4.0]), []

    def fake_refine(images, probs, **kwargs):
        calls.append(kwargs)
        clock[0] += next(durations)
        return probs

    monkeypatch.setattr(deeplab_crf, "crf_refine", fake_refine)
    monkeypatch.setattr(deeplab_crf, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    images, probs, _ = _scene(n=2, size=8)
    assert seconds_per_image(images, probs, backend="exact", repeats=3, iterations=1, bilateral_sxy=5) == 1.0
    assert calls == [{"backend": "exact", "iterations": 1, "bilateral_sxy": 5}] * 3


def test_seconds_per_image_runs_the_crf_it_names():
    images, probs, _ = _scene(n=1, size=8)
    with pytest.raises(ValueError, match="unknown backend"):  # the backend reaches dense_crf
        seconds_per_image(images, probs, backend="densecrf")
    with pytest.raises(ValueError, match="repeats"):
        seconds_per_image(images, probs, backend="exact", repeats=0)


# ---------------------------------------------------------------------------------------------
# fine-tuning the classifier through the CRF
# ---------------------------------------------------------------------------------------------
class _TinySegmenter(torch.nn.Module):
    """features at half resolution -> 1x1 classifier -> bilinear resize to the input (DeepLab's tail)."""

    def __init__(self, k=2):
        super().__init__()
        torch.manual_seed(0)
        self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3, stride=2, padding=1), torch.nn.ReLU())
        self.classifier = torch.nn.Conv2d(6, k, 1)

    def forward(self, x):
        return torch.nn.functional.interpolate(self.classifier(self.body(x)), size=x.shape[-2:], mode="bilinear",
                                               align_corners=False)


def test_head_features_are_the_classifier_input():
    from segbook.experiments.deeplab_crf import head_features
    net = _TinySegmenter()
    images, _, _ = _scene(n=3, size=12)
    feats = head_features(net, net.classifier, images, batch_size=2)
    assert feats.shape == (3, 6, 6, 6)
    torch.testing.assert_close(feats, net.body(images).detach())
    with pytest.raises(ValueError, match="submodule"):
        head_features(net, torch.nn.Conv2d(6, 2, 1), images)


def test_crf_finetune_head_trains_only_the_head_and_lowers_the_crf_loss():
    from segbook.experiments.deeplab_crf import crf_finetune_head
    net = _TinySegmenter()
    images, _, target = _scene(n=4, size=16)
    body_before = [p.clone() for p in net.body.parameters()]
    head_before = [p.clone() for p in net.classifier.parameters()]
    out = crf_finetune_head(net, net.classifier, images, target, steps=25, batch_size=2, lr=0.05, seed=0,
                            iterations=3, bilateral_sxy=5, bilateral_srgb=20, bilateral_compat=3)
    assert len(out["loss"]) == 25 and all(math.isfinite(v) for v in out["loss"])
    assert sum(out["loss"][-5:]) < 0.8 * sum(out["loss"][:5])          # it learns through the CRF
    assert all(torch.equal(a, b) for a, b in zip(body_before, net.body.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(head_before, net.classifier.parameters()))
    assert out["crf_params"] == {"bilateral_sxy": 5, "bilateral_srgb": 20, "bilateral_compat": 3}


def test_crf_finetune_head_gradient_reaches_the_potts_weights():
    from segbook.experiments.deeplab_crf import crf_finetune_head
    net = _TinySegmenter()
    images, _, target = _scene(n=2, size=12)
    out = crf_finetune_head(net, net.classifier, images, target, steps=3, batch_size=2, lr=0.1, iterations=2,
                            learn_weights=True, bilateral_sxy=5, bilateral_compat=4.0)
    weights = out["crf_params"]
    assert weights["bilateral_compat"] > 0 and weights["gaussian_compat"] > 0
    assert weights["bilateral_compat"] != pytest.approx(4.0, abs=1e-4)    # moved by the gradient
    assert weights["gaussian_compat"] != pytest.approx(3.0, abs=1e-4)


def test_crf_finetune_head_rejects_a_head_that_is_not_last():
    from segbook.experiments.deeplab_crf import crf_finetune_head
    net = _TinySegmenter()
    images, _, target = _scene(n=2, size=12)
    with pytest.raises(ValueError, match="last layer"):
        crf_finetune_head(net, net.body[0], images, target, steps=1, batch_size=2)
    with pytest.raises(ValueError, match="masks"):
        crf_finetune_head(net, net.classifier, images, target[:, :5], steps=1, batch_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        crf_finetune_head(net, net.classifier, images, target, steps=1, batch_size=3)


def test_soften_edges_blurs_steps_and_keeps_noise_level():
    from segbook.experiments.deeplab_crf import soften_edges
    images = torch.zeros(2, 3, 16, 16)
    images[..., 8:] = 1.0
    soft = soften_edges(images, 2.0, noise=0.0)
    assert soft.shape == images.shape and soft.dtype == torch.float32
    assert 0.3 < soft[0, 0, 5, 8].item() < 0.7                 # the step is now a ramp
    assert torch.allclose(soft[..., :, 0], torch.zeros(2, 3, 16))  # far from the step: unchanged
    flat = soften_edges(torch.full((1, 3, 32, 32), 0.5), 1.0, noise=0.04, seed=0)
    assert abs(flat.std().item() - 0.04) < 0.005
    with pytest.raises(ValueError):
        soften_edges(images, 0.0)


def test_readable_grid_renames_and_marks_the_chosen_row():
    from segbook.experiments.deeplab_crf import readable_grid
    rows = [{"setting": "no CRF", "miou": 0.5, "boundary_f1": 0.6},
            {"bilateral_sxy": 5, "bilateral_srgb": 13, "miou": 0.6, "boundary_f1": 0.7},
            {"bilateral_sxy": 20, "bilateral_srgb": 13, "miou": 0.7, "boundary_f1": 0.8}]
    out = readable_grid(rows, {"bilateral_sxy": 20, "bilateral_srgb": 13, "iterations": 10})
    assert [r["chosen"] for r in out] == ["", "", "<-"]
    assert out[2]["theta_alpha (px)"] == 20 and out[2]["theta_beta (grey levels)"] == 13 and out[0]["mIoU"] == 0.5
    assert [r["chosen"] for r in readable_grid(rows, {})] == ["", "", ""]


def test_crf_cost_scaling_rows_and_loglog_slope():
    from segbook.experiments.deeplab_crf import crf_cost_scaling, loglog_slope
    images, probs, _ = _scene(n=1, size=16)
    rows = crf_cost_scaling(images[0], probs[0], [8, 16], ["exact", "lattice"], repeats=1, iterations=2)
    assert [(r["backend"], r["side"], r["pixels"]) for r in rows] == [("exact", 8, 64), ("exact", 16, 256),
                                                                     ("lattice", 8, 64), ("lattice", 16, 256)]
    assert all(r["seconds"] > 0 for r in rows)
    with pytest.raises(ValueError):
        crf_cost_scaling(images[0], probs[0], [32], ["exact"])
    assert loglog_slope([1, 2, 4], [3, 12, 48]) == pytest.approx(2.0)
    assert loglog_slope([10, 100], [5, 50]) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        loglog_slope([1], [1])
