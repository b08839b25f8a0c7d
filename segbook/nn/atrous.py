"""Atrous (dilated) convolution: larger receptive field, same parameters.

A ``k x k`` convolution with rate ``d`` places its taps ``d`` pixels apart (``d - 1`` gaps between
them): ``y[i] = sum_t w[t] x[i + d t]`` for ``t`` in ``-(k-1)/2 .. (k-1)/2``. It has the same
``k^2 C_in C_out`` weights and the same cost as the ordinary convolution (``d = 1``) but spans
``d (k - 1) + 1`` pixels (:func:`effective_kernel_size`).

Stacked at stride 1, a layer of rate ``d`` adds ``d (k - 1)`` to the receptive field, so rates
``1, 2, 4, 8, ...`` give ``2^(l+1) - 1`` after ``l`` 3x3 layers (exponential in depth) where plain
3x3 layers give ``2 l + 1`` (linear) (Yu & Koltun 2016). The receptive field alone hides a
problem: with *equal* rates ``d > 1`` the taps of every layer fall on the same sub-lattice, so
one output sees only every ``d``-th input pixel, the *gridding* effect (Wang et al. 2018).
:func:`tap_counts` shows it exactly: it counts, for every input pixel, the paths from it to one
output through a stack of all-ones kernels; zeros inside the field are the holes.

The receptive-field arithmetic for any chain of ``(kernel, stride, dilation)`` layers is
:func:`segbook.analysis.receptive_field`; :func:`dilated_stack` builds a chain to check it
against the gradient-measured :func:`segbook.analysis.empirical_receptive_field`.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checks import positive_int
from .conv import same_padding

__all__ = ["effective_kernel_size", "atrous_conv", "dilated_stack", "tap_counts"]


def _check_rates(rates: Sequence[int], kernel_size: int) -> tuple[int, ...]:
    rates = tuple(positive_int(r, f"rates[{i}]") for i, r in enumerate(rates))
    if not rates:
        raise ValueError("rates must be a non-empty sequence of positive ints, got an empty one")
    if positive_int(kernel_size, "kernel_size") % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd int, got {kernel_size!r}")
    return rates


def effective_kernel_size(kernel_size: int, dilation: int) -> int:
    """Pixels spanned by a dilated kernel: ``d (k - 1) + 1`` (3x3 at rate 2 spans 5, at rate 4 spans 9)."""
    for name, v in (("kernel_size", kernel_size), ("dilation", dilation)):
        positive_int(v, name)
    return dilation * (kernel_size - 1) + 1


def atrous_conv(in_channels: int, out_channels: int, kernel_size: int = 3, *, rate: int = 1, stride: int = 1,
                bias: bool = False) -> nn.Conv2d:
    """A ``Conv2d`` with atrous ``rate`` and "same" padding ``rate (k - 1) / 2``.

    Shapes: ``(N, in_channels, H, W) -> (N, out_channels, ceil(H / stride), ceil(W / stride))``.
    Its parameters do not depend on ``rate``.
    """
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=same_padding(kernel_size, rate),
                     dilation=rate, bias=bias)


def dilated_stack(rates: Sequence[int], *, channels: int = 1, kernel_size: int = 3) -> nn.Sequential:
    """Stride-1 atrous convolutions at ``rates`` (no non-linearity), ``channels`` -> ``channels``.

    Shapes: ``(N, channels, H, W) -> (N, channels, H, W)``.
    """
    rates = _check_rates(rates, kernel_size)
    return nn.Sequential(*[atrous_conv(channels, channels, kernel_size, rate=r) for r in rates])


@torch.no_grad()
def tap_counts(rates: Sequence[int], *, kernel_size: int = 3) -> torch.Tensor:
    """How many paths link each input pixel to one output of a stack of atrous ``k x k`` convs.

    Pushes an impulse through the stack with all-ones kernels (exact integers in float64). The
    result is ``(R, R)`` with ``R = 1 + sum_l d_l (k - 1)``, the receptive field; entry ``[u, v]``
    is the number of tap paths from input offset ``(u - R // 2, v - R // 2)`` to the output, so a
    zero inside the field is a pixel the output never sees (gridding).
    """
    rates = _check_rates(rates, kernel_size)
    size = 1 + sum(r * (kernel_size - 1) for r in rates)
    x = torch.zeros(1, 1, size, size, dtype=torch.float64)
    x[0, 0, size // 2, size // 2] = 1.0
    weight = torch.ones(1, 1, kernel_size, kernel_size, dtype=torch.float64)
    for r in rates:  # the all-ones kernel is symmetric, so correlation equals convolution
        x = F.conv2d(x, weight, padding=same_padding(kernel_size, r), dilation=r)
    return x[0, 0].round().long()
