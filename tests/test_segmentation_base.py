"""Tests for segbook.models.segmentation: the one forward, the input check and the resize every segmentation model shares."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from segbook.checks import batch_norm_batch_of_one
from segbook.models.segmentation import (SegmentationModel, check_images, check_spatial_sizes, nearest_valid_sizes,
                                         resize_to_input)


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


@pytest.mark.parametrize("bad,err", [(0, ValueError), (-1, ValueError), (2.0, TypeError), (True, TypeError)])
def test_nearest_valid_sizes_rejects_bad_args(bad, err):
    with pytest.raises(err, match="positive int"):
        nearest_valid_sizes(bad, 8)


def test_check_spatial_sizes_names_the_nearest_sizes_of_each_bad_side():
    even = dict(is_valid=lambda n: n % 2 == 0, nearest=lambda n: (n - 1 if n > 1 else None, n + 1))
    check_spatial_sizes(torch.zeros(1, 1, 6, 4), **even, name="Net", rule="r", fix="f")
    with pytest.raises(ValueError) as info:
        check_spatial_sizes(torch.zeros(1, 1, 7, 1), **even, name="Net (even)", rule="each side must be even",
                            fix="Crop it.")
    assert str(info.value) == ("Net (even) cannot take a 7x1 input: each side must be even; got height 7 (nearest "
                               "that work: 6 or 8); width 1 (nearest that work: 2). Crop it.")
    with pytest.raises(ValueError, match=r"^Net cannot take a 6x5 input: r; got width 5 \(nearest that work: 4 or 6\)\. f$"):
        check_spatial_sizes(torch.zeros(6, 5), **even, name="Net", rule="r", fix="f")


def test_batch_norm_batch_of_one_only_for_one_value_in_training_with_batch_norm():
    with_bn, without = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2)), nn.Conv2d(1, 2, 1)
    why = batch_norm_batch_of_one(with_bn, 1)
    assert "single value per channel" in why and "drop_last=True" in why
    assert batch_norm_batch_of_one(with_bn, 1, values_per_channel=0) == why
    assert batch_norm_batch_of_one(with_bn, 1, values_per_channel=4) is None   # a 2x2 map is 4 values
    assert batch_norm_batch_of_one(with_bn, 2) is None and batch_norm_batch_of_one(with_bn, 0) is None
    assert batch_norm_batch_of_one(without, 1) is None
    assert batch_norm_batch_of_one(with_bn.eval(), 1) is None
    # what it predicts is what torch does
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        with_bn.train()(torch.zeros(1, 1, 1, 1))
    with_bn(torch.zeros(1, 1, 2, 2))


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
        self.backbone = nn.Conv2d(3, 4, 3, stride=8, padding=1)
        self.bn = nn.BatchNorm2d(4)

    @property
    def total_stride(self):
        return 8

    def decode(self, features):
        return self.bn(features)


def test_segmentation_model_checks_and_resizes():
    m = _Tiny().eval()
    x = torch.rand(2, 3, 16, 24)
    assert m(x).shape == (2, 4, 16, 24)
    assert torch.equal(m(x), resize_to_input(m.bn(m.backbone(x)), x))   # check -> backbone -> decode -> resize
    with pytest.raises(ValueError, match="multiple of 8"):
        m(torch.zeros(2, 3, 17, 24))


def test_segmentation_model_batch_of_one_clear_error_in_training_only():
    m = _Tiny().train()
    with pytest.raises(ValueError, match="batch of one"):
        m(torch.zeros(1, 3, 8, 8))
    m.eval()
    assert m(torch.zeros(1, 3, 8, 8)).shape == (1, 4, 8, 8)


def test_decode_is_what_a_subclass_must_write():
    class NoDecode(SegmentationModel):
        def __init__(self):
            super().__init__()
            self.backbone = nn.Identity()

    with pytest.raises(NotImplementedError, match="NoDecode must implement decode"):
        NoDecode()(torch.zeros(2, 3, 4, 4))
