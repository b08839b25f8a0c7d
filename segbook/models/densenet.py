"""DenseNet-BC (Huang et al. 2017), small CIFAR variant.

The idea: inside a dense block every layer receives the concatenation of *all* earlier feature
maps of the block (the block input included) and adds ``k`` new channels (the growth rate) to
that running stack. Features are reused rather than re-learned, gradients reach every layer
through a short path, and each layer can be narrow. A block of ``L`` layers has ``L(L+1)/2``
direct connections: layer ``l`` reads ``l`` earlier maps (the block input and layers
``1..l-1``), and ``1 + 2 + ... + L = L(L+1)/2``.

"B" is the bottleneck layer (BN-ReLU-1x1 conv to ``4k`` channels, then BN-ReLU-3x3 conv to ``k``);
"C" is compression: a transition between blocks (BN-ReLU-1x1 conv, 2x2 average pool) keeps only
``floor(theta * m)`` of the ``m`` channels (``theta = 0.5``).

Layout for CIFAR (paper Sec. 3): a 3x3 stem with ``2k`` channels, three dense blocks of
``n = (depth - 4) / 6`` bottleneck layers at 32x32, 16x16 and 8x8 with two transitions in
between, then BN-ReLU, global average pooling and a linear classifier. DenseNet-BC (L=100, k=12)
has n = 16. Departures from the paper: none intended besides the small default depth; no dropout
(the paper uses none with data augmentation). The layers keep their feature list, so
:func:`count_dense_connections` can read the wiring off the module.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn

from ..checks import positive_int
from ..nn.init import he_init

__all__ = [
    "DenseLayer",
    "DenseBlock",
    "Transition",
    "DenseNet",
    "count_dense_connections",
    "densenet_bc",
]


class DenseLayer(nn.Module):
    """Bottleneck layer: BN-ReLU-1x1 conv to ``bn_size * k`` channels, BN-ReLU-3x3 conv to ``k``.

    Shapes: a list of maps ``[(N, c_i, H, W), ...]`` with ``sum(c_i) == in_channels`` ->
    ``(N, growth_rate, H, W)``. Concatenating inside the layer lets the block pass its whole
    feature list, and lets :func:`count_dense_connections` see how many maps each layer reads.
    """

    def __init__(self, in_channels: int, growth_rate: int, *, bn_size: int = 4) -> None:
        super().__init__()
        inter = bn_size * growth_rate
        self.in_channels, self.growth_rate = in_channels, growth_rate
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_channels, inter, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(inter)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(inter, growth_rate, 3, padding=1, bias=False)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        if isinstance(features, torch.Tensor):
            features = [features]
        channels = sum(f.shape[1] for f in features)
        if channels != self.in_channels:
            raise ValueError(f"DenseLayer expects {self.in_channels} input channels in total, got {channels}")
        x = torch.cat(features, dim=1)
        x = self.conv1(self.relu1(self.norm1(x)))
        return self.conv2(self.relu2(self.norm2(x)))


class DenseBlock(nn.Module):
    """``num_layers`` dense layers; each reads all earlier maps, the output concatenates them all.

    Shapes: ``(N, in_channels, H, W) -> (N, in_channels + num_layers * growth_rate, H, W)``.
    """

    def __init__(self, num_layers: int, in_channels: int, growth_rate: int, *, bn_size: int = 4) -> None:
        super().__init__()
        for value, name in ((num_layers, "num_layers"), (in_channels, "in_channels"), (growth_rate, "growth_rate")):
            positive_int(value, name)
        self.in_channels, self.growth_rate = in_channels, growth_rate
        self.layers = nn.ModuleList(
            DenseLayer(in_channels + i * growth_rate, growth_rate, bn_size=bn_size) for i in range(num_layers))

    @property
    def out_channels(self) -> int:
        return self.in_channels + len(self.layers) * self.growth_rate

    def forward(self, x: torch.Tensor, *, return_features: bool = False):
        """Return the concatenated block output; with ``return_features`` also the list of maps
        ``[input (N, c0, H, W), layer 1 (N, k, H, W), ..., layer L (N, k, H, W)]``."""
        features = [x]
        for layer in self.layers:
            features.append(layer(features))
        out = torch.cat(features, dim=1)
        return (out, features) if return_features else out


class Transition(nn.Module):
    """BN-ReLU-1x1 conv to ``floor(theta * in_channels)`` channels, then 2x2 average pooling.

    Shapes: ``(N, m, H, W) -> (N, floor(theta * m), H // 2, W // 2)``.
    """

    def __init__(self, in_channels: int, *, theta: float = 0.5) -> None:
        super().__init__()
        if not 0 < theta <= 1:
            raise ValueError(f"compression theta must be in (0, 1], got {theta!r}")
        self.out_channels = int(math.floor(theta * in_channels))
        if self.out_channels < 1:
            raise ValueError(f"theta={theta} leaves no channels out of {in_channels}")
        self.norm = nn.BatchNorm2d(in_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(in_channels, self.out_channels, 1, bias=False)
        self.pool = nn.AvgPool2d(2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv(self.relu(self.norm(x))))


@torch.no_grad()
def count_dense_connections(block: DenseBlock, example: Optional[torch.Tensor] = None) -> int:
    """Count the direct connections of a dense block by running it and reading the wiring.

    Every layer records how many feature maps it consumed (layer ``l`` of a dense block reads the
    block input and the ``l - 1`` layers before it); the sum over the layers is the number of
    direct connections, ``L(L+1)/2`` for ``L`` densely wired layers. ``example`` is an input ``(N, in_channels, H, W)``;
    by default a zero ``(1, in_channels, 4, 4)`` tensor. The block's train/eval mode is kept.
    """
    if not isinstance(block, DenseBlock):
        raise TypeError(f"expected a DenseBlock, got {type(block).__name__}")
    if example is None:
        p = next(block.parameters())
        example = torch.zeros(1, block.in_channels, 4, 4, device=p.device, dtype=p.dtype)
    was_training = block.training
    block.eval()
    inputs: list[int] = []

    def count(layer, args):  # a forward pre-hook: the list of maps a layer concatenates
        feats = args[0]
        inputs.append(1 if isinstance(feats, torch.Tensor) else len(feats))

    handles = [layer.register_forward_pre_hook(count) for layer in block.layers]
    try:
        with torch.no_grad():
            block(example)
    finally:
        for h in handles:
            h.remove()
        block.train(was_training)
    return sum(inputs)


class DenseNet(nn.Module):
    """DenseNet-BC for CIFAR-sized images.

    Shapes: ``(N, 3, H, W) -> (N, num_classes)``.

    Args:
        layers_per_block: ``n`` bottleneck layers in each of the three dense blocks.
        growth_rate: ``k``.
        theta: compression of the transitions.
        num_classes: number of logits.
    """

    def __init__(self, layers_per_block: int, *, growth_rate: int = 12, theta: float = 0.5, num_classes: int = 10,
                 bn_size: int = 4) -> None:
        super().__init__()
        ch = 2 * growth_rate
        self.stem = nn.Conv2d(3, ch, 3, padding=1, bias=False)
        stages: list[nn.Module] = []
        for i in range(3):
            block = DenseBlock(layers_per_block, ch, growth_rate, bn_size=bn_size)
            stages.append(block)
            ch = block.out_channels
            if i < 2:
                trans = Transition(ch, theta=theta)
                stages.append(trans)
                ch = trans.out_channels
        self.features = nn.Sequential(*stages)
        self.norm = nn.BatchNorm2d(ch)
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(ch, num_classes)
        he_init(self, zero_linear_bias=True)

    @property
    def blocks(self) -> list[DenseBlock]:
        return [m for m in self.features if isinstance(m, DenseBlock)]

    @property
    def transitions(self) -> list[Transition]:
        return [m for m in self.features if isinstance(m, Transition)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images [N, 3, H, W], got {tuple(x.shape)}")
        x = self.relu(self.norm(self.features(self.stem(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def densenet_bc(*, depth: int = 40, growth_rate: int = 12, theta: float = 0.5, num_classes: int = 10) -> DenseNet:
    """DenseNet-BC with ``depth = 6n + 4`` layers (e.g. 40, 100 as in the paper, 190).

    Every argument is keyword-only: ``densenet_bc(depth=40, growth_rate=12)``. Raises ``ValueError``
    for other depths, naming the nearest valid ones, and ``TypeError`` for a depth that is not an int.
    """
    depth = positive_int(depth, "depth")
    if depth < 10 or (depth - 4) % 6:
        k = (depth - 4) // 6
        nearest = [6 * j + 4 for j in (k, k + 1) if j >= 1]
        raise ValueError(f"depth={depth} is not a valid DenseNet-BC depth: it must be 6n + 4 with n >= 1 "
                         f"(3 blocks of n two-conv layers + stem, 2 transitions, classifier); nearest valid "
                         f"depth{'s' if len(nearest) > 1 else ''}: {' or '.join(map(str, nearest))}")
    return DenseNet((depth - 4) // 6, growth_rate=growth_rate, theta=theta, num_classes=num_classes)
