"""Figures for chapter 4 (U-Net sizes).

Each function takes a result from the chapter's study (or plain tensors) and returns the matplotlib
figure, so the chapter cell is one call.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from .core import show_segmentation

__all__: list[str] = ["show_augmented"]


def show_augmented(image: torch.Tensor, mask: torch.Tensor, samples: Sequence[tuple[torch.Tensor, torch.Tensor]], *,
                   class_names: Optional[Sequence[str]] = None, panel_size: float = 1.3):
    """A scene and its augmented draws, one row each: image | mask (:func:`show_segmentation`).

    Args:
        image: ``[3, H, W]``; mask: ``[H, W]`` (the first row).
        samples: ``[(image [3, H, W], mask [H, W]), ...]``, e.g. draws of
            :class:`segbook.data.SegmentationAugment` (one row each, below the scene).
        class_names: draws a colour legend when given.

    Returns:
        The matplotlib ``Figure``: ``1 + len(samples)`` rows of two panels.

    Raises:
        ValueError: no samples, or a sample whose image or mask does not have the scene's shape.
    """
    if not isinstance(image, torch.Tensor) or not isinstance(mask, torch.Tensor) or image.dim() != 3 \
            or mask.dim() != 2 or image.shape[-2:] != mask.shape:
        raise ValueError(f"expected image [3, H, W] and mask [H, W] of one size, got "
                         f"{tuple(getattr(image, 'shape', ()))} and {tuple(getattr(mask, 'shape', ()))}")
    samples = list(samples)
    if not samples:
        raise ValueError("samples is empty: pass at least one (image, mask) draw")
    for i, pair in enumerate(samples):
        if len(pair) != 2 or tuple(pair[0].shape) != tuple(image.shape) or tuple(pair[1].shape) != tuple(mask.shape):
            raise ValueError(f"sample {i} is not an (image {tuple(image.shape)}, mask {tuple(mask.shape)}) pair")
    return show_segmentation(torch.stack([image] + [s[0] for s in samples]),
                             torch.stack([mask] + [s[1] for s in samples]),
                             class_names=class_names, n=1 + len(samples), panel_size=panel_size)
