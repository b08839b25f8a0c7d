"""Tests for segbook.data.crops: centre-labelled crops, window labels, tiling."""
import pytest
import torch

from segbook.data import centre_labelled_crops, tile_scenes, window_centre_labels


def _scenes(n=3, size=24):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n, 3, size, size, generator=g)
    masks = torch.randint(0, 4, (n, size, size), generator=g)
    return images, masks


def test_random_crops_content_and_label():
    images, masks = _scenes()
    crops, labels = centre_labelled_crops(images, masks, 50, 8, seed=3, balanced=False)
    assert crops.shape == (50, 3, 8, 8) and labels.shape == (50,) and labels.dtype == torch.int64
    # every crop is a window of some image whose centre pixel carries the label
    for crop, label in zip(crops[:10], labels[:10]):
        found = False
        for i in range(images.shape[0]):
            windows = images[i].unfold(1, 8, 1).unfold(2, 8, 1)          # [3, h', w', 8, 8]
            hit = (windows == crop[:, None, None]).flatten(3).all(-1).all(0).nonzero()
            for t, l in hit.tolist():
                if masks[i, t + 4, l + 4] == label:
                    found = True
        assert found


def test_random_crops_balanced_and_deterministic():
    images, masks = _scenes()
    crops, labels = centre_labelled_crops(images, masks, 40, 8, seed=1, num_classes=4)
    assert torch.bincount(labels, minlength=4).tolist() == [10, 10, 10, 10]
    crops2, labels2 = centre_labelled_crops(images, masks, 40, 8, seed=1, num_classes=4)
    assert torch.equal(crops, crops2) and torch.equal(labels, labels2)
    _, labels3 = centre_labelled_crops(images, masks, 42, 8, seed=1, num_classes=4)
    assert sorted(torch.bincount(labels3, minlength=4).tolist()) == [10, 10, 11, 11]
    with pytest.raises(ValueError):
        centre_labelled_crops(images, masks, 0, 8)
    with pytest.raises(ValueError, match="size"):
        centre_labelled_crops(images, masks, 5, 30)
    with pytest.raises(TypeError, match="size"):
        centre_labelled_crops(images, masks, 5, 8.0)
    with pytest.raises(ValueError):
        centre_labelled_crops(images, masks[:2], 5, 8)


def test_window_centre_labels_match_center_crop_convention():
    _, masks = _scenes(2, 20)
    out = window_centre_labels(masks, 8, 4)
    assert out.shape == (2, 4, 4)            # (20 - 8) // 4 + 1
    for i in range(4):
        for j in range(4):
            assert torch.equal(out[:, i, j], masks[:, 4 * i + 4, 4 * j + 4])
    with pytest.raises(ValueError):
        window_centre_labels(masks, 21, 4)


def test_tile_scenes_layout():
    images, masks = _scenes(9, 8)
    img, msk = tile_scenes(images, masks, 2, 2)
    assert img.shape == (2, 3, 16, 16) and msk.shape == (2, 16, 16)   # the 9th scene is dropped
    assert torch.equal(img[0, :, :8, :8], images[0]) and torch.equal(img[0, :, :8, 8:], images[1])
    assert torch.equal(img[0, :, 8:, :8], images[2]) and torch.equal(img[1, :, 8:, 8:], images[7])
    assert torch.equal(msk[1, :8, 8:], masks[5])
    img, msk = tile_scenes(images, masks, 1, 3)
    assert img.shape == (3, 3, 8, 24) and torch.equal(msk[2, :, 16:], masks[8])
    with pytest.raises(ValueError):
        tile_scenes(images[:3], masks[:3], 2, 2)
