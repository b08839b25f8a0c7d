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
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checks import positive_int

__all__ = ["PAPER_VOC2011_VAL", "init_from_coarser", "ceiling_labels", "shift_agreement"]

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
