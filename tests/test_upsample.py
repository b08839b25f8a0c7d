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
    with pytest.raises(TypeError, match="factor"):
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


# ------------------------------------------------------------------------------------------------
# Transposed convolution as a scatter-add, resize-convolution, operator matrices
# ------------------------------------------------------------------------------------------------
import itertools

import torch.nn as nn

from segbook.nn.upsample import (
    UPSAMPLER_KINDS, UPSAMPLERS, ResizeConv2d, SubPixelConv2d, conv_transpose2d_scatter, make_upsampler,
    operator_matrix, transposed_padding,
)
from segbook.sizes import conv_transpose_output_size

GRID = [(k, s, p, op, d) for k, s, p, op, d in itertools.product([1, 2, 3, 4, 5], [1, 2, 3], [0, 1, 2], [0, 1, 2], [1, 2])
        if op < max(s, d)]


@pytest.mark.parametrize("k,s,p,op,d", GRID)
def test_output_size_formula_matches_torch(k, s, p, op, d):
    for size in (1, 4, 7):
        expected = (size - 1) * s - 2 * p + d * (k - 1) + op + 1
        if expected < 1:
            with pytest.raises(ValueError, match="reduce the padding"):
                conv_transpose_output_size(size, k, s, p, op, d)
            continue
        layer = nn.ConvTranspose2d(1, 1, k, stride=s, padding=p, output_padding=op, dilation=d)
        got = layer(torch.zeros(1, 1, size, size + 1)).shape[-2:]
        assert conv_transpose_output_size(size, k, s, p, op, d) == got[0] == expected
        assert conv_transpose_output_size(size + 1, k, s, p, op, d) == got[1]


@pytest.mark.parametrize("k,s,p,op,d", GRID)
def test_scatter_equals_conv_transpose2d(k, s, p, op, d):
    gen = torch.Generator().manual_seed(k * 100 + s * 10 + p + 7 * op + 3 * d)
    x = torch.randn(2, 4, 5, 6, generator=gen, dtype=torch.float64)
    if (5 - 1) * s - 2 * p + d * (k - 1) + op + 1 < 1:
        pytest.skip("padding crops everything")
    for groups in (1, 2):
        w = torch.randn(4, 3, k, k, generator=gen, dtype=torch.float64)
        b = torch.randn(3 * groups, generator=gen, dtype=torch.float64)
        ref = F.conv_transpose2d(x, w, b, stride=s, padding=p, output_padding=op, dilation=d, groups=groups)
        got = conv_transpose2d_scatter(x, w, b, stride=s, padding=p, output_padding=op, dilation=d, groups=groups)
        assert got.shape == ref.shape
        assert (got - ref).abs().max().item() < 1e-10


def test_scatter_matches_module_with_rectangular_settings_and_float32():
    torch.manual_seed(0)
    layer = nn.ConvTranspose2d(3, 5, (3, 4), stride=(2, 3), padding=(1, 0), output_padding=(1, 2), dilation=(1, 2))
    x = torch.randn(2, 3, 4, 5)
    got = conv_transpose2d_scatter(x, layer.weight, layer.bias, stride=(2, 3), padding=(1, 0),
                                   output_padding=(1, 2), dilation=(1, 2))
    torch.testing.assert_close(got, layer(x), atol=1e-5, rtol=1e-5)


def test_scatter_worked_example():
    # One channel, 1-D along the width: x = [1, 2], kernel [1, 10, 100], stride 2.
    x = torch.tensor([[[[1.0, 2.0]]]])
    w = torch.tensor([[[[1.0, 10.0, 100.0]]]])
    y = conv_transpose2d_scatter(x, w, stride=(1, 2))
    assert y.flatten().tolist() == [1.0, 10.0, 102.0, 20.0, 200.0]


def test_scatter_is_the_gradient_of_a_strided_conv():
    torch.manual_seed(1)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    y = F.conv2d(x, w, stride=2, padding=1)
    g = torch.randn_like(y)
    y.backward(g)
    torch.testing.assert_close(conv_transpose2d_scatter(g, w, stride=2, padding=1, output_padding=1), x.grad)


def test_scatter_errors():
    with pytest.raises(ValueError, match=r"\[N, C_in, H, W\]"):
        conv_transpose2d_scatter(torch.randn(3, 4, 4), torch.randn(3, 1, 2, 2))
    with pytest.raises(ValueError, match="input channels"):
        conv_transpose2d_scatter(torch.randn(1, 3, 4, 4), torch.randn(2, 1, 2, 2))
    with pytest.raises(ValueError, match="groups"):
        conv_transpose2d_scatter(torch.randn(1, 3, 4, 4), torch.randn(3, 1, 2, 2), groups=2)
    with pytest.raises(ValueError, match="stride"):
        conv_transpose2d_scatter(torch.randn(1, 3, 4, 4), torch.randn(3, 1, 2, 2), stride=0)
    with pytest.raises(ValueError, match="output_padding"):
        conv_transpose_output_size(4, 3, 2, 1, 2)


