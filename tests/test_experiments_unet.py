"""Tests for segbook.experiments.unet: crops, border bands and the input-policy comparison."""
from __future__ import annotations

import pytest
import torch

from segbook.data import SegmentationAugment
from segbook.experiments.unet import AugmentedPairs, border_band, compare_input_policies, random_crops, tiled_vs_one_pass, kaiming_init_
from segbook.models.unet import UNet, unet


def test_random_crops_are_windows_and_repeat_with_the_seed():
    images = torch.arange(2 * 3 * 10 * 12, dtype=torch.float32).view(2, 3, 10, 12)
    masks = images[:, 0].long()
    x, m = random_crops(images, masks, (7, 9), seed=3)
    assert x.shape == (2, 3, 7, 9) and m.shape == (2, 7, 9)
    assert torch.equal(x[:, 0].long(), m)              # image and mask cut at the same place
    for i in range(2):                                  # each crop is a contiguous window of its image
        t, l_ = divmod(int(x[i, 0, 0, 0]) - i * 360, 12)
        assert torch.equal(x[i], images[i, :, t:t + 7, l_:l_ + 9])
    assert torch.equal(random_crops(images, masks, (7, 9), seed=3)[0], x)
    with pytest.raises(ValueError, match="does not fit"):
        random_crops(images, masks, (11, 9))


def test_border_band():
    b = border_band(6, 7, 2)
    assert b.shape == (6, 7) and int((~b).sum()) == 2 * 3
    assert b[0].all() and b[:, -1].all() and not b[2, 2]
    with pytest.raises(ValueError, match="band"):
        border_band(6, 7, 4)


def test_compare_input_policies_rows():
    torch.manual_seed(0)
    net = unet(depth=2, base_width=4, num_classes=3).eval()
    images = torch.rand(4, 3, 13, 18)
    masks = torch.randint(0, 3, (4, 13, 18))
    rows = compare_input_policies(net, images, masks, band=2, repeats=1)
    by = {r["policy"]: r for r in rows}
    assert by["strict"]["input"] == "12x16" and by["strict"]["output"] == "12x16"
    assert by["strict"]["covered"] == pytest.approx(12 * 16 / (13 * 18))
    for p in ("pad", "resize"):
        assert by[p]["output"] == "13x18" and by[p]["covered"] == 1.0
    for r in rows:
        assert 0 <= r["acc border"] <= 1 and 0 <= r["acc interior"] <= 1 and 0 <= r["mIoU"] <= 1 and r["ms"] > 0
    assert net.input_policy == "strict"                  # restored


