"""Tests for segbook.masks: connected regions and regions per class."""
import pytest
import torch

from segbook.masks import connected_components, instances_per_class


def test_connected_components_counts_and_labels():
    m = torch.zeros(8, 10, dtype=torch.bool)
    m[0:2, 0:2] = True          # region 1 (first in raster order)
    m[0, 5:9] = True            # region 2
    m[4:7, 2] = True            # region 3, a vertical bar
    m[4, 3:6] = True            # touches the bar: same region
    m[7, 9] = True              # region 4, single pixel
    m[6, 8] = True              # diagonal neighbour of (7, 9): a separate region under 4-connectivity
    labels, n = connected_components(m)
    assert n == 5
    assert labels.dtype == torch.int64 and labels.shape == m.shape
    assert (labels[~m] == 0).all() and (labels[m] > 0).all()
    assert labels[0, 0] == 1 and labels[0, 5] == 2 and labels[4, 2] == labels[4, 5] == 3
    assert labels[6, 8] != labels[7, 9]
    assert set(labels.unique().tolist()) == {0, 1, 2, 3, 4, 5}


def test_connected_components_snake_and_empty():
    m = torch.zeros(9, 9, dtype=torch.bool)
    m[0, :] = m[:, 8] = m[8, :] = m[2:, 0] = m[2, :7] = True   # one long winding path
    assert connected_components(m)[1] == 1
    labels, n = connected_components(torch.zeros(4, 4, dtype=torch.bool))
    assert n == 0 and (labels == 0).all()


def test_instances_per_class_and_min_pixels():
    mask = torch.zeros(10, 10, dtype=torch.int64)
    mask[1:4, 1:4] = 2
    mask[6:9, 6:9] = 2
    mask[0, 9] = 2              # a one-pixel sliver
    mask[5, 0:3] = 3
    assert instances_per_class(mask, 4) == [0, 0, 3, 1]
    assert instances_per_class(mask, 4, min_pixels=2) == [0, 0, 2, 1]
    assert instances_per_class(mask, 4, background=None)[0] == 1
    with pytest.raises(ValueError):
        instances_per_class(mask, 0)
    with pytest.raises(TypeError):
        instances_per_class(mask.float(), 4)
    with pytest.raises(ValueError):
        instances_per_class(mask[None], 4)
