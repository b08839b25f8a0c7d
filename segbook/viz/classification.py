"""Figures for chapter 1 (classification backbones).

Each function takes a result from the chapter's study (or plain tensors) and returns the matplotlib
figure, so the chapter cell is one call.
"""
from __future__ import annotations

import math
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np

from .core import ArrayLike, _np, to_image

__all__: list[str] = ["show_class_samples", "plot_densenet_widths", "plot_excitation_scores"]


def show_class_samples(images: ArrayLike, labels: ArrayLike, classes: Sequence[str], *, ncols: int = 5,
                       title: str = "", figsize: Sequence[float] = (6.4, 6.0)):
    """A grid of classification images, each titled with its class name.

    ``images [N, 3, H, W]`` in [0, 1] and ``labels [N]`` (indices into ``classes``), drawn pixel for
    pixel (no smoothing) in rows of ``ncols`` (5 stays legible on a phone); panels past ``N`` are
    left blank. Returns the figure.
    """
    imgs, labs = _np(images), _np(labels).astype(int).reshape(-1)
    if imgs.ndim != 4 or imgs.shape[0] == 0 or imgs.shape[0] != labs.shape[0]:
        raise ValueError(f"expected images [N, 3, H, W] and labels [N] with N >= 1, got shapes "
                         f"{imgs.shape} and {_np(labels).shape}")
    if labs.min() < 0 or labs.max() >= len(classes):
        raise ValueError(f"labels must index classes (0..{len(classes) - 1}), got {labs.min()}..{labs.max()}")
    if isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1:
        raise ValueError(f"ncols must be a positive int, got {ncols!r}")
    nrows = math.ceil(len(imgs) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=tuple(figsize), squeeze=False)
    for ax in axes.flat[len(imgs):]:
        ax.axis("off")
    for ax, img, lab in zip(axes.flat, imgs, labs):
        ax.imshow(to_image(img), interpolation="nearest")
        ax.set_title(classes[lab], fontsize=11)
        ax.axis("off")
    if title:
        fig.suptitle(title)
    return fig


def plot_densenet_widths(model, *, xlabel: str = "position in the network",
                         figsize: Sequence[float] = (6.5, 2.8)):
    """The channels entering each layer of a DenseNet, one bar per position.

    ``model`` is a :class:`~segbook.models.densenet.DenseNet` (e.g. ``densenet_bc(depth=40,
    growth_rate=12)``): for each dense block, the input width of every layer (a ramp of slope ``k``,
    the growth rate), then the block's output width, then the width after the transition that
    follows it (the compression). Colours tell the three apart. Returns the figure.
    """
    blocks, transitions = getattr(model, "blocks", None), getattr(model, "transitions", None)
    if blocks is None or transitions is None:
        raise TypeError(f"expected a DenseNet (with .blocks and .transitions), got {type(model).__name__}")
    widths, kinds = [], []
    for b, block in enumerate(blocks):
        widths += [layer.in_channels for layer in block.layers] + [block.out_channels]
        kinds += ["layer"] * len(block.layers) + ["block output"]
        if b < len(transitions):
            widths.append(transitions[b].out_channels)
            kinds.append("after transition")
    colors = {"layer": "C0", "block output": "C1", "after transition": "C2"}
    fig, ax = plt.subplots(figsize=tuple(figsize))
    ax.bar(np.arange(len(widths)), widths, color=[colors[k] for k in kinds])
    for name, c in colors.items():  # legend entries
        ax.bar([0], [0], color=c, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("channels")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return fig


def plot_excitation_scores(scores: ArrayLike, labels: ArrayLike, classes: Sequence[str], *,
                           show: Sequence[int] = (0, 1, 2, 7), figsize: Sequence[float] = (8, 3)):
    """Squeeze-and-excitation gates of one block over a batch, and their class means.

    ``scores [N, C]`` (the gate of each channel for each image, in [0, 1]) and ``labels [N]``.
    Left: the scores as an image, channels by images sorted by class (stable), with a colour bar.
    Right: the mean score per channel of each class in ``show`` (indices into ``classes``).
    Returns the figure.
    """
    s, y = _np(scores).astype(float), _np(labels).astype(int).reshape(-1)
    if s.ndim != 2 or s.shape[0] != y.shape[0] or s.shape[0] == 0:
        raise ValueError(f"expected scores [N, C] and labels [N] with N >= 1, got shapes {s.shape} and "
                         f"{_np(labels).shape}")
    bad = [c for c in show if not 0 <= c < len(classes) or not (y == c).any()]
    if bad:
        raise ValueError(f"classes {bad} of show are not among the labels (or not in classes)")
    order = np.argsort(y, kind="stable")
    fig, axes = plt.subplots(1, 2, figsize=tuple(figsize), gridspec_kw={"width_ratios": [3, 2]})
    im = axes[0].imshow(s[order].T, aspect="auto", cmap="viridis", vmin=0, vmax=1)
    axes[0].set_xlabel("validation image (sorted by class)")
    axes[0].set_ylabel("channel of the last block")
    fig.colorbar(im, ax=axes[0], label="excitation score")
    for c in show:
        axes[1].plot(s[y == c].mean(0), lw=1, label=classes[c])
    axes[1].set_xlabel("channel")
    axes[1].set_ylabel("mean score")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return fig
