"""Segmentation metrics: confusion matrix, IoU, mIoU, pixel accuracy and boundary F1.

All metrics start from integer label maps (``pred`` and ``target`` of shape ``[N, H, W]`` or
``[H, W]``); pixels whose target equals ``ignore_index`` count nowhere.

Confusion matrix ``M`` (rows: true class, columns: predicted class)::

    IoU_c   = M_cc / (sum_j M_cj + sum_i M_ic - M_cc)       (nan when class c is absent from both)
    mIoU    = mean of IoU_c over classes that are not nan
    PA      = trace(M) / sum(M)

Boundary F1 (the BF score of Csurka et al. 2013): for each class, take the boundary pixels of the
predicted and of the true region; a predicted boundary pixel is correct when a true boundary pixel
lies within ``tolerance`` pixels (chessboard distance), and vice versa for recall. Counts are
summed over the whole dataset per class, then F1 per class is averaged over the classes that have
a boundary in the target or the prediction. It rewards sharp, well-placed edges, which mIoU on
large regions barely notices.
"""
from __future__ import annotations

from typing import Optional

import torch

from .constants import IGNORE_INDEX
import torch.nn.functional as F

from .checks import positive_int

__all__ = [
    "confusion_matrix",
    "iou_per_class",
    "mean_iou",
    "pixel_accuracy",
    "class_boundaries",
    "boundary_counts",
    "boundary_f1_from_counts",
    "boundary_f1",
    "SegmentationMetrics",
]


def _as_labels(x: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of class indices, got {type(x).__name__}")
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise TypeError(
            f"{name} must hold integer class indices, got dtype {x.dtype}; "
            "for logits [N, C, H, W] use logits.argmax(1) first"
        )
    if x.dim() == 2:
        x = x.unsqueeze(0)
    if x.dim() != 3:
        raise ValueError(f"{name} must have shape [N, H, W] or [H, W], got {tuple(x.shape)}")
    return x.long()


def _check_pair(pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: Optional[int],
                *, check_range: bool = True):
    num_classes = positive_int(num_classes, "num_classes")
    pred, target = _as_labels(pred, "pred"), _as_labels(target, "target")
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    if pred.device != target.device:
        raise ValueError(f"pred is on {pred.device} but target is on {target.device}; move both to one device")
    valid = torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index
    if not check_range:  # the caller has validated the labels already (a host sync per batch saved)
        return pred, target, valid
    for name, x in (("target", target[valid]), ("pred", pred[valid])):
        if x.numel() and (x.min() < 0 or x.max() >= num_classes):
            bad = x[(x < 0) | (x >= num_classes)][0].item()
            hint = "" if ignore_index is None else f" (ignore_index={ignore_index} is allowed in target)"
            raise ValueError(f"{name} has label {bad} outside [0, {num_classes}){hint}")
    return pred, target, valid


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int, *, ignore_index: Optional[int] = None) -> torch.Tensor:
    """Confusion matrix ``[num_classes, num_classes]`` (int64; rows true, columns predicted).

    Args:
        pred, target: integer labels, ``[N, H, W]`` or ``[H, W]``, same shape.
        num_classes: number of classes C; labels must lie in ``[0, C)``.
        ignore_index: target value whose pixels are skipped (e.g. 255 for VOC borders).
    """
    return _confusion(*_check_pair(pred, target, num_classes, ignore_index), num_classes).cpu()


def _confusion(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, num_classes: int) -> torch.Tensor:
    # Ignored pixels go to an extra bin that is dropped: no boolean indexing, so no host sync on CUDA.
    idx = torch.where(valid, target * num_classes + pred, num_classes * num_classes)
    counts = torch.bincount(idx.flatten(), minlength=num_classes * num_classes + 1)
    return counts[: num_classes * num_classes].reshape(num_classes, num_classes)


