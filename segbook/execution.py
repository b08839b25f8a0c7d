"""How a model runs: its device, the autocast dtype, the memory format and the CPU layout guard.

:func:`segbook.runtime.pick_device` picks the reader's device once per chapter (CUDA, then Apple
MPS, then the CPU); this module decides, per model, how to run there. One helper,
:func:`resolve_execution`, makes that decision for :func:`~segbook.train.fit`,
:func:`~segbook.train.evaluate`, :func:`~segbook.train.predict`, ``tools/gpu_check.py`` and the
benchmarks alike, so they cannot disagree.

Precision: bf16 autocast on GPUs with compute capability >= 8.0 (A100, H100, RTX 30xx and later),
fp16 autocast with a ``GradScaler`` on older ones (a T4 is 7.5: its bf16 is emulated, and bf16
convolutions there skip cuDNN and run several times slower), float32 on the CPU.

Memory format: channels_last (NHWC) on CUDA by default. On the CPU the layout guard
(:mod:`segbook.layout`) keeps the 1x1 stride-2 convolutions with fewer than 16 input channels in
NCHW whatever the format asked for, because oneDNN miscomputes their weight gradients in NHWC
(oneDNN #6035); ``$SEGBOOK_LAYOUT_GUARD=0`` turns it off (only for the tests that show the bug).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional, Union

import torch
import torch.nn as nn

from .devices import module_device
from .layout import guard_cpu_layout

__all__ = ["Execution", "resolve_execution", "amp_dtype_for", "layout_guard_enabled", "LAYOUT_GUARD_ENV"]

#: Environment variable that turns the CPU layout guard off when set to ``0``.
LAYOUT_GUARD_ENV = "SEGBOOK_LAYOUT_GUARD"


def layout_guard_enabled() -> bool:
    """False only when ``$SEGBOOK_LAYOUT_GUARD=0`` (tests that reproduce oneDNN #6035)."""
    return os.environ.get(LAYOUT_GUARD_ENV, "1").strip() != "0"


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
        """The autocast context of this execution (a no-op when ``amp`` is off)."""
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp)

    def images(self, x: torch.Tensor) -> torch.Tensor:
        """Move a batch of images ``[N, C, H, W]`` to the device, in channels_last when that is on."""
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
        device = module_device(model)
    device = torch.device(device)
    amp = (device.type == "cuda") if amp is None else bool(amp)
    channels_last = (device.type == "cuda") if channels_last is None else bool(channels_last)
    guarded: tuple = ()
    if model is not None and device.type == "cpu" and layout_guard_enabled():
        guarded = tuple(guard_cpu_layout(model))
    return Execution(device, amp, amp_dtype_for(device), channels_last, guarded)
