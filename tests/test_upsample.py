"""Tests for segbook.nn.upsample: bilinear kernels and the bilinear-initialised transposed conv."""
import pytest
import torch
import torch.nn.functional as F

from segbook.nn.upsample import (
    BilinearConvTranspose2d, bilinear_filter, bilinear_kernel, bilinear_upsample, upsample_params,
)

FACTORS = [1, 2, 3, 4, 5, 8, 16, 32]


def test_upsample_params_known_values():
    assert upsample_params(2) == (4, 2, 1)
    assert upsample_params(32) == (64, 32, 16)
    assert upsample_params(3) == (5, 3, 1)
    assert upsample_params(1) == (1, 1, 0)


@pytest.mark.parametrize("factor", FACTORS)
@pytest.mark.parametrize("size", [1, 2, 5, 7, 13])
def test_output_size_is_exactly_factor_times_input(factor, size):
    k, s, p = upsample_params(factor)
    assert (size - 1) * s - 2 * p + k == factor * size
    x = torch.randn(1, 2, size, size + 3)
    assert bilinear_upsample(x, factor).shape == (1, 2, factor * size, factor * (size + 3))
    assert BilinearConvTranspose2d(2, factor)(x).shape == (1, 2, factor * size, factor * (size + 3))


def test_bilinear_filter_values():
    tent = torch.tensor([0.25, 0.75, 0.75, 0.25])
    torch.testing.assert_close(bilinear_filter(4), torch.outer(tent, tent))
    tent3 = torch.tensor([1 / 3, 2 / 3, 1.0, 2 / 3, 1 / 3])
    torch.testing.assert_close(bilinear_filter(5), torch.outer(tent3, tent3))
    assert bilinear_filter(1).item() == 1.0


@pytest.mark.parametrize("factor", FACTORS)
def test_kernel_is_a_partition_of_unity(factor):
    # Every output position gets weights summing to 1 from the inputs that reach it (away from
    # the border), which is what makes it an interpolation.
    k, s, _ = upsample_params(factor)
    filt = bilinear_filter(k, dtype=torch.float64)
    for phase in range(s):
        assert filt[phase::s, phase::s].sum().item() == pytest.approx(1.0)


def test_bilinear_kernel_is_diagonal_in_channels():
    w = bilinear_kernel(3, 4)
    assert w.shape == (3, 3, 4, 4)
    for i in range(3):
        for j in range(3):
            expected = bilinear_filter(4) if i == j else torch.zeros(4, 4)
            torch.testing.assert_close(w[i, j], expected)


@pytest.mark.parametrize("factor", FACTORS)
def test_matches_interpolate_in_the_interior(factor):
    gen = torch.Generator().manual_seed(factor)
    x = torch.randn(2, 3, 6, 9, generator=gen, dtype=torch.float64)
    ref = F.interpolate(x, size=(6 * factor, 9 * factor), mode="bilinear", align_corners=False)
    m = (factor + 1) // 2  # the border band where zeros outside the image enter
    for y in (bilinear_upsample(x, factor), BilinearConvTranspose2d(3, factor).double()(x)):
        inner = (y - ref)[..., m: y.shape[-2] - m, m: y.shape[-1] - m]
        assert inner.abs().max().item() < 1e-6
    if factor > 1:  # and it really differs at the border, so the test above is not vacuous
        assert (bilinear_upsample(x, factor) - ref).abs().max().item() > 1e-3


def test_module_is_learnable_or_frozen():
    up = BilinearConvTranspose2d(4, 2)
    assert up.weight.requires_grad and up.bias is None
    frozen = BilinearConvTranspose2d(4, 2, learnable=False, bias=True)
    assert not frozen.weight.requires_grad and frozen.bias is not None and frozen.bias.abs().sum() == 0
    up(torch.randn(1, 4, 3, 3)).sum().backward()
    assert up.weight.grad is not None and up.weight.grad.abs().sum() > 0
    # reset_parameters restores bilinear after training changed the weights
    with torch.no_grad():
        up.weight.add_(1.0)
    up.reset_parameters()
    torch.testing.assert_close(up.weight.detach(), bilinear_kernel(4, 4))


def test_errors():
    with pytest.raises(ValueError, match="factor"):
        upsample_params(0)
    with pytest.raises(ValueError, match="factor"):
        BilinearConvTranspose2d(3, 2.0)
    with pytest.raises(ValueError, match="kernel_size"):
        bilinear_filter(0)
    with pytest.raises(ValueError, match="channels"):
        bilinear_kernel(0, 4)
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        bilinear_upsample(torch.randn(3, 4, 4), 2)
    with pytest.raises(TypeError, match="float"):
        bilinear_upsample(torch.ones(1, 1, 4, 4, dtype=torch.long), 2)
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        BilinearConvTranspose2d(3, 2)(torch.randn(1, 2, 4, 4))
