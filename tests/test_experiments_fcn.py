"""Tests for segbook.experiments.fcn: the paper's numbers, staged initialisation, resolution ceilings."""
import pytest
import torch

from segbook.experiments.fcn import PAPER_VOC2011_VAL, ceiling_labels, init_from_coarser, shift_agreement
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
