"""Tests for segbook.experiments.fcn: the paper's numbers, staged initialisation and training, resolution
ceilings, shift agreement and the chapter's experiment helpers."""
import pytest
import torch

from segbook.data import take
from segbook.experiments.fcn import (PAPER_VOC2011_VAL, backbone_stages, ceiling_labels, centre_mosaics, group_mean,
                                     init_from_coarser, seed_scenes, shape_class_groups, shift_agreement,
                                     staged_training, tiled_evaluation, to_pixel_major, window_recall)
from segbook.metrics import confusion_matrix, mean_iou
from segbook.models.fcn import fcn8s, fcn16s, fcn32s


def test_paper_numbers_are_the_papers():
    assert [PAPER_VOC2011_VAL[k]["miou"] for k in ("FCN-32s", "FCN-16s", "FCN-8s")] == [59.4, 62.4, 62.7]
    assert [PAPER_VOC2011_VAL[k]["pixel_acc"] for k in ("FCN-32s", "FCN-16s", "FCN-8s")] == [89.1, 90.0, 90.3]


def test_init_from_coarser_copies_everything_but_the_new_skip():
    torch.manual_seed(0)
    m32 = fcn32s(num_classes=3, width=4)
    with torch.no_grad():  # make the coarse net's weights distinguishable from a fresh init
        for p in m32.parameters():
            p.add_(torch.randn_like(p))
    torch.manual_seed(1)
    m16 = fcn16s(num_classes=3, width=4)
    new = init_from_coarser(m16, m32)
    assert new and all(k.startswith(("score_skips.pool4", "upsample_skips.pool4")) for k in new)
    s16 = m16.state_dict()
    for k, v in m32.state_dict().items():
        assert torch.equal(s16[k], v), k
    # the new score layer is zero: before training, FCN-16s predicts (almost) what FCN-32s does
    x = torch.rand(2, 3, 64, 64)
    m32.eval(), m16.eval()
    with torch.no_grad():
        a, b = m32(x), m16(x)
    assert (a.argmax(1) == b.argmax(1)).float().mean() > 0.9
    assert (a - b).abs().max() < 0.5 * a.abs().max()
    # and FCN-8s from FCN-16s keeps the pool4 skip that FCN-16s learned
    m8 = fcn8s(num_classes=3, width=4)
    with torch.no_grad():
        m16.score_skips["pool4"].conv.weight.fill_(0.5)
    new8 = init_from_coarser(m8, m16)
    assert all("pool3" in k for k in new8)
    assert torch.equal(m8.score_skips["pool4"].conv.weight, m16.score_skips["pool4"].conv.weight)


def test_init_from_coarser_rejects_other_architectures():
    with pytest.raises(ValueError, match="shapes differ"):
        init_from_coarser(fcn16s(num_classes=3, width=8), fcn32s(num_classes=3, width=4))
    with pytest.raises(ValueError, match="entries the finer one lacks"):
        init_from_coarser(fcn32s(num_classes=3, width=4), fcn16s(num_classes=3, width=4))


def test_ceiling_labels_stride_one_is_exact_and_coarse_strides_lose_detail():
    masks = torch.zeros(2, 64, 64, dtype=torch.int64)
    masks[0, 4:44, 6:46] = 1             # a large square, 71% of the top-left 32x32 cell
    masks[1, 30:33, 4:60] = 2            # a thin bar 3 px high: lost at stride 16 and 32
    assert torch.equal(ceiling_labels(masks, 1, 3), masks)
    mious = [mean_iou(confusion_matrix(ceiling_labels(masks, s, 3), masks, 3)) for s in (1, 4, 8, 16, 32)]
    assert mious[0] == pytest.approx(1.0)
    assert all(a >= b - 1e-6 for a, b in zip(mious, mious[1:])), mious   # coarser is never better here
    assert mious[-1] < 0.8
    out = ceiling_labels(masks, 32, 3)
    assert out.shape == masks.shape and out.dtype == torch.int64
    assert not (out[1] == 2).any()       # the bar is a minority in every 32x32 cell
    assert (out[0, 8:16, 8:16] == 1).all()     # the top-left cell says "square"


def test_ceiling_labels_partial_cells_and_ignore():
    masks = torch.ones(1, 40, 50, dtype=torch.int64)        # not multiples of the stride
    masks[0, :, :5] = 255
    out = ceiling_labels(masks, 16, 2)
    assert out.shape == (1, 40, 50)
    assert (out == 1).all()              # ignored pixels vote for nothing; partial cells still say 1
    with pytest.raises(ValueError, match=r"lie in \[0, 2\)"):
        ceiling_labels(torch.full((1, 8, 8), 3), 4, 2)
    with pytest.raises(ValueError, match="stride must be a positive int"):
        ceiling_labels(masks, 0, 2)
    with pytest.raises(ValueError, match="integer tensor"):
        ceiling_labels(masks.float(), 4, 2)


