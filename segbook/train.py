"""Training and evaluation loops shared by every chapter.

``fit`` trains a classifier (logits ``[N, K]``) or a segmenter (logits ``[N, K, H, W]`` at the
input size) with cross-entropy, shows a tqdm progress bar, and records a :class:`History` for
plots. On CUDA it uses automatic mixed precision and channels_last; evaluation runs under
``torch.inference_mode``. With the same seed, data order and machine, two runs give the same
numbers.

Auxiliary heads (GoogLeNet): a model may return a tuple ``(main, aux1, aux2, ...)`` in training
mode; the loss is ``CE(main) + aux_weight * sum_i CE(aux_i)`` (``aux_weight=0.3`` as in Szegedy et
al. 2015). In eval mode it must return the main logits alone, as only they are used at test time.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Iterable, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from .metrics import SegmentationMetrics

__all__ = ["History", "fit", "evaluate", "predict", "TASKS"]

TASKS = ("classification", "segmentation")


@dataclass
class History:
    """What :func:`fit` recorded.

    Attributes:
        task: ``"classification"`` or ``"segmentation"``.
        train_loss: mean training loss per epoch (main + weighted aux losses).
        train_accuracy: running training accuracy per epoch (pixel accuracy for segmentation).
        step_loss: training loss of every optimisation step.
        val: per-epoch dicts from :func:`evaluate` (empty without a validation loader).
        seconds: wall time of each epoch (training + evaluation).
    """

    task: str
    train_loss: list = field(default_factory=list)
    train_accuracy: list = field(default_factory=list)
    step_loss: list = field(default_factory=list)
    val: list = field(default_factory=list)
    seconds: list = field(default_factory=list)

    @property
    def epochs(self) -> int:
        return len(self.train_loss)

    @property
    def final(self) -> dict:
        """The last epoch's validation metrics (empty dict when there was no validation)."""
        return dict(self.val[-1]) if self.val else {}

    @property
    def total_seconds(self) -> float:
        return float(sum(self.seconds))

    def series(self, key: str) -> list:
        """Per-epoch values: ``"train_loss"``, ``"train_accuracy"`` or ``"val.<metric>"`` (e.g. ``"val.miou"``)."""
        if key.startswith("val."):
            name = key[4:]
            if not self.val or name not in self.val[0]:
                available = sorted(self.val[0]) if self.val else []
                raise KeyError(f"no validation metric {name!r}; available: {available}")
            return [v[name] for v in self.val]
        if key in ("train_loss", "train_accuracy", "step_loss", "seconds"):
            return list(getattr(self, key))
        raise KeyError(f"unknown series {key!r}; use train_loss, train_accuracy, step_loss, seconds or val.<metric>")


def _split_output(out) -> tuple[torch.Tensor, list]:
    if isinstance(out, torch.Tensor):
        return out, []
    if isinstance(out, (tuple, list)) and out and all(isinstance(o, torch.Tensor) for o in out):
        return out[0], list(out[1:])
    raise TypeError(
        "the model must return logits (a Tensor) or a tuple (main, aux1, ...) of Tensors, "
        f"got {type(out).__name__}"
    )


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")


def _check_logits(logits: torch.Tensor, target: torch.Tensor, task: str, num_classes: Optional[int]) -> None:
    if task == "classification":
        if logits.dim() != 2 or target.dim() != 1 or logits.shape[0] != target.shape[0]:
            raise ValueError(
                f"classification expects logits [N, K] and targets [N], got {tuple(logits.shape)} and {tuple(target.shape)}"
            )
    else:
        if logits.dim() != 4 or target.dim() != 3:
            raise ValueError(
                f"segmentation expects logits [N, K, H, W] and masks [N, H, W], got {tuple(logits.shape)} and {tuple(target.shape)}"
            )
        if logits.shape[-2:] != target.shape[-2:]:
            raise ValueError(
                f"logits are {tuple(logits.shape[-2:])} but masks are {tuple(target.shape[-2:])}: the model must "
                "resize its output to the input (F.interpolate(..., size=x.shape[-2:]))"
            )
    if num_classes is not None and logits.shape[1] != num_classes:
        raise ValueError(f"the model outputs {logits.shape[1]} classes but num_classes={num_classes}")
    if target.is_floating_point():
        raise TypeError(f"targets must be integer class indices (int64), got {target.dtype}")


def _check_labels(target: torch.Tensor, num_classes: int, ignore_index: int) -> None:
    """Labels must lie in ``[0, num_classes)`` or equal ``ignore_index`` (one reduction per batch)."""
    valid = (target == ignore_index) | ((target >= 0) & (target < num_classes))
    if not bool(valid.all()):
        bad = target[~valid].unique()[:5].tolist()
        raise ValueError(
            f"labels {bad} are outside [0, {num_classes}) and are not the ignore index {ignore_index}; "
            "check the dataset's num_classes, or map unlabelled pixels to the ignore index"
        )


