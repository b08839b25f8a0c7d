"""The front of the dense CRF: backend choice, the pydensecrf bridge, :func:`dense_crf` and
:func:`mean_field_iterates`.

:func:`dense_crf` checks its inputs, picks a backend (:func:`resolve_backend`) and runs either
pydensecrf (:func:`pydensecrf_iterates`, numpy in and out) or the torch mean field
(:func:`segbook.crf.meanfield.mean_field`), and returns the refined probabilities in the kind
(numpy or torch, device) that it was given.
"""
from __future__ import annotations

from typing import Any, Union

import numpy as np
import torch

from .checks import Weight, check_image, check_params, check_probs
from .meanfield import PROB_FLOOR, mean_field, unary_from_probs

__all__ = ["BACKENDS", "pydensecrf_available", "import_pydensecrf", "resolve_backend", "pydensecrf_iterates",
           "dense_crf", "mean_field_iterates"]

#: Backend names accepted by :func:`dense_crf` (besides ``"auto"``).
BACKENDS = ("pydensecrf", "exact", "lattice")

_INSTALL_HINT = (
    'The "pydensecrf" backend needs the pydensecrf module (distribution pydensecrf2). Install it with '
    '`pip install "segbook[crf]"` (or `pip install pydensecrf2`), or use backend="lattice" '
    "(pure torch, no compiler needed)."
)


def pydensecrf_available() -> bool:
    """Whether ``import pydensecrf.densecrf`` works."""
    try:
        import_pydensecrf()
    except ImportError:
        return False
    return True


def import_pydensecrf():
    """The ``pydensecrf.densecrf`` module; an ImportError naming the ``crf`` extra when it is missing."""
    try:
        import pydensecrf.densecrf as dcrf
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(_INSTALL_HINT) from err
    return dcrf


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
        import_pydensecrf()
        if requires_grad:
            raise ValueError('backend="pydensecrf" has no gradients; use backend="lattice" or "exact"')
    return backend


def pydensecrf_iterates(image: np.ndarray, probs: np.ndarray, iterations: int, gaussian_sxy, gaussian_compat,
                        bilateral_sxy, bilateral_srgb, bilateral_compat, keep_all: bool) -> list[np.ndarray]:
    """Mean field in pydensecrf's C++: ``image [H, W, 3]`` uint8, ``probs [C, H, W]`` -> ``[Q_T]`` or
    ``[Q_0, ..., Q_T]`` (``keep_all``), each ``[C, H, W]`` float32 numpy. CPU only, no gradients."""
    dcrf = import_pydensecrf()
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
    check_params(iterations, *params)
    img = check_image(image)
    p = check_probs(probs)
    if tuple(img.shape[:2]) != tuple(p.shape[1:]):
        raise ValueError(f"image is {tuple(img.shape[:2])} (H, W) but probs are {tuple(p.shape[1:])}: resize the "
                         "probabilities to the image first, e.g. F.interpolate(logits[None], size=image.shape[:2], "
                         "mode='bilinear')[0].softmax(0)")
    requires_grad = p.requires_grad or any(isinstance(v, torch.Tensor) and v.requires_grad for v in params)
    name = resolve_backend(backend, device=p.device, requires_grad=requires_grad)
    as_numpy = isinstance(probs, np.ndarray)
    if name == "pydensecrf":
        gs, gc, bs, br, bc = (float(v) if isinstance(v, torch.Tensor) else v for v in params)
        out = pydensecrf_iterates(img.cpu().numpy(), p.detach().float().cpu().numpy(), iterations,
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
        backend: ``"auto"``, ``"pydensecrf"``, ``"exact"`` or ``"lattice"`` (see :mod:`segbook.crf`).
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
