"""Tests for segbook.experiments.deeplab_blocks: atrous receptive fields and separable costs."""
import pytest
import torch.nn as nn

from segbook.experiments.deeplab_blocks import atrous_rf_rows, separable_cost_rows
from segbook.nn.separable import SeparableConv2d


def test_atrous_rf_rows_grow_exponentially_with_doubling_rates():
    rows = atrous_rf_rows([1, 2, 4], probe_size=40)
    assert [r["layers"] for r in rows] == [1, 2, 3]
    assert [r["rates"] for r in rows] == ["1", "1, 2", "1, 2, 4"]
    assert [r["RF atrous (formula)"] for r in rows] == [3, 7, 15]
    assert [r["RF atrous (measured)"] for r in rows] == [3, 7, 15]
    assert [r["RF plain (measured)"] for r in rows] == [3, 5, 7]
    assert all(r["params (atrous)"] == r["params (plain)"] for r in rows)


def test_atrous_rf_rows_rejects_bad_rates():
    with pytest.raises(ValueError, match="rates"):
        atrous_rf_rows([])
    with pytest.raises(ValueError, match="rates"):
        atrous_rf_rows([1, 0])
    with pytest.raises(TypeError, match="probe_size"):
        atrous_rf_rows([1], probe_size=8.0)


def test_separable_cost_rows_measure_the_formulas():
    sep = SeparableConv2d(8, 16, 3)
    std = nn.Conv2d(8, 16, 3, padding=1, bias=False)
    macs, params = separable_cost_rows(sep, std, 10)
    assert macs[""] == "multiply-adds" and params[""] == "parameters"
    assert macs["standard (measured)"] == macs["standard (formula)"] == 9 * 8 * 16 * 100
    assert macs["separable (measured)"] == macs["separable (formula)"] == (9 * 8 + 8 * 16) * 100
    assert params["standard (measured)"] == 9 * 8 * 16 and params["separable (measured)"] == 9 * 8 + 8 * 16
    assert macs["ratio (measured)"] == pytest.approx(1 / 16 + 1 / 9)
    assert params["ratio (measured)"] == pytest.approx(1 / 16 + 1 / 9)


def test_separable_cost_rows_rejects_mismatched_modules():
    sep = SeparableConv2d(8, 16, 3)
    with pytest.raises(ValueError, match="replaces"):
        separable_cost_rows(sep, nn.Conv2d(8, 32, 3, padding=1), 10)
    with pytest.raises(TypeError, match="SeparableConv2d"):
        separable_cost_rows(nn.Conv2d(8, 16, 3), nn.Conv2d(8, 16, 3), 10)
    with pytest.raises(ValueError, match="map_side"):
        separable_cost_rows(sep, nn.Conv2d(8, 16, 3, padding=1), 0)
