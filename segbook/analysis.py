"""Measuring models: parameter counts, FLOPs, gradients at initialisation, receptive fields, and
which channels of a feature map follow a target (:func:`top_channels`).

FLOPs are *measured* by running the model once under ``torch.utils.flop_counter.FlopCounterMode``
(which counts a multiply-add as 2 FLOPs), never computed from a formula typed into a chapter.
Papers usually quote multiply-adds ("FLOPs" in EfficientNet's tables are mult-adds), so
:func:`count_macs` halves the count for comparison with them.
"""
from __future__ import annotations

import copy
import time
from contextlib import contextmanager
from typing import Callable, Iterator, Mapping, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils.flop_counter import FlopCounterMode

from .checks import positive_int
from .devices import module_device, module_dtype, to_module

__all__ = [
    "count_params",
    "count_flops",
    "count_macs",
    "grad_norms_at_init",
    "receptive_field",
    "empirical_receptive_field",
    "capture",
    "top_channels",
    "best_time",
]


def count_params(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters of ``model`` (shared parameters counted once)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"count_params expects an nn.Module, got {type(model).__name__}")
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) in seen or (trainable_only and not p.requires_grad):
            continue
        seen.add(id(p))
        total += p.numel()
    return total


def _device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Where a probe input for ``model`` should live: its device and floating-point dtype."""
    return module_device(model), module_dtype(model)


def _check_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 4 or any(s < 1 for s in shape):
        raise ValueError(f"input_shape must be (N, C, H, W) with positive sizes, got {tuple(input_shape)}")
    return shape


def count_flops(model: nn.Module, input_shape: Sequence[int] = (1, 3, 224, 224)) -> int:
    """FLOPs of one forward pass on a zero input of ``input_shape`` = (N, C, H, W), in eval mode.

    A multiply-add counts as 2 FLOPs (the ``torch.utils.flop_counter`` convention). The model's
    training/eval mode is restored afterwards. Runs on the model's device.
    """
    shape = _check_shape(input_shape)
    device, dtype = _device_dtype(model)
    was_training = model.training
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(torch.zeros(shape, device=device, dtype=dtype))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def count_macs(model: nn.Module, input_shape: Sequence[int] = (1, 3, 224, 224)) -> int:
    """Multiply-accumulates of one forward pass (= :func:`count_flops` / 2), the papers' "FLOPs"."""
    return count_flops(model, input_shape) // 2


