"""The CRF's Gaussian kernels summed exactly: pixel features, the ``O(N^2)`` kernel, the separable blur.

* :func:`pixel_features`: each pixel's kernel features, ``(x, y)`` or ``(x, y, r, g, b)`` divided
  by the kernel's standard deviations (pydensecrf's order).
* :class:`ExactKernel`: ``sum_j exp(-|f_i - f_j|^2 / 2) v_j`` over all pixel pairs (the ``"exact"``
  backend; the reference in tests).
* :func:`gaussian_blur`: the same sum for position-only features (the smoothness kernel), exact
  and linear in the pixels, because a 2-D Gaussian factorises into two 1-D ones.
"""
from __future__ import annotations

import math
from typing import Optional

import torch

__all__ = ["pixel_features", "ExactKernel", "gaussian_blur"]


def pixel_features(image: torch.Tensor, sxy: float, srgb: Optional[float], dtype: torch.dtype) -> torch.Tensor:
    """Per-pixel features ``[H*W, 2 or 5]``: ``(x/sxy, y/sxy[, r/srgb, g/srgb, b/srgb])``, pydensecrf's order."""
    h, w = image.shape[:2]
    ys, xs = torch.meshgrid(torch.arange(h, device=image.device, dtype=dtype),
                            torch.arange(w, device=image.device, dtype=dtype), indexing="ij")
    feats = [xs.reshape(-1, 1) / sxy, ys.reshape(-1, 1) / sxy]
    if srgb is not None:
        feats.append(image.reshape(-1, 3).to(dtype) / srgb)
    return torch.cat(feats, 1)


class ExactKernel:
    """``K Q`` with ``K_ij = exp(-|f_i - f_j|^2 / 2)`` summed literally over all pixel pairs, in row chunks.

    ``chunk_bytes`` bounds the memory of one block of kernel rows; the whole normalised kernel is
    cached when it fits in ``cache_bytes`` (small images), which makes iterations a matrix product.
    """

    def __init__(self, feats: torch.Tensor, chunk_bytes: int = 64 << 20, cache_bytes: int = 64 << 20) -> None:
        self.f = feats - feats.mean(0)  # centred: smaller numbers in |a|^2 + |b|^2 - 2ab
        self.sq = (self.f ** 2).sum(1)
        n = self.f.shape[0]
        self.rows = max(1, chunk_bytes // (n * self.f.element_size()))
        self.full = None
        if n * n * self.f.element_size() <= cache_bytes:
            self.full = self._block(0, n)

    def _block(self, start: int, stop: int) -> torch.Tensor:
        a = self.f[start:stop]
        d2 = (self.sq[start:stop, None] + self.sq[None, :] - 2 * a @ self.f.T).clamp_min_(0)
        return d2.mul_(-0.5).exp_()

    def __call__(self, values: torch.Tensor) -> torch.Tensor:
        """``[N, V] -> [N, V]``: ``sum_j K_ij values_j``."""
        if self.full is not None:
            return self.full @ values
        n = self.f.shape[0]
        return torch.cat([self._block(s, min(n, s + self.rows)) @ values for s in range(0, n, self.rows)])


def _gaussian_taps(sigma: float, radius: int, device, dtype) -> torch.Tensor:
    k = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    return torch.exp(-(k ** 2) / (2 * sigma ** 2))


def gaussian_blur(x: torch.Tensor, sigma: float, truncate: float = 5.0) -> torch.Tensor:
    """Unnormalised Gaussian sum over pixels, ``out_i = sum_j exp(-|p_i - p_j|^2 / (2 sigma^2)) x_j``: ``[H, W, V] -> [H, W, V]``.

    The 2-D Gaussian factorises into 1-D Gaussians along rows and columns, so the sum is two 1-D
    depthwise convolutions with zero padding (pixels outside the image do not exist). Taps stop at
    ``truncate * sigma`` (5 sigma: the dropped tail weighs under 1e-5 of the kernel) or at the image
    size, where the sum is exact. Channels last (``[H, W, V]``), the layout in which a CPU runs
    depthwise convolutions fastest and the one the lattice filter uses.
    """
    h, w, v = x.shape
    out = x.permute(2, 0, 1).unsqueeze(0)  # [1, V, H, W], channels_last in memory
    for dim, size in ((3, w), (2, h)):
        r = min(int(math.ceil(truncate * sigma)), size - 1)
        if r == 0:
            continue
        taps = _gaussian_taps(sigma, r, x.device, x.dtype)
        if dim == 3:
            weight, padding = taps.view(1, 1, 1, -1).expand(v, 1, 1, -1), (0, r)
        else:
            weight, padding = taps.view(1, 1, -1, 1).expand(v, 1, -1, 1), (r, 0)
        weight = weight.contiguous(memory_format=torch.channels_last)
        out = torch.nn.functional.conv2d(out.contiguous(memory_format=torch.channels_last), weight,
                                         padding=padding, groups=v)
    return out[0].permute(1, 2, 0)