def test_compare_input_policies_counts_missing_pixels_as_errors():
    """A net that is always right scores 1 where it predicts, and strict loses exactly the cropped pixels."""

    class Oracle(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.one_hot(x[:, 0].long(), 3).permute(0, 3, 1, 2).float()

    net = unet(depth=2, base_width=2, num_classes=3)
    net.contracting_path = lambda x: {"image": x}          # labels encoded in channel 0 of the image
    net.expanding_path = lambda maps: {"logits": Oracle()(maps["image"])}
    masks = torch.randint(0, 3, (2, 9, 9), generator=torch.Generator().manual_seed(0))
    images = masks[:, None].float().expand(2, 3, 9, 9).contiguous()
    rows = {r["policy"]: r for r in compare_input_policies(net, images, masks, band=1, repeats=1)}
    assert rows["pad"]["acc border"] == 1.0 and rows["pad"]["acc interior"] == 1.0 and rows["pad"]["mIoU"] == 1.0
    # strict: 8x8 centre crop of 9x9 (offset 0): row 8 and column 8 are lost, all in the border band.
    assert rows["strict"]["acc interior"] == 1.0
    assert rows["strict"]["acc border"] == pytest.approx(1 - 17 / (81 - 49))


def test_compare_input_policies_needs_same_padding():
    with pytest.raises(ValueError, match="same"):
        compare_input_policies(unet(depth=1, base_width=2, padding="valid"), torch.rand(1, 3, 9, 9),
                               torch.zeros(1, 9, 9, dtype=torch.long))


def test_augmented_pairs_repeats_and_transforms():
    images = torch.rand(3, 3, 16, 16)
    masks = torch.randint(0, 4, (3, 16, 16))
    plain = AugmentedPairs(images, masks, repeats=4)
    assert len(plain) == 12
    for i in (0, 4, 11, -1):
        x, y = plain[i]
        assert torch.equal(x, images[i % 3]) and torch.equal(y, masks[i % 3])
    with pytest.raises(IndexError):
        plain[12]
    torch.manual_seed(0)
    aug = AugmentedPairs(images, masks, transform=SegmentationAugment(16, scale=None, color_jitter=None, rotate=30,
                                                                     vflip=True, elastic=(3, 2.0)), repeats=2)
    draws = [aug[0] for _ in range(3)]
    assert all(x.shape == (3, 16, 16) and y.shape == (16, 16) for x, y in draws)
    assert not torch.equal(draws[0][1], draws[1][1]) or not torch.equal(draws[1][1], draws[2][1])  # fresh draws
    assert all(set(y.unique().tolist()) <= set(masks[0].unique().tolist()) | {255} for _, y in draws)


@pytest.mark.parametrize("images, masks, kw, match", [
    (torch.rand(2, 3, 8, 8), torch.zeros(3, 8, 8, dtype=torch.long), {}, "one size"),
    (torch.rand(2, 3, 8, 8), torch.zeros(2, 8, 8), {}, "integer masks"),
    (torch.rand(0, 3, 8, 8), torch.zeros(0, 8, 8, dtype=torch.long), {}, "N >= 1"),
    (torch.rand(2, 3, 8, 8), torch.zeros(2, 8, 8, dtype=torch.long), {"repeats": 0}, "repeats"),
])
def test_augmented_pairs_bad_input(images, masks, kw, match):
    with pytest.raises(ValueError, match=match):
        AugmentedPairs(images, masks, **kw)


def test_tiled_vs_one_pass_follows_the_tile_step():
    torch.manual_seed(0)
    net = UNet(num_classes=2, in_channels=1, depth=2, base_width=2, padding="valid").eval()
    kaiming_init_(net)                                                      # context 20, sizes 44 + 4k
    images = torch.rand(1, 1, 24, 24)
    assert tiled_vs_one_pass(net, images, tile=48, margin=20) < 1e-4      # step 8: a multiple of 2^2
    assert tiled_vs_one_pass(net, images, tile=48, margin=21) > 1e-3      # step 6: not a multiple of 2^2
    with pytest.raises(ValueError, match="valid"):
        tiled_vs_one_pass(unet(depth=1, base_width=2, num_classes=2), images.expand(1, 3, 24, 24), tile=8, margin=1)


def test_augmented_pairs_fetches_whole_batches():
    images = torch.rand(4, 3, 16, 16)
    masks = torch.randint(0, 4, (4, 16, 16))
    plain = AugmentedPairs(images, masks, repeats=3)
    batch = plain.__getitems__([0, 5, 11])
    assert all(torch.equal(x, images[i % 4]) and torch.equal(y, masks[i % 4]) for (x, y), i in zip(batch, (0, 5, 11)))
    with pytest.raises(IndexError):
        plain.__getitems__([0, 12])
    aug = SegmentationAugment(16, scale=None, color_jitter=0.3, elastic=(3, 2.0))
    pairs = AugmentedPairs(images, masks, transform=aug, repeats=3)
    loader = torch.utils.data.DataLoader(pairs, batch_size=6, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    calls = []
    original = aug.batch
    aug.batch = lambda *a: calls.append(a[0].shape[0]) or original(*a)
    torch.manual_seed(0)
    got = list(loader)
    assert calls == [6, 6]  # one call per batch, not one per pair
    assert all(x.shape == (6, 3, 16, 16) and y.shape == (6, 16, 16) for x, y in got)
    assert all(set(y.unique().tolist()) <= set(masks.unique().tolist()) | {255} for _, y in got)
