"""Backbones for dense prediction: the small VGG of FCN, and a ResNet whose output stride is chosen by dilation.

Every backbone here keeps one contract, so a segmentation head can take any of them: ``forward``
returns an ``OrderedDict`` of named maps (fine to coarse), and the attributes ``channels`` and
``strides`` give each map's channels and stride (``{name: int}``); ``in_channels`` and
``min_input_size`` say what input it takes (a smaller or wrongly shaped input raises a
``ValueError`` from :func:`~segbook.models.segmentation.check_images` before any layer runs).

VGG (:class:`VGGBackbone`, :func:`vgg_backbone`): the encoder of FCN (Long et al. 2015). Five
stages of 3x3 conv-BN-ReLU layers, each ending in 2x2 max pooling with ``ceil_mode``, so stage
``k`` maps ``H -> ceil(H / 2^k)`` and its map ``"poolk"`` has stride ``2^k``. Departures from
VGG-16: widths ``(w, 2w, 4w, 8w, 8w)`` with a small ``w`` (16 instead of 64), one or two convs per
stage instead of two or three, batch norm after every conv (VGG-16 has none), no ImageNet
pretraining (:mod:`segbook.models.pretrained` loads it into a VGG-16-sized instance when asked).

ResNet (:class:`ResNetBackbone`, :func:`resnet_backbone`): a classification ResNet halves the
resolution four or five times: its last map has stride 32 (one cell per 32x32 input pixels).
That is too coarse for segmentation. DeepLab's answer (Chen et al. 2017, "Rethinking atrous
convolution") is to *remove* the stride of the last stage(s) and to dilate their 3x3
convolutions instead, so every layer keeps the receptive field it had (in input pixels) and the
weights it would have had, while the map stays finer:

* output stride 32: strides ``(1, 2, 2, 2)`` in ``layer1..layer4``, rates all 1 (the classifier);
* output stride 16: ``layer4`` gets stride 1 and rate 2;
* output stride 8: ``layer3`` gets stride 1 and rate 2, ``layer4`` stride 1 and rate 4.

This is torchvision's ``replace_stride_with_dilation`` rule: a replaced stage keeps stride 1 and
*multiplies* the running rate by the stride it gave up. As in torchvision the first block of a
replaced stage still uses the previous rate (its input comes from the previous, coarser-spaced
stage) and the later blocks the new one; the 1x1 projection shortcut of that first block gets
stride 1.

Where the ResNet departs from torchvision's: the widths are small (16-128 instead of 64-512) for
CPU training; the stem is configurable: ``"imagenet"`` is the 7x7/2 conv + 3x3/2 max pooling
(stride 4) of the paper, ``"small"`` two 3x3 convs, the first with stride 2 (stride 2, for 64-pixel
images, where a 7x7/2 + pooling stem throws away too much), in which case ``layer1`` takes the
second factor 2 so that the named maps have the same strides (4, 8, 16, 32) with either stem; no
ImageNet pretraining (nothing may be downloaded).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Optional, Sequence, Type, Union

import torch
import torch.nn as nn

from ..checks import positive_int
from ..nn.conv import ConvBNAct
from ..nn.init import he_init
from .resnet import BasicBlock, Bottleneck
from .segmentation import check_images

__all__ = [
    "VGG_MIN_INPUT_SIZE",
    "OUTPUT_STRIDES",
    "VGGBackbone",
    "dilation_schedule",
    "ResNetBackbone",
    "vgg_backbone",
    "resnet_backbone",
]

VGG_MIN_INPUT_SIZE = 32  # the VGG backbone's total stride: pool5 then has at least one cell of image pixels
OUTPUT_STRIDES = (8, 16, 32)
_VGG_STAGES = ("pool1", "pool2", "pool3", "pool4", "pool5")
_RESNET_STAGES = ("layer1", "layer2", "layer3", "layer4")
_BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}
_STEMS = ("imagenet", "small")


# ----------------------------------------------------------------------------------------------
# VGG
# ----------------------------------------------------------------------------------------------
class VGGBackbone(nn.Module):
    """Five VGG stages (``depths[i]`` 3x3 conv-BN-ReLU layers, then 2x2 max pooling), features by name.

    Shapes: ``(N, C_in, H, W) ->`` ``OrderedDict`` with ``"pool1"`` ... ``"pool5"``;
    ``"poolk"`` is ``(N, channels[k-1], ceil(H / 2^k), ceil(W / 2^k))`` (stride ``2^k``).

    Attributes:
        channels: ``{"pool1": c1, ..., "pool5": c5}``.
        strides: ``{"pool1": 2, ..., "pool5": 32}``.
        min_input_size: 32; smaller inputs raise ``ValueError``.
    """

    def __init__(self, *, in_channels: int = 3, widths: Sequence[int] = (16, 32, 64, 128, 128),
                 depths: Sequence[int] = (1, 1, 2, 2, 2)) -> None:
        super().__init__()
        widths, depths = tuple(widths), tuple(depths)
        if len(widths) != 5 or len(depths) != 5:
            raise ValueError(f"widths and depths need 5 entries (one per stage), got {widths} and {depths}")
        widths = tuple(positive_int(w, f"widths[{i}]") for i, w in enumerate(widths))
        depths = tuple(positive_int(d, f"depths[{i}]") for i, d in enumerate(depths))
        in_channels = positive_int(in_channels, "in_channels")
        self.in_channels = in_channels
        self.min_input_size = VGG_MIN_INPUT_SIZE
        stages = []
        c = in_channels
        for width, depth in zip(widths, depths):
            layers: list[nn.Module] = []
            for _ in range(depth):
                layers.append(ConvBNAct(c, width, 3))
                c = width
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleDict(zip(_VGG_STAGES, stages))
        self.channels = dict(zip(_VGG_STAGES, widths))
        self.strides = {name: 2 ** (i + 1) for i, name in enumerate(_VGG_STAGES)}

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":  # noqa: D102
        check_images(x, in_channels=self.in_channels, min_size=self.min_input_size, name=type(self).__name__)
        out: OrderedDict[str, torch.Tensor] = OrderedDict()
        for name, stage in self.stages.items():
            x = stage(x)
            out[name] = x
        return out


# ----------------------------------------------------------------------------------------------
# ResNet
# ----------------------------------------------------------------------------------------------
def _inplace_relu() -> nn.Module:
    # The stem's ReLU overwrites its batch norm's output, as torchvision's does (no extra full-resolution map).
    return nn.ReLU(inplace=True)


def dilation_schedule(output_stride: int) -> tuple[bool, bool, bool]:
    """``replace_stride_with_dilation`` for ``layer2..layer4`` that gives ``output_stride``.

    ``32 -> (False, False, False)``, ``16 -> (False, False, True)``, ``8 -> (False, True, True)``.
    """
    if output_stride not in OUTPUT_STRIDES:
        raise ValueError(f"output_stride must be one of {OUTPUT_STRIDES}, got {output_stride!r}")
    n_replaced = {32: 0, 16: 1, 8: 2}[output_stride]
    return tuple(i >= 3 - n_replaced for i in range(3))  # type: ignore[return-value]


class ResNetBackbone(nn.Module):
    """A ResNet without its classifier, returning ``stem`` and ``layer1..layer4`` maps by name.

    Shapes: ``(N, in_channels, H, W) ->`` ``OrderedDict`` ``{name: (N, channels[name],
    ceil(H / strides[name]), ceil(W / strides[name]))}`` for ``stem, layer1, ..., layer4``.

    Args:
        block: ``"basic"`` (two 3x3 convs) or ``"bottleneck"`` (1x1-3x3-1x1, 4x expansion), or the
            block class.
        layers: blocks per stage, e.g. ``(2, 2, 2, 2)`` for ResNet-18.
        widths: ``planes`` per stage (a stage outputs ``widths[i] * block.expansion`` channels).
        in_channels: input channels.
        stem: ``"imagenet"`` (7x7/2 conv + 3x3/2 max pool) or ``"small"`` (3x3/2 conv + 3x3 conv).
        stem_width: channels of the stem (default ``widths[0]``).
        replace_stride_with_dilation: three bools for ``layer2..layer4``: replace that stage's
            stride 2 by dilation (torchvision semantics; see the module docstring).

    Attributes:
        channels, strides: ``{name: int}`` for every returned map.
        dilations: ``{name: rate}``: the atrous rate of the last block's 3x3 convs per stage.
        output_stride: ``strides["layer4"]``.
    """

    def __init__(self, block: Union[str, Type[nn.Module]] = "basic", layers: Sequence[int] = (2, 2, 2, 2), *,
                 widths: Sequence[int] = (16, 32, 64, 128), in_channels: int = 3, stem: str = "small",
                 stem_width: Optional[int] = None,
                 replace_stride_with_dilation: Sequence[bool] = (False, False, False)) -> None:
        super().__init__()
        if isinstance(block, str):
            if block not in _BLOCKS:
                raise ValueError(f"block must be one of {sorted(_BLOCKS)} or a block class, got {block!r}")
            block = _BLOCKS[block]
        layers, widths = tuple(layers), tuple(widths)
        if len(layers) != 4 or len(widths) != 4:
            raise ValueError(f"layers and widths need 4 entries (layer1..layer4), got {layers} and {widths}")
        for name, values in (("layers", layers), ("widths", widths)):
            for i, v in enumerate(values):
                positive_int(v, f"{name}[{i}]")
        replace = tuple(replace_stride_with_dilation)
        if len(replace) != 3 or any(not isinstance(r, bool) for r in replace):
            raise ValueError(
                f"replace_stride_with_dilation needs 3 bools (for layer2, layer3, layer4), got {replace_stride_with_dilation!r}"
            )
        if stem not in _STEMS:
            raise ValueError(f"stem must be one of {_STEMS}, got {stem!r}")
        in_channels = positive_int(in_channels, "in_channels")
        stem_width = widths[0] if stem_width is None else stem_width
        self.in_channels = in_channels
        self.stem_type = stem

        if stem == "imagenet":
            self.stem = nn.Sequential(OrderedDict([
                ("conv", ConvBNAct(in_channels, stem_width, 7, stride=2, act=_inplace_relu)),
                ("pool", nn.MaxPool2d(3, stride=2, padding=1)),
            ]))
            stem_stride, first_stride = 4, 1
        else:
            self.stem = nn.Sequential(OrderedDict([
                ("conv1", ConvBNAct(in_channels, stem_width, 3, stride=2, act=_inplace_relu)),
                ("conv2", ConvBNAct(stem_width, stem_width, 3, act=_inplace_relu)),
            ]))
            stem_stride, first_stride = 2, 2

        self.channels: dict[str, int] = {"stem": stem_width}
        self.strides: dict[str, int] = {"stem": stem_stride}
        self.dilations: dict[str, int] = {}
        inplanes, stride_so_far, dilation = stem_width, stem_stride, 1
        for i, (name, n_blocks, planes) in enumerate(zip(_RESNET_STAGES, layers, widths)):
            stride = first_stride if i == 0 else 2
            previous_dilation = dilation
            if i > 0 and replace[i - 1]:
                dilation *= stride
                stride = 1
            downsample = None
            out_ch = planes * block.expansion
            if stride != 1 or inplanes != out_ch:
                downsample = nn.Sequential(nn.Conv2d(inplanes, out_ch, 1, stride=stride, bias=False),
                                           nn.BatchNorm2d(out_ch))
            blocks = [block(inplanes, planes, stride, downsample, dilation=dilation, first_dilation=previous_dilation)]
            blocks += [block(out_ch, planes, 1, None, dilation=dilation) for _ in range(1, n_blocks)]
            self.add_module(name, nn.Sequential(*blocks))
            inplanes = out_ch
            stride_so_far *= stride
            self.channels[name] = out_ch
            self.strides[name] = stride_so_far
            self.dilations[name] = dilation
        he_init(self)

    @property
    def output_stride(self) -> int:
        return self.strides["layer4"]

    @property
    def min_input_size(self) -> int:
        """The smallest side that leaves at least one cell of image pixels in ``layer4`` (its stride)."""
        return self.output_stride

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":  # noqa: D102
        check_images(x, in_channels=self.in_channels, min_size=self.min_input_size, name=type(self).__name__)
        out: OrderedDict[str, torch.Tensor] = OrderedDict()
        x = self.stem(x)
        out["stem"] = x
        for name in _RESNET_STAGES:
            x = getattr(self, name)(x)
            out[name] = x
        return out


# ----------------------------------------------------------------------------------------------
# Builders
# ----------------------------------------------------------------------------------------------
def vgg_backbone(*, in_channels: int = 3, width: int = 16, depths: Sequence[int] = (1, 1, 2, 2, 2)) -> VGGBackbone:
    """The small VGG-like backbone: widths ``(w, 2w, 4w, 8w, 8w)`` as in VGG's 64-128-256-512-512."""
    width = positive_int(width, "width")
    return VGGBackbone(in_channels=in_channels, widths=(width, 2 * width, 4 * width, 8 * width, 8 * width),
                       depths=depths)


def resnet_backbone(*, depth: int = 18, width: int = 16, output_stride: int = 32, in_channels: int = 3,
                    stem: str = "small") -> ResNetBackbone:
    """A ResNet-``depth`` backbone at widths ``(w, 2w, 4w, 8w)`` and the given output stride.

    Depths: 10 (basic, ``1,1,1,1``), 18 (basic, ``2,2,2,2``), 34 (basic, ``3,4,6,3``) and 50
    (bottleneck, ``3,4,6,3``), as in torchvision (10 is the smallest, for the book's CPU runs).
    """
    configs = {10: ("basic", (1, 1, 1, 1)), 18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)),
               50: ("bottleneck", (3, 4, 6, 3))}
    if depth not in configs:
        raise ValueError(f"depth must be one of {sorted(configs)}, got {depth!r}")
    width = positive_int(width, "width")
    block, layers = configs[depth]
    return ResNetBackbone(block, layers, widths=(width, 2 * width, 4 * width, 8 * width), in_channels=in_channels,
                          stem=stem, replace_stride_with_dilation=dilation_schedule(output_stride))
