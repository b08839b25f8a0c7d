"""Where a module lives, and moving probe inputs there (low in the import graph: models use it too).

Analysis helpers run a model that ``fit`` may have left on the GPU; feeding it a CPU batch fails
with "Expected all tensors to be on the same device". Every helper that runs a model moves its
input with :func:`to_module` first.
"""
from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["module_device", "module_dtype", "to_module"]


def module_device(module: nn.Module) -> torch.device:
    """The device of ``module``'s first parameter (or buffer); CPU for a module with neither."""
    for t in (*module.parameters(), *module.buffers()):
        return t.device
    return torch.device("cpu")


def module_dtype(module: nn.Module) -> torch.dtype:
    """The dtype of ``module``'s first floating-point parameter (float32 when it has none)."""
    for p in module.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def to_module(x: torch.Tensor, module: nn.Module, *, dtype: bool = True) -> torch.Tensor:
    """``x`` moved to ``module``'s device (and, for float ``x`` with ``dtype=True``, its dtype)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
    if dtype and x.is_floating_point():
        return x.to(device=module_device(module), dtype=module_dtype(module))
    return x.to(module_device(module))
