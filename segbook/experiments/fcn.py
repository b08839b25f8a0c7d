"""Chapter 2 (fully convolutional networks): the paper's numbers, staged training, resolution ceilings.

* :data:`PAPER_VOC2011_VAL`: Long et al. (2015), Table 2, for the chapter's results table.
* :func:`init_from_coarser`: the paper's staged training. FCN-16s starts from a trained FCN-32s
  (its new ``score_pool4`` is zero, so it starts as the coarser net) and FCN-8s from FCN-16s.
* :func:`ceiling_labels`: the ground truth seen through a stride-``s`` score map. The one-hot
  ground truth is averaged over each ``s x s`` cell (the share of each class in it), upsampled
  bilinearly as FCN upsamples its scores, and arg-maxed. Scoring those labels against the ground
  truth says what the stride alone allows on the data, with no training at all. It is a reference,
  not a bound: a trained net scores logits, not shares, and can place an edge anywhere between two
  cell centres, so it can beat it (chapter 2's FCN-32s does). The downsampled-ground-truth oracle
  is from the journal version of FCN (Shelhamer, Long and Darrell, TPAMI 2017).
* :func:`shift_agreement`: how far a net's labels follow a shift of its input, the surroundings
  kept the same. A net whose convolutions and poolings have a total stride ``s`` is equivariant to
  shifts by multiples of ``s`` only; other shifts move the input against its pooling grid.

The chapter's experiments, each one call from its cell:

* :func:`seed_scenes`: one seed's training and validation scenes (the chapter's own for ``rt.seed``).
* :func:`to_pixel_major`: a dense weight over a flattened map, reordered pixel-major, where
  ``I_HW (x) W`` shows (channel-major it is ``W (x) I_HW``).
* :func:`window_recall`, :func:`shape_class_groups`, :func:`group_mean`: scoring the convolutionalised
  crop classifier's heat map against each window's centre label, per class and per group of shapes.
* :func:`backbone_stages`: stride, channels, map size and measured receptive field of each pooling stage.
* :func:`staged_training`: FCN-32s, FCN-16s from it, FCN-8s from that, and the equal-steps FCN-32s
  control, over seeds (:class:`StagedTraining`).
* :func:`tiled_evaluation`: a net on single scenes and on mosaics of them, with and without the
  pixels next to the scenes' edges.
* :func:`centre_mosaics`: ``g x g`` mosaics of scenes whose centre scene has neighbours all round.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Dataset, TensorDataset

from ..analysis import empirical_receptive_field
from ..checks import positive_int
from ..constants import IGNORE_INDEX
from ..data import chapter_datasets, make_loader, take, tile_scenes, window_centre_labels
from ..metrics import SegmentationMetrics, confusion_matrix
from ..models.fcn import fcn8s, fcn16s, fcn32s
from ..train import evaluate, fit

__all__ = ["PAPER_VOC2011_VAL", "init_from_coarser", "ceiling_labels", "ceiling_metrics", "labelled_shape_share",
           "shift_agreement", "seed_scenes",
           "to_pixel_major", "window_recall", "FILLED_SHAPES", "THIN_SHAPES", "shape_class_groups", "group_mean",
           "backbone_stages", "StagedTraining", "staged_training", "tiled_evaluation", "centre_mosaics"]

# Long, Shelhamer & Darrell, "Fully convolutional networks for semantic segmentation", CVPR 2015,
# Table 2: PASCAL VOC 2011 segval (a subset of val), in percent.
PAPER_VOC2011_VAL = {
    "FCN-32s": {"pixel_acc": 89.1, "mean_acc": 73.3, "miou": 59.4, "fw_iou": 81.4},
    "FCN-16s": {"pixel_acc": 90.0, "mean_acc": 75.7, "miou": 62.4, "fw_iou": 83.0},
    "FCN-8s": {"pixel_acc": 90.3, "mean_acc": 75.9, "miou": 62.7, "fw_iou": 83.2},
}


def init_from_coarser(finer: nn.Module, coarser: nn.Module) -> list[str]:
    """Copy every parameter and buffer of ``coarser`` into ``finer``, in place.

    For FCNs built with the same backbone and head (e.g. ``fcn16s(width=8)`` from
    ``fcn32s(width=8)``): the backbone, ``fc6``/``fc7``/``score_fr`` and any skip the coarser
    net already has are copied; the finer net's new skip layers keep their initialisation
    (zero scores and bilinear 2x upsampling), so before any training the finer net predicts what
    the coarser one predicts, up to the difference between one ``32x`` and a ``2x`` then ``16x``
    bilinear upsampling.

    Returns:
        The names of ``finer``'s state entries that ``coarser`` does not have (the new skip's).

    Raises:
        ValueError: when ``coarser`` has an entry ``finer`` lacks, or one of another shape (not
        the same architecture up to the extra skips).
    """
    target = finer.state_dict()
    source = coarser.state_dict()
    extra = sorted(set(source) - set(target))
    if extra:
        raise ValueError(f"the coarser net has entries the finer one lacks: {extra[:5]}; build both with the "
                         "same backbone and head (same width/depths/hidden)")
    wrong = [(k, tuple(v.shape), tuple(target[k].shape)) for k, v in source.items() if v.shape != target[k].shape]
    if wrong:
        raise ValueError(f"shapes differ (name, coarser, finer): {wrong[:3]}; build both with the same width/depths")
    finer.load_state_dict(source, strict=False)
    return sorted(set(target) - set(source))


def ceiling_labels(masks: torch.Tensor, stride: int, num_classes: int, *, ignore_index: int = 255) -> torch.Tensor:
    """Labels from the ground truth seen through a stride-``stride`` score map.

    Shapes: ``masks [N, H, W]`` int64 -> ``[N, H, W]`` int64. The one-hot ground truth
    ``[N, K, H, W]`` is average-pooled over ``stride x stride`` cells (``ceil_mode``: partial cells
    at the border, averaged over their pixels, as FCN's ceil-mode pooling sees them), upsampled
    bilinearly (``align_corners=False``) to ``ceil(H / s) s`` rows and cropped to ``H``, as
    :class:`segbook.models.fcn.FCN` upsamples its scores, then arg-maxed. Ignored pixels
    (``ignore_index``) count for no class.
    """
    if not isinstance(masks, torch.Tensor) or masks.dim() != 3 or masks.is_floating_point():
        raise ValueError(f"masks must be an integer tensor [N, H, W], got {getattr(masks, 'shape', type(masks))}")
    stride = positive_int(stride, "stride")
    num_classes = positive_int(num_classes, "num_classes")
    valid = masks != ignore_index
    if bool(((masks < 0) | (masks >= num_classes))[valid].any()):
        raise ValueError(f"mask labels must lie in [0, {num_classes}) or equal ignore_index={ignore_index}")
    onehot = F.one_hot(torch.where(valid, masks, 0), num_classes).permute(0, 3, 1, 2).float()
    onehot = onehot * valid[:, None].float()
    height, width = masks.shape[-2:]
    cells = F.avg_pool2d(onehot, stride, stride, ceil_mode=True)
    h, w = cells.shape[-2:]
    up = F.interpolate(cells, size=(h * stride, w * stride), mode="bilinear", align_corners=False)
    return up[..., :height, :width].argmax(1)


def ceiling_metrics(masks: torch.Tensor, stride: int, num_classes: int, *, ignore_index: int = IGNORE_INDEX) -> dict:
    """The scores of :func:`ceiling_labels` against the ground truth itself: what a perfect score map
    at stride ``stride`` would reach, with no network (the data's ceiling for that stride).

    Shapes: ``masks [N, H, W]`` int64. Returns :meth:`segbook.metrics.SegmentationMetrics.compute`'s
    dict (``miou``, ``pixel_acc``, ``boundary_f1``, ``iou_per_class``, ...).
    """
    metrics = SegmentationMetrics(num_classes, ignore_index=ignore_index)
    metrics.update(ceiling_labels(masks, stride, num_classes, ignore_index=ignore_index), masks)
    return metrics.compute()


def labelled_shape_share(labels: torch.Tensor, masks: torch.Tensor, *, ignore_index: int = IGNORE_INDEX) -> float:
    """The share of the labelled pixels (``masks != ignore_index``) whose ``labels`` name some shape,
    i.e. any class but background (0).

    Shapes: ``labels`` and ``masks`` ``[N, H, W]`` int64 (``labels`` a prediction, or ``masks`` itself
    for the true share). The FCN chapter reads it as "how much of the image a net calls foreground".
    """
    if not isinstance(labels, torch.Tensor) or not isinstance(masks, torch.Tensor) \
            or labels.shape != masks.shape or labels.dim() != 3:
        raise ValueError(f"labels and masks must be tensors of one shape [N, H, W], got "
                         f"{tuple(getattr(labels, 'shape', ()))} and {tuple(getattr(masks, 'shape', ()))}")
    labelled = masks != ignore_index
    if not bool(labelled.any()):
        raise ValueError(f"no labelled pixel: every mask pixel equals ignore_index={ignore_index}")
    return (labels[labelled] > 0).float().mean().item()


@torch.inference_mode()
def shift_agreement(model: nn.Module, images: torch.Tensor, offsets, *, pad: int = 0,
                    region: tuple[int, int, int, int] | None = None, masks: torch.Tensor | None = None,
                    num_classes: int | None = None, stride: int | None = None, fill: float = 0.0,
                    batch_size: int = 16) -> list[dict]:
    """A net's labels of the same images shifted by each offset, against the unshifted labels.

    Each image is padded with ``fill`` by ``pad + o`` pixels above and to the left and ``pad`` below
    and to the right, labelled, and the labels of ``region`` (in the image's own coordinates) are
    compared with those at offset 0. The content and its surroundings are the same for every ``o``;
    only the position against the net's pooling grid changes (the grid starts at the padded
    canvas's top-left corner). Convolutions and poolings commute with shifts by multiples of the
    net's total stride ``s``: when the canvas border is beyond the receptive field's reach from
    ``region``, ``o = k s`` gives the offset-0 labels exactly and any other ``o`` moves the image
    to another *phase* of the grid. Give the images a natural surround (e.g. a mosaic of scenes with
    ``region`` its centre scene) to measure phase in a context the net knows.

    Shapes: ``images [N, 3, H, W]`` float, ``masks [N, H, W]`` int64 (optional), ``region``
    ``(top, left, height, width)`` inside ``H x W`` (default: the whole image). ``model`` maps
    ``[n, 3, h, w] -> [n, K, h, w]`` logits.

    Returns:
        One dict per offset: ``offset``, ``phase`` (``o mod stride``, when ``stride`` is given),
        ``agreement`` (share of ``region``'s pixels labelled as at offset 0) and, with ``masks``
        and ``num_classes``, ``miou`` of ``region``'s labels against the ground truth.
    """
    from ..metrics import SegmentationMetrics

    if not isinstance(images, torch.Tensor) or images.dim() != 4 or not images.is_floating_point():
        raise ValueError(f"images must be a float tensor [N, C, H, W], got {getattr(images, 'shape', type(images))}")
    if not isinstance(pad, int) or pad < 0:
        raise ValueError(f"pad must be an int >= 0 (canvas pixels around each image), got {pad!r}")
    offsets = [int(o) for o in offsets]
    if any(o < 0 for o in offsets):
        raise ValueError(f"offsets must be >= 0, got {offsets}")
    height, width = images.shape[-2:]
    top, left, h, w = region if region is not None else (0, 0, height, width)
    if min(top, left) < 0 or h < 1 or w < 1 or top + h > height or left + w > width:
        raise ValueError(f"region (top, left, height, width) = {region} must lie inside the {height}x{width} images")
    if (masks is None) != (num_classes is None):
        raise ValueError("give masks and num_classes together (or neither)")
    if masks is not None and tuple(masks.shape) != (images.shape[0], height, width):
        raise ValueError(f"masks must be [N, H, W] = {(images.shape[0], height, width)}, got {tuple(masks.shape)}")
    batch_size = positive_int(batch_size, "batch_size")
    was_training = model.training
    model.eval()

    def labels_at(o: int) -> torch.Tensor:
        out = []
        for chunk in images.split(batch_size):
            canvas = F.pad(chunk, (pad + o, pad, pad + o, pad), value=fill)
            y, x = pad + o + top, pad + o + left
            out.append(model(canvas).argmax(1)[:, y:y + h, x:x + w].cpu())
        return torch.cat(out)

    try:
        reference = labels_at(0)
        truth = masks[:, top:top + h, left:left + w].cpu() if masks is not None else None
        rows = []
        for o in offsets:
            labels = reference if o == 0 else labels_at(o)
            row = {"offset": o}
            if stride is not None:
                row["phase"] = o % positive_int(stride, "stride")
            row["agreement"] = (labels == reference).float().mean().item()
            if truth is not None:
                m = SegmentationMetrics(num_classes)
                m.update(labels, truth)
                row["miou"] = m.compute()["miou"]
            rows.append(row)
    finally:
        model.train(was_training)
    return rows


# ----------------------------------------------------------------------------------------------
# The chapter's experiments
# ----------------------------------------------------------------------------------------------
def seed_scenes(rt: Any, seed: int, *, size: int, n_train: int, n_val: int,
                first: Optional[tuple[Dataset, Dataset]] = None) -> tuple[Dataset, Dataset]:
    """Training and validation scenes of one seed of a comparison: new scenes, same task.

    ``chapter_datasets(rt, task="segmentation", ...)`` drawn with ``seed``, as a run with
    ``rt.seed = seed`` draws them; for ``seed == rt.seed``, ``first`` (the chapter's own scenes,
    already rendered) when given, so they are not rendered twice.
    """
    if first is not None and seed == rt.seed:
        return first
    train, val, _ = chapter_datasets(rt, task="segmentation", size=size, n_train=n_train, n_val=n_val, seed=seed)
    return train, val


def to_pixel_major(weight: torch.Tensor, out_channels: int, in_channels: int) -> torch.Tensor:
    """A dense weight over a flattened map, rows and columns reordered from channel-major to pixel-major.

    Shapes: ``weight [C' P, C P]`` -> ``[C' P, C P]``, ``P`` pixels. PyTorch's ``x.flatten(1)`` of
    ``[N, C, H, W]`` puts entry ``(c, p)`` at ``c P + p`` (channel-major); pixel-major puts it at
    ``p C + c``. The affine layer equal to a 1x1 convolution with weight ``W`` is ``W (x) I_P``
    channel-major, and this reordering turns it into ``I_P (x) W``: one ``W`` per pixel on the diagonal.
    """
    out_channels = positive_int(out_channels, "out_channels")
    in_channels = positive_int(in_channels, "in_channels")
    if weight.dim() != 2 or weight.shape[0] % out_channels or weight.shape[1] % in_channels:
        raise ValueError(f"weight must be [out_channels P, in_channels P] = [{out_channels} P, {in_channels} P], "
                         f"got {tuple(weight.shape)}")
    pixels = weight.shape[0] // out_channels
    if weight.shape[1] != in_channels * pixels:
        raise ValueError(f"weight {tuple(weight.shape)} has {pixels} pixels in its rows but "
                         f"{weight.shape[1] / in_channels:g} in its columns")
    rows = torch.arange(out_channels * pixels).view(out_channels, pixels).t().flatten()
    cols = torch.arange(in_channels * pixels).view(in_channels, pixels).t().flatten()
    return weight[rows][:, cols]


def window_recall(heat: torch.Tensor, masks: torch.Tensor, window: int, stride: int, *,
                  ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Per-class recall of a heat map's cells against the label of each window's centre pixel.

    Shapes: ``heat [N, K, h, w]`` scores of a convolutionalised ``window``-pixel crop classifier at
    ``stride``, ``masks [N, H, W]`` int64 -> ``[K]`` float: for each class, the share of the cells
    whose centre pixel has it that the heat map's arg-max names it (0 for a class no cell has).
    Cells with an ignored centre count for nothing.
    """
    if heat.dim() != 4 or masks.dim() != 3:
        raise ValueError(f"expected heat [N, K, h, w] and masks [N, H, W], got {tuple(heat.shape)} and "
                         f"{tuple(masks.shape)}")
    cells = window_centre_labels(masks, window, stride)
    if cells.shape != heat.shape[:1] + heat.shape[2:]:
        raise ValueError(f"heat map {tuple(heat.shape[2:])} does not match the {tuple(cells.shape[1:])} windows of "
                         f"{window} px at stride {stride} on {tuple(masks.shape[1:])} masks")
    cm = confusion_matrix(heat.argmax(1), cells, heat.shape[1], ignore_index=ignore_index)
    return cm.diag() / cm.sum(1).clamp(min=1)


FILLED_SHAPES = ("disc", "square", "triangle")
"""The procedural scenes' filled shape classes."""
THIN_SHAPES = ("ring", "line")
"""The procedural scenes' thin-stroke classes."""


def shape_class_groups(classes: Sequence[str]) -> tuple[list[int], list[int]]:
    """The indices of the filled shapes and of the thin strokes among ``classes`` (empty on real data)."""
    return ([classes.index(c) for c in FILLED_SHAPES if c in classes],
            [classes.index(c) for c in THIN_SHAPES if c in classes])


def group_mean(values: torch.Tensor, group: Sequence[int], fmt: str) -> str:
    """The mean of ``values[group]`` formatted with ``fmt``; a dash where the group is empty (the data has none)."""
    return format(values[list(group)].mean().item(), fmt) if group else "\u2014"


def backbone_stages(backbone: nn.Module, size: int, *, probe: int = 320) -> list[dict]:
    """One row per pooling stage of a backbone: stride, channels, map side and measured receptive field.

    ``backbone`` has ``stages`` (an ordered ``ModuleDict`` applied in turn), ``strides`` and
    ``channels`` by stage name (:class:`segbook.models.backbones.VGGBackbone`). The map side is
    ``ceil(size / stride)`` for a ``size x size`` input; the receptive field is
    :func:`segbook.analysis.empirical_receptive_field` of the stages up to that one, on a
    ``probe x probe`` input (larger than the deepest field).
    """
    size = positive_int(size, "size")
    probe = positive_int(probe, "probe")
    stages = list(backbone.stages.items())
    rows = []
    for i, (name, _) in enumerate(stages):
        prefix = nn.Sequential(*[s for _, s in stages[: i + 1]])
        stride = backbone.strides[name]
        rows.append({
            "layer": name,
            "stride": stride,
            "channels": backbone.channels[name],
            f"map at {size}x{size}": f"{-(-size // stride)}x{-(-size // stride)}",
            "receptive field (px)": empirical_receptive_field(prefix, (1, 3, probe, probe)),
        })
    return rows


@dataclass
class StagedTraining:
    """What :func:`staged_training` returns.

    A run is ``{"model", "hist", "val", "seed"}``: the trained model (eval mode), its
    :class:`segbook.train.History`, ``hist.final`` (the validation metrics after the last epoch) and
    its seed.

    Attributes:
        runs: ``{"FCN-32s" | "FCN-16s" | "FCN-8s": [one run per seed]}``.
        equal: FCN-32s trained on through the later stages' epochs with no skip added (the steps
            control), one run per seed, with ``"seconds"``: its two extra stages' training time.
        seed_val: ``{seed: (images [N, 3, S, S], masks [N, S, S])}`` of each seed's validation scenes.
        new_layers: ``{"FCN-16s" | "FCN-8s": state names}`` the staged initialisation left untouched
            (the new skip's; the last seed's).
    """

    runs: dict[str, list[dict]]
    equal: list[dict]
    seed_val: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    new_layers: dict[str, list[str]] = field(default_factory=dict)


def staged_training(data: Callable[[int], tuple[Dataset, Dataset]], seeds: Sequence[int], *, num_classes: int,
                    width: int, stage_epochs: Sequence[int], lr: float, batch_size: int,
                    device: Any = None) -> StagedTraining:
    """The paper's staged training over seeds, with the equal-steps control.

    Per seed ``s``: its scenes ``data(s) = (train, val)``, initial weights drawn after
    ``torch.manual_seed(s)`` and batch order ``s``, as in a chapter run with ``rt.seed = s``.
    FCN-32s trains ``stage_epochs[0]`` epochs at ``lr``; FCN-16s starts from it
    (:func:`init_from_coarser`) and trains ``stage_epochs[1]`` epochs at ``lr / 2``, FCN-8s from that
    for ``stage_epochs[2]``. The control: a copy of the trained FCN-32s trained on for the same two
    later stages (same epochs, learning rate, scenes and batch order) with no skip added. Every stage
    is one :func:`segbook.train.fit` (batches of ``batch_size``, channels-last: faster on CPUs too)
    with validation on ``val`` after each epoch.
    """
    num_classes = positive_int(num_classes, "num_classes")
    width = positive_int(width, "width")
    batch_size = positive_int(batch_size, "batch_size")
    stage_epochs = tuple(positive_int(e, "stage_epochs") for e in stage_epochs)
    if len(stage_epochs) != 3:
        raise ValueError(f"stage_epochs must give FCN-32s's, FCN-16s's and FCN-8s's epochs, got {stage_epochs}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds is empty: nothing to train")

    def train_stage(model, scenes, epochs, stage_lr, name, seed):
        train_data, val_data = scenes
        loader = make_loader(train_data, batch_size, shuffle=True, seed=seed)
        hist = fit(model, loader, make_loader(val_data, 64), task="segmentation", num_classes=num_classes,
                   epochs=epochs, lr=stage_lr, device=device, seed=seed, desc=f"{name} (seed {seed})",
                   channels_last=True)
        return {"model": model.eval(), "hist": hist, "val": hist.final, "seed": seed}

    result = StagedTraining(runs={"FCN-32s": [], "FCN-16s": [], "FCN-8s": []}, equal=[])
    runs = result.runs
    for s in seeds:
        scenes = data(s)
        result.seed_val[s] = take(scenes[1])
        torch.manual_seed(s)
        runs["FCN-32s"].append(train_stage(fcn32s(num_classes=num_classes, width=width), scenes,
                                           stage_epochs[0], lr, "FCN-32s", s))
        for name, coarse, build, epochs in (("FCN-16s", "FCN-32s", fcn16s, stage_epochs[1]),
                                            ("FCN-8s", "FCN-16s", fcn8s, stage_epochs[2])):
            model = build(num_classes=num_classes, width=width)
            result.new_layers[name] = init_from_coarser(model, runs[coarse][-1]["model"])
            runs[name].append(train_stage(model, scenes, epochs, lr / 2, name, s))
        control = copy.deepcopy(runs["FCN-32s"][-1]["model"])
        stage_runs = [train_stage(control, scenes, epochs, lr / 2, "FCN-32s, same steps", s)
                      for epochs in stage_epochs[1:]]
        result.equal.append({**stage_runs[-1], "seconds": sum(r["hist"].total_seconds for r in stage_runs)})
    return result


def tiled_evaluation(model: nn.Module, images: torch.Tensor, masks: torch.Tensor, *, num_classes: int,
                     band: int, ignore_index: int = IGNORE_INDEX,
                     tilings: Sequence[tuple[int, int]] = ((1, 1), (1, 2), (2, 2)),
                     batch_size: int = 32) -> list[dict]:
    """A segmentation net on single scenes and on ``rows x cols`` mosaics of them (:func:`tile_scenes`).

    Shapes: ``images [N, 3, H, W]``, ``masks [N, H, W]``. One row per tiling: ``input`` and
    ``output`` sizes (``"HxW"``), ``images`` (mosaics), ``mIoU`` and ``boundary F1`` of
    :func:`segbook.train.evaluate`, and ``"mIoU, {band} px at scene edges ignored"``: the mIoU
    with the pixels within ``band`` px of every scene's edge set to ``ignore_index``, so the seams
    (and the mosaic's outer edge) count for nothing.
    """
    num_classes = positive_int(num_classes, "num_classes")
    band = positive_int(band, "band")
    batch_size = positive_int(batch_size, "batch_size")
    if images.dim() != 4 or masks.dim() != 3 or images.shape[0] != masks.shape[0]:
        raise ValueError(f"expected images [N, C, H, W] and masks [N, H, W], got {tuple(images.shape)} "
                         f"and {tuple(masks.shape)}")
    if 2 * band >= min(masks.shape[-2:]):
        raise ValueError(f"band {band} leaves nothing of the {tuple(masks.shape[-2:])} scenes")
    inner_masks = masks.clone()
    for edge in (np.s_[:, :band], np.s_[:, -band:], np.s_[:, :, :band], np.s_[:, :, -band:]):
        inner_masks[edge] = ignore_index
    inner_key = f"mIoU, {band} px at scene edges ignored"
    rows = []
    for rows_, cols_ in tilings:
        imgs, msks = tile_scenes(images, masks, rows_, cols_)
        _, inner = tile_scenes(images, inner_masks, rows_, cols_)
        v = evaluate(model, make_loader(TensorDataset(imgs, msks), batch_size), task="segmentation",
                     num_classes=num_classes, ignore_index=ignore_index)
        v_inner = evaluate(model, make_loader(TensorDataset(imgs, inner), batch_size), task="segmentation",
                           num_classes=num_classes, ignore_index=ignore_index)
        with torch.inference_mode():
            out_shape = tuple(model(imgs[:1]).shape[-2:])
        rows.append({
            "input": f"{imgs.shape[-2]}x{imgs.shape[-1]}",
            "output": f"{out_shape[0]}x{out_shape[1]}",
            "images": imgs.shape[0],
            "mIoU": v["miou"],
            "boundary F1": v["boundary_f1"],
            inner_key: v_inner["miou"],
        })
    return rows


def centre_mosaics(images: torch.Tensor, masks: torch.Tensor, *, grid: int = 3,
                   max_mosaics: int = 16) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Up to ``max_mosaics`` ``grid x grid`` mosaics of consecutive scenes: a centre scene with neighbours all round.

    Shapes: ``images [N, 3, H, W]``, ``masks [N, H, W]`` -> ``mosaics [M, 3, g H, g W]``,
    ``masks [M, g H, g W]`` and the grid ``g`` used: ``grid``, or 1 (the scenes themselves) when
    fewer than ``grid ** 2`` scenes are given (a small real validation split).
    """
    grid = positive_int(grid, "grid")
    max_mosaics = positive_int(max_mosaics, "max_mosaics")
    if images.dim() != 4 or masks.dim() != 3 or images.shape[0] != masks.shape[0] or images.shape[0] == 0:
        raise ValueError(f"expected images [N, C, H, W] and masks [N, H, W] with N >= 1, got {tuple(images.shape)} "
                         f"and {tuple(masks.shape)}")
    g = grid if len(images) >= grid ** 2 else 1
    n = min(max_mosaics, len(images) // g ** 2)
    mosaics, mosaic_masks = tile_scenes(images[:n * g ** 2], masks[:n * g ** 2], g, g)
    return mosaics, mosaic_masks, g
