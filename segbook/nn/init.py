"""Weight initialisation shared by every model of the book."""
from __future__ import annotations

import torch.nn as nn

__all__ = ["he_init"]


def he_init(model: nn.Module, *, zero_linear_bias: bool = False) -> nn.Module:
    """He et al. (2015) initialisation, in place, as in torchvision's ResNet; returns ``model``.

    Convolutions: :math:`W \\sim \\mathcal N(0, 2 / \\text{fan\\_out})` with
    ``fan_out = out_channels * k_h * k_w / groups`` (``kaiming_normal_(mode="fan_out",
    nonlinearity="relu")``), which keeps the variance of the *gradients* constant through a ReLU
    net; their biases 0. Batch and group norms: scale 1, shift 0. Linear layers keep PyTorch's
    default weights (their bias is zeroed with ``zero_linear_bias=True``, as DenseNet does).
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm)) and m.affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif zero_linear_bias and isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)
    return model
