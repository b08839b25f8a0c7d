"""GoogLeNet / Inception v1 (Szegedy et al. 2015), with a small variant for 32x32 images.

The idea: instead of choosing one filter size per layer, run several in parallel -- a 1x1, a 3x3,
a 5x5 convolution and a 3x3 max pool -- and concatenate their outputs along the channels, so
the next layer sees local context at several scales at once. Run naively this is expensive (the
3x3 and 5x5 convolutions see all input channels, and the pooling branch keeps them all), so
GoogLeNet puts 1x1 convolutions in front of the 3x3 and 5x5 ("reductions") and behind the pool
("projection"): cheap channel mixing that shrinks the width the large kernels have to work on.

Two auxiliary classifiers on intermediate modules add gradient to the lower layers during
training (their losses are weighted 0.3); at test time only the final classifier is used.

Where it departs from the paper / torchvision:

* every convolution is conv -> batch norm -> ReLU (as in torchvision's ``BasicConv2d``; the 2014
  network had no batch norm), and the 5x5 branch really uses a 5x5 kernel (torchvision's port uses
  3x3 there);
* :func:`googlenet_small` is sized for 32x32 inputs: a 3x3 stem instead of the 7x7/stride-2 stem
  and the max pools, so the Inception 3 modules run at 32x32, 4 at 16x16 and 5 at 8x8; all widths
  are scaled by ``width_mult``; the auxiliary heads pool to 4x4 (as in the paper, from 14x14).
"""
from __future__ import annotations

import copy
from typing import NamedTuple, Union

import torch
import torch.nn as nn

from ..checks import positive_float, positive_int
from ..nn.conv import ConvBNAct, make_divisible
from ..nn.init import he_init

__all__ = [
    "InceptionConfig",
    "Inception",
    "InceptionAux",
    "GoogLeNet",
    "GOOGLENET_CONFIGS",
    "inception_3a",
    "without_reductions",
    "googlenet_small",
    "without_aux_heads",
    "aux_classifier",
]


class InceptionConfig(NamedTuple):
    """Channel widths of one Inception module, in the order of the paper's Table 1.

    ``ch1x1``: 1x1 branch; ``ch3x3red`` -> ``ch3x3``: reduction and 3x3 branch; ``ch5x5red`` ->
    ``ch5x5``: reduction and 5x5 branch; ``pool_proj``: 1x1 projection after the 3x3 max pool.
    """

    ch1x1: int
    ch3x3red: int
    ch3x3: int
    ch5x5red: int
    ch5x5: int
    pool_proj: int

    @property
    def out_channels(self) -> int:
        return self.ch1x1 + self.ch3x3 + self.ch5x5 + self.pool_proj

    def scaled(self, width_mult: float, divisor: int = 4) -> "InceptionConfig":
        """Every width times ``width_mult``, rounded with :func:`~segbook.nn.conv.make_divisible`."""
        return InceptionConfig(*(make_divisible(c * width_mult, divisor) for c in self))


# Table 1 of Szegedy et al. (2015): module name -> (in_channels, config).
GOOGLENET_CONFIGS: dict[str, InceptionConfig] = {
    "3a": InceptionConfig(64, 96, 128, 16, 32, 32),
    "3b": InceptionConfig(128, 128, 192, 32, 96, 64),
    "4a": InceptionConfig(192, 96, 208, 16, 48, 64),
    "4b": InceptionConfig(160, 112, 224, 24, 64, 64),
    "4c": InceptionConfig(128, 128, 256, 24, 64, 64),
    "4d": InceptionConfig(112, 144, 288, 32, 64, 64),
    "4e": InceptionConfig(256, 160, 320, 32, 128, 128),
    "5a": InceptionConfig(256, 160, 320, 32, 128, 128),
    "5b": InceptionConfig(384, 192, 384, 48, 128, 128),
}


