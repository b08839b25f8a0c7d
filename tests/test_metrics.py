"""Tests for segbook.metrics: confusion matrix, IoU, pixel accuracy, boundaries and boundary F1."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from segbook.metrics import (
    SegmentationMetrics,
    boundary_counts,
    boundary_f1,
    boundary_f1_from_counts,
    class_boundaries,
    confusion_matrix,
    iou_per_class,
    mean_iou,
    pixel_accuracy,
)

T = torch.tensor


def _same(a, b):
    """Equality that treats nan == nan (for metric dicts and lists)."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == pytest.approx(b, abs=1e-12)


# ---------------------------------------------------------------------------------------------
# confusion matrix, IoU, mIoU, pixel accuracy by hand
# ---------------------------------------------------------------------------------------------
# target          pred
# 0 0 1          0 1 1
# 0 2 1          0 2 2
# 2 2 1          1 2 1
TARGET = T([[0, 0, 1], [0, 2, 1], [2, 2, 1]])
PRED = T([[0, 1, 1], [0, 2, 2], [1, 2, 1]])
# (true, pred) pairs: (0,0) (0,1) (1,1) (0,0) (2,2) (1,2) (2,1) (2,2) (1,1)
EXPECTED_CM = T([[2, 1, 0],
                 [0, 2, 1],
                 [0, 1, 2]])


def test_confusion_matrix_by_hand():
    cm = confusion_matrix(PRED, TARGET, 3)
    assert cm.dtype == torch.int64
    assert torch.equal(cm, EXPECTED_CM)
    assert cm.sum() == 9
    # rows are the truth: row sums are the true class counts
    assert cm.sum(1).tolist() == torch.bincount(TARGET.flatten(), minlength=3).tolist()
    assert cm.sum(0).tolist() == torch.bincount(PRED.flatten(), minlength=3).tolist()


def test_confusion_matrix_batch_and_dtypes():
    cm2 = confusion_matrix(torch.stack([PRED, PRED]), torch.stack([TARGET, TARGET]), 3)
    assert torch.equal(cm2, 2 * EXPECTED_CM)
    cm8 = confusion_matrix(PRED.to(torch.uint8), TARGET.to(torch.int32), 3)
    assert torch.equal(cm8, EXPECTED_CM)


def test_confusion_matrix_extra_class_columns():
    cm = confusion_matrix(PRED, TARGET, 5)
    assert cm.shape == (5, 5)
    assert torch.equal(cm[:3, :3], EXPECTED_CM)
    assert cm[3:].sum() == 0 and cm[:, 3:].sum() == 0


def test_iou_miou_pixel_accuracy_by_hand():
    cm = confusion_matrix(PRED, TARGET, 3)
    # IoU_c = tp / (row + col - tp): class 0: 2/(3+2-2)=2/3, 1: 2/(3+4-2)=2/5, 2: 2/(3+3-2)=1/2
    iou = iou_per_class(cm)
    assert iou.dtype == torch.float64
    assert iou.tolist() == pytest.approx([2 / 3, 2 / 5, 1 / 2])
    assert mean_iou(cm) == pytest.approx((2 / 3 + 2 / 5 + 1 / 2) / 3)
    assert pixel_accuracy(cm) == pytest.approx(6 / 9)
    assert isinstance(mean_iou(cm), float) and isinstance(pixel_accuracy(cm), float)


def test_perfect_prediction():
    cm = confusion_matrix(TARGET, TARGET, 3)
    assert torch.equal(cm, torch.diag(T([3, 3, 3])))
    assert iou_per_class(cm).tolist() == [1.0, 1.0, 1.0]
    assert mean_iou(cm) == 1.0 and pixel_accuracy(cm) == 1.0


def test_iou_is_scale_invariant_for_normalised_matrices():
    cm = confusion_matrix(PRED, TARGET, 3)
    expected = iou_per_class(cm)
    assert torch.allclose(iou_per_class(cm.double() / cm.sum()), expected)
    assert torch.allclose(iou_per_class(cm.float() * 0.01), expected)
    assert mean_iou(cm.double() / cm.sum()) == pytest.approx(mean_iou(cm))
    assert pixel_accuracy(cm.double() / 7) == pytest.approx(pixel_accuracy(cm))


def test_absent_classes_are_nan_and_excluded():
    # class 3 appears nowhere, class 2 only in the prediction
    target = T([[0, 0], [1, 1]])
    pred = T([[0, 2], [1, 1]])
    cm = confusion_matrix(pred, target, 4)
    iou = iou_per_class(cm)
    assert iou[0] == pytest.approx(1 / 2)   # tp 1, row 2, col 1
    assert iou[1] == pytest.approx(1.0)
    assert iou[2] == 0.0                    # predicted but never true: 0, not nan
    assert math.isnan(iou[3])
    assert mean_iou(cm) == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    assert pixel_accuracy(cm) == pytest.approx(3 / 4)


