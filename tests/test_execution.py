"""Tests for segbook.execution: device, autocast dtype, memory format and the CPU layout guard switch."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from segbook.execution import (LAYOUT_GUARD_ENV, Execution, amp_dtype_for, layout_guard_enabled,
                               resolve_execution)


@pytest.mark.parametrize("capability,expected", [((7, 5), torch.float16), ((7, 0), torch.float16),
                                                 ((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16)])
def test_amp_dtype_follows_compute_capability_not_emulated_bf16(monkeypatch, capability, expected):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)  # a T4 says yes
    assert amp_dtype_for("cuda") == expected
    ex = resolve_execution(device="cuda")
    assert ex.amp and ex.channels_last and ex.amp_dtype == expected
    assert ex.grad_scaler == (expected == torch.float16)


def test_execution_on_cpu_and_mps_defaults():
    ex = resolve_execution(torch.nn.Linear(2, 2))
    assert ex.device.type == "cpu" and not ex.amp and not ex.channels_last and not ex.grad_scaler
    assert ex.accumulator_dtype == torch.float64
    assert resolve_execution(device="mps", amp=False).accumulator_dtype == torch.float32  # MPS has no float64
    with pytest.raises(ValueError, match="model or a device"):
        resolve_execution()


def test_execution_defaults_to_the_models_device_and_explicit_settings_win():
    model = nn.Sequential(nn.BatchNorm2d(3))  # parameters and buffers on the CPU
    ex = resolve_execution(model, amp=True, channels_last=True)
    assert ex.device == torch.device("cpu") and ex.amp and ex.amp_dtype == torch.bfloat16 and ex.channels_last
    assert not ex.grad_scaler  # bf16 (and the CPU) needs no loss scaling
    with pytest.raises(ValueError, match="model or a device"):
        resolve_execution(amp=True)


def test_images_moves_and_converts_only_4d_batches():
    cl = Execution(torch.device("cpu"), False, torch.bfloat16, True)
    x = torch.rand(2, 3, 4, 5)
    y = cl.images(x)
    assert y.is_contiguous(memory_format=torch.channels_last) and torch.equal(x, y)
    v = torch.rand(2, 3)
    assert cl.images(v).is_contiguous()
    plain = Execution(torch.device("cpu"), False, torch.bfloat16, False)
    assert plain.images(x).is_contiguous() and not plain.images(x).is_contiguous(memory_format=torch.channels_last)


def test_autocast_is_off_unless_amp():
    model = nn.Linear(4, 4)
    x = torch.rand(2, 4)
    with Execution(torch.device("cpu"), False, torch.bfloat16, False).autocast():
        assert model(x).dtype == torch.float32
    with Execution(torch.device("cpu"), True, torch.bfloat16, False).autocast():
        assert model(x).dtype == torch.bfloat16


def test_prepare_converts_to_channels_last_and_guards_on_the_cpu():
    conv = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 1, stride=2))  # the second needs the guard
    ex = resolve_execution(conv, device="cpu", channels_last=True)
    assert ex.layout_guard == ("1",) and ex.prepare(conv) is conv
    assert conv[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert conv[1].weight.stride() == (8, 1, 1, 1)  # kept NCHW by the guard


def test_layout_guard_switch(monkeypatch):
    monkeypatch.delenv(LAYOUT_GUARD_ENV, raising=False)
    assert layout_guard_enabled()
    monkeypatch.setenv(LAYOUT_GUARD_ENV, " 0 ")
    assert not layout_guard_enabled()
    conv = nn.Sequential(nn.Conv2d(8, 8, 1, stride=2))
    assert resolve_execution(conv, device="cpu", channels_last=True).layout_guard == ()
    monkeypatch.setenv(LAYOUT_GUARD_ENV, "1")
    assert layout_guard_enabled()
