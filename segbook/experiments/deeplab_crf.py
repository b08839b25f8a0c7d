"""Chapter 5 helpers: dense-CRF post-processing of a batch, scored and searched on held-out data.

The CRF itself is :func:`segbook.crf.dense_crf` (one image at a time, ``(H, W, 3)`` uint8 and
``(C, H, W)`` probabilities). These helpers apply it to a batch of network outputs, score the
labels with the book's metrics (mIoU and boundary F1), search a small grid of CRF parameters on a
held-out split, time the backends, and fine-tune a network's classifier *through* the CRF.

Training through the CRF (after CRF-as-RNN, Zheng et al. 2015)
----------------------------------------------------------------
Mean-field inference is a fixed number of differentiable updates
``Q_{t+1} = softmax(-U - sum_m w_m kbar_m Q_t)`` with unaries ``U = -log softmax(z)`` from the
network's logits ``z``, so the loss can be taken on the CRF's output ``Q_T`` instead of on
``softmax(z)``: ``L = -mean_i log Q_T[y_i, i]``. Its gradient reaches ``z`` (and the Potts weights
``w_m``) through every update. :func:`crf_finetune_head` trains only the network's last classifier
layer this way: the layers below are frozen, so their features are computed once, and each step
costs one classifier pass, the resize to the input and the mean field on the ``lattice`` backend
(plain torch, linear in the pixels). Where this departs from CRF-as-RNN: there the whole network
and the compatibility matrix are trained end to end; here the head alone (optionally with the two
Potts weights), for a few dozen steps, which is what a CPU affords.
"""
from __future__ import annotations

import itertools
import math
import time
from typing import Mapping, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checks import positive_int
from ..constants import IGNORE_INDEX
from ..crf import dense_crf, mean_field
from ..metrics import SegmentationMetrics

__all__ = ["to_uint8_hwc", "crf_refine", "segmentation_scores", "crf_grid_search", "seconds_per_image",
           "head_features", "crf_finetune_head", "soften_edges", "readable_grid", "crf_cost_scaling", "loglog_slope",
           "CRF_PARAM_NAMES"]


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
    """Wall-clock seconds per image of :func:`crf_refine` with ``backend`` (best of ``repeats``).

    ``images [N, 3, H, W]`` and ``probs [N, C, H, W]`` as for :func:`crf_refine`; ``params`` go to it.
    """
    positive_int(repeats, "repeats")
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        crf_refine(images, probs, backend=backend, **params)
        times.append((time.perf_counter() - start) / images.shape[0])
    return min(times)


def head_features(model: nn.Module, head: nn.Module, images: torch.Tensor, *, batch_size: int = 64) -> torch.Tensor:
    """The input of ``head`` when ``model`` (in eval mode) runs on ``images [N, 3, H, W]``: ``[N, C_h, h, w]``.

    ``head`` must be a submodule of ``model`` that it calls once per forward pass (e.g. DeepLab v3+'s
    ``model.decoder.classifier``). Computed under ``torch.inference_mode`` on the model's device; the
    result is on the CPU.
    """
    if not any(m is head for m in model.modules()):
        raise ValueError("head must be a submodule of model (e.g. model.decoder.classifier for DeepLab v3+)")
    captured: list = []
    hook = head.register_forward_hook(lambda mod, inp, out: captured.append(inp[0].detach().cpu()))
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, images.shape[0], batch_size):
                before = len(captured)
                model(images[start:start + batch_size].to(device))
                if len(captured) != before + 1:
                    raise ValueError(f"head ran {len(captured) - before} times in one forward pass; it must run exactly once")
    finally:
        hook.remove()
        model.train(was_training)
    return torch.cat(captured)


