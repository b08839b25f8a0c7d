"""Training and evaluation loops shared by every chapter.

``fit`` trains a classifier (logits ``[N, K]``) or a segmenter (logits ``[N, K, H, W]`` at the
input size) with cross-entropy, or any model with a loss of your own (``loss_fn=``, e.g. a
regression with the mean squared error), shows a tqdm progress bar, and records a
:class:`History` for plots. It reads as a short story: check the arguments, decide how to run
(:func:`segbook.execution.resolve_execution`: device, mixed precision, memory format), build the
optimiser (:func:`make_optimizer`) and the schedule (:func:`lr_factor`), then
:func:`train_one_epoch` and :func:`evaluate` once per epoch. ``evaluate`` runs under
``torch.inference_mode``; it and the training step share one batch step (labels checked, batch
moved, forward under autocast, output split into main and auxiliary logits).

Precision (see :mod:`segbook.execution`): bf16 autocast on CUDA GPUs with compute capability
>= 8.0, fp16 with a ``GradScaler`` on older ones (a T4), float32 on the CPU.

Reproducibility: with the same seed, data order and CPU, two runs give the same numbers. On CUDA
they do not quite: the backward passes of bilinear upsampling, adaptive/max pooling and
deformable convolution use atomic adds whose order varies, so the last digits of a loss differ
from run to run. The book's claims are checked with margins wide enough for that.

Host syncs: labels are validated on the CPU before the batch moves to the device, losses and
counts accumulate on the device, and the host reads them once per epoch.

Auxiliary heads (GoogLeNet): a model may return a tuple ``(main, aux1, aux2, ...)`` in training
mode; the loss is ``CE(main) + aux_weight * sum_i CE(aux_i)`` (``aux_weight=0.3`` as in Szegedy et
al. 2015). In eval mode it must return the main logits alone, as only they are used at test time.

Several independent models train at once with :func:`segbook.parallel.fit_many`.
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checks import batch_norm_batch_of_one, positive_float, positive_int
from .constants import IGNORE_INDEX, TASKS
from .execution import Execution, resolve_execution
from .metrics import SegmentationMetrics

__all__ = ["History", "SCHEDULES", "OPTIMIZERS", "lr_factor", "make_optimizer", "class_balance_weights", "fit",
           "train_one_epoch", "evaluate", "predict"]

#: What :func:`fit` trains: the data tasks (:data:`segbook.constants.TASKS`) and a regression,
#: which needs its own ``loss_fn``.
_FIT_TASKS = (*TASKS, "regression")

@dataclass
class History:
    """What :func:`fit` recorded.

    Attributes:
        task: ``"classification"``, ``"segmentation"`` or ``"regression"``.
        train_loss: mean training loss per epoch (main + weighted aux losses).
        train_accuracy: running training accuracy per epoch (pixel accuracy for segmentation;
            empty for a regression).
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


SCHEDULES = ("cosine", "poly", None)


