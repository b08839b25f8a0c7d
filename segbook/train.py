"""Training and evaluation loops shared by every chapter.

``fit`` trains a classifier (logits ``[N, K]``) or a segmenter (logits ``[N, K, H, W]`` at the
input size) with cross-entropy, shows a tqdm progress bar, and records a :class:`History` for
plots. On CUDA it uses automatic mixed precision and channels_last; evaluation runs under
``torch.inference_mode``. One helper, :func:`resolve_execution`, decides device, precision and
memory format for ``fit``, ``evaluate`` and ``predict`` alike.

Precision: bf16 autocast on GPUs with compute capability >= 8.0 (A100, H100, RTX 30xx and later),
fp16 autocast with a ``GradScaler`` on older ones (a T4 is 7.5: its bf16 is emulated, and bf16
convolutions there skip cuDNN and run several times slower), float32 on the CPU.

Reproducibility: with the same seed, data order and CPU, two runs give the same numbers. On CUDA
they do not quite: the backward passes of bilinear upsampling, adaptive/max pooling and
deformable convolution use atomic adds whose order varies, so the last digits of a loss differ
from run to run. The book's claims are checked with margins wide enough for that.

Host syncs: labels are validated on the CPU before the batch moves to the device, losses and
counts accumulate on the device, and the host reads them once per epoch.

Auxiliary heads (GoogLeNet): a model may return a tuple ``(main, aux1, aux2, ...)`` in training
mode; the loss is ``CE(main) + aux_weight * sum_i CE(aux_i)`` (``aux_weight=0.3`` as in Szegedy et
al. 2015). In eval mode it must return the main logits alone, as only they are used at test time.
"""
from __future__ import annotations

import io
import math
import multiprocessing
import multiprocessing.connection
import os
import pickle
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checks import positive_int
from .metrics import SegmentationMetrics
from .constants import IGNORE_INDEX
from .layout import guard_cpu_layout

__all__ = ["History", "Execution", "SCHEDULES", "lr_factor", "amp_dtype_for", "resolve_execution", "class_balance_weights",
           "fit", "fit_many", "parallel_workers", "evaluate", "predict", "TASKS", "layout_guard_enabled",
           "LAYOUT_GUARD_ENV"]

LAYOUT_GUARD_ENV = "SEGBOOK_LAYOUT_GUARD"

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


def amp_dtype_for(device: Union[str, torch.device]) -> torch.dtype:
    """The autocast dtype for ``device``: bf16 on CUDA capability >= 8.0, fp16 on older CUDA, bf16 on CPU.

    ``torch.cuda.is_bf16_supported()`` is not used: it counts emulated bf16 and says yes on a T4.
    (On the CPU autocast only supports bf16; the book does not autocast there by default.)
    """
    device = torch.device(device)
    if device.type == "cuda":
        major, _ = torch.cuda.get_device_capability(device)
        return torch.bfloat16 if major >= 8 else torch.float16
    return torch.bfloat16


@dataclass(frozen=True)
class Execution:
    """How a model runs: device, autocast on/off and dtype, memory format, loss-scaling."""

    device: torch.device
    amp: bool
    amp_dtype: torch.dtype
    channels_last: bool
    #: convolutions kept in NCHW on the CPU by the layout guard (:mod:`segbook.layout`)
    layout_guard: tuple = ()

    @property
    def grad_scaler(self) -> bool:
        """fp16 autocast on CUDA needs loss scaling; bf16 does not."""
        return self.amp and self.device.type == "cuda" and self.amp_dtype == torch.float16

    @property
    def accumulator_dtype(self) -> torch.dtype:
        """float64 for on-device sums, except on Apple MPS, which has no float64."""
        return torch.float32 if self.device.type == "mps" else torch.float64

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp)

    def images(self, x: torch.Tensor) -> torch.Tensor:
        """Move a batch of images to the device, in channels_last when that is on."""
        x = x.to(self.device, non_blocking=True)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def prepare(self, model: nn.Module) -> nn.Module:
        """Move ``model`` to the device (and channels_last, less the guarded convs); returns it."""
        model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        if self.device.type == "cpu" and layout_guard_enabled():
            guard_cpu_layout(model)  # after .to(): the guarded weights go back to NCHW
        return model


