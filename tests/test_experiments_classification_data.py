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
