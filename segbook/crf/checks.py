"""Input checks of the dense CRF: the image, the probabilities and the kernel parameters.

Each check says what was expected and how to fix the input (a channels-first image, logits
instead of probabilities, a batch instead of one image).
"""
from __future__ import annotations

import math
from typing import Any, Union

import numpy as np
import torch

from ..checks import positive_float, positive_int

__all__ = ["Weight", "check_image", "check_probs", "check_params"]

#: A Potts weight: a number, or a one-element float tensor (that may require grad).
Weight = Union[float, torch.Tensor]


def check_image(image: Any) -> torch.Tensor:
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


def check_probs(probs: Any) -> torch.Tensor:
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


def check_params(iterations: int, gaussian_sxy: float, gaussian_compat: Weight, bilateral_sxy: float,
                 bilateral_srgb: float, bilateral_compat: Weight) -> None:
    """Check the mean-field parameters of :func:`segbook.crf.dense_crf` (see there for their meaning).

    ``TypeError`` for a value of the wrong kind (a string, a bool, an int tensor), ``ValueError``
    for one out of range (negative iterations, a standard deviation that is not positive and finite,
    a non-finite weight, a weight tensor with more than one element).
    """
    positive_int(iterations, "iterations", minimum=0)
    for name, sigma in (("gaussian_sxy", gaussian_sxy), ("bilateral_sxy", bilateral_sxy),
                        ("bilateral_srgb", bilateral_srgb)):
        positive_float(sigma, f"{name} (a standard deviation)")
    for name, weight in (("gaussian_compat", gaussian_compat), ("bilateral_compat", bilateral_compat)):
        if isinstance(weight, torch.Tensor):
            if not weight.is_floating_point():
                raise TypeError(f"{name} must be a number or a one-element float tensor, got dtype {weight.dtype}")
            if weight.numel() != 1:
                raise ValueError(f"{name} must be a number or a one-element float tensor, got shape {tuple(weight.shape)}")
        elif isinstance(weight, bool) or not isinstance(weight, (int, float, np.integer, np.floating)):
            raise TypeError(f"{name} must be a finite number (the Potts weight), got {type(weight).__name__} {weight!r}")
        elif not math.isfinite(weight):
            raise ValueError(f"{name} must be a finite number (the Potts weight), got {weight!r}")
