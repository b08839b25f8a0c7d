"""Chapter 5 helpers: dense-CRF post-processing of a batch, scored and searched on held-out data.

The CRF itself is :func:`segbook.crf.dense_crf` (one image at a time, ``(H, W, 3)`` uint8 and
``(C, H, W)`` probabilities). These helpers apply it to a batch of network outputs, score the
labels with the book's metrics (mIoU and boundary F1), search a small grid of CRF parameters on a
held-out split, and time the backends.
"""
from __future__ import annotations

import itertools
import time
from typing import Mapping, Optional, Sequence

import numpy as np
import torch

from ..crf import dense_crf
from ..metrics import SegmentationMetrics

__all__ = ["to_uint8_hwc", "crf_refine", "segmentation_scores", "crf_grid_search", "seconds_per_image"]


def to_uint8_hwc(images: torch.Tensor) -> np.ndarray:
    """``[N, 3, H, W]`` float images in ``[0, 1]`` -> ``[N, H, W, 3]`` uint8 (the CRF's colour input)."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be a tensor [N, 3, H, W], got {getattr(images, 'shape', type(images))}")
    if not images.is_floating_point():
        raise TypeError(f"images must be float in [0, 1], got {images.dtype}")
    return (images.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def crf_refine(images: torch.Tensor, probs: torch.Tensor, *, backend: str = "auto", iterations: int = 10,
               **params) -> torch.Tensor:
    """Dense CRF on every image of a batch: ``images [N, 3, H, W]``, ``probs [N, C, H, W]`` -> ``[N, C, H, W]``.

    ``params`` go to :func:`segbook.crf.dense_crf` (kernel widths and weights). Runs on the CPU.
    """
    if not isinstance(probs, torch.Tensor) or probs.dim() != 4:
        raise ValueError(f"probs must be a tensor [N, C, H, W], got {getattr(probs, 'shape', type(probs))}")
    if probs.shape[0] != images.shape[0] or probs.shape[-2:] != images.shape[-2:]:
        raise ValueError(f"images {tuple(images.shape)} and probs {tuple(probs.shape)} differ in N, H or W")
    pixels = to_uint8_hwc(images)
    probs = probs.detach().float().cpu()
    out = [torch.as_tensor(dense_crf(img, p, backend=backend, iterations=iterations, **params))
           for img, p in zip(pixels, probs)]
    return torch.stack(out).float()


def segmentation_scores(pred: torch.Tensor, target: torch.Tensor, num_classes: int, *,
                        boundary_tolerance: int = 2) -> dict:
    """mIoU and boundary F1 of labels (or scores) ``pred`` ``[N, H, W]`` (``[N, C, H, W]``) against ``target``."""
    metrics = SegmentationMetrics(num_classes, boundary_tolerance=boundary_tolerance)
    metrics.update(pred, target)
    out = metrics.compute()
    return {"miou": out["miou"], "boundary_f1": out["boundary_f1"]}


def crf_grid_search(images: torch.Tensor, probs: torch.Tensor, target: torch.Tensor, num_classes: int,
                    grid: Mapping[str, Sequence], *, backend: str = "auto", base: Optional[Mapping] = None,
                    max_miou_drop: float = 0.0) -> tuple[dict, list[dict]]:
    """Try every combination of ``grid`` (CRF keyword -> values) on a held-out split and pick one.

    The score is boundary F1; a setting qualifies only if it lowers the split's mIoU by at most
    ``max_miou_drop`` relative to no CRF. Returns ``(best_params, rows)``, one row per setting
    with its mIoU and boundary F1 (and ``"no CRF"`` first); ``best_params`` is ``{}`` when no
    setting qualifies.
    """
    if not grid:
        raise ValueError("grid must name at least one CRF parameter with candidate values")
    base = dict(base or {})
    before = segmentation_scores(probs.argmax(1), target, num_classes)
    rows = [{"setting": "no CRF", **before}]
    best, best_bf1 = {}, -1.0
    keys = list(grid)
    for values in itertools.product(*(grid[k] for k in keys)):
        params = {**base, **dict(zip(keys, values))}
        refined = crf_refine(images, probs, backend=backend, **params)
        scores = segmentation_scores(refined.argmax(1), target, num_classes)
        rows.append({**dict(zip(keys, values)), **scores})
        if scores["miou"] >= before["miou"] - max_miou_drop and scores["boundary_f1"] > best_bf1:
            best, best_bf1 = params, scores["boundary_f1"]
    return best, rows


def seconds_per_image(images: torch.Tensor, probs: torch.Tensor, *, backend: str, repeats: int = 1,
                      **params) -> float:
    """Wall-clock seconds per image of :func:`crf_refine` with ``backend`` (best of ``repeats``)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        crf_refine(images, probs, backend=backend, **params)
        times.append((time.perf_counter() - start) / images.shape[0])
    return min(times)
