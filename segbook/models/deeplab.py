"""DeepLab v3 and v3+ (Chen et al. 2017, 2018): atrous spatial pyramid pooling and a light decoder.

DeepLab keeps the feature map fine by running the backbone's last stage(s) with dilation instead
of stride (:class:`~segbook.models.backbones.ResNetBackbone`, output stride 16 or 8) and then
looks at that map at several scales at once with *atrous spatial pyramid pooling* (ASPP):

* a 1x1 conv, three 3x3 atrous convs at rates ``(6, 12, 18)`` at output stride 16 (doubled to
  ``(12, 24, 36)`` at output stride 8, so that they span the same input pixels), and an *image
  pooling* branch (global average -> 1x1 conv -> broadcast back), which gives every pixel the
  image-level context that a 3x3 tap at a large rate would otherwise find only in the padding;
* the five maps are concatenated and projected by a 1x1 conv.

DeepLab v3 classifies that map and upsamples the logits to the input (bilinear). DeepLab v3+
adds a decoder: the ASPP output is upsampled to output stride 4 and concatenated with the
backbone's stride-4 ``layer1`` features, first reduced to 48 channels by a 1x1 conv so that they
do not swamp the 256 semantic channels; two 3x3 convs refine the boundaries before the
classifier, and the logits are upsampled 4x to the input size.

Departures from the papers: small widths (ASPP and decoder channels are arguments, 256 in the
papers), a small ResNet from :mod:`segbook.models.backbones` instead of ResNet-101 or an aligned
Xception, no ImageNet or COCO pretraining, and the ASPP rates scale with ``base_rates`` (the
rates at output stride 16) so that small images (a 64-pixel image is a 4x4 map at output stride
16, where a rate-6 tap lies in the padding) can use small rates; ``separable=True`` makes the
atrous ASPP convs and the decoder convs depthwise separable as in v3+ with Xception. Upsampling
uses ``size=`` (never a bare scale factor), so every input size works; as in torchvision the
bilinear resize does not model the half-cell offset of strided convolutions, which training
absorbs.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checks import batch_norm_batch_of_one, positive_float, positive_int
from ..nn.conv import ConvBNAct
from ..nn.separable import separable_conv_bn_act
from .backbones import OUTPUT_STRIDES, ResNetBackbone, resnet_backbone
from .segmentation import SegmentationModel

__all__ = [
    "aspp_rates",
    "ASPPPooling",
    "ASPP",
    "DeepLabV3PlusDecoder",
    "DeepLab",
    "deeplabv3",
    "deeplabv3plus",
]

PAPER_BASE_RATES = (6, 12, 18)  # the ASPP rates at output stride 16 (Chen et al. 2017)


def aspp_rates(output_stride: int, base_rates: Sequence[int] = PAPER_BASE_RATES) -> tuple[int, ...]:
    """ASPP rates at ``output_stride``: ``base_rates`` (those at output stride 16) times ``16 / output_stride``.

    ``aspp_rates(16) == (6, 12, 18)``, ``aspp_rates(8) == (12, 24, 36)``; at output stride 32 the
    rates are halved and must stay integers.
    """
    if output_stride not in OUTPUT_STRIDES:
        raise ValueError(f"output_stride must be one of {OUTPUT_STRIDES}, got {output_stride!r}")
    base = tuple(positive_int(r, f"base_rates[{i}]") for i, r in enumerate(base_rates))
    if not base:
        raise ValueError("base_rates must be a non-empty sequence of positive ints, got an empty one")
    scaled = [r * 16 / output_stride for r in base]
    if any(s != int(s) for s in scaled):
        raise ValueError(f"base_rates {base} cannot be scaled to output stride {output_stride} in integers: {scaled}")
    return tuple(int(s) for s in scaled)


def _branch_conv(in_channels: int, out_channels: int, rate: int, separable: bool) -> nn.Module:
    if separable:
        return separable_conv_bn_act(in_channels, out_channels, 3, dilation=rate)
    return ConvBNAct(in_channels, out_channels, 3, dilation=rate)


# ----------------------------------------------------------------------------------------------
# Blocks
# ----------------------------------------------------------------------------------------------
class ASPPPooling(nn.Module):
    """Image pooling branch: global average -> 1x1 conv-BN-ReLU -> the same vector at every pixel.

    Shapes: ``(N, in_channels, h, w) -> (N, out_channels, h, w)``. Its batch norm sees one value
    per channel and image, so training needs batches of at least 2 (:class:`DeepLab` checks).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv = ConvBNAct(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.conv(self.pool(x)).expand(-1, -1, x.shape[-2], x.shape[-1])


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: parallel 1x1, atrous 3x3 (one per rate) and image pooling.

    Shapes: ``(N, in_channels, h, w) -> (N, out_channels, h, w)``.

    Args:
        in_channels: channels of the backbone's last map.
        out_channels: channels of every branch and of the projection (256 in the paper).
        rates: atrous rates of the 3x3 branches (see :func:`aspp_rates`).
        image_pooling: add the global-average branch.
        separable: depthwise separable 3x3 branches (v3+ with Xception).
        dropout: dropout after the projection (0.1 in the reference code, 0.5 in torchvision).
    """

    def __init__(self, in_channels: int, out_channels: int = 256, rates: Sequence[int] = PAPER_BASE_RATES, *,
                 image_pooling: bool = True, separable: bool = False, dropout: float = 0.1) -> None:
        super().__init__()
        rates = tuple(positive_int(r, f"rates[{i}]") for i, r in enumerate(rates))
        branches: OrderedDict[str, nn.Module] = OrderedDict([("conv1x1", ConvBNAct(in_channels, out_channels, 1))])
        for r in rates:
            branches[f"atrous{r}"] = _branch_conv(in_channels, out_channels, r, separable)
        if image_pooling:
            branches["image_pool"] = ASPPPooling(in_channels, out_channels)
        self.branches = nn.ModuleDict(branches)
        self.project = nn.Sequential(ConvBNAct(len(branches) * out_channels, out_channels, 1), nn.Dropout(dropout))
        self.rates, self.image_pooling = rates, image_pooling
        self.in_channels, self.out_channels = in_channels, out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.project(torch.cat([branch(x) for branch in self.branches.values()], dim=1))


class DeepLabV3PlusDecoder(nn.Module):
    """v3+ decoder: fuse the upsampled ASPP output with low-level features at output stride 4.

    Shapes: ``aspp (N, aspp_channels, h, w)``, ``low (N, low_level_channels, H4, W4) ->
    (N, num_classes, H4, W4)``::

        reduced = relu(bn(conv1x1(low)))                        # 48 channels
        fused = cat(bilinear(aspp, size=low.shape[-2:]), reduced)
        logits = classifier(conv3x3(conv3x3(fused)))

    Args:
        low_level_channels: channels of the backbone's stride-4 map.
        aspp_channels: channels of the ASPP output.
        num_classes: number of classes.
        reduced_channels: the low-level reduction (48 in the paper).
        channels: width of the two 3x3 convs (256 in the paper).
        separable: make the 3x3 convs depthwise separable.
    """

    def __init__(self, low_level_channels: int, aspp_channels: int, num_classes: int, *, reduced_channels: int = 48,
                 channels: int = 256, separable: bool = False) -> None:
        super().__init__()
        self.reduce = ConvBNAct(low_level_channels, reduced_channels, 1)
        self.fuse = nn.Sequential(
            _branch_conv(aspp_channels + reduced_channels, channels, 1, separable),
            _branch_conv(channels, channels, 1, separable),
        )
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, aspp: torch.Tensor, low: torch.Tensor) -> torch.Tensor:  # noqa: D102
        up = F.interpolate(aspp, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.classifier(self.fuse(torch.cat([up, self.reduce(low)], dim=1)))


# ----------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------
class DeepLab(SegmentationModel):
    """DeepLab v3 (``decoder=False``) or v3+ (``decoder=True``) on a dilated ResNet backbone.

    Shapes: ``(N, in_channels, H, W) -> (N, num_classes, H, W)`` logits, for any ``H, W`` at least
    the output stride.

    Args:
        backbone: a :class:`~segbook.models.backbones.ResNetBackbone` (or a module with the same
            contract returning ``layer1`` at stride 4 and ``layer4``).
        num_classes: number of classes.
        decoder: add the v3+ decoder on ``layer1``.
        aspp_channels, rates, image_pooling, separable, dropout: see :class:`ASPP`.
        decoder_channels, reduced_channels: see :class:`DeepLabV3PlusDecoder`.
    """

    def __init__(self, backbone: ResNetBackbone, num_classes: int, *, decoder: bool = True, aspp_channels: int = 256,
                 rates: Optional[Sequence[int]] = None, image_pooling: bool = True, separable: bool = False,
                 dropout: float = 0.1, decoder_channels: int = 256, reduced_channels: int = 48) -> None:
        super().__init__()
        num_classes = positive_int(num_classes, "num_classes")
        self.backbone = backbone
        self.num_classes = num_classes
        self.in_channels = backbone.in_channels
        self.min_input_size = backbone.min_input_size
        self.output_stride = backbone.strides["layer4"]
        rates = aspp_rates(self.output_stride) if rates is None else tuple(rates)
        self.aspp = ASPP(backbone.channels["layer4"], aspp_channels, rates, image_pooling=image_pooling,
                         separable=separable, dropout=dropout)
        self.image_pooling = image_pooling
        if decoder:
            if backbone.strides.get("layer1") != 4:
                raise ValueError(f"the v3+ decoder needs a stride-4 'layer1' map, got strides {backbone.strides}")
            self.head = None
            self.decoder = DeepLabV3PlusDecoder(backbone.channels["layer1"], aspp_channels, num_classes,
                                                reduced_channels=reduced_channels, channels=decoder_channels,
                                                separable=separable)
        else:
            self.decoder = None
            self.head = nn.Sequential(OrderedDict([
                ("conv", ConvBNAct(aspp_channels, aspp_channels, 3)),
                ("classifier", nn.Conv2d(aspp_channels, num_classes, 1)),
            ]))

    @property
    def variant(self) -> str:
        return f"deeplabv3{'plus' if self.decoder is not None else ''}_os{self.output_stride}"

    @property
    def total_stride(self) -> int:
        return self.output_stride

    def check_input(self, x: torch.Tensor) -> None:  # noqa: D102
        super().check_input(x)
        why = batch_norm_batch_of_one(self, x.shape[0]) if self.image_pooling else None
        if why:
            raise ValueError(f"{type(self).__name__} in training mode got a batch of one image, and the ASPP "
                             f"image-pooling branch has one value per channel: {why}, image_pooling=False, or "
                             "model.eval() for inference")

    def decode(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """ASPP on ``layer4``, then the v3+ decoder with ``layer1`` or the v3 head: logits at stride 4 or the output stride."""
        aspp = self.aspp(features["layer4"])
        return self.decoder(aspp, features["layer1"]) if self.decoder is not None else self.head(aspp)


# ----------------------------------------------------------------------------------------------
# Builders
# ----------------------------------------------------------------------------------------------
def _deeplab(*, decoder: bool, num_classes: int, in_channels: int, depth: int, width: int, output_stride: int,
             stem: str, aspp_channels: Optional[int], base_rates: Sequence[int], image_pooling: bool,
             separable: bool, dropout: float, decoder_channels: Optional[int], reduced_channels: int) -> DeepLab:
    for name, flag in (("image_pooling", image_pooling), ("separable", separable)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be a bool, got {type(flag).__name__} {flag!r}")
    width = positive_int(width, "width")
    aspp_channels = positive_int(aspp_channels, "aspp_channels", allow_none=True)
    decoder_channels = positive_int(decoder_channels, "decoder_channels", allow_none=True)
    reduced_channels = positive_int(reduced_channels, "reduced_channels")
    dropout = positive_float(dropout, "dropout", inclusive=True, maximum=1)
    backbone = resnet_backbone(depth=depth, width=width, output_stride=output_stride, in_channels=in_channels,
                               stem=stem)
    aspp_channels = 4 * width if aspp_channels is None else aspp_channels
    return DeepLab(backbone, num_classes, decoder=decoder, aspp_channels=aspp_channels,
                   rates=aspp_rates(output_stride, base_rates), image_pooling=image_pooling, separable=separable,
                   dropout=dropout, decoder_channels=aspp_channels if decoder_channels is None else decoder_channels,
                   reduced_channels=reduced_channels)


def deeplabv3(*, num_classes: int = 6, in_channels: int = 3, depth: int = 18, width: int = 16, output_stride: int = 16,
              stem: str = "small", aspp_channels: Optional[int] = None, base_rates: Sequence[int] = PAPER_BASE_RATES,
              image_pooling: bool = True, separable: bool = False, dropout: float = 0.1) -> DeepLab:
    """DeepLab v3: ResNet-``depth`` at ``output_stride``, ASPP, classifier, bilinear upsampling.

    ``aspp_channels`` defaults to ``4 * width``; ``base_rates`` are the ASPP rates at output stride
    16 (scaled by :func:`aspp_rates`). Keyword arguments only; ``TypeError`` for a value of the
    wrong type (a float width), ``ValueError`` for one out of range.
    """
    return _deeplab(decoder=False, num_classes=num_classes, in_channels=in_channels, depth=depth, width=width,
                    output_stride=output_stride, stem=stem, aspp_channels=aspp_channels, base_rates=base_rates,
                    image_pooling=image_pooling, separable=separable, dropout=dropout, decoder_channels=None,
                    reduced_channels=48)


def deeplabv3plus(*, num_classes: int = 6, in_channels: int = 3, depth: int = 18, width: int = 16,
                  output_stride: int = 16, stem: str = "small", aspp_channels: Optional[int] = None,
                  base_rates: Sequence[int] = PAPER_BASE_RATES, image_pooling: bool = True, separable: bool = False,
                  dropout: float = 0.1, decoder_channels: Optional[int] = None, reduced_channels: int = 48) -> DeepLab:
    """DeepLab v3+: DeepLab v3's encoder plus the decoder fusing ``layer1`` (reduced to 48 channels) at stride 4.

    ``decoder_channels`` defaults to ``aspp_channels``; other arguments as :func:`deeplabv3`.
    """
    return _deeplab(decoder=True, num_classes=num_classes, in_channels=in_channels, depth=depth, width=width,
                    output_stride=output_stride, stem=stem, aspp_channels=aspp_channels, base_rates=base_rates,
                    image_pooling=image_pooling, separable=separable, dropout=dropout,
                    decoder_channels=decoder_channels, reduced_channels=reduced_channels)
