"""Residual networks (He et al. 2016) and the plain networks they were compared with.

The idea: instead of asking a stack of layers to fit a mapping ``H(x)`` directly, let it fit the
residual ``F(x) = H(x) - x`` and add the input back, ``y = relu(F(x) + x)``. If the best thing a
block can do is (close to) the identity, it only has to push ``F`` towards zero, which is easy
for weight decay and SGD; a plain stack has to *build* the identity out of convolutions and
ReLUs. Deeper plain nets therefore end with a higher *training* loss than shallower ones (the
degradation problem, an optimisation failure and not overfitting), while deeper residual nets do
not.

This module follows torchvision's ``resnet.py`` layout (blocks, the model, builders with
keyword-only arguments) for the CIFAR variant of the paper (Sec. 4.2): a 3x3 stem with ``width``
channels, three stages of ``n`` blocks at widths ``width, 2*width, 4*width`` and strides 1, 2, 2,
global average pooling and a linear classifier: ``6n + 2`` weighted layers with basic blocks.

Where it departs from torchvision / the paper:

* Shortcuts that change the shape use the paper's CIFAR "option A": take every ``stride``-th pixel
  and zero-pad the new channels. It has no parameters, so a residual net and its plain twin
  (``shortcuts=False``) have exactly the same parameters and differ *only* in the additions.
* ``se_reduction`` inserts a squeeze-and-excitation module (Hu et al. 2018) on the residual branch
  before the addition, as in SE-ResNet.
* ``block="bottleneck"`` builds the 1x1-3x3-1x1 variant with ``9n + 2`` layers (as in He et al.'s
  ResNet-164 experiments), also with option-A shortcuts.
"""
from __future__ import annotations

import copy

from typing import Optional, Type, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checks import positive_int
from ..devices import to_module
from ..nn.init import he_init

__all__ = [
    "PadShortcut",
    "BasicBlock",
    "Bottleneck",
    "CifarResNet",
    "valid_depths",
    "residual_ratios",
    "cifar_resnet",
    "resnet20",
]


def conv3x3(in_channels: int, out_channels: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    """3x3 convolution with "same" padding (= ``dilation``) and no bias (batch norm follows)."""
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution without bias."""
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


def _make_se(channels: int, se_reduction: Optional[int]) -> Optional[nn.Module]:
    if se_reduction is None:
        return None
    se_reduction = positive_int(se_reduction, "se_reduction")
    from ..nn.squeeze_excite import SqueezeExcite  # written alongside; imported only when asked for

    return SqueezeExcite(channels, reduction=se_reduction)


class PadShortcut(nn.Module):
    """Parameter-free "option A" shortcut: subsample by ``stride`` and zero-pad the channels.

    Shapes: ``(N, in_channels, H, W) -> (N, out_channels, ceil(H / stride), ceil(W / stride))`` with
    ``out_channels >= in_channels``; the extra channels are zeros.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"option-A shortcuts can only add channels, got {in_channels} -> {out_channels}")
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        extra = self.out_channels - self.in_channels
        return F.pad(x, (0, 0, 0, 0, 0, extra)) if extra else x

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}"


class _ResidualBlock(nn.Module):
    """Shared forward of the residual blocks: ``ReLU(F(x) + shortcut(x))``, or ``ReLU(F(x))`` for the
    plain twin. Subclasses define ``residual`` (the branch ``F``), ``downsample``, ``shortcut``, ``relu``.

    The shortcut is added in place (``out += identity``, as torchvision does): ``out`` is a fresh
    tensor from the branch's last batch norm (or SE product), whose backward does not need it, so
    autograd allows it and the result is bitwise the same; it saves one feature-map allocation per
    block, which made ResNet-50 inference about 3% slower than torchvision's on the CPU
    (``benchmarks/RESULTS.md``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.residual(x)
        if self.shortcut:
            identity = x if self.downsample is None else self.downsample(x)
            out += identity
        return self.relu(out)


class BasicBlock(_ResidualBlock):
    """Two 3x3 conv-BN layers with a shortcut: ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``.

    Shapes: ``(N, inplanes, H, W) -> (N, planes, H / stride, W / stride)``.

    Args:
        inplanes, planes: input and output channels.
        stride: stride of the first convolution.
        downsample: module applied to ``x`` on the shortcut when the shape changes (a
            :class:`PadShortcut` or a 1x1 conv + BN); ``None`` means the identity.
        shortcut: ``False`` drops the addition, giving the layer pair of a plain net.
        se_reduction: add a :class:`~segbook.nn.squeeze_excite.SqueezeExcite` with this reduction
            ratio on the residual branch (before the addition).
        dilation, first_dilation: atrous rates of ``conv2`` and ``conv1`` (``first_dilation``
            defaults to ``dilation``); used by the dilated backbones of
            :mod:`segbook.models.backbones`, where a stage's first block keeps the previous rate.
    """

    expansion: int = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None, *,
                 shortcut: bool = True, se_reduction: Optional[int] = None, dilation: int = 1,
                 first_dilation: Optional[int] = None) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride, first_dilation or dilation)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes, 1, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.se = _make_se(planes, se_reduction)
        self.downsample = downsample if shortcut else None
        self.shortcut = shortcut
        self.stride = stride

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """The residual branch ``F(x)`` (before the addition and the final ReLU)."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.se(out) if self.se is not None else out


