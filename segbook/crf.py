"""Fully connected (dense) CRF post-processing of segmentation probabilities.

The model (Kraehenbuehl & Koltun 2011). Every pixel ``i`` takes a label ``x_i`` among ``C``; the
energy of a labelling is

    E(x) = sum_i psi_u(x_i) + sum_{i<j} mu(x_i, x_j) k(f_i, f_j)

with unaries ``psi_u = -log p_i`` from the network's probabilities, the Potts compatibility
``mu(a, b) = [a != b]`` and a kernel that is a weighted sum of two Gaussians over pixel features::

    k(i, j) = w_g exp(-|p_i - p_j|^2 / (2 sxy_g^2))                                (smoothness)
            + w_b exp(-|p_i - p_j|^2 / (2 sxy_b^2) - |I_i - I_j|^2 / (2 srgb^2))   (appearance)

``p`` is the position (x, y) in pixels and ``I`` the colour (r, g, b) in 0..255. Nearby pixels of
similar colour are pushed towards the same label, so labels snap to image edges.

Mean-field inference approximates the posterior by a product ``Q(x) = prod_i Q_i(x_i)`` and
iterates (``Q`` starts as the softmax of ``-psi_u``, i.e. the network's own probabilities)::

    Q_i(l) <- softmax_l( -psi_u(i, l) + sum_m w_m sum_j kbar_m(i, j) Q_j(l) )

This is Potts written as a reward for agreeing labels, ``-w [a == b]``, which differs from
``w [a != b]`` by a per-pixel constant that the softmax removes. ``kbar_m`` is kernel ``m``
normalised as in pydensecrf's default ``NORMALIZE_SYMMETRIC``::

    kbar(i, j) = n_i k(i, j) n_j,     n_i = (sum_j k(i, j))^(-1/2)

The inner sum over all ``N`` pixels (the message passing) is the only expensive step: ``O(N^2)``
done literally, ``O(N)`` with a high-dimensional Gaussian filter. Backends:

* ``"pydensecrf"``: the authors' C++ code through the ``pydensecrf`` module (distribution
  ``pydensecrf2``; ``pip install "segbook[crf]"``). Both kernels are filtered on a permutohedral
  lattice (approximate Gaussians), CPU only, no gradients.
* ``"exact"``: the sums above computed literally in torch, in row chunks so memory stays bounded
  (``O(N^2)`` time: small images only). It is the reference in tests. CPU or CUDA, differentiable.
* ``"lattice"``: pure torch, memory linear in ``N``. The smoothness kernel is an exact separable
  Gaussian (two 1-D depthwise convolutions, taps to 5 sigma, see :func:`gaussian_blur`); the
  appearance kernel is filtered on a permutohedral lattice (Adams, Baek & Davis 2010; the
  algorithm and constants of Kraehenbuehl's C++ code) built with ``torch.unique`` /
  ``torch.searchsorted`` as the hash table; splat, blur and slice are sparse (CSR) matrix
  products. CPU or CUDA, differentiable with respect to the unaries and the kernel weights (not
  the image or the standard deviations, which only shape the lattice).
* ``"auto"``: ``"lattice"`` when gradients are needed or the probabilities are on a GPU, else
  ``"pydensecrf"`` when it is installed (the faster one on a 2-core CPU), else ``"lattice"``.
  With many CPU cores the lattice backend can be the faster one (see benchmarks/bench_crf.py).

The lattice (and so pydensecrf) only approximates the Gaussian: filtering an impulse gives a
bump whose width varies by about +-5% with direction and position. Refined labels still agree
with the exact backend on all but a small share of pixels (see tests/test_crf.py); where the
network's input is nearly tied between classes, mean field can tip either way, and the backends
differ most there.

Where this departs from the paper: the paper's sum runs over ``j != i``; pydensecrf's filtering
(and therefore every backend here, to agree with it) includes ``j = i``, and it normalises the
kernels symmetrically. Unaries use probabilities clipped below at ``1e-5`` (as
``pydensecrf.utils.unary_from_softmax``) so that ``-log p`` stays finite.

Defaults: 10 iterations, smoothness ``sxy=3, w=3``, appearance ``sxy=80, srgb=13, w=10``: the
values of pydensecrf's README example, common in DeepLab reimplementations. DeepLab (Chen
et al. 2015) fixed the smoothness kernel at ``w = sxy = 3`` and chose the appearance kernel's
three numbers by cross-validation on 100 held-out VOC val images; for other data and image sizes
they are a starting point to tune on held-out data, not a constant.
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Callable, Optional, Union

import numpy as np
import torch

from .checks import positive_int

__all__ = [
    "BACKENDS",
    "PROB_FLOOR",
    "dense_crf",
    "mean_field",
    "mean_field_iterates",
    "unary_from_probs",
    "resolve_backend",
    "pydensecrf_available",
    "PermutohedralLattice",
    "gaussian_blur",
    "random_scene",
    "noisy_probs",
]

#: Backend names accepted by :func:`dense_crf` (besides ``"auto"``).
BACKENDS = ("pydensecrf", "exact", "lattice")

#: Probabilities are clipped below at this value before ``-log`` (as pydensecrf's utilities do).
PROB_FLOOR = 1e-5

_INSTALL_HINT = (
    'The "pydensecrf" backend needs the pydensecrf module (distribution pydensecrf2). Install it with '
    '`pip install "segbook[crf]"` (or `pip install pydensecrf2`), or use backend="lattice" '
    "(pure torch, no compiler needed)."
)

Weight = Union[float, torch.Tensor]


# --------------------------------------------------------------------------------------------
# input checks and conversion
# --------------------------------------------------------------------------------------------

def pydensecrf_available() -> bool:
    """Whether ``import pydensecrf.densecrf`` works."""
    try:
        _import_pydensecrf()
    except ImportError:
        return False
    return True


def _import_pydensecrf():
    try:
        import pydensecrf.densecrf as dcrf
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(_INSTALL_HINT) from err
    return dcrf


def _check_image(image: Any) -> torch.Tensor:
    """``image`` as a CPU uint8 tensor ``[H, W, 3]`` (a view of a numpy array when possible)."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise TypeError(
                f"image must be uint8 [H, W, 3] with values 0..255, got numpy dtype {image.dtype}; "
                "convert a float image in [0, 1] with (image * 255).round().astype(np.uint8)")
        t = torch.from_numpy(np.ascontiguousarray(image))
    elif isinstance(image, torch.Tensor):
        if image.dtype != torch.uint8:
            raise TypeError(
                f"image must be uint8 [H, W, 3] with values 0..255, got torch dtype {image.dtype}; "
                "convert a float image in [0, 1] with (image * 255).round().to(torch.uint8)")
        t = image
    else:
        raise TypeError(f"image must be a numpy array or torch tensor [H, W, 3] uint8, got {type(image).__name__}")
    if t.ndim != 3 or t.shape[-1] != 3:
        hint = ""
        if t.ndim == 3 and t.shape[0] == 3:
            hint = " (it looks channels-first: pass image.permute(1, 2, 0) or np.transpose(image, (1, 2, 0)))"
        elif t.ndim == 4:
            hint = " (a batch: call dense_crf once per image)"
        raise ValueError(f"image must have shape [H, W, 3] (RGB, channels last), got {tuple(t.shape)}{hint}")
    return t