def _check_cm(cm: torch.Tensor) -> torch.Tensor:
    if not isinstance(cm, torch.Tensor) or cm.dim() != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"expected a square confusion matrix [C, C], got {getattr(cm, 'shape', type(cm))}")
    return cm.double()


def iou_per_class(cm: torch.Tensor) -> torch.Tensor:
    """IoU of each class from a confusion matrix: float64 ``[C]``, nan for absent classes."""
    cm = _check_cm(cm)
    tp = cm.diag()
    union = cm.sum(0) + cm.sum(1) - tp
    # Divide by the union itself (not union.clamp(min=1)): a normalised or soft matrix has unions < 1.
    return torch.where(union > 0, tp / torch.where(union > 0, union, torch.ones_like(union)),
                       torch.full_like(tp, float("nan")))


def mean_iou(cm: torch.Tensor) -> float:
    """Mean IoU over the classes present in target or prediction."""
    iou = iou_per_class(cm)
    present = ~torch.isnan(iou)
    return float(iou[present].mean()) if present.any() else float("nan")


def pixel_accuracy(cm: torch.Tensor) -> float:
    """Fraction of (non-ignored) pixels labelled correctly."""
    cm = _check_cm(cm)
    total = cm.sum()
    return float(cm.trace() / total) if total > 0 else float("nan")


