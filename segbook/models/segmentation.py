"""What every segmentation model of the book shares: the early input check and the final resize.

A segmentation net maps images ``[N, C_in, H, W]`` to logits ``[N, K, H, W]`` at the input size.
Two things go wrong in practice, and both should fail loudly and early rather than deep inside
torch (the U-Net 7 -> 3 -> 6 size mismatch, a batch norm on one value, a wrong channel count):

* the input is not what the model takes: rank, dtype, channels, or a spatial size that is too
  small or not a multiple of what the architecture needs. :func:`check_images` raises an error
  that names the nearest sizes that work (as segmentation_models.pytorch does);
* the logits come out at a coarser size. :func:`resize_to_input` resizes them with
  ``size=x.shape[-2:]`` (never a bare ``scale_factor``, which rounds odd sizes wrongly).

:class:`SegmentationModel` bundles both for subclasses: set ``min_input_size`` and
``size_multiple`` and call ``self.check_input(x)`` first in ``forward``.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checks import positive_int

__all__ = ["nearest_valid_sizes", "check_images", "resize_to_input", "SegmentationModel"]


def nearest_valid_sizes(size: int, multiple: int, min_size: int = 1) -> tuple[Optional[int], int]:
    """The nearest sizes ``<= size`` and ``>= size`` that are multiples of ``multiple`` and ``>= min_size``.

    Returns ``(below, above)``; ``below`` is ``None`` when no valid size lies below ``size``.
    Example: ``nearest_valid_sizes(100, 16) == (96, 112)``.
    """
    for name, v in (("size", size), ("multiple", multiple), ("min_size", min_size)):
        positive_int(v, name)
    lowest = -(-min_size // multiple) * multiple  # the smallest valid size
    above = max(lowest, -(-size // multiple) * multiple)
    below = (size // multiple) * multiple
    return (below if below >= lowest else None), above


def check_images(x: torch.Tensor, *, in_channels: Optional[int] = None, min_size: int = 1,
                 multiple: int = 1, name: str = "model") -> None:
    """Raise a clear error unless ``x`` is a float batch ``[N, in_channels, H, W]`` of a size the model takes.

    Args:
        x: the input batch.
        in_channels: expected channels (``None``: any).
        min_size: smallest ``H`` and ``W`` the model takes.
        multiple: ``H`` and ``W`` must be multiples of this (1: any size).
        name: the model's name for the message.

    Raises:
        TypeError: not a tensor, or not floating point.
        ValueError: wrong rank or channels, or a size that does not work; the message names the
            nearest valid sizes below and above.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} expects a torch.Tensor of images [N, C, H, W], got {type(x).__name__}")
    c = "C" if in_channels is None else in_channels
    if x.dim() != 4:
        hint = " (a single image? add a batch dimension with x.unsqueeze(0))" if x.dim() == 3 else ""
        raise ValueError(f"{name} expects images [N, {c}, H, W], got shape {tuple(x.shape)}{hint}")
    if not x.is_floating_point():
        raise TypeError(f"{name} expects float images (scaled to [0, 1]), got {x.dtype}; use x.float() / 255")
    if in_channels is not None and x.shape[1] != in_channels:
        raise ValueError(f"{name} expects {in_channels} input channels, got {x.shape[1]} (shape {tuple(x.shape)})")
    bad = []
    for axis, n in zip(("height", "width"), x.shape[-2:]):
        n = int(n)
        if n < min_size or n % multiple:
            below, above = nearest_valid_sizes(n, multiple, min_size)
            options = " or ".join(str(s) for s in (below, above) if s is not None)
            bad.append(f"{axis} {n} (nearest that work: {options})")
    if bad:
        rule = f"at least {min_size}" + (f" and a multiple of {multiple}" if multiple > 1 else "")
        raise ValueError(
            f"{name} cannot take a {x.shape[-2]}x{x.shape[-1]} input: each side must be {rule}; "
            f"got {'; '.join(bad)}. Pad or resize the input, or crop it to a size that works."
        )


def resize_to_input(logits: torch.Tensor, x: torch.Tensor, *, mode: str = "bilinear") -> torch.Tensor:
    """Resize ``logits [N, K, h, w]`` to the input's ``x.shape[-2:]`` (a no-op when they match)."""
    if logits.shape[-2:] == x.shape[-2:]:
        return logits
    align = False if mode in ("bilinear", "bicubic") else None
    return F.interpolate(logits, size=x.shape[-2:], mode=mode, align_corners=align)


class SegmentationModel(nn.Module):
    """Base class: ``forward(x [N, in_channels, H, W]) -> logits [N, num_classes, H, W]``.

    Subclasses set ``num_classes``, ``in_channels``, ``min_input_size`` and ``size_multiple`` and
    call :meth:`check_input` at the top of ``forward`` (and :func:`resize_to_input` at the end).
    """

    num_classes: int = 0
    in_channels: int = 3
    min_input_size: int = 1
    size_multiple: int = 1

    def check_input(self, x: torch.Tensor) -> None:
        check_images(x, in_channels=self.in_channels, min_size=self.min_input_size,
                     multiple=self.size_multiple, name=type(self).__name__)
        if self.training and x.shape[0] == 1 and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.modules()):
            coarse = [s // max(self.total_stride, 1) for s in x.shape[-2:]]
            if coarse[0] * coarse[1] <= 1:
                raise ValueError(
                    f"{type(self).__name__} in training mode got a batch of one {x.shape[-2]}x{x.shape[-1]} image: "
                    "batch norm cannot normalise a single value per channel at the coarsest level. "
                    "Use a batch of 2 or more (DataLoader(drop_last=True) avoids a last batch of one), "
                    "a larger image, or call model.eval() for inference."
                )

    @property
    def total_stride(self) -> int:
        """The coarsest feature map's stride (subclasses override; 1 when unknown)."""
        return 1