def _check_probs(probs: Any) -> torch.Tensor:
    """``probs`` as a floating tensor ``[C, H, W]`` that sums to 1 over ``C`` (shares memory when possible)."""
    if isinstance(probs, np.ndarray):
        if not np.issubdtype(probs.dtype, np.floating):
            raise TypeError(f"probs must be floating point probabilities [C, H, W], got numpy dtype {probs.dtype}")
        t = torch.from_numpy(probs)
    elif isinstance(probs, torch.Tensor):
        if not probs.is_floating_point():
            raise TypeError(f"probs must be floating point probabilities [C, H, W], got torch dtype {probs.dtype}")
        t = probs
    else:
        raise TypeError(f"probs must be a numpy array or torch tensor [C, H, W], got {type(probs).__name__}")
    if t.ndim != 3:
        hint = " (a batch: call dense_crf once per image, e.g. on probs[0])" if t.ndim == 4 else ""
        raise ValueError(f"probs must have shape [C, H, W], got {tuple(t.shape)}{hint}")
    if t.shape[0] < 2:
        raise ValueError(f"probs must have at least 2 classes along dim 0, got shape {tuple(t.shape)}")
    with torch.no_grad():
        x = t.detach().float()
        if not torch.isfinite(x).all():
            raise ValueError("probs contains NaN or inf")
        lo, hi = x.min().item(), x.max().item()
        if lo < 0 or hi > 1 + 1e-4:
            raise ValueError(f"probs must lie in [0, 1], got values in [{lo:.4g}, {hi:.4g}]: "
                             "pass probabilities (logits.softmax(0)), not logits")
        tol = 1e-2 if t.dtype in (torch.float16, torch.bfloat16) else 1e-3
        err = (x.sum(0) - 1).abs().max().item()
        if err > tol:
            raise ValueError(f"probs must sum to 1 over the classes (dim 0); the largest deviation is {err:.3g}. "
                             "Pass probabilities [C, H, W], e.g. logits.softmax(0)")
    return t


