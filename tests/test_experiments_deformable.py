import pytest
import torch

from segbook.experiments.deformable import (
    BLOB_PAIR_CLASSES, BlobPairs, TinyConvNet, blob_pair_batch, blob_pair_sample, train_deformable_demo,
)
from segbook.nn import DeformConv2d


def _centres(image, k=2):
    # The two brightest local maxima (noise is 0.05, blobs peak near 1).
    img = image[0]
    flat = img.flatten().clone()
    out = []
    for _ in range(k):
        i = int(flat.argmax())
        y, x = divmod(i, img.shape[1])
        out.append((y, x))
        yy, xx = torch.meshgrid(torch.arange(img.shape[0]), torch.arange(img.shape[1]), indexing="ij")
        flat[((yy - y) ** 2 + (xx - x) ** 2 <= 9).flatten()] = -1
    return out


def test_dataset_is_a_pure_function_of_seed_index_split():
    a, la = blob_pair_sample(0, 5)
    b, lb = blob_pair_sample(0, 5)
    assert torch.equal(a, b) and la == lb
    xs, ys = blob_pair_batch(0, 3, 4)
    assert xs.shape == (4, 1, 22, 22) and ys.dtype == torch.long
    assert torch.equal(xs[2], a) and ys[2].item() == la          # item 5 is the same inside a batch
    assert not torch.equal(blob_pair_sample(1, 5)[0], a)          # other seed, other scene
    assert not torch.equal(blob_pair_sample(0, 5, split="test")[0], a)
    # torch's generator keeps 32 seed bits: make sure seeds and splits still give distinct streams.
    firsts = {tuple(blob_pair_sample(s, 0, split=sp)[0].flatten()[:4].tolist()) for s in range(4) for sp in ("train", "test")}
    assert len(firsts) == 8


def test_dataset_geometry_and_balance():
    xs, ys = blob_pair_batch(0, 0, 64)
    assert 20 <= int(ys.sum()) <= 44 and len(BLOB_PAIR_CLASSES) == 2
    for x, y in zip(xs[:16], ys[:16]):
        (y1, x1), (y2, x2) = _centres(x)
        dy, dx = abs(y1 - y2), abs(x1 - x2)
        if y == 0:
            assert dy <= 1 and 8 <= dx <= 13                       # horizontal, gap 9-12
        else:
            assert dx <= 1 and 8 <= dy <= 13
        assert min(y1, x1, y2, x2) >= 4 and max(y1, x1, y2, x2) <= 17  # margin 5 from the border


def test_blob_pairs_dataset_holds_the_same_items():
    ds = BlobPairs(6, seed=2, split="test", start=3)
    assert len(ds) == 6 and ds.classes == BLOB_PAIR_CLASSES
    x, y = ds[1]
    ref, label = blob_pair_sample(2, 4, split="test")
    assert torch.equal(x, ref) and int(y) == label and y.dtype == torch.long


def test_dataset_errors():
    with pytest.raises(ValueError, match="too small"):
        blob_pair_sample(0, 0, size=16)
    with pytest.raises(ValueError, match="split"):
        blob_pair_sample(0, 0, split="val")
    with pytest.raises(ValueError, match="seed"):
        blob_pair_sample(-1, 0)
    with pytest.raises(ValueError, match="index"):
        blob_pair_sample(0, 2**31)
    with pytest.raises(TypeError, match="seed"):
        blob_pair_sample(0.0, 0)


def test_twin_has_same_weights_and_output_at_init():
    torch.manual_seed(0)
    plain = TinyConvNet().eval()
    twin = plain.deformable_twin().eval()
    assert plain.deform is None and isinstance(twin.deform, DeformConv2d)
    x, _ = blob_pair_batch(0, 0, 4)
    assert (plain(x) - twin(x)).abs().max().item() < 1e-5
    n_offset = sum(p.numel() for p in twin.deform.offset.parameters())
    assert sum(p.numel() for p in twin.parameters()) == sum(p.numel() for p in plain.parameters()) + n_offset
    with pytest.raises(ValueError):
        twin.deformable_twin()
    with pytest.raises(ValueError, match="4-D"):
        plain(torch.randn(1, 22, 22))


def test_train_demo_is_deterministic_and_gives_plottable_points():
    rng_before = torch.get_rng_state()
    threads = torch.get_num_threads()
    r1 = train_deformable_demo(seed=3, steps=3, batch_size=8, test_size=16)
    r2 = train_deformable_demo(seed=3, steps=3, batch_size=8, test_size=16)
    assert torch.equal(torch.get_rng_state(), rng_before)          # global RNG untouched
    assert torch.get_num_threads() == threads                      # thread setting restored
    assert r1.plain_history == r2.plain_history and r1.deform_history == r2.deform_history
    assert len(r1.deform_history) == 3
    assert (r1.plain_accuracy, r1.deform_accuracy) == (r2.plain_accuracy, r2.deform_accuracy)
    for a, b in zip(r1.deform_model.state_dict().values(), r2.deform_model.state_dict().values()):
        assert torch.equal(a, b)
    assert 0.0 <= r1.deform_accuracy <= 1.0 and r1.deform_loss > 0
    assert r1.test_images.shape == (16, 1, 22, 22) and r1.test_labels.shape == (16,)
    layer = r1.deform_model.deform
    from segbook.analysis import capture
    with capture(layer.offset) as got:
        r1.deform_model(r1.test_images[:2])
    offsets = got[""][0]
    assert offsets.shape == (2, 18, 22, 22)
    assert offsets.abs().sum() > 0                      # three Adam steps moved them
    assert layer.sampling_points(offsets).shape == (2, 22, 22, 9, 2)
    with pytest.raises(ValueError):
        train_deformable_demo(steps=0)


