"""Stochastic depth (Huang et al. 2016): drop a sample's whole residual branch during training.

A function, not a module: :class:`~segbook.models.efficientnet.MBConv` calls it on its residual
branch with its own probability (``drop_path(out, self.drop_path, self.training)``).
"""
from __future__ import annotations

import torch

__all__ = ["drop_path"]


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Zero the residual branch ``x [N, ...]`` of each sample with probability ``p`` in training and
    scale the survivors by ``1 / (1 - p)``, so the expectation is unchanged; identity in eval."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"drop_path probability must be in [0, 1), got {p!r}")
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
    return x * mask / keep