def _loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int) -> torch.Tensor:
    if logits.dim() == 4 and logits.shape[-2:] != target.shape[-2:]:  # auxiliary maps may be coarser
        logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
    return F.cross_entropy(logits.float(), target, ignore_index=ignore_index)


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    try:  # a widget bar in Jupyter when ipywidgets is there (Colab), a text bar otherwise
        import ipywidgets  # noqa: F401
        from tqdm.auto import tqdm
    except ImportError:
        from tqdm.std import tqdm
    return tqdm(total=total, desc=desc, leave=False, mininterval=0.5)


def _to_device(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def fit(
    model: nn.Module,
    train_loader: Iterable,
    val_loader: Optional[Iterable] = None,
    *,
    task: str,
    epochs: int,
    num_classes: Optional[int] = None,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    optimizer: str = "adamw",
    momentum: float = 0.9,
    schedule: Optional[str] = "cosine",
    aux_weight: float = 0.3,
    ignore_index: int = 255,
    device: Optional[Union[str, torch.device]] = None,
    amp: Optional[bool] = None,
    channels_last: Optional[bool] = None,
    clip_grad: Optional[float] = None,
    seed: Optional[int] = 0,
    progress: bool = True,
    log: bool = True,
    desc: str = "",
) -> History:
    """Train ``model`` in place and return its :class:`History`.

    Args:
        model: returns logits ``[N, K]`` (classification) or ``[N, K, H, W]`` at the input size
            (segmentation); or ``(main, *aux)`` in training mode.
        train_loader: yields ``(images [N, 3, H, W] float, targets)`` with targets ``[N]`` or
            ``[N, H, W]`` int64.
        val_loader: evaluated after every epoch with :func:`evaluate` (optional).
        task: ``"classification"`` or ``"segmentation"``.
        epochs: number of passes over ``train_loader``.
        num_classes: checked against the logits; needed for segmentation metrics.
        lr, weight_decay, momentum: optimiser settings.
        optimizer: ``"adamw"`` or ``"sgd"`` (with Nesterov momentum).
        schedule: ``"cosine"`` (per-step cosine decay to 0) or ``None`` (constant).
        aux_weight: weight of each auxiliary loss.
        ignore_index: target value excluded from the loss and the metrics.
        device: default: the model's current device.
        amp: mixed precision (default: on for CUDA only).
        channels_last: NHWC memory format (default: on for CUDA only).
        clip_grad: clip the global gradient norm to this value.
        seed: reseeds torch before training, so dropout and augmentation draws repeat.
        progress: show a tqdm bar; log: print one line per epoch.
        desc: a label for the bar and the log lines.
    """
    _check_task(task)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    try:
        steps_per_epoch = len(train_loader)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError("train_loader must have a length (a DataLoader or a list of batches)") from None
    if steps_per_epoch == 0:
        raise ValueError("train_loader is empty: no batches to train on (check the dataset size and batch_size/drop_last)")
    if task == "segmentation" and num_classes is None and val_loader is not None:
        raise ValueError("segmentation metrics need num_classes=...")

    if device is None:
        device = next(model.parameters()).device
    device = torch.device(device)
    amp = (device.type == "cuda") if amp is None else amp
    channels_last = (device.type == "cuda") if channels_last is None else channels_last
    if seed is not None:
        torch.manual_seed(seed)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)

    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer == "adamw":
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    elif optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=momentum > 0)
    else:
        raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {optimizer!r}")
    total_steps = epochs * steps_per_epoch
    if schedule == "cosine":
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total_steps) / total_steps)))
    elif schedule is None:
        sched = None
    else:
        raise ValueError(f"schedule must be 'cosine' or None, got {schedule!r}")
    amp_dtype = torch.bfloat16 if (device.type == "cuda" and torch.cuda.is_bf16_supported()) else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=amp and device.type == "cuda" and amp_dtype == torch.float16)

    history = History(task=task)
    bar = _progress(total_steps, desc or type(model).__name__, progress)
    try:
        for epoch in range(epochs):
            start = time.perf_counter()
            model.train()
            loss_sum = torch.zeros((), device=device, dtype=torch.float64)
            correct = torch.zeros((), device=device, dtype=torch.float64)
            counted = torch.zeros((), device=device, dtype=torch.float64)
            n_batches = 0
            for images, targets in train_loader:
                images = _to_device(images, device, channels_last)
                targets = targets.to(device, non_blocking=True)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
                    main, aux = _split_output(model(images))
                    _check_logits(main, targets, task, num_classes)
                    # before the loss: on CUDA a bad label is a device-side assert that breaks the session
                    _check_labels(targets, main.shape[1], ignore_index)
                    loss = _loss(main, targets, ignore_index)
                    for a in aux:
                        loss = loss + aux_weight * _loss(a, targets, ignore_index)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if clip_grad is not None:
                    scaler.unscale_(opt)
                    nn.utils.clip_grad_norm_(params, clip_grad)
                scaler.step(opt)
                scaler.update()
                if sched is not None:
                    sched.step()
                detached = loss.detach()
                history.step_loss.append(detached)
                loss_sum += detached
                n_batches += 1
                with torch.no_grad():
                    valid = targets != ignore_index
                    correct += ((main.argmax(1) == targets) & valid).sum()
                    counted += valid.sum()
                if bar is not None:
                    bar.update(1)
            if n_batches == 0:
                raise ValueError(f"train_loader yielded no batches in epoch {epoch + 1} although len() is {steps_per_epoch}")
            # One host sync per epoch, not per step.
            history.step_loss[-n_batches:] = [float(x) for x in history.step_loss[-n_batches:]]
            if not math.isfinite(float(loss_sum)):
                raise FloatingPointError(
                    f"training loss became {float(loss_sum)} in epoch {epoch + 1}; lower the learning rate (lr={lr})"
                )
            history.train_loss.append(float(loss_sum) / n_batches)
            history.train_accuracy.append(float(correct) / max(float(counted), 1.0))
            if val_loader is not None:
                history.val.append(evaluate(model, val_loader, task=task, num_classes=num_classes,
                                            ignore_index=ignore_index, device=device, amp=amp,
                                            channels_last=channels_last))
            history.seconds.append(time.perf_counter() - start)
            if log:
                print(_epoch_line(desc, epoch, epochs, history), flush=True)
    finally:
        if bar is not None:
            bar.close()
    model.eval()
    return history


