"""ImageNet-pretrained VGG-16 features for the FCN backbone, loaded only when asked.

FCN (Long et al. 2015) does not train its backbone from scratch: it starts from VGG-16 trained on
ImageNet and fine-tunes the whole net on PASCAL VOC. On real photographs that start is most of
what makes FCN work; on the book's procedural shapes the small backbones learn from scratch. This
module puts torchvision's VGG-16 weights into segbook's :class:`~segbook.models.backbones.VGGBackbone`
built at VGG-16's size (widths 64-128-256-512-512, depths 2-2-3-3-3), so that
``FCN(backbone, ...)`` is an FCN with the paper's encoder.

What is supported, and how exactly it matches
---------------------------------------------
* **``vgg16_bn`` weights** (torchvision ``VGG16_BN_Weights.IMAGENET1K_V1``, or a state dict of
  ``torchvision.models.vgg16_bn`` saved with ``torch.save``). Each torchvision stage is
  ``Conv2d(bias) -> BatchNorm2d -> ReLU``; segbook's :class:`~segbook.nn.conv.ConvBNAct` has no
  conv bias (BN's shift replaces it). The bias is folded into BN's running mean,
  ``mean' = mean - b``, because ``BN(Wx + b) = gamma (Wx + b - mean) / sigma + beta``. In training
  mode BN subtracts the batch mean, which removes ``b`` anyway. So the backbone computes
  torchvision's ``features`` exactly, in eval *and* training mode (up to float rounding).
* **``vgg16`` weights** (no batch norm; the network the paper used). The conv weights are copied
  and each BN is set to the identity plus the conv bias (``gamma = 1``, ``beta = b``,
  ``mean = 0``, ``var = 1 - eps``). That is exact in **eval mode only**: in training mode BN
  normalises by batch statistics, so fine-tuning starts from a re-normalised version of VGG-16's
  features (a departure from the paper, which has no BN at all).
* Anything else (another architecture, another width) is refused with a ``ValueError`` that names
  the first tensors that do not fit and what was expected.

torchvision's weights expect inputs normalised with ImageNet's channel mean and standard
deviation; segbook's images are in [0, 1]. :class:`ImageNetNormalized` wraps the backbone and
normalises first (``normalize=True`` in :func:`vgg16_backbone`). torchvision's pooling floors
odd sizes where segbook's ``ceil_mode`` pooling rounds up; the two agree on sizes divisible by 32.

Downloads happen only for ``weights="imagenet"`` / ``"vgg16"`` / ``"vgg16_bn"`` (torchvision
fetches about 530 MB into ``$TORCH_HOME``); a path loads a local file and never touches the
network. Tests use only local files.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import torch
import torch.nn as nn

from .backbones import VGGBackbone
from .fcn import FCN, SKIP_ORDER
from .segmentation import check_images

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "VGG16_WIDTHS",
    "VGG16_DEPTHS",
    "ImageNetNormalized",
    "load_vgg16_features",
    "vgg16_state_dict",
    "vgg16_backbone",
    "fcn_vgg16",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VGG16_WIDTHS = (64, 128, 256, 512, 512)
VGG16_DEPTHS = (2, 2, 3, 3, 3)
_NAMED_WEIGHTS = {"imagenet": True, "vgg16_bn": True, "vgg16": False}  # name -> batch norm

Weights = Union[None, str, os.PathLike, Mapping[str, torch.Tensor]]


# ----------------------------------------------------------------------------------------------
# Blocks
# ----------------------------------------------------------------------------------------------
class ImageNetNormalized(nn.Module):
    """Normalise ``[0, 1]`` images with ImageNet's mean and std, then run the wrapped backbone.

    Shapes: ``(N, 3, H, W) ->`` whatever the backbone returns (for :class:`VGGBackbone`, its
    ``pool1`` ... ``pool5`` maps). Exposes the backbone's ``channels``, ``strides``,
    ``in_channels`` and ``min_input_size``, so :class:`~segbook.models.fcn.FCN` takes it as a
    backbone.
    """

    def __init__(self, backbone: VGGBackbone, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD) -> None:
        super().__init__()
        if len(mean) != backbone.in_channels or len(std) != backbone.in_channels:
            raise ValueError(f"mean and std need {backbone.in_channels} values (one per input channel), "
                             f"got {len(mean)} and {len(std)}")
        self.backbone = backbone
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.channels, self.strides = backbone.channels, backbone.strides
        self.in_channels, self.min_input_size = backbone.in_channels, backbone.min_input_size

    def forward(self, x: torch.Tensor):  # noqa: D102
        check_images(x, in_channels=self.in_channels, min_size=self.min_input_size, name=type(self).__name__)
        return self.backbone((x - self.mean) / self.std)


# ----------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------
def _torchvision_indices(batch_norm: bool) -> list[int]:
    """Index in torchvision's ``vgg16(_bn).features`` of each of the 13 convolutions, in order."""
    indices, i = [], 0
    for depth in VGG16_DEPTHS:
        for _ in range(depth):
            indices.append(i)
            i += 3 if batch_norm else 2  # conv, (bn), relu
        i += 1  # max pool
    return indices