def test_empty_matrix_gives_nan():
    cm = torch.zeros(3, 3, dtype=torch.long)
    assert torch.isnan(iou_per_class(cm)).all()
    assert math.isnan(mean_iou(cm))
    assert math.isnan(pixel_accuracy(cm))


def test_ignore_index():
    target = T([[0, 255, 1], [255, 1, 1]])
    pred = T([[0, 1, 0], [255, 1, 7]])  # anything (even out of range) is allowed where ignored...
    pred[1, 2] = 1                       # ...but not on valid pixels
    cm = confusion_matrix(pred, target, 2, ignore_index=255)
    # valid pairs: (0,0) (1,0) (1,1) (1,1)
    assert torch.equal(cm, T([[1, 0], [1, 2]]))
    assert pixel_accuracy(cm) == pytest.approx(3 / 4)
    assert iou_per_class(cm).tolist() == pytest.approx([1 / 2, 2 / 3])


def test_ignore_index_inside_class_range():
    target = T([[0, 1], [2, 2]])
    pred = T([[0, 0], [2, 1]])
    cm = confusion_matrix(pred, target, 3, ignore_index=2)
    assert torch.equal(cm, T([[1, 0, 0], [1, 0, 0], [0, 0, 0]]))


def test_all_pixels_ignored():
    target = torch.full((3, 3), 255)
    cm = confusion_matrix(torch.zeros(3, 3, dtype=torch.long), target, 2, ignore_index=255)
    assert cm.sum() == 0
    assert math.isnan(pixel_accuracy(cm))


# ---------------------------------------------------------------------------------------------
# class boundaries
# ---------------------------------------------------------------------------------------------
def test_class_boundaries_square_by_hand():
    labels = torch.zeros(5, 5, dtype=torch.long)
    labels[1:4, 1:4] = 1
    b = class_boundaries(labels, 2)
    assert b.shape == (1, 2, 5, 5) and b.dtype == torch.bool
    expected_square = T([
        [0, 0, 0, 0, 0],
        [0, 1, 1, 1, 0],
        [0, 1, 0, 1, 0],
        [0, 1, 1, 1, 0],
        [0, 0, 0, 0, 0],
    ], dtype=torch.bool)
    # background pixels 4-adjacent to the square; the 4 image corners touch it only diagonally
    expected_background = T([
        [0, 1, 1, 1, 0],
        [1, 0, 0, 0, 1],
        [1, 0, 0, 0, 1],
        [1, 0, 0, 0, 1],
        [0, 1, 1, 1, 0],
    ], dtype=torch.bool)
    assert torch.equal(b[0, 1], expected_square)
    assert torch.equal(b[0, 0], expected_background)


def test_class_boundaries_image_border_is_not_a_boundary():
    labels = torch.zeros(4, 4, dtype=torch.long)
    labels[0:2, 0:2] = 1  # a square in the top-left corner
    b = class_boundaries(labels, 2)
    expected_square = torch.zeros(4, 4, dtype=torch.bool)
    expected_square[0, 1] = expected_square[1, 0] = expected_square[1, 1] = True
    assert torch.equal(b[0, 1], expected_square)
    # a uniform map has no boundary at all
    assert not class_boundaries(torch.zeros(1, 6, 6, dtype=torch.long), 3).any()


def test_class_boundaries_batch_and_absent_class():
    a = torch.zeros(4, 4, dtype=torch.long)
    a[:, 2:] = 1
    b = torch.zeros(4, 4, dtype=torch.long)
    out = class_boundaries(torch.stack([a, b]), 3)
    assert out.shape == (2, 3, 4, 4)
    assert out[0, 0, :, 1].all() and out[0, 0].sum() == 4
    assert out[0, 1, :, 2].all() and out[0, 1].sum() == 4
    assert not out[1].any()
    assert not out[:, 2].any()


def test_class_boundaries_next_to_unlabelled_pixels():
    labels = T([[0, 0, 255]])
    b = class_boundaries(labels, 2)
    assert b[0, 0].tolist() == [[False, True, False]]  # next to an ignore pixel
    assert not b[0, 1].any()


# ---------------------------------------------------------------------------------------------
# boundary F1
# ---------------------------------------------------------------------------------------------
def _square(size=32, top=10, left=10, side=8):
    m = torch.zeros(size, size, dtype=torch.long)
    m[top:top + side, left:left + side] = 1
    return m


