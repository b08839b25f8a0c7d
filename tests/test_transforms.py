"""Tests for segbook.data.transforms: joint image+mask augmentation and the CIFAR-style crop."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from segbook.constants import IGNORE_INDEX
from segbook.data.transforms import (
    ClassificationAugment,
    SegmentationAugment,
    SegmentationEval,
    check_segmentation_pair,
)


def block_mask(h: int = 64, w: int = 64) -> torch.Tensor:
    """Large blocks of classes 1..4 on 0, different left/right and top/bottom (no symmetry)."""
    m = torch.zeros(h, w, dtype=torch.int64)
    m[: h // 2, : w // 3] = 1
    m[: h // 2, w // 2 :] = 2
    m[h // 2 :, w // 4 : 3 * w // 4] = 3
    m[h // 8 : h // 4, 3 * w // 4 :] = 4
    return m


def encode(mask: torch.Tensor) -> torch.Tensor:
    """An image whose channel 0 is the mask (class k -> k / 10) and whose other channels are noise."""
    g = torch.Generator().manual_seed(1)
    image = torch.rand(3, *mask.shape, generator=g)
    image[0] = mask.float() / 10
    return image


def decode(image: torch.Tensor) -> torch.Tensor:
    return torch.round(image[0] * 10).long()


GEOMETRY_ONLY = dict(color_jitter=None)


# ----------------------------------------------------------------------------------------------
# SegmentationAugment
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("hw", [(64, 64), (48, 80), (100, 30), (20, 20)])
def test_augment_shapes_and_dtypes(hw):
    aug = SegmentationAugment(32, rotate=15)
    torch.manual_seed(0)
    image, mask = aug(torch.rand(3, *hw), torch.randint(0, 6, hw))
    assert type(image) is torch.Tensor and type(mask) is torch.Tensor  # plain tensors, not tv_tensors
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert mask.shape == (32, 32) and mask.dtype == torch.int64
    assert 0.0 <= image.min() and image.max() <= 1.0


def test_mask_never_interpolated():
    """Mask values after any augmentation are input values or the ignore index, nothing in between."""
    values = torch.tensor([0, 2, 5, 7])
    g = torch.Generator().manual_seed(0)
    mask = values[torch.randint(0, 4, (40, 56), generator=g)]  # salt and pepper: worst case
    image = torch.rand(3, 40, 56, generator=g)
    aug = SegmentationAugment(48, scale=(0.5, 1.5), rotate=35)
    allowed = set(values.tolist()) | {IGNORE_INDEX}
    seen_ignore = False
    for seed in range(12):
        torch.manual_seed(seed)
        _, out = aug(image, mask)
        got = set(out.unique().tolist())
        assert got <= allowed, f"seed {seed}: new mask values {got - allowed}"
        seen_ignore |= IGNORE_INDEX in got
    assert seen_ignore  # rotation/shrinking did bring in padded areas


def test_scale_down_pads_with_ignore_and_black():
    """Shrink a 64x64 pair to 32x32 in a 64x64 window: exactly 64^2 - 32^2 padded pixels."""
    mask = block_mask()
    image = encode(mask)
    aug = SegmentationAugment(64, scale=(0.5, 0.5), hflip=False, **GEOMETRY_ONLY)
    for seed in range(4):
        torch.manual_seed(seed)
        out_image, out_mask = aug(image, mask)
        pad = out_mask == IGNORE_INDEX
        assert int(pad.sum()) == 64 * 64 - 32 * 32
        assert torch.all(out_image[:, pad] == 0)
        rows, cols = torch.nonzero(~pad, as_tuple=True)
        top, left = int(rows.min()), int(cols.min())
        content = out_mask[top : top + 32, left : left + 32]
        assert torch.equal(content, mask[1::2, 1::2])  # nearest-exact: the pixel under each centre


def test_custom_ignore_index():
    mask = block_mask()
    aug = SegmentationAugment(64, scale=(0.5, 0.5), ignore_index=-1, **GEOMETRY_ONLY)
    torch.manual_seed(0)
    _, out = aug(encode(mask), mask)
    assert int((out == -1).sum()) == 64 * 64 - 32 * 32
    assert IGNORE_INDEX not in out.unique().tolist()


def test_hflip_moves_image_and_mask_together():
    mask = block_mask()
    image = encode(mask)
    aug = SegmentationAugment(64, scale=None, **GEOMETRY_ONLY)  # flip is the only random step
    outcomes = set()
    for seed in range(16):
        torch.manual_seed(seed)
        out_image, out_mask = aug(image, mask)
        if torch.equal(out_mask, mask):
            assert torch.equal(out_image, image)
            outcomes.add("kept")
        else:
            assert torch.equal(out_mask, mask.flip(-1))
            assert torch.equal(out_image, image.flip(-1))
            outcomes.add("flipped")
    assert outcomes == {"kept", "flipped"}


def interior(mask: torch.Tensor) -> torch.Tensor:
    """Pixels whose 3x3 neighbourhood has a single mask value (away from class boundaries)."""
    m = mask.float()[None, None]
    return (F.max_pool2d(m, 3, 1, 1) == -F.max_pool2d(-m, 3, 1, 1))[0, 0]


@pytest.mark.parametrize("rotate", [0.0, 25.0])
def test_image_and_mask_share_the_geometry(rotate):
    """Channel 0 of the image encodes the mask; after scale + rotation + crop + flip it still does.

    Bilinear resampling blends the image across class boundaries, so agreement is checked away
    from boundaries, where it must be (almost) perfect.
    """
    mask = block_mask(64, 80)
    image = encode(mask)
    aug = SegmentationAugment(48, scale=(0.6, 1.4), rotate=rotate, **GEOMETRY_ONLY)
    for seed in range(8):
        torch.manual_seed(seed)
        out_image, out_mask = aug(image, mask)
        inside = interior(out_mask)
        valid = out_mask != IGNORE_INDEX
        agree = (decode(out_image) == out_mask)[inside & valid].float().mean().item()
        assert agree > 0.99, f"seed {seed}: only {agree:.3f} of the interior pixels agree"
        mirrored = (decode(out_image) == out_mask.flip(-1))[inside & valid].float().mean().item()
        assert mirrored < 0.9  # the check is sensitive to a misaligned mask
        padded = inside & ~valid  # deep inside a padded area, the image is exactly black
        assert torch.all(out_image[:, padded] == 0), f"seed {seed}"
        overall = (decode(out_image) == out_mask)[valid].float().mean().item()
        assert overall > 0.85, f"seed {seed}: only {overall:.3f} of the labelled pixels agree"


def test_color_jitter_touches_the_image_only():
    mask = block_mask()
    image = encode(mask)
    aug = SegmentationAugment(64, scale=None, hflip=False, color_jitter=(0.5, 0.5, 0.5, 0.1))
    torch.manual_seed(0)
    out_image, out_mask = aug(image, mask)
    assert torch.equal(out_mask, mask)
    assert not torch.allclose(out_image, image)
    assert 0.0 <= out_image.min() and out_image.max() <= 1.0


def test_augment_deterministic_under_seed():
    g = torch.Generator().manual_seed(3)
    image, mask = torch.rand(3, 50, 70, generator=g), torch.randint(0, 6, (50, 70), generator=g)
    aug = SegmentationAugment(40, rotate=20, color_jitter=(0.3, 0.3, 0.3, 0.05))

    def run(seed):
        torch.manual_seed(seed)
        return [aug(image, mask) for _ in range(3)]

    first, again, other = run(7), run(7), run(8)
    for (a_img, a_mask), (b_img, b_mask) in zip(first, again):
        assert torch.equal(a_img, b_img) and torch.equal(a_mask, b_mask)
    assert any(not torch.equal(a[0], b[0]) for a, b in zip(first, other))


def test_augment_does_not_modify_its_input():
    mask = block_mask()
    image = encode(mask)
    image_copy, mask_copy = image.clone(), mask.clone()
    torch.manual_seed(0)
    SegmentationAugment(48, rotate=10)(image, mask)
    assert torch.equal(image, image_copy) and torch.equal(mask, mask_copy)


def test_augment_in_a_dataset_and_loader():
    from torch.utils.data import DataLoader

    from segbook.data import ShapesSegmentation

    ds = ShapesSegmentation(n=4, size=32, seed=0, transform=SegmentationAugment(24, rotate=10))
    images, masks = next(iter(DataLoader(ds, batch_size=4)))
    assert images.shape == (4, 3, 24, 24) and masks.shape == (4, 24, 24)
    assert set(masks.unique().tolist()) <= set(range(ds.num_classes)) | {IGNORE_INDEX}


BAD_PAIRS = [
    (lambda: (torch.rand(64, 64), torch.zeros(64, 64, dtype=torch.long)), ValueError, r"\[3, H, W\]"),
    (lambda: (torch.rand(1, 64, 64), torch.zeros(64, 64, dtype=torch.long)), ValueError, r"\[3, H, W\]"),
    (lambda: (torch.randint(0, 255, (3, 8, 8), dtype=torch.uint8), torch.zeros(8, 8, dtype=torch.long)),
     TypeError, r"float32.*image\.float\(\) / 255"),
    (lambda: (torch.rand(3, 8, 8, dtype=torch.float64), torch.zeros(8, 8, dtype=torch.long)), TypeError, "float32"),
    (lambda: (torch.rand(3, 8, 8), torch.zeros(8, 8)), TypeError, "int64"),
    (lambda: (torch.rand(3, 8, 8), torch.zeros(8, 8, dtype=torch.uint8)), TypeError, "int64"),
    (lambda: (torch.rand(3, 8, 8), torch.zeros(1, 8, 8, dtype=torch.long)), ValueError, r"\[H, W\].*squeeze"),
    (lambda: (torch.rand(3, 8, 8), torch.zeros(8, 9, dtype=torch.long)), ValueError, "sizes differ"),
    (lambda: ([[0.0]], torch.zeros(8, 8, dtype=torch.long)), TypeError, "tensor"),
    (lambda: (torch.rand(3, 8, 8), None), TypeError, "int64 tensor"),
]


@pytest.mark.parametrize("make, error, message", BAD_PAIRS)
@pytest.mark.parametrize("transform", [SegmentationAugment(8), SegmentationEval(8)], ids=["augment", "eval"])
def test_bad_inputs_say_what_was_expected(transform, make, error, message):
    image, mask = make()
    with pytest.raises(error, match=message):
        transform(image, mask)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(size=0), ValueError, "size"),
        (dict(size=32.0), TypeError, "size"),  # a value of the wrong type: TypeError, as Python's own
        (dict(size=32, scale=(1.2, 0.8)), ValueError, "scale"),
        (dict(size=32, scale=(0.0, 1.0)), ValueError, "scale"),
        (dict(size=32, scale=0.5), ValueError, "scale"),
        (dict(size=32, rotate=-5), ValueError, "rotate"),
        (dict(size=32, color_jitter=(0.1, 0.2)), ValueError, "color_jitter"),
        (dict(size=32, color_jitter=(0.1, 0.1, 0.1, 0.9)), ValueError, "hue"),
        (dict(size=32, ignore_index=1.5), TypeError, "ignore_index"),
    ],
)
def test_bad_arguments(kwargs, error, message):
    size = kwargs.pop("size")
    with pytest.raises(error, match=message):
        SegmentationAugment(size, **kwargs)


def test_repr_lists_the_settings():
    text = repr(SegmentationAugment(64, rotate=10, color_jitter=0.1))
    assert "size=64" in text and "rotate=10.0" in text and "(0.1, 0.1, 0.1, 0.0)" in text
    assert repr(SegmentationEval(32)) == "SegmentationEval(size=32)"


def test_check_segmentation_pair_accepts_a_valid_pair():
    check_segmentation_pair(torch.rand(3, 5, 7), torch.zeros(5, 7, dtype=torch.long))


# ----------------------------------------------------------------------------------------------
# SegmentationEval
# ----------------------------------------------------------------------------------------------
def test_eval_resizes_with_nearest_mask_and_is_deterministic():
    mask = block_mask()
    image = encode(mask)
    ev = SegmentationEval(32)
    out_image, out_mask = ev(image, mask)
    assert out_image.shape == (3, 32, 32) and out_image.dtype == torch.float32
    assert out_mask.shape == (32, 32) and out_mask.dtype == torch.int64
    assert torch.equal(out_mask, mask[1::2, 1::2])  # nearest-exact, no half-pixel shift
    again = ev(image, mask)
    assert torch.equal(again[0], out_image) and torch.equal(again[1], out_mask)


def test_eval_rectangular_size_and_identity():
    mask = block_mask(48, 80)
    image = encode(mask)
    out_image, out_mask = SegmentationEval((24, 40))(image, mask)
    assert out_image.shape == (3, 24, 40) and out_mask.shape == (24, 40)
    assert set(out_mask.unique().tolist()) <= set(mask.unique().tolist())
    same_image, same_mask = SegmentationEval((48, 80))(image, mask)
    assert torch.equal(same_image, image) and torch.equal(same_mask, mask)
    with pytest.raises(ValueError, match="size"):
        SegmentationEval((1, 2, 3))


def test_eval_upsampling_keeps_mask_values():
    g = torch.Generator().manual_seed(0)
    mask = torch.tensor([0, 3, 9, 255])[torch.randint(0, 4, (13, 17), generator=g)]
    _, out = SegmentationEval(50)(torch.rand(3, 13, 17, generator=g), mask)
    assert set(out.unique().tolist()) == {0, 3, 9, 255}


# ----------------------------------------------------------------------------------------------
# ClassificationAugment
# ----------------------------------------------------------------------------------------------
def _is_shifted_or_flipped_crop(out: torch.Tensor, image: torch.Tensor, padding: int) -> bool:
    padded = torch.nn.functional.pad(image, [padding] * 4)
    size = out.shape[-1]
    for top in range(2 * padding + 1):
        for left in range(2 * padding + 1):
            window = padded[:, top : top + size, left : left + size]
            if torch.equal(out, window) or torch.equal(out, window.flip(-1)):
                return True
    return False


def test_classification_augment_is_a_padded_crop_with_flip():
    g = torch.Generator().manual_seed(0)
    image = torch.rand(3, 32, 32, generator=g) * 0.9 + 0.1  # no zeros: padding is recognisable
    aug = ClassificationAugment(32, padding=4)
    torch.manual_seed(0)
    outs = [aug(image) for _ in range(8)]
    for out in outs:
        assert out.shape == (3, 32, 32) and out.dtype == torch.float32 and type(out) is torch.Tensor
        assert _is_shifted_or_flipped_crop(out, image, 4)
    assert any((out == 0).any() for out in outs)  # some crops reach into the zero padding


def test_classification_augment_deterministic_and_keeps_dtype():
    image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    aug = ClassificationAugment()
    torch.manual_seed(5)
    a = aug(image)
    torch.manual_seed(5)
    b = aug(image)
    assert a.dtype == torch.uint8 and torch.equal(a, b)
    assert ClassificationAugment(24, padding=0)(torch.rand(3, 20, 20)).shape == (3, 24, 24)  # padded as needed


def test_classification_augment_errors():
    with pytest.raises(ValueError, match=r"\[C, H, W\]"):
        ClassificationAugment()(torch.rand(32, 32))
    with pytest.raises(TypeError, match="tensor"):
        ClassificationAugment()(None)
    with pytest.raises(ValueError, match="padding"):
        ClassificationAugment(32, padding=-1)
    with pytest.raises(ValueError, match="size"):
        ClassificationAugment(0)


# ----------------------------------------------------------------------------------------------
# Elastic deformation and vertical flips (U-Net's augmentation)
# ----------------------------------------------------------------------------------------------
from segbook.data.transforms import elastic_deform, elastic_displacement  # noqa: E402


def test_elastic_displacement_shape_smoothness_and_scale():
    g = torch.Generator().manual_seed(0)
    field = elastic_displacement((64, 48), grid=3, std=10.0, generator=g)
    assert field.shape == (64, 48, 2)
    # Smooth: neighbouring pixels move by far less than the field's spread.
    step = (field[1:] - field[:-1]).abs().max()
    assert step < 0.2 * field.std()
    # Corners are control points: over many draws their displacement has the given std.
    corners = torch.stack([elastic_displacement((16, 16), grid=3, std=10.0, generator=g)[0, 0] for _ in range(400)])
    assert 8.5 < corners.std().item() < 11.5
    assert elastic_displacement((8, 8), grid=2, std=0.0).abs().max() == 0


def test_elastic_deform_zero_field_is_identity_and_same_field_for_both():
    mask = block_mask()
    image = torch.stack([mask.float() / 4] * 3)
    same_image, same_mask = elastic_deform(image, mask, torch.zeros(64, 64, 2))
    torch.testing.assert_close(same_image, image)
    assert torch.equal(same_mask, mask)
    # A uniform shift of 5 pixels to the left (sample at x + 5) moves image and mask together.
    shift = torch.zeros(64, 64, 2)
    shift[..., 0] = 5.0
    img2, mask2 = elastic_deform(image, mask, shift)
    assert torch.equal(mask2[:, :50], mask[:, 5:55])
    torch.testing.assert_close(img2[:, :, :50], image[:, :, 5:55])


def test_elastic_mask_keeps_labels_and_follows_image():
    torch.manual_seed(0)
    mask = block_mask()
    image = torch.stack([mask.float() / 4] * 3)
    field = elastic_displacement((64, 64), grid=4, std=4.0)
    img2, mask2 = elastic_deform(image, mask, field)
    assert mask2.dtype == torch.int64 and set(mask2.unique().tolist()) <= set(mask.unique().tolist())
    assert not torch.equal(mask2, mask)
    # Away from label edges the bilinear image and the nearest mask agree: the image encodes the label.
    agree = (img2[0] * 4).round().long() == mask2
    assert agree.float().mean() > 0.95


def test_augment_with_elastic_and_vflip():
    torch.manual_seed(0)
    aug = SegmentationAugment(64, scale=None, color_jitter=None, hflip=False, vflip=True, elastic=(4, 3.0))
    mask = block_mask()
    image = torch.stack([mask.float() / 4] * 3)
    outs = [aug(image, mask) for _ in range(8)]
    for img, m in outs:
        assert img.shape == (3, 64, 64) and m.shape == (64, 64) and m.dtype == torch.int64
        assert set(m.unique().tolist()) <= set(mask.unique().tolist())
        assert ((img[0] * 4).round().long() == m).float().mean() > 0.95
    assert len({tuple(m.flatten()[:: 97].tolist()) for _, m in outs}) > 1
    assert "elastic=(4, 3.0)" in repr(aug) and "vflip=True" in repr(aug)


@pytest.mark.parametrize("bad", [(1, 3.0), (4, -1.0), (4.5, 2.0), "x", (4,)])
def test_augment_rejects_bad_elastic(bad):
    with pytest.raises(ValueError, match="elastic"):
        SegmentationAugment(64, elastic=bad)


def test_elastic_deform_checks_field_shape():
    with pytest.raises(ValueError, match="displacement"):
        elastic_deform(torch.rand(3, 8, 8), torch.zeros(8, 8, dtype=torch.int64), torch.zeros(8, 9, 2))


# ----------------------------------------------------------------------------------------------
# Batched colour jitter, elastic deformation and flips
# ----------------------------------------------------------------------------------------------
from torchvision.transforms.v2 import functional as TVF  # noqa: E402

from segbook.data.transforms import (  # noqa: E402
    adjust_colors,
    check_segmentation_batch,
    elastic_deform,
    elastic_displacement,
    hsv_to_rgb,
    rgb_to_hsv,
)


def _colour_batch(n: int = 6, size: int = 12) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    images = torch.rand(n, 3, size, size, generator=g)
    images[0] = 0.5          # grey: no hue
    images[1, :, :2] = 0.0   # black rows: no saturation
    images[2, 0] = images[2, 1]  # red = green: ties in the maximum
    return images


@pytest.mark.parametrize("step, reference, low, high", [
    ("brightness", TVF.adjust_brightness, 0.3, 1.7),
    ("contrast", TVF.adjust_contrast, 0.3, 1.7),
    ("saturation", TVF.adjust_saturation, 0.0, 2.0),
    ("hue", TVF.adjust_hue, -0.5, 0.5),
])
def test_adjust_colors_matches_torchvision_step_by_step(step, reference, low, high):
    images = _colour_batch()
    factors = torch.linspace(low, high, images.shape[0])
    out = adjust_colors(images, **{step: factors})
    expected = torch.stack([reference(x, float(f)) for x, f in zip(images, factors)])
    torch.testing.assert_close(out, expected, atol=2e-5, rtol=0)


def test_adjust_colors_applies_the_steps_in_a_fixed_order():
    images = _colour_batch()
    n = images.shape[0]
    f = dict(brightness=torch.full((n,), 1.3), contrast=torch.full((n,), 0.7),
             saturation=torch.full((n,), 1.5), hue=torch.full((n,), 0.2))
    x = images
    for step, reference in (("brightness", TVF.adjust_brightness), ("contrast", TVF.adjust_contrast),
                            ("saturation", TVF.adjust_saturation), ("hue", TVF.adjust_hue)):
        x = torch.stack([reference(im, float(v)) for im, v in zip(x, f[step])])
    torch.testing.assert_close(adjust_colors(images, **f), x, atol=5e-5, rtol=0)
    assert torch.equal(adjust_colors(images), images)  # no factors: unchanged


def test_hsv_round_trip_and_known_colours():
    images = _colour_batch()
    torch.testing.assert_close(hsv_to_rgb(rgb_to_hsv(images)), images, atol=1e-5, rtol=0)
    rgb = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [0.5, 0.5, 0.5], [0, 0, 0]]).view(5, 3, 1, 1)
    hsv = rgb_to_hsv(rgb).view(5, 3)
    torch.testing.assert_close(hsv[:, 0], torch.tensor([0, 1 / 3, 2 / 3, 0, 0]))
    torch.testing.assert_close(hsv[:, 1], torch.tensor([1.0, 1, 1, 0, 0]))
    torch.testing.assert_close(hsv[:, 2], torch.tensor([1.0, 1, 1, 0.5, 0]))


@pytest.mark.parametrize("images, kw, error, message", [
    (torch.rand(3, 8, 8), {}, ValueError, r"\[B, 3, H, W\]"),
    (torch.randint(0, 255, (2, 3, 8, 8)), {}, TypeError, "float"),
    (torch.rand(2, 3, 8, 8), {"hue": torch.zeros(3)}, ValueError, r"one factor per image, a tensor \[2\]"),
])
def test_adjust_colors_bad_input(images, kw, error, message):
    with pytest.raises(error, match=message):
        adjust_colors(images, **kw)


def test_elastic_batch_equals_pair_by_pair():
    mask = block_mask(24, 24)
    images = torch.stack([encode(mask), encode(mask.flip(-1))])
    masks = torch.stack([mask, mask.flip(-1)])
    torch.manual_seed(5)
    fields = elastic_displacement((24, 24), grid=3, std=3.0, n=2)
    assert fields.shape == (2, 24, 24, 2)
    warped, warped_masks = elastic_deform(images, masks, fields)
    for k in range(2):
        one_image, one_mask = elastic_deform(images[k], masks[k], fields[k])
        torch.testing.assert_close(warped[k], one_image)
        assert torch.equal(warped_masks[k], one_mask)
    torch.manual_seed(5)
    single = elastic_displacement((24, 24), grid=3, std=3.0)
    torch.manual_seed(5)
    assert torch.equal(elastic_displacement((24, 24), grid=3, std=3.0, n=1)[0], single)
    with pytest.raises(ValueError, match=r"\[2, 24, 24, 2\]"):
        elastic_deform(images, masks, fields[0])


def test_augment_batch_of_one_is_the_pair_call():
    mask = block_mask(32, 32)
    image = encode(mask)
    aug = SegmentationAugment(32, scale=None, vflip=True, elastic=(3, 2.0), color_jitter=(0.3, 0.3, 0.3, 0.2))
    torch.manual_seed(7)
    one = aug(image, mask)
    torch.manual_seed(7)
    batch = aug.batch(image[None], mask[None])
    torch.testing.assert_close(batch[0][0], one[0])
    assert torch.equal(batch[1][0], one[1])


def test_augment_batch_flips_each_pair_on_its_own_draw():
    mask = block_mask(32, 32)
    images = encode(mask)[None].repeat(64, 1, 1, 1)
    masks = mask[None].repeat(64, 1, 1)
    aug = SegmentationAugment(32, scale=None, **GEOMETRY_ONLY)  # flip is the only random step
    torch.manual_seed(0)
    out_images, out_masks = aug.batch(images, masks)
    flipped = [torch.equal(m, mask.flip(-1)) for m in out_masks]
    assert all(f or torch.equal(m, mask) for f, m in zip(flipped, out_masks))
    assert 16 < sum(flipped) < 48  # about half, drawn per pair
    for x, m in zip(out_images, out_masks):
        assert torch.equal(decode(x), m)  # the image moved with its mask


def test_augment_batch_with_geometry_keeps_labels_and_sizes():
    mask = block_mask(40, 40)
    images = torch.stack([encode(mask)] * 4)
    masks = torch.stack([mask] * 4)
    aug = SegmentationAugment(32, scale=(0.6, 1.4), rotate=20, elastic=(3, 2.0))
    torch.manual_seed(1)
    out_images, out_masks = aug.batch(images, masks)
    assert out_images.shape == (4, 3, 32, 32) and out_masks.shape == (4, 32, 32)
    assert set(out_masks.unique().tolist()) <= set(mask.unique().tolist()) | {IGNORE_INDEX}
    assert 0 <= out_images.min() and out_images.max() <= 1


@pytest.mark.parametrize("images, masks, error, message", [
    (torch.rand(3, 8, 8), torch.zeros(1, 8, 8, dtype=torch.long), ValueError, r"\[B, 3, H, W\]"),
    (torch.rand(1, 3, 8, 8), torch.zeros(8, 8, dtype=torch.long), ValueError, r"\[B, H, W\]"),
    (torch.rand(1, 3, 8, 8), torch.zeros(1, 8, 8), TypeError, "int64 masks"),
    (torch.rand(2, 3, 8, 8), torch.zeros(1, 8, 8, dtype=torch.long), ValueError, "same number"),
])
def test_check_segmentation_batch(images, masks, error, message):
    with pytest.raises(error, match=message):
        check_segmentation_batch(images, masks)
    with pytest.raises(error, match=message):
        SegmentationAugment(8).batch(images, masks)
