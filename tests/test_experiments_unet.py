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
    net = unet(depth=2, width=4, num_classes=3).eval()
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

    net = unet(depth=2, width=2, num_classes=3)
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
        compare_input_policies(unet(depth=1, width=2, padding="valid"), torch.rand(1, 3, 9, 9),
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
    net = UNet(num_classes=2, in_channels=1, depth=2, width=2, padding="valid").eval()
    kaiming_init_(net)                                                      # context 20, sizes 44 + 4k
    images = torch.rand(1, 1, 24, 24)
    assert tiled_vs_one_pass(net, images, tile=48, margin=20) < 1e-4      # step 8: a multiple of 2^2
    assert tiled_vs_one_pass(net, images, tile=48, margin=21) > 1e-3      # step 6: not a multiple of 2^2
    with pytest.raises(ValueError, match="valid"):
        tiled_vs_one_pass(unet(depth=1, width=2, num_classes=2), images.expand(1, 3, 24, 24), tile=8, margin=1)


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


# ----------------------------------------------------------------------------------------------
# The chapter's studies (tiny sizes: a few scenes, a few steps)
# ----------------------------------------------------------------------------------------------
from segbook.data import chapter_datasets, take, tile_scenes  # noqa: E402
from segbook.experiments.unet import (SeedScenes, TilingStudy, augmentation_ablation,  # noqa: E402
                                      input_policies_over_seeds, input_policy_rows, tiling_study,
                                      train_unet_vs_fcn8s)
from segbook.metrics import SegmentationMetrics  # noqa: E402
from segbook.runtime import Profile, Runtime  # noqa: E402
from segbook.seeds import spread  # noqa: E402
from segbook.train import class_balance_weights  # noqa: E402


def _rt(seed=0):
    return Runtime(seed=seed, device=torch.device("cpu"), profile=Profile("quick"), data="shapes",
                   data_root="/nonexistent", download=False)


@pytest.fixture(scope="module")
def scenes32():
    return SeedScenes(_rt(), size=32, n_train=8, n_val=6, weight_scenes=4)


def test_seed_scenes_renders_each_seed_once(scenes32):
    tr, va, w = scenes32(0)
    ref_tr, ref_va, info = chapter_datasets(_rt(), task="segmentation", size=32, n_train=8, n_val=6, seed=0)
    assert torch.equal(take(tr)[0], take(ref_tr)[0]) and torch.equal(take(va)[1], take(ref_va)[1])
    assert scenes32.sample_masks.shape == (4, 32, 32) and torch.equal(scenes32.sample_masks, take(ref_tr, 4)[1])
    assert torch.equal(w, class_balance_weights(take(ref_tr, 4)[1], info.num_classes))
    assert scenes32.num_classes == info.num_classes == 6 and scenes32.info.classes == info.classes
    other = scenes32(3)
    assert scenes32(3) is other                                    # rendered once
    assert (len(other[0]), len(other[1])) == (8, 6) and not torch.equal(take(other[0])[0], take(tr)[0])
    with pytest.raises(ValueError, match="size"):
        SeedScenes(_rt(), size=0, n_train=8, n_val=6)


def test_train_unet_vs_fcn8s_one_run_per_seed_and_net():
    scenes = SeedScenes(_rt(), size=32, n_train=8, n_val=4, weight_scenes=4)
    runs = train_unet_vs_fcn8s(scenes, [0], depth=1, width=2, fcn_width=2, batch=4, lr=0.01, warmup_steps=1)
    assert list(runs) == ["U-Net", "FCN-8s"]
    for name, rs in runs.items():
        (r,) = rs
        assert r.seed == 0 and len(r.history.step_loss) == 2          # 8 scenes, 4 per step
        assert set(r.val) >= {"miou", "pixel_acc", "boundary_f1"}
        with torch.no_grad():
            assert r.model(torch.rand(1, 3, 32, 32)).shape == (1, 6, 32, 32)
    assert runs["U-Net"][0].model.width == 2 and runs["U-Net"][0].model.depth == 1
    with pytest.raises(ValueError, match="seeds"):
        train_unet_vs_fcn8s(scenes, [], depth=1, width=2, fcn_width=2, batch=4, lr=0.01, warmup_steps=1)


def test_input_policies_over_seeds_and_rows(scenes32):
    torch.manual_seed(0)
    nets = [unet(num_classes=6, depth=2, width=2).eval() for _ in range(2)]
    runs = input_policies_over_seeds(nets, scenes32, [0, 3], size=(29, 27), n_crops=3, band=2, repeats=1)
    assert len(runs) == 2 and all(list(r) == ["strict", "pad", "resize"] for r in runs)
    # seed 3: crops of its own validation scenes at offsets from seed 5
    v_images, v_masks = take(scenes32(3)[1])
    odd = random_crops(v_images[:3], v_masks[:3], (29, 27), seed=5)
    direct = {r["policy"]: r for r in compare_input_policies(nets[1], *odd, band=2, repeats=1)}
    assert all(runs[1][p]["mIoU"] == direct[p]["mIoU"] and runs[1][p]["acc border"] == direct[p]["acc border"]
               for p in direct)
    rows = input_policy_rows(runs)
    assert [r["policy"] for r in rows] == ["strict", "pad", "resize"]
    assert rows[0]["input"] == "28x24" and rows[1]["output"] == "29x27"
    assert rows[2]["mIoU"] == spread([r["resize"]["mIoU"] for r in runs]).format(".3f")
    assert rows[1]["ms"] == (runs[0]["pad"]["ms"] + runs[1]["pad"]["ms"]) / 2
    with pytest.raises(ValueError, match="one per seed"):
        input_policies_over_seeds(nets, scenes32, [0], size=(29, 27))
    with pytest.raises(ValueError, match="empty"):
        input_policy_rows([])


def test_tiling_study_three_ways_on_mosaics(scenes32):
    torch.manual_seed(0)
    net = unet(num_classes=6, depth=1, width=2).eval()
    study = tiling_study([net], scenes32, [0], n_scenes=4, window=32, margin=8)
    assert isinstance(study, TilingStudy) and (study.n_images, study.side, study.step) == (1, 64, 16)
    (res,) = study.runs
    assert list(res) == ["one pass", "tiles of 16, no overlap", "overlap-tile: 32 in, 16 kept"]
    assert all(r["output"] == "64x64" and r["s"] > 0 for r in res.values())
    big, big_masks = tile_scenes(*(t[:4] for t in take(scenes32(0)[1])), 2, 2)
    m = SegmentationMetrics(6)
    with torch.inference_mode():
        m.update(net(big).argmax(1), big_masks)
    assert res["one pass"]["mIoU"] == m.compute()["miou"]            # the reference: one pass over the mosaic
    means = study.means()
    assert [mm["mIoU"] for mm in means] == [r["mIoU"] for r in res.values()]  # one seed: the mean is the value
    assert [r["method"] for r in study.rows()] == list(res)
    with pytest.raises(ValueError, match="no pixels"):
        tiling_study([net], scenes32, [0], n_scenes=4, window=16, margin=8)


def test_augmentation_ablation_one_net_per_augmentation(scenes32):
    ablation = {"none": None, "flips": dict(hflip=True, vflip=True, rotate=0, elastic=None, scale=None,
                                            color_jitter=None)}
    few = augmentation_ablation(scenes32, [0], ablation, n_images=2, steps=3, batch=2, depth=1, width=2, lr=0.01,
                                build_order=("flips", "none"))
    assert list(few) == ["none", "flips"]
    for rs in few.values():
        (r,) = rs
        assert r["seed"] == 0 and len(r["hist"].step_loss) == 3 and 0 <= r["val"]["miou"] <= 1
    with pytest.raises(ValueError, match="build_order"):
        augmentation_ablation(scenes32, [0], ablation, n_images=2, steps=3, batch=2, depth=1, width=2, lr=0.01,
                              build_order=("none",))
    with pytest.raises(ValueError, match="ablation"):
        augmentation_ablation(scenes32, [0], {}, n_images=2, steps=3, batch=2, depth=1, width=2, lr=0.01)