class Inception(nn.Module):
    """One Inception module: four parallel branches concatenated along the channels.

    Branches (all stride 1, "same" padding, so H and W are kept):

    1. 1x1 conv -> ``ch1x1``
    2. 1x1 conv -> ``ch3x3red``, then 3x3 conv -> ``ch3x3``
    3. 1x1 conv -> ``ch5x5red``, then 5x5 conv -> ``ch5x5``
    4. 3x3 max pool (stride 1), then 1x1 conv -> ``pool_proj``

    Shapes: ``(N, in_channels, H, W) -> (N, ch1x1 + ch3x3 + ch5x5 + pool_proj, H, W)``.

    Args:
        in_channels: input channels.
        config: an :class:`InceptionConfig` (or the six widths as a tuple).
        reductions: ``False`` drops the 1x1 reductions of branches 2 and 3 (the 3x3 and 5x5 then
            see all ``in_channels``); the pool projection is kept so the output width -- and the
            next layer -- stay the same. This is the paper's "naive" module (Fig. 2a) except for the
            projection, which isolates the saving of the reductions.
    """

    def __init__(self, in_channels: int, config: Union[InceptionConfig, tuple], *, reductions: bool = True) -> None:
        super().__init__()
        cfg = InceptionConfig(*config)
        if in_channels < 1 or any(c < 1 for c in cfg):
            raise ValueError(f"all channel counts must be >= 1, got in_channels={in_channels}, {cfg}")
        self.in_channels, self.config, self.reductions = in_channels, cfg, reductions
        self.branch1 = ConvBNAct(in_channels, cfg.ch1x1, 1)
        if reductions:
            self.branch2 = nn.Sequential(ConvBNAct(in_channels, cfg.ch3x3red, 1), ConvBNAct(cfg.ch3x3red, cfg.ch3x3, 3))
            self.branch3 = nn.Sequential(ConvBNAct(in_channels, cfg.ch5x5red, 1), ConvBNAct(cfg.ch5x5red, cfg.ch5x5, 5))
        else:
            self.branch2 = nn.Sequential(ConvBNAct(in_channels, cfg.ch3x3, 3))
            self.branch3 = nn.Sequential(ConvBNAct(in_channels, cfg.ch5x5, 5))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), ConvBNAct(in_channels, cfg.pool_proj, 1))

    @property
    def out_channels(self) -> int:
        return self.config.out_channels

    def forward_branches(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The four branch outputs before concatenation: ``[N, ch1x1|ch3x3|ch5x5|pool_proj, H, W]``."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input [N, {self.in_channels}, H, W], got {tuple(x.shape)}")
        return [self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(self.forward_branches(x), dim=1)

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, out_channels={self.out_channels}, reductions={self.reductions}"


def inception_3a(*, reductions: bool = True) -> Inception:
    """GoogLeNet's module 3a: ``(N, 192, 28, 28) -> (N, 64 + 128 + 32 + 32 = 256, 28, 28)``."""
    return Inception(192, GOOGLENET_CONFIGS["3a"], reductions=reductions)


def without_reductions(module: Inception) -> Inception:
    """A freshly initialised copy of ``module``'s configuration without the 1x1 reductions.

    Same input and output channels, so the two can be compared with
    :func:`~segbook.analysis.count_params` and :func:`~segbook.analysis.count_flops`.
    """
    if not isinstance(module, Inception):
        raise TypeError(f"expected an Inception module, got {type(module).__name__}")
    return Inception(module.in_channels, module.config, reductions=False)


class InceptionAux(nn.Module):
    """Auxiliary classifier: avg-pool to 4x4 -> 1x1 conv -> FC -> ReLU -> dropout -> FC.

    Shapes: ``(N, in_channels, H, W) -> (N, num_classes)``. The paper uses a 5x5/3 average pool
    (14x14 -> 4x4), 128 channels, FC-1024 and dropout 0.7; ``conv_ch``/``fc_ch`` scale those.
    """

    def __init__(self, in_channels: int, num_classes: int, *, conv_ch: int = 128, fc_ch: int = 1024,
                 dropout: float = 0.7) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.conv = ConvBNAct(in_channels, conv_ch, 1)
        self.fc1 = nn.Linear(conv_ch * 16, fc_ch)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(fc_ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.conv(self.pool(x)), 1)
        return self.fc2(self.dropout(self.relu(self.fc1(x))))


class GoogLeNet(nn.Module):
    """A GoogLeNet for small images: stem, Inception 3a-3b, 4a-4e, 5a-5b, pooling, classifier.

    Shapes: ``(N, 3, H, W) -> (N, num_classes)`` in eval mode; in training mode with
    ``aux_logits=True`` a tuple ``(main, aux1, aux2)`` of ``[N, num_classes]`` logits, where
    ``aux1`` reads the output of 4a and ``aux2`` the output of 4d (as in the paper).

    Args:
        num_classes: number of logits.
        width_mult: multiplier for every channel count of the paper's Table 1 (1.0: the original widths).
        aux_logits: build the two auxiliary classifiers.
        dropout: dropout before the final classifier (0.4 in the paper).
        aux_dropout: dropout inside the auxiliary heads (0.7 in the paper).
    """

    def __init__(self, num_classes: int = 10, *, width_mult: float = 1.0, aux_logits: bool = True,
                 dropout: float = 0.4, aux_dropout: float = 0.7) -> None:
        super().__init__()
        positive_float(width_mult, "width_mult")
        num_classes = positive_int(num_classes, "num_classes")
        cfg = {k: c.scaled(width_mult) for k, c in GOOGLENET_CONFIGS.items()}
        stem_ch = make_divisible(192 * width_mult, 4)
        self.aux_logits = aux_logits
        self.stem = ConvBNAct(3, stem_ch, 3)
        modules: dict[str, nn.Module] = {}
        ch = stem_ch
        for name in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b"):
            if name in ("4a", "5a"):
                modules[f"pool{name[0]}"] = nn.MaxPool2d(3, stride=2, padding=1)
            modules[f"inception{name}"] = Inception(ch, cfg[name])
            ch = cfg[name].out_channels
        for key, mod in modules.items():
            self.add_module(key, mod)
        self._order = list(modules)
        if aux_logits:
            aux_kw = dict(conv_ch=make_divisible(128 * width_mult, 4), fc_ch=make_divisible(1024 * width_mult, 4),
                          dropout=aux_dropout)
            self.aux1 = InceptionAux(cfg["4a"].out_channels, num_classes, **aux_kw)
            self.aux2 = InceptionAux(cfg["4d"].out_channels, num_classes, **aux_kw)
        else:
            self.aux1 = self.aux2 = None
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(ch, num_classes)
        he_init(self)

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images [N, 3, H, W], got {tuple(x.shape)}")
        x = self.stem(x)
        aux: list[torch.Tensor] = []
        use_aux = self.training and self.aux_logits
        for name in self._order:
            x = getattr(self, name)(x)
            if use_aux and name == "inception4a":
                aux.append(self.aux1(x))
            elif use_aux and name == "inception4d":
                aux.append(self.aux2(x))
        x = self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))
        if use_aux:
            return x, aux[0], aux[1]
        return x


