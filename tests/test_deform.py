import pytest
import torch

from segbook.analysis import capture
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import deform_conv2d

from segbook.nn import DeformConv2d, regular_grid, sampling_points


def _bilinear_reference(x, points, weight, bias):
    """Deformable conv written out: sample x at `points` ([N, Ho, Wo, T, 2], (y, x)), then mix."""
    n, c, h, w = x.shape
    _, ho, wo, t, _ = points.shape
    # grid_sample with align_corners=True maps -1 -> pixel 0 and +1 -> pixel W-1 and reads zeros
    # outside: exactly torchvision's bilinear rule.
    gx = points[..., 1] / (w - 1) * 2 - 1
    gy = points[..., 0] / (h - 1) * 2 - 1
    grid = torch.stack((gx, gy), dim=-1).reshape(n, ho, wo * t, 2)
    sampled = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    sampled = sampled.reshape(n, c, ho, wo, t)
    out = torch.einsum("nchwt,oct->nohw", sampled, weight.flatten(2))
    return out + bias[None, :, None, None]


def test_zero_init_equals_plain_conv():
    torch.manual_seed(0)
    conv = nn.Conv2d(5, 7, 3, padding=1)
    dconv = DeformConv2d.from_conv(conv)
    x = torch.randn(2, 5, 11, 9)
    assert (dconv(x) - conv(x)).abs().max().item() < 1e-5
    assert torch.count_nonzero(dconv.offsets_for(x)) == 0
    # Built from scratch, with the conv's weights loaded by state_dict names.
    d2 = DeformConv2d(5, 7, 3)
    d2.load_state_dict({**d2.state_dict(), "weight": conv.weight, "bias": conv.bias})
    assert (d2(x) - conv(x)).abs().max().item() < 1e-5


@pytest.mark.parametrize("k,stride,dilation,padding", [(3, 1, 1, None), (3, 2, 1, 1), (5, 1, 2, None), (3, 2, 2, 0)])
def test_shapes_and_geometry_match_conv2d(k, stride, dilation, padding):
    torch.manual_seed(1)
    pad = dilation * (k - 1) // 2 if padding is None else padding
    conv = nn.Conv2d(3, 4, k, stride=stride, padding=pad, dilation=dilation)
    dconv = DeformConv2d(3, 4, k, stride=stride, padding=padding, dilation=dilation)
    dconv.load_state_dict({**dconv.state_dict(), "weight": conv.weight, "bias": conv.bias})
    x = torch.randn(2, 3, 13, 12)
    y = dconv(x)
    assert y.shape == conv(x).shape
    with capture(dconv.offset) as got:
        dconv(x)
    assert got[""][0].shape == (2, 2 * k * k, *y.shape[2:])
    assert torch.equal(got[""][0], dconv.offsets_for(x))
    assert (y - conv(x)).abs().max().item() < 1e-5
    pts = dconv.sampling_points(dconv.offsets_for(x))
    assert pts.shape == (2, *y.shape[2:], k * k, 2)


def test_offset_layout_shift_x_by_one_is_conv_on_shifted_input():
    torch.manual_seed(2)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    x = torch.randn(1, 3, 10, 10)
    plain = conv(x)
    off = torch.zeros(1, 18, 10, 10)
    off[:, 1::2] = 1.0                   # dx = +1 for every tap (odd channels), dy = 0
    y = deform_conv2d(x, off, conv.weight, conv.bias, padding=(1, 1))
    # Reading x one pixel to the right = plain conv output one column to the right (interior).
    assert (y[..., 1:-1, 1:-2] - plain[..., 1:-1, 2:-1]).abs().max().item() < 1e-5
    # And the same for dy = +1 (even channels).
    off = torch.zeros(1, 18, 10, 10)
    off[:, 0::2] = 1.0
    y = deform_conv2d(x, off, conv.weight, conv.bias, padding=(1, 1))
    assert (y[..., 1:-2, 1:-1] - plain[..., 2:-1, 1:-1]).abs().max().item() < 1e-5
    # Half a pixel in x: bilinear = average of the two neighbouring columns.
    off = torch.zeros(1, 18, 10, 10)
    off[:, 1::2] = 0.5
    y = deform_conv2d(x, off, conv.weight, conv.bias, padding=(1, 1))
    avg = 0.5 * (plain[..., 1:-1, 1:-2] + plain[..., 1:-1, 2:-1])
    assert (y[..., 1:-1, 1:-2] - avg).abs().max().item() < 1e-5