def test_boundary_counts_by_hand():
    # target: right half class 1; prediction: only the last column class 1 (edge off by one)
    target = torch.zeros(4, 4, dtype=torch.long)
    target[:, 2:] = 1
    pred = torch.zeros(4, 4, dtype=torch.long)
    pred[:, 3] = 1
    # true boundaries: class 0 at column 1, class 1 at column 2; predicted: columns 2 and 3
    c0 = boundary_counts(pred, target, 2, tolerance=0)
    assert c0.tolist() == [[0, 4, 0, 4], [0, 4, 0, 4]]
    assert boundary_f1(pred, target, 2, tolerance=0) == 0.0
    c1 = boundary_counts(pred, target, 2, tolerance=1)
    assert c1.tolist() == [[4, 4, 4, 4], [4, 4, 4, 4]]
    assert boundary_f1(pred, target, 2, tolerance=1) == 1.0


def test_boundary_f1_perfect_prediction():
    for target in (_square(), torch.stack([_square(), _square(top=2, left=20, side=5)])):
        assert boundary_f1(target, target, 2) == 1.0
        assert boundary_f1(target, target, 2, tolerance=0) == 1.0
        mean, per_class = boundary_f1_from_counts(boundary_counts(target, target, 2))
        assert mean == 1.0 and per_class.tolist() == [1.0, 1.0]


def test_boundary_f1_tolerance_forgives_one_pixel_shift():
    target = _square()
    shifted = torch.roll(target, 1, dims=1)
    assert boundary_f1(shifted, target, 2, tolerance=1) == 1.0
    assert boundary_f1(shifted, target, 2, tolerance=0) < 0.6
    down_right = torch.roll(target, (1, 1), dims=(0, 1))  # chessboard distance 1
    assert boundary_f1(down_right, target, 2, tolerance=1) == 1.0


def test_boundary_f1_decreases_with_shift_beyond_tolerance():
    target = _square()
    scores = [boundary_f1(torch.roll(target, s, dims=1), target, 2, tolerance=2) for s in range(6)]
    assert scores[0] == scores[1] == scores[2] == 1.0
    assert scores[3] < 1.0
    assert all(a > b for a, b in zip(scores[2:], scores[3:])), scores
    # and the score is symmetric in pred/target for a pure shift
    assert boundary_f1(target, torch.roll(target, 3, dims=1), 2) == pytest.approx(scores[3])


def test_boundary_f1_not_fooled_by_large_overlap():
    """A prediction with the right area but a ragged edge scores high IoU and low boundary F1."""
    target = torch.zeros(32, 32, dtype=torch.long)
    target[:, 16:] = 1
    ragged = target.clone()
    ragged[::2, 12:16] = 1   # teeth 4 px to the left on every other row
    ragged[1::2, 16:20] = 0  # and 4 px to the right on the others
    cm = confusion_matrix(ragged, target, 2)
    assert mean_iou(cm) > 0.75
    assert boundary_f1(ragged, target, 2, tolerance=1) < 0.6


def test_boundary_f1_absent_class_is_nan_and_excluded():
    target = _square()
    counts = boundary_counts(target, target, 3)
    assert counts[2].tolist() == [0, 0, 0, 0]
    mean, per_class = boundary_f1_from_counts(counts)
    assert per_class[:2].tolist() == [1.0, 1.0] and math.isnan(per_class[2])
    assert mean == 1.0


def test_boundary_f1_class_only_in_prediction_scores_zero():
    target = torch.zeros(8, 8, dtype=torch.long)
    pred = target.clone()
    pred[3:5, 3:5] = 1
    _, per_class = boundary_f1_from_counts(boundary_counts(pred, target, 2))
    assert per_class.tolist() == [0.0, 0.0]
    assert boundary_f1(pred, target, 2) == 0.0


def test_boundary_f1_no_boundaries_anywhere_is_nan():
    flat = torch.zeros(2, 8, 8, dtype=torch.long)
    assert math.isnan(boundary_f1(flat, flat, 2))


def test_boundary_f1_precision_and_recall_differ():
    # target: one square; prediction: the same square plus a far-away false one
    target = _square()
    pred = target.clone()
    pred[25:29, 25:29] = 1
    p_hit, p_all, t_hit, t_all = boundary_counts(pred, target, 2, tolerance=1)[1].tolist()
    assert t_hit == t_all == 28          # 8x8 square: 28 boundary pixels, all recalled
    assert p_all == 28 + 12 and p_hit == 28  # 4x4 false square: 12 boundary pixels, all wrong
    mean, per_class = boundary_f1_from_counts(boundary_counts(pred, target, 2, tolerance=1))
    precision, recall = 28 / 40, 1.0
    assert per_class[1] == pytest.approx(2 * precision * recall / (precision + recall))


