r"""Deformable convolution (Dai et al., Deformable ConvNets, 2017) on ``torchvision.ops``.

A ``k x k`` convolution samples its input on a fixed grid ``R = {(i d, j d)}`` around each output
position ``p0`` (``d`` the dilation). A deformable convolution adds a learned 2-D offset to every
tap, predicted by an ordinary convolution from the *same* input, so the sampling pattern, and with
it the effective receptive field, changes from image to image and from pixel to pixel:

.. math::

    y(p_0) = \sum_{t=1}^{k^2} w_t \, x\big(p_0 + p_t + \Delta p_t(p_0)\big), \qquad
    \Delta p = \mathrm{conv}_{\text{offset}}(x) \in \mathbb{R}^{2k^2 \times H_{out} \times W_{out}}

The offsets are fractional, so ``x`` is read by bilinear interpolation (zero outside the image);
the interpolation is differentiable in the sampling position, which is how the offsets learn. With
all offsets zero it is the plain convolution. Here the offset branch starts at exactly zero
(weights and bias), so a freshly built :class:`DeformConv2d` *is* an ``nn.Conv2d`` with the same
weights and training moves it away from the grid only where that lowers the loss. (The paper also
initialises the offset layer to zero.)

Offset layout (torchvision's, checked in ``tests/test_deform.py``): channel ``2 t`` holds the
vertical offset ``dy`` and channel ``2 t + 1`` the horizontal offset ``dx`` of kernel tap
``t = i * k_w + j`` (row-major over the kernel), i.e. ``(y, x)`` interleaved per tap:
``[dy_00, dx_00, dy_01, dx_01, ..., dy_{k-1,k-1}, dx_{k-1,k-1}]``. Offsets are in input pixels.
Tap ``(i, j)`` of output ``(oy, ox)`` reads input position

.. math::

    y = oy \cdot s_h - p_h + i \cdot d_h + dy_t, \qquad x = ox \cdot s_w - p_w + j \cdot d_w + dx_t

(pixel centres at integer coordinates), which :func:`sampling_points` returns for plotting.

Departures and limits: one offset group (all input channels share the offsets, as in the paper's
default), no modulation mask (that is DCNv2), ``groups = 1``. torchvision's CPU kernel is an
im2col loop and much slower than ``nn.Conv2d``; ``torch.utils.flop_counter`` does not count it.
"""
from __future__ import annotations

import math
from typing import Optional, Union

import torch
import torch.nn as nn
from torchvision.ops import deform_conv2d

from ..checks import int_pair, positive_int
from .conv import same_padding

__all__ = ["DeformConv2d", "sampling_points", "regular_grid"]

IntPair = Union[int, tuple[int, int]]


def regular_grid(
    out_size: tuple[int, int],
    kernel_size: IntPair = 3,
    stride: IntPair = 1,
    padding: Optional[IntPair] = None,
    dilation: IntPair = 1,
    *,
    device=None,
    dtype=torch.float32,
) -> torch.Tensor:
    """The plain convolution's sampling positions ``(y, x)``: ``[H_out, W_out, k_h*k_w, 2]``.

    ``padding=None`` means "same" padding ``d (k - 1) // 2`` (:func:`~segbook.nn.same_padding`:
    odd kernels only), as in :class:`DeformConv2d`.
    """
    kh, kw = int_pair(kernel_size, "kernel_size")
    sh, sw = int_pair(stride, "stride")
    dh, dw = int_pair(dilation, "dilation")
    if padding is None:
        ph, pw = same_padding(kh, dh), same_padding(kw, dw)
    else:
        ph, pw = int_pair(padding, "padding", minimum=0)
    ho, wo = out_size
    oy = torch.arange(ho, device=device, dtype=dtype) * sh - ph        # [H_out]
    ox = torch.arange(wo, device=device, dtype=dtype) * sw - pw        # [W_out]
    ty = (torch.arange(kh, device=device, dtype=dtype) * dh).repeat_interleave(kw)  # tap t = i*kw + j
    tx = (torch.arange(kw, device=device, dtype=dtype) * dw).repeat(kh)
    y = oy[:, None, None] + ty[None, None, :]                            # [H_out, 1, T]
    x = ox[None, :, None] + tx[None, None, :]                            # [1, W_out, T]
    y, x = torch.broadcast_tensors(y, x)
    return torch.stack((y, x), dim=-1)


def sampling_points(
    offsets: torch.Tensor,
    kernel_size: IntPair = 3,
    stride: IntPair = 1,
    padding: Optional[IntPair] = None,
    dilation: IntPair = 1,
) -> torch.Tensor:
    """Input coordinates ``(y, x)`` of every tap of a deformable convolution.

    Args:
        offsets: ``[N, 2*k_h*k_w, H_out, W_out]`` in torchvision's layout (``dy, dx`` interleaved
            per tap, taps row-major), e.g. from :meth:`DeformConv2d.offsets_for`.
        kernel_size, stride, padding, dilation: the convolution's geometry; ``padding=None`` is
            "same" padding, the default of :class:`DeformConv2d`.

    Returns:
        ``[N, H_out, W_out, k_h*k_w, 2]``: regular grid + offset, in input pixel coordinates
        (pixel centres at integers; row ``y`` first). ``points[n, oy, ox, t]`` is where tap ``t``
        of output pixel ``(oy, ox)`` reads the input. To draw them over an image with matplotlib
        (x first): ``ax.scatter(pts[n, oy, ox, :, 1], pts[n, oy, ox, :, 0])``.
    """
    kh, kw = int_pair(kernel_size, "kernel_size")
    if offsets.dim() != 4 or offsets.shape[1] != 2 * kh * kw:
        raise ValueError(
            f"offsets must be [N, 2*{kh}*{kw}={2 * kh * kw}, H_out, W_out], got shape {tuple(offsets.shape)}"
        )
    n, _, ho, wo = offsets.shape
    grid = regular_grid((ho, wo), (kh, kw), stride, padding, dilation, device=offsets.device, dtype=offsets.dtype)
    delta = offsets.reshape(n, kh * kw, 2, ho, wo).permute(0, 3, 4, 1, 2)  # [N, H_out, W_out, T, 2]
    return grid.unsqueeze(0) + delta