def crf_finetune_head(model: nn.Module, head: nn.Module, images: torch.Tensor, masks: torch.Tensor, *, steps: int,
                      batch_size: int = 4, lr: float = 1e-3, seed: int = 0, iterations: int = 5,
                      learn_weights: bool = False, ignore_index: int = IGNORE_INDEX, **crf_params) -> dict:
    """Fine-tune ``head`` (the model's last layer before the resize to the input) through a dense CRF, in place.

    Args:
        model: a segmentation model whose output is ``head``'s output resized bilinearly to the
            input (``F.interpolate(..., size=x.shape[-2:])``), as DeepLab's is. Only ``head`` changes.
        head: the classifier module, called once per forward pass (``model.decoder.classifier``).
        images: ``[N, 3, H, W]`` float in ``[0, 1]``, the training scenes; masks: ``[N, H, W]`` int64.
        steps, batch_size, lr, seed: Adam steps on random batches drawn with ``seed``.
        iterations: mean-field updates during training (the CRF is unrolled and back-propagated).
        learn_weights: also learn the two Potts weights ``gaussian_compat`` and
            ``bilateral_compat`` (through their logarithms, so that they stay positive).
        **crf_params: kernel widths and weights for :func:`segbook.crf.mean_field` (the values
            chosen for post-processing).

    Returns:
        ``{"loss": [per-step loss], "crf_params": the CRF parameters after training (floats)}``.
        The loss is the mean negative log of the CRF's marginal at the true label.

    Raises:
        ValueError: if ``head`` does not give ``model``'s output once resized (checked on the
            first scenes), or for bad shapes.
    """
    if images.dim() != 4 or masks.shape != (images.shape[0], *images.shape[-2:]):
        raise ValueError(f"images must be [N, 3, H, W] and masks [N, H, W], got {tuple(images.shape)} and {tuple(masks.shape)}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if batch_size > images.shape[0]:
        raise ValueError(f"batch_size {batch_size} exceeds the {images.shape[0]} training scenes")
    features = head_features(model, head, images)
    device = next(head.parameters()).device
    with torch.inference_mode():   # the head must be the last layer: its resized output is the model's output
        probe = images[:2].to(device)
        expected = model.eval()(probe)
        got = F.interpolate(head(features[:2].to(device)), size=probe.shape[-2:], mode="bilinear", align_corners=False)
    if expected.shape != got.shape or not torch.allclose(expected, got, atol=1e-4, rtol=1e-4):
        raise ValueError("resizing head's output to the input does not reproduce the model's output: head must be "
                         "the model's last layer, followed only by the bilinear resize to the input")
    params = dict(crf_params)
    log_weights = {}
    if learn_weights:
        for name, default in (("gaussian_compat", 3.0), ("bilateral_compat", 10.0)):
            log_weights[name] = torch.tensor(float(params.get(name, default))).log().requires_grad_(True)
    pixels = torch.as_tensor(to_uint8_hwc(images))
    trainable = list(head.parameters()) + list(log_weights.values())
    opt = torch.optim.Adam(trainable, lr=lr)
    generator = torch.Generator().manual_seed(int(seed))
    losses = []
    for _ in range(steps):
        idx = torch.randperm(images.shape[0], generator=generator)[:batch_size]
        logits = F.interpolate(head(features[idx].to(device)), size=images.shape[-2:], mode="bilinear",
                               align_corners=False)
        unaries = -torch.log_softmax(logits.float(), 1)
        weights = {k: v.exp() for k, v in log_weights.items()}
        loss = 0.0
        for unary, img, target in zip(unaries, pixels[idx], masks[idx].to(device)):
            q = mean_field(unary, img, backend="lattice", iterations=iterations, **{**params, **weights})
            loss = loss + F.nll_loss(q.clamp_min(1e-8).log()[None], target[None], ignore_index=ignore_index)
        loss = loss / len(idx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    final = {**params, **{k: float(v.detach().exp()) for k, v in log_weights.items()}}
    return {"loss": losses, "crf_params": final}


def soften_edges(images: torch.Tensor, sigma: float, *, noise: float = 0.04, seed: int = 0) -> torch.Tensor:
    """The CRF control's scenes: ``images [N, 3, H, W]`` in [0, 1] blurred by a Gaussian of ``sigma`` pixels.

    Every colour step becomes a ramp about ``4 * sigma`` pixels wide, so the label edges no longer sit on
    hard colour edges; the pixel noise the blur removed is put back (uniform, standard deviation
    ``noise``, drawn with ``seed``) so that interiors are as noisy as before. Returns ``[N, 3, H, W]``
    float32 in [0, 1]; the masks are unchanged.
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be a tensor [N, 3, H, W], got {getattr(images, 'shape', type(images))}")
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma!r}")
    r = int(math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    x = images.float().cpu()
    n, c, h, w = x.shape
    x = F.pad(x, (r, r, r, r), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1).contiguous(), groups=c)
    x = F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1).contiguous(), groups=c)
    g = torch.Generator().manual_seed(int(seed))
    x = x + (torch.rand(x.shape, generator=g) - 0.5) * (noise * math.sqrt(12))
    return x.clamp(0, 1)


CRF_PARAM_NAMES = {"bilateral_sxy": "theta_alpha (px)", "bilateral_srgb": "theta_beta (grey levels)",
                   "bilateral_compat": "w1", "gaussian_sxy": "theta_gamma (px)", "gaussian_compat": "w2", "miou": "mIoU", "boundary_f1": "boundary F1"}


def readable_grid(rows: Sequence[Mapping], best: Mapping, names: Mapping[str, str] = CRF_PARAM_NAMES) -> list[dict]:
    """:func:`crf_grid_search`'s rows with the paper's names for the columns and the chosen row marked.

    Columns are renamed by ``names`` (pydensecrf's keywords to theta/w); a first column ``chosen``
    holds ``"<-"`` on the row whose parameters equal ``best`` (on the keys the row has) and ``""``
    elsewhere. The ``"no CRF"`` row keeps its label in ``setting``.
    """
    out = []
    for row in rows:
        keys = [k for k in row if k not in ("setting", "miou", "boundary_f1")]
        chosen = bool(keys) and bool(best) and all(best.get(k) == row[k] for k in keys)
        new = {"chosen": "<-" if chosen else "", "setting": row.get("setting", "")}
        new.update({names.get(k, k): v for k, v in row.items() if k != "setting"})
        out.append(new)
    return out


def crf_cost_scaling(image: torch.Tensor, probs: torch.Tensor, sizes: Sequence[int], backends: Sequence[str], *,
                     repeats: int = 2, **params) -> list[dict]:
    """Seconds per image of each CRF backend on square crops of ``image [3, H, W]`` / ``probs [C, H, W]``.

    For every ``size`` in ``sizes`` (at most ``H`` and ``W``) the top-left ``size x size`` crop is refined
    ``repeats`` times with each backend (best time kept). Returns one row per (backend, size):
    ``{"backend", "side", "pixels", "seconds"}``.
    """
    if image.dim() != 3 or probs.dim() != 3 or image.shape[-2:] != probs.shape[-2:]:
        raise ValueError(f"image must be [3, H, W] and probs [C, H, W], got {tuple(image.shape)} and {tuple(probs.shape)}")
    rows = []
    for backend in backends:
        for size in sizes:
            if size > min(image.shape[-2:]):
                raise ValueError(f"crop size {size} exceeds the image {tuple(image.shape[-2:])}")
            crop_i, crop_p = image[None, :, :size, :size], probs[None, :, :size, :size]
            sec = seconds_per_image(crop_i, crop_p, backend=backend, repeats=repeats, **params)
            rows.append({"backend": backend, "side": int(size), "pixels": int(size) ** 2, "seconds": sec})
    return rows


def loglog_slope(x: Sequence[float], y: Sequence[float]) -> float:
    """Least-squares slope of ``log y`` against ``log x``: the exponent ``a`` of ``y ~ x^a``."""
    if len(x) != len(y) or len(x) < 2:
        raise ValueError(f"need two or more (x, y) pairs of equal length, got {len(x)} and {len(y)}")
    lx, ly = np.log(np.asarray(x, float)), np.log(np.asarray(y, float))
    lx = lx - lx.mean()
    return float((lx * (ly - ly.mean())).sum() / (lx ** 2).sum())
