"""Seeded golden outputs: an initialisation or architecture change shows up here in seconds,
not minutes later as an nbval difference in a chapter. Update the numbers only on purpose, and say
why in the commit message."""
from __future__ import annotations

import pytest
import torch

from segbook.models import fcn8s


def _input(*shape):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(1))


def test_fcn8s_golden_output():
    torch.manual_seed(0)
    model = fcn8s(num_classes=3, width=4).eval()
    with torch.no_grad():
        y = model(_input(2, 3, 40, 48))
    assert y.shape == (2, 3, 40, 48)
    assert y.double().sum().item() == pytest.approx(-25.462867, rel=1e-4)
    assert y.double().abs().mean().item() == pytest.approx(0.02821427, rel=1e-4)
    assert y[0, :, 0, 0].tolist() == pytest.approx([0.016959, -0.017250, -0.002595], abs=2e-5)
    assert y[1, :, 20, 30].tolist() == pytest.approx([0.050462, -0.051335, -0.007698], abs=2e-5)
