"""The CPU layout guard: keep the convolutions that oneDNN miscomputes in NHWC out of NHWC.

channels_last (NHWC) makes the CPU's oneDNN convolutions faster, but torch 2.14's oneDNN has a bug
in the backward-weights kernel of a **1x1 convolution with stride > 1** on NHWC input when the
input channels (per group) are fewer than the kernel's channel block (8 with AVX2 kernels, 16 with
AVX-512 ones): it writes past its workspace. Measured on a 2-core AMD EPYC (torch 2.14.1):

* 3-5 input channels, one thread: heap corruption ("corrupted double-linked list", "double free",
  segmentation faults under ``MALLOC_CHECK_=3``); two threads: hangs for minutes;
* 5 and 7 input channels, two threads: no crash, but the weight gradient is 40-50 % off;
* 8 or more channels on AVX2 kernels: equal to NCHW (1e-7).

Upstream: oneDNN issue #6035 (open as of Dec 2026). NCHW is correct, and so is NHWC for every
other convolution. The guard therefore changes as little as it can: a guarded convolution keeps
its weight in NCHW and gets its input made NCHW-contiguous by a forward pre-hook (on the CPU only),
while the rest of the model stays channels_last. Its output is NCHW; the next layers accept
either layout, so nothing else changes. The threshold is 16 channels, the larger of the two blocks,
so one decision holds on every x86 CPU.

Used by :func:`segbook.execution.resolve_execution`, so :func:`~segbook.train.fit`,
:func:`~segbook.train.evaluate` and :func:`~segbook.train.predict` all run guarded on the CPU.
"""
from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["ONEDNN_BLOCK", "needs_nchw", "guarded_convs", "as_nchw", "guard_cpu_layout", "unguard_cpu_layout"]

ONEDNN_BLOCK = 16  # oneDNN's input-channel block on AVX-512 (8 on AVX2): fewer channels trigger the bug
_HOOK_ATTR = "_segbook_layout_guard"


def needs_nchw(module: nn.Module) -> bool:
    """Whether oneDNN #6035 can hit ``module`` on the CPU in NHWC: an ``nn.Conv2d`` with a 1x1
    kernel, a stride above 1 and fewer than :data:`ONEDNN_BLOCK` input channels per group."""
    if not isinstance(module, nn.Conv2d):
        return False
    per_group = module.in_channels // module.groups
    return tuple(module.kernel_size) == (1, 1) and any(s > 1 for s in module.stride) and per_group < ONEDNN_BLOCK


def guarded_convs(model: nn.Module) -> list[str]:
    """Names (as in ``model.named_modules()``) of the convolutions the guard keeps in NCHW."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    return [name for name, m in model.named_modules() if needs_nchw(m)]


def _default_strides(shape) -> tuple:
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= max(size, 1)
    return tuple(reversed(strides))


def as_nchw(t: torch.Tensor) -> torch.Tensor:
    """``t`` with NCHW's default strides, copied only when its strides differ.

    ``Tensor.contiguous()`` is not enough: a 1x1 weight ``[O, I, 1, 1]`` in channels_last has
    strides ``(I, 1, I, I)``, which ``is_contiguous()`` accepts (size-1 dims do not count), yet
    torch reads those strides as channels_last and picks the NHWC kernel. The same holds for an
    input with one channel.
    """
    if t.stride() == _default_strides(t.shape):
        return t
    return t.clone(memory_format=torch.contiguous_format)


def _nchw_input(module: nn.Conv2d, args: tuple):
    x = args[0] if args else None
    if not isinstance(x, torch.Tensor) or x.device.type != "cpu" or x.dim() != 4:
        return None  # CUDA and other devices are unaffected: leave them in their layout
    w = module.weight
    if w.stride() != _default_strides(w.shape):
        # model.to(memory_format=torch.channels_last) after the guard was installed: undo it for
        # this weight (in place on .data, so an optimiser's reference to the parameter stays valid)
        w.data = as_nchw(w.data)
    nchw = as_nchw(x)
    return None if nchw is x else (nchw,) + tuple(args[1:])


def guard_cpu_layout(model: nn.Module) -> list[str]:
    """Install the guard on every convolution of ``model`` that :func:`needs_nchw`; idempotent.

    Each such convolution gets its weight ``[O, I, 1, 1]`` in NCHW strides (:func:`as_nchw`) and a
    forward pre-hook that gives its input ``[N, C, H, W]`` NCHW strides when it is on the CPU. Hooks do not change
    the state dict, and on CUDA they do nothing.

    Returns:
        the guarded convolutions' names (empty when the model has none).
    """
    names = []
    for name, m in model.named_modules():
        if not needs_nchw(m):
            continue
        names.append(name)
        if getattr(m, _HOOK_ATTR, None) is None:
            setattr(m, _HOOK_ATTR, m.register_forward_pre_hook(_nchw_input))
        if m.weight.device.type == "cpu":
            m.weight.data = as_nchw(m.weight.data)
    return names


def unguard_cpu_layout(model: nn.Module) -> int:
    """Remove the guard's hooks from ``model`` (for tests that show the bug); returns how many."""
    removed = 0
    for m in model.modules():
        handle = getattr(m, _HOOK_ATTR, None)
        if handle is not None:
            handle.remove()
            delattr(m, _HOOK_ATTR)
            removed += 1
    return removed
