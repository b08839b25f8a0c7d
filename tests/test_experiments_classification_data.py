"""Tests for segbook.experiments.classification_data: chapter 1's data of each seed."""
import pytest
import torch

from segbook.data import chapter_datasets, take
from segbook.experiments.classification_data import seed_data
from segbook.runtime import Profile, Runtime


def _rt(seed=0):
    return Runtime(seed=seed, device=torch.device("cpu"), profile=Profile("quick"), data="shapes",
                   data_root="/nonexistent", download=False)


def test_seed_data_is_chapter_datasets_of_each_seed():
    data = seed_data(_rt(), [3, 7], size=16, n_train=12, n_val=10, val_batch_size=4)
    assert list(data) == [3, 7]
    for s, (train_set, val_loader) in data.items():
        ref_train, ref_val, _ = chapter_datasets(_rt(), task="classification", size=16, n_train=12, n_val=10,
                                                 seed=s)
        assert len(train_set) == 12
        x, y = take(train_set)
        rx, ry = take(ref_train)
        assert x.shape == (12, 3, 16, 16) and torch.equal(x, rx) and torch.equal(y, ry)
        batches = list(val_loader)
        assert [len(b[1]) for b in batches] == [4, 4, 2]          # unshuffled, batches of 4
        vx, vy = take(ref_val)
        assert torch.equal(torch.cat([b[0] for b in batches]), vx) and torch.equal(torch.cat([b[1] for b in batches]), vy)
    # another seed, other images
    assert not torch.equal(take(data[3][0])[0], take(data[7][0])[0])


def test_seed_data_checks_its_arguments():
    with pytest.raises(ValueError, match="seeds is empty"):
        seed_data(_rt(), [], size=16, n_train=4, n_val=4)
    with pytest.raises(ValueError, match="n_train"):
        seed_data(_rt(), [0], size=16, n_train=0, n_val=4)
    with pytest.raises(TypeError, match="size"):
        seed_data(_rt(), [0], size=16.0, n_train=4, n_val=4)


def test_train_over_seeds_is_fit_over_seeds_on_each_seeds_batches():
    """Every net of a seed trains on make_loader(train_set, batch, shuffle=True, seed=s) and is
    validated on that seed's loader: the step losses equal fit_over_seeds called by hand."""
    from segbook.data import make_loader
    from segbook.experiments.classification_data import train_over_seeds
    from segbook.models import cifar_resnet
    from segbook.seeds import fit_over_seeds

    data = {}
    for s in (3, 5):
        g = torch.Generator().manual_seed(s)
        x, y = torch.rand(16, 3, 8, 8, generator=g), torch.randint(0, 4, (16,), generator=g)
        train = torch.utils.data.TensorDataset(x, y)
        data[s] = (train, make_loader(torch.utils.data.TensorDataset(x[:8], y[:8]), 8))
    builders = {"a": lambda: cifar_resnet(depth=8, width=4, num_classes=4)}
    fit = dict(task="classification", num_classes=4, epochs=1, lr=1e-2, progress=False, log=False, workers=1)
    got = train_over_seeds(builders, data, batch_size=4, **fit)
    want = fit_over_seeds(builders, lambda s: make_loader(data[s][0], 4, shuffle=True, seed=s), [3, 5],
                          val_loader=lambda s: data[s][1], **fit)
    assert [r.seed for r in got["a"]] == [3, 5]
    for a, b in zip(got["a"], want["a"]):
        assert len(a.history.step_loss) == 4 and a.history.step_loss == b.history.step_loss
        assert a.val == b.val
    with pytest.raises(ValueError, match="data is empty"):
        train_over_seeds(builders, {}, batch_size=4, **fit)
    with pytest.raises(ValueError, match="batch_size"):
        train_over_seeds(builders, data, batch_size=0, **fit)
