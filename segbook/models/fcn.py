"""Fully convolutional networks: FCN-32s, FCN-16s and FCN-8s (Long et al. 2015), small.

The idea: a classification net has only convolutions and pooling up to its fully connected
layers, and those are convolutions too (see :mod:`segbook.nn.convert`). Written that way the net
takes an image of any size and outputs a *map* of class scores at 1/32 of the input resolution;
upsampling it to the input size gives a per-pixel classification trained end to end with a
per-pixel loss. The 1/32 map is coarse, so FCN adds *skips*: 1x1 "score" layers on the finer
``pool4`` (stride 16) and ``pool3`` (stride 8) features predict scores too, and the coarse
prediction, upsampled 2x by a transposed convolution initialised to bilinear interpolation, is
**summed** with them (not concatenated: concatenating features per pixel is the hypercolumn of
Hariharan et al.). FCN-32s uses no skip, FCN-16s adds ``pool4``, FCN-8s adds ``pool4`` and
``pool3``; the three differ in nothing else. Finally the stride-32/16/8 score map is upsampled to
the input size by fixed bilinear interpolation.

Layout (torchvision ``resnet.py`` style): the heads :class:`FCNHead` (``fc6``/``fc7`` as
convolutions + the ``score_fr`` classifier) and :class:`ScoreLayer` (1x1 conv on a skip), the
model :class:`FCN`, and the builders :func:`fcn32s`, :func:`fcn16s`, :func:`fcn8s` and
:func:`patch_classifier` (the small crop classifier that chapter 2 convolutionalises). The
backbone, :class:`~segbook.models.backbones.VGGBackbone` (5 VGG stages of 3x3 conv-BN-ReLU
layers, each ending in 2x2 max pooling, returning its pooled maps by name) and its builder
:func:`~segbook.models.backbones.vgg_backbone`, live in :mod:`segbook.models.backbones` (import
them from there or from :mod:`segbook.models`).

Any input size (at least :data:`MIN_INPUT_SIZE` = 32 on each side): pooling uses ``ceil_mode``
so a stage maps ``H -> ceil(H / 2)``, and the map at stride ``s`` has ``ceil(H / s)`` rows. The 2x
upsampled coarse score has ``2 ceil(H / 2s)`` rows, which is the finer map's ``ceil(H / s)`` or
one more; with "same" padding and pooling windows starting at 0, feature row ``i`` at stride
``s`` is centred on input row ``(i + 1/2) s - 1/2`` at every stride, which is exactly where the
``align_corners=False`` bilinear upsampling puts it, so the crop that aligns the maps removes
trailing rows/columns only (offset 0). The final upsampling goes to ``ceil(H / s) * s`` rows and
is then cropped to the input's ``x.shape[-2:]``, so the output always matches the input and
stays aligned (``F.interpolate(size=x.shape[-2:])`` straight from the coarse map would stretch it
by ``ceil(H / s) s / H`` when ``H`` is not a multiple of ``s``).

Departures from the paper: a tiny VGG-like backbone (one or two convs per stage, 16-128 channels
instead of VGG16's 64-512, ``fc6`` a 3x3 conv instead of 7x7 with 4096 channels), batch norm after
every conv (VGG16 has none), no ImageNet pretraining, "same" padding and ``ceil_mode`` pooling
instead of the paper's 100-pixel input padding and crop offsets, and the final upsampling is
bilinear interpolation that repeats the edge (the paper's fixed deconvolution equals it away from
the border). The staged training of the paper (FCN-16s from a trained FCN-32s, FCN-8s from FCN-16s)
is not built in: :func:`segbook.experiments.fcn.init_from_coarser` does it, as chapter 2 shows.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checks import positive_float, positive_int
from ..nn.conv import ConvBNAct
from ..nn.upsample import BilinearConvTranspose2d
from .backbones import VGG_MIN_INPUT_SIZE, VGGBackbone, vgg_backbone
from .segmentation import SegmentationModel

__all__ = [
    "MIN_INPUT_SIZE",
    "FCNHead",
    "ScoreLayer",
    "FCN",
    "fcn32s",
    "fcn16s",
    "fcn8s",
    "patch_classifier",
]

MIN_INPUT_SIZE = VGG_MIN_INPUT_SIZE  # the backbone's total stride: pool5 then has at least one cell of image pixels
SKIP_ORDER = ("pool4", "pool3")  # from coarse to fine: FCN-16s uses the first, FCN-8s both


# ----------------------------------------------------------------------------------------------
# Blocks
# ----------------------------------------------------------------------------------------------
class FCNHead(nn.Sequential):
    """``fc6`` and ``fc7`` as convolutions, then the ``score_fr`` class scores, on ``pool5``.

    Shapes: ``(N, in_channels, h, w) -> (N, num_classes, h, w)``. ``fc6`` is a 3x3 conv-BN-ReLU
    (same padding), ``fc7`` a 1x1 conv-BN-ReLU, each followed by ``Dropout2d(dropout)``, and
    ``score_fr`` a 1x1 conv with bias.
    """

    def __init__(self, in_channels: int, hidden: int, num_classes: int, *, dropout: float = 0.1) -> None:
        super().__init__(OrderedDict([
            ("fc6", ConvBNAct(in_channels, hidden, 3)),
            ("drop6", nn.Dropout2d(dropout)),
            ("fc7", ConvBNAct(hidden, hidden, 1)),
            ("drop7", nn.Dropout2d(dropout)),
            ("score_fr", nn.Conv2d(hidden, num_classes, 1)),
        ]))


class ScoreLayer(nn.Sequential):
    """A 1x1 convolution predicting class scores from a skip's features (``score_pool4``, ``score_pool3``).

    Shapes: ``(N, in_channels, h, w) -> (N, num_classes, h, w)``. ``zero_init`` (as in the
    paper) makes the skip contribute nothing at the start, so the net starts as the coarser one.
    """

    def __init__(self, in_channels: int, num_classes: int, *, zero_init: bool = True) -> None:
        conv = nn.Conv2d(in_channels, num_classes, 1)
        if zero_init:
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)
        super().__init__(OrderedDict([("conv", conv)]))


# ----------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------
class FCN(SegmentationModel):
    """FCN with skips from ``pool4`` and/or ``pool3`` fused by summation.

    Shapes: ``(N, C_in, H, W) -> (N, num_classes, H, W)`` logits for every ``H, W >= 32``.

    Forward, for FCN-8s (``skips=("pool4", "pool3")``)::

        s32 = score_fr(fc7(fc6(pool5)))                      # stride 32
        s16 = crop(up2_pool4(s32), pool4) + score_pool4(pool4) # stride 16, a sum
        s8  = crop(up2_pool3(s16), pool3) + score_pool3(pool3) # stride 8, a sum
        out = crop(bilinear(s8, x 8), x.shape[-2:])

    ``up2_*`` are :class:`~segbook.nn.upsample.BilinearConvTranspose2d` (learned, initialised to
    bilinear). :meth:`score_maps` returns every intermediate map by name.

    Args:
        backbone: a :class:`~segbook.models.backbones.VGGBackbone` (or any module returning ``pool3``/``pool4``/``pool5``
            maps with ``channels`` and ``strides`` attributes like it).
        num_classes: number of classes.
        skips: ``()`` (FCN-32s), ``("pool4",)`` (FCN-16s) or ``("pool4", "pool3")`` (FCN-8s).
        hidden: channels of ``fc6``/``fc7``.
        dropout: dropout after ``fc6`` and ``fc7``.
        learnable_upsample: train the 2x upsampling layers (FCN does) or keep them bilinear.
        zero_init_skips: start the skip score layers at zero (FCN does).
    """

    def __init__(self, backbone: VGGBackbone, num_classes: int, *, skips: Sequence[str] = (),
                 hidden: int = 128, dropout: float = 0.1, learnable_upsample: bool = True,
                 zero_init_skips: bool = True) -> None:
        super().__init__()
        skips = tuple(skips)
        if skips not in ((), SKIP_ORDER[:1], SKIP_ORDER):
            raise ValueError(f"skips must be (), ('pool4',) or ('pool4', 'pool3') (coarse to fine), got {skips}")
        num_classes = positive_int(num_classes, "num_classes")
        self.backbone = backbone
        self.num_classes = num_classes
        self.skips = skips
        self.head = FCNHead(backbone.channels["pool5"], hidden, num_classes, dropout=dropout)
        self.score_skips = nn.ModuleDict(
            {name: ScoreLayer(backbone.channels[name], num_classes, zero_init=zero_init_skips) for name in skips}
        )
        self.upsample_skips = nn.ModuleDict(
            {name: BilinearConvTranspose2d(num_classes, 2, learnable=learnable_upsample) for name in skips}
        )
        self.output_stride = backbone.strides[skips[-1]] if skips else backbone.strides["pool5"]

    @property
    def min_input_size(self) -> int:  # type: ignore[override]
        return self.backbone.min_input_size

    @property
    def in_channels(self) -> int:  # type: ignore[override]
        return self.backbone.in_channels

    @property
    def total_stride(self) -> int:
        return self.backbone.strides["pool5"]

    @property
    def variant(self) -> str:
        return f"fcn{self.output_stride}s"

    def score_maps(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        """Every score map of the forward pass, by name (shapes for an ``H x W`` input):

        ``"score_fr"`` (stride 32); per skip ``k`` in order: ``"up_<k>"`` (the coarser map
        upsampled 2x and cropped to the skip's size), ``"score_<k>"``, and ``"fuse_<k>"`` (their
        sum); then ``"out"`` ``(N, K, H, W)``. ``maps["out"]`` is ``self(x)``.
        """
        self.check_input(x)
        maps = self._fuse(self.encode(x))
        maps["out"] = self.resize_output(next(reversed(maps.values())), x)
        return maps

    def _fuse(self, feats: dict[str, torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
        maps: OrderedDict[str, torch.Tensor] = OrderedDict()
        score = self.head(feats["pool5"])
        maps["score_fr"] = score
        for name in self.skips:
            skip = feats[name]
            up = self.upsample_skips[name](score)[..., : skip.shape[-2], : skip.shape[-1]]
            skip_score = self.score_skips[name](skip)
            score = up + skip_score  # FCN fuses by summation
            maps[f"up_{name}"], maps[f"score_{name}"], maps[f"fuse_{name}"] = up, skip_score, score
        return maps

    def decode(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """``score_fr`` on ``pool5``, fused with each skip's scores: the score map at :attr:`output_stride`."""
        return next(reversed(self._fuse(features).values()))

    def resize_output(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Bilinear by :attr:`output_stride` to ``ceil(H / s) * s`` rows, cropped to ``x.shape[-2:]`` (stays aligned)."""
        s = self.output_stride
        h, w = logits.shape[-2:]
        size = x.shape[-2:]
        full = F.interpolate(logits, size=(h * s, w * s), mode="bilinear", align_corners=False)
        out = full[..., : size[0], : size[1]]
        if out.shape[-2:] != size:  # cannot happen for a backbone with ceil-mode pooling
            raise RuntimeError(f"upsampled scores {tuple(full.shape[-2:])} do not cover the input {tuple(size)}")
        return out


# ----------------------------------------------------------------------------------------------
# Builders
# ----------------------------------------------------------------------------------------------
def _fcn(*, skips: tuple, num_classes: int, in_channels: int, width: int, depths: Sequence[int],
         hidden: Optional[int], dropout: float, learnable_upsample: bool) -> FCN:
    if not isinstance(learnable_upsample, bool):
        raise TypeError(f"learnable_upsample must be a bool, got {type(learnable_upsample).__name__} "
                        f"{learnable_upsample!r}")
    width = positive_int(width, "width")
    hidden = positive_int(hidden, "hidden", allow_none=True)
    dropout = positive_float(dropout, "dropout", inclusive=True, maximum=1)
    backbone = vgg_backbone(in_channels=in_channels, width=width, depths=depths)
    return FCN(backbone, num_classes, skips=skips, hidden=hidden if hidden is not None else 8 * width,
               dropout=dropout, learnable_upsample=learnable_upsample)


def fcn32s(*, num_classes: int = 6, in_channels: int = 3, width: int = 16, depths: Sequence[int] = (1, 1, 2, 2, 2),
           hidden: Optional[int] = None, dropout: float = 0.1, learnable_upsample: bool = True) -> FCN:
    """FCN-32s: scores from ``pool5`` only, upsampled 32x (``hidden`` defaults to ``8 * width``).

    Keyword arguments only; ``TypeError`` for a value of the wrong type, ``ValueError`` for one out
    of range (the same for :func:`fcn16s` and :func:`fcn8s`).
    """
    return _fcn(skips=(), num_classes=num_classes, in_channels=in_channels, width=width, depths=depths,
                hidden=hidden, dropout=dropout, learnable_upsample=learnable_upsample)


def fcn16s(*, num_classes: int = 6, in_channels: int = 3, width: int = 16, depths: Sequence[int] = (1, 1, 2, 2, 2),
           hidden: Optional[int] = None, dropout: float = 0.1, learnable_upsample: bool = True) -> FCN:
    """FCN-16s: FCN-32s plus the ``pool4`` skip (summed at stride 16), upsampled 16x."""
    return _fcn(skips=SKIP_ORDER[:1], num_classes=num_classes, in_channels=in_channels, width=width, depths=depths,
                hidden=hidden, dropout=dropout, learnable_upsample=learnable_upsample)


def fcn8s(*, num_classes: int = 6, in_channels: int = 3, width: int = 16, depths: Sequence[int] = (1, 1, 2, 2, 2),
          hidden: Optional[int] = None, dropout: float = 0.1, learnable_upsample: bool = True) -> FCN:
    """FCN-8s: FCN-16s plus the ``pool3`` skip (summed at stride 8), upsampled 8x."""
    return _fcn(skips=SKIP_ORDER, num_classes=num_classes, in_channels=in_channels, width=width, depths=depths,
                hidden=hidden, dropout=dropout, learnable_upsample=learnable_upsample)


def patch_classifier(*, num_classes: int = 6, in_channels: int = 3, width: int = 16, hidden: int = 64) -> nn.Sequential:
    """A small crop classifier ``features -> Flatten -> Linear -> ReLU -> Linear`` for 16x16 crops.

    The features use *unpadded* 3x3 convs (conv-BN-ReLU) and 2x2 max pooling:
    ``16 -> 14 -> 12 -> 6 -> 4 -> 2`` (stride 4, receptive field 16 = the crop), so after
    :func:`segbook.nn.convert.convolutionalize` output ``(i, j)`` on a large image is exactly this
    classifier on the crop at ``(4 i, 4 j)``.

    Shapes: ``(N, C_in, 16, 16) -> (N, num_classes)``.
    """
    c1, c2 = width, 2 * width
    return nn.Sequential(
        ConvBNAct(in_channels, c1, 3, padding=0),
        ConvBNAct(c1, c1, 3, padding=0),
        nn.MaxPool2d(2),
        ConvBNAct(c1, c2, 3, padding=0),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(c2 * 2 * 2, hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, num_classes),
    )
