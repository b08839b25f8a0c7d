"""Measuring models: parameter counts, FLOPs, gradients at initialisation, receptive fields, and
which channels of a feature map follow a target (:func:`top_channels`).

FLOPs are *measured* by running the model once under ``torch.utils.flop_counter.FlopCounterMode``
(which counts a multiply-add as 2 FLOPs), never computed from a formula typed into a chapter.
Papers usually quote multiply-adds ("FLOPs" in EfficientNet's tables are mult-adds), so
:func:`count_macs` halves the count for comparison with them.
"""
from __future__ import annotations

import copy
from typing import Callable, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

__all__ = [
    "count_params",
    "count_flops",
    "count_macs",
    "grad_norms_at_init",
    "receptive_field",
    "empirical_receptive_field",
    "top_channels",
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
    """Where a probe input for ``model`` should live: its first parameter's device and dtype."""
    param = next(model.parameters(), None)
    return (param.device, param.dtype) if param is not None else (torch.device("cpu"), torch.float32)


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
    try:
        device = next(clone.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    clone.zero_grad(set_to_none=True)
    out = clone(images.to(device))
    if isinstance(out, (tuple, list)):
        out = out[0]
    loss_fn(out, targets.to(device)).backward()
    grads = [m.weight.grad if m.weight.grad is not None else torch.zeros_like(m.weight) for _, m in layers]
    norms = torch.stack([torch.linalg.vector_norm(g.detach().float()) for g in grads]).cpu().tolist()
    return [(name, float(n)) for (name, _), n in zip(layers, norms)]


def receptive_field(layers: Union[nn.Module, Sequence[Sequence[int]]]) -> list[int]:
    """Theoretical receptive field (in input pixels) after each layer of a chain.

    With jump ``j`` (the input-pixel distance between neighbouring outputs) and size ``r``,
    a layer of kernel ``k``, stride ``s`` and dilation ``d`` gives
    ``r <- r + d (k - 1) j`` and ``j <- j s`` (starting from ``r = j = 1``).

    Args:
        layers: a sequence of ``(kernel, stride)`` or ``(kernel, stride, dilation)`` tuples, or a
            module whose ``Conv2d``/``MaxPool2d``/``AvgPool2d`` children, in registration order,
            form a chain (parallel branches and shortcuts are not followed: for a ResNet this is
            the receptive field of the main path, which bounds the shortcut paths' fields).

    Returns:
        the receptive field side after each layer (square kernels; a list of ints).
    """
    if isinstance(layers, nn.Module):
        spec = []
        for m in layers.modules():
            if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
                k, s = _pair0(m.kernel_size), _pair0(m.stride)
                d = _pair0(getattr(m, "dilation", 1))
                spec.append((k, s, d))
    else:
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


def _pair0(v) -> int:
    return int(v[0] if isinstance(v, (tuple, list)) else v)


def empirical_receptive_field(features: nn.Module, input_shape: Sequence[int] = (1, 3, 64, 64)) -> int:
    """Measured receptive field: side of the input region that moves the centre output unit.

    Back-propagates from the centre pixel of ``features(x)`` (summed over channels) to a random
    input ``x`` of ``input_shape`` in eval mode and returns the height of the bounding box of
    non-zero input gradients. It matches :func:`receptive_field` when the input is large enough.
    """
    shape = _check_shape(input_shape)
    device, dtype = _device_dtype(features)
    was_training = features.training
    features.eval()
    try:
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(shape, generator=gen).to(device=device, dtype=dtype).requires_grad_(True)
        y = features(x)
        if y.dim() != 4:
            raise ValueError(f"features must return a map [N, C, h, w], got {tuple(y.shape)}")
        y[:, :, y.shape[2] // 2, y.shape[3] // 2].sum().backward()
    finally:
        features.train(was_training)
    rows = x.grad.abs().sum(dim=(0, 1, 3)).nonzero()
    return int(rows.max() - rows.min() + 1) if rows.numel() else 0


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
