"""Tests for segbook.data.synthetic: the procedural shape datasets and make_loader."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from segbook.data import (
    CLASSIFICATION_CLASSES,
    SEGMENTATION_CLASSES,
    ShapesClassification,
    ShapesSegmentation,
    SCENE_STYLES,
    make_loader,
    render_scene,
    render_scenes,
    render_shape_image,
)
from segbook.data.synthetic import render_shape_images

DISC, SQUARE, TRIANGLE, RING, LINE = 1, 2, 3, 4, 5


@pytest.fixture(scope="module")
def seg50():
    return ShapesSegmentation(n=50, size=64, seed=0)


@pytest.fixture(scope="module")
def cls30():
    return ShapesClassification(n=30, size=32, seed=0)


# ---------------------------------------------------------------------------------------------
# items: shapes, dtypes, ranges
# ---------------------------------------------------------------------------------------------
def test_class_names():
    assert SEGMENTATION_CLASSES[0] == "background" and len(set(SEGMENTATION_CLASSES)) == len(SEGMENTATION_CLASSES)
    assert len(CLASSIFICATION_CLASSES) == 10 == len(set(CLASSIFICATION_CLASSES))
    assert ShapesSegmentation.classes == SEGMENTATION_CLASSES
    assert ShapesClassification.classes == CLASSIFICATION_CLASSES


def test_segmentation_item(seg50):
    assert len(seg50) == 50
    assert seg50.num_classes == 6
    image, mask = seg50[0]
    assert image.shape == (3, 64, 64) and image.dtype == torch.float32
    assert mask.shape == (64, 64) and mask.dtype == torch.int64
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert 0 <= mask.min() and mask.max() < 6
    assert image.std() > 0.02  # textured and noisy, not flat


def test_segmentation_sizes():
    for size in (32, 48):
        image, mask = ShapesSegmentation(n=1, size=size, seed=3)[0]
        assert image.shape == (3, size, size)
        assert mask.shape == (size, size)


def test_segmentation_tensors(seg50):
    images, masks = seg50.tensors()
    assert images.shape == (50, 3, 64, 64) and images.dtype == torch.float32
    assert masks.shape == (50, 64, 64) and masks.dtype == torch.int64
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert 0 <= masks.min() and masks.max() <= 5
    for i in (0, 17, 49):
        image, mask = seg50[i]
        assert torch.equal(images[i], image)
        assert torch.equal(masks[i], mask)
    # items are views of uint8 storage: values are multiples of 1/255
    assert torch.allclose(images * 255, (images * 255).round(), atol=1e-4)


def test_segmentation_item_matches_render_scene(seg50):
    img, mask = render_scene(0, 5, 64)
    assert img.dtype == np.float32 and img.shape == (3, 64, 64)
    assert mask.dtype == np.int64 and mask.shape == (64, 64)
    image, m = seg50[5]
    assert np.array_equal(m.numpy(), mask)
    assert np.abs(image.numpy() - img).max() <= 0.5 / 255 + 1e-6  # rounding to uint8


def test_classification_item(cls30):
    assert len(cls30) == 30 and cls30.num_classes == 10
    image, label = cls30[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert label.dtype == torch.int64 and label.dim() == 0
    assert 0.0 <= image.min() and image.max() <= 1.0
    images, labels = cls30.tensors()
    assert images.shape == (30, 3, 32, 32) and labels.shape == (30,)
    assert labels.dtype == torch.int64
    assert torch.equal(images[7], cls30[7][0])
    # tensors() returns a copy of the labels
    labels[0] = 99
    assert int(cls30[0][1]) == 0


def test_classification_custom_size():
    image, _ = ShapesClassification(n=1, size=16)[0]
    assert image.shape == (3, 16, 16)


def test_render_shape_image_label_and_range():
    for i in range(12):
        img, label = render_shape_image(4, i)
        assert label == i % 10
        assert img.shape == (3, 32, 32) and img.dtype == np.float32
        assert img.min() >= 0.0 and img.max() <= 1.0


def test_repr(seg50):
    assert repr(seg50) == "ShapesSegmentation(n=50, size=64, seed=0, classes=6)"


# ---------------------------------------------------------------------------------------------
# determinism: item i is a pure function of (seed, i)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls,size", [(ShapesSegmentation, 32), (ShapesClassification, 16),
                                      (lambda **kw: ShapesSegmentation(style="camouflage", **kw), 32)])
def test_item_is_pure_function_of_seed_and_index(cls, size):
    a = cls(n=4, size=size, seed=5)
    b = cls(n=9, size=size, seed=5)
    for i in range(4):
        xa, ya = a[i]
        xb, yb = b[i]
        assert torch.equal(xa, xb)
        assert torch.equal(ya, yb)
    # and the same again on a rebuild
    c = cls(n=4, size=size, seed=5)
    assert torch.equal(a.tensors()[0], c.tensors()[0])


@pytest.mark.parametrize("cls,size", [(ShapesSegmentation, 32), (ShapesClassification, 16)])
def test_different_seeds_differ(cls, size):
    a = cls(n=4, size=size, seed=0).tensors()[0]
    b = cls(n=4, size=size, seed=1).tensors()[0]
    for i in range(4):
        assert not torch.equal(a[i], b[i])


def test_items_within_a_dataset_differ(seg50):
    images, masks = seg50.tensors()
    assert not torch.equal(images[0], images[1])
    assert len({m.numpy().tobytes() for m in masks}) == 50


def test_segmentation_and_classification_streams_are_unrelated():
    seg_img, _ = render_scene(0, 0, 32)
    cls_img, _ = render_shape_image(0, 0, 32)
    assert not np.allclose(seg_img, cls_img)


def test_negative_index_and_out_of_range(seg50):
    assert torch.equal(seg50[-1][0], seg50[49][0])
    assert torch.equal(seg50[-50][1], seg50[0][1])
    for bad in (50, 51, -51):
        with pytest.raises(IndexError, match=f"index {bad} out of range for a dataset of 50 items"):
            seg50[bad]
    ds = ShapesClassification(n=3, size=16)
    with pytest.raises(IndexError):
        ds[3]


# ---------------------------------------------------------------------------------------------
# scene content
# ---------------------------------------------------------------------------------------------
def test_all_segmentation_classes_appear(seg50):
    _, masks = seg50.tensors()
    counts = torch.bincount(masks.flatten(), minlength=6)
    assert (counts > 0).all(), counts
    # every class appears in several scenes, not just one
    scenes_with = [(masks == c).flatten(1).any(1).sum().item() for c in range(6)]
    assert min(scenes_with) >= 10, scenes_with
    assert scenes_with[0] == 50  # background is everywhere
    # background dominates but objects are a visible fraction
    fg = 1 - counts[0].item() / counts.sum().item()
    assert 0.03 < fg < 0.5


def test_every_scene_has_an_object(seg50):
    _, masks = seg50.tensors()
    assert ((masks > 0).flatten(1).sum(1) > 0).all()


def _erosion_survival(masks: torch.Tensor, c: int, k: int = 3) -> float:
    """Fraction of class-c pixels that survive one k x k binary erosion (image border neutral)."""
    m = (masks == c).float().unsqueeze(1)
    p = k // 2
    eroded = -F.max_pool2d(-F.pad(m, (p, p, p, p), mode="replicate"), k, stride=1)
    return float(eroded.sum() / m.sum())


def test_thin_classes_are_thin_but_more_than_a_pixel(seg50):
    _, masks = seg50.tensors()
    for thin in (RING, LINE):
        # a 5x5 erosion removes strokes 4 px wide and leaves a line of 5 px ones; a 3x3 one keeps their middle
        assert _erosion_survival(masks, thin, 5) < 0.05, SEGMENTATION_CLASSES[thin]
        assert _erosion_survival(masks, thin, 3) > 0.3, SEGMENTATION_CLASSES[thin]
    for filled in (DISC, SQUARE, TRIANGLE):
        assert _erosion_survival(masks, filled, 5) > 0.5, SEGMENTATION_CLASSES[filled]


def test_camouflage_thin_classes_are_thinner():
    _, masks = ShapesSegmentation(n=50, size=64, seed=0, style="camouflage").tensors()
    for thin in (RING, LINE):
        assert _erosion_survival(masks, thin, 3) < 0.1, SEGMENTATION_CLASSES[thin]


def _bbox_extents(masks: torch.Tensor, classes, min_pixels: int = 30) -> list[int]:
    """Longer bounding-box side of every (scene, class) region of at least ``min_pixels`` pixels."""
    out = []
    for m in masks:
        for c in classes:
            ys, xs = torch.nonzero(m == c, as_tuple=True)
            if len(ys) >= min_pixels:
                out.append(int(max(ys.max() - ys.min(), xs.max() - xs.min())) + 1)
    return out


def test_objects_are_larger_than_a_stride_32_cell():
    """At 64x64 (the quick profile) most filled objects span more than 32 px: FCN-32s can place them."""
    _, masks = ShapesSegmentation(n=100, size=64, seed=2).tensors()
    ext = np.array(_bbox_extents(masks, (DISC, SQUARE, TRIANGLE)))
    assert len(ext) >= 60
    assert np.median(ext) > 32, np.median(ext)
    assert np.percentile(ext, 10) > 22
    # and they scale with the image: the same median fraction of the side at 128x128
    _, big = ShapesSegmentation(n=40, size=128, seed=2).tensors()
    assert np.median(_bbox_extents(big, (DISC, SQUARE, TRIANGLE))) > 64


def test_few_objects_per_scene(seg50):
    _, masks = seg50.tensors()
    classes_per_scene = [(m.unique() > 0).sum().item() for m in masks]
    assert 1 <= min(classes_per_scene) and max(classes_per_scene) <= 3


def test_ring_has_a_hole_and_disc_does_not():
    """The salient masks: a ring is a stroke at the radius, the disc covers the centre."""
    from segbook.data.synthetic import _salient_masks

    c = np.arange(64, dtype=np.float32) + 0.5 - 32.0
    v, u = np.meshgrid(c, c, indexing="ij")
    u, v = u[None], v[None]
    scale, half = np.array([16.0], np.float32), np.array([20.0], np.float32)
    ring = _salient_masks(RING, u, v, scale, half, np.float32(1.5))[0]
    disc = _salient_masks(DISC, u, v, scale, half, np.float32(1.5))[0]
    line = _salient_masks(LINE, u, v, scale, half, np.float32(1.5))[0]
    assert 0 < ring.sum() < disc.sum()
    assert disc[32, 32] and not ring[32, 32]
    assert not ring[25:40, 25:40].any()  # the hole is wide, not a pinprick
    assert ring[32, 32 + 16] and ring[32 - 16, 32]
    assert line.sum() == 4 * 40  # |u| <= 1.5 on pixel centres ±0.5, ±1.5: 4 columns; |v| <= 20: 40 rows
    with pytest.raises(ValueError, match="no salient mask"):
        _salient_masks(0, u, v, scale, half, np.float32(1.5))


def _region_mean_colours(images, masks, min_pixels=8):
    """Mean RGB of every (scene, class) region with at least ``min_pixels`` pixels."""
    onehot = F.one_hot(masks, len(SEGMENTATION_CLASSES)).permute(0, 3, 1, 2).float()  # [N, K, H, W]
    counts = onehot.sum((2, 3))  # [N, K]
    sums = torch.einsum("nchw,nkhw->nkc", images, onehot)  # [N, K, 3]
    scene, cls = torch.nonzero(counts >= min_pixels, as_tuple=True)
    feats = sums[scene, cls] / counts[scene, cls, None]
    return feats.numpy(), cls.numpy(), scene.numpy()


def _nearest_centroid_balanced_accuracy(feats, labels, scenes, classes):
    """Fit class centroids of region mean colours on even scenes, test on odd scenes."""
    keep = np.isin(labels, classes)
    feats, labels, scenes = feats[keep], labels[keep], scenes[keep]
    train = scenes % 2 == 0
    centroids = np.stack([feats[train & (labels == c)].mean(0) for c in classes])
    dist = ((feats[~train, None, :] - centroids[None]) ** 2).sum(-1)
    pred = np.asarray(classes)[dist.argmin(1)]
    truth = labels[~train]
    return float(np.mean([np.mean(pred[truth == c] == c) for c in classes]))


def test_objects_are_salient_but_colour_does_not_give_their_class(seg50):
    images, masks = seg50.tensors()
    # Salient: in every scene the objects are brighter on average than the background.
    lum = images.mean(1)
    fg = masks > 0
    diff = [(lum[i][fg[i]].mean() - lum[i][~fg[i]].mean()).item() for i in range(len(masks))]
    assert min(diff) > 0.0 and float(np.median(diff)) > 0.15, diff
    feats, labels, scenes = _region_mean_colours(images, masks)
    # A nearest-centroid classifier on region mean colour tells object from background ...
    assert _nearest_centroid_balanced_accuracy(feats, labels, scenes, [0, DISC]) > 0.8
    # ... but not one object class from another: per-class averages agree within a few hundredths,
    # and the accuracy over the five object classes is near chance (0.2).
    objects = [DISC, SQUARE, TRIANGLE, RING, LINE]
    overall = feats[labels > 0].mean(0)
    for c in objects:
        fc = feats[labels == c]
        assert len(fc) >= 8
        assert np.abs(fc.mean(0) - overall).max() < 0.1, (c, fc.mean(0), overall)
    assert _nearest_centroid_balanced_accuracy(feats, labels, scenes, objects) < 0.4


def test_camouflage_colour_does_not_determine_class():
    camo = ShapesSegmentation(n=50, size=64, seed=0, style="camouflage")
    images, masks = camo.tensors()
    feats, labels, scenes = _region_mean_colours(images, masks)
    # Same colour distribution for every class, background included: per-class averages of the
    # region mean colours agree within a few hundredths, and their spread across scenes is wide.
    overall = feats.mean(0)
    for c in range(6):
        fc = feats[labels == c]
        assert len(fc) >= 10
        assert np.abs(fc.mean(0) - overall).max() < 0.1, (c, fc.mean(0), overall)
        assert fc.std(0).min() > 0.12
    # A nearest-centroid classifier on region colour is near chance on held-out scenes ...
    acc_disc_bg = _nearest_centroid_balanced_accuracy(feats, labels, scenes, [0, DISC])
    acc_all = _nearest_centroid_balanced_accuracy(feats, labels, scenes, list(range(6)))
    assert acc_disc_bg < 0.65, acc_disc_bg
    assert acc_all < 0.35, acc_all  # chance is 1/6
    # ... while the same check does catch a colour cue when one is planted (positive control).
    tinted = torch.where((masks == DISC).unsqueeze(1), 0.5 * images + 0.5, images)
    f2, l2, s2 = _region_mean_colours(tinted, masks)
    assert _nearest_centroid_balanced_accuracy(f2, l2, s2, [0, DISC]) > 0.8


def test_render_scenes_batch_equals_one_by_one():
    images, masks = render_scenes(3, [4, 0, 9], 48)
    assert images.shape == (3, 3, 48, 48) and images.dtype == np.float32
    assert masks.shape == (3, 48, 48) and masks.dtype == np.int64
    for row, i in enumerate((4, 0, 9)):
        img, mask = render_scene(3, i, 48)
        assert np.array_equal(mask, masks[row])
        assert np.abs(img - images[row]).max() < 1e-5
    empty_images, empty_masks = render_scenes(0, [], 32)
    assert empty_images.shape == (0, 3, 32, 32) and empty_masks.shape == (0, 32, 32)


def test_styles_and_their_errors():
    for style in SCENE_STYLES:
        image, mask = render_scene(0, 1, 32, style=style)
        assert image.shape == (3, 32, 32) and 0 <= mask.min() <= mask.max() < len(SEGMENTATION_CLASSES)
    salient, _ = render_scene(0, 1, 32)
    camo, camo_mask = render_scene(0, 1, 32, style="camouflage")
    assert not np.allclose(salient, camo)
    assert camo.shape == (3, 32, 32) and camo_mask.shape == (32, 32)
    assert len(np.unique(render_scene(0, 1, 32, max_objects=1)[1])) <= 2
    with pytest.raises(ValueError, match="style must be one of"):
        render_scene(0, 0, 32, style="hard")
    with pytest.raises(ValueError, match="style must be one of"):
        ShapesSegmentation(n=1, size=32, style="camo")
    with pytest.raises(ValueError, match="max_objects must be a positive int"):
        render_scene(0, 0, 32, max_objects=0)
    with pytest.raises(ValueError, match="scene indices must be >= 0"):
        render_scenes(0, [-1], 32)
    assert repr(ShapesSegmentation(n=2, size=32, style="camouflage")) == \
        "ShapesSegmentation(n=2, size=32, seed=0, classes=6, style='camouflage')"


def test_dataset_renders_in_chunks_like_one_batch(monkeypatch):
    """Scenes rendered in chunks (the dataset) equal those rendered all at once."""
    monkeypatch.setattr(ShapesSegmentation, "_CHUNK", 3)
    ds = ShapesSegmentation(n=7, size=32, seed=4)
    images, masks = render_scenes(4, range(7), 32)
    assert torch.equal(ds.tensors()[1], torch.from_numpy(masks))
    assert (ds.tensors()[0] - torch.from_numpy(images)).abs().max() <= 0.5 / 255 + 1e-5


def test_classification_labels_balanced():
    ds = ShapesClassification(n=40, size=16, seed=2)
    _, labels = ds.tensors()
    assert torch.equal(labels, torch.arange(40) % 10)
    assert torch.bincount(labels, minlength=10).tolist() == [4] * 10
    _, labels = ShapesClassification(n=25, size=16).tensors()
    counts = torch.bincount(labels, minlength=10)
    assert counts.max() - counts.min() <= 1


def test_classification_images_differ_within_a_class(cls30):
    images, labels = cls30.tensors()
    assert labels[0] == labels[10] == labels[20]
    assert not torch.equal(images[0], images[10])


# ---------------------------------------------------------------------------------------------
# transform hook
# ---------------------------------------------------------------------------------------------
def test_segmentation_transform_is_applied():
    calls = []

    def flip(image, mask):
        calls.append((image.shape, mask.dtype))
        return image.flip(-1), mask.flip(-1)

    plain = ShapesSegmentation(n=3, size=32, seed=1)
    aug = ShapesSegmentation(n=3, size=32, seed=1, transform=flip)
    image, mask = aug[2]
    assert calls == [((3, 32, 32), torch.int64)]
    assert torch.equal(image, plain[2][0].flip(-1))
    assert torch.equal(mask, plain[2][1].flip(-1))
    # tensors() bypasses the transform
    assert torch.equal(aug.tensors()[1], plain.tensors()[1])
    assert len(calls) == 1


def test_transform_cannot_corrupt_the_stored_item():
    def scribble(image, mask):
        image.zero_()
        mask.fill_(3)
        return image, mask

    ds = ShapesSegmentation(n=1, size=32, seed=0, transform=scribble)
    before_img, before_mask = ds.tensors()
    ds[0]
    after_img, after_mask = ds.tensors()
    assert torch.equal(before_img, after_img)
    assert torch.equal(before_mask, after_mask)


def test_classification_transform_is_applied():
    plain = ShapesClassification(n=2, size=16, seed=0)
    aug = ShapesClassification(n=2, size=16, seed=0, transform=lambda x: 1.0 - x)
    image, label = aug[1]
    assert torch.allclose(image, 1.0 - plain[1][0])
    assert int(label) == 1


# ---------------------------------------------------------------------------------------------
# make_loader
# ---------------------------------------------------------------------------------------------
def _order(loader):
    return torch.cat([b[0] for b in loader]).tolist()


def test_make_loader_without_shuffle_keeps_order():
    ds = TensorDataset(torch.arange(10))
    loader = make_loader(ds, batch_size=4)
    batches = [b[0].tolist() for b in loader]
    assert batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert len(make_loader(ds, batch_size=4, drop_last=True)) == 2


def test_make_loader_same_seed_same_order():
    ds = TensorDataset(torch.arange(40))
    a = _order(make_loader(ds, batch_size=8, shuffle=True, seed=3))
    b = _order(make_loader(ds, batch_size=8, shuffle=True, seed=3))
    assert a == b
    assert sorted(a) == list(range(40))
    assert a != list(range(40))


def test_make_loader_different_seed_different_order():
    ds = TensorDataset(torch.arange(40))
    a = _order(make_loader(ds, batch_size=8, shuffle=True, seed=0))
    b = _order(make_loader(ds, batch_size=8, shuffle=True, seed=1))
    assert a != b
    assert sorted(a) == sorted(b)


def test_make_loader_order_does_not_depend_on_global_rng():
    ds = TensorDataset(torch.arange(30))
    torch.manual_seed(0)
    a = _order(make_loader(ds, batch_size=5, shuffle=True, seed=9))
    torch.manual_seed(1234)
    torch.rand(100)
    b = _order(make_loader(ds, batch_size=5, shuffle=True, seed=9))
    assert a == b


def test_make_loader_epochs_reshuffle():
    ds = TensorDataset(torch.arange(40))
    loader = make_loader(ds, batch_size=8, shuffle=True, seed=0)
    assert _order(loader) != _order(loader)


def test_make_loader_on_shape_dataset():
    ds = ShapesSegmentation(n=6, size=32, seed=0)
    batches = list(make_loader(ds, batch_size=4, shuffle=True, seed=0))
    again = list(make_loader(ds, batch_size=4, shuffle=True, seed=0))
    assert [b[0].shape for b in batches] == [(4, 3, 32, 32), (2, 3, 32, 32)]
    assert batches[0][1].shape == (4, 32, 32) and batches[0][1].dtype == torch.int64
    for (xa, ya), (xb, yb) in zip(batches, again):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [ShapesSegmentation, ShapesClassification])
def test_bad_n(cls):
    with pytest.raises(ValueError, match="n must be >= 1"):
        cls(n=0)
    with pytest.raises(ValueError, match="n must be >= 1"):
        cls(n=-5)
    for bad in (2.0, True, "3", None):
        with pytest.raises(TypeError, match="n must be an int"):
            cls(n=bad)


def test_bad_size():
    with pytest.raises(ValueError, match="size must be an int >= 32"):
        ShapesSegmentation(n=1, size=16)
    with pytest.raises(ValueError, match="size must be an int >= 16"):
        ShapesClassification(n=1, size=8)
    for bad in (32.0, True, "64"):  # not an int at all: TypeError (segbook.checks)
        with pytest.raises(TypeError, match="size must be an int"):
            ShapesSegmentation(n=1, size=bad)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "8", None])
def test_make_loader_bad_batch_size(bad):
    ds = TensorDataset(torch.arange(4))
    error = ValueError if type(bad) is int else TypeError  # out of range / not an int (segbook.checks)
    with pytest.raises(error, match="batch_size must be a positive int"):
        make_loader(ds, batch_size=bad)


def test_make_loader_empty_dataset():
    with pytest.raises(ValueError, match="dataset is empty"):
        make_loader(TensorDataset(torch.empty(0)), batch_size=2)


def test_classification_objects_are_brighter_than_their_background():
    """The design property that makes ShapesClassification learnable: fixed polarity."""
    images, labels, cover = render_shape_images(3, range(40), 32, return_masks=True)
    assert labels.tolist() == [i % 10 for i in range(40)]
    for i, (img, obj) in enumerate(zip(images, cover)):
        luminance = img.mean(axis=0)
        inside, outside = obj > 0.99, obj < 0.01
        assert inside.sum() >= 4, f"image {i}: the object covers almost nothing"
        assert luminance[inside].mean() > luminance[outside].mean() + 0.1, f"image {i}: object not brighter"


def test_render_shape_images_matches_single_items_in_any_batch():
    """Item i depends only on (seed, i): the same in a batch, alone, and in another order."""
    batch, labels = render_shape_images(7, [4, 0, 13], 24)
    assert batch.shape == (3, 3, 24, 24) and batch.dtype == np.float32 and labels.dtype == np.int64
    for img, label, i in zip(batch, labels, (4, 0, 13)):
        single, single_label = render_shape_image(7, i, 24)
        assert np.array_equal(img, single) and label == single_label == i % 10
    again, _ = render_shape_images(7, [13, 4], 24)
    assert np.array_equal(again[0], batch[2]) and np.array_equal(again[1], batch[0])


def test_render_shape_images_anti_aliased_coverage_and_shape_topology():
    _, labels, cover = render_shape_images(0, range(200), 32, return_masks=True)
    assert cover.min() >= 0.0 and cover.max() <= 1.0
    partial = (cover > 0.05) & (cover < 0.95)
    assert partial.any(axis=(1, 2)).all(), "every object should have soft (anti-aliased) edge pixels"
    area = cover.sum(axis=(1, 2))
    mean_area = {CLASSIFICATION_CLASSES[k]: area[labels == k].mean() for k in range(10)}
    # filled shapes cover more than their outlines of the same nominal size
    assert mean_area["disc"] > 2 * mean_area["ring"]
    assert mean_area["square"] > 2 * mean_area["frame"]
    assert mean_area["disc"] > mean_area["crescent"]


def test_render_shape_images_errors():
    with pytest.raises(ValueError, match="non-negative"):
        render_shape_images(0, [-1], 16)
    with pytest.raises(ValueError, match="size must be an int >= 8"):
        render_shape_images(0, [0], 4)
    images, labels = render_shape_images(0, [], 16)
    assert images.shape == (0, 3, 16, 16) and labels.shape == (0,)


def test_stroke_width_scales_with_the_scene_size():
    from segbook.data import stroke_width

    assert [stroke_width(s) for s in (64, 80, 128)] == [4.0, 5.0, 8.0]
    with pytest.raises(ValueError):
        stroke_width(0)
    # the rendered line class is about that wide: its area over its length (the longest extent)
    for size in (64, 128):
        ds = ShapesSegmentation(48, size=size, seed=0)
        k = SEGMENTATION_CLASSES.index("line")
        widths = []
        for i in range(len(ds)):
            m = ds[i][1] == k
            if m.sum() < 2 * size:   # skip scenes without a sizeable, unoccluded line
                continue
            ys, xs = m.nonzero(as_tuple=True)
            length = float(((ys.max() - ys.min()) ** 2 + (xs.max() - xs.min()) ** 2) ** 0.5) + 1
            widths.append(float(m.sum()) / length)
        assert widths, "no line in 48 scenes"
        median = sorted(widths)[len(widths) // 2]
        assert 0.7 * stroke_width(size) < median < 1.3 * stroke_width(size), (size, median)
