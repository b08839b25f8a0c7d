"""The permutohedral lattice: approximate high-dimensional Gaussian filtering in linear time.

The ``"lattice"`` backend filters the appearance kernel (5-D features: position and colour) with
it; pydensecrf filters both kernels with the C++ original.
"""
from __future__ import annotations

import math
import warnings

import torch

__all__ = ["PermutohedralLattice"]


class PermutohedralLattice:
    """Fast Gaussian filtering ``out_i ~ sum_j exp(-|f_i - f_j|^2 / 2) v_j`` in ``O(N d^2)`` (Adams et al. 2010).

    The idea: lift the ``d``-dimensional features onto the hyperplane ``x . 1 = 0`` of
    ``R^(d+1)``, which is tiled by simplices whose vertices are the integer points of the
    permutohedral lattice. Each pixel *splats* its value onto the ``d + 1`` vertices of its simplex
    with barycentric weights; the lattice is *blurred* with a ``[1/2, 1, 1/2]`` kernel along each of
    its ``d + 1`` axes (together an approximate Gaussian); each pixel *slices* the result back with
    the same weights. Only occupied vertices exist, at most ``N (d + 1)``, so memory is linear.

    This follows Kraehenbuehl's C++ (the scale of the features, the blur and the constant ``alpha``)
    so that it agrees with pydensecrf. The hash table is a sorted array of packed integer keys
    (``torch.unique``) searched with ``torch.searchsorted``; all steps are tensor ops, so it runs on
    CPU and CUDA, and :meth:`filter` is differentiable with respect to the values (not the features).

    Args:
        features: ``[N, d]`` features, already divided by the kernel's standard deviations.
    """

    def __init__(self, features: torch.Tensor) -> None:
        if features.ndim != 2:
            raise ValueError(f"features must be [N, d], got {tuple(features.shape)}")
        n, d = features.shape
        dev = features.device
        f = features.double() if features.dtype == torch.float64 else features.float()
        # scale so that the lattice blur approximates a unit Gaussian (Adams et al., Sec. 3.1)
        inv_std = math.sqrt(2.0 / 3.0) * (d + 1)
        i = torch.arange(d, device=dev, dtype=f.dtype)
        cf = f * (inv_std / torch.sqrt((i + 1) * (i + 2)))  # [N, d]
        # elevate: E = [sum_{k>=0} cf_k, ..., sum_{k>=j} cf_k - j cf_{j-1}, ...], a point with sum 0
        suffix = torch.cat([cf.flip(1).cumsum(1).flip(1), torch.zeros(n, 1, device=dev, dtype=f.dtype)], 1)
        j = torch.arange(1, d + 1, device=dev, dtype=f.dtype)
        elevated = suffix.clone()
        elevated[:, 1:] -= j * cf
        # nearest remainder-0 point (coordinates that are multiples of d+1), then its rank order
        up = torch.ceil(elevated / (d + 1)) * (d + 1)
        down = torch.floor(elevated / (d + 1)) * (d + 1)
        rem0 = torch.where(up - elevated < elevated - down, up, down)
        total = torch.round(rem0.sum(1, keepdim=True) / (d + 1)).long()  # [N, 1]
        diff = elevated - rem0
        idx = torch.arange(d + 1, device=dev)
        later = idx[None, :] > idx[:, None]  # [i, j]: j > i
        di, dj = diff[:, :, None], diff[:, None, :]
        rank = ((later & (dj > di)) | (~later & (idx[None, :] != idx[:, None]) & (dj >= di))).sum(2)  # [N, d+1]
        rem0 = rem0.long()
        # walk back onto the hyperplane where the rounding left it off
        pos, neg = total > 0, total < 0
        wrap_pos = pos & (rank >= d + 1 - total)
        wrap_neg = neg & (rank < -total)
        rem0 = rem0 - (d + 1) * wrap_pos.long() + (d + 1) * wrap_neg.long()
        rank = rank + total - (d + 1) * wrap_pos.long() + (d + 1) * wrap_neg.long()
        # barycentric coordinates of the point in its simplex
        v = (elevated - rem0.to(f.dtype)) / (d + 1)
        bary = torch.zeros(n, d + 2, device=dev, dtype=f.dtype)
        bary.scatter_add_(1, d - rank, v)
        bary.scatter_add_(1, d + 1 - rank, -v)
        bary[:, 0] += 1 + bary[:, d + 1]
        self.weights = bary[:, : d + 1].contiguous()  # [N, d+1]
        # the d+1 vertices: rem0 + the canonical simplex's vertex `remainder`, permuted by rank
        r = torch.arange(d + 1, device=dev)
        canonical = torch.where(idx[None, :] <= d - r[:, None], r[:, None], r[:, None] - (d + 1))  # [rem, k]
        keys = rem0[:, None, :d] + canonical[:, rank[:, :d]].permute(1, 0, 2)  # [N, d+1, d]
        keys = keys.reshape(-1, d)
        # hash: pack the d coordinates into one int64 (with room for neighbours at +-d)
        lo = keys.min(0).values - (d + 1)
        span = keys.max(0).values - lo + (d + 2)
        strides = torch.cumprod(torch.cat([span.new_ones(1), span[:-1]]), 0)
        if float(torch.prod(span.double())) >= 2.0 ** 62:
            raise ValueError("features span too large a range for the lattice's int64 keys; "
                             "are they divided by the kernel's standard deviations?")
        packed = ((keys - lo) * strides).sum(1)
        table, offsets = torch.unique(packed, sorted=True, return_inverse=True)
        self.num_points = m = table.numel()
        # neighbours along each lattice axis: key -1 everywhere but +d on axis j (and the reverse);
        # a vertex that no pixel occupies holds zero, so its entries are simply left out
        uniq_keys = torch.stack([(table // strides[k]) % span[k] for k in range(d)], 1) + lo  # [M, d]
        step = torch.full((d + 1, d), -1, device=dev, dtype=torch.long)
        step[torch.arange(d), torch.arange(d)] = d
        # The three steps as sparse CSR matrices, built directly (rows sorted, columns sorted within
        # rows): slice [N, M] has the d+1 vertices of each pixel in its row; splat [M, N] is its
        # transpose; blur along axis j [M, M] has 1 on the diagonal and 1/2 at the two neighbours.
        self._pixels = n
        cols, order = offsets.view(n, d + 1).sort(1)
        self._slice_structure = (torch.arange(0, n * (d + 1) + 1, d + 1, device=dev), cols.reshape(-1))
        self._slice_order = (order + torch.arange(n, device=dev)[:, None] * (d + 1)).reshape(-1)
        flat = offsets.reshape(-1)
        by_vertex = torch.sort(flat, stable=True).indices
        self._splat_structure = (self._crow(torch.bincount(flat, minlength=m)), by_vertex // (d + 1))
        self._splat_order = by_vertex
        rows = torch.arange(m, device=dev)
        self._blur_structure = []
        for axis in range(d + 1):
            entries = [rows]
            for sign in (1, -1):
                q = ((uniq_keys + sign * step[axis] - lo) * strides).sum(1)
                pos = torch.searchsorted(table, q).clamp_max_(m - 1)
                entries.append(torch.where(table[pos] == q, pos, m))  # m: no such vertex
            entries, _ = torch.stack(entries, 1).sort(1)  # [M, 3], missing ones last
            present = entries < m
            diagonal = entries == rows[:, None]
            self._blur_structure.append((self._crow(present.sum(1)), entries[present], diagonal[present]))
        self.alpha = 1.0 / (1.0 + 2.0 ** (-d))
        self.d = d
        self._matrices: dict = {}

    @staticmethod
    def _crow(counts: torch.Tensor) -> torch.Tensor:
        return torch.cat([counts.new_zeros(1), counts.cumsum(0)])

    @staticmethod
    def _csr(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
        with warnings.catch_warnings():  # "sparse CSR support is in beta": matrix @ dense is all we use
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)

    def matrices(self, dtype: torch.dtype) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        """The filter as sparse CSR matrices ``(splat [M, N], blurs [M, M] x (d+1), slice [N, M])`` in ``dtype``.

        ``filter(v) = slice @ blur_d @ ... @ blur_0 @ splat @ v``; ``slice = alpha * splat^T``.
        """
        if dtype not in self._matrices:
            n, m = self._pixels, self.num_points
            w = self.weights.reshape(-1).to(dtype)
            splat = self._csr(*self._splat_structure, w[self._splat_order], (m, n))
            slice_ = self._csr(*self._slice_structure, w[self._slice_order] * self.alpha, (n, m))
            blurs = []
            for crow, col, diagonal in self._blur_structure:
                vals = torch.where(diagonal, 1.0, 0.5).to(dtype)
                blurs.append(self._csr(crow, col, vals, (m, m)))
            self._matrices[dtype] = (splat, blurs, slice_)
        return self._matrices[dtype]

    def filter(self, values: torch.Tensor) -> torch.Tensor:
        """``[N, V] -> [N, V]``: splat, blur along the ``d + 1`` lattice axes, slice (sparse matrix products)."""
        splat, blurs, slice_ = self.matrices(values.dtype)
        lattice = splat @ values
        for blur in blurs:
            lattice = blur @ lattice
        return slice_ @ lattice
