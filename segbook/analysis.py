"""Measuring models: parameter counts and FLOPs.

FLOPs are *measured* by running the model once under ``torch.utils.flop_counter.FlopCounterMode``
(which counts a multiply-add as 2 FLOPs), never computed from a formula typed into a chapter.
Papers usually quote multiply-adds ("FLOPs" in EfficientNet's tables are mult-adds), so
:func:`count_macs` halves the count for comparison with them.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_params", "count_flops", "count_macs"]


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
    try:
        param = next(model.parameters())
        device, dtype = param.device, param.dtype
    except StopIteration:
        device, dtype = torch.device("cpu"), torch.float32
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
