"""Tests for segbook.experiments.inception: the 1x1-reduction table and the auxiliary-head study."""
import pytest
import torch

from segbook.analysis import count_macs, count_params
from segbook.experiments.inception import AuxHeadResults, aux_head_results, reduction_rows
from segbook.models import aux_classifier, googlenet_small, inception_3a, without_aux_heads, without_reductions
from segbook.seeds import SeededRun
from segbook.train import History, evaluate


def test_reduction_rows_price_module_3a_with_and_without_reductions():
    m = inception_3a()
    rows = reduction_rows(m, size=28)
    assert [r["module 3a"] for r in rows] == ["with 1x1 reductions", "without reductions"]
    naive = without_reductions(m)
    assert rows[0]["params"] == count_params(m) == 164_064       # GoogLeNet's Table 1: 159K + BN
    assert rows[1]["params"] == count_params(naive) == 393_728
    assert rows[0]["MMACs at 28x28"] == count_macs(m, (1, 192, 28, 28)) / 1e6
    assert rows[1]["params"] / rows[0]["params"] > 2              # the reductions save parameters
    assert "MMACs at 14x14" in reduction_rows(m, size=14, label="3a")[0]


def test_reduction_rows_checks_its_input():
    with pytest.raises(TypeError, match="Inception module"):
        reduction_rows(torch.nn.Conv2d(3, 3, 1))
    with pytest.raises(ValueError, match="size"):
        reduction_rows(inception_3a(), size=0)


def _val(seed):
    g = torch.Generator().manual_seed(seed)
    return [(torch.rand(6, 3, 16, 16, generator=g), torch.randint(0, 4, (6,), generator=g))]


def _run(name, seed, model, acc, loss):
    h = History(task="classification", step_loss=[1.0, 0.5], val=[{"accuracy": acc, "loss": loss}], seconds=[1.0])
    return SeededRun(name=name, seed=seed, model=model.eval(), history=h)


def test_aux_head_results_reads_the_runs_and_scores_each_side_head():
    torch.manual_seed(0)
    nets = {s: googlenet_small(num_classes=4, width_mult=0.125) for s in (1, 2)}
    runs = {"aux": [_run("aux", s, nets[s], a, l) for s, a, l in ((1, 0.5, 1.2), (2, 0.7, 1.0))],
            "none": [_run("none", s, without_aux_heads(nets[s]), a, l) for s, a, l in ((1, 0.4, 1.4), (2, 0.6, 1.1))]}
    data = {s: (None, _val(s)) for s in (1, 2)}
    res = aux_head_results(runs, data, with_heads="aux", num_classes=4)
    assert isinstance(res, AuxHeadResults)
    assert res.accuracy == {"aux": [0.5, 0.7], "none": [0.4, 0.6]}
    assert res.loss == {"aux": [1.2, 1.0], "none": [1.4, 1.1]}
    for h in (1, 2):
        assert res.side_accuracy[h] == [evaluate(aux_classifier(nets[s], h), _val(s), task="classification",
                                                 num_classes=4)["accuracy"] for s in (1, 2)]
    assert [r["net"] for r in res.rows] == ["aux", "none"]
    assert res.rows[0]["val acc (main head)"] == "0.600 [0.500, 0.700]"
    assert res.rows[1]["val loss (main head)"] == "1.250 [1.100, 1.400]"
    assert res.rows[0]["val acc of head 1 / head 2"].count(" / ") == 1 and res.rows[1]["val acc of head 1 / head 2"] == "\u2014"
    assert res.rows[0]["params in training"] > res.rows[1]["params in training"]   # the heads count in training


def test_aux_head_results_checks_its_input():
    torch.manual_seed(0)
    runs = {"aux": [_run("aux", 1, googlenet_small(num_classes=4, width_mult=0.125), 0.5, 1.0)]}
    with pytest.raises(ValueError, match="with_heads"):
        aux_head_results(runs, {1: (None, _val(1))}, with_heads="heads", num_classes=4)
    with pytest.raises(ValueError, match="seed"):
        aux_head_results(runs, {2: (None, _val(2))}, with_heads="aux", num_classes=4)