# ----------------------------------------------------------------------------------------------
# Gradients at initialisation and receptive fields (chapter 1)
# ----------------------------------------------------------------------------------------------
def grad_norms_at_init(
    model: nn.Module,
    batch: tuple[torch.Tensor, torch.Tensor],
    *,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
    layer_types: tuple[type, ...] = (nn.Conv2d, nn.Linear),
) -> list[tuple[str, float]]:
    """L2 norm of the loss gradient of every conv/linear weight, for one batch, in module order.

    Runs one forward/backward pass in training mode (batch norm uses batch statistics, as in the
    first training step) on a *copy* of ``model``, so the model's weights, gradients and BN
    running statistics are left untouched. A tuple output ``(main, aux...)`` uses ``main``.

    Args:
        model: any module mapping ``images [N, C, H, W]`` to logits ``[N, K]``.
        batch: ``(images [N, C, H, W], targets [N])`` (targets in the form ``loss_fn`` expects).
        loss_fn: ``(logits, targets) -> scalar`` (default: cross-entropy).
        layer_types: which modules' ``weight`` gradients to report.

    Returns:
        ``[(qualified layer name, ||dL/dW||_2), ...]`` from input to output (registration order).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"grad_norms_at_init expects an nn.Module, got {type(model).__name__}")
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise ValueError("batch must be a pair (images [N, C, H, W], targets)")
    images, targets = batch
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise ValueError(f"images must be a tensor [N, C, H, W], got {getattr(images, 'shape', type(images))}")
    clone = copy.deepcopy(model).train()
    layers = [(name, m) for name, m in clone.named_modules()
              if isinstance(m, layer_types) and getattr(m, "weight", None) is not None]
    if not layers:
        raise ValueError(f"the model has no layers of type {[t.__name__ for t in layer_types]}")
    device = module_device(clone)
    clone.zero_grad(set_to_none=True)
    out = clone(to_module(images, clone))
    if isinstance(out, (tuple, list)):
        out = out[0]
    loss_fn(out, targets.to(device)).backward()
    grads = [m.weight.grad if m.weight.grad is not None else torch.zeros_like(m.weight) for _, m in layers]
    norms = torch.stack([torch.linalg.vector_norm(g.detach().float()) for g in grads]).cpu().tolist()
    return [(name, float(n)) for (name, _), n in zip(layers, norms)]


def receptive_field(layers: Union[nn.Module, Sequence[Sequence[int]]], *,
                    input_shape: Optional[Sequence[int]] = None) -> list[int]:
    """Theoretical receptive field (in input pixels) after each layer.

    With jump ``j`` (the input-pixel distance between neighbouring outputs) and size ``r``,
    a layer of kernel ``k``, stride ``s`` and dilation ``d`` gives
    ``r <- r + d (k - 1) j`` and ``j <- j s`` (starting from ``r = j = 1``).

    Args:
        layers: a chain given as ``(kernel, stride)`` or ``(kernel, stride, dilation)`` tuples, or
            a module. A module is run once on a zero input (eval mode, no grad) while every torch
            operation is watched: convolutions and poolings apply the recursion, and any op with
            several inputs (a residual sum, an Inception concatenation, an SE product) takes the
            largest field among them. So shortcuts and parallel branches are followed as the data
            flows, not chained in registration order.
        input_shape: ``(N, C, H, W)`` of that probe input (a module only; default
            ``(1, C, 64, 64)`` with ``C`` the first convolution's input channels). The
            recursion does not depend on the size, as long as the model accepts it.

    Returns:
        the receptive field side after each convolution/pooling layer, in execution order (square
        kernels), followed, for a module whose output's field differs from the last layer's
        (parallel branches), by the output's field. The last entry is always the field of the output.
    """
    if isinstance(layers, nn.Module):
        return _module_receptive_field(layers, input_shape)
    spec = [tuple(int(v) for v in t) for t in layers]
    if not spec:
        raise ValueError("no convolution or pooling layers to compute a receptive field from")
    rf, jump, out = 1, 1, []
    for t in spec:
        if len(t) not in (2, 3) or any(v < 1 for v in t):
            raise ValueError(f"each layer must be (kernel, stride[, dilation]) of positive ints, got {t}")
        k, s, d = (t + (1,))[:3] if len(t) == 2 else t
        rf += d * (k - 1) * jump
        jump *= s
        out.append(rf)
    return out


# Argument positions of (kernel, stride, dilation) in the functional ops that change the field.
_FIELD_OPS = {"conv2d": None, "max_pool2d": (1, 2, 4), "_max_pool2d": (1, 2, 4),
              "max_pool2d_with_indices": (1, 2, 4), "avg_pool2d": (1, 2, None)}


class _FieldTracker(TorchFunctionMode):
    """Propagates (field, jump) from the probe input through every torch op."""

    def __init__(self, x: torch.Tensor) -> None:
        super().__init__()
        self.info = {id(x): (1, 1)}
        self.keep = [x]  # keep tensors alive so their ids stay unique during the trace
        self.layers: list[int] = []

    def _known(self, tree) -> list[tuple[int, int]]:
        found = []
        for t in _flatten(tree):
            if isinstance(t, torch.Tensor) and id(t) in self.info:
                found.append(self.info[id(t)])
        return found

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        known = self._known((args, kwargs))
        if not known:
            return out
        rf, jump = max(known)
        name = getattr(func, "__name__", "")
        if name in _FIELD_OPS and args and isinstance(args[0], torch.Tensor) and args[0].dim() == 4:
            if name == "conv2d":
                weight = args[1] if len(args) > 1 else kwargs["weight"]
                k = int(weight.shape[-2])
                s = _pair0(args[3] if len(args) > 3 else kwargs.get("stride", 1))
                d = _pair0(args[5] if len(args) > 5 else kwargs.get("dilation", 1))
            else:
                ki, si, di = _FIELD_OPS[name]
                k = _pair0(args[ki] if len(args) > ki else kwargs.get("kernel_size"))
                stride = args[si] if len(args) > si else kwargs.get("stride")
                s = _pair0(stride) if stride not in (None, (), []) else k
                d = _pair0(args[di] if di is not None and len(args) > di else kwargs.get("dilation", 1))
            rf, jump = rf + d * (k - 1) * jump, jump * s
            self.layers.append(rf)
        for t in _flatten(out):
            if isinstance(t, torch.Tensor):
                self.info[id(t)] = (rf, jump)
                self.keep.append(t)
        return out


def _flatten(tree):
    if isinstance(tree, (list, tuple)):
        for v in tree:
            yield from _flatten(v)
    elif isinstance(tree, dict):
        for v in tree.values():
            yield from _flatten(v)
    else:
        yield tree


def _module_receptive_field(module: nn.Module, input_shape: Optional[Sequence[int]]) -> list[int]:
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    if input_shape is None:
        if not convs:
            raise ValueError("no convolution or pooling layers to compute a receptive field from")
        input_shape = (1, convs[0].in_channels, 64, 64)
    shape = _check_shape(input_shape)
    device, dtype = _device_dtype(module)
    x = torch.zeros(shape, device=device, dtype=dtype)
    was_training = module.training
    module.eval()
    tracker = _FieldTracker(x)
    try:
        with torch.no_grad(), tracker:
            y = module(x)
    finally:
        module.train(was_training)
    if not tracker.layers:
        raise ValueError("no convolution or pooling layers to compute a receptive field from")
    outs = [t for t in _flatten(y) if isinstance(t, torch.Tensor) and id(t) in tracker.info]
    out_rf = tracker.info[id(outs[0])][0] if outs else tracker.layers[-1]
    fields = list(tracker.layers)
    if out_rf != fields[-1]:
        fields.append(out_rf)
    return fields


def _pair0(v) -> int:
    return int(v[0] if isinstance(v, (tuple, list)) else v)


def empirical_receptive_field(features: nn.Module, input_shape: Sequence[int] = (1, 3, 64, 64), *,
                              rel_tol: float = 0.0) -> int:
    """Measured receptive field: side of the input region that moves the centre output unit.

    Back-propagates from the centre pixel of ``features(x)`` (summed over channels) to a random
    input ``x`` of ``input_shape`` in eval mode and returns the height of the bounding box of the
    input gradients that are not zero (above ``rel_tol`` times the largest, when given). It
    matches :func:`receptive_field` when the input is large enough.

    The measurement runs on a float64 copy of ``features`` on the CPU, whatever the model's device:
    there, pixels outside the field get a gradient of exactly zero, while GPU kernels (TF32,
    Winograd) leave rounding noise that an exact test would count; and a relative threshold is no
    fix, because the true gradient at the edge of a deep net's field is many orders of magnitude
    below the peak (measured: a 1e-6 threshold cut plain-56's 249-pixel field to 202).
    """
    shape = _check_shape(input_shape)
    if rel_tol < 0:
        raise ValueError(f"rel_tol must be >= 0, got {rel_tol}")
    probe = copy.deepcopy(features).to(device="cpu", dtype=torch.float64).eval()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen, dtype=torch.float64).requires_grad_(True)
    y = probe(x)
    if y.dim() != 4:
        raise ValueError(f"features must return a map [N, C, h, w], got {tuple(y.shape)}")
    y[:, :, y.shape[2] // 2, y.shape[3] // 2].sum().backward()
    profile = x.grad.detach().abs().sum(dim=(0, 1, 3))
    peak = float(profile.max()) if profile.numel() else 0.0
    if peak == 0.0:
        return 0
    rows = (profile > rel_tol * peak).nonzero()
    return int(rows.max() - rows.min() + 1)


# ----------------------------------------------------------------------------------------------
# Looking inside a forward pass without changing it
# ----------------------------------------------------------------------------------------------
@contextmanager
def capture(modules: Union[nn.Module, Sequence[nn.Module], Mapping[str, nn.Module]], *,
            kind: str = "output") -> Iterator[dict]:
    """Record what ``modules`` return (``kind="output"``) or receive (``kind="input"``) while the
    ``with`` block runs, through forward hooks that are removed on exit; modules stay pure.

    Yields a dict ``name -> list`` with one entry per call, detached (tensors inside tuples and
    lists too). Names are the mapping's keys, ``"0", "1", ...`` for a sequence, ``""`` for one module.

    Example (the SE scores of every block, ``[N, C, 1, 1]`` each)::

        gates = {f"se{i}": m.gate for i, m in enumerate(model.modules()) if isinstance(m, SqueezeExcite)}
        with torch.inference_mode(), capture(gates) as got:
            model(images)
        scores = got["se0"][0].flatten(1)      # [N, C]
    """
    if kind not in ("output", "input"):
        raise ValueError(f"kind must be 'output' or 'input', got {kind!r}")
    if isinstance(modules, nn.Module):
        named = {"": modules}
    elif isinstance(modules, Mapping):
        named = dict(modules)
    else:
        named = {str(i): m for i, m in enumerate(modules)}
    for name, m in named.items():
        if not isinstance(m, nn.Module):
            raise TypeError(f"capture expects nn.Modules, got {type(m).__name__} for {name!r}")
    got: dict = {name: [] for name in named}

    def _detach(v):
        if isinstance(v, torch.Tensor):
            return v.detach()
        if isinstance(v, (tuple, list)):
            return type(v)(_detach(x) for x in v)
        return v

    handles = []
    for name, m in named.items():
        if kind == "output":
            handles.append(m.register_forward_hook(lambda _m, _a, out, name=name: got[name].append(_detach(out))))
        else:
            handles.append(m.register_forward_pre_hook(
                lambda _m, args, name=name: got[name].append(_detach(args[0] if len(args) == 1 else args))))
    try:
        yield got
    finally:
        for h in handles:
            h.remove()


def top_channels(features: torch.Tensor, target: torch.Tensor, k: int = 3) -> list[int]:
    """The ``k`` channels of a feature map that follow ``target`` most closely.

    Shapes: ``features [C, h, w]``, ``target [H, W]`` (e.g. a 0/1 foreground mask) -> ``k`` channel
    indices, sorted by the absolute Pearson correlation between each channel and ``target``
    average-pooled to ``h x w`` (largest first; constant channels count as 0).
    """
    if features.dim() != 3 or target.dim() != 2:
        raise ValueError(f"expected features [C, h, w] and target [H, W], got {tuple(features.shape)} "
                         f"and {tuple(target.shape)}")
    t = F.adaptive_avg_pool2d(target.float()[None, None], features.shape[-2:]).flatten()
    f = features.float().flatten(1)
    f = f - f.mean(1, keepdim=True)
    t = t - t.mean()
    denom = f.norm(dim=1) * t.norm()
    corr = torch.where(denom > 0, (f @ t) / denom.clamp(min=1e-12), torch.zeros_like(denom))
    return corr.abs().argsort(descending=True, stable=True)[: int(k)].tolist()


def best_time(fn: Callable[[], object], *, repeats: int = 2) -> float:
    """Wall time in seconds of the fastest of ``repeats`` calls of ``fn()`` (no arguments).

    The minimum, not the mean: on a shared machine the slower runs are the ones another process
    interrupted, so the fastest is the best estimate of what ``fn`` itself costs. For a fair
    comparison of two functions time both the same way, on the same (idle) machine. A GPU call
    returns before its kernels finish: synchronise inside ``fn`` (``torch.cuda.synchronize()``).
    """
    if not callable(fn):
        raise TypeError(f"fn must be a callable with no arguments, got {type(fn).__name__}")
    times = []
    for _ in range(positive_int(repeats, "repeats")):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)