@pytest.mark.parametrize("factor", [1, 2, 3, 4])
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 8])
def test_transposed_padding_gives_exact_factor(k, factor):
    if factor == 1 and k % 2 == 0:
        with pytest.raises(ValueError, match="odd kernel"):
            transposed_padding(k, factor)
        return
    p, op = transposed_padding(k, factor)
    assert p >= 0 and 0 <= op < factor
    for size in (1, 3, 8):
        assert conv_transpose_output_size(size, k, factor, p, op) == factor * size
    assert transposed_padding(3, 2) == (1, 1) and transposed_padding(4, 2) == (1, 0)


@pytest.mark.parametrize("kind", UPSAMPLER_KINDS)
def test_make_upsampler_doubles_any_size(kind):
    torch.manual_seed(0)
    up = make_upsampler(kind, 3, 5)
    for h, w in ((1, 1), (4, 7), (9, 6)):
        assert up(torch.randn(2, 3, h, w)).shape == (2, 5, 2 * h, 2 * w)
    assert make_upsampler(kind, 2, 2, factor=3)(torch.randn(1, 2, 4, 5)).shape == (1, 2, 12, 15)
    with pytest.raises(ValueError, match="unknown upsampler"):
        make_upsampler("deconv", 3, 5)


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_resize_conv_is_interpolation_then_conv_and_flat_in_flat_out(mode):
    torch.manual_seed(0)
    layer = ResizeConv2d(3, 4, 3, mode=mode)
    x = torch.randn(2, 3, 5, 6)
    ref = layer.conv(F.interpolate(x, size=(10, 12), mode=mode, **({} if mode == "nearest" else {"align_corners": False})))
    torch.testing.assert_close(layer(x), ref)
    flat = layer(torch.full((1, 3, 6, 6), 0.7))[..., 2:-2, 2:-2]   # away from the zero padding
    assert (flat - flat[..., :1, :1]).abs().max().item() < 1e-5
    with pytest.raises(ValueError, match="odd"):
        ResizeConv2d(3, 4, 4)
    with pytest.raises(ValueError, match="mode"):
        ResizeConv2d(3, 4, 3, mode="bicubic")
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        layer(torch.randn(1, 2, 4, 4))