def test_single_tap_offset_moves_only_that_tap():
    # Only tap t = (0, 2) (top-right, t = 2) gets dy = +1: tap 2's read moves from (y-1, x+1) to (y, x+1).
    x = torch.randn(1, 1, 8, 8)
    w = torch.zeros(1, 1, 3, 3)
    w[0, 0, 0, 2] = 1.0
    off = torch.zeros(1, 18, 8, 8)
    off[:, 2 * 2] = 1.0
    y = deform_conv2d(x, off, w, None, padding=(1, 1))
    assert torch.allclose(y[0, 0, :, :-1], x[0, 0, :, 1:])


def test_sampling_points_regular_grid_and_random_offsets_match_torchvision():
    torch.manual_seed(3)
    # Zero offsets: the regular grid; tap 0 of output (0, 0) is the top-left padded pixel.
    g = sampling_points(torch.zeros(1, 18, 4, 4), 3, 1, 1, 1)
    assert g[0, 0, 0, 0].tolist() == [-1.0, -1.0]
    assert g[0, 0, 0, 5].tolist() == [0.0, 1.0]          # tap (1, 2)
    assert g[0, 2, 3, 4].tolist() == [2.0, 3.0]          # centre tap = output position
    assert torch.equal(g[0], regular_grid((4, 4), 3, 1, 1, 1))
    # Random offsets, stride 2, dilation 2: sampling a la `sampling_points` + bilinear = torchvision.
    x = torch.randn(2, 3, 12, 11)
    w, b = torch.randn(4, 3, 3, 3), torch.randn(4)
    off = 1.5 * torch.randn(2, 18, 5, 5)
    y = deform_conv2d(x, off, w, b, stride=(2, 2), padding=(1, 1), dilation=(2, 2))
    assert y.shape == (2, 4, 5, 5)
    pts = sampling_points(off, 3, 2, 1, 2)
    ref = _bilinear_reference(x, pts, w, b)
    assert (y - ref).abs().max().item() < 1e-4


def test_offsets_learn_and_get_gradient():
    torch.manual_seed(4)
    d = DeformConv2d(2, 3, 3)
    x = torch.randn(2, 2, 9, 9)
    d(x).square().sum().backward()
    assert d.offset.weight.grad.abs().sum() > 0
    assert d.weight.grad is not None


def test_errors():
    d = DeformConv2d(3, 4)
    with pytest.raises(ValueError, match="4-D"):
        d(torch.randn(3, 8, 8))
    with pytest.raises(ValueError, match="input channels"):
        d(torch.randn(1, 5, 8, 8))
    with pytest.raises(ValueError, match="offsets"):
        sampling_points(torch.zeros(1, 10, 4, 4), 3)
    with pytest.raises(ValueError):
        DeformConv2d(3, 4, 0)
    with pytest.raises(TypeError, match="offsets_for"):
        DeformConv2d(3, 4).sampling_points(None)


def test_default_padding_is_the_shared_same_padding():
    """``padding=None`` is :func:`segbook.nn.same_padding` per axis; an even kernel has none."""
    from segbook.nn import same_padding

    d = DeformConv2d(2, 3, (3, 5), dilation=(2, 3))
    assert d.padding == (same_padding(3, 2), same_padding(5, 3)) == (2, 6)
    assert d(torch.randn(1, 2, 9, 11)).shape == (1, 3, 9, 11)
    assert torch.equal(regular_grid((4, 4), (3, 5), 1, None, (2, 3)), regular_grid((4, 4), (3, 5), 1, (2, 6), (2, 3)))
    with pytest.raises(ValueError, match="even"):
        DeformConv2d(3, 4, 4)
    with pytest.raises(ValueError, match="even"):
        regular_grid((4, 4), 2)
    assert DeformConv2d(3, 4, 4, padding=1)(torch.randn(1, 3, 8, 8)).shape == (1, 4, 7, 7)


def test_deform_conv_runs_under_cpu_autocast_in_bf16():
    """The GPU path's mixed precision, reproduced on the CPU: the offset conv returns bf16."""
    torch.manual_seed(0)
    dconv = DeformConv2d(4, 6, 3, padding=1)
    x = torch.randn(2, 4, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = dconv(x)
    assert y.shape == (2, 6, 8, 8) and y.dtype == torch.float32
    assert torch.allclose(y, dconv(x), atol=0.1)