def _check_params(iterations, gaussian_sxy, gaussian_compat, bilateral_sxy, bilateral_srgb, bilateral_compat):
    iterations = positive_int(iterations, "iterations", minimum=0)
    for name, v in (("gaussian_sxy", gaussian_sxy), ("bilateral_sxy", bilateral_sxy),
                    ("bilateral_srgb", bilateral_srgb)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v > 0) or not math.isfinite(v):
            raise ValueError(f"{name} must be a positive number (a standard deviation), got {v!r}")
    for name, v in (("gaussian_compat", gaussian_compat), ("bilateral_compat", bilateral_compat)):
        if isinstance(v, torch.Tensor):
            if v.numel() != 1 or not v.is_floating_point():
                raise ValueError(f"{name} must be a number or a one-element float tensor, got shape {tuple(v.shape)}")
        elif isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{name} must be a finite number (the Potts weight), got {v!r}")


def unary_from_probs(probs: torch.Tensor) -> torch.Tensor:
    """Unary energies ``-log max(p, PROB_FLOOR)``: ``[C, H, W] -> [C, H, W]`` (same dtype)."""
    return -probs.clamp_min(PROB_FLOOR).log()


def resolve_backend(backend: str, *, device: Union[str, torch.device] = "cpu", requires_grad: bool = False) -> str:
    """The backend that ``backend`` means for inputs on ``device``.

    ``"auto"`` gives ``"lattice"`` when gradients are needed or the device is not the CPU, else
    ``"pydensecrf"`` when it is installed, else ``"lattice"``. Named backends are returned as they
    are (``"pydensecrf"`` raises an ImportError naming the ``crf`` extra when it is missing).
    """
    if backend == "auto":
        if requires_grad or torch.device(device).type != "cpu" or not pydensecrf_available():
            return "lattice"
        return "pydensecrf"
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS + ('auto',)}")
    if backend == "pydensecrf":
        _import_pydensecrf()
        if requires_grad:
            raise ValueError('backend="pydensecrf" has no gradients; use backend="lattice" or "exact"')
    return backend


# --------------------------------------------------------------------------------------------
# filters: the exact kernel sums, the separable blur and the permutohedral lattice
# --------------------------------------------------------------------------------------------