class _Stride4Net(torch.nn.Module):
    """conv-pool-conv-pool (total stride 4, receptive field 10 px), labels upsampled by nearest."""

    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(8, 5, 3, padding=1), torch.nn.MaxPool2d(2))

    def forward(self, x):
        return torch.nn.functional.interpolate(self.features(x), size=x.shape[-2:], mode="nearest")


def test_shift_agreement_is_exact_for_multiples_of_the_stride_only():
    torch.manual_seed(0)
    net, images = _Stride4Net(), torch.rand(3, 3, 24, 24)
    masks = torch.randint(0, 5, (3, 24, 24))
    # pad 12 > the 10-px receptive field: the canvas border never reaches the image's labels
    rows = shift_agreement(net, images, [0, 4, 8, 2, 6], pad=12, stride=4, masks=masks, num_classes=5, batch_size=2)
    by_offset = {r["offset"]: r for r in rows}
    assert [r["phase"] for r in rows] == [0, 0, 0, 2, 2]
    # shifts by the stride: the same computation on the same values
    assert by_offset[0]["agreement"] == by_offset[4]["agreement"] == by_offset[8]["agreement"] == 1.0
    assert by_offset[4]["miou"] == pytest.approx(by_offset[0]["miou"])
    # half a stride: another pooling phase, the labels change on a good share of the pixels
    assert by_offset[2]["agreement"] < 0.8 and by_offset[6]["agreement"] < 0.8
    assert net.training  # the mode is restored


def test_shift_agreement_region_in_a_surround_needs_no_padding():
    torch.manual_seed(0)   # (some seeds give an untrained net that labels everything one class)
    net, canvas = _Stride4Net(), torch.rand(2, 3, 40, 40)
    # the centre 16x16 is 12 px from every edge, beyond the 10-px receptive field: shifts by 4 are exact
    rows = shift_agreement(net, canvas, [0, 4, 2], region=(12, 12, 16, 16), stride=4)
    assert [r["agreement"] for r in rows][:2] == [1.0, 1.0] and rows[2]["agreement"] < 0.9
    with pytest.raises(ValueError, match="region"):
        shift_agreement(net, canvas, [0], region=(30, 30, 16, 16))


def test_shift_agreement_rejects_bad_arguments():
    net, images = _Stride4Net(), torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match="pad"):
        shift_agreement(net, images, [0], pad=-1)
    with pytest.raises(ValueError, match="offsets"):
        shift_agreement(net, images, [-4], pad=4)
    with pytest.raises(ValueError, match="together"):
        shift_agreement(net, images, [0], pad=4, masks=torch.zeros(1, 16, 16, dtype=torch.long))
    with pytest.raises(ValueError, match="float tensor"):
        shift_agreement(net, images[0], [0], pad=4)


# ----------------------------------------------------------------------------------------------
# The chapter's experiments
# ----------------------------------------------------------------------------------------------
def test_seed_scenes_reuses_the_first_seeds_scenes_and_draws_others():
    from segbook.runtime import Profile, Runtime

    rt = Runtime(seed=0, device=torch.device("cpu"), profile=Profile("quick"), data="shapes",
                 data_root="/nonexistent", download=False)
    first = ("train", "val")
    assert seed_scenes(rt, 0, size=32, n_train=4, n_val=2, first=first) is first
    tr, va = seed_scenes(rt, 1, size=32, n_train=4, n_val=2, first=first)
    assert (len(tr), len(va)) == (4, 2)
    images, masks = take(va)
    assert images.shape == (2, 3, 32, 32) and masks.shape == (2, 32, 32)
    tr0, _ = seed_scenes(rt, 0, size=32, n_train=4, n_val=2)     # no `first`: drawn
    assert not torch.equal(take(tr0)[0], take(tr)[0])             # another seed, other scenes


def test_to_pixel_major_turns_kron_w_i_into_kron_i_w():
    torch.manual_seed(0)
    w = torch.randn(3, 2)
    eye = torch.eye(4)
    assert torch.equal(to_pixel_major(torch.kron(w, eye), 3, 2), torch.kron(eye, w))
    # the reordering is a permutation of rows and columns: entry (c', p), (c, q) moves to (p, c'), (q, c)
    m = torch.arange(12 * 8, dtype=torch.float32).view(12, 8)    # 3 x 4 rows, 2 x 4 columns: 4 pixels
    out = to_pixel_major(m, 3, 2)
    assert out[0, 1] == m[0, 4] and out[1, 0] == m[4, 0] and out[3, 0] == m[1, 0]
    assert sorted(out.flatten().tolist()) == m.flatten().tolist()
    with pytest.raises(ValueError, match="pixels"):
        to_pixel_major(torch.zeros(6, 6), 3, 2)
    with pytest.raises(ValueError, match="weight must be"):
        to_pixel_major(torch.zeros(5, 4), 3, 2)


