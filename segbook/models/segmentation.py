"""What every segmentation model of the book shares: one forward, the early input check, the final resize.

A segmentation net maps images ``[N, C_in, H, W]`` to logits ``[N, K, H, W]`` at the input size.
:class:`SegmentationModel` (as ``SegmentationModel`` of segmentation_models.pytorch and
``_SimpleSegmentationModel`` of torchvision) writes the forward once::

    check_input(x) -> features = encode(x) -> logits = decode(features) -> resize_output(logits, x)

``encode`` is the backbone, ``decode`` the decoder and the classifier head, ``resize_output``
brings the logits to the input size. DeepLab and FCN implement ``decode`` (FCN also its
``resize_output``); U-Net overrides ``encode``, ``decode`` and ``resize_output`` for its input
policies. Two things go wrong in practice, and both should fail loudly and early rather than
deep inside torch (the U-Net 7 -> 3 -> 6 size mismatch, a batch norm on one value, a wrong
channel count):

* the input is not what the model takes: rank, dtype, channels, or a spatial size that is too
  small or not a multiple of what the architecture needs. :func:`check_images` raises an error
  that names the nearest sizes that work (as segmentation_models.pytorch does;
  :func:`check_spatial_sizes` writes that message for any rule);
* the logits come out at a coarser size. :func:`resize_to_input` resizes them with
  ``size=x.shape[-2:]`` (never a bare ``scale_factor``, which rounds odd sizes wrongly).
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checks import batch_norm_batch_of_one, positive_int

__all__ = ["nearest_valid_sizes", "check_spatial_sizes", "check_images", "resize_to_input", "SegmentationModel"]


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


def check_spatial_sizes(x: torch.Tensor, is_valid: Callable[[int], bool],
                        nearest: Callable[[int], tuple[Optional[int], int]], *, name: str, rule: str, fix: str) -> None:
    """Raise a ``ValueError`` naming, for each side of ``x [..., H, W]`` that does not work, the nearest sizes that do.

    Args:
        x: the input batch (only ``x.shape[-2:]`` is read).
        is_valid: ``is_valid(n)`` is true when the model takes a side of ``n`` pixels.
        nearest: ``nearest(n) -> (below, above)``, the nearest valid sides ``<= n`` and ``>= n``
            (``below`` is ``None`` when none lies below), e.g. :func:`nearest_valid_sizes` or
            :func:`segbook.sizes.nearest_valid_unet_sizes` with the model's arguments.
        name: the model's name for the message.
        rule: what a side must be, e.g. ``"each side must be at least 32"``.
        fix: the last sentence, what to do instead.

    Example message: ``"UNet cannot take a 65x64 input: each side must be at least 8 and a multiple
    of 8; got height 65 (nearest that work: 64 or 72). Pad or resize the input, ..."``.
    """
    bad = []
    for axis, n in zip(("height", "width"), x.shape[-2:]):
        n = int(n)
        if not is_valid(n):
            below, above = nearest(n)
            options = " or ".join(str(s) for s in (below, above) if s is not None)
            bad.append(f"{axis} {n} (nearest that work: {options})")
    if bad:
        raise ValueError(f"{name} cannot take a {x.shape[-2]}x{x.shape[-1]} input: {rule}; got {'; '.join(bad)}. {fix}")


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
    rule = f"each side must be at least {min_size}" + (f" and a multiple of {multiple}" if multiple > 1 else "")
    check_spatial_sizes(x, lambda n: n >= min_size and n % multiple == 0,
                        lambda n: nearest_valid_sizes(n, multiple, min_size), name=name, rule=rule,
                        fix="Pad or resize the input, or crop it to a size that works.")


def resize_to_input(logits: torch.Tensor, x: torch.Tensor, *, mode: str = "bilinear") -> torch.Tensor:
    """Resize ``logits [N, K, h, w]`` to the input's ``x.shape[-2:]`` (a no-op when they match)."""
    if logits.shape[-2:] == x.shape[-2:]:
        return logits
    align = False if mode in ("bilinear", "bicubic") else None
    return F.interpolate(logits, size=x.shape[-2:], mode=mode, align_corners=align)


class SegmentationModel(nn.Module):
    """Base class: ``forward(x [N, in_channels, H, W]) -> logits [N, num_classes, H, W]``, written once.

    ``forward`` runs :meth:`check_input`, :meth:`encode` (``self.backbone(x)`` by default),
    :meth:`decode` (decoder and head; subclasses implement it) and :meth:`resize_output`
    (bilinear to ``x.shape[-2:]`` by default). Subclasses set ``num_classes``, ``in_channels``,
    ``min_input_size``, ``size_multiple`` and :attr:`total_stride`, and override only the steps
    that differ (U-Net: its input policies pad the input and crop the logits).
    """

    num_classes: int = 0
    in_channels: int = 3
    min_input_size: int = 1
    size_multiple: int = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        self.check_input(x)
        features = self.encode(x)
        logits = self.decode(features)
        return self.resize_output(logits, x)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a clear error unless ``x`` is a batch this model takes (see :func:`check_images`).

        In training mode a batch of one image whose coarsest map (at :attr:`total_stride`) has one
        value per channel is refused too (its batch norm cannot normalise a single value).
        """
        check_images(x, in_channels=self.in_channels, min_size=self.min_input_size,
                     multiple=self.size_multiple, name=type(self).__name__)
        coarse = [s // max(self.total_stride, 1) for s in x.shape[-2:]]
        why = batch_norm_batch_of_one(self, x.shape[0], values_per_channel=coarse[0] * coarse[1])
        if why:
            raise ValueError(f"{type(self).__name__} in training mode got a batch of one {x.shape[-2]}x{x.shape[-1]} "
                             f"image, whose coarsest map (stride {self.total_stride}) has one value per channel: "
                             f"{why}, a larger image, or model.eval() for inference")

    def encode(self, x: torch.Tensor) -> Any:
        """The backbone's features of ``x [N, in_channels, H, W]`` (``self.backbone(x)``)."""
        return self.backbone(x)

    def decode(self, features: Any) -> torch.Tensor:
        """Decoder and head: ``features -> logits [N, num_classes, h, w]`` (``h, w`` may be coarser than the input)."""
        raise NotImplementedError(f"{type(self).__name__} must implement decode(features) -> logits")

    def resize_output(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``logits [N, K, h, w] -> [N, K, H, W]`` at the input's size (:func:`resize_to_input`, bilinear)."""
        return resize_to_input(logits, x)

    @property
    def total_stride(self) -> int:
        """The coarsest feature map's stride (subclasses override; 1 when unknown)."""
        return 1