def resolve_execution(model: Optional[nn.Module] = None, *, device: Optional[Union[str, torch.device]] = None,
                      amp: Optional[bool] = None, channels_last: Optional[bool] = None) -> Execution:
    """Decide where and how to run: the given device (default: the model's), AMP and channels_last
    on for CUDA only unless set, and the autocast dtype from :func:`amp_dtype_for`.

    On the CPU it also installs the layout guard on ``model`` (:func:`segbook.layout.guard_cpu_layout`):
    1x1 stride-2 convolutions with fewer than 16 input channels always run in NCHW there, whatever
    ``channels_last`` says and whatever layout the input arrives in, because oneDNN miscomputes
    their weight gradients in NHWC (oneDNN #6035). ``fit``, ``evaluate`` and ``predict`` all come
    through here, so they make the same decision. ``$SEGBOOK_LAYOUT_GUARD=0`` turns the guard off
    (only for the tests that show the bug)."""
    if device is None:
        if model is None:
            raise ValueError("resolve_execution needs a model or a device")
        first = next(iter(model.parameters()), None)
        device = first.device if first is not None else torch.device("cpu")
    device = torch.device(device)
    amp = (device.type == "cuda") if amp is None else bool(amp)
    channels_last = (device.type == "cuda") if channels_last is None else bool(channels_last)
    guarded: tuple = ()
    if model is not None and device.type == "cpu" and layout_guard_enabled():
        guarded = tuple(guard_cpu_layout(model))
    return Execution(device, amp, amp_dtype_for(device), channels_last, guarded)


def layout_guard_enabled() -> bool:
    """False only when ``$SEGBOOK_LAYOUT_GUARD=0`` (tests that reproduce oneDNN #6035)."""
    return os.environ.get(LAYOUT_GUARD_ENV, "1").strip() != "0"


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


