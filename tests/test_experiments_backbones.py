"""Tests for segbook.experiments.backbones: the chapter-1 compound-scaling table."""
import pytest
import torch

from segbook.analysis import count_flops
from segbook.experiments.backbones import efficientnet_scaling_table
from segbook.models import efficientnet_small


pytestmark = pytest.mark.usefixtures("one_thread")


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
    m = efficientnet_small(1)
    assert row["flops"] == count_flops(m, (1, 3, 37, 37))
    assert row["macs"] * 2 == row["flops"]


def test_empty_phis_is_an_error():
    with pytest.raises(ValueError, match="phis is empty"):
        efficientnet_scaling_table(())
