"""Models that only the benchmarks need: segbook's backbones dressed as torchvision's classifiers.

``resnet_classifier(depth=18 | 50)`` is segbook's :class:`~segbook.models.backbones.ResNetBackbone`
with torchvision's classification head, so that ``run.py`` and ``diagnose_ops.py`` can time it
against ``torchvision.models.resnet18/50`` (same parameters, same function). No chapter uses it,
so it lives here and not in :mod:`segbook.models`.

    import sys; sys.path.insert(0, "benchmarks")
    from models import resnet_classifier
"""
from __future__ import annotations

import torch
import torch.nn as nn

from segbook.checks import positive_int
from segbook.models.backbones import ResNetBackbone, resnet_backbone

__all__ = ["ResNetClassifier", "resnet_classifier"]


class ResNetClassifier(nn.Module):
    """An image classifier: a :class:`ResNetBackbone` at output stride 32, global average pooling, a linear layer.

    With ``stem="imagenet"`` and widths ``(64, 128, 256, 512)`` this is the ImageNet ResNet of He et al.
    (2016, Table 1) in torchvision's layout (ResNet v1.5: the stride on the bottleneck's 3x3), with the
    same parameters as ``torchvision.models.resnet18/34/50``; the benchmarks use it to compare speed with
    torchvision (``benchmarks/run.py``).

    Shapes: ``(N, in_channels, H, W) -> (N, num_classes)`` logits, ``H, W >= 32``.
    """

    def __init__(self, backbone: ResNetBackbone, num_classes: int = 1000) -> None:
        super().__init__()
        num_classes = positive_int(num_classes, "num_classes")
        if backbone.output_stride != 32:
            raise ValueError(f"a classifier takes an output-stride-32 backbone, got {backbone.output_stride}")
        self.backbone = backbone
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(backbone.channels["layer4"], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        x = self.avgpool(self.backbone(x)["layer4"])
        return self.fc(torch.flatten(x, 1))


def resnet_classifier(*, depth: int = 18, width: int = 64, num_classes: int = 1000, in_channels: int = 3,
                      stem: str = "imagenet") -> ResNetClassifier:
    """ResNet-``depth`` classifier; the defaults give the ImageNet ResNet-18 (``depth=50``: ResNet-50).

    Weights as torchvision initialises them (He normal, fan-out, for convolutions; BN scale 1 and
    shift 0; PyTorch's default for the linear layer); nothing is downloaded.
    Shapes: ``(N, in_channels, H, W) -> (N, num_classes)``.
    """
    backbone = resnet_backbone(depth=depth, width=width, output_stride=32, in_channels=in_channels, stem=stem)
    return ResNetClassifier(backbone, num_classes)