def _has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


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
    warmup_steps: int = 0,
    aux_weight: float = 0.3,
    class_weights: Optional[torch.Tensor] = None,
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
            (segmentation); or ``(main, *aux)`` in training mode.
        train_loader: yields ``(images [N, 3, H, W] float, targets)`` with targets ``[N]`` or
            ``[N, H, W]`` int64.
        val_loader: evaluated after every epoch with :func:`evaluate` (optional).
        task: ``"classification"`` or ``"segmentation"``.
        epochs: number of passes over ``train_loader``.
        num_classes: checked against the logits; needed for segmentation metrics.
        lr, weight_decay, momentum: optimiser settings.
        optimizer: ``"adamw"`` or ``"sgd"`` (with Nesterov momentum).
        schedule: ``"cosine"`` (per-step cosine decay to 0), ``"poly"`` (DeepLab's
            ``(1 - s/S)^0.9`` per step) or ``None`` (constant).
        warmup_steps: ramp the learning rate linearly from ``lr / warmup_steps`` to ``lr`` over
            the first ``warmup_steps`` optimisation steps, then follow ``schedule`` over the
            remaining steps (``0``: no warm-up). Must be below the total number of steps.
        aux_weight: weight of each auxiliary loss.
        class_weights: optional float ``[K]`` weights of the classes in the cross-entropy (e.g.
            :func:`class_balance_weights`); the loss is the weighted mean over pixels.
        ignore_index: target value excluded from the loss and the metrics.
        device: default: the model's current device.
        amp: mixed precision (default: on for CUDA only; dtype from :func:`amp_dtype_for`).
        channels_last: NHWC memory format (default: on for CUDA only).
        clip_grad: clip the global gradient norm to this value.

    A training batch of a single image is skipped with a warning when the model has batch norm
    (it cannot normalise one value per channel at the coarsest maps); use ``drop_last=True``.
        seed: reseeds torch before training, so dropout and augmentation draws repeat.
        progress: show a tqdm bar; log: print one line per epoch.
        desc: a label for the bar and the log lines.
    """
    _check_task(task)
    epochs = positive_int(epochs, "epochs")
    try:
        steps_per_epoch = len(train_loader)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError("train_loader must have a length (a DataLoader or a list of batches)") from None
    if steps_per_epoch == 0:
        raise ValueError("train_loader is empty: no batches to train on (check the dataset size and batch_size/drop_last)")
    if task == "segmentation" and num_classes is None and val_loader is not None:
        raise ValueError("segmentation metrics need num_classes=...")

    ex = resolve_execution(model, device=device, amp=amp, channels_last=channels_last)
    device = ex.device
    if class_weights is not None:
        if (not isinstance(class_weights, torch.Tensor) or class_weights.dim() != 1 or not class_weights.is_floating_point()
                or (num_classes is not None and class_weights.numel() != num_classes)
                or not bool(torch.isfinite(class_weights).all()) or bool((class_weights < 0).any())):
            raise ValueError(f"class_weights must be a float tensor [num_classes] of finite weights >= 0, got "
                             f"{getattr(class_weights, 'shape', type(class_weights))} for num_classes={num_classes}")
        class_weights = class_weights.detach().float().to(device)
    if seed is not None:
        torch.manual_seed(seed)
    ex.prepare(model)
    if log and ex.channels_last and ex.layout_guard and not getattr(model, "_segbook_guard_logged", False):
        model._segbook_guard_logged = True  # once per model, not once per fit_many child or stage
        n = len(ex.layout_guard)
        print(f"layout guard: {n} 1x1 stride-2 conv{'s' if n > 1 else ''} with < 16 input channels "
              "run NCHW on the CPU, the rest channels_last (oneDNN #6035)", flush=True)
    has_bn = _has_batchnorm(model)

    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer == "adamw":
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    elif optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=momentum > 0)
    else:
        raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {optimizer!r}")
    total_steps = epochs * steps_per_epoch
    factor = lr_factor(schedule, total_steps, warmup_steps=warmup_steps)
    sched = None if factor is None else torch.optim.lr_scheduler.LambdaLR(opt, factor)
    scaler = torch.amp.GradScaler("cuda", enabled=ex.grad_scaler)

    history = History(task=task)
    bar = _progress(total_steps, desc or type(model).__name__, progress)
    try:
        for epoch in range(epochs):
            start = time.perf_counter()
            model.train()
            acc_dtype = ex.accumulator_dtype
            loss_sum = torch.zeros((), device=device, dtype=acc_dtype)
            correct = torch.zeros((), device=device, dtype=acc_dtype)
            counted = torch.zeros((), device=device, dtype=acc_dtype)
            n_batches = 0
            for images, targets in train_loader:
                if has_bn and _batch_size(images) == 1 and steps_per_epoch > 1:
                    warnings.warn("fit skipped a training batch of one image: batch norm cannot normalise a "
                                  "single value per channel; use DataLoader(drop_last=True) or a batch size "
                                  "that divides the dataset", RuntimeWarning, stacklevel=2)
                    if bar is not None:
                        bar.update(1)
                    continue
                if num_classes is not None and targets.device.type == "cpu":
                    # Checked on the CPU before the transfer: on CUDA a bad label is a device-side
                    # assert that breaks the session, and checking there would sync every step.
                    _check_labels(targets, num_classes, ignore_index)
                cpu_targets = targets
                images = ex.images(images)
                targets = targets.to(device, non_blocking=True)
                with ex.autocast():
                    main, aux = _split_output(model(images))
                    _check_logits(main, targets, task, num_classes)
                    if num_classes is None or cpu_targets.device.type != "cpu":
                        _check_labels(cpu_targets, main.shape[1], ignore_index)
                    loss = _loss(main, targets, ignore_index, class_weights)
                    for a in aux:
                        loss = loss + aux_weight * _loss(a, targets, ignore_index, class_weights)
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
                raise ValueError(f"train_loader yielded no usable batches in epoch {epoch + 1} (len() is {steps_per_epoch}; "
                                 "batches of one image are skipped for models with batch norm)")
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
                                            ignore_index=ignore_index, device=device, amp=ex.amp,
                                            channels_last=ex.channels_last))
            history.seconds.append(time.perf_counter() - start)
            if log:
                print(_epoch_line(desc, epoch, epochs, history), flush=True)
    finally:
        if bar is not None:
            bar.close()
    model.eval()
    return history


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def parallel_workers(n_jobs: int, device: Optional[Union[str, torch.device]] = None) -> int:
    """How many processes :func:`fit_many` trains in at once: ``1`` (in this process) unless
    the device is the CPU, the platform can fork (Linux) and more than one core is usable;
    then one process per core, at most one per job."""
    n_jobs = positive_int(n_jobs, "n_jobs")
    if device is not None and torch.device(device).type != "cpu":
        return 1
    if not sys.platform.startswith("linux") or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    return max(1, min(n_jobs, _usable_cpus()))


def _fit_in_child(model: nn.Module, make_train_loader: Callable[[], Iterable], kwargs: dict, threads: int, conn) -> None:
    # A forked child of a (possibly Jupyter) process: it must not write to the parent's
    # streams, whose locks and sockets belong to threads that do not exist here.
    sys.stdout = sys.stderr = io.StringIO()
    try:
        torch.set_num_threads(threads)
        history = fit(model, make_train_loader(), **kwargs)
        state = io.BytesIO()
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, state)
        conn.send_bytes(pickle.dumps(("ok", history, state.getvalue(), sys.stdout.getvalue())))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises
        conn.send_bytes(pickle.dumps(("error", f"{type(exc).__name__}: {exc}", traceback.format_exc(),
                                      sys.stdout.getvalue())))
    finally:
        conn.close()


def fit_many(
    models: Mapping[str, nn.Module],
    make_train_loader: Union[Callable[[], Iterable], Mapping[str, Callable[[], Iterable]]],
    *,
    workers: Optional[int] = None,
    costs: Optional[Mapping[str, float]] = None,
    **fit_kwargs,
) -> dict:
    """Train several independent models on the same batches; on a multi-core CPU, in parallel.

    Every model is trained by :func:`fit` with the same keyword arguments (``task``, ``epochs``,
    ``lr``, ``seed``, ...; ``desc`` is the model's name) on a fresh loader from
    ``make_train_loader()`` (a callable, so that each model sees the same batches in the same
    order, e.g. ``lambda: make_loader(train_set, 16, shuffle=True, seed=rt.seed)``). The models
    are trained in place and left in eval mode, as :func:`fit` leaves them.

    Why processes: the book's models are small, and one PyTorch process uses two cores for them
    at about 1.5 times the speed of one core (their convolutions are too small to split well).
    Two processes of one thread each, one model each, use both cores fully. On Linux the
    children are forked, so they share the parent's tensors (the dataset) without copying; each
    sends back its history and weights. Each child runs ``torch.set_num_threads(threads)`` with
    ``threads = max(1, torch.get_num_threads() // workers)``, so its numbers are exactly those of
    a run in one process with that many threads (tested bitwise against sequential ``fit``).

    Args:
        models: ``{name: model}``; the model's own device is used unless ``device=`` is given.
        make_train_loader: returns the training loader; called once per model. Or
            ``{name: () -> loader}``, one factory per model, for models that train on different
            data (e.g. one augmentation each); it must have the same keys as ``models``.
        workers: processes at once (default :func:`parallel_workers`: one per usable core on a
            Linux CPU, else ``1``). ``1`` trains one model after another in this process.
            CUDA and non-fork platforms always use ``1``.
        costs: ``{name: relative training time}`` (any positive unit, e.g. seconds of a trial
            run): the processes start longest first, which keeps every core busy to the end when
            the models differ in cost (longest-processing-time scheduling). Default: the order
            of ``models``. Only the start order changes, never the numbers.
        **fit_kwargs: passed to :func:`fit` (``progress`` and ``log`` are off in child processes).
            ``val_loader`` may be ``{name: loader}``, one per model (models that take different
            input sizes), with the same keys as ``models``.

    Returns:
        ``{name: History}`` in the order of ``models``.
    """
    if not isinstance(models, Mapping) or not models:
        raise TypeError(f"models must be a non-empty mapping {{name: nn.Module}}, got {type(models).__name__}")
    for name, model in models.items():
        if not isinstance(model, nn.Module):
            raise TypeError(f"models[{name!r}] must be an nn.Module, got {type(model).__name__}")
    if isinstance(make_train_loader, Mapping):
        if set(make_train_loader) != set(models):
            raise ValueError(f"make_train_loader has loaders for {sorted(make_train_loader)} but the models are "
                             f"{sorted(models)}: give one loader factory per model, under the model's name")
        factories = dict(make_train_loader)
    else:
        factories = {name: make_train_loader for name in models}
    if not all(callable(f) for f in factories.values()):
        raise TypeError("make_train_loader must be a callable that returns a fresh training loader "
                        "(e.g. lambda: make_loader(train_set, 16, shuffle=True, seed=rt.seed)); "
                        "one loader object would give each model a different batch order")
    if "desc" in fit_kwargs:
        raise TypeError("fit_many names each run after its key in models; do not pass desc=")
    val = fit_kwargs.pop("val_loader", None)
    if isinstance(val, Mapping):
        if set(val) != set(models):
            raise ValueError(f"val_loader has loaders for {sorted(val)} but the models are {sorted(models)}: "
                             "give one validation loader per model, under the model's name")
        vals = dict(val)
    else:
        vals = {name: val for name in models}
    start = list(models)
    if costs is not None:
        if not isinstance(costs, Mapping) or set(costs) != set(models):
            raise ValueError(f"costs must map every model name to its relative training time, got keys "
                             f"{sorted(costs) if isinstance(costs, Mapping) else type(costs).__name__} "
                             f"for the models {sorted(models)}")
        for name, c in costs.items():
            if isinstance(c, bool) or not isinstance(c, (int, float)) or not math.isfinite(c) or c <= 0:
                raise ValueError(f"costs[{name!r}] must be a positive number (a relative training time), got {c!r}")
        start.sort(key=lambda n: -costs[n])  # stable: equal costs keep the order of models
    device = fit_kwargs.get("device")
    if device is None:
        devices = {next(iter(m.parameters()), torch.empty(0)).device.type for m in models.values()}
        device = "cuda" if "cuda" in devices else "cpu"
    limit = parallel_workers(len(models), device)
    workers = limit if workers is None else max(1, min(positive_int(workers, "workers"), limit))
    if workers == 1:
        histories = {name: fit(models[name], factories[name](), desc=name, val_loader=vals[name], **fit_kwargs)
                     for name in start}
        return {name: histories[name] for name in models}

    threads = max(1, torch.get_num_threads() // workers)
    kwargs = {**fit_kwargs, "progress": False, "log": False}
    ctx = multiprocessing.get_context("fork")
    pending = [(name, models[name]) for name in start]
    running: dict = {}
    histories: dict = {}
    try:
        while pending or running:
            while pending and len(running) < workers:
                name, model = pending.pop(0)
                receive, send = ctx.Pipe(duplex=False)
                with warnings.catch_warnings():
                    # Python 3.12+ warns that forking a multi-threaded process may deadlock: the
                    # child touches none of the other threads' locks (see _fit_in_child).
                    warnings.simplefilter("ignore", DeprecationWarning)
                    proc = ctx.Process(target=_fit_in_child, args=(model, factories[name],
                                                                   {**kwargs, "desc": name,
                                                                    "val_loader": vals[name]},
                                                                   threads, send))
                    proc.start()
                send.close()
                running[name] = (proc, receive)
            done = multiprocessing.connection.wait([r for _, r in running.values()])
            for name in [n for n, (_, r) in running.items() if r in done]:
                proc, receive = running.pop(name)
                try:
                    message = pickle.loads(receive.recv_bytes())
                except EOFError:
                    proc.join()
                    raise RuntimeError(f"training {name!r} in a child process died (exit code {proc.exitcode}); "
                                       "out of memory? Try fit_many(..., workers=1)") from None
                finally:
                    receive.close()
                proc.join()
                if message[0] == "error":
                    raise RuntimeError(f"training {name!r} failed in a child process: {message[1]}\n"
                                       f"{message[2]}")
                _, history, state, _ = message
                models[name].load_state_dict(torch.load(io.BytesIO(state), weights_only=True))
                models[name].eval()
                histories[name] = history
    finally:
        for proc, receive in running.values():
            proc.kill()
            proc.join()
            receive.close()
    return {name: histories[name] for name in models}


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
            if num_classes is not None and targets.device.type == "cpu":
                _check_labels(targets, num_classes, ignore_index)
            cpu_targets = targets
            images = ex.images(images)
            targets = targets.to(ex.device, non_blocking=True)
            with ex.autocast():
                logits, _ = _split_output(model(images))
            _check_logits(logits, targets, task, num_classes)
            if num_classes is None or cpu_targets.device.type != "cpu":
                _check_labels(cpu_targets, logits.shape[1], ignore_index)
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