def _epoch_line(desc: str, epoch: int, epochs: int, h: History) -> str:
    parts = [f"{desc + ' ' if desc else ''}epoch {epoch + 1}/{epochs}", f"loss {h.train_loss[-1]:.4f}"]
    if h.val:
        for k, v in h.val[-1].items():
            if isinstance(v, float):
                parts.append(f"val {k} {v:.4f}")
    parts.append(f"({h.seconds[-1]:.1f} s)")
    return "  ".join(parts)


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    loader: Iterable,
    *,
    task: str,
    num_classes: Optional[int] = None,
    ignore_index: int = 255,
    device: Optional[Union[str, torch.device]] = None,
    amp: Optional[bool] = None,
    channels_last: Optional[bool] = None,
    boundary_tolerance: int = 2,
) -> dict:
    """Evaluate ``model`` in eval mode under ``torch.inference_mode``.

    Returns:
        classification: ``{"loss", "accuracy"}``;
        segmentation: ``{"loss", "miou", "pixel_acc", "boundary_f1", "iou_per_class", "boundary_f1_per_class"}``.
    """
    _check_task(task)
    if task == "segmentation" and num_classes is None:
        raise ValueError("segmentation metrics need num_classes=...")
    if device is None:
        device = next(model.parameters()).device
    device = torch.device(device)
    amp = (device.type == "cuda") if amp is None else amp
    channels_last = (device.type == "cuda") if channels_last is None else channels_last
    amp_dtype = torch.bfloat16 if (device.type == "cuda" and torch.cuda.is_bf16_supported()) else torch.float16
    was_training = model.training
    model.eval()
    loss_sum, count, correct = 0.0, 0, 0
    seg = SegmentationMetrics(num_classes, ignore_index=ignore_index, boundary_tolerance=boundary_tolerance) \
        if task == "segmentation" else None
    try:
        for images, targets in loader:
            images = _to_device(images, device, channels_last)
            targets = targets.to(device)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
                logits, _ = _split_output(model(images))
            _check_logits(logits, targets, task, num_classes)
            _check_labels(targets, logits.shape[1], ignore_index)
            valid = targets != ignore_index
            n_valid = int(valid.sum())
            if n_valid:
                loss_sum += float(F.cross_entropy(logits.float(), targets, ignore_index=ignore_index, reduction="sum"))
            count += n_valid
            pred = logits.argmax(1)
            if seg is None:
                correct += int(((pred == targets) & valid).sum())
            else:
                seg.update(pred, targets)
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("the evaluation loader yielded no (non-ignored) targets")
    out = {"loss": loss_sum / count}
    if seg is None:
        out["accuracy"] = correct / count
    else:
        out.update(seg.compute())
    return out


@torch.inference_mode()
def predict(model: nn.Module, images: torch.Tensor, *, device: Optional[Union[str, torch.device]] = None,
            batch_size: int = 64) -> torch.Tensor:
    """Arg-max labels for ``images [N, 3, H, W]``: ``[N]`` or ``[N, H, W]`` int64 on the CPU."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise ValueError(f"images must be a float tensor [N, 3, H, W], got {getattr(images, 'shape', type(images))}")
    if not images.is_floating_point():
        raise TypeError(f"images must be float (scaled to [0, 1]), got {images.dtype}")
    if device is None:
        device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        outs = []
        for chunk in images.split(batch_size):
            logits, _ = _split_output(model(chunk.to(device)))
            outs.append(logits.argmax(1).cpu())
    finally:
        model.train(was_training)
    return torch.cat(outs)