def test_window_recall_scores_each_windows_centre_label():
    masks = torch.zeros(1, 8, 8, dtype=torch.int64)
    masks[0, :, 4:] = 1                      # right half class 1
    masks[0, 0, 0] = 255
    # windows of 2 px at stride 2: centres (1, 1), (1, 3), (1, 5), (1, 7), ...: labels 0, 0, 1, 1 per row
    heat = torch.zeros(1, 2, 4, 4)
    heat[0, 1, :, 2:] = 1.0                  # right half named class 1 ...
    heat[0, 1, 0, 0] = 1.0                   # ... and one background cell wrongly
    recall = window_recall(heat, masks, 2, 2)
    assert recall.tolist() == pytest.approx([7 / 8, 1.0])
    with pytest.raises(ValueError, match="does not match"):
        window_recall(torch.zeros(1, 2, 3, 3), masks, 2, 2)
    with pytest.raises(ValueError, match="expected heat"):
        window_recall(heat[0], masks, 2, 2)


def test_shape_class_groups_and_group_mean():
    classes = ("background", "disc", "square", "triangle", "ring", "line")
    filled, thin = shape_class_groups(classes)
    assert (filled, thin) == ([1, 2, 3], [4, 5])
    assert shape_class_groups(("background", "pet")) == ([], [])
    values = torch.tensor([0.0, 0.2, 0.4, 0.6, 0.1, 0.3])
    assert group_mean(values, filled, ".2f") == "0.40" and group_mean(values, thin, ".3f") == "0.200"
    assert group_mean(values, [], ".2f") == "\u2014"


def test_backbone_stages_rows_match_the_architecture():
    torch.manual_seed(0)
    net = fcn8s(num_classes=3, width=4)
    rows = backbone_stages(net.backbone, 80, probe=160)
    assert [r["layer"] for r in rows] == ["pool1", "pool2", "pool3", "pool4", "pool5"]
    assert [r["stride"] for r in rows] == [2, 4, 8, 16, 32]
    assert [r["channels"] for r in rows] == [net.backbone.channels[r["layer"]] for r in rows]
    assert [r["map at 80x80"] for r in rows] == ["40x40", "20x20", "10x10", "5x5", "3x3"]
    # depths (1, 1, 2, 2, 2): 3 + 1 = 4 at pool1, then + 2 x 2 (conv) + 2 (pool) = 10 at pool2, ...
    assert [r["receptive field (px)"] for r in rows] == [4, 10, 30, 70, 150]
    with pytest.raises(ValueError, match="size"):
        backbone_stages(net.backbone, 0)


def test_staged_training_trains_the_stages_and_the_control():
    from segbook.data import ShapesSegmentation

    def data(s):
        return ShapesSegmentation(8, size=32, seed=10 + s), ShapesSegmentation(4, size=32, seed=20 + s)

    out = staged_training(data, [0, 1], num_classes=6, width=4, stage_epochs=(1, 1, 1), lr=1e-3,
                          batch_size=4, device="cpu")
    assert set(out.runs) == {"FCN-32s", "FCN-16s", "FCN-8s"}
    assert [[r["seed"] for r in rs] for rs in out.runs.values()] == [[0, 1]] * 3
    assert [e["seed"] for e in out.equal] == [0, 1]
    r8 = out.runs["FCN-8s"][0]
    assert not r8["model"].training and r8["hist"].epochs == 1 and "miou" in r8["val"]
    assert r8["val"] == r8["hist"].final
    # the control is FCN-32s trained on for the two later stages: same architecture, other weights
    e0, r32 = out.equal[0]["model"], out.runs["FCN-32s"][0]["model"]
    assert type(e0) is type(r32) and e0 is not r32
    assert not torch.equal(e0.state_dict()["head.score_fr.weight"], r32.state_dict()["head.score_fr.weight"])
    assert out.equal[0]["seconds"] > 0
    assert all("pool4" in k for k in out.new_layers["FCN-16s"]) and all("pool3" in k for k in out.new_layers["FCN-8s"])
    assert out.seed_val[1][0].shape == (4, 3, 32, 32) and out.seed_val[1][1].shape == (4, 32, 32)
    with pytest.raises(ValueError, match="stage_epochs"):
        staged_training(data, [0], num_classes=6, width=4, stage_epochs=(1, 1), lr=1e-3, batch_size=4)
    with pytest.raises(ValueError, match="seeds"):
        staged_training(data, [], num_classes=6, width=4, stage_epochs=(1, 1, 1), lr=1e-3, batch_size=4)


