"""Chapter 5 helpers: the DeepLab comparison and dense-CRF post-processing, scored on held-out data.

The comparison: every seed draws its own scenes (:func:`seed_scenes`: training, tuning and test
scenes), the chapter's four models (:func:`deeplab_builders`) train on that seed's batches and are
scored on its test scenes (:func:`train_and_score`). The CRF study then takes each seed's DeepLab
v3+ at output stride 8, tunes the CRF on the seed's tuning scenes (:func:`tune_crf_per_seed`),
scores it on the test scenes (:func:`score_crf`, :func:`crf_test_rows`), repeats both on blurred
scenes (:func:`crf_blur_control`, :func:`crf_control_rows`) and compares the backends
(:func:`backend_agreement`, :func:`crf_cost_scaling`, :func:`cost_slopes`).

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
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checks import positive_float, positive_int
from ..constants import IGNORE_INDEX
from ..crf import dense_crf, mean_field
from ..data import chapter_datasets, make_loader, take
from ..metrics import SegmentationMetrics
from ..models.deeplab import deeplabv3, deeplabv3plus
from ..models.fcn import fcn8s
from ..seeds import SeededRun, fit_over_seeds, spread
from ..train import evaluate

__all__ = ["to_uint8_hwc", "crf_refine", "segmentation_scores", "crf_grid_search", "seconds_per_image",
           "head_features", "crf_finetune_head", "soften_edges", "readable_grid", "crf_cost_scaling", "loglog_slope",
           "CRF_PARAM_NAMES", "seed_scenes", "deeplab_builders", "ModelComparison", "train_and_score",
           "tune_crf_per_seed", "score_crf", "seed_values", "crf_gains", "crf_test_rows", "crf_blur_control",
           "crf_control_rows", "backend_agreement", "cost_slopes"]


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


# ----------------------------------------------------------------------------------------------
# The DeepLab comparison: scenes, models, training and test scores over seeds
# ----------------------------------------------------------------------------------------------
def seed_scenes(rt: Any, *, size: int, n_train: int, n_tune: int, n_test: int, seed: int) -> SimpleNamespace:
    """One seed's scenes, drawn as a run with ``rt.seed = seed`` draws them.

    Fresh training scenes, and held-out scenes split into tuning scenes (they choose the CRF
    parameters) and test scenes, all ``size x size`` (:func:`segbook.data.chapter_datasets`,
    segmentation).

    Returns:
        ``SimpleNamespace(train, info, tune, test)``: the training dataset, its
        :class:`~segbook.data.DataInfo`, and ``tune``/``test`` as ``(images [n, 3, S, S] float32,
        masks [n, S, S] int64)`` with ``n_tune`` and ``n_test`` scenes.
    """
    for value, name in ((size, "size"), (n_train, "n_train"), (n_tune, "n_tune"), (n_test, "n_test")):
        positive_int(value, name)
    train, held_out, info = chapter_datasets(rt, task="segmentation", size=size, n_train=n_train,
                                             n_val=n_tune + n_test, seed=seed)
    images, masks = take(held_out)
    return SimpleNamespace(train=train, info=info, tune=(images[:n_tune], masks[:n_tune]),
                           test=(images[n_tune:], masks[n_tune:]))


def deeplab_builders(num_classes: int, *, width: int, base_rates: Sequence[int], aspp_channels: int,
                     reduced_channels: int, depth: int = 10) -> dict[str, Callable[[], nn.Module]]:
    """The chapter's four models, as ``{name: () -> nn.Module}`` in the results table's order.

    ``"DeepLab v3+ OS8"`` and ``"DeepLab v3+ OS16"`` (decoder with ``reduced_channels`` low-level
    channels), ``"DeepLab v3 OS16"`` (no decoder), all on a ResNet-``depth`` of first width
    ``width`` with ASPP of ``aspp_channels`` channels at ``base_rates`` (rates at output stride 16)
    and no dropout; and ``"FCN-8s"`` at the same width. Each returns logits ``[N, num_classes, H, W]``
    at the input size. Builders, not models: each call draws fresh weights from the global RNG.
    """
    positive_int(num_classes, "num_classes", minimum=2)
    for value, name in ((width, "width"), (aspp_channels, "aspp_channels"),
                        (reduced_channels, "reduced_channels"), (depth, "depth")):
        positive_int(value, name)
    common = dict(num_classes=num_classes, depth=depth, width=width, base_rates=tuple(base_rates),
                  aspp_channels=aspp_channels, dropout=0.0)
    return {
        "DeepLab v3+ OS8": lambda: deeplabv3plus(output_stride=8, reduced_channels=reduced_channels, **common),
        "DeepLab v3+ OS16": lambda: deeplabv3plus(output_stride=16, reduced_channels=reduced_channels, **common),
        "DeepLab v3 OS16": lambda: deeplabv3(output_stride=16, **common),
        "FCN-8s": lambda: fcn8s(num_classes=num_classes, width=width),
    }


@dataclass
class ModelComparison:
    """What :func:`train_and_score` returns; every dict is keyed by model name in the builders' order.

    Attributes:
        runs: ``{name: [SeededRun per seed]}``: the trained models and their histories.
        scores: ``{name: [evaluate() dict per seed]}`` on that seed's test scenes ("miou",
            "boundary_f1", "iou_per_class", ...).
        eval_seconds: ``{name: [seconds per seed]}``: the wall time of each test evaluation.
    """

    runs: dict[str, list[SeededRun]]
    scores: dict[str, list[dict]]
    eval_seconds: dict[str, list[float]]


def train_and_score(builders: Mapping[str, Callable[[], nn.Module]], data: Mapping[int, SimpleNamespace],
                    seeds: Sequence[int], *, num_classes: int, batch_size: int, lr: float, warmup_steps: int,
                    device: Any = "cpu", order: Optional[Sequence[str]] = None) -> ModelComparison:
    """Train every model once per seed for one pass over that seed's scenes, then score it on its test scenes.

    For each seed every model starts from weights drawn with that seed and sees that seed's batches
    (``data[seed].train``, ``batch_size``, shuffled with the seed, last partial batch dropped) in the
    same order (:func:`segbook.seeds.fit_over_seeds`: AdamW with ``warmup_steps`` of linear warm-up,
    then cosine decay; NHWC). On a multi-core CPU the models train in separate one-thread processes,
    two at a time, in ``order`` (costliest first, so that both finish at about the same time); on a
    GPU one after another. Each trained model is then evaluated on ``data[seed].test`` (batches of 64).

    Args:
        builders: ``{name: () -> nn.Module}`` (:func:`deeplab_builders`); the results keep its order.
        data: ``{seed: seed_scenes(...)}`` for every seed.
        order: the training order (default: the builders' order); the numbers do not depend on it.
    """
    order = list(builders) if order is None else list(order)
    if sorted(order) != sorted(builders):
        raise ValueError(f"order {order} must name each of the builders {list(builders)} once")
    missing = [s for s in seeds if s not in data]
    if missing:
        raise ValueError(f"data has no scenes for seed(s) {missing}")
    positive_int(batch_size, "batch_size")
    positive_int(warmup_steps, "warmup_steps", minimum=0)
    trained = fit_over_seeds({name: builders[name] for name in order},
                             lambda s: make_loader(data[s].train, batch_size, shuffle=True, seed=s, drop_last=True),
                             seeds, task="segmentation", num_classes=num_classes, epochs=1, lr=lr,
                             warmup_steps=warmup_steps, device=device, channels_last=True, progress=False)
    runs = {name: trained[name] for name in builders}
    scores: dict[str, list[dict]] = {name: [] for name in runs}
    eval_s: dict[str, list[float]] = {name: [] for name in runs}
    for name, seed_runs in runs.items():
        for r in seed_runs:
            start = time.perf_counter()
            scores[name].append(evaluate(r.model, make_loader(torch.utils.data.TensorDataset(*data[r.seed].test), 64),
                                         task="segmentation", num_classes=num_classes, device=device,
                                         channels_last=True))
            eval_s[name].append(time.perf_counter() - start)
    return ModelComparison(runs=runs, scores=scores, eval_seconds=eval_s)


# ----------------------------------------------------------------------------------------------
# The CRF study over seeds: each seed's model, tuned on its tuning scenes, scored on its test scenes
# ----------------------------------------------------------------------------------------------
def tune_crf_per_seed(runs: Sequence[SeededRun], data: Mapping[int, SimpleNamespace], num_classes: int,
                      grid: Mapping[str, Sequence], *, backend: str = "auto") -> dict[int, SimpleNamespace]:
    """Per seed: the model (moved to the CPU), its test probabilities and the CRF setting chosen on the tuning scenes.

    For each run of ``runs`` (one model per seed) the softmax of the model on ``data[seed].tune`` and
    ``data[seed].test`` images (``[n, K, H, W]``), then :func:`crf_grid_search` over ``grid`` on the
    tuning scenes.

    Returns:
        ``{seed: SimpleNamespace(model, test_probs, best, grid)}``: ``best`` the chosen CRF
        parameters, ``grid`` the search's rows. Later steps (:func:`score_crf`,
        :func:`crf_blur_control`) add their results to these namespaces.
    """
    crf = {}
    for r in runs:
        if r.seed not in data:
            raise ValueError(f"data has no scenes for seed {r.seed}")
        (tune_x, tune_y), (test_x, _) = data[r.seed].tune, data[r.seed].test
        model = r.model.cpu()
        with torch.inference_mode():
            tune_p, test_p = model(tune_x).softmax(1), model(test_x).softmax(1)
        best, rows = crf_grid_search(tune_x, tune_p, tune_y, num_classes, grid, backend=backend)
        crf[r.seed] = SimpleNamespace(model=model, test_probs=test_p, best=best, grid=rows)
    return crf


def score_crf(crf: Mapping[int, SimpleNamespace], data: Mapping[int, SimpleNamespace], num_classes: int, *,
              backend: str = "auto") -> None:
    """Score each seed's tuned CRF on that seed's test scenes, in place.

    Adds to every ``crf[seed]`` (from :func:`tune_crf_per_seed`): ``refined`` (the CRF's
    probabilities ``[n, K, H, W]`` with the chosen setting), and the :func:`segmentation_scores`
    ``before`` (the network alone), ``after`` (tuned CRF) and ``readme`` (the CRF with
    :func:`segbook.crf.dense_crf`'s defaults, pydensecrf's README values).
    """
    for s, c in crf.items():
        images, masks = data[s].test
        c.refined = crf_refine(images, c.test_probs, backend=backend, **c.best)
        c.before = segmentation_scores(c.test_probs.argmax(1), masks, num_classes)
        c.after = segmentation_scores(c.refined.argmax(1), masks, num_classes)
        c.readme = segmentation_scores(crf_refine(images, c.test_probs, backend=backend).argmax(1), masks,
                                       num_classes)


def seed_values(crf: Mapping[int, SimpleNamespace], key: str, metric: str) -> list[float]:
    """One value per seed: ``crf[seed].<key>[metric]``, e.g. ``seed_values(crf, "after", "miou")``."""
    try:
        return [getattr(c, key)[metric] for c in crf.values()]
    except AttributeError as err:
        raise KeyError(f"no scores {key!r} in the CRF results (run score_crf / crf_blur_control first)") from err


def crf_gains(crf: Mapping[int, SimpleNamespace], after: str = "after", before: str = "before") -> dict:
    """Per seed, ``after - before`` of mIoU and boundary F1: ``{"miou": [...], "boundary_f1": [...]}``."""
    return {mt: [a - b for a, b in zip(seed_values(crf, after, mt), seed_values(crf, before, mt))]
            for mt in ("miou", "boundary_f1")}


def crf_test_rows(crf: Mapping[int, SimpleNamespace]) -> list[dict]:
    """The CRF's test table: the network alone, tuned CRF, README CRF and the tuned gain.

    Each cell is ``mean [min, max]`` over the seeds (:func:`segbook.seeds.spread`) of mIoU and
    boundary F1, from the scores :func:`score_crf` added.
    """
    cell = lambda key, metric: spread(seed_values(crf, key, metric)).format()  # noqa: E731
    rows = [{"test scenes": label, "mIoU": cell(key, "miou"), "boundary F1": cell(key, "boundary_f1")}
            for label, key in (("DeepLab v3+ OS8", "before"), ("+ CRF (tuned)", "after"),
                               ("+ CRF (pydensecrf README values)", "readme"))]
    gain = crf_gains(crf)
    rows.append({"test scenes": "gain of the tuned CRF", "mIoU": spread(gain["miou"]).format("+.3f"),
                 "boundary F1": spread(gain["boundary_f1"]).format("+.3f")})
    return rows


def crf_blur_control(crf: Mapping[int, SimpleNamespace], data: Mapping[int, SimpleNamespace], num_classes: int,
                     grid: Mapping[str, Sequence], *, blur: float, backend: str = "auto") -> None:
    """The control: each seed's model and CRF on its scenes blurred by :func:`soften_edges`, in place.

    The tuning and test scenes are blurred (``sigma = blur`` pixels; noise drawn with ``seed`` and
    ``seed + 1000``), the network runs on them, the CRF is searched again over ``grid`` on the
    blurred tuning scenes and applied to the blurred test scenes. Adds ``blur_best``,
    ``blur_before`` and ``blur_after`` (:func:`segmentation_scores`) to every ``crf[seed]``.
    """
    positive_float(blur, "blur")
    for s, c in crf.items():
        (tune_x, tune_y), (test_x, test_y) = data[s].tune, data[s].test
        tune_b, test_b = soften_edges(tune_x, blur, seed=s), soften_edges(test_x, blur, seed=s + 1000)
        with torch.inference_mode():
            tune_p, test_p = c.model(tune_b).softmax(1), c.model(test_b).softmax(1)
        c.blur_best, _ = crf_grid_search(tune_b, tune_p, tune_y, num_classes, grid, backend=backend)
        c.blur_before = segmentation_scores(test_p.argmax(1), test_y, num_classes)
        c.blur_after = segmentation_scores(
            crf_refine(test_b, test_p, backend=backend, **c.blur_best).argmax(1), test_y, num_classes)


def crf_control_rows(crf: Mapping[int, SimpleNamespace], *, blur: float) -> list[dict]:
    """The control's table: no-CRF scores and the tuned CRF's gains, on hard edges and blurred.

    Two rows (``"salient (hard edges)"``, ``"blurred, sigma <blur> px"``), each cell
    ``mean [min, max]`` over the seeds; needs :func:`score_crf` and :func:`crf_blur_control` first.
    """
    rows = []
    for label, before, after in (("salient (hard edges)", "before", "after"),
                                 (f"blurred, sigma {blur} px", "blur_before", "blur_after")):
        g = crf_gains(crf, after, before)
        rows.append({"scenes": label,
                     "no CRF: mIoU": spread(seed_values(crf, before, "miou")).format(),
                     "CRF gain: mIoU": spread(g["miou"]).format("+.3f"),
                     "no CRF: boundary F1": spread(seed_values(crf, before, "boundary_f1")).format(),
                     "CRF gain: boundary F1": spread(g["boundary_f1"]).format("+.3f")})
    return rows


def backend_agreement(crf: Mapping[int, SimpleNamespace], data: Mapping[int, SimpleNamespace], *, crop: int,
                      n: int, backend: str) -> dict[str, list[float]]:
    """How often ``backend``, the torch lattice and the exact mean field give the same label.

    Per seed, the first ``n`` test scenes and probabilities cropped to their top-left
    ``crop x crop`` pixels are refined by each backend with that seed's chosen setting.

    Returns:
        ``{"backend": [...], "lattice": [...], "changed": [...]}``, one fraction of pixels per seed:
        ``backend``'s labels equal to the exact ones, the lattice's equal to the exact ones, and the
        exact CRF's labels that differ from the network's arg-max.
    """
    positive_int(crop, "crop")
    positive_int(n, "n")
    agree: dict[str, list[float]] = {"backend": [], "lattice": [], "changed": []}
    for s, c in crf.items():
        crop_images, crop_probs = data[s].test[0][:n, :, :crop, :crop], c.test_probs[:n, :, :crop, :crop]
        labels = {b: crf_refine(crop_images, crop_probs, backend=b, **c.best).argmax(1)
                  for b in dict.fromkeys((backend, "lattice", "exact"))}
        agree["backend"].append((labels[backend] == labels["exact"]).float().mean().item())
        agree["lattice"].append((labels["lattice"] == labels["exact"]).float().mean().item())
        agree["changed"].append((labels["exact"] != crop_probs.argmax(1)).float().mean().item())
    return agree


def cost_slopes(cost: Sequence[Mapping], backends: Sequence[str]) -> dict[str, float]:
    """``{backend: log-log slope of seconds against pixels}`` from :func:`crf_cost_scaling`'s rows."""
    out = {}
    for b in backends:
        rows = [r for r in cost if r["backend"] == b]
        if len(rows) < 2:
            raise ValueError(f"backend {b!r} has {len(rows)} timed sizes in cost; a slope needs two or more")
        out[b] = loglog_slope([r["pixels"] for r in rows], [r["seconds"] for r in rows])
    return out
