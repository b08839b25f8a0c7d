"""Tests for segbook.nn.conv: same_padding, make_divisible, ConvBNAct."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from segbook.nn import ConvBNAct, make_divisible, same_padding


# ---------------------------------------------------------------------------------------------
# same_padding
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k,d,expected", [
    (1, 1, 0), (3, 1, 1), (5, 1, 2), (7, 1, 3), (3, 2, 2), (3, 6, 6), (3, 12, 12), (5, 3, 6), (7, 2, 6), (1, 4, 0),
])
def test_same_padding_values(k, d, expected):
    assert same_padding(k, d) == expected
    assert same_padding(k, dilation=d) == expected


@pytest.mark.parametrize("k", [1, 3, 5, 7])
@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("size", [9, 12])
def test_same_padding_keeps_size(k, d, size):
    conv = nn.Conv2d(1, 1, k, padding=same_padding(k, d), dilation=d, bias=False)
    assert conv(torch.zeros(1, 1, size, size + 1)).shape[-2:] == (size, size + 1)


@pytest.mark.parametrize("k", [2, 4, 6])
def test_same_padding_even_kernel_raises(k):
    with pytest.raises(ValueError, match=f"kernel_size={k} is even"):
        same_padding(k)


@pytest.mark.parametrize("k,d", [(0, 1), (-3, 1), (3, 0), (3, -1)])
def test_same_padding_non_positive_raises(k, d):
    with pytest.raises(ValueError, match="must be >= 1"):
        same_padding(k, d)


# ---------------------------------------------------------------------------------------------
# make_divisible
# ---------------------------------------------------------------------------------------------
def _reference(v, divisor=8, min_value=None):
    """The TF MobileNet/EfficientNet reference rounding, written out independently."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


@pytest.mark.parametrize("value,divisor,expected", [
    (32, 8, 32),          # already a multiple
    (32 * 1.1, 8, 32),    # 35.2: int(39.2)=39 -> 32; 32 >= 0.9*35.2=31.68, so no bump
    (32 * 1.2, 8, 40),    # 38.4: int(42.4)=42 -> 40 (rounded up to the nearest)
    (36, 8, 40),          # a tie rounds up: int(40) -> 40
    (35, 8, 32),          # 32 >= 31.5
    (35.9, 8, 40),        # nearest is 32, but 32 < 0.9*35.9=32.31: the 10% rule adds 8
    (10, 8, 16),          # nearest is 8, but 8 < 9: the 10% rule
    (12, 8, 16),
    (3, 8, 8),            # never below the divisor
    (0.5, 8, 8),
    (100, 16, 96),        # int(108)=108 -> 96; 96 >= 90
    (20, 16, 32),         # 16 < 18: bumped
    (24, 16, 32),
    (1280 * 1.1, 8, 1408),
])
def test_make_divisible_cases(value, divisor, expected):
    got = make_divisible(value, divisor)
    assert got == expected
    assert type(got) is int
    assert got == _reference(value, divisor)


def test_make_divisible_invariants():
    for divisor in (4, 8, 16):
        for i in range(1, 400):
            v = i * 0.73
            out = make_divisible(v, divisor)
            assert out % divisor == 0
            assert out >= divisor
            assert out >= 0.9 * v                      # never drops more than 10%
            assert out <= max(divisor, v + divisor)    # and never adds more than one step
            assert out == _reference(v, divisor)


def test_make_divisible_is_monotone():
    outs = [make_divisible(v / 4) for v in range(1, 2000)]
    assert all(a <= b for a, b in zip(outs, outs[1:]))


def test_make_divisible_min_value_and_round_limit():
    assert make_divisible(3, 8, min_value=16) == 16
    assert make_divisible(40, 8, min_value=16) == 40
    assert make_divisible(10, 8, round_limit=0.0) == 8   # without the 10% rule: plain rounding
    assert make_divisible(10, 8, round_limit=0.75) == 8  # 8 >= 7.5
    assert make_divisible(10, 8, round_limit=0.85) == 16  # 8 < 8.5