def _features_only(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys ``"<i>.<param>"`` of the ``features`` part, from a full model or a features-only dict."""
    if any(k.startswith("features.") for k in state_dict):
        return {k[len("features."):]: v for k, v in state_dict.items() if k.startswith("features.")}
    return dict(state_dict)


def load_vgg16_features(backbone: VGGBackbone, state_dict: Mapping[str, torch.Tensor], *,
                        batch_norm: Optional[bool] = None) -> VGGBackbone:
    """Copy torchvision VGG-16 ``features`` weights into ``backbone`` (in place) and return it.

    Args:
        backbone: a :class:`VGGBackbone` of VGG-16's size (:func:`vgg16_backbone` builds one).
        state_dict: ``torchvision.models.vgg16(_bn)().state_dict()`` (the ``classifier`` keys are
            ignored) or its ``features`` part alone.
        batch_norm: whether the weights are ``vgg16_bn`` (True) or ``vgg16`` (False); default:
            detected from the keys.

    Returns:
        ``backbone``, whose ``pool1`` ... ``pool5`` outputs equal torchvision's ``features`` after
        each max pooling (``vgg16_bn``: in eval and training mode; ``vgg16``: in eval mode; see
        the module docstring).

    Raises:
        ValueError: the backbone is not VGG-16-sized, or the state dict is not a VGG-16 one
            (missing keys or shapes that do not fit; the message names them).
    """
    feats = _features_only(state_dict)
    if batch_norm is None:
        batch_norm = "1.running_mean" in feats
    convs = [layer for stage in backbone.stages.values() for layer in stage if not isinstance(layer, nn.MaxPool2d)]
    if len(convs) != 13 or backbone.channels != dict(zip(backbone.channels, VGG16_WIDTHS)):
        raise ValueError(
            f"the backbone is not VGG-16-sized: {len(convs)} conv layers with stage widths "
            f"{tuple(backbone.channels.values())}; VGG-16 has 13 with widths {VGG16_WIDTHS}. "
            "Build it with segbook.models.pretrained.vgg16_backbone()."
        )
    wanted: dict[str, torch.Size] = {}
    for index, layer in zip(_torchvision_indices(batch_norm), convs):
        conv, bn = layer[0], layer[1]
        wanted[f"{index}.weight"] = conv.weight.shape
        wanted[f"{index}.bias"] = torch.Size([conv.out_channels])
        if batch_norm:
            for name in ("weight", "bias", "running_mean", "running_var"):
                wanted[f"{index + 1}.{name}"] = getattr(bn, name).shape
    missing = [k for k in wanted if k not in feats]
    wrong = [f"features.{k}: {list(feats[k].shape)}, expected {list(s)}" for k, s in wanted.items()
             if k in feats and feats[k].shape != s]
    if missing or wrong:
        kind = "vgg16_bn" if batch_norm else "vgg16"
        problems = [f"missing features.{k}" for k in missing[:3]] + wrong[:3]
        raise ValueError(
            f"not a torchvision {kind} state dict ({len(missing)} keys missing, {len(wrong)} shapes differ): "
            + "; ".join(problems)
            + ". Only torchvision's vgg16 / vgg16_bn ImageNet weights (or state dicts of those models) are supported."
        )
    with torch.no_grad():
        for index, layer in zip(_torchvision_indices(batch_norm), convs):
            conv, bn = layer[0], layer[1]
            weight, bias = feats[f"{index}.weight"].float(), feats[f"{index}.bias"].float()
            conv.weight.copy_(weight)
            if batch_norm:
                bn.weight.copy_(feats[f"{index + 1}.weight"])
                bn.bias.copy_(feats[f"{index + 1}.bias"])
                bn.running_var.copy_(feats[f"{index + 1}.running_var"])
                bn.running_mean.copy_(feats[f"{index + 1}.running_mean"].float() - bias)  # fold the conv bias
            else:
                bn.weight.fill_(1.0)
                bn.bias.copy_(bias)
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0 - bn.eps)  # (x - 0) / sqrt(1 - eps + eps) = x
    return backbone


def vgg16_state_dict(weights: Union[str, os.PathLike, Mapping[str, torch.Tensor]]) -> tuple[dict, Optional[bool]]:
    """Resolve ``weights`` to ``(state dict, batch_norm or None when to be detected)``.

    ``"imagenet"`` or ``"vgg16_bn"``: torchvision's ``VGG16_BN_Weights.IMAGENET1K_V1``;
    ``"vgg16"``: ``VGG16_Weights.IMAGENET1K_V1`` (both **download** about 530 MB on first use);
    a path: ``torch.load`` of a local file (``weights_only=True``); a mapping: used as is.
    """
    if isinstance(weights, Mapping):
        return dict(weights), None
    if isinstance(weights, str) and weights in _NAMED_WEIGHTS:
        import torchvision.models as tvm

        if _NAMED_WEIGHTS[weights]:
            model = tvm.vgg16_bn(weights=tvm.VGG16_BN_Weights.IMAGENET1K_V1)
        else:
            model = tvm.vgg16(weights=tvm.VGG16_Weights.IMAGENET1K_V1)
        return model.state_dict(), _NAMED_WEIGHTS[weights]
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(
            f"weights {str(weights)!r} is neither one of {tuple(_NAMED_WEIGHTS)} nor a file; pass a state dict "
            "saved with torch.save(torchvision.models.vgg16_bn(...).state_dict(), path)"
        )
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(loaded, Mapping):
        raise ValueError(f"{path} holds a {type(loaded).__name__}, not a state dict (a mapping of tensors)")
    return dict(loaded), None


# ----------------------------------------------------------------------------------------------
# Builders
# ----------------------------------------------------------------------------------------------
def vgg16_backbone(*, weights: Weights = None, normalize: bool = True) -> Union[VGGBackbone, ImageNetNormalized]:
    """segbook's :class:`VGGBackbone` at VGG-16's size, optionally with ImageNet weights.

    Args:
        weights: ``None`` (random initialisation), ``"imagenet"`` / ``"vgg16_bn"`` / ``"vgg16"``
            (torchvision's weights, downloaded on first use), a path to a local state dict, or
            a state dict.
        normalize: wrap in :class:`ImageNetNormalized` (inputs stay in [0, 1]).

    Shapes: ``(N, 3, H, W) ->`` ``pool1`` ... ``pool5`` with 64, 128, 256, 512, 512 channels at
    strides 2 ... 32.
    """
    backbone = VGGBackbone(widths=VGG16_WIDTHS, depths=VGG16_DEPTHS)
    if weights is not None:
        state_dict, batch_norm = vgg16_state_dict(weights)
        load_vgg16_features(backbone, state_dict, batch_norm=batch_norm)
    return ImageNetNormalized(backbone) if normalize else backbone


def fcn_vgg16(variant: str = "fcn8s", *, num_classes: int, weights: Weights = "imagenet", hidden: int = 512,
              dropout: float = 0.5) -> FCN:
    """FCN-32s/16s/8s on a VGG-16 backbone (ImageNet weights by default: a download, see above).

    ``fc6``/``fc7`` and the score layers start from scratch (the paper converts VGG's fully
    connected layers into them; segbook's ``fc6`` is a 3x3 conv with ``hidden`` channels instead
    of a 7x7 one with 4096).

    Shapes: ``(N, 3, H, W) -> (N, num_classes, H, W)`` for ``H, W >= 32``; inputs in [0, 1].
    """
    skips = {"fcn32s": (), "fcn16s": SKIP_ORDER[:1], "fcn8s": SKIP_ORDER}
    if variant not in skips:
        raise ValueError(f"variant must be one of {tuple(skips)}, got {variant!r}")
    return FCN(vgg16_backbone(weights=weights), num_classes, skips=skips[variant], hidden=hidden, dropout=dropout)
