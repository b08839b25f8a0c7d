"""Tests for segbook.experiments.efficientnet_scaling: the chapter-1 compound-scaling table."""
import math

import pytest
import torch

from segbook.analysis import count_flops
from segbook.experiments.efficientnet_scaling import efficientnet_scaling_table
from segbook.models import efficientnet_small


def test_flops_grow_about_2x_per_phi_step():
    rows = efficientnet_scaling_table((0, 1, 2, 3))
    assert [r["phi"] for r in rows] == [0, 1, 2, 3]
    assert [r["resolution"] for r in rows] == [32, 37, 42, 49]
    for prev, row in zip(rows, rows[1:]):
        assert 1.6 <= row["flops_ratio"] <= 2.5, row
        assert row["flops_ratio"] == pytest.approx(row["flops"] / prev["flops"])
        assert row["ideal_ratio"] == pytest.approx(1.2 * 1.1**2 * 1.15**2, abs=0.005)
        assert row["params"] > prev["params"] and row["blocks"] >= prev["blocks"]
    assert rows[0]["flops_ratio"] is None and rows[0]["ideal_ratio"] is None   # no predecessor, no nan


def test_rows_are_measured_at_each_models_own_resolution():
    row = efficientnet_scaling_table((1,))[0]
    m = efficientnet_small(phi=1)
    assert row["flops"] == count_flops(m, (1, 3, 37, 37))
    assert row["macs"] * 2 == row["flops"]


def test_empty_phis_is_an_error():
    with pytest.raises(ValueError, match="phis is empty"):
        efficientnet_scaling_table(())


def test_single_dimension_scaling_matches_the_target_cost_one_dimension_at_a_time():
    from segbook.analysis import count_macs
    from segbook.experiments.efficientnet_scaling import single_dimension_scaling
    from segbook.models import efficientnet_small, scaled_efficientnet_small
    target = count_macs(efficientnet_small(phi=1, base_resolution=16), (1, 3, 18, 18))
    rows = single_dimension_scaling(target, base_resolution=16)
    assert [r["scaling"] for r in rows] == ["width", "depth", "resolution"]
    for r in rows:
        # only the named dimension moved
        others = {"width": ("depth_mult", "resolution"), "depth": ("width_mult", "resolution"),
                  "resolution": ("depth_mult", "width_mult")}[r["scaling"]]
        assert all(r[k] == (16 if k == "resolution" else 1.0) for k in others), r
        m = scaled_efficientnet_small(depth_mult=r["depth_mult"], width_mult=r["width_mult"], resolution=r["resolution"])
        assert count_macs(m, (1, 3, r["resolution"], r["resolution"])) == r["macs"]     # measured, not estimated
        assert r["macs_ratio"] == pytest.approx(r["macs"] / target) and r["blocks"] == sum(m.stage_repeats)
        # nothing on the grid comes closer: one step down is cheaper and further or equal, one step up dearer
        step = {"width": ("width_mult", 0.01), "depth": ("depth_mult", 0.01), "resolution": ("resolution", 1)}
        key, dv = step[r["scaling"]]
        for sign in (-1, 1):
            kw = {k: r[k] for k in ("depth_mult", "width_mult", "resolution")}
            kw[key] = round(kw[key] + sign * dv, 2) if key != "resolution" else kw[key] + sign
            if kw[key] < (16 if key == "resolution" else 1.0):
                continue
            n = scaled_efficientnet_small(**kw)
            other = count_macs(n, (1, 3, kw["resolution"], kw["resolution"]))
            assert abs(math.log(other / target)) >= abs(math.log(r["macs"] / target)) - 1e-12, (r, kw)
    by = {r["scaling"]: r for r in rows}
    assert by["depth"]["depth_mult"] > 2 and by["width"]["width_mult"] > 1.4 and by["resolution"]["resolution"] > 20
    assert all(0.8 < r["macs_ratio"] < 1.25 for r in rows)
    with pytest.raises(ValueError, match="dimensions"):
        single_dimension_scaling(target, dimensions=("height",))
    with pytest.raises(ValueError, match="target_macs"):
        single_dimension_scaling(0)


def test_efficientnet_scaling_controls_lists_the_base_the_compound_net_and_its_controls():
    from segbook.analysis import count_macs
    from segbook.experiments.efficientnet_scaling import efficientnet_scaling_controls
    rows = efficientnet_scaling_controls(1, base_resolution=16, num_classes=7)
    assert [r["scaling"] for r in rows] == ["base", "compound", "width", "depth", "resolution"]
    assert rows[1]["macs_ratio"] == 1.0 and rows[0]["resolution"] == 16 and rows[1]["resolution"] == 18
    for r in rows:
        torch.manual_seed(0)
        m = r["build"]()
        assert m(torch.randn(2, 3, r["resolution"], r["resolution"])).shape == (2, 7)
        assert count_macs(m, (1, 3, r["resolution"], r["resolution"])) == r["macs"]


def test_scaled_efficientnet_small_is_efficientnet_small_with_the_multipliers_given_one_by_one():
    from segbook.models import scaled_efficientnet_small
    torch.manual_seed(0)
    a = efficientnet_small(phi=2, base_resolution=16)
    torch.manual_seed(0)
    b = scaled_efficientnet_small(depth_mult=a.depth_mult, width_mult=a.width_mult, resolution=a.resolution)
    assert (b.scaling, b.resolution, b.stage_repeats) == (None, a.resolution, a.stage_repeats)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert a.scaling.phi == 2 and a.depth_mult == pytest.approx(1.44)
    wide = scaled_efficientnet_small(width_mult=1.5)
    assert wide.stage_repeats == efficientnet_small(phi=0).stage_repeats and wide.stage_channels[-1] == 144
    for bad in (dict(depth_mult=0), dict(width_mult=float("nan")), dict(resolution=0)):
        with pytest.raises(ValueError):
            scaled_efficientnet_small(**bad)