class _PixelNet(torch.nn.Module):
    """Labels a pixel 1 where its red channel is above 0.5: a per-pixel rule, exact on any canvas."""

    def forward(self, x):
        red = x[:, :1]
        return torch.cat([0.5 - red, red - 0.5], 1)


def test_tiled_evaluation_rows_sizes_and_band():
    images = torch.zeros(4, 3, 16, 16)
    images[:, 0, 4:12, 4:12] = 1.0
    masks = (images[:, 0] > 0.5).long()
    rows = tiled_evaluation(_PixelNet(), images, masks, num_classes=2, band=2)
    assert [(r["input"], r["output"], r["images"]) for r in rows] == [("16x16", "16x16", 4), ("16x32", "16x32", 2),
                                                                        ("32x32", "32x32", 1)]
    assert all(r["mIoU"] == pytest.approx(1.0) and r["mIoU, 2 px at scene edges ignored"] == pytest.approx(1.0)
               for r in rows)
    # wrong labels only in the edge band: the band column ignores them
    masks_bad = masks.clone()
    masks_bad[:, 0, :] = 1
    rows = tiled_evaluation(_PixelNet(), images, masks_bad, num_classes=2, band=2, tilings=((1, 1),))
    assert rows[0]["mIoU"] < 0.95 and rows[0]["mIoU, 2 px at scene edges ignored"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="band"):
        tiled_evaluation(_PixelNet(), images, masks, num_classes=2, band=8)


def test_centre_mosaics_grid_and_fallback():
    images = torch.arange(20, dtype=torch.float32).view(20, 1, 1, 1).expand(20, 3, 4, 4).clone()
    masks = torch.zeros(20, 4, 4, dtype=torch.int64)
    mosaics, mmasks, g = centre_mosaics(images, masks, grid=3, max_mosaics=16)
    assert g == 3 and mosaics.shape == (2, 3, 12, 12) and mmasks.shape == (2, 12, 12)
    assert mosaics[0, 0, 4, 4] == 4 and mosaics[1, 0, 4, 4] == 13     # the centre scenes: 5th of each nine
    one, _, g1 = centre_mosaics(images[:1], masks[:1], grid=3, max_mosaics=1)
    five, _, g5 = centre_mosaics(images[:5], masks[:5], grid=3, max_mosaics=16)
    assert g1 == g5 == 1 and one.shape == (1, 3, 4, 4) and five.shape == (5, 3, 4, 4)
    assert centre_mosaics(images, masks, grid=2, max_mosaics=3)[0].shape == (3, 3, 8, 8)
    with pytest.raises(ValueError, match="expected images"):
        centre_mosaics(images[:0], masks[:0])


def test_ceiling_metrics_scores_ceiling_labels_against_the_masks():
    from segbook.experiments.fcn import ceiling_labels, ceiling_metrics
    from segbook.metrics import SegmentationMetrics

    masks = torch.zeros(2, 16, 16, dtype=torch.long)
    masks[:, 4:12, 4:12] = 1
    masks[1, 0:3, 0:3] = 2          # a blob smaller than a stride-8 cell: the ceiling loses it
    masks[0, 15, :] = 255
    got = ceiling_metrics(masks, 8, 3)
    m = SegmentationMetrics(3)
    m.update(ceiling_labels(masks, 8, 3), masks)
    want = m.compute()
    assert got["miou"] == want["miou"] and got["boundary_f1"] == want["boundary_f1"]
    assert got["iou_per_class"][2] == 0 and got["miou"] < 1
    assert ceiling_metrics(masks, 1, 3)["miou"] == 1.0   # stride 1 sees everything


def test_labelled_shape_share_counts_only_labelled_pixels():
    from segbook.experiments.fcn import labelled_shape_share

    masks = torch.tensor([[[0, 1, 255, 2]]])
    labels = torch.tensor([[[3, 0, 5, 2]]])
    assert labelled_shape_share(masks, masks) == pytest.approx(2 / 3)     # the true share
    assert labelled_shape_share(labels, masks) == pytest.approx(2 / 3)    # pixel 2 is ignored
    assert labelled_shape_share(torch.zeros_like(masks), masks) == 0.0
    with pytest.raises(ValueError, match="one shape"):
        labelled_shape_share(labels[0], masks)
    with pytest.raises(ValueError, match="no labelled pixel"):
        labelled_shape_share(labels, torch.full_like(masks, 255))