def test_boundary_counts_ignore_index():
    # a VOC-style 'void' column between the two regions; the prediction puts the edge inside it
    target = torch.zeros(4, 6, dtype=torch.long)
    target[:, 3] = 255
    target[:, 4:] = 1
    pred = torch.zeros(4, 6, dtype=torch.long)
    pred[:, 4:] = 1
    counts = boundary_counts(pred, target, 2, tolerance=0, ignore_index=255)
    # class 0's edge lies in the void column and counts nowhere; class 1's edge matches exactly
    assert counts.tolist() == [[0, 0, 0, 0], [4, 4, 4, 4]]
    assert boundary_f1(pred, target, 2, tolerance=0, ignore_index=255) == 1.0
    # the void pixels themselves never create a true boundary, whatever the prediction there
    pred2 = pred.clone()
    pred2[:, 3] = 1
    assert boundary_f1(pred2, target, 2, tolerance=1, ignore_index=255) == 1.0


# ---------------------------------------------------------------------------------------------
# SegmentationMetrics
# ---------------------------------------------------------------------------------------------
def _random_batch(gen, n, k=4, size=16, ignore=True):
    target = torch.randint(0, k, (n, size // 4, size // 4), generator=gen)
    target = target.repeat_interleave(4, 1).repeat_interleave(4, 2)  # blocky regions
    pred = torch.where(torch.rand(target.shape, generator=gen) < 0.8, target,
                       torch.randint(0, k, target.shape, generator=gen))
    if ignore:
        target[:, 0, :] = 255
    return pred, target


def test_segmentation_metrics_accumulation_equals_concatenation():
    gen = torch.Generator().manual_seed(0)
    p1, t1 = _random_batch(gen, 2)
    p2, t2 = _random_batch(gen, 3)
    m = SegmentationMetrics(4, ignore_index=255)
    m.update(p1, t1)
    m.update(p2, t2)
    one = SegmentationMetrics(4, ignore_index=255)
    one.update(torch.cat([p1, p2]), torch.cat([t1, t2]))
    assert torch.equal(m.cm, one.cm)
    assert torch.equal(m.bcounts, one.bcounts)
    assert _same(m.compute(), one.compute())
    # and matches the functional API
    pc, tc = torch.cat([p1, p2]), torch.cat([t1, t2])
    cm = confusion_matrix(pc, tc, 4, ignore_index=255)
    out = m.compute()
    assert set(out) == {"miou", "pixel_acc", "boundary_f1", "iou_per_class", "boundary_f1_per_class"}
    assert out["miou"] == pytest.approx(mean_iou(cm))
    assert out["pixel_acc"] == pytest.approx(pixel_accuracy(cm))
    assert out["boundary_f1"] == pytest.approx(boundary_f1(pc, tc, 4, ignore_index=255))
    assert len(out["iou_per_class"]) == 4 and len(out["boundary_f1_per_class"]) == 4
    assert 0.0 < out["miou"] < 1.0


def test_segmentation_metrics_logits_input_and_reset():
    gen = torch.Generator().manual_seed(1)
    pred, target = _random_batch(gen, 2, k=3, ignore=False)
    logits = F.one_hot(pred, 3).permute(0, 3, 1, 2).float() * 5 + 0.1 * torch.randn(2, 3, 16, 16, generator=gen)
    a = SegmentationMetrics(3)
    a.update(logits, target)
    b = SegmentationMetrics(3)
    b.update(pred, target)
    assert torch.equal(a.cm, b.cm) and torch.equal(a.bcounts, b.bcounts)
    a.reset()
    assert a.cm.sum() == 0 and a.bcounts.sum() == 0
    assert math.isnan(a.compute()["miou"])


def test_segmentation_metrics_accepts_tensors_requiring_grad():
    logits = torch.randn(1, 2, 8, 8, requires_grad=True)
    m = SegmentationMetrics(2)
    m.update(logits, torch.zeros(1, 8, 8, dtype=torch.long))
    assert m.cm.sum() == 64


def test_segmentation_metrics_hand_values():
    m = SegmentationMetrics(3, boundary_tolerance=0)
    m.update(PRED, TARGET)
    out = m.compute()
    assert out["pixel_acc"] == pytest.approx(6 / 9)
    assert out["iou_per_class"] == pytest.approx([2 / 3, 2 / 5, 1 / 2])


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------
def test_float_labels_rejected_with_hint():
    with pytest.raises(TypeError, match=r"pred must hold integer class indices.*argmax"):
        confusion_matrix(PRED.float(), TARGET, 3)
    with pytest.raises(TypeError, match="target must hold integer class indices"):
        confusion_matrix(PRED, TARGET.double(), 3)
    with pytest.raises(TypeError, match="integer"):
        confusion_matrix(PRED > 0, TARGET, 3)
    with pytest.raises(TypeError, match="torch.Tensor"):
        confusion_matrix(PRED.tolist(), TARGET, 3)


def test_shape_errors():
    with pytest.raises(ValueError, match=r"shapes differ: \(1, 3, 3\) vs \(1, 3, 2\)"):
        confusion_matrix(PRED, TARGET[:, :2], 3)
    with pytest.raises(ValueError, match=r"\[N, H, W\] or \[H, W\]"):
        confusion_matrix(PRED.reshape(1, 1, 3, 3), TARGET.reshape(1, 1, 3, 3), 3)
    with pytest.raises(ValueError, match=r"\[N, H, W\] or \[H, W\]"):
        confusion_matrix(PRED.flatten(), TARGET.flatten(), 3)
    with pytest.raises(ValueError, match="shapes differ"):
        boundary_f1(PRED, TARGET[:2], 3)


def test_labels_out_of_range():
    with pytest.raises(ValueError, match=r"target has label 2 outside \[0, 2\)"):
        confusion_matrix(PRED.clamp(max=1), TARGET, 2)
    with pytest.raises(ValueError, match=r"pred has label 2 outside \[0, 2\)"):
        confusion_matrix(PRED, TARGET.clamp(max=1), 2)
    with pytest.raises(ValueError, match="target has label -1"):
        confusion_matrix(PRED, TARGET - 1, 3)
    t = TARGET.clone()
    t[0, 0] = 255
    with pytest.raises(ValueError, match="target has label 255"):
        confusion_matrix(PRED, t, 3)  # 255 is only allowed with ignore_index=255
    with pytest.raises(ValueError, match=r"ignore_index=254 is allowed in target"):
        confusion_matrix(PRED, t, 3, ignore_index=254)
    with pytest.raises(ValueError, match="outside"):
        boundary_f1(PRED, t, 3)
    with pytest.raises(ValueError, match="outside"):
        SegmentationMetrics(2).update(PRED, TARGET)


def _error_for(bad):
    """What segbook.checks raises: ValueError for an int out of range, TypeError for a non-int."""
    return ValueError if isinstance(bad, int) and not isinstance(bad, bool) else TypeError


@pytest.mark.parametrize("bad", [0, -2, 2.0, True, None, "3"])
def test_bad_num_classes(bad):
    with pytest.raises(_error_for(bad), match="num_classes must be a positive int"):
        confusion_matrix(PRED, TARGET, bad)
    with pytest.raises(_error_for(bad), match="num_classes must be a positive int"):
        SegmentationMetrics(bad)


@pytest.mark.parametrize("bad", [-1, 1.0, True, None])
def test_bad_tolerance(bad):
    with pytest.raises(_error_for(bad), match="tolerance must be a non-negative int"):
        boundary_f1(PRED, TARGET, 3, tolerance=bad)
    # rejected up front, not half-way through the first update()
    with pytest.raises(_error_for(bad), match="boundary_tolerance must be a non-negative int"):
        SegmentationMetrics(3, boundary_tolerance=bad)


def test_bad_confusion_matrix():
    for bad in (torch.zeros(3, 4), torch.zeros(3), torch.zeros(2, 2, 2), [[1, 0], [0, 1]]):
        with pytest.raises(ValueError, match="square confusion matrix"):
            iou_per_class(bad)
        with pytest.raises(ValueError, match="square confusion matrix"):
            pixel_accuracy(bad)


def test_segmentation_metrics_bad_logits():
    m = SegmentationMetrics(3)
    with pytest.raises(ValueError, match=r"logits \[N, 3, H, W\]"):
        m.update(torch.randn(1, 4, 5, 5), torch.zeros(1, 5, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"logits \[N, 3, H, W\]"):
        m.update(torch.randn(3, 5, 5), torch.zeros(1, 5, 5, dtype=torch.long))
    with pytest.raises(TypeError, match="target must hold integer"):
        m.update(torch.zeros(1, 5, 5, dtype=torch.long), torch.zeros(1, 5, 5))
    assert m.cm.sum() == 0  # failed updates leave the state untouched