def test_dilated_twin_has_the_same_weights_a_wider_grid_and_the_same_output_size():
    torch.manual_seed(0)
    plain = TinyConvNet().eval()
    wide = plain.dilated_twin(5).eval()
    assert wide.conv2.dilation == (5, 5) and wide.conv2.padding == (5, 5)
    assert torch.equal(wide.conv2.weight, plain.conv2.weight) and wide.conv2.weight is not plain.conv2.weight
    x, _ = blob_pair_batch(0, 0, 2)
    assert wide.features(x).shape == plain.features(x).shape == (2, 8, 22, 22)
    # a unit of the dilated conv reads its input 5 px away: an impulse there moves it, one 2 px away does not
    conv = wide.conv2
    with torch.no_grad():
        base = conv(torch.zeros(1, 8, 22, 22))
        for dy, moved in ((5, True), (2, False)):
            z = torch.zeros(1, 8, 22, 22)
            z[0, :, 11 + dy, 11] = 1.0
            assert bool((conv(z) - base)[0, :, 11, 11].abs().sum() > 0) == moved, dy
    assert TinyConvNet(dilation=3).conv2.dilation == (3, 3)
    with pytest.raises(ValueError, match="plain net"):
        wide.dilated_twin(2)
    with pytest.raises(ValueError, match="plain net"):
        plain.deformable_twin().dilated_twin(2)
    with pytest.raises(ValueError, match="either deformable or dilated"):
        TinyConvNet(deformable=True, dilation=2)
    with pytest.raises(ValueError, match="dilation"):
        plain.dilated_twin(0)


def test_train_demo_trains_the_dilated_baseline_on_the_same_batches_or_skips_it():
    r = train_deformable_demo(seed=3, steps=3, batch_size=8, test_size=16)
    assert r.dilation == 5 and len(r.dilated_history) == 3 and 0.0 <= r.dilated_accuracy <= 1.0
    assert r.dilated_model.conv2.dilation == (5, 5) and not r.dilated_model.training
    # all three start from one set of weights: the first step's loss of plain and dilated nets differ only
    # through the wider grid, and without the baseline the other two nets are unchanged
    none = train_deformable_demo(seed=3, steps=3, batch_size=8, test_size=16, dilation=None)
    assert none.dilation is None and none.dilated_model is None and none.dilated_history == []
    assert none.plain_history == r.plain_history and none.deform_history == r.deform_history
    assert "dilated (rate 5)" in repr(r) and "dilated" not in repr(none)


def test_train_demo_gives_the_same_numbers_in_processes_and_in_this_process():
    threads = torch.get_num_threads()
    one = train_deformable_demo(seed=4, steps=3, batch_size=8, test_size=16, workers=1)
    many = train_deformable_demo(seed=4, steps=3, batch_size=8, test_size=16, workers=2)
    assert torch.get_num_threads() == threads
    for name in ("plain_history", "deform_history", "dilated_history"):
        assert getattr(one, name) == getattr(many, name), name
    assert (one.deform_accuracy, one.dilated_loss) == (many.deform_accuracy, many.dilated_loss)


def test_deformable_taps_reads_the_offsets_blobs_and_shifts():
    from segbook.experiments.deformable import deformable_taps
    from segbook.nn import regular_grid

    torch.manual_seed(0)
    net = TinyConvNet(deformable=True).eval()
    image, _ = blob_pair_sample(0, 3, split="test")
    layer = net.deform
    # a constant learned offset: every tap moves by (dy, dx) = (1.5, -2.0), length 2.5
    with torch.no_grad():
        layer.offset.weight.zero_()
        layer.offset.bias.copy_(torch.tensor([1.5, -2.0]).repeat(9))
    study = deformable_taps(net, image, far_px=4)
    h, w = image.shape[-2:]
    grid = regular_grid((h, w))
    assert study.grid.shape == study.points.shape == (h, w, 9, 2)
    assert torch.equal(study.grid, grid)
    assert torch.allclose(study.points, grid + torch.tensor([1.5, -2.0]))
    assert set(study.blobs) == set(_centres(image))
    assert torch.allclose(study.shift, torch.full((h, w), 2.5))
    assert study.offset_blob == pytest.approx(2.5) and study.offset_far == pytest.approx(2.5)
    # "far" means farther than far_px from both centres
    (y1, x1), (y2, x2) = study.blobs
    assert not study.far[y1, x1] and not study.far[y1, min(w - 1, x1 + 4)] and study.far[0, 0] == (
        min(y1 ** 2 + x1 ** 2, y2 ** 2 + x2 ** 2) > 16)
    # taps outside the image, counted by hand
    taps = torch.stack([study.points[y1, x1], study.points[y2, x2]])
    expect = int(((taps[..., 0] < 0) | (taps[..., 0] > h - 1) | (taps[..., 1] < 0) | (taps[..., 1] > w - 1)).sum())
    assert study.outside == expect
    # a huge shift sends every blob tap outside
    with torch.no_grad():
        layer.offset.bias.fill_(100.0)
    assert deformable_taps(net, image).outside == 18


def test_deformable_taps_needs_a_deformable_net_and_one_image():
    from segbook.experiments.deformable import deformable_taps

    image, _ = blob_pair_sample(0, 0)
    with pytest.raises(TypeError, match="deformable"):
        deformable_taps(TinyConvNet(), image)
    with pytest.raises(ValueError, match=r"\[C, H, W\]"):
        deformable_taps(TinyConvNet(deformable=True), image[None])