def test_operator_matrix_of_nearest_upsampling_and_of_compositions():
    up = lambda t: F.interpolate(t, scale_factor=2, mode="nearest")  # noqa: E731
    m = operator_matrix(up, (1, 2, 2))
    assert m.shape == (16, 4)
    assert m.sum(1).tolist() == [1.0] * 16 and m.sum(0).tolist() == [4.0] * 4   # each output copies one input
    x = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    assert (m @ x).view(4, 4).tolist() == [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]
    torch.manual_seed(0)
    layer = ResizeConv2d(2, 3, 3, bias=False)
    full = operator_matrix(layer, (2, 4, 4))
    conv_m = operator_matrix(layer.conv, (2, 8, 8))
    up_m = operator_matrix(layer.resize, (2, 4, 4))
    torch.testing.assert_close(full, conv_m @ up_m)
    xr = torch.randn(1, 2, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(full @ xr.flatten(), layer.double()(xr).flatten())


def test_operator_matrix_transposed_conv_is_transpose_of_strided_conv():
    torch.manual_seed(0)
    w = torch.randn(1, 1, 3, 3, dtype=torch.float64)
    conv = operator_matrix(lambda t: F.conv2d(t, w, stride=2, padding=1), (1, 6, 6))
    tconv = operator_matrix(lambda t: F.conv_transpose2d(t, w, stride=2, padding=1, output_padding=1), (1, 3, 3))
    torch.testing.assert_close(tconv, conv.T)


def test_operator_matrix_errors():
    with pytest.raises(ValueError, match="affine"):
        operator_matrix(nn.Conv2d(1, 1, 3, padding=1), (1, 4, 4))
    with pytest.raises(ValueError, match="not linear"):
        operator_matrix(lambda t: t.relu(), (1, 3, 3))
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        operator_matrix(lambda t: t, (4, 4))
    with pytest.raises(ValueError, match="too large"):
        operator_matrix(lambda t: t, (3, 100, 100))


def test_scatter_checks_the_bias_length_like_conv_transpose2d():
    x, w = torch.randn(1, 2, 3, 3), torch.randn(2, 1, 3, 3)  # one output channel
    with pytest.raises(RuntimeError):
        F.conv_transpose2d(x, w, torch.randn(3))
    with pytest.raises(ValueError, match=r"bias must be a 1-D tensor of C_out = 1 entries .*got shape \(3,\)"):
        conv_transpose2d_scatter(x, w, torch.randn(3))
    with pytest.raises(ValueError, match=r"bias .*got shape \(1, 1\)"):
        conv_transpose2d_scatter(x, w, torch.randn(1, 1))
    # with groups, C_out = groups * weight.shape[1]
    xg, wg = torch.randn(1, 4, 3, 3), torch.randn(4, 3, 2, 2)
    with pytest.raises(ValueError, match=r"C_out = 6 entries .*got shape \(3,\)"):
        conv_transpose2d_scatter(xg, wg, torch.randn(3), groups=2)
    b = torch.randn(6)
    torch.testing.assert_close(conv_transpose2d_scatter(xg, wg, b, groups=2), F.conv_transpose2d(xg, wg, b, groups=2))
    # a float64 bias on float32 data: torch keeps the input's dtype, so does the scatter
    b64 = torch.randn(1, dtype=torch.float64)
    out = conv_transpose2d_scatter(x, w, b64)
    assert out.dtype == F.conv_transpose2d(x, w, b64).dtype == torch.float32
    torch.testing.assert_close(out, F.conv_transpose2d(x, w, b64))


def test_scatter_says_when_input_and_weight_dtypes_differ():
    x, w = torch.randn(1, 2, 3, 3), torch.randn(2, 1, 3, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"x \(torch.float32\) and weight \(torch.float64\) dtypes differ.*cast one"):
        conv_transpose2d_scatter(x, w)


def test_upsampler_kinds_are_chapter_3s_four_and_two_more():
    assert UPSAMPLERS == ("transposed3", "transposed4", "nearest", "bilinear")
    assert set(UPSAMPLER_KINDS) == set(UPSAMPLERS) | {"transposed2", "pixelshuffle"}
    types = {kind: type(make_upsampler(kind, 2, 2)) for kind in UPSAMPLER_KINDS}
    assert types == {"transposed2": nn.ConvTranspose2d, "transposed3": nn.ConvTranspose2d,
                     "transposed4": nn.ConvTranspose2d, "nearest": ResizeConv2d, "bilinear": ResizeConv2d,
                     "pixelshuffle": SubPixelConv2d}


@pytest.mark.parametrize("factor", [2, 3])
def test_transposed2_is_the_u_net_up_convolution_without_overlap(factor):
    """Kernel = stride = factor, no padding: the paper's 2x2 up-convolution (for factor 2), and each
    input pixel paints its own factor x factor block."""
    up = make_upsampler("transposed2", 3, 4, factor=factor)
    assert (up.kernel_size, up.stride, up.padding, up.output_padding) == (
        (factor, factor), (factor, factor), (0, 0), (0, 0))
    torch.manual_seed(0)
    ref = nn.ConvTranspose2d(3, 4, kernel_size=factor, stride=factor)
    torch.manual_seed(0)
    up = make_upsampler("transposed2", 3, 4, factor=factor)
    assert torch.equal(up.weight, ref.weight) and torch.equal(up.bias, ref.bias)   # same init, same RNG draws
    x = torch.zeros(1, 3, 3, 3)
    x[0, 0, 1, 1] = 1.0   # one pixel of channel 0
    with torch.no_grad():
        up.bias.zero_()
        out = up(x)[0]
    block = slice(factor, 2 * factor)
    assert torch.equal(out[:, block, block], up.weight[0].detach())   # its kernel, in its own block
    out[:, block, block] = 0
    assert not out.any()                                              # and nothing anywhere else


@pytest.mark.parametrize("kind", ["transposed2", "transposed3", "transposed4"])
def test_make_upsampler_says_which_factors_a_transposed_kind_supports(kind):
    with pytest.raises(ValueError, match=rf"{kind}.* factor >= 2, got factor=1.*'nearest' or 'bilinear'"):
        make_upsampler(kind, 3, 3, factor=1)
    for other in ("nearest", "bilinear"):  # what the message suggests works
        assert make_upsampler(other, 3, 3, factor=1)(torch.randn(1, 3, 5, 4)).shape == (1, 3, 5, 4)


@pytest.mark.parametrize("kind", UPSAMPLER_KINDS)
def test_make_upsampler_needs_positive_channel_counts(kind):
    with pytest.raises(ValueError, match=r"in_channels must be a positive int, got -2"):
        make_upsampler(kind, -2, 2)
    with pytest.raises(ValueError, match=r"out_channels must be a positive int, got 0"):
        make_upsampler(kind, 2, 0)
    with pytest.raises(TypeError, match=r"in_channels must be a positive int, got float 2.0"):
        ResizeConv2d(2.0, 2)


# --- sub-pixel convolution, ICNR, bilinear initialisation, resize-conv's kernel (chapter 3, issue 24) ---
@pytest.mark.parametrize("k,f", [(1, 2), (3, 2), (3, 3), (5, 2)])
def test_subpixel_conv_equals_its_transposed_conv(k, f):
    from segbook.nn.upsample import SubPixelConv2d, subpixel_as_transposed

    torch.manual_seed(0)
    m = SubPixelConv2d(3, 2, k, factor=f, bias=False).double()
    t = subpixel_as_transposed(m)
    assert t.kernel_size == (k * f, k * f) and t.stride == (f, f)
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    assert m(x).shape == (2, 2, 5 * f, 6 * f)
    torch.testing.assert_close(t(x), m(x), rtol=0, atol=1e-12)
    assert make_upsampler("pixelshuffle", 3, 2)(torch.randn(1, 3, 4, 4)).shape == (1, 2, 8, 8)


def test_icnr_makes_the_phases_agree_and_a_constant_stays_flat():
    from segbook.nn.upsample import SubPixelConv2d, icnr_, subpixel_as_transposed

    torch.manual_seed(1)
    m = SubPixelConv2d(4, 3, 3, factor=2)
    plain = m(torch.ones(1, 4, 8, 8))[..., 4:-4, 4:-4]
    assert plain.std().item() > 1e-3                          # the default init paints a grid
    icnr_(m)
    flat = m(torch.ones(1, 4, 8, 8))[..., 4:-4, 4:-4]
    assert (flat - flat.mean((-2, -1), keepdim=True)).abs().max().item() < 1e-6
    # equals conv then nearest upsampling
    x = torch.randn(1, 4, 6, 6)
    base = F.conv2d(x, m.conv.weight[::4], m.conv.bias[::4], padding=1)
    torch.testing.assert_close(m(x), F.interpolate(base, scale_factor=2, mode="nearest"))
    subpixel_as_transposed(m)                                 # equal phase biases: convertible
    with pytest.raises(TypeError, match="SubPixelConv2d"):
        icnr_(nn.Conv2d(1, 1, 3))


def test_subpixel_as_transposed_refuses_unequal_phase_biases():
    from segbook.nn.upsample import SubPixelConv2d, subpixel_as_transposed

    torch.manual_seed(2)
    with pytest.raises(ValueError, match="bias differs between phases"):
        subpixel_as_transposed(SubPixelConv2d(2, 2, 3))


def test_bilinear_init_gives_equal_phase_sums_for_k4_s2():
    from segbook.checkerboard import phase_kernels
    from segbook.nn.upsample import bilinear_filter, bilinear_init_

    torch.manual_seed(3)
    layer = bilinear_init_(make_upsampler("transposed4", 5, 2))
    tent = bilinear_filter(4, dtype=torch.float64).diagonal().sqrt()   # outer(t, t): the diagonal is t^2
    assert tent.tolist() == pytest.approx([0.25, 0.75, 0.75, 0.25])
    assert [p.sum().item() for p in phase_kernels(tent)] == pytest.approx([1.0, 1.0])
    out = layer(torch.ones(1, 5, 8, 8))[..., 2:-2, 2:-2]
    assert (out - out.mean((-2, -1), keepdim=True)).abs().max().item() < 1e-5
    w = layer.weight
    torch.testing.assert_close(w / w.sum((-2, -1), keepdim=True), bilinear_filter(4).expand_as(w) / 4)
    with pytest.raises(TypeError, match="ConvTranspose2d"):
        bilinear_init_(nn.Conv2d(1, 1, 3))


def test_resize_conv_kernel_is_nearest_then_conv_as_a_transposed_conv():
    from segbook.checkerboard import phase_kernels
    from segbook.nn.upsample import resize_conv_kernel

    k1 = resize_conv_kernel(torch.tensor([1.0, 2.0, 3.0]))
    assert k1.tolist() == [3.0, 5.0, 3.0, 1.0]
    phases = phase_kernels(k1)
    assert [p.tolist() for p in phases] == [[3.0, 3.0], [5.0, 1.0]] and phases[0].sum() == phases[1].sum()
    torch.manual_seed(4)
    r = ResizeConv2d(2, 3, 3, bias=False).double()
    t = nn.ConvTranspose2d(2, 3, 4, stride=2, padding=1, bias=False).double()
    with torch.no_grad():
        t.weight.copy_(resize_conv_kernel(r.conv.weight).transpose(0, 1))
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64)
    torch.testing.assert_close(t(x), r(x), rtol=0, atol=1e-12)
