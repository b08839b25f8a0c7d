"""Figures for chapter 2 (FCN).

Each function takes a result from the chapter's study (or plain tensors) and returns the matplotlib
figure, so the chapter cell is one call. All of them are grids of :func:`segbook.viz.core.show_maps`.

* :func:`heat_map_figure`: a convolutionalised classifier's heat map, one panel per class.
* :func:`stage_channels_figure`: the channels of each backbone stage that follow the objects most
  closely (:func:`segbook.analysis.top_channels`), each at its own resolution.
* :func:`decoder_stages_figure`: one class's probability and the arg-max labels at each stage of an
  FCN's decoder (stride 32, 16, 8, the output).
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import torch

from ..analysis import top_channels
from ..checks import positive_int
from .core import colorize, show_maps

__all__: list[str] = ["heat_map_figure", "stage_channels_figure", "decoder_stages_figure"]


def _check_image_mask(image: torch.Tensor, mask: torch.Tensor) -> None:
    if image.dim() != 3 or mask.dim() != 2 or tuple(image.shape[-2:]) != tuple(mask.shape):
        raise ValueError(f"expected image [3, H, W] and mask [H, W] of the same size, got {tuple(image.shape)} "
                         f"and {tuple(mask.shape)}")


def heat_map_figure(image: torch.Tensor, mask: torch.Tensor, probs: torch.Tensor, class_names: Sequence[str], *,
                    title: Optional[str] = None, ncols: int = 4):
    """A scene, its ground truth and a heat map's probability of each class, one panel each.

    Shapes: ``image [3, H, W]`` in [0, 1], ``mask [H, W]`` int64, ``probs [K, h, w]`` (softmax of a
    heat map, drawn at its own resolution on a shared 0-1 colour scale), ``K = len(class_names)``.

    Returns:
        The ``Figure`` (``2 + K`` panels, ``ncols`` a row).
    """
    _check_image_mask(image, mask)
    if probs.dim() != 3 or probs.shape[0] != len(class_names):
        raise ValueError(f"probs must be [K, h, w] with K = {len(class_names)} classes, got {tuple(probs.shape)}")
    panels = {f"image ({image.shape[-2]}x{image.shape[-1]})": image, "ground truth": colorize(mask)}
    panels.update({f"P({name})": probs[k] for k, name in enumerate(class_names)})
    return show_maps(panels, ncols=positive_int(ncols, "ncols"), vrange=(0, 1), suptitle=title)


def stage_channels_figure(features: Mapping[str, torch.Tensor], foreground: torch.Tensor,
                          lead: Mapping[str, torch.Tensor], *, per_stage: int = 3, panel_size: float = 1.7):
    """One row per backbone stage: a lead panel, then the stage's ``per_stage`` channels closest to the objects.

    Shapes: ``features {stage: [C, h, w]}`` (one scene's maps, each drawn at its own resolution with its
    own colour range), ``foreground [H, W]`` (0/1: the objects), ``lead {label: map}`` with one panel
    per stage (the image, its ground truth, a prediction: ``[3, H, W]``, ``[H, W, 3]`` or ``[H, W]``).
    The channels are :func:`segbook.analysis.top_channels` (largest absolute correlation with the
    foreground, so a channel may also go dark on the objects); their titles give the stage, channel
    and map size.

    Returns:
        The ``Figure`` (``len(features)`` rows of ``1 + per_stage`` panels).
    """
    per_stage = positive_int(per_stage, "per_stage")
    if not features or len(lead) != len(features):
        raise ValueError(f"give one lead panel per stage: {len(lead)} lead panels for {len(features)} stages")
    panels = {}
    for (stage, f), (label, extra) in zip(features.items(), lead.items()):
        if f.dim() != 3:
            raise ValueError(f"features[{stage!r}] must be [C, h, w], got {tuple(f.shape)}")
        panels[label] = extra
        for c in top_channels(f, foreground, per_stage):
            panels[f"{stage} ch {c} ({f.shape[-2]}x{f.shape[-1]})"] = f[c]
    return show_maps(panels, ncols=1 + per_stage, panel_size=panel_size)


def decoder_stages_figure(image: torch.Tensor, mask: torch.Tensor, scores: Mapping[str, torch.Tensor], k: int,
                          class_names: Sequence[str], *, panel_size: float = 1.6):
    """One class's probability (top row) and the arg-max labels (bottom row) at each stage of a decoder.

    Shapes: ``image [3, H, W]``, ``mask [H, W]`` int64, ``scores {label: [K, h, w]}`` logits of one
    scene at each stage (e.g. ``"stride 32"``, ..., ``"output"``), each drawn at its own resolution;
    the probabilities share a 0-1 colour scale. ``k`` is the class shown.

    Returns:
        The ``Figure``: the image and ``P(class)`` per stage, then the ground truth and the labels per stage.
    """
    _check_image_mask(image, mask)
    if not scores:
        raise ValueError("scores is empty: give {label: [K, h, w]} for at least one stage")
    num_classes = len(class_names)
    if not 0 <= k < num_classes:
        raise ValueError(f"k must be a class index in [0, {num_classes}), got {k}")
    for label, s in scores.items():
        if s.dim() != 3 or s.shape[0] != num_classes:
            raise ValueError(f"scores[{label!r}] must be [K, h, w] with K = {num_classes}, got {tuple(s.shape)}")
    panels = {"image": image}
    panels.update({f"P({class_names[k]}) {label}": s.softmax(0)[k] for label, s in scores.items()})
    panels["ground truth"] = colorize(mask)
    panels.update({f"labels {label}": colorize(s.argmax(0)) for label, s in scores.items()})
    return show_maps(panels, ncols=1 + len(scores), panel_size=panel_size, vrange=(0, 1))