class Bottleneck(_ResidualBlock):
    """1x1 reduce -> 3x3 -> 1x1 expand (x ``expansion`` = 4), with a shortcut (torchvision style).

    The stride sits on the 3x3 convolution ("ResNet v1.5"), as in torchvision.

    Shapes: ``(N, inplanes, H, W) -> (N, planes * 4, H / stride, W / stride)``.

    Args: as :class:`BasicBlock`; ``planes`` is the width of the 3x3 convolution, the only one
    that ``dilation`` affects (``first_dilation`` is accepted for a common signature and, as in
    torchvision, also sets the 3x3's rate in a stage's first block).
    """

    expansion: int = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None, *,
                 shortcut: bool = True, se_reduction: Optional[int] = None, dilation: int = 1,
                 first_dilation: Optional[int] = None) -> None:
        super().__init__()
        out_ch = planes * self.expansion
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride, first_dilation or dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, out_ch)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.se = _make_se(out_ch, se_reduction)
        self.downsample = downsample if shortcut else None
        self.shortcut = shortcut
        self.stride = stride

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """The residual branch ``F(x)`` (before the addition and the final ReLU)."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.se(out) if self.se is not None else out


_BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


def valid_depths(block: str = "basic", *, limit: int = 200) -> list[int]:
    """Depths a CIFAR ResNet can have: ``6n + 2`` (basic blocks) or ``9n + 2`` (bottlenecks), up to ``limit``."""
    per = _layers_per_block(block) * 3
    return list(range(per + 2, limit + 1, per))


def _layers_per_block(block: str) -> int:
    if block not in _BLOCKS:
        raise ValueError(f"block must be one of {sorted(_BLOCKS)}, got {block!r}")
    return 2 if block == "basic" else 3


def _blocks_per_stage(depth: int, block: str) -> int:
    per = _layers_per_block(block) * 3
    formula = f"{per}n + 2"
    depth = positive_int(depth, "depth")
    if depth < per + 2 or (depth - 2) % per:
        k = (depth - 2) // per
        nearest = [per * j + 2 for j in (k, k + 1) if j >= 1]
        raise ValueError(
            f"depth={depth} is not a valid CIFAR ResNet depth for {block} blocks: it must be {formula} "
            f"with n >= 1 (3 stages of n blocks of {per // 3} layers, plus the stem and the classifier); "
            f"nearest valid depth{'s' if len(nearest) > 1 else ''}: {' or '.join(map(str, nearest))}"
        )
    return (depth - 2) // per


class CifarResNet(nn.Module):
    """CIFAR-style ResNet (He et al. 2016, Sec. 4.2) or its plain twin.

    Shapes: ``(N, 3, H, W) -> (N, num_classes)`` logits for any ``H, W >= 4`` (global pooling).

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        blocks_per_stage: ``n``; three stages of ``n`` blocks.
        width: channels of the first stage (16 in the paper); stages use ``width, 2w, 4w``
            (times the block expansion at the block outputs).
        num_classes: number of logits.
        shortcuts: ``False`` gives the plain net with the same layers.
        se_reduction: SE ratio for every block (``None``: no SE).
        zero_init_residual: zero the last BN's scale in every block so each residual block starts
            as the identity (torchvision's option; off by default, as in the paper).
    """

    def __init__(self, block: Type[Union[BasicBlock, Bottleneck]], blocks_per_stage: int, *, width: int = 16,
                 num_classes: int = 10, shortcuts: bool = True, se_reduction: Optional[int] = None,
                 zero_init_residual: bool = False) -> None:
        super().__init__()
        blocks_per_stage = positive_int(blocks_per_stage, "blocks_per_stage")
        width = positive_int(width, "width")
        num_classes = positive_int(num_classes, "num_classes")
        self.shortcuts = shortcuts
        self.inplanes = width
        self.conv1 = conv3x3(3, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(block, width, blocks_per_stage, 1, shortcuts, se_reduction)
        self.layer2 = self._make_layer(block, 2 * width, blocks_per_stage, 2, shortcuts, se_reduction)
        self.layer3 = self._make_layer(block, 4 * width, blocks_per_stage, 2, shortcuts, se_reduction)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * width * block.expansion, num_classes)
        he_init(self)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)
                elif isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def _make_layer(self, block, planes: int, blocks: int, stride: int, shortcuts: bool,
                    se_reduction: Optional[int]) -> nn.Sequential:
        out_ch = planes * block.expansion
        downsample = None
        if stride != 1 or self.inplanes != out_ch:
            downsample = PadShortcut(self.inplanes, out_ch, stride)
        layers = [block(self.inplanes, planes, stride, downsample, shortcut=shortcuts, se_reduction=se_reduction)]
        self.inplanes = out_ch
        layers += [block(out_ch, planes, shortcut=shortcuts, se_reduction=se_reduction) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W) -> (N, 4 * width * expansion, H / 4, W / 4)``: the last stage's feature map."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images [N, 3, H, W], got {tuple(x.shape)}")
        x = self.relu(self.bn1(self.conv1(x)))
        return self.layer3(self.layer2(self.layer1(x)))

    def trunk(self) -> nn.Sequential:
        """The convolutional part (stem and the three stages) as one module that shares this net's
        layers: ``[N, 3, H, W] -> [N, 4 * width * expansion, H / 4, W / 4]``, the same map as
        :meth:`forward_features` (without its input check). For tools that take a module, e.g.
        :func:`segbook.analysis.empirical_receptive_field`."""
        return nn.Sequential(self.conv1, self.bn1, self.relu, self.layer1, self.layer2, self.layer3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.forward_features(x))
        return self.fc(torch.flatten(x, 1))


@torch.no_grad()
def residual_ratios(model: CifarResNet, images: torch.Tensor, *, batch_stats: bool = False) -> list[float]:
    """Relative size of every block's residual branch, ``||F(x)|| / ||shortcut(x)||``, for a batch.

    ``images``: ``[N, 3, H, W]``; norms are taken over the whole batch tensor. Runs in eval mode
    (the model's mode is restored). Small ratios mean the blocks act as small corrections to the
    identity, the behaviour He et al. (2016, Fig. 7) report for trained ResNets.

    ``batch_stats=True`` normalises with this batch's own statistics instead of the running ones
    (on a copy of the model in training mode, so nothing of ``model`` changes): the way to measure
    an *untrained* net, whose running statistics are still the initial mean 0 and variance 1 and
    would leave every activation unnormalised. Compare a trained net with its initial weights
    this way to see what training did to the branches.

    Returns:
        one float per block, from input to output.
    """
    if not isinstance(model, CifarResNet) or not model.shortcuts:
        raise ValueError("residual_ratios needs a CifarResNet with shortcuts=True")
    was_training = model.training
    net = copy.deepcopy(model).train() if batch_stats else model.eval()
    try:
        with torch.no_grad():
            x = net.relu(net.bn1(net.conv1(to_module(images, net))))
            norms = []
            for block in (*net.layer1, *net.layer2, *net.layer3):
                f = block.residual(x)
                s = x if block.downsample is None else block.downsample(x)
                norms.append(torch.stack((torch.linalg.vector_norm(f), torch.linalg.vector_norm(s))))
                x = block.relu(f + s)
    finally:
        model.train(was_training)
    ratios = torch.stack(norms)
    return (ratios[:, 0] / ratios[:, 1].clamp_min(1e-12)).tolist()


def cifar_resnet(*, depth: int = 20, width: int = 16, num_classes: int = 10, shortcuts: bool = True,
                 se_reduction: Optional[int] = None, block: str = "basic",
                 zero_init_residual: bool = False) -> CifarResNet:
    """CIFAR ResNet-``depth`` (``depth = 6n + 2`` for basic blocks, ``9n + 2`` for bottlenecks).

    ``shortcuts=False`` gives the plain net of the same depth and parameters. Every argument is
    keyword-only: ``cifar_resnet(depth=32, width=8)``. Raises ``ValueError`` naming the nearest
    valid depths for any other depth, ``TypeError`` for a depth that is not an int.
    """
    n = _blocks_per_stage(depth, block)
    return CifarResNet(_BLOCKS[block], n, width=width, num_classes=num_classes, shortcuts=shortcuts,
                       se_reduction=se_reduction, zero_init_residual=zero_init_residual)


def resnet20(*, width: int = 16, num_classes: int = 10, se_reduction: Optional[int] = None) -> CifarResNet:
    """CIFAR ResNet-20 (3 basic blocks per stage); see :func:`cifar_resnet`."""
    return cifar_resnet(depth=20, width=width, num_classes=num_classes, shortcuts=True, se_reduction=se_reduction)
