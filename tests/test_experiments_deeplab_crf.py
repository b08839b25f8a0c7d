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


# ---------------------------------------------------------------------------------------------
# the chapter's comparison and CRF study over seeds
# ---------------------------------------------------------------------------------------------
def _rt(seed=0):
    from segbook.runtime import Profile, Runtime
    return Runtime(seed=seed, device=torch.device("cpu"), profile=Profile("quick"), data="shapes",
                   data_root="/nonexistent", download=False)


def test_seed_scenes_splits_the_held_out_scenes_as_chapter_datasets_draws_them():
    from segbook.data import chapter_datasets, take
    from segbook.experiments.deeplab_crf import seed_scenes
    d = seed_scenes(_rt(), size=32, n_train=4, n_tune=2, n_test=3, seed=5)
    train, held_out, _ = chapter_datasets(_rt(), task="segmentation", size=32, n_train=4, n_val=5, seed=5)
    images, masks = take(held_out)
    assert len(d.train) == 4 and d.info.num_classes == 6
    assert d.tune[0].shape == (2, 3, 32, 32) and d.test[1].shape == (3, 32, 32)
    assert torch.equal(d.tune[0], images[:2]) and torch.equal(d.test[1], masks[2:])
    assert torch.equal(d.train[0][0], train[0][0])
    with pytest.raises(ValueError, match="n_tune"):
        seed_scenes(_rt(), size=32, n_train=4, n_tune=0, n_test=3, seed=5)


def test_deeplab_builders_give_logits_at_the_input_size():
    from segbook.experiments.deeplab_crf import deeplab_builders
    builders = deeplab_builders(6, width=4, base_rates=(1, 2, 3), aspp_channels=16, reduced_channels=4)
    assert list(builders) == ["DeepLab v3+ OS8", "DeepLab v3+ OS16", "DeepLab v3 OS16", "FCN-8s"]
    x = torch.rand(1, 3, 37, 33)
    with torch.inference_mode():
        for build in builders.values():
            assert build().eval()(x).shape == (1, 6, 37, 33)
    torch.manual_seed(0)
    a = builders["DeepLab v3 OS16"]()
    torch.manual_seed(0)
    b = builders["DeepLab v3 OS16"]()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))   # weights from the global RNG
    with pytest.raises(ValueError, match="num_classes"):
        deeplab_builders(1, width=4, base_rates=(1, 2, 3), aspp_channels=16, reduced_channels=4)


def _tiny_data(seeds=(0,), n=8, size=32):
    from segbook.data import ShapesSegmentation, take
    out = {}
    for s in seeds:
        ds = ShapesSegmentation(n=n, size=size, seed=s)
        images, masks = take(ds)
        out[s] = SimpleNamespace(train=ds, test=(images[:4], masks[:4]), tune=(images[4:], masks[4:]))
    return out


def test_train_and_score_keeps_the_builders_order_and_scores_each_seed_on_its_test_scenes():
    from segbook.data import make_loader
    from segbook.experiments.deeplab_crf import train_and_score
    from segbook.train import evaluate
    builders = {"a": lambda: torch.nn.Conv2d(3, 6, 1), "b": lambda: torch.nn.Conv2d(3, 6, 3, padding=1)}
    data = _tiny_data(seeds=(0, 1))
    out = train_and_score(builders, data, [0, 1], num_classes=6, batch_size=4, lr=0.01, warmup_steps=0,
                          order=["b", "a"])
    assert list(out.runs) == ["a", "b"] and [r.seed for r in out.runs["a"]] == [0, 1]
    assert all(len(v) == 2 and all(t > 0 for t in v) for v in out.eval_seconds.values())
    for name, runs in out.runs.items():
        for r, score in zip(runs, out.scores[name]):
            again = evaluate(r.model, make_loader(torch.utils.data.TensorDataset(*data[r.seed].test), 64),
                             task="segmentation", num_classes=6)
            assert score["miou"] == pytest.approx(again["miou"])
    other = train_and_score(builders, data, [0, 1], num_classes=6, batch_size=4, lr=0.01, warmup_steps=0)
    assert [s["miou"] for s in other.scores["b"]] == [s["miou"] for s in out.scores["b"]]   # order: same numbers
    with pytest.raises(ValueError, match="order"):
        train_and_score(builders, data, [0], num_classes=6, batch_size=4, lr=0.01, warmup_steps=0, order=["a"])
    with pytest.raises(ValueError, match="seed"):
        train_and_score(builders, data, [0, 7], num_classes=6, batch_size=4, lr=0.01, warmup_steps=0)


class _Oracle(torch.nn.Module):
    """Logits from a lookup of the images: a model whose probabilities the test controls."""

    def __init__(self, images, probs):
        super().__init__()
        self.images, self.probs = images, probs
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        idx = [next(i for i in range(len(self.images)) if torch.equal(self.images[i], im)) for im in x]
        return self.probs[idx].log()


def _crf_study(seeds=(0, 1)):
    from segbook.seeds import SeededRun
    from segbook.train import History
    data, runs = {}, []
    for s in seeds:
        images, probs, target = _scene(n=4, size=12, seed=s)
        images = images + torch.arange(4).view(4, 1, 1, 1) * 0.01   # distinct, for the oracle's lookup
        data[s] = SimpleNamespace(tune=(images[:2], target[:2]), test=(images[2:], target[2:]))
        runs.append(SeededRun(name="m", seed=s, model=_Oracle(images, probs), history=History(task="segmentation")))
    return runs, data


