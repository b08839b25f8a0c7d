"""Tests for segbook.experiments_fcn: components, crops, window labels, tiling, map figures."""
import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from segbook.experiments_fcn import (  # noqa: E402
    PAPER_VOC2011_VAL, center_crops, connected_components, instances_per_class, show_maps, tile_scenes,
    window_centre_labels,
)


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


def _scenes(n=3, size=24):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n, 3, size, size, generator=g)
    masks = torch.randint(0, 4, (n, size, size), generator=g)
    return images, masks


def test_center_crops_content_and_label():
    images, masks = _scenes()
    crops, labels = center_crops(images, masks, 50, 8, seed=3, balanced=False)
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


def test_center_crops_balanced_and_deterministic():
    images, masks = _scenes()
    crops, labels = center_crops(images, masks, 40, 8, seed=1, num_classes=4)
    assert torch.bincount(labels, minlength=4).tolist() == [10, 10, 10, 10]
    crops2, labels2 = center_crops(images, masks, 40, 8, seed=1, num_classes=4)
    assert torch.equal(crops, crops2) and torch.equal(labels, labels2)
    _, labels3 = center_crops(images, masks, 42, 8, seed=1, num_classes=4)
    assert sorted(torch.bincount(labels3, minlength=4).tolist()) == [10, 10, 11, 11]
    with pytest.raises(ValueError):
        center_crops(images, masks, 0, 8)
    with pytest.raises(ValueError):
        center_crops(images, masks, 5, 30)
    with pytest.raises(ValueError):
        center_crops(images, masks[:2], 5, 8)


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


def test_show_maps_panels():
    import matplotlib.pyplot as plt

    maps = {"rgb": torch.rand(3, 8, 8), "hwc uint8": np.zeros((8, 8, 3), np.uint8), "map": torch.rand(4, 4),
            "numpy": np.ones((2, 2))}
    fig = show_maps(maps, ncols=3, vrange=(0, 1), suptitle="x")
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == list(maps)
    assert len(fig.axes) == 6 + 1  # 2 x 3 panels and one colour bar shared by the value maps (vrange fixed)
    plt.close(fig)
    with pytest.raises(ValueError):
        show_maps({})
    with pytest.raises(ValueError):
        show_maps({"bad": torch.rand(2, 2, 2, 2)})


def test_show_maps_colour_bars():
    import matplotlib.pyplot as plt

    def bars(fig):  # colour-bar axes are the ones matplotlib labels "<colorbar>"
        return [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]

    maps = {"rgb": torch.rand(3, 8, 8), "a": torch.rand(4, 4), "b": 10 * torch.rand(4, 4)}
    shared = show_maps(maps, vrange=(0, 1), colorbar_label="P(class)")
    assert len(bars(shared)) == 1 and bars(shared)[0].get_ylabel() == "P(class)"
    assert bars(shared)[0].get_ylim() == (0.0, 1.0)
    own = show_maps(maps)  # each value map has its own range, so its own bar; the RGB panel none
    assert len(bars(own)) == 2
    assert bars(own)[1].get_ylim()[1] > 1.0  # the second bar spans map "b"'s range (up to ~10)
    assert bars(show_maps(maps, colorbar=False)) == []
    assert bars(show_maps({"rgb": torch.rand(3, 8, 8)})) == []
    plt.close("all")


def test_paper_numbers_are_the_papers():
    assert [PAPER_VOC2011_VAL[k]["miou"] for k in ("FCN-32s", "FCN-16s", "FCN-8s")] == [59.4, 62.4, 62.7]
    assert [PAPER_VOC2011_VAL[k]["pixel_acc"] for k in ("FCN-32s", "FCN-16s", "FCN-8s")] == [89.1, 90.0, 90.3]


def test_top_channels_finds_the_matching_channel():
    from segbook.experiments_fcn import top_channels

    target = torch.zeros(8, 8)
    target[:4, :4] = 1
    g = torch.Generator().manual_seed(0)
    feats = torch.rand(5, 4, 4, generator=g) * 0.1
    feats[3] = torch.nn.functional.adaptive_avg_pool2d(target[None, None], (4, 4))[0, 0]   # exact match
    feats[1] = -feats[3] + 0.01 * feats[1]                                                 # anti-correlated
    feats[4] = 1.0                                                                         # constant
    idx = top_channels(feats, target, 2)
    assert idx[0] == 3 and idx[1] == 1
    assert top_channels(feats, target, 5)[-1] == 4
    with pytest.raises(ValueError):
        top_channels(feats[0], target)
