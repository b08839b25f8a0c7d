import math

import pytest
import torch
import torch.nn as nn

from segbook.analysis import count_macs, count_params
from segbook.models import (
    B0_STAGES, EfficientNet, MBConv, compound_scaling, efficientnet_small,
    round_filters, round_repeats,
)
from segbook.nn.drop_path import drop_path
from segbook.nn import SqueezeExcite


def test_compound_scaling_values():
    s0, s1, s2 = compound_scaling(0), compound_scaling(1), compound_scaling(2)
    assert (s0.depth_mult, s0.width_mult, s0.resolution) == (1.0, 1.0, 32)
    assert s1.depth_mult == pytest.approx(1.2) and s1.width_mult == pytest.approx(1.1)
    assert s1.resolution == 37 and s2.resolution == 42          # round(32 * 1.15**phi)
    assert compound_scaling(1, base_resolution=224).resolution == 258
    # alpha * beta^2 * gamma^2 = 1.92: the ideal FLOPs factor per phi step.
    assert 1.2 * 1.1 ** 2 * 1.15 ** 2 == pytest.approx(1.92, abs=0.005)
    assert compound_scaling(3).flops_factor == pytest.approx(1.92 ** 3, rel=0.01)
    assert compound_scaling(0.5).depth_mult == pytest.approx(math.sqrt(1.2))


@pytest.mark.parametrize("phi, error", [(-1, ValueError), (float("nan"), ValueError), (float("inf"), ValueError),
                                        (True, TypeError), ("1", TypeError), (None, TypeError)])
def test_invalid_phi(phi, error):
    with pytest.raises(error, match="phi"):
        compound_scaling(phi)
    with pytest.raises(error):
        efficientnet_small(phi=phi)


def test_invalid_coefficients():
    with pytest.raises(ValueError, match="alpha"):
        compound_scaling(1, alpha=0.9)
    with pytest.raises(TypeError, match="gamma"):
        compound_scaling(1, gamma="1.15")
    with pytest.raises(ValueError, match="base_resolution"):
        compound_scaling(1, base_resolution=0)


def test_rounding_like_the_reference():
    assert round_filters(32, 1.0) == 32
    assert round_filters(32, 1.1) == 32          # 35.2 -> 32 (not below 90% of 35.2)
    assert round_filters(16, 1.21) == 24         # 19.36 -> 16 < 0.9 * 19.36, so bumped to 24
    assert round_filters(40, 1.1) == 48          # 44 -> 48 (round half up to a multiple of 8)
    assert round_filters(1280, 1.1) == 1408
    assert [round_repeats(n, 1.2) for n in (1, 2, 3, 4, 5)] == [2, 3, 4, 5, 6]
    assert round_repeats(3, 1.0) == 3 and round_repeats(2, 1.44) == 3
    with pytest.raises(ValueError):
        round_filters(0, 1.0)
    with pytest.raises(ValueError):
        round_repeats(1, 0.0)


def _mbconv_params(cin, cout, k, e, se_ratio=0.25):
    h = cin * e
    s = max(1, int(cin * se_ratio))
    expand = (cin * h + 2 * h) if e != 1 else 0         # 1x1 conv (no bias) + BN (gamma, beta)
    dw = h * k * k + 2 * h
    se = h * s + s + s * h + h
    project = h * cout + 2 * cout
    return expand + dw + se + project


@pytest.mark.parametrize("cin,cout,k,s,e", [(16, 16, 3, 1, 1), (16, 24, 3, 2, 6), (24, 24, 5, 1, 6), (40, 80, 3, 2, 4)])
def test_mbconv_shapes_and_params(cin, cout, k, s, e):
    block = MBConv(cin, cout, kernel_size=k, stride=s, expand_ratio=e)
    x = torch.randn(2, cin, 9, 8)
    y = block(x)
    assert y.shape == (2, cout, math.ceil(9 / s), math.ceil(8 / s))
    assert count_params(block) == _mbconv_params(cin, cout, k, e)
    assert block.use_residual == (s == 1 and cin == cout)
    assert isinstance(block.expand, nn.Identity) == (e == 1)
    assert isinstance(block.se, SqueezeExcite) and block.se.hidden_channels == max(1, cin // 4)
    assert block.depthwise[0].groups == cin * e and block.depthwise[0].kernel_size == (k, k)


def test_mbconv_residual_is_identity_when_branch_is_zero():
    block = MBConv(8, 8, expand_ratio=4).eval()
    nn.init.zeros_(block.project[1].weight)                # BN gamma = 0 and beta = 0: branch output 0
    x = torch.randn(2, 8, 6, 6)
    assert torch.allclose(block(x), x)
    block2 = MBConv(8, 16).eval()
    nn.init.zeros_(block2.project[1].weight)
    assert torch.count_nonzero(block2(x)) == 0             # no residual when shapes differ


def test_mbconv_errors():
    with pytest.raises(ValueError, match="stride"):
        MBConv(8, 8, stride=3)
    with pytest.raises(ValueError, match="odd"):
        MBConv(8, 8, kernel_size=4)
    with pytest.raises(ValueError, match=r"\[N, 8, H, W\]"):
        MBConv(8, 8)(torch.randn(1, 4, 5, 5))
    with pytest.raises(ValueError, match="out_channels"):
        MBConv(8, 0)
    with pytest.raises(TypeError, match="in_channels"):
        MBConv(8.0, 8)
    with pytest.raises(ValueError, match="expand_ratio"):
        MBConv(8, 8, expand_ratio=0)


def test_drop_path():
    x = torch.ones(1000, 3, 2, 2)
    assert torch.equal(drop_path(x, 0.3, training=False), x)
    y = drop_path(x, 0.3, training=True)
    kept = (y.flatten(1) != 0).all(dim=1)
    assert 0.6 < kept.float().mean().item() < 0.8
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.7))


def test_b0_stage_table_reproduces_b0_size():
    # The reference EfficientNet-B0: 5,288,548 parameters, 0.39 B multiply-adds at 224x224.
    b0 = EfficientNet(B0_STAGES)
    assert count_params(b0) == 5_288_548
    assert count_macs(b0, (1, 3, 224, 224)) == pytest.approx(0.39e9, rel=0.02)


def test_efficientnet_small_forward_and_attributes():
    torch.manual_seed(0)
    m = efficientnet_small(phi=1, num_classes=7)
    assert m.resolution == 37 and m.scaling.phi == 1
    out = m(torch.randn(2, 3, 37, 37))
    assert out.shape == (2, 7)
    assert m.forward_features(torch.randn(1, 3, 32, 32)).shape == (1, m.head_channels, 4, 4)
    assert m.stage_repeats == tuple(round_repeats(n, 1.2) for n in (1, 4, 3, 3, 2))
    with pytest.raises(ValueError, match="4-D"):
        m(torch.randn(3, 32, 32))
