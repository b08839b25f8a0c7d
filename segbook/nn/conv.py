"""Convolution building blocks shared by every model in the book.

``ConvBNAct`` is the conv -> batch norm -> activation unit that ResNet made standard (He et al.
2016: batch norm right after every convolution, before the non-linearity). ``same_padding``
gives the padding that keeps the spatial size for a stride-1 (possibly dilated) convolution, and
``make_divisible`` rounds channel counts the way EfficientNet/MobileNet reference code does.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch.nn as nn

__all__ = ["same_padding", "make_divisible", "ConvBNAct"]


def same_padding(kernel_size: int, dilation: int = 1) -> int:
    """Padding that keeps H and W unchanged for an odd kernel at stride 1.

    The effective kernel of a dilated convolution spans ``d * (k - 1) + 1`` pixels, so the padding
    on each side is ``d * (k - 1) // 2``.

    Raises:
        ValueError: for an even kernel, where no symmetric padding keeps the size.
    """
    if kernel_size < 1 or dilation < 1:
        raise ValueError(f"kernel_size and dilation must be >= 1, got {kernel_size}, {dilation}")
    if kernel_size % 2 == 0:
        raise ValueError(
            f"kernel_size={kernel_size} is even: no symmetric padding keeps the size; use an odd kernel"
        )
    return dilation * (kernel_size - 1) // 2


def make_divisible(value: float, divisor: int = 8, *, min_value: Optional[int] = None, round_limit: float = 0.9) -> int:
    """Round ``value`` to the nearest multiple of ``divisor`` without dropping more than 10%.

    This is the rounding of the TensorFlow MobileNet/EfficientNet reference code: hardware likes
    channel counts that are multiples of 8, and rounding down by more than ``1 - round_limit`` is
    undone by adding one ``divisor``.
    """
    if divisor < 1:
        raise ValueError(f"divisor must be >= 1, got {divisor}")
    min_value = divisor if min_value is None else min_value
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < round_limit * value:
        new_value += divisor
    return new_value


class ConvBNAct(nn.Sequential):
    """``Conv2d -> BatchNorm2d -> activation``, with "same" padding by default.

    Shapes: ``(N, in_channels, H, W) -> (N, out_channels, ceil(H / stride), ceil(W / stride))`` for odd kernels.

    Args:
        in_channels, out_channels: channel counts.
        kernel_size: odd kernel size.
        stride: convolution stride.
        dilation: atrous rate; the padding grows with it so the size is kept.
        groups: ``in_channels`` gives a depthwise convolution.
        act: activation factory (``nn.ReLU`` by default, ``None`` for no activation).
        bn: add batch norm (the convolution then has no bias, since BN's shift replaces it).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        *,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        act: Optional[Callable[[], nn.Module]] = nn.ReLU,
        bn: bool = True,
        padding: Optional[int] = None,
    ) -> None:
        pad = same_padding(kernel_size, dilation) if padding is None else padding
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=pad, dilation=dilation,
                      groups=groups, bias=not bn)
        ]
        if bn:
            layers.append(nn.BatchNorm2d(out_channels))
        if act is not None:
            layers.append(act())
        super().__init__(*layers)
        self.in_channels, self.out_channels = in_channels, out_channels
