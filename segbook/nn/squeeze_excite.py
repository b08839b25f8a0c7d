r"""Squeeze-and-Excitation: per-channel gating from global context (Hu et al., SENet, 2018).

A convolution mixes channels only inside its small window; SE lets every channel see a summary of
the whole image and re-weights the channels with it. For an input ``x`` of shape ``[N, C, H, W]``:

.. math::

    z_c = \frac{1}{HW} \sum_{i,j} x_{c,i,j}                 \quad\text{(squeeze: } [N, C])

    s = \sigma\big(W_2\, \delta(W_1 z + b_1) + b_2\big)    \quad\text{(excitation: } [N, C])

    y_{c,i,j} = s_c \, x_{c,i,j}                              \quad\text{(rescale: } [N, C, H, W])

with ``W1: [C/r, C]``, ``W2: [C, C/r]``, ``delta`` = ReLU and ``sigma`` the logistic sigmoid, so
every score ``s_c`` lies in (0, 1). The block adds ``2 C^2 / r + C/r + C`` parameters and almost
no FLOPs; the paper uses ``r = 16`` (SE-ResNet-50: 23.29% vs 24.80% top-1 error on ImageNet at
about the same cost).

Departures from the paper, all optional:

* the two fully connected layers are 1x1 convolutions on the pooled ``[N, C, 1, 1]`` tensor (the
  same maths, no reshapes);
* the hidden width is ``max(min_hidden, C // r)`` (the paper has no floor; with small ``C`` it
  would otherwise collapse to 0 or 1 unit), or ``hidden_channels`` when given: EfficientNet
  sizes it from the MBConv block's *input* channels (``se_ratio = 0.25``), not from ``C``;
* ``act`` replaces the ReLU (EfficientNet uses SiLU).

The forward pass is pure (it stores nothing); to look at the scores of a trained net, record the
output of the ``gate`` submodule with :func:`segbook.analysis.capture` (``[N, C, 1, 1]``), so a
chapter can plot which channels an image switches on.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["SqueezeExcite", "squeeze_excite", "se_hidden_channels"]


def se_hidden_channels(channels: int, reduction: float = 16, min_hidden: int = 4) -> int:
    """Hidden width of the excitation MLP: ``max(min_hidden, int(channels / reduction))``."""
    if channels < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")
    if reduction <= 0:
        raise ValueError(f"reduction must be > 0, got {reduction}")
    if min_hidden < 1:
        raise ValueError(f"min_hidden must be >= 1, got {min_hidden}")
    return max(min_hidden, int(channels / reduction))


def _as_matrix(weight: torch.Tensor) -> torch.Tensor:
    # Accept Linear weights [out, in] and 1x1 conv weights [out, in, 1, 1].
    if weight.dim() == 4 and weight.shape[2:] == (1, 1):
        return weight.flatten(1)
    if weight.dim() == 2:
        return weight
    raise ValueError(f"expected a [out, in] or [out, in, 1, 1] weight, got shape {tuple(weight.shape)}")


def squeeze_excite(
    x: torch.Tensor,
    fc1_weight: torch.Tensor,
    fc1_bias: Optional[torch.Tensor],
    fc2_weight: torch.Tensor,
    fc2_bias: Optional[torch.Tensor],
    *,
    act: Callable[[torch.Tensor], torch.Tensor] = F.relu,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Functional squeeze-and-excitation.

    Args:
        x: ``[N, C, H, W]``.
        fc1_weight: ``[h, C]`` (or ``[h, C, 1, 1]``), ``fc1_bias``: ``[h]`` or None.
        fc2_weight: ``[C, h]`` (or ``[C, h, 1, 1]``), ``fc2_bias``: ``[C]`` or None.
        act: the hidden non-linearity (ReLU in the paper).

    Returns:
        ``(y, s)``: the rescaled input ``y = x * s[:, :, None, None]`` (``[N, C, H, W]``) and the
        excitation scores ``s`` (``[N, C]``, in (0, 1)).
    """
    if x.dim() != 4:
        raise ValueError(f"squeeze_excite expects a 4-D input [N, C, H, W], got shape {tuple(x.shape)}")
    w1, w2 = _as_matrix(fc1_weight), _as_matrix(fc2_weight)
    if w1.shape[1] != x.shape[1] or w2.shape != (x.shape[1], w1.shape[0]):
        raise ValueError(
            f"weights {tuple(w1.shape)} and {tuple(w2.shape)} do not fit {x.shape[1]} input channels"
        )
    z = x.mean(dim=(2, 3))                                   # squeeze: [N, C]
    s = torch.sigmoid(F.linear(act(F.linear(z, w1, fc1_bias)), w2, fc2_bias))  # excitation: [N, C]
    return x * s[:, :, None, None], s


class SqueezeExcite(nn.Module):
    """Squeeze-and-Excitation block: ``[N, C, H, W] -> [N, C, H, W]``.

    Args:
        channels: ``C``, the number of channels of the input (and output).
        reduction: ``r``, the bottleneck ratio of the excitation MLP (16 in the paper).
        min_hidden: floor of the hidden width ``max(min_hidden, C // r)``.
        hidden_channels: explicit hidden width; overrides ``reduction`` and ``min_hidden``.
        act: factory of the hidden non-linearity (``nn.ReLU`` as in the paper).

    Attributes:
        fc1: ``Conv2d(C, h, 1)`` (= ``W1, b1``); fc2: ``Conv2d(h, C, 1)`` (= ``W2, b2``).
        gate: the ``nn.Sigmoid`` that produces the scores; capture its output to read them.

    Example::

        se = SqueezeExcite(64)              # hidden width 4, 2*64*4 + 4 + 64 = 580 parameters
        y = se(torch.randn(2, 64, 8, 8))    # same shape
        with capture({"se": se.gate}) as got:
            se(x)                           # got["se"][0] is the scores [2, 64, 1, 1]
    """

    def __init__(
        self,
        channels: int,
        *,
        reduction: float = 16,
        min_hidden: int = 4,
        hidden_channels: Optional[int] = None,
        act: Callable[[], nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        if hidden_channels is None:
            hidden = se_hidden_channels(channels, reduction, min_hidden)
        else:
            if channels < 1 or hidden_channels < 1:
                raise ValueError(f"channels and hidden_channels must be >= 1, got {channels}, {hidden_channels}")
            hidden = int(hidden_channels)
        self.channels, self.hidden_channels = channels, hidden
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.act = act()
        self.fc2 = nn.Conv2d(hidden, channels, 1)
        self.gate = nn.Sigmoid()

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Excitation scores ``s = sigmoid(W2 act(W1 z + b1) + b2)`` for ``x``: ``[N, C]`` in (0, 1)."""
        self._check(x)
        z = x.mean(dim=(2, 3), keepdim=True)                  # squeeze: [N, C, 1, 1]
        return self.gate(self.fc2(self.act(self.fc1(z)))).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.scores(x)
        return x * s[:, :, None, None]                       # rescale, broadcast over H, W

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != 4:
            raise ValueError(f"SqueezeExcite expects a 4-D input [N, C, H, W], got shape {tuple(x.shape)}")
        if x.shape[1] != self.channels:
            raise ValueError(f"SqueezeExcite was built for {self.channels} channels, got {x.shape[1]}")

    def extra_repr(self) -> str:
        return f"channels={self.channels}, hidden={self.hidden_channels}"