def test_make_divisible_bad_divisor():
    for bad in (0, -8):
        with pytest.raises(ValueError, match="divisor must be >= 1"):
            make_divisible(32, bad)


# ---------------------------------------------------------------------------------------------
# ConvBNAct
# ---------------------------------------------------------------------------------------------
def test_convbnact_layers_and_no_bias_with_bn():
    block = ConvBNAct(3, 16)
    assert [type(m) for m in block] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    conv = block[0]
    assert conv.bias is None
    assert conv.kernel_size == (3, 3) and conv.padding == (1, 1)
    assert block[1].num_features == 16
    assert block.in_channels == 3 and block.out_channels == 16
    named = ConvBNAct(in_channels=3, out_channels=16)  # the names nn.Conv2d uses
    assert [p.shape for p in named.parameters()] == [p.shape for p in block.parameters()]
    assert sum(p.numel() for p in block.parameters()) == 3 * 16 * 9 + 2 * 16


def test_convbnact_without_bn_has_bias_and_no_bn():
    block = ConvBNAct(3, 8, bn=False)
    assert [type(m) for m in block] == [nn.Conv2d, nn.ReLU]
    assert block[0].bias is not None and block[0].bias.shape == (8,)


def test_convbnact_activation_choices():
    assert [type(m) for m in ConvBNAct(3, 8, act=None)] == [nn.Conv2d, nn.BatchNorm2d]
    assert [type(m) for m in ConvBNAct(3, 8, act=nn.SiLU)] == [nn.Conv2d, nn.BatchNorm2d, nn.SiLU]
    assert [type(m) for m in ConvBNAct(3, 8, act=None, bn=False)] == [nn.Conv2d]
    a, b = ConvBNAct(3, 8), ConvBNAct(3, 8)
    assert a[2] is not b[2]  # the factory is called per block


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("dilation", [1, 2])
@pytest.mark.parametrize("size", [7, 8])
def test_convbnact_output_shape(k, stride, dilation, size):
    block = ConvBNAct(4, 6, k, stride=stride, dilation=dilation)
    out = block(torch.randn(2, 4, size, size + 3))
    assert out.shape == (2, 6, math.ceil(size / stride), math.ceil((size + 3) / stride))


def test_convbnact_dilation_sets_padding():
    block = ConvBNAct(4, 4, 3, dilation=6)
    assert block[0].dilation == (6, 6) and block[0].padding == (6, 6)
    assert block(torch.randn(1, 4, 13, 13)).shape == (1, 4, 13, 13)


def test_convbnact_groups_and_depthwise():
    dw = ConvBNAct(8, 8, 3, groups=8)
    assert dw[0].weight.shape == (8, 1, 3, 3)
    assert dw(torch.randn(1, 8, 5, 5)).shape == (1, 8, 5, 5)
    grouped = ConvBNAct(8, 12, 3, groups=4, stride=2)
    assert grouped[0].weight.shape == (12, 2, 3, 3)
    assert grouped(torch.randn(1, 8, 10, 10)).shape == (1, 12, 5, 5)
    with pytest.raises(ValueError):
        ConvBNAct(8, 6, groups=4)  # out_channels not divisible by groups


def test_convbnact_explicit_padding():
    block = ConvBNAct(3, 4, 3, padding=0)
    assert block(torch.randn(1, 3, 8, 8)).shape == (1, 4, 6, 6)
    even = ConvBNAct(3, 4, 2, padding=0)  # an even kernel is fine with explicit padding
    assert even(torch.randn(1, 3, 8, 8)).shape == (1, 4, 7, 7)


def test_convbnact_even_kernel_without_padding_raises():
    with pytest.raises(ValueError, match="is even"):
        ConvBNAct(3, 4, 4)


def test_convbnact_forward_is_conv_bn_relu():
    torch.manual_seed(0)
    block = ConvBNAct(3, 4).eval()
    with torch.no_grad():
        block[1].running_mean.uniform_(-1, 1)
        block[1].running_var.uniform_(0.5, 2)
        x = torch.randn(2, 3, 6, 6)
        expected = torch.relu(block[1](block[0](x)))
        assert torch.allclose(block(x), expected)
        assert (block(x) >= 0).all()