def _features(image: torch.Tensor, sxy: float, srgb: Optional[float], dtype: torch.dtype) -> torch.Tensor:
    """Per-pixel features ``[H*W, 2 or 5]``: ``(x/sxy, y/sxy[, r/srgb, g/srgb, b/srgb])``, pydensecrf's order."""
    h, w = image.shape[:2]
    ys, xs = torch.meshgrid(torch.arange(h, device=image.device, dtype=dtype),
                            torch.arange(w, device=image.device, dtype=dtype), indexing="ij")
    feats = [xs.reshape(-1, 1) / sxy, ys.reshape(-1, 1) / sxy]
    if srgb is not None:
        feats.append(image.reshape(-1, 3).to(dtype) / srgb)
    return torch.cat(feats, 1)


class _ExactKernel:
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


# --------------------------------------------------------------------------------------------
# mean-field inference
# --------------------------------------------------------------------------------------------

def _pairwise_message(image: torch.Tensor, shape: tuple[int, int, int], backend: str, dtype: torch.dtype,
                      gaussian_sxy: float, gaussian_compat: Weight, bilateral_sxy: float,
                      bilateral_srgb: float, bilateral_compat: Weight) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function ``Q [H*W, C] -> sum_m w_m kbar_m Q  [H*W, C]`` (pixels in row-major order) for the torch backends."""
    c, h, w = shape
    n = h * w
    ones = torch.ones(n, 1, device=image.device, dtype=dtype)
    if backend == "exact":
        kg = _ExactKernel(_features(image, gaussian_sxy, None, dtype))
        kb = _ExactKernel(_features(image, bilateral_sxy, bilateral_srgb, dtype))
        ng, nb = kg(ones).rsqrt(), kb(ones).rsqrt()  # symmetric normalisation, [N, 1]
        if kg.full is not None and kb.full is not None:  # small image: one [N, N] matrix for both kernels
            both = gaussian_compat * ng * kg.full * ng.T + bilateral_compat * nb * kb.full * nb.T
            return lambda q: both @ q
        return lambda q: gaussian_compat * ng * kg(ng * q) + bilateral_compat * nb * kb(nb * q)

    lattice = PermutohedralLattice(_features(image, bilateral_sxy, bilateral_srgb, torch.float32))
    nb = (lattice.filter(ones) + 1e-20).rsqrt()
    ng = (gaussian_blur(ones.view(h, w, 1), gaussian_sxy) + 1e-20).rsqrt().reshape(n, 1)

    ng_weighted, nb_weighted = gaussian_compat * ng, bilateral_compat * nb  # [N, 1] each

    def message(q: torch.Tensor) -> torch.Tensor:
        smooth = gaussian_blur((ng * q).view(h, w, c), gaussian_sxy).reshape(n, c)
        appearance = lattice.filter(nb * q)
        return torch.addcmul(ng_weighted * smooth, nb_weighted, appearance)
    return message


def mean_field(unary: torch.Tensor, image: Any, *, backend: str = "lattice", iterations: int = 10,
               gaussian_sxy: float = 3, gaussian_compat: Weight = 3, bilateral_sxy: float = 80,
               bilateral_srgb: float = 13, bilateral_compat: Weight = 10,
               return_iterates: bool = False) -> Union[torch.Tensor, list[torch.Tensor]]:
    """Mean-field inference from unary energies with a torch backend (differentiable).

    Args:
        unary: ``[C, H, W]`` float energies ``-log p`` (any float dtype; the result keeps it). May
            require grad, as may ``gaussian_compat`` / ``bilateral_compat`` given as tensors.
        image: ``[H, W, 3]`` uint8 (numpy or torch); moved to ``unary``'s device.
        backend: ``"lattice"`` or ``"exact"``.
        return_iterates: return the list ``[Q_0, Q_1, ..., Q_T]`` (``Q_0 = softmax(-unary)``).

    Returns:
        ``Q`` ``[C, H, W]``: the approximate marginals after ``iterations`` updates (see the
        module docstring for the update and the kernels).
    """
    if backend not in ("lattice", "exact"):
        raise ValueError(f'mean_field runs the torch backends "lattice" and "exact", got {backend!r}')
    if not isinstance(unary, torch.Tensor) or unary.ndim != 3 or not unary.is_floating_point():
        raise ValueError(f"unary must be a float tensor [C, H, W], got {getattr(unary, 'shape', type(unary))}")
    _check_params(iterations, gaussian_sxy, gaussian_compat, bilateral_sxy, bilateral_srgb, bilateral_compat)
    img = _check_image(image)
    if tuple(img.shape[:2]) != tuple(unary.shape[1:]):
        raise ValueError(f"image is {tuple(img.shape[:2])} (H, W) but unary is {tuple(unary.shape[1:])}: "
                         "resize the network's output to the image first, e.g. "
                         "F.interpolate(logits, size=image.shape[:2], mode='bilinear')")
    img = img.to(unary.device)
    message = _pairwise_message(img, tuple(unary.shape), backend, unary.dtype, gaussian_sxy, gaussian_compat,
                                bilateral_sxy, bilateral_srgb, bilateral_compat)
    c, h, w = unary.shape
    neg_unary = -unary.permute(1, 2, 0).reshape(h * w, c)  # pixels x classes: the filters' layout
    q = torch.softmax(neg_unary, 1)
    iterates = [q]
    for _ in range(iterations):
        q = torch.softmax(neg_unary + message(q), 1)
        iterates.append(q)
    iterates = [x.T.reshape(c, h, w).contiguous() for x in (iterates if return_iterates else iterates[-1:])]
    return iterates if return_iterates else iterates[0]


def _pydensecrf_iterates(image: np.ndarray, probs: np.ndarray, iterations: int, gaussian_sxy, gaussian_compat,
                         bilateral_sxy, bilateral_srgb, bilateral_compat, keep_all: bool) -> list[np.ndarray]:
    dcrf = _import_pydensecrf()
    c, h, w = probs.shape
    crf = dcrf.DenseCRF2D(w, h, c)  # width first
    unary = np.ascontiguousarray((-np.log(np.maximum(probs, PROB_FLOOR))).reshape(c, h * w), dtype=np.float32)
    rgb = np.ascontiguousarray(image, dtype=np.uint8)
    crf.setUnaryEnergy(unary)
    # DIAG_KERNEL and NORMALIZE_SYMMETRIC are pydensecrf's defaults; some builds do not export the
    # constants, so they are passed only where they exist
    options = {}
    if hasattr(dcrf, "DIAG_KERNEL") and hasattr(dcrf, "NORMALIZE_SYMMETRIC"):
        options = dict(kernel=dcrf.DIAG_KERNEL, normalization=dcrf.NORMALIZE_SYMMETRIC)
    crf.addPairwiseGaussian(sxy=float(gaussian_sxy), compat=float(gaussian_compat), **options)
    crf.addPairwiseBilateral(sxy=float(bilateral_sxy), srgb=float(bilateral_srgb), rgbim=rgb,
                             compat=float(bilateral_compat), **options)
    if not keep_all:
        return [np.array(crf.inference(iterations), dtype=np.float32).reshape(c, h, w)]
    q, tmp1, tmp2 = crf.startInference()
    out = [np.array(q, dtype=np.float32).reshape(c, h, w)]
    for _ in range(iterations):
        crf.stepInference(q, tmp1, tmp2)
        out.append(np.array(q, dtype=np.float32).reshape(c, h, w))
    return out


def _run(image, probs, backend, iterations, params, keep_all):
    _check_params(iterations, *params)
    img = _check_image(image)
    p = _check_probs(probs)
    if tuple(img.shape[:2]) != tuple(p.shape[1:]):
        raise ValueError(f"image is {tuple(img.shape[:2])} (H, W) but probs are {tuple(p.shape[1:])}: resize the "
                         "probabilities to the image first, e.g. F.interpolate(logits[None], size=image.shape[:2], "
                         "mode='bilinear')[0].softmax(0)")
    requires_grad = p.requires_grad or any(isinstance(v, torch.Tensor) and v.requires_grad for v in params)
    name = resolve_backend(backend, device=p.device, requires_grad=requires_grad)
    as_numpy = isinstance(probs, np.ndarray)
    if name == "pydensecrf":
        gs, gc, bs, br, bc = (float(v) if isinstance(v, torch.Tensor) else v for v in params)
        out = _pydensecrf_iterates(img.cpu().numpy(), p.detach().float().cpu().numpy(), iterations,
                                   gs, gc, bs, br, bc, keep_all)
        return out if as_numpy else [torch.from_numpy(q).to(p.device) for q in out]
    dtype = torch.float64 if p.dtype == torch.float64 and requires_grad else torch.float32
    unary = unary_from_probs(p.to(dtype))
    gs, gc, bs, br, bc = params
    qs = mean_field(unary, img, backend=name, iterations=iterations, gaussian_sxy=gs, gaussian_compat=gc,
                    bilateral_sxy=bs, bilateral_srgb=br, bilateral_compat=bc, return_iterates=keep_all)
    qs = qs if keep_all else [qs]
    if as_numpy:
        return [q.detach().float().cpu().numpy() for q in qs]
    return [q if q.dtype == torch.float64 else q.float() for q in qs]


def dense_crf(image: Any, probs: Any, *, backend: str = "auto", iterations: int = 10,
              gaussian_sxy: float = 3, gaussian_compat: Weight = 3, bilateral_sxy: float = 80,
              bilateral_srgb: float = 13, bilateral_compat: Weight = 10):
    """Refine segmentation probabilities with a fully connected CRF (mean-field inference).

    Args:
        image: ``[H, W, 3]`` uint8 RGB (numpy or torch), the image the probabilities belong to.
        probs: ``[C, H, W]`` float probabilities summing to 1 over ``C`` (numpy or torch; torch
            tensors may live on a GPU and may require grad with the torch backends).
        backend: ``"auto"``, ``"pydensecrf"``, ``"exact"`` or ``"lattice"`` (see the module docstring).
        iterations: mean-field updates (DeepLab: 10).
        gaussian_sxy, gaussian_compat: smoothness kernel, position std in pixels and Potts weight
            (DeepLab: 3, 3).
        bilateral_sxy, bilateral_srgb, bilateral_compat: appearance kernel, position std in
            pixels, colour std in 0..255 units and Potts weight (DeepLab: 80, 13, 10). The weights
            may be one-element tensors that require grad (torch backends).

    Returns:
        Refined probabilities ``[C, H, W]`` of the same kind as ``probs`` (numpy array, or torch
        tensor on ``probs``' device), float32 (float64 only for float64 tensors that need
        gradients). ``argmax(0)`` gives the refined labels.

    Raises:
        ImportError: ``backend="pydensecrf"`` without the library (names the ``crf`` extra).
        TypeError / ValueError: wrong types, shapes, dtypes, probabilities that do not sum to 1,
            or an image whose size differs from the probabilities'.
    """
    params = (gaussian_sxy, gaussian_compat, bilateral_sxy, bilateral_srgb, bilateral_compat)
    return _run(image, probs, backend, iterations, params, keep_all=False)[0]


def mean_field_iterates(image: Any, probs: Any, *, backend: str = "auto", iterations: int = 10,
                        gaussian_sxy: float = 3, gaussian_compat: Weight = 3, bilateral_sxy: float = 80,
                        bilateral_srgb: float = 13, bilateral_compat: Weight = 10) -> list:
    """The refinement step by step, for a figure: ``[Q_0, Q_1, ..., Q_iterations]``, each ``[C, H, W]``.

    ``Q_0`` is the input turned into unaries and back (``probs`` clipped at ``PROB_FLOOR`` and
    renormalised); ``Q_iterations`` equals ``dense_crf(...)`` with the same arguments. Same
    arguments and return kinds as :func:`dense_crf`.
    """
    params = (gaussian_sxy, gaussian_compat, bilateral_sxy, bilateral_srgb, bilateral_compat)
    return _run(image, probs, backend, iterations, params, keep_all=True)


# --------------------------------------------------------------------------------------------
# test inputs: scenes and network-like noisy probabilities
# --------------------------------------------------------------------------------------------

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