def test_tune_and_score_crf_per_seed_match_the_single_steps():
    from segbook.experiments.deeplab_crf import (
        crf_gains, crf_test_rows, score_crf, seed_values, tune_crf_per_seed,
    )
    runs, data = _crf_study()
    grid = {"bilateral_compat": [0.5, 5], "iterations": [3]}
    crf = tune_crf_per_seed(runs, data, 2, grid, backend="exact")
    assert list(crf) == [0, 1]
    for r in runs:
        (tune_x, tune_y), (test_x, _) = data[r.seed].tune, data[r.seed].test
        best, rows = crf_grid_search(tune_x, r.model(tune_x).softmax(1), tune_y, 2, grid, backend="exact")
        assert crf[r.seed].best == best and crf[r.seed].grid == rows
        torch.testing.assert_close(crf[r.seed].test_probs, r.model(test_x).softmax(1))
    score_crf(crf, data, 2, backend="exact")
    c = crf[1]
    torch.testing.assert_close(c.refined, crf_refine(data[1].test[0], c.test_probs, backend="exact", **c.best))
    assert c.before == segmentation_scores(c.test_probs.argmax(1), data[1].test[1], 2)
    assert seed_values(crf, "after", "miou") == [crf[0].after["miou"], crf[1].after["miou"]]
    gains = crf_gains(crf)
    assert gains["boundary_f1"][1] == crf[1].after["boundary_f1"] - crf[1].before["boundary_f1"]
    rows = crf_test_rows(crf)
    assert [r["test scenes"] for r in rows] == ["DeepLab v3+ OS8", "+ CRF (tuned)",
                                                "+ CRF (pydensecrf README values)", "gain of the tuned CRF"]
    from segbook.seeds import spread
    assert rows[1]["mIoU"] == spread(seed_values(crf, "after", "miou")).format()
    assert rows[3]["boundary F1"] == spread(gains["boundary_f1"]).format("+.3f")
    with pytest.raises(KeyError, match="blur_after"):
        seed_values(crf, "blur_after", "miou")


def test_crf_blur_control_scores_the_blurred_scenes():
    from segbook.experiments.deeplab_crf import (
        crf_blur_control, crf_control_rows, score_crf, soften_edges, tune_crf_per_seed,
    )
    runs, data = _crf_study(seeds=(0,))
    grid = {"bilateral_compat": [0.5, 5], "iterations": [2]}
    crf = tune_crf_per_seed(runs, data, 2, grid, backend="exact")
    score_crf(crf, data, 2, backend="exact")
    seen = []
    c = crf[0]
    real_model = c.model
    c.model = lambda x: (seen.append(x.clone()), torch.full((x.shape[0], 2, 12, 12), 0.0))[1]
    crf_blur_control(crf, data, 2, grid, blur=1.0, backend="exact")
    torch.testing.assert_close(seen[0], soften_edges(data[0].tune[0], 1.0, seed=0))
    torch.testing.assert_close(seen[1], soften_edges(data[0].test[0], 1.0, seed=1000))
    # uniform logits: every label is 0 before the CRF
    assert c.blur_before == segmentation_scores(torch.zeros(2, 12, 12, dtype=torch.long), data[0].test[1], 2)
    assert set(c.blur_best) <= {"bilateral_compat", "iterations"}
    rows = crf_control_rows(crf, blur=1.0)
    assert [r["scenes"] for r in rows] == ["salient (hard edges)", "blurred, sigma 1.0 px"]
    assert rows[1]["no CRF: mIoU"] == f"{c.blur_before['miou']:.3f}"
    assert rows[0]["CRF gain: mIoU"] == f"{c.after['miou'] - c.before['miou']:+.3f}"
    c.model = real_model
    with pytest.raises(ValueError, match="blur"):
        crf_blur_control(crf, data, 2, grid, blur=0.0)


def test_backend_agreement_and_cost_slopes():
    from segbook.experiments.deeplab_crf import backend_agreement, cost_slopes, tune_crf_per_seed
    runs, data = _crf_study(seeds=(0,))
    crf = tune_crf_per_seed(runs, data, 2, {"bilateral_compat": [5], "iterations": [3]}, backend="exact")
    agree = backend_agreement(crf, data, crop=8, n=2, backend="exact")
    assert agree["backend"] == [1.0]                    # exact against itself
    assert 0.9 <= agree["lattice"][0] <= 1.0
    exact = crf_refine(data[0].test[0][:, :, :8, :8], crf[0].test_probs[:, :, :8, :8], backend="exact",
                       **crf[0].best).argmax(1)
    changed = (exact != crf[0].test_probs[:, :, :8, :8].argmax(1)).float().mean().item()
    assert agree["changed"] == [changed]
    cost = [{"backend": "a", "pixels": p, "seconds": p ** 2} for p in (4, 16, 64)] + \
           [{"backend": "b", "pixels": p, "seconds": 3.0 * p} for p in (4, 16)]
    slopes = cost_slopes(cost, ["a", "b"])
    assert slopes == {"a": pytest.approx(2.0), "b": pytest.approx(1.0)}
    with pytest.raises(ValueError, match="'c'"):
        cost_slopes(cost, ["c"])