def lr_factor(schedule: Optional[str], total_steps: int, *, warmup_steps: int = 0, power: float = 0.9):
    """The learning-rate multiplier of step ``s`` (``0 <= s < total_steps``) as a function, or ``None`` for a constant rate.

    With ``W = warmup_steps`` and ``S = total_steps``: steps ``s < W`` use ``(s + 1) / W`` (a linear
    warm-up that reaches the full rate at step ``W - 1``), and the remaining ``S - W`` steps decay
    from 1 with progress ``t = (s - W) / (S - W)``: ``"cosine"`` gives ``(1 + cos(pi t)) / 2``,
    ``"poly"`` gives ``(1 - t)^power`` (DeepLab's "poly" policy with power 0.9), ``None`` keeps 1.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be 'cosine', 'poly' or None, got {schedule!r}")
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
        raise ValueError(f"warmup_steps must be a non-negative int, got {warmup_steps!r}")
    if warmup_steps and warmup_steps >= total_steps:
        raise ValueError(f"warmup_steps={warmup_steps} leaves no steps to train at the full rate "
                         f"(the run has {total_steps} steps); use fewer warm-up steps")
    if schedule is None and not warmup_steps:
        return None
    decay_steps = total_steps - warmup_steps

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        t = min(step - warmup_steps, decay_steps) / decay_steps
        if schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * t))
        if schedule == "poly":
            return (1 - t) ** power
        return 1.0

    return factor


def _split_output(out) -> tuple[torch.Tensor, list]:
    if isinstance(out, torch.Tensor):
        return out, []
    if isinstance(out, (tuple, list)) and out and all(isinstance(o, torch.Tensor) for o in out):
        return out[0], list(out[1:])
    raise TypeError(
        "the model must return logits (a Tensor) or a tuple (main, aux1, ...) of Tensors, "
        f"got {type(out).__name__}"
    )


def _check_task(task: str, tasks: tuple = TASKS) -> None:
    if task not in tasks:
        raise ValueError(f"task must be one of {tasks}, got {task!r}")


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


def _loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int,
          weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    if logits.dim() == 4 and logits.shape[-2:] != target.shape[-2:]:  # auxiliary maps may be coarser
        logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
    return F.cross_entropy(logits.float(), target, weight=weight, ignore_index=ignore_index)


def class_balance_weights(masks: torch.Tensor, num_classes: int, *, ignore_index: int = IGNORE_INDEX,
                          power: float = 1.0) -> torch.Tensor:
    """Loss weights ``[K]`` that balance class frequencies, from label maps ``masks [N, H, W]`` (int).

    Median-frequency balancing (Eigen & Fergus, 2015): with ``f_c`` the share of the labelled
    pixels that belong to class ``c``, ``w_c = (median_k f_k / f_c) ** power`` (the median over the
    classes that occur; for an even count, the lower middle value). A class rarer than
    the median weighs more in the loss and a common one (usually the background) less, so every
    class pulls on the net about equally, as mean IoU counts every class equally. ``power=0.5``
    damps the weights. U-Net's weight map has this class-balancing term plus a second term that
    up-weights the thin gaps between touching cells, which is not computed here. Ignored pixels
    (``ignore_index``) count for no class; a class that never occurs gets weight 0.
    """
    if not isinstance(masks, torch.Tensor) or masks.is_floating_point() or masks.dim() < 1:
        raise ValueError(f"masks must be an integer label tensor, got {getattr(masks, 'dtype', type(masks))}")
    num_classes = positive_int(num_classes, "num_classes")
    if not isinstance(power, (int, float)) or isinstance(power, bool) or not (0 <= power <= 4):
        raise ValueError(f"power must be a number in [0, 4], got {power!r}")
    labels = masks[masks != ignore_index].flatten().long()
    if labels.numel() == 0:
        raise ValueError("masks hold no labelled pixel (all equal ignore_index)")
    if bool(((labels < 0) | (labels >= num_classes)).any()):
        raise ValueError(f"mask labels must lie in [0, {num_classes}) or equal ignore_index={ignore_index}")
    freq = torch.bincount(labels, minlength=num_classes).double() / labels.numel()
    present = freq > 0
    weights = torch.zeros(num_classes, dtype=torch.float64)
    weights[present] = (freq[present].median() / freq[present]) ** float(power)
    return weights.float()


def _batch_size(images) -> int:
    return int(images.shape[0]) if isinstance(images, torch.Tensor) and images.dim() > 0 else 0


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    try:  # a widget bar in Jupyter when ipywidgets is there (Colab), a text bar otherwise
        import ipywidgets  # noqa: F401
        from tqdm.auto import tqdm
    except ImportError:
        from tqdm.std import tqdm
    return tqdm(total=total, desc=desc, leave=False, mininterval=0.5)


OPTIMIZERS = ("adamw", "adam", "sgd")


def make_optimizer(params: Iterable, name: str = "adamw", *, lr: float, weight_decay: float = 0.0,
                   momentum: float = 0.9) -> torch.optim.Optimizer:
    """The optimiser ``name`` over ``params`` (tensors or param-group dicts), as :func:`fit` builds it.

    ``"adamw"``: AdamW (decoupled weight decay, Loshchilov & Hutter 2019); ``"adam"``: Adam, with
    ``weight_decay`` as an L2 term added to the gradient; ``"sgd"``: SGD with momentum, Nesterov's
    when ``momentum > 0``. ``lr`` and ``weight_decay`` are ``>= 0``, ``momentum`` in ``[0, 1)``.
    """
    positive_float(lr, "lr", inclusive=True)
    positive_float(weight_decay, "weight_decay", inclusive=True)
    positive_float(momentum, "momentum", inclusive=True)
    if momentum >= 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=momentum > 0)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")


def _scheduler(optimizer: torch.optim.Optimizer, schedule, total_steps: int, warmup_steps: int):
    """A per-step ``LambdaLR`` for a named schedule (:func:`lr_factor`) or a function ``step -> factor``."""
    if callable(schedule):
        if warmup_steps:
            raise ValueError("warmup_steps applies to the named schedules; fold the warm-up into your schedule function")
        return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    factor = lr_factor(schedule, total_steps, warmup_steps=warmup_steps)
    return None if factor is None else torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _check_fit_args(train_loader, val_loader, *, task: str, epochs: int, num_classes: Optional[int],
                    class_weights: Optional[torch.Tensor], loss_fn: Optional[Callable], aux_weight: float,
                    clip_grad: Optional[float]) -> tuple[int, int]:
    """``(epochs, steps per epoch)`` after checking what :func:`fit` was given."""
    _check_task(task, _FIT_TASKS)
    epochs = positive_int(epochs, "epochs")
    try:
        steps_per_epoch = len(train_loader)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError("train_loader must have a length (a DataLoader or a list of batches)") from None
    if steps_per_epoch == 0:
        raise ValueError("train_loader is empty: no batches to train on (check the dataset size and batch_size/drop_last)")
    if task == "segmentation" and num_classes is None and val_loader is not None:
        raise ValueError("segmentation metrics need num_classes=...")
    if loss_fn is not None and not callable(loss_fn):
        raise TypeError(f"loss_fn must be a function (output, targets) -> scalar loss, got {type(loss_fn).__name__}")
    if task == "regression" and (loss_fn is None or val_loader is not None):
        raise ValueError("task='regression' needs loss_fn= (e.g. F.mse_loss) and no val_loader (evaluate() scores "
                         "classes); evaluate a regression yourself after fit")
    if class_weights is not None:
        if loss_fn is not None:
            raise ValueError("class_weights weigh the default cross-entropy; with loss_fn= put them into your loss")
        if (not isinstance(class_weights, torch.Tensor) or class_weights.dim() != 1 or not class_weights.is_floating_point()
                or (num_classes is not None and class_weights.numel() != num_classes)
                or not bool(torch.isfinite(class_weights).all()) or bool((class_weights < 0).any())):
            raise ValueError(f"class_weights must be a float tensor [num_classes] of finite weights >= 0, got "
                             f"{getattr(class_weights, 'shape', type(class_weights))} for num_classes={num_classes}")
    positive_float(aux_weight, "aux_weight", inclusive=True)
    positive_float(clip_grad, "clip_grad", allow_none=True)
    return epochs, steps_per_epoch


def _log_layout_guard(model: nn.Module, ex: Execution) -> None:
    if ex.channels_last and ex.layout_guard and not getattr(model, "_segbook_guard_logged", False):
        model._segbook_guard_logged = True  # once per model, not once per fit_many child or stage
        n = len(ex.layout_guard)
        print(f"layout guard: {n} 1x1 stride-2 conv{'s' if n > 1 else ''} with < 16 input channels "
              "run NCHW on the CPU, the rest channels_last (oneDNN #6035)", flush=True)


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
    schedule: Union[str, None, Callable[[int], float]] = "cosine",
    warmup_steps: int = 0,
    aux_weight: float = 0.3,
    class_weights: Optional[torch.Tensor] = None,
    loss_fn: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None,
    ignore_index: int = IGNORE_INDEX,
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
            (segmentation), any tensor for a regression; or ``(main, *aux)`` in training mode.
        train_loader: yields ``(images [N, 3, H, W] float, targets)`` with targets ``[N]`` or
            ``[N, H, W]`` int64 (for a regression, whatever ``loss_fn`` takes).
        val_loader: evaluated after every epoch with :func:`evaluate` (optional; not for a regression).
        task: ``"classification"``, ``"segmentation"`` or ``"regression"`` (needs ``loss_fn``;
            no accuracy is recorded).
        epochs: number of passes over ``train_loader``.
        num_classes: checked against the logits; needed for segmentation metrics.
        lr, weight_decay, momentum: optimiser settings.
        optimizer: ``"adamw"``, ``"adam"`` or ``"sgd"`` (with Nesterov momentum); see :func:`make_optimizer`.
        schedule: ``"cosine"`` (per-step cosine decay to 0), ``"poly"`` (DeepLab's
            ``(1 - s/S)^0.9`` per step), ``None`` (constant), or a function ``step -> factor`` of
            the learning rate (as ``torch.optim.lr_scheduler.LambdaLR`` takes); see :func:`lr_factor`.
        warmup_steps: ramp the learning rate linearly from ``lr / warmup_steps`` to ``lr`` over
            the first ``warmup_steps`` optimisation steps, then follow ``schedule`` over the
            remaining steps (``0``: no warm-up). Must be below the total number of steps.
        aux_weight: weight of each auxiliary loss.
        class_weights: optional float ``[K]`` weights of the classes in the cross-entropy (e.g.
            :func:`class_balance_weights`); the loss is the weighted mean over pixels.
        loss_fn: ``loss_fn(output, targets) -> scalar`` instead of the cross-entropy, applied to
            the main output and to each auxiliary one (e.g. ``F.mse_loss`` for a regression).
            With it the label and logit checks do not apply.
        ignore_index: target value excluded from the loss and the metrics.
        device: default: the model's current device.
        amp: mixed precision (default: on for CUDA only; dtype from
            :func:`segbook.execution.amp_dtype_for`).
        channels_last: NHWC memory format (default: on for CUDA only).
        clip_grad: clip the global gradient norm to this value.
        seed: reseeds torch before training, so dropout and augmentation draws repeat (``None``:
            leave the random state alone).
        progress: show a tqdm bar; log: print one line per epoch.
        desc: a label for the bar and the log lines.

    A training batch of a single image is skipped with a warning when the model has batch norm
    (it cannot normalise one value per channel at the coarsest maps); use ``drop_last=True``.
    """
    epochs, steps_per_epoch = _check_fit_args(train_loader, val_loader, task=task, epochs=epochs,
                                              num_classes=num_classes, class_weights=class_weights,
                                              loss_fn=loss_fn, aux_weight=aux_weight, clip_grad=clip_grad)
    ex = resolve_execution(model, device=device, amp=amp, channels_last=channels_last)
    if seed is not None:
        torch.manual_seed(seed)
    ex.prepare(model)
    if log:
        _log_layout_guard(model, ex)
    opt = make_optimizer([p for p in model.parameters() if p.requires_grad], optimizer, lr=lr,
                         weight_decay=weight_decay, momentum=momentum)
    total_steps = epochs * steps_per_epoch
    sched = _scheduler(opt, schedule, total_steps, warmup_steps)
    scaler = torch.amp.GradScaler("cuda", enabled=ex.grad_scaler)
    step_args = dict(task=task, num_classes=num_classes, loss_fn=loss_fn, aux_weight=aux_weight,
                     class_weights=class_weights, ignore_index=ignore_index, clip_grad=clip_grad,
                     scheduler=sched, scaler=scaler, execution=ex)
    history = History(task=task)
    bar = _progress(total_steps, desc or type(model).__name__, progress)
    try:
        for epoch in range(epochs):
            start = time.perf_counter()
            stats = train_one_epoch(model, train_loader, opt, bar=bar, **step_args)
            history.step_loss += stats["step_loss"]
            history.train_loss.append(stats["loss"])
            if stats["accuracy"] is not None:
                history.train_accuracy.append(stats["accuracy"])
            if val_loader is not None:
                history.val.append(evaluate(model, val_loader, task=task, num_classes=num_classes,
                                            ignore_index=ignore_index, device=ex.device, amp=ex.amp,
                                            channels_last=ex.channels_last))
            history.seconds.append(time.perf_counter() - start)
            if log:
                print(_epoch_line(desc, epoch, epochs, history), flush=True)
    finally:
        if bar is not None:
            bar.close()
    model.eval()
    return history


