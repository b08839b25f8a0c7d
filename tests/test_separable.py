"""Tests for segbook.nn.separable: the module and its parameter and multiply-add formulas."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from segbook.analysis import count_macs, count_params
from segbook.nn.separable import (
    SeparableConv2d, conv_macs, conv_params, separable_conv_bn_act, separable_conv_macs, separable_conv_params,
    separable_cost_ratio,
)

CASES = [(8, 16, 3, 1, 1), (5, 7, 3, 2, 1), (16, 32, 5, 1, 2), (3, 64, 3, 2, 3), (12, 12, 1, 1, 1)]


@pytest.mark.parametrize("m,n,k,stride,dilation", CASES)
@pytest.mark.parametrize("bias", [False, True])
def test_parameter_formula_matches_the_modules(m, n, k, stride, dilation, bias):
    sep = SeparableConv2d(m, n, k, stride=stride, dilation=dilation, bias=bias)
    std = nn.Conv2d(m, n, k, stride=stride, padding=dilation * (k - 1) // 2, dilation=dilation, bias=bias)
    assert count_params(sep) == separable_conv_params(m, n, k, bias=bias)
    assert count_params(std) == conv_params(m, n, k, bias=bias)


@pytest.mark.parametrize("m,n,k,stride,dilation", CASES)
def test_cost_formula_matches_the_flop_counter(m, n, k, stride, dilation):
    size = 20
    out = -(-size // stride)
    sep = SeparableConv2d(m, n, k, stride=stride, dilation=dilation)
    std = nn.Conv2d(m, n, k, stride=stride, padding=dilation * (k - 1) // 2, dilation=dilation, bias=False)
    assert sep(torch.zeros(1, m, size, size)).shape == (1, n, out, out)
    assert count_macs(sep, (1, m, size, size)) == separable_conv_macs(m, n, k, out)
    assert count_macs(std, (1, m, size, size)) == conv_macs(m, n, k, out)


@pytest.mark.parametrize("n,k", [(16, 3), (256, 3), (64, 5), (1, 1)])
def test_ratio_is_one_over_n_plus_one_over_k_squared_for_cost_and_params(n, k):
    m, size = 24, 9
    assert separable_cost_ratio(n, k) == pytest.approx(1 / n + 1 / k ** 2)
    assert separable_conv_macs(m, n, k, size) / conv_macs(m, n, k, size) == pytest.approx(separable_cost_ratio(n, k))
    assert separable_conv_params(m, n, k) / conv_params(m, n, k) == pytest.approx(separable_cost_ratio(n, k))


def test_cost_and_parameters_differ_by_the_output_area():
    # the note's confusion: the mult-add formula is the parameter formula times D_F^2
    assert separable_conv_macs(32, 64, 3, 10) == separable_conv_params(32, 64, 3) * 100
    assert separable_conv_macs(32, 64, 3, 10) != separable_conv_params(32, 64, 3)


def test_rate_changes_neither_parameters_nor_cost():
    counts = {count_params(SeparableConv2d(8, 8, 3, dilation=d)) for d in (1, 2, 4)}
    macs = {count_macs(SeparableConv2d(8, 8, 3, dilation=d), (1, 8, 16, 16)) for d in (1, 2, 4)}
    assert len(counts) == 1 and len(macs) == 1


def test_module_is_depthwise_then_pointwise():
    torch.manual_seed(0)
    sep = SeparableConv2d(4, 6, 3, dilation=2)
    x = torch.randn(2, 4, 11, 13)
    dw = F.conv2d(x, sep.depthwise.weight, padding=2, dilation=2, groups=4)
    expected = F.conv2d(dw, sep.pointwise.weight)
    torch.testing.assert_close(sep(x), expected)
    assert sep.depthwise.groups == 4 and sep.depthwise.weight.shape == (4, 1, 3, 3)
    # channel c of the depthwise output depends on input channel c only
    x = torch.zeros(1, 4, 7, 7, requires_grad=True)
    sep.depthwise(x)[0, 2].sum().backward()
    assert x.grad[0, [0, 1, 3]].abs().sum() == 0 and x.grad[0, 2].abs().sum() > 0


def test_bn_act_version_shapes_and_groups():
    block = separable_conv_bn_act(8, 16, 3, dilation=3, stride=2)
    assert block(torch.randn(2, 8, 15, 15)).shape == (2, 16, 8, 8)
    assert block.depthwise[0].groups == 8 and block.depthwise[0].dilation == (3, 3)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_arguments_raise(bad):
    error = ValueError if type(bad) is int else TypeError  # out of range / not an int (segbook.checks)
    with pytest.raises(error, match="positive int"):
        SeparableConv2d(bad, 4)
    with pytest.raises(error, match="positive int"):
        separable_cost_ratio(bad, 3)


def test_wrong_input_channels_say_what_was_expected():
    with pytest.raises(ValueError, match=r"\[N, 4, H, W\]"):
        SeparableConv2d(4, 8)(torch.zeros(1, 3, 8, 8))