def class_boundaries(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Boundary pixels of every class region: bool ``[N, C, H, W]``.

    A pixel of class c is on c's boundary when one of its 4-neighbours has another label. The
    image border does not count as a boundary.
    """
    labels = _as_labels(labels, "labels")
    onehot = F.one_hot(labels.clamp(0, num_classes - 1), num_classes).permute(0, 3, 1, 2).float()
    onehot = onehot * (labels >= 0).unsqueeze(1) * (labels < num_classes).unsqueeze(1)
    # A pixel has a foreign 4-neighbour iff the cross-shaped max of (1 - onehot) is 1.
    # Replicate padding makes the image border neutral.
    outside = F.pad(1.0 - onehot, (1, 1, 1, 1), mode="replicate")
    foreign = torch.maximum(
        torch.maximum(outside[..., :-2, 1:-1], outside[..., 2:, 1:-1]),
        torch.maximum(outside[..., 1:-1, :-2], outside[..., 1:-1, 2:]),
    )
    return (onehot > 0) & (foreign > 0)


def _dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    if radius == 0:
        return mask
    return F.max_pool2d(mask.float(), 2 * radius + 1, stride=1, padding=radius) > 0


def boundary_counts(pred: torch.Tensor, target: torch.Tensor, num_classes: int, *, tolerance: int = 2,
                    ignore_index: Optional[int] = None) -> torch.Tensor:
    """Per-class boundary match counts, int64 ``[C, 4]``.

    Columns: (predicted boundary pixels within ``tolerance`` of a true boundary, predicted boundary
    pixels, true boundary pixels within ``tolerance`` of a predicted boundary, true boundary pixels).
    Summing these over batches and then calling :func:`boundary_f1_from_counts` gives the
    dataset-level score.
    """
    tolerance = positive_int(tolerance, "tolerance", minimum=0)
    return _boundary(*_check_pair(pred, target, num_classes, ignore_index), num_classes, tolerance).cpu()


def _boundary(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, num_classes: int,
              tolerance: int) -> torch.Tensor:
    # Ignored pixels take the predicted label, so they create no true boundary of their own.
    target = torch.where(valid, target, pred)
    pb = class_boundaries(pred, num_classes) & valid.unsqueeze(1)
    tb = class_boundaries(target, num_classes) & valid.unsqueeze(1)
    p_hit = (pb & _dilate(tb, tolerance)).sum((0, 2, 3))
    t_hit = (tb & _dilate(pb, tolerance)).sum((0, 2, 3))
    return torch.stack([p_hit, pb.sum((0, 2, 3)), t_hit, tb.sum((0, 2, 3))], dim=1).long()


def boundary_f1_from_counts(counts: torch.Tensor) -> tuple[float, torch.Tensor]:
    """Mean and per-class boundary F1 (float64 ``[C]``, nan where a class has no boundary at all)."""
    counts = counts.double()
    p_hit, p_all, t_hit, t_all = counts.unbind(1)
    precision = torch.where(p_all > 0, p_hit / p_all.clamp(min=1), torch.zeros_like(p_hit))
    recall = torch.where(t_all > 0, t_hit / t_all.clamp(min=1), torch.zeros_like(t_hit))
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall).clamp(min=1e-12),
                     torch.zeros_like(precision))
    f1 = torch.where((p_all + t_all) > 0, f1, torch.full_like(f1, float("nan")))
    present = ~torch.isnan(f1)
    return (float(f1[present].mean()) if present.any() else float("nan")), f1



def boundary_f1(pred: torch.Tensor, target: torch.Tensor, num_classes: int, *, tolerance: int = 2,
                ignore_index: Optional[int] = None) -> float:
    """Mean boundary F1 over classes for a batch ``[N, H, W]`` (see the module docstring)."""
    counts = boundary_counts(pred, target, num_classes, tolerance=tolerance, ignore_index=ignore_index)
    return boundary_f1_from_counts(counts)[0]


class SegmentationMetrics:
    """Accumulates the confusion matrix and boundary counts over batches.

    Example::

        m = SegmentationMetrics(num_classes=6)
        for images, masks in loader:
            m.update(model(images), masks)     # logits [N, C, H, W] or labels [N, H, W]
        m.compute()   # {"miou", "pixel_acc", "boundary_f1", "iou_per_class", "boundary_f1_per_class"}
    """

    def __init__(self, num_classes: int, *, ignore_index: Optional[int] = IGNORE_INDEX, boundary_tolerance: int = 2) -> None:
        num_classes = positive_int(num_classes, "num_classes")
        # checked here too: otherwise update() would add to the confusion matrix, then raise
        boundary_tolerance = positive_int(boundary_tolerance, "boundary_tolerance", minimum=0)
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.tolerance = boundary_tolerance
        self.reset()

    def reset(self) -> None:
        self.cm = torch.zeros(self.num_classes, self.num_classes, dtype=torch.long)
        self.bcounts = torch.zeros(self.num_classes, 4, dtype=torch.long)

    def update(self, pred: torch.Tensor, target: torch.Tensor, *, check_labels: bool = True) -> None:
        """Add a batch: ``pred`` logits ``[N, C, H, W]`` or labels ``[N, H, W]``; ``target`` ``[N, H, W]``.

        The counts stay on the batch's device (no host sync per batch on CUDA); ``check_labels=False``
        skips the label-range check for callers that validated the targets already (``evaluate``).
        """
        if pred.is_floating_point():
            if pred.dim() != 4 or pred.shape[1] != self.num_classes:
                raise ValueError(
                    f"float pred must be logits [N, {self.num_classes}, H, W], got {tuple(pred.shape)}"
                )
            pred = pred.argmax(1)
        pred, target = pred.detach(), target.detach()
        pred, target, valid = _check_pair(pred, target, self.num_classes, self.ignore_index, check_range=check_labels)
        if self.cm.device != pred.device:
            self.cm, self.bcounts = self.cm.to(pred.device), self.bcounts.to(pred.device)
        self.cm += _confusion(pred, target, valid, self.num_classes)
        self.bcounts += _boundary(pred, target, valid, self.num_classes, self.tolerance)

    def compute(self) -> dict:
        cm, bcounts = self.cm.cpu(), self.bcounts.cpu()
        bf1, bf1_per_class = boundary_f1_from_counts(bcounts)
        return {
            "miou": mean_iou(cm),
            "pixel_acc": pixel_accuracy(cm),
            "boundary_f1": bf1,
            "iou_per_class": iou_per_class(cm).tolist(),
            "boundary_f1_per_class": bf1_per_class.tolist(),
        }
