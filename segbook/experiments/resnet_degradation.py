"""Chapter 1 (classification backbones): gradients of a deep plain net and its residual twin.

A deep batch-normalised plain net does not lose its gradient, it unbalances it: at initialisation
the first layers get much larger weight gradients than the last ones. :func:`grad_norm_profiles`
measures ``||dL/dW||`` layer by layer on one batch for a plain net and the ResNet of the same depth,
both from the same initial weights (:func:`~segbook.models.cifar_resnet` builds the twins with the
same parameters, so one seed gives both the same values).
"""
from __future__ import annotations

import numpy as np
import torch

from ..analysis import grad_norms_at_init
from ..checks import positive_int
from ..models.resnet import cifar_resnet

__all__ = ["grad_norm_profiles"]


def grad_norm_profiles(
    batch: tuple[torch.Tensor, torch.Tensor],
    *,
    depth: int,
    width: int,
    seed: int,
) -> dict[str, np.ndarray]:
    """Weight-gradient norms at initialisation of ``cifar_resnet(depth, width)`` without and with
    shortcuts: ``{"plain": norms, "ResNet": norms}``.

    For each kind (plain first): ``torch.manual_seed(seed)``, build the net, then
    :func:`~segbook.analysis.grad_norms_at_init` on ``batch = (images [N, 3, H, W], labels [N])``
    (one forward/backward in training mode, on a copy). Each value is a float array of
    ``||dL/dW||_2`` per conv/linear layer from input to output: the last entry is the classifier.
    """
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise ValueError("batch must be a pair (images [N, 3, H, W], labels [N])")
    positive_int(depth, "depth")
    positive_int(width, "width")
    norms = {}
    for shortcuts in (False, True):
        torch.manual_seed(seed)
        net = cifar_resnet(depth=depth, width=width, shortcuts=shortcuts)
        norms["ResNet" if shortcuts else "plain"] = np.array([n for _, n in grad_norms_at_init(net, batch)])
    return norms