class DeformConv2d(nn.Module):
    """Deformable convolution with its own offset branch: ``[N, C_in, H, W] -> [N, C_out, H', W']``.

    ``H' = floor((H + 2 p - d (k - 1) - 1) / s) + 1`` as for ``nn.Conv2d``; with the default "same"
    padding and stride 1, ``H' = H``.

    Args:
        in_channels, out_channels: channel counts.
        kernel_size, stride, dilation: as ``nn.Conv2d`` (int or pair).
        padding: as ``nn.Conv2d``; ``None`` (default) is "same" padding ``d (k - 1) // 2``
            (:func:`~segbook.nn.same_padding`; an even kernel needs an explicit ``padding``).
        bias: add a learnable bias to the output.

    Attributes:
        weight, bias: the main convolution's parameters (same names and shapes as ``nn.Conv2d``,
            so ``load_state_dict`` of a conv's weights works, see :meth:`from_conv`).
        offset: ``nn.Conv2d(in_channels, 2 k_h k_w, kernel_size, stride, padding, dilation)``, zero at
            init; its output has the main convolution's output size.
        offset: the conv that predicts the offsets ``[N, 2 k_h k_w, H', W']`` (forward stores nothing;
            use :meth:`offsets_for` or capture this submodule's output).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntPair = 3,
        *,
        stride: IntPair = 1,
        padding: Optional[IntPair] = None,
        dilation: IntPair = 1,
        bias: bool = True,
    ) -> None:
        super().__init__()
        in_channels, out_channels = positive_int(in_channels, "in_channels"), positive_int(out_channels, "out_channels")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = int_pair(kernel_size, "kernel_size")
        self.stride = int_pair(stride, "stride")
        self.dilation = int_pair(dilation, "dilation")
        self.padding = (tuple(map(same_padding, self.kernel_size, self.dilation)) if padding is None
                        else int_pair(padding, "padding", minimum=0))
        kh, kw = self.kernel_size
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kh, kw))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.offset = nn.Conv2d(in_channels, 2 * kh * kw, self.kernel_size, stride=self.stride,
                                padding=self.padding, dilation=self.dilation, bias=True)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Main weights as ``nn.Conv2d`` initialises them; the offset branch to exactly zero."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.weight[0].numel())
            nn.init.uniform_(self.bias, -bound, bound)
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> "DeformConv2d":
        """A deformable twin of ``conv``: same geometry and (copied) weights, zero offsets.

        Its output equals ``conv(x)`` until the offsets are trained.
        """
        if not isinstance(conv, nn.Conv2d) or conv.groups != 1 or isinstance(conv.padding, str):
            raise ValueError("from_conv needs an nn.Conv2d with groups=1 and numeric padding")
        m = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                padding=conv.padding, dilation=conv.dilation, bias=conv.bias is not None)
        m.to(device=conv.weight.device, dtype=conv.weight.dtype)
        with torch.no_grad():
            m.weight.copy_(conv.weight)
            if conv.bias is not None:
                m.bias.copy_(conv.bias)
        return m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"DeformConv2d expects a 4-D input [N, C, H, W], got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"DeformConv2d was built for {self.in_channels} input channels, got {x.shape[1]}")
        offsets = self.offset(x)                               # [N, 2 k_h k_w, H', W']
        # torchvision's deform_conv2d needs one dtype for input, offsets and weights, and has no
        # CPU autocast rule: under autocast the offset conv returns bf16 while the weights stay
        # float32. Run it in float32 outside autocast (as its CUDA autocast rule does) and
        # return the input's dtype.
        if torch.is_autocast_enabled(x.device.type) or offsets.dtype != self.weight.dtype or x.dtype != self.weight.dtype:
            with torch.autocast(x.device.type, enabled=False):
                bias = None if self.bias is None else self.bias.float()
                out = deform_conv2d(x.float(), offsets.float(), self.weight.float(), bias, stride=self.stride,
                                    padding=self.padding, dilation=self.dilation)
            return out.to(x.dtype)
        return deform_conv2d(x, offsets, self.weight, self.bias, stride=self.stride,
                             padding=self.padding, dilation=self.dilation)

    def offsets_for(self, x: torch.Tensor) -> torch.Tensor:
        """The offsets this layer predicts for ``x``: ``[N, 2 k_h k_w, H', W']`` (the same as the
        ``offset`` submodule's output, which :func:`segbook.analysis.capture` can also record)."""
        return self.offset(x)

    def sampling_points(self, offsets: torch.Tensor) -> torch.Tensor:
        """:func:`sampling_points` with this layer's geometry, for ``offsets`` from :meth:`offsets_for`."""
        if not isinstance(offsets, torch.Tensor):
            raise TypeError("pass the offsets, e.g. layer.sampling_points(layer.offsets_for(x))")
        return sampling_points(offsets, self.kernel_size, self.stride, self.padding, self.dilation)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, bias={self.bias is not None}")
