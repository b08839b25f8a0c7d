"""Upsampling layers: transposed convolution initialised to bilinear interpolation (FCN).

FCN (Long et al. 2015) upsamples coarse score maps with a transposed ("backwards strided")
convolution whose kernel starts as bilinear interpolation and may then be learned. For an
integer factor ``f`` this module uses

    kernel_size k = 2f - (f mod 2),   stride s = f,   padding p = f // 2

so that the output size ``(H - 1) s - 2p + k`` is exactly ``f * H`` for every ``H`` (even ``f``:
``k = 2f``, ``p = f/2``; odd ``f``: ``k = 2f - 1``, ``p = (f - 1)/2``), and output pixel ``y``
interpolates the input at ``(y + 1/2) / f - 1/2``: the ``align_corners=False`` convention of
``F.interpolate``. Away from the border the result equals
``F.interpolate(x, size=(f H, f W), mode="bilinear", align_corners=False)`` exactly (up to float
rounding). In the outermost ``ceil(f/2)`` rows and columns it differs: the transposed convolution
treats the outside as zeros (the edge weights do not sum to 1), while ``F.interpolate`` repeats the
edge pixel.

The bilinear kernel is the outer product of a 1-D "tent" ``1 - |t - c| / f`` (``c`` the kernel
centre), as in FCN's ``upsample_filt`` (``surgery.py`` of the reference code).

Pairs: :func:`bilinear_upsample` (functional, fixed kernel, one channel at a time) and
:class:`BilinearConvTranspose2d` (a ``nn.ConvTranspose2d`` that starts as bilinear upsampling
and can be trained, FCN's "learned upsampling").
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "upsample_params",
    "bilinear_filter",
    "bilinear_kernel",
    "bilinear_upsample",
    "BilinearConvTranspose2d",
]


def _check_factor(factor: int) -> int:
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(f"factor must be a positive int, got {factor!r}")
    return factor


def upsample_params(factor: int) -> tuple[int, int, int]:
    """``(kernel_size, stride, padding)`` of a transposed conv that upsamples by exactly ``factor``.

    ``k = 2 f - (f mod 2)``, ``s = f``, ``p = f // 2``: output size ``(H - 1) s - 2 p + k = f H``.
    Example: ``factor=2 -> (4, 2, 1)``, ``factor=32 -> (64, 32, 16)``, ``factor=3 -> (5, 3, 1)``.
    """
    f = _check_factor(factor)
    return 2 * f - f % 2, f, f // 2


def bilinear_filter(kernel_size: int, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """2-D bilinear interpolation kernel ``[k, k]``: outer product of a tent of half-width ``ceil(k/2)``.

    ``k = 4`` gives the tent ``[0.25, 0.75, 0.75, 0.25]`` (factor 2); the kernel for factor ``f``
    is ``bilinear_filter(2 f - f % 2)``.
    """
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1:
        raise ValueError(f"kernel_size must be a positive int, got {kernel_size!r}")
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    t = torch.arange(kernel_size, dtype=torch.float64)
    tent = 1.0 - (t - center).abs() / factor
    return torch.outer(tent, tent).to(dtype)


def bilinear_kernel(channels: int, kernel_size: int, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Weight ``[channels, channels, k, k]`` for ``nn.ConvTranspose2d(channels, channels, k)``.

    Channel ``c`` is upsampled from channel ``c`` alone (a diagonal in the channel dimensions,
    zeros elsewhere), so every class score map is interpolated separately, as in FCN. The
    off-diagonal entries are zero but trainable when the layer is learned.
    """
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ValueError(f"channels must be a positive int, got {channels!r}")
    weight = torch.zeros(channels, channels, kernel_size, kernel_size, dtype=dtype)
    filt = bilinear_filter(kernel_size, dtype=dtype)
    idx = torch.arange(channels)
    weight[idx, idx] = filt
    return weight


def bilinear_upsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Upsample ``[N, C, H, W] -> [N, C, f H, f W]`` with a fixed bilinear transposed convolution.

    Equal to ``F.interpolate(x, scale_factor=f, mode="bilinear", align_corners=False)`` away from
    the border (see the module docstring for the border).
    """
    f = _check_factor(factor)
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"x must be a tensor [N, C, H, W], got {getattr(x, 'shape', type(x))}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a float tensor, got {x.dtype}")
    if f == 1:
        return x
    k, s, p = upsample_params(f)
    c = x.shape[1]
    weight = bilinear_filter(k, dtype=x.dtype).to(x.device).expand(c, 1, k, k)
    return F.conv_transpose2d(x, weight, stride=s, padding=p, groups=c)


class BilinearConvTranspose2d(nn.ConvTranspose2d):
    """A ``channels -> channels`` transposed convolution that starts as bilinear upsampling by ``factor``.

    Shapes: ``(N, C, H, W) -> (N, C, factor * H, factor * W)`` for every ``H, W``.

    Args:
        channels: number of channels (class score maps in FCN).
        factor: integer upsampling factor; kernel, stride and padding from :func:`upsample_params`.
        learnable: when ``False`` the weight is frozen (FCN's last, fixed upsampling layer).
        bias: add a (zero-initialised) bias; FCN's upsampling layers have none.
    """

    def __init__(self, channels: int, factor: int, *, learnable: bool = True, bias: bool = False) -> None:
        k, s, p = upsample_params(_check_factor(factor))
        super().__init__(channels, channels, k, stride=s, padding=p, bias=bias)
        self.factor = factor
        self.reset_parameters()
        self.weight.requires_grad_(learnable)

    def reset_parameters(self) -> None:
        # nn.ConvTranspose2d.__init__ calls this before ``factor`` exists; only then fall back.
        if not hasattr(self, "factor"):
            return super().reset_parameters()
        with torch.no_grad():
            self.weight.copy_(bilinear_kernel(self.in_channels, self.kernel_size[0], dtype=self.weight.dtype))
            if self.bias is not None:
                self.bias.zero_()

    def forward(self, x: torch.Tensor, output_size=None) -> torch.Tensor:  # noqa: D102
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__} expects [N, {self.in_channels}, H, W], got {tuple(x.shape)}"
            )
        return super().forward(x, output_size)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", factor={self.factor}, learnable={self.weight.requires_grad}"