def googlenet_small(*, num_classes: int = 10, width_mult: float = 0.25, aux_logits: bool = True,
                    dropout: float = 0.2, aux_dropout: float = 0.5) -> GoogLeNet:
    """GoogLeNet for 32x32 images with all widths scaled by ``width_mult`` (0.25: about 0.4M parameters)."""
    return GoogLeNet(num_classes, width_mult=width_mult, aux_logits=aux_logits, dropout=dropout, aux_dropout=aux_dropout)


def without_aux_heads(model: GoogLeNet) -> GoogLeNet:
    """An aux-free twin of ``model``: a copy with the same weights in every shared layer.

    For a controlled comparison of the auxiliary classifiers: build one net with them, take this
    twin, and the two start from identical stem, Inception modules and final classifier (building
    a second net with ``aux_logits=False`` from the same seed would not: the heads' initialisation
    draws from the random stream before the final classifier's does). The twin returns ``[N, K]``
    logits in training mode too, so :func:`segbook.train.fit` trains it on the main loss alone.
    ``model`` itself is left unchanged.
    """
    if not isinstance(model, GoogLeNet):
        raise TypeError(f"expected a GoogLeNet (e.g. googlenet_small()), got {type(model).__name__}")
    twin = copy.deepcopy(model)
    twin.aux_logits = False
    twin.aux1 = twin.aux2 = None
    return twin


class _AuxClassifier(nn.Module):
    def __init__(self, model: GoogLeNet, which: int) -> None:
        super().__init__()
        self.model, self.which = model, which
        self.tap = "inception4a" if which == 1 else "inception4d"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images [N, 3, H, W], got {tuple(x.shape)}")
        x = m.stem(x)
        for name in m._order:
            x = getattr(m, name)(x)
            if name == self.tap:
                return (m.aux1 if self.which == 1 else m.aux2)(x)
        raise AssertionError("unreachable: the tap module is always in the order")


def aux_classifier(model: GoogLeNet, which: int) -> nn.Module:
    """The side classifier ``which`` (1: after 4a, 2: after 4d) of ``model`` as a network of its own.

    ``(N, 3, H, W) -> (N, num_classes)``: the images go through the stem and the Inception modules
    up to the head's tap, then through the head. The module shares ``model``'s weights (nothing
    is copied) and follows the mode it is put in, so ``segbook.train.evaluate(aux_classifier(net,
    1), loader, ...)`` scores what the lower head learned, in eval mode, as the main classifier is
    scored. Raises ``ValueError`` for a net without auxiliary heads.
    """
    if not isinstance(model, GoogLeNet):
        raise TypeError(f"expected a GoogLeNet (e.g. googlenet_small()), got {type(model).__name__}")
    if which not in (1, 2):
        raise ValueError(f"which must be 1 (the head after 4a) or 2 (after 4d), got {which!r}")
    if not model.aux_logits or model.aux1 is None:
        raise ValueError("this GoogLeNet has no auxiliary heads (built with aux_logits=False or by "
                         "without_aux_heads)")
    return _AuxClassifier(model, which)