# ----------------------------------------------------------------------------------------------
# training the controls over the seeds, and their table
# ----------------------------------------------------------------------------------------------
def _tiny_net():
    import torch.nn as nn
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 3))


def _rows():
    return [{"scaling": "base", "resolution": 8, "blocks": 1, "build": _tiny_net},
            {"scaling": "compound", "resolution": 10, "blocks": 2, "build": _tiny_net},
            {"scaling": "resolution", "resolution": 10, "blocks": 1, "build": _tiny_net}]


def _make_data(calls):
    from torch.utils.data import TensorDataset

    def make(res):
        calls.append(res)
        out = {}
        for s in (3, 4):
            g = torch.Generator().manual_seed(100 * s + res)
            train = TensorDataset(torch.rand(12, 3, res, res, generator=g), torch.randint(0, 3, (12,), generator=g))
            val = [(torch.rand(6, 3, res, res, generator=g), torch.randint(0, 3, (6,), generator=g))]
            out[s] = (train, val)
        return out
    return make


FIT_KW = dict(task="classification", num_classes=3, epochs=1, lr=1e-2, device="cpu", progress=False, log=False,
              workers=1)


def test_train_scaling_controls_trains_each_net_on_its_own_resolution():
    from segbook.data import make_loader
    from segbook.experiments.efficientnet_scaling import scaling_run_names, train_scaling_controls
    from segbook.seeds import fit_over_seeds
    calls = []
    runs = train_scaling_controls(_rows(), _make_data(calls), [3, 4], batch_size=4, **FIT_KW)
    assert calls == [8, 10]                                   # once per resolution, smallest first
    names = scaling_run_names(_rows())
    assert names == {"base": "EfficientNet-s base", "compound": "EfficientNet-s compound",
                     "resolution": "EfficientNet-s resolution"}
    assert list(runs) == list(names.values()) and [r.seed for r in runs["EfficientNet-s base"]] == [3, 4]
    # the same numbers as fit_over_seeds with the loaders written out by hand
    data = _make_data([])
    ref = fit_over_seeds({"b": _tiny_net}, lambda s: make_loader(data(10)[s][0], 4, shuffle=True, seed=s), [3, 4],
                         val_loader=lambda s: data(10)[s][1], **FIT_KW)
    for got, want in zip(runs["EfficientNet-s compound"], ref["b"]):
        assert got.history.step_loss == want.history.step_loss and len(got.history.step_loss) == 3
        assert got.val["accuracy"] == want.val["accuracy"]
    # the base net trained on 8-pixel images: other batches, other losses
    assert runs["EfficientNet-s base"][0].history.step_loss != ref["b"][0].history.step_loss


def test_train_scaling_controls_checks_its_input():
    from segbook.experiments.efficientnet_scaling import train_scaling_controls
    with pytest.raises(ValueError, match="rows is empty"):
        train_scaling_controls([], _make_data([]), [0], batch_size=4, **FIT_KW)
    with pytest.raises(ValueError, match="batch_size"):
        train_scaling_controls(_rows(), _make_data([]), [0], batch_size=0, **FIT_KW)
    with pytest.raises(ValueError, match="no run name"):
        train_scaling_controls(_rows(), _make_data([]), [0], batch_size=4, names={"base": "b"}, **FIT_KW)


def test_scaling_results_reads_accuracy_loss_and_time_per_seed():
    from segbook.experiments.efficientnet_scaling import ScalingResults, scaling_results
    from segbook.seeds import SeededRun
    from segbook.train import History
    rows = [{"scaling": d, "macs_ratio": m, "resolution": 16, "depth_mult": 1.0, "width_mult": 1.0, "blocks": 13,
             "params": 1000, "macs": 2_000_000} for d, m in (("base", 0.5), ("compound", 1.0))]

    def run(name, seed, acc, steps, sec):
        h = History(task="classification", step_loss=steps, val=[{"accuracy": acc, "loss": 1.0}], seconds=[sec])
        return SeededRun(name=name, seed=seed, model=_tiny_net(), history=h)
    runs = {"EfficientNet-s base": [run("b", 0, 0.5, [2.0] * 5, 1.0), run("b", 1, 0.6, [1.0] * 5, 3.0)],
            "EfficientNet-s compound": [run("c", 0, 0.8, [0.5] * 5, 4.0), run("c", 1, 0.9, [0.25] * 5, 6.0)]}
    res = scaling_results(rows, runs)
    assert isinstance(res, ScalingResults)
    assert res.accuracy == {"base": [0.5, 0.6], "compound": [0.8, 0.9]}
    assert res.final_loss == {"base": [2.0, 1.0], "compound": [0.5, 0.25]}
    assert res.seconds == {"base": 2.0, "compound": 5.0}
    assert [r["net"] for r in res.rows] == ["EfficientNet-s base", "EfficientNet-s compound"]
    assert res.rows[1]["val acc"] == "0.850 [0.800, 0.900]" and res.rows[0]["final training loss"] == "1.500 [1.000, 2.000]"
    assert res.rows[0]["MMACs"] == 2.0 and res.rows[0]["MACs vs compound"] == 0.5
    with pytest.raises(ValueError, match="no runs for"):
        scaling_results(rows, {"EfficientNet-s base": runs["EfficientNet-s base"]})
