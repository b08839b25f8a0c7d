"""Tests for segbook.models.segmentation: the input check and the resize every segmentation model shares."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from segbook.models.segmentation import SegmentationModel, check_images, nearest_valid_sizes, resize_to_input


@pytest.mark.parametrize("size,multiple,min_size,expected", [
    (100, 16, 1, (96, 112)), (96, 16, 1, (96, 96)), (7, 2, 1, (6, 8)), (5, 16, 1, (None, 16)),
    (40, 8, 64, (None, 64)), (70, 8, 64, (64, 72)), (33, 1, 32, (33, 33)), (31, 1, 32, (None, 32)),
])
def test_nearest_valid_sizes(size, multiple, min_size, expected):
    assert nearest_valid_sizes(size, multiple, min_size) == expected


def test_nearest_valid_sizes_matches_brute_force():
    for size in range(1, 200):
        for multiple in (1, 2, 8, 16, 32):
            for min_size in (1, 32, 65):
                ok = [s for s in range(1, 400) if s % multiple == 0 and s >= min_size]
                below = max((s for s in ok if s <= size), default=None)
                above = min(s for s in ok if s >= size)
                assert nearest_valid_sizes(size, multiple, min_size) == (below, above)


@pytest.mark.parametrize("bad", [0, -1, 2.0, True])
def test_nearest_valid_sizes_rejects_bad_args(bad):
    with pytest.raises(ValueError, match="positive int"):
        nearest_valid_sizes(bad, 8)


def test_check_images_accepts_valid():
    check_images(torch.zeros(2, 3, 64, 48), in_channels=3, min_size=32, multiple=16)


@pytest.mark.parametrize("x,err,match", [
    ([1, 2], TypeError, "torch.Tensor"),
    (torch.zeros(3, 64, 64), ValueError, "unsqueeze"),
    (torch.zeros(2, 3, 64, 64, dtype=torch.uint8), TypeError, "float"),
    (torch.zeros(2, 1, 64, 64), ValueError, "3 input channels"),
    (torch.zeros(2, 3, 70, 64), ValueError, r"height 70 \(nearest that work: 64 or 80\)"),
    (torch.zeros(2, 3, 64, 20), ValueError, r"width 20 \(nearest that work: 32\)"),
])
def test_check_images_errors(x, err, match):
    with pytest.raises(err, match=match):
        check_images(x, in_channels=3, min_size=32, multiple=16, name="Net")


def test_resize_to_input_size_and_noop():
    x = torch.zeros(1, 3, 37, 50)
    logits = torch.randn(1, 4, 5, 7)
    out = resize_to_input(logits, x)
    assert out.shape == (1, 4, 37, 50)
    same = torch.randn(1, 4, 37, 50)
    assert resize_to_input(same, x) is same


def test_resize_to_input_constant_stays_constant():
    out = resize_to_input(torch.full((1, 2, 3, 3), 2.5), torch.zeros(1, 3, 17, 9))
    assert torch.allclose(out, torch.full_like(out, 2.5))


class _Tiny(SegmentationModel):
    min_input_size, size_multiple, in_channels = 8, 8, 3

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=8, padding=1)
        self.bn = nn.BatchNorm2d(4)

    @property
    def total_stride(self):
        return 8

    def forward(self, x):
        self.check_input(x)
        return resize_to_input(self.bn(self.conv(x)), x)


def test_segmentation_model_checks_and_resizes():
    m = _Tiny()
    assert m(torch.zeros(2, 3, 16, 24)).shape == (2, 4, 16, 24)
    with pytest.raises(ValueError, match="multiple of 8"):
        m(torch.zeros(2, 3, 17, 24))


def test_segmentation_model_batch_of_one_clear_error_in_training_only():
    m = _Tiny().train()
    with pytest.raises(ValueError, match="batch of one"):
        m(torch.zeros(1, 3, 8, 8))
    m.eval()
    assert m(torch.zeros(1, 3, 8, 8)).shape == (1, 4, 8, 8)
