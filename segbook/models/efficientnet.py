r"""EfficientNet: MBConv blocks and compound scaling (Tan & Le, 2019).

**Compound scaling.** Instead of growing only depth, width or input resolution, EfficientNet grows
all three with one coefficient :math:`\phi`:

.. math::

    d = \alpha^{\phi}, \quad w = \beta^{\phi}, \quad r = \gamma^{\phi}, \qquad
    \alpha \beta^2 \gamma^2 \approx 2 \quad (\alpha = 1.2,\ \beta = 1.1,\ \gamma = 1.15)

The FLOPs of a conv net are proportional to depth, to width squared (channels in x channels
out) and to resolution squared (pixels), so they grow by :math:`(\alpha\beta^2\gamma^2)^{\phi}
= 1.92^{\phi} \approx 2^{\phi}`. ``alpha, beta, gamma`` came from a small grid search at
:math:`\phi = 1` on B0 (77.1% top-1 at 0.39 B multiply-adds and 5.3 M parameters on ImageNet).

**Rounding** (as in the reference code, and the reason measured FLOPs do not grow by exactly
1.92 per step): the width of every stage is ``make_divisible(c * w, 8)`` (:func:`round_filters`),
which moves it by up to half a divisor and so by a large fraction in narrow stages; the number of
blocks in a stage is ``ceil(n * d)`` (:func:`round_repeats`), which always rounds *up* and jumps
by a whole block (a 1-block stage becomes 2 blocks already at :math:`d = 1.2`); the resolution is
rounded to an integer and every stride-2 stage rounds the map size up again
(``ceil(r / 2)``). The stem, head and classifier do not scale like the body either. So each
:math:`\phi` step costs "about 2x", not 1.92x: this module's small network measures 2.28x,
2.10x and 1.87x for the steps 0->1->2->3 (the first step is the largest because ``ceil`` turns
every 1- and 2-block stage into 2 and 3 blocks), and 1.51x for 3->4, where width rounding lags.
(The released B1-B7 also use hand-picked coefficients, e.g. B1 = width 1.0, depth 1.1,
resolution 240, not :math:`\alpha^{\phi}`, :math:`\beta^{\phi}`, :math:`\gamma^{\phi}` exactly.)

**MBConv** (the inverted residual of MobileNetV2 plus squeeze-and-excitation),
``[N, C_in, H, W] -> [N, C_out, H/s, W/s]``::

    x -> 1x1 conv expand (C_in -> e*C_in), BN, SiLU      (skipped when e = 1)
      -> kxk depthwise conv, stride s, BN, SiLU            (k = 3 or 5)
      -> squeeze-excite (hidden width C_in * se_ratio)
      -> 1x1 conv project (e*C_in -> C_out), BN            (linear bottleneck: no activation)
      -> + x   when s = 1 and C_in = C_out                 (with stochastic depth in training)

Departures from the paper: :func:`efficientnet_small` is a scaled-down B0 for ~32x32 images
(stride-1 stem, five stages instead of seven, narrower channels, smaller head); the full B0 stage
table is kept in :data:`B0_STAGES` for reference and ``EfficientNet(B0_STAGES, ...)`` builds it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
import torch.nn as nn

from ..checks import positive_float, positive_int
from ..nn.conv import ConvBNAct, make_divisible
from ..nn.drop_path import drop_path
from ..nn.init import he_init
from ..nn.squeeze_excite import SqueezeExcite

__all__ = [
    "StageSpec",
    "B0_STAGES",
    "SMALL_STAGES",
    "CompoundScaling",
    "compound_scaling",
    "round_filters",
    "round_repeats",
    "MBConv",
    "EfficientNet",
    "efficientnet_small",
    "scaled_efficientnet_small",
]


@dataclass(frozen=True)
class StageSpec:
    """One stage of MBConv blocks: ``repeats`` blocks, the first with ``stride``."""

    expand_ratio: int
    kernel_size: int
    stride: int
    channels: int
    repeats: int


#: EfficientNet-B0 (Table 1 of the paper), after a 32-channel stride-2 stem; head 1280 channels.
B0_STAGES: tuple[StageSpec, ...] = (
    StageSpec(1, 3, 1, 16, 1),
    StageSpec(6, 3, 2, 24, 2),
    StageSpec(6, 5, 2, 40, 2),
    StageSpec(6, 3, 2, 80, 3),
    StageSpec(6, 5, 1, 112, 3),
    StageSpec(6, 5, 2, 192, 4),
    StageSpec(6, 3, 1, 320, 1),
)

#: The small B0-like body of :func:`efficientnet_small`: stem 16 channels at stride 1, total stride
#: 8 (a 32x32 image ends as a 4x4 map), head 256 channels. Compared with B0: five stages, narrower,
#: expansion 4 instead of 6 (cheaper on a CPU), and more blocks in the early stages, so that
#: ``ceil(n * d)`` rounds up by a smaller fraction of each stage (see the module docstring).
SMALL_STAGES: tuple[StageSpec, ...] = (
    StageSpec(1, 3, 1, 16, 1),
    StageSpec(4, 3, 2, 24, 4),
    StageSpec(4, 5, 2, 40, 3),
    StageSpec(4, 3, 2, 64, 3),
    StageSpec(4, 5, 1, 96, 2),
)


# ----------------------------------------------------------------------------------------------
# Compound scaling
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CompoundScaling:
    """Multipliers for one ``phi``: depth ``alpha**phi``, width ``beta**phi`` and the input
    resolution ``round(base_resolution * gamma**phi)``."""

    phi: float
    depth_mult: float
    width_mult: float
    resolution: int
    resolution_mult: float = 1.0  #: ``gamma**phi`` before rounding the resolution

    @property
    def flops_factor(self) -> float:
        """Ideal FLOPs growth ``d * w**2 * r_mult**2`` before rounding, i.e. ``(alpha beta^2 gamma^2)^phi``."""
        return self.depth_mult * self.width_mult ** 2 * self.resolution_mult ** 2


def compound_scaling(
    phi: float,
    *,
    alpha: float = 1.2,
    beta: float = 1.1,
    gamma: float = 1.15,
    base_resolution: int = 32,
) -> CompoundScaling:
    """Depth, width and resolution for compound coefficient ``phi`` (0 = the base network).

    ``phi`` may be fractional; it must be finite and >= 0. ``alpha, beta, gamma >= 1``.

    >>> s = compound_scaling(1)
    >>> (s.depth_mult, round(s.width_mult, 2), s.resolution)
    (1.2, 1.1, 37)
    """
    positive_float(phi, "phi", inclusive=True)  # checked, not converted: the table shows phi as given
    for name, v in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
        positive_float(v, name, minimum=1, inclusive=True)
    base_resolution = positive_int(base_resolution, "base_resolution")
    res_mult = gamma ** phi
    return CompoundScaling(phi=phi, depth_mult=alpha ** phi, width_mult=beta ** phi,
                           resolution=int(round(base_resolution * res_mult)), resolution_mult=res_mult)


def round_filters(channels: int, width_mult: float, *, divisor: int = 8) -> int:
    """Scaled channel count ``make_divisible(channels * width_mult, divisor)`` (reference rounding)."""
    if channels < 1 or width_mult <= 0:
        raise ValueError(f"channels must be >= 1 and width_mult > 0, got {channels}, {width_mult}")
    return make_divisible(channels * width_mult, divisor)


def round_repeats(repeats: int, depth_mult: float) -> int:
    """Scaled block count ``ceil(repeats * depth_mult)`` (always rounds up, as the reference)."""
    if repeats < 1 or depth_mult <= 0:
        raise ValueError(f"repeats must be >= 1 and depth_mult > 0, got {repeats}, {depth_mult}")
    # The small epsilon keeps 1.2 * 5 = 6.000000000000001 from becoming 7.
    return int(math.ceil(repeats * depth_mult - 1e-9))


# ----------------------------------------------------------------------------------------------
# Blocks
# ----------------------------------------------------------------------------------------------
class MBConv(nn.Module):
    """Mobile inverted bottleneck with squeeze-and-excitation (see the module docstring).

    Args:
        in_channels, out_channels: channel counts.
        kernel_size: depthwise kernel, 3 or 5 in EfficientNet (any odd size works).
        stride: 1 or 2 (the depthwise conv carries it).
        expand_ratio: ``e``; the hidden width is ``e * in_channels``; ``e = 1`` skips the expand conv.
        se_ratio: SE hidden width as a fraction of ``in_channels`` (0.25 in EfficientNet); 0 disables SE.
        act: activation factory (SiLU, called "swish" in the paper).
        drop_path: stochastic-depth probability of the residual branch (only with the residual).

    Attributes:
        use_residual: ``stride == 1 and in_channels == out_channels``.
        se: the :class:`~segbook.nn.SqueezeExcite` (or ``nn.Identity``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int = 3,
        stride: int = 1,
        expand_ratio: int = 6,
        se_ratio: float = 0.25,
        act: Callable[[], nn.Module] = nn.SiLU,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        positive_int(in_channels, "in_channels")
        positive_int(out_channels, "out_channels")
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        positive_int(expand_ratio, "expand_ratio")
        if not 0.0 <= se_ratio <= 1.0 or not 0.0 <= drop_path < 1.0:
            raise ValueError(f"se_ratio must be in [0, 1] and drop_path in [0, 1), got {se_ratio}, {drop_path}")
        hidden = in_channels * expand_ratio
        self.in_channels, self.out_channels = in_channels, out_channels
        self.stride, self.expand_ratio = stride, expand_ratio
        self.use_residual = stride == 1 and in_channels == out_channels
        self.drop_path = drop_path if self.use_residual else 0.0
        self.expand = ConvBNAct(in_channels, hidden, 1, act=act) if expand_ratio != 1 else nn.Identity()
        self.depthwise = ConvBNAct(hidden, hidden, kernel_size, stride=stride, groups=hidden, act=act)
        self.se = (SqueezeExcite(hidden, hidden_channels=max(1, int(in_channels * se_ratio)), act=act)
                   if se_ratio > 0 else nn.Identity())
        self.project = ConvBNAct(hidden, out_channels, 1, act=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"MBConv expects [N, {self.in_channels}, H, W], got shape {tuple(x.shape)}")
        out = self.project(self.se(self.depthwise(self.expand(x))))
        if self.use_residual:
            out = x + drop_path(out, self.drop_path, self.training)
        return out


# ----------------------------------------------------------------------------------------------
# The network
# ----------------------------------------------------------------------------------------------
class EfficientNet(nn.Module):
    """Stem conv -> stages of :class:`MBConv` -> 1x1 head conv -> global pool -> dropout -> linear.

    Widths go through :func:`round_filters` (``width_mult``, ``divisor``) and block counts through
    :func:`round_repeats` (``depth_mult``). Stochastic depth grows linearly from 0 to
    ``drop_path_rate`` over the blocks, as in the reference code. Output: logits ``[N, num_classes]``.

    Args:
        stages: the base stage table (e.g. :data:`B0_STAGES`, :data:`SMALL_STAGES`).
        width_mult, depth_mult: compound-scaling multipliers (1.0 = base).
        num_classes, in_channels: classifier outputs and input channels.
        stem_channels, stem_stride: base stem width and stride (B0: 32 and 2).
        head_channels: base width of the final 1x1 conv (B0: 1280).
        dropout: before the classifier (B0: 0.2).
        drop_path_rate: final stochastic-depth probability (B0 reference: 0.2).
        divisor: channel rounding divisor (8 in the reference).
    """

    def __init__(
        self,
        stages: Sequence[StageSpec],
        *,
        width_mult: float = 1.0,
        depth_mult: float = 1.0,
        num_classes: int = 1000,
        in_channels: int = 3,
        stem_channels: int = 32,
        stem_stride: int = 2,
        head_channels: int = 1280,
        dropout: float = 0.2,
        drop_path_rate: float = 0.0,
        divisor: int = 8,
        act: Callable[[], nn.Module] = nn.SiLU,
    ) -> None:
        super().__init__()
        if not stages:
            raise ValueError("stages must not be empty")
        positive_int(num_classes, "num_classes")
        positive_int(in_channels, "in_channels")
        rf = lambda c: round_filters(c, width_mult, divisor=divisor)  # noqa: E731
        repeats = [round_repeats(s.repeats, depth_mult) for s in stages]
        total, index = sum(repeats), 0
        c = rf(stem_channels)
        self.stem = ConvBNAct(in_channels, c, 3, stride=stem_stride, act=act)
        blocks: list[nn.Module] = []
        for spec, n in zip(stages, repeats):
            out_c = rf(spec.channels)
            stage = []
            for i in range(n):
                stage.append(MBConv(c, out_c, kernel_size=spec.kernel_size, stride=spec.stride if i == 0 else 1,
                                    expand_ratio=spec.expand_ratio, act=act,
                                    drop_path=drop_path_rate * index / max(1, total)))
                c, index = out_c, index + 1
            blocks.append(nn.Sequential(*stage))
        self.stages = nn.Sequential(*blocks)
        self.head_channels = rf(head_channels)
        self.head = ConvBNAct(c, self.head_channels, 1, act=act)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.head_channels, num_classes)
        self.stage_repeats, self.stage_channels = tuple(repeats), tuple(rf(s.channels) for s in stages)
        self.width_mult, self.depth_mult = float(width_mult), float(depth_mult)
        #: set by :func:`efficientnet_small`: the compound-scaling multipliers and the input size.
        self.scaling: Optional[CompoundScaling] = None
        self.resolution: Optional[int] = None
        he_init(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map after the head conv: ``[N, head_channels, H/stride, W/stride]``."""
        if x.dim() != 4:
            raise ValueError(f"EfficientNet expects a 4-D input [N, C, H, W], got shape {tuple(x.shape)}")
        return self.head(self.stages(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.pool(self.forward_features(x)).flatten(1)))


def efficientnet_small(
    *,
    phi: float = 0,
    num_classes: int = 10,
    in_channels: int = 3,
    base_resolution: int = 32,
    alpha: float = 1.2,
    beta: float = 1.1,
    gamma: float = 1.15,
    dropout: float = 0.2,
    drop_path_rate: float = 0.0,
) -> EfficientNet:
    """A B0-like EfficientNet for ~32x32 images, compound-scaled by ``phi``.

    Base (``phi = 0``): stem 16 channels at stride 1, :data:`SMALL_STAGES` (widths 16-96, 13 MBConv
    blocks, total stride 8), head 256: 0.38 M parameters and 28 M FLOPs (14 M multiply-adds) at
    32x32. Scaling
    with ``phi`` follows :func:`compound_scaling`; the model's ``scaling`` attribute holds the
    multipliers and ``resolution`` the input size to train and measure it at (any size works,
    thanks to the global pool).

    Measured with ``count_flops(model, (1, 3, r, r))`` at its own resolution ``r``, the FLOPs grow
    by about 2x per ``phi`` step, not exactly 1.92x, because of the rounding described in the module
    docstring: widths snap to multiples of 8 (a 16-channel stage stays 16 at ``w = 1.1`` but jumps
    to 24 at ``w = 1.21``), depths jump by whole blocks (``ceil``), the integer resolution is
    halved with rounding-up at every stride-2 stage, and stem/head/classifier scale differently
    from the body. :func:`segbook.experiments.efficientnet_scaling.efficientnet_scaling_table` measures them.
    """
    s = compound_scaling(phi, alpha=alpha, beta=beta, gamma=gamma, base_resolution=base_resolution)
    model = scaled_efficientnet_small(depth_mult=s.depth_mult, width_mult=s.width_mult, resolution=s.resolution,
                                      num_classes=num_classes, in_channels=in_channels, dropout=dropout,
                                      drop_path_rate=drop_path_rate)
    model.scaling = s
    return model


def scaled_efficientnet_small(
    *,
    depth_mult: float = 1.0,
    width_mult: float = 1.0,
    resolution: int = 32,
    num_classes: int = 10,
    in_channels: int = 3,
    dropout: float = 0.2,
    drop_path_rate: float = 0.0,
) -> EfficientNet:
    """The network of :func:`efficientnet_small` with depth, width and resolution set one by one.

    For the control experiment of compound scaling: Tan and Le compare it with growing a single
    dimension (Fig. 3 and 4 of the paper), e.g. ``scaled_efficientnet_small(depth_mult=2.4)``
    (depth only, at the base resolution) against ``efficientnet_small(phi=1)`` at the same FLOPs
    (:func:`segbook.experiments.efficientnet_scaling.single_dimension_scaling` finds the matching multiplier).
    The same rounding applies (``ceil`` block counts, widths to multiples of 8). ``resolution`` is
    only recorded (``model.resolution``, the size to train and measure it at); ``model.scaling``
    is ``None`` (no single ``phi`` describes the net); ``model.width_mult`` and
    ``model.depth_mult`` hold the multipliers.
    """
    for name, v in (("depth_mult", depth_mult), ("width_mult", width_mult)):
        positive_float(v, name)
    resolution = positive_int(resolution, "resolution")
    model = EfficientNet(SMALL_STAGES, width_mult=width_mult, depth_mult=depth_mult,
                         num_classes=num_classes, in_channels=in_channels, stem_channels=16, stem_stride=1,
                         head_channels=256, dropout=dropout, drop_path_rate=drop_path_rate)
    model.resolution = resolution
    return model
