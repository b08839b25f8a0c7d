"""Tests for the core of segbook.analysis: count_params, count_flops, count_macs.

(tests/test_analysis.py covers the analysis functions added later.)
"""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from segbook.analysis import count_flops, count_macs, count_params
from segbook.nn import ConvBNAct


pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------------------------
# count_params
# ---------------------------------------------------------------------------------------------
def test_count_params_by_hand():
    assert count_params(nn.Linear(10, 5)) == 10 * 5 + 5
    assert count_params(nn.Linear(10, 5, bias=False)) == 50
    assert count_params(nn.Conv2d(3, 16, 3)) == 16 * 3 * 3 * 3 + 16
    assert count_params(nn.Conv2d(8, 8, 3, groups=8, bias=False)) == 8 * 1 * 3 * 3
    assert count_params(nn.Conv2d(8, 12, (1, 5), groups=4)) == 12 * 2 * 1 * 5 + 12
    assert count_params(nn.BatchNorm2d(16)) == 32  # weight + bias; running stats are buffers
    assert count_params(ConvBNAct(3, 16)) == 16 * 3 * 9 + 32
    assert count_params(nn.ReLU()) == 0
    assert isinstance(count_params(nn.Linear(2, 2)), int)


def test_count_params_shared_counted_once():
    lin = nn.Linear(10, 5)
    assert count_params(nn.Sequential(lin, nn.ReLU(), lin)) == 55
    a, b = nn.Linear(6, 6, bias=False), nn.Linear(6, 6)
    b.weight = a.weight  # tied weights, separate biases
    assert count_params(nn.ModuleList([a, b])) == 36 + 6


def test_count_params_trainable_only():
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    for p in model[0].parameters():
        p.requires_grad_(False)
    assert count_params(model) == 15 + 8
    assert count_params(model, trainable_only=True) == 8


def test_count_params_rejects_non_modules():
    with pytest.raises(TypeError, match="expects an nn.Module, got Tensor"):
        count_params(torch.zeros(3))
    with pytest.raises(TypeError, match="got list"):
        count_params([nn.Linear(2, 2)])


# ---------------------------------------------------------------------------------------------
# count_flops / count_macs
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cin,cout,k,stride,pad,h,w", [
    (3, 16, 3, 1, 1, 8, 8),
    (3, 16, 3, 2, 1, 9, 9),
    (4, 5, 5, 1, 0, 10, 7),
    (2, 7, 1, 1, 0, 6, 6),
])
def test_count_flops_single_conv(cin, cout, k, stride, pad, h, w):
    conv = nn.Conv2d(cin, cout, k, stride=stride, padding=pad)
    hout = (h + 2 * pad - k) // stride + 1
    wout = (w + 2 * pad - k) // stride + 1
    expected = 2 * cout * cin * k * k * hout * wout
    assert count_flops(conv, (1, cin, h, w)) == expected
    assert count_flops(conv, (3, cin, h, w)) == 3 * expected  # linear in the batch size
    assert count_macs(conv, (1, cin, h, w)) == expected // 2


def test_count_flops_grouped_and_linear():
    dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
    assert count_flops(dw, (1, 8, 8, 8)) == 2 * 8 * 1 * 9 * 64
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(48, 5))
    assert count_flops(mlp, (2, 3, 4, 4)) == 2 * 2 * 48 * 5
    assert count_macs(mlp, (2, 3, 4, 4)) == 2 * 48 * 5


def test_count_flops_default_shape_and_zero_flop_models():
    conv = nn.Conv2d(3, 4, 1)
    assert count_flops(conv) == 2 * 4 * 3 * 224 * 224
    assert count_flops(nn.Identity(), (1, 3, 4, 4)) == 0  # no parameters: runs on the CPU


def test_count_flops_restores_mode_and_runs_in_eval_without_grad():
    class Probe(nn.Module):
        def __init__(self):
            super().__init__()
            self.bn = nn.BatchNorm2d(3)
            self.seen = []

        def forward(self, x):
            self.seen.append((self.training, torch.is_grad_enabled()))
            return self.bn(x + 1)

    m = Probe()
    m.train()
    before = m.bn.running_mean.clone()
    count_flops(m, (2, 3, 4, 4))
    assert m.training and m.bn.training
    assert m.seen == [(False, False)]
    assert torch.equal(m.bn.running_mean, before)  # eval mode: running stats untouched
    m.eval()
    count_flops(m, (2, 3, 4, 4))
    assert not m.training


def test_count_flops_restores_mode_after_an_error():
    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 2)

        def forward(self, x):
            raise RuntimeError("boom")

    m = Broken().train()
    with pytest.raises(RuntimeError, match="boom"):
        count_flops(m, (1, 3, 4, 4))
    assert m.training


def test_count_flops_uses_model_dtype():
    conv = nn.Conv2d(3, 4, 3, padding=1).double()
    assert count_flops(conv, (1, 3, 5, 5)) == 2 * 4 * 3 * 9 * 25


@pytest.mark.parametrize("shape", [(3, 224, 224), (1, 3, 224), (1, 3, 0, 8), (0, 3, 8, 8), (1, 3, 8, 8, 1),
                                   (1, -3, 8, 8)])
def test_count_flops_bad_shape(shape):
    with pytest.raises(ValueError, match=r"input_shape must be \(N, C, H, W\) with positive sizes"):
        count_flops(nn.Conv2d(3, 4, 1), shape)
    with pytest.raises(ValueError, match="input_shape"):
        count_macs(nn.Conv2d(3, 4, 1), shape)
