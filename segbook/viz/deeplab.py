"""Figures for chapter 5 (DeepLab and the dense CRF).

Each function takes a result from the chapter's study (or plain tensors) and returns the matplotlib
figure, so the chapter cell is one call.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter, NullLocator

__all__ = ["plot_tap_counts", "plot_crf_cost"]


def plot_tap_counts(grids: Mapping[str, torch.Tensor], *, figsize: tuple[float, float] = (6.4, 2.4)) -> Figure:
    """Gridding: one heat map per rate schedule of how many tap paths reach the centre output.

    ``grids`` is ``{title: counts [S, S]}`` (:func:`segbook.nn.atrous.tap_counts` of each schedule).
    Counts share one logarithmic colour scale (a colour bar on the right); pixels no path reaches
    (count 0) are black. Each panel's title is the schedule's name and the field's size.
    """
    if not grids:
        raise ValueError("grids must hold at least one {name: tap-count map}")
    for name, g in grids.items():
        if not isinstance(g, torch.Tensor) or g.dim() != 2:
            raise ValueError(f"grid {name!r} must be a 2-D tensor of tap counts, got {getattr(g, 'shape', type(g))}")
    vmax = max(float(v.max()) for v in grids.values())
    if vmax < 1:
        raise ValueError("every grid is all zeros: no tap path reaches the centre")
    fig, axes = plt.subplots(1, len(grids), figsize=figsize, squeeze=False)
    axes = axes[0]
    for ax, (name, g) in zip(axes, grids.items()):
        shown = g.double().masked_fill(g == 0, float("nan")).numpy()
        im = ax.imshow(shown, cmap="viridis", norm=LogNorm(vmin=1, vmax=vmax))
        ax.set_facecolor("black")
        ax.set_title(f"{name}\n{g.shape[0]}x{g.shape[1]}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=list(axes), shrink=0.8, label="tap paths (log)")
    return fig


def plot_crf_cost(cost: Sequence[Mapping], slopes: Mapping[str, float], *,
                  figsize: tuple[float, float] = (3.6, 2.6)) -> Figure:
    """Seconds per image of each CRF backend against pixels, log-log, one line per backend.

    ``cost`` holds :func:`segbook.experiments.deeplab_crf.crf_cost_scaling`'s rows (``"backend"``,
    ``"pixels"``, ``"seconds"``); ``slopes`` is ``{backend: fitted log-log slope}``
    (:func:`~segbook.experiments.deeplab_crf.cost_slopes`), one line per key, its slope in the legend.
    """
    if not slopes:
        raise ValueError("slopes must name at least one backend")
    fig, ax = plt.subplots(figsize=figsize)
    pixels = set()
    for b in slopes:
        rs = [r for r in cost if r["backend"] == b]
        if not rs:
            raise ValueError(f"cost has no rows for backend {b!r}")
        pixels.update(r["pixels"] for r in rs)
        ax.loglog([r["pixels"] for r in rs], [r["seconds"] for r in rs], "o-", label=f"{b} (slope {slopes[b]:.2f})")
    # ticks at the measured sizes only: matplotlib's log minor labels (2x10^3, 3x10^3, 4x10^3) collide
    ticks = sorted(pixels)
    ax.set_xticks(ticks, [f"{p:,}" for p in ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("pixels N")
    ax.set_ylabel("seconds per image")
    ax.legend(fontsize=8)
    return fig
