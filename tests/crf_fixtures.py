"""Synthetic inputs for the dense-CRF tests and benchmarks/bench_crf.py.

:func:`random_scene` paints a scene whose label edges are colour edges; :func:`noisy_probs` turns
true labels into network-like probabilities (soft boundaries, errors in blobs) for the CRF to clean.
Tests import this module directly (pytest puts tests/ on the path, as for fakedata.py); the
benchmark puts tests/ on ``sys.path`` first.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from segbook.crf import gaussian_blur

__all__ = ["random_scene", "noisy_probs"]


def random_scene(size: int = 64, num_classes: int = 21, *, seed: int = 0, objects: int = 10,
                 colour_noise: float = 8.0) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic scene for CRF tests: ``(image [H, W, 3] uint8, labels [H, W] int64)`` with ``H = W = size``.

    Class 0 is the background; ``objects`` rectangles and discs of random classes in ``1..C-1``
    are painted in turn (later ones occlude earlier ones). Every class has its own random colour,
    and each pixel gets Gaussian colour noise of std ``colour_noise``, so region edges are image
    edges, which is what the appearance kernel relies on.
    """
    if size < 8 or num_classes < 2 or objects < 0:
        raise ValueError(f"need size >= 8, num_classes >= 2, objects >= 0; got {size}, {num_classes}, {objects}")
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, size=(num_classes, 3))
    labels = np.zeros((size, size), np.int64)
    yy, xx = np.mgrid[:size, :size]
    for _ in range(objects):
        cls = int(rng.integers(1, num_classes))
        cy, cx = rng.uniform(0, size, 2)
        ry, rx = rng.uniform(size / 12, size / 4, 2)
        if rng.random() < 0.5:
            inside = (np.abs(yy - cy) <= ry) & (np.abs(xx - cx) <= rx)
        else:
            inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= ry ** 2
        labels[inside] = cls
    image = palette[labels] + rng.normal(0, colour_noise, (size, size, 3))
    return np.clip(np.round(image), 0, 255).astype(np.uint8), labels


def noisy_probs(labels: Any, num_classes: int, *, seed: int = 0, edge_sigma: float = 2.0,
                noise: float = 1.5, noise_sigma: float = 1.5, confidence: float = 4.0) -> np.ndarray:
    """Network-like probabilities for true ``labels`` ``[H, W]``: ``[C, H, W]`` float32 numpy, summing to 1.

    ``logits = confidence * blur(onehot(labels), edge_sigma) + noise * z``, ``z`` unit-variance
    Gaussian noise blurred by ``noise_sigma`` (errors come in blobs, as a network's do), then a
    softmax. Blurring the one-hot labels makes boundaries soft, which is what a CRF sharpens.
    """
    lab = torch.as_tensor(np.asarray(labels)).long()
    if lab.ndim != 2 or lab.min() < 0 or lab.max() >= num_classes:
        raise ValueError(f"labels must be [H, W] in [0, {num_classes}), got shape {tuple(lab.shape)}")
    h, w = lab.shape
    gen = torch.Generator().manual_seed(seed)

    def smooth(x: torch.Tensor, sigma: float) -> torch.Tensor:
        if sigma <= 0:
            return x
        blurred = gaussian_blur(x.permute(1, 2, 0), sigma) / gaussian_blur(torch.ones(h, w, 1), sigma)
        return blurred.permute(2, 0, 1)

    onehot = _one_hot(lab, num_classes)
    z = smooth(torch.randn(num_classes, h, w, generator=gen), noise_sigma)
    z = z / z.std().clamp_min(1e-12)
    logits = confidence * smooth(onehot, edge_sigma) + noise * z
    return torch.softmax(logits, 0).numpy().astype(np.float32)


def _one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(labels, num_classes).permute(2, 0, 1).float()
