"""Tools on label masks ``[H, W]``: connected regions, and regions counted per class.

Semantic segmentation gives every pixel of a class the same label, so two touching discs are one
region and a label map alone does not say how many objects it shows; :func:`instances_per_class`
counts the separate regions, which is what chapter 2 uses to make that point.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from .checks import positive_int

__all__ = ["connected_components", "instances_per_class"]


def _check_mask(mask: torch.Tensor, name: str = "mask") -> torch.Tensor:
    if isinstance(mask, np.ndarray):
        mask = torch.from_numpy(mask)
    if not isinstance(mask, torch.Tensor) or mask.dim() != 2:
        raise ValueError(f"{name} must be a 2-D tensor [H, W], got {getattr(mask, 'shape', type(mask))}")
    if mask.is_floating_point():
        raise TypeError(f"{name} must hold integer labels or booleans, got {mask.dtype}")
    return mask


def connected_components(mask: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Label the 4-connected regions of a boolean mask.

    Shapes: ``[H, W]`` bool -> (labels int64 ``[H, W]`` with 0 outside the mask and ``1..n`` for
    the ``n`` regions in raster order of their first pixel, ``n``).

    Pure torch: every pixel starts with its own index and repeatedly takes the smallest index
    among its 4 neighbours inside the mask until nothing changes.
    """
    mask = _check_mask(mask).bool()
    h, w = mask.shape
    big = h * w + 1
    labels = torch.where(mask, torch.arange(h * w).reshape(h, w), torch.full((h, w), big))
    while True:
        padded = F.pad(labels[None, None].float(), (1, 1, 1, 1), value=float(big))[0, 0].long()
        neighbours = torch.stack([padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:], labels])
        new = torch.where(mask, neighbours.min(0).values, labels)
        if torch.equal(new, labels):
            break
        labels = new
    roots = torch.unique(labels[mask])  # sorted: raster order of each region's first pixel
    out = torch.zeros(h, w, dtype=torch.int64)
    if roots.numel():
        out[mask] = torch.searchsorted(roots, labels[mask]) + 1
    return out, int(roots.numel())


def instances_per_class(mask: torch.Tensor, num_classes: int, *, background: Optional[int] = 0,
                        min_pixels: int = 1) -> list[int]:
    """Number of separate (4-connected) regions of each class in a label mask ``[H, W]``.

    Returns a list of ``num_classes`` counts; the ``background`` class (0 by default) counts as 0.
    Regions smaller than ``min_pixels`` (slivers left by occlusion) are not counted. Touching
    objects of one class merge into one region and an occluded object may split in two: the label
    map alone does not say which pixels form one object, which is the point of the count.
    """
    mask = _check_mask(mask)
    num_classes = positive_int(num_classes, "num_classes")
    min_pixels = positive_int(min_pixels, "min_pixels")
    counts = []
    for k in range(num_classes):
        if k == background:
            counts.append(0)
            continue
        labels, n = connected_components(mask == k)
        sizes = torch.bincount(labels.flatten(), minlength=n + 1)[1:]
        counts.append(int((sizes >= min_pixels).sum()))
    return counts
