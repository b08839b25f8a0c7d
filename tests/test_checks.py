"""Tests for segbook.checks, segbook.nn.init and segbook.nn.drop_path (shared helpers)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from segbook.checks import int_pair, positive_float, positive_int
from segbook.nn.drop_path import drop_path
from segbook.nn.init import he_init


def test_positive_int():
    assert positive_int(3, "n") == 3 and type(positive_int(np.int64(3), "n")) is int
    assert positive_int(0, "padding", minimum=0) == 0
    assert positive_int(None, "r", allow_none=True) is None
    for bad in (0, -2):
        with pytest.raises(ValueError, match="n must be a positive int"):
            positive_int(bad, "n")
    for bad in (1.0, True, "3", None):  # not an int at all: a TypeError, as int arithmetic would raise
        with pytest.raises(TypeError, match="n must be a positive int"):
            positive_int(bad, "n")
    with pytest.raises(ValueError, match="padding must be a non-negative int, got -1"):
        positive_int(-1, "padding", minimum=0)
    with pytest.raises(ValueError, match="period must be an int >= 2, got 1"):
        positive_int(1, "period", minimum=2)


def test_positive_float():
    assert positive_float(0.5, "lr") == 0.5 and type(positive_float(np.float32(2), "x")) is float
    assert positive_float(3, "x") == 3.0 and positive_float(None, "x", allow_none=True) is None
    assert positive_float(0, "p", inclusive=True, maximum=1) == 0.0
    assert positive_float(1, "p", inclusive=True, maximum=1) == 1.0
    for bad in (0, -1e-3, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="lr must be a finite number > 0"):
            positive_float(bad, "lr")
    with pytest.raises(ValueError, match="p must be a finite number >= 0 and <= 1"):
        positive_float(1.5, "p", inclusive=True, maximum=1)
    for bad in (True, "0.1", None, torch.tensor(0.1)):
        with pytest.raises(TypeError, match="lr must be a finite number"):
            positive_float(bad, "lr")


def test_int_pair():
    assert int_pair(3, "k") == (3, 3) and int_pair((2, 5), "k") == (2, 5) and int_pair([0, 1], "p", minimum=0) == (0, 1)
    for bad in ((1, 2, 3), (0, 1)):
        with pytest.raises(ValueError, match="k must be an int or a pair"):
            int_pair(bad, "k")
    for bad in (2.5, (True, 1), "ab", None):
        with pytest.raises(TypeError, match="k must be an int or a pair"):
            int_pair(bad, "k")


def test_he_init_statistics_and_norms():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(64, 256, 3, bias=True), nn.BatchNorm2d(256), nn.Linear(4, 3))
    with torch.no_grad():
        net[1].weight.fill_(3.0)
    he_init(net, zero_linear_bias=True)
    fan_out = 256 * 9
    assert abs(net[0].weight.std().item() / (2 / fan_out) ** 0.5 - 1) < 0.05
    assert torch.all(net[0].bias == 0) and torch.all(net[1].weight == 1) and torch.all(net[1].bias == 0)
    assert torch.all(net[2].bias == 0)


def test_drop_path_expectation_and_eval_identity():
    torch.manual_seed(0)
    x = torch.ones(20000, 3)
    y = drop_path(x, 0.25, training=True)
    kept = (y[:, 0] != 0).float().mean().item()
    assert abs(kept - 0.75) < 0.02 and torch.allclose(y[y != 0], torch.full_like(y[y != 0], 1 / 0.75))
    assert torch.equal(drop_path(x, 0.25, training=False), x)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        drop_path(x, 1.0, training=True)
