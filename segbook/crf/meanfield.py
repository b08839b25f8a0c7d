"""Mean-field inference of the dense CRF with the torch backends (``"exact"`` and ``"lattice"``).

:func:`pairwise_message` builds the expensive step, ``Q -> sum_m w_m kbar_m Q`` over all pixels
(with the exact kernels or the lattice and the separable blur); :func:`mean_field` iterates the
update ``Q <- softmax(-unary + message(Q))`` from unary energies (:func:`unary_from_probs`).
Everything is torch, so it runs on CPU or CUDA and is differentiable.
"""
from __future__ import annotations

from typing import Any, Callable, Union

import torch

from .checks import Weight, check_image, check_params
from .exact import ExactKernel, gaussian_blur, pixel_features
from .lattice import PermutohedralLattice

__all__ = ["PROB_FLOOR", "unary_from_probs", "pairwise_message", "mean_field"]

#: Probabilities are clipped below at this value before ``-log`` (as pydensecrf's utilities do).
PROB_FLOOR = 1e-5


def unary_from_probs(probs: torch.Tensor) -> torch.Tensor:
    """Unary energies ``-log max(p, PROB_FLOOR)``: ``[C, H, W] -> [C, H, W]`` (same dtype)."""
    return -probs.clamp_min(PROB_FLOOR).log()


def pairwise_message(image: torch.Tensor, shape: tuple[int, int, int], backend: str, dtype: torch.dtype,
                     gaussian_sxy: float, gaussian_compat: Weight, bilateral_sxy: float,
                     bilateral_srgb: float, bilateral_compat: Weight) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function ``Q [H*W, C] -> sum_m w_m kbar_m Q  [H*W, C]`` (pixels in row-major order) for the torch backends."""
    c, h, w = shape
    n = h * w
    ones = torch.ones(n, 1, device=image.device, dtype=dtype)
    if backend == "exact":
        kg = ExactKernel(pixel_features(image, gaussian_sxy, None, dtype))
        kb = ExactKernel(pixel_features(image, bilateral_sxy, bilateral_srgb, dtype))
        ng, nb = kg(ones).rsqrt(), kb(ones).rsqrt()  # symmetric normalisation, [N, 1]
        if kg.full is not None and kb.full is not None:  # small image: one [N, N] matrix for both kernels
            both = gaussian_compat * ng * kg.full * ng.T + bilateral_compat * nb * kb.full * nb.T
            return lambda q: both @ q
        return lambda q: gaussian_compat * ng * kg(ng * q) + bilateral_compat * nb * kb(nb * q)

    lattice = PermutohedralLattice(pixel_features(image, bilateral_sxy, bilateral_srgb, torch.float32))
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
        ``Q`` ``[C, H, W]``: the approximate marginals after ``iterations`` updates (see
        :mod:`segbook.crf` for the update and the kernels).
    """
    if backend not in ("lattice", "exact"):
        raise ValueError(f'mean_field runs the torch backends "lattice" and "exact", got {backend!r}')
    if not isinstance(unary, torch.Tensor) or not unary.is_floating_point():
        what = f"dtype {unary.dtype}" if isinstance(unary, torch.Tensor) else type(unary).__name__
        raise TypeError(f"unary must be a float tensor [C, H, W] (e.g. -probs.log()), got {what}")
    if unary.ndim != 3:
        raise ValueError(f"unary must have shape [C, H, W], got {tuple(unary.shape)}")
    check_params(iterations, gaussian_sxy, gaussian_compat, bilateral_sxy, bilateral_srgb, bilateral_compat)
    img = check_image(image)
    if tuple(img.shape[:2]) != tuple(unary.shape[1:]):
        raise ValueError(f"image is {tuple(img.shape[:2])} (H, W) but unary is {tuple(unary.shape[1:])}: "
                         "resize the network's output to the image first, e.g. "
                         "F.interpolate(logits, size=image.shape[:2], mode='bilinear')")
    img = img.to(unary.device)
    message = pairwise_message(img, tuple(unary.shape), backend, unary.dtype, gaussian_sxy, gaussian_compat,
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
