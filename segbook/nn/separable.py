"""Depthwise separable convolution (optionally atrous) and its cost and parameter formulas.

A standard ``D_K x D_K`` convolution from ``M`` to ``N`` channels mixes space and channels at once:
every output channel has its own ``D_K x D_K x M`` kernel. Its counts are

* parameters: ``D_K^2 M N`` (no bias);
* multiply-adds on a ``D_F x D_F`` output map: ``D_K^2 M N D_F^2``.

A depthwise separable convolution (Sifre 2014; Xception, MobileNet) factorises it into a
*depthwise* ``D_K x D_K`` convolution, one filter per input channel (``groups = M``), followed by
a *pointwise* 1x1 convolution that mixes the channels:

* parameters: ``D_K^2 M + M N``;
* multiply-adds: ``D_K^2 M D_F^2 + M N D_F^2``.

Both ratios are ``1 / N + 1 / D_K^2`` (the ``D_F^2`` cancels in the cost ratio and is absent from
the parameter ratio), so a 3x3 separable convolution is 8-9 times cheaper for large ``N``. The
MobileNet paper's formulas are the *cost* (multiply-adds); the parameter counts drop the ``D_F^2``.
With stride ``s`` the output side is ``D_F = ceil(H / s)`` for "same" padding.

An *atrous* separable convolution (DeepLab v3+) dilates the depthwise filter: the parameters
and multiply-adds do not change with the rate, only the spacing of the taps.

Departures: the module has no normalisation or activation between the two convolutions (as in
Xception's ``SeparableConv2d``); :func:`separable_conv_bn_act` builds DeepLab v3+'s version with
batch norm and ReLU after each of them. Biases are off by default; with ``bias=True`` each
convolution adds its output channels to the parameter count (``M + N``), which the formulas take
as an argument.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn

from ..checks import positive_int
from .conv import ConvBNAct, same_padding

__all__ = [
    "SeparableConv2d",
    "separable_conv_bn_act",
    "conv_params",
    "conv_macs",
    "separable_conv_params",
    "separable_conv_macs",
    "separable_cost_ratio",
]


def _check_positive(**values: int) -> None:
    for name, v in values.items():
        positive_int(v, name)


def conv_params(in_channels: int, out_channels: int, kernel_size: int, *, bias: bool = False) -> int:
    """Parameters of a standard convolution: ``D_K^2 M N`` (+ ``N`` with a bias)."""
    _check_positive(in_channels=in_channels, out_channels=out_channels, kernel_size=kernel_size)
    return kernel_size ** 2 * in_channels * out_channels + (out_channels if bias else 0)


def conv_macs(in_channels: int, out_channels: int, kernel_size: int, output_size: int) -> int:
    """Multiply-adds of a standard convolution on a ``D_F x D_F`` output: ``D_K^2 M N D_F^2``."""
    _check_positive(in_channels=in_channels, out_channels=out_channels, kernel_size=kernel_size,
                    output_size=output_size)
    return kernel_size ** 2 * in_channels * out_channels * output_size ** 2


def separable_conv_params(in_channels: int, out_channels: int, kernel_size: int, *, bias: bool = False) -> int:
    """Parameters of a depthwise separable convolution: ``D_K^2 M + M N`` (+ ``M + N`` with biases)."""
    _check_positive(in_channels=in_channels, out_channels=out_channels, kernel_size=kernel_size)
    m, n = in_channels, out_channels
    return kernel_size ** 2 * m + m * n + ((m + n) if bias else 0)


def separable_conv_macs(in_channels: int, out_channels: int, kernel_size: int, output_size: int) -> int:
    """Multiply-adds of a depthwise separable convolution: ``D_K^2 M D_F^2 + M N D_F^2``."""
    _check_positive(in_channels=in_channels, out_channels=out_channels, kernel_size=kernel_size,
                    output_size=output_size)
    m, n, area = in_channels, out_channels, output_size ** 2
    return kernel_size ** 2 * m * area + m * n * area


def separable_cost_ratio(out_channels: int, kernel_size: int) -> float:
    """``separable / standard`` for both cost and parameters (no biases): ``1 / N + 1 / D_K^2``."""
    _check_positive(out_channels=out_channels, kernel_size=kernel_size)
    return 1.0 / out_channels + 1.0 / kernel_size ** 2


class SeparableConv2d(nn.Sequential):
    """Depthwise ``D_K x D_K`` convolution (``groups = M``, atrous rate ``dilation``) then a pointwise 1x1.

    Shapes: ``(N, in_channels, H, W) -> (N, out_channels, ceil(H / stride), ceil(W / stride))``
    ("same" padding ``dilation * (D_K - 1) / 2``; odd kernels only).

    Args:
        in_channels, out_channels: ``M`` and ``N``.
        kernel_size: ``D_K`` (odd).
        stride: stride of the depthwise convolution.
        dilation: atrous rate of the depthwise convolution.
        bias: give both convolutions a bias.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, *, stride: int = 1,
                 dilation: int = 1, bias: bool = False) -> None:
        _check_positive(in_channels=in_channels, out_channels=out_channels, kernel_size=kernel_size,
                        stride=stride, dilation=dilation)
        super().__init__(OrderedDict([
            ("depthwise", nn.Conv2d(in_channels, in_channels, kernel_size, stride=stride,
                                    padding=same_padding(kernel_size, dilation), dilation=dilation,
                                    groups=in_channels, bias=bias)),
            ("pointwise", nn.Conv2d(in_channels, out_channels, 1, bias=bias)),
        ]))
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.dilation = kernel_size, stride, dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"SeparableConv2d expects [N, {self.in_channels}, H, W], got shape {tuple(x.shape)}"
            )
        return super().forward(x)


def separable_conv_bn_act(in_channels: int, out_channels: int, kernel_size: int = 3, *, stride: int = 1,
                          dilation: int = 1) -> nn.Sequential:
    """DeepLab v3+'s atrous separable convolution: depthwise conv-BN-ReLU, then pointwise conv-BN-ReLU.

    Shapes as :class:`SeparableConv2d`.
    """
    _check_positive(in_channels=in_channels, out_channels=out_channels, kernel_size=kernel_size,
                    stride=stride, dilation=dilation)
    return nn.Sequential(OrderedDict([
        ("depthwise", ConvBNAct(in_channels, in_channels, kernel_size, stride=stride, dilation=dilation,
                                groups=in_channels)),
        ("pointwise", ConvBNAct(in_channels, out_channels, 1)),
    ]))