def _forward_batch(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, ex: Execution, *, task: str,
                   num_classes: Optional[int], ignore_index: int, check: bool = True):
    """One batch through ``model``: ``(main, aux, targets on the device)``.

    Labels are checked on the CPU before the transfer (on CUDA a bad label is a device-side assert
    that breaks the session, and checking there would sync every step), the batch moves to the
    device (images in the execution's memory format), the forward pass runs under autocast, and
    the output is split into the main logits and a list of auxiliary ones. ``check=False`` (a
    custom loss) skips the label and logit checks.
    """
    if check and num_classes is not None and targets.device.type == "cpu":
        _check_labels(targets, num_classes, ignore_index)
    cpu_targets = targets
    images = ex.images(images)
    targets = targets.to(ex.device, non_blocking=True)
    with ex.autocast():
        main, aux = _split_output(model(images))
    if check:
        _check_logits(main, targets, task, num_classes)
        if num_classes is None or cpu_targets.device.type != "cpu":
            _check_labels(cpu_targets, main.shape[1], ignore_index)
    return main, aux, targets


def train_one_epoch(
    model: nn.Module,
    loader: Iterable,
    optimizer: torch.optim.Optimizer,
    *,
    task: str,
    num_classes: Optional[int] = None,
    loss_fn: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None,
    aux_weight: float = 0.3,
    class_weights: Optional[torch.Tensor] = None,
    ignore_index: int = IGNORE_INDEX,
    clip_grad: Optional[float] = None,
    scheduler: Optional[torch.optim.lr_scheduler.LRScheduler] = None,
    scaler: Optional[torch.amp.GradScaler] = None,
    execution: Optional[Execution] = None,
    bar=None,
) -> dict:
    """One pass over ``loader`` in training mode: per batch, forward, loss, backward, an optimiser
    step and a scheduler step (the inner loop of :func:`fit`, which passes all of these).

    Args:
        model, loader, optimizer: as in :func:`fit`; ``loader`` yields ``(images [N, 3, H, W], targets)``.
        task, num_classes, loss_fn, aux_weight, class_weights, ignore_index, clip_grad: as in :func:`fit`.
        scheduler: stepped after every optimiser step (optional).
        scaler: the ``GradScaler`` of the whole run (default: a fresh one, enabled for fp16 on CUDA).
        execution: how to run (default: :func:`segbook.execution.resolve_execution` of ``model``;
            pass the one that prepared the model).
        bar: a tqdm bar advanced once per batch (optional).

    Returns:
        ``{"loss": mean step loss, "accuracy": running accuracy (pixel accuracy for segmentation;
        None for a regression), "step_loss": [loss of every step]}``, read from the device once.
    """
    ex = resolve_execution(model) if execution is None else execution
    scaler = torch.amp.GradScaler("cuda", enabled=ex.grad_scaler) if scaler is None else scaler
    if class_weights is not None:
        class_weights = class_weights.detach().float().to(ex.device)
    criterion = loss_fn or (lambda out, target: _loss(out, target, ignore_index, class_weights))
    params = [p for group in optimizer.param_groups for p in group["params"]]
    n_steps = len(loader) if hasattr(loader, "__len__") else None
    model.train()
    loss_sum, correct, counted = (torch.zeros((), device=ex.device, dtype=ex.accumulator_dtype) for _ in range(3))
    step_loss = []
    for images, targets in loader:
        why = batch_norm_batch_of_one(model, _batch_size(images))
        if why and n_steps != 1:
            warnings.warn(f"fit skipped a training batch of one image: {why}, or a batch size that "
                          "divides the dataset", RuntimeWarning, stacklevel=3)
            if bar is not None:
                bar.update(1)
            continue
        main, aux, targets = _forward_batch(model, images, targets, ex, task=task, num_classes=num_classes,
                                            ignore_index=ignore_index, check=loss_fn is None)
        with ex.autocast():
            loss = criterion(main, targets)
            for a in aux:
                loss = loss + aux_weight * criterion(a, targets)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if clip_grad is not None:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(params, clip_grad)
        scaler.step(optimizer)
        scaler.update()
        if scheduler is not None:
            scheduler.step()
        detached = loss.detach()
        step_loss.append(detached)
        loss_sum += detached
        if task != "regression":
            with torch.no_grad():
                valid = targets != ignore_index
                correct += ((main.argmax(1) == targets) & valid).sum()
                counted += valid.sum()
        if bar is not None:
            bar.update(1)
    if not step_loss:
        raise ValueError(f"the train_loader yielded no usable batches (len() is {n_steps}; batches of one "
                         "image are skipped for models with batch norm)")
    total = float(loss_sum)  # one host sync per epoch, not per step
    if not math.isfinite(total):
        lr = optimizer.param_groups[0].get("initial_lr", optimizer.param_groups[0]["lr"])
        raise FloatingPointError(f"training loss became {total}; lower the learning rate (lr={lr})")
    return {"loss": total / len(step_loss), "step_loss": [float(x) for x in step_loss],
            "accuracy": None if task == "regression" else float(correct) / max(float(counted), 1.0)}


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
    ignore_index: int = IGNORE_INDEX,
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
    ex = resolve_execution(model, device=device, amp=amp, channels_last=channels_last)
    was_training = model.training
    model.eval()
    acc = ex.accumulator_dtype
    loss_sum = torch.zeros((), device=ex.device, dtype=acc)
    count = torch.zeros((), device=ex.device, dtype=acc)
    correct = torch.zeros((), device=ex.device, dtype=acc)
    seg = SegmentationMetrics(num_classes, ignore_index=ignore_index, boundary_tolerance=boundary_tolerance) \
        if task == "segmentation" else None
    try:
        for images, targets in loader:
            logits, _, targets = _forward_batch(model, images, targets, ex, task=task, num_classes=num_classes,
                                                ignore_index=ignore_index)
            valid = targets != ignore_index
            # sum over valid pixels; ignored ones contribute 0 (no host sync per batch)
            loss_sum += F.cross_entropy(logits.float(), targets, ignore_index=ignore_index, reduction="sum")
            count += valid.sum()
            pred = logits.argmax(1)
            if seg is None:
                correct += ((pred == targets) & valid).sum()
            else:
                seg.update(pred, targets, check_labels=False)
    finally:
        model.train(was_training)
    count = float(count)
    loss_sum = float(loss_sum)
    correct = float(correct)
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
            batch_size: int = 64, amp: Optional[bool] = None, channels_last: Optional[bool] = None) -> torch.Tensor:
    """Arg-max labels for ``images [N, 3, H, W]``: ``[N]`` or ``[N, H, W]`` int64 on the CPU.

    Runs like :func:`evaluate` (same device, autocast and memory format choices, inference mode).
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise ValueError(f"images must be a float tensor [N, 3, H, W], got {getattr(images, 'shape', type(images))}")
    if not images.is_floating_point():
        raise TypeError(f"images must be float (scaled to [0, 1]), got {images.dtype}")
    ex = resolve_execution(model, device=device, amp=amp, channels_last=channels_last)
    was_training = model.training
    model.eval()
    try:
        outs = []
        for chunk in images.split(batch_size):
            with ex.autocast():
                logits, _ = _split_output(model(ex.images(chunk)))
            outs.append(logits.argmax(1).cpu())
    finally:
        model.train(was_training)
    return torch.cat(outs)
