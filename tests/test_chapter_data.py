"""Tests for segbook.data.chapter_datasets: the data a chapter trains on, from rt.data.

Real data is read from small fakes in the official on-disk layouts (tests/fakedata.py); sockets
are disabled, so any attempt to download fails the test.
"""
from __future__ import annotations

import pickle

import pytest
import torch

import segbook.data.real as real
from fakedata import write_fake_cifar10, write_fake_pets, write_fake_voc
from segbook.data import (
    CLASSIFICATION_CLASSES, PET_CLASSES, SEGMENTATION_CLASSES, VOC_CLASSES, ShapesClassification, ShapesSegmentation,
    chapter_datasets, make_loader, take,
)
from segbook.data.chapter import ChapterSubset, DataInfo
from segbook.runtime import Profile, Runtime, setup


def _rt(data="shapes", root="/nonexistent", seed=0, download=False):
    return Runtime(seed=seed, device=torch.device("cpu"), profile=Profile("quick"), data=data,
                   data_root=root, download=download)


# ----------------------------------------------------------------------------------------------
# shapes: exactly the procedural datasets the chapters built by hand
# ----------------------------------------------------------------------------------------------
def test_shapes_segmentation_matches_the_procedural_dataset():
    train, val, info = chapter_datasets(_rt(seed=4), task="segmentation", size=32, n_train=6, n_val=3)
    assert isinstance(train, ShapesSegmentation) and isinstance(val, ShapesSegmentation)
    assert (len(train), len(val), train.seed, val.seed) == (6, 3, 4, 5)
    ref_images, ref_masks = ShapesSegmentation(6, size=32, seed=4).tensors()
    images, masks = take(train)
    assert torch.equal(images, ref_images) and torch.equal(masks, ref_masks)
    assert info.classes == SEGMENTATION_CLASSES and info.num_classes == 6 and info.ignore_index == 255
    assert info.claims_apply is True and info.name == "shapes" and (info.n_train, info.n_val, info.size) == (6, 3, 32)
    assert "shapes" in str(info)


def test_shapes_classification_and_explicit_seed():
    train, val, info = chapter_datasets(_rt(seed=9), task="classification", size=16, n_train=20, n_val=10, seed=2)
    assert isinstance(train, ShapesClassification) and (train.seed, val.seed) == (2, 3)
    assert info.classes == CLASSIFICATION_CLASSES and info.ignore_index is None
    images, labels = take(val, 4)
    assert images.shape == (4, 3, 16, 16) and labels.tolist() == [0, 1, 2, 3]
    ref_images, ref_labels = ShapesClassification(20, size=16, seed=2).tensors()  # what chapter 1 built by hand
    images, labels = take(train)
    assert torch.equal(images, ref_images) and torch.equal(labels, ref_labels)


def test_shapes_augment_only_the_training_set():
    train, val, _ = chapter_datasets(_rt(), task="segmentation", size=32, n_train=2, n_val=2, augment=True)
    assert train.transform is not None and val.transform is None
    torch.manual_seed(0)
    image, mask = train[0]
    assert image.shape == (3, 32, 32) and mask.shape == (32, 32)


def test_claims_are_checked_on_shapes():
    _, _, info = chapter_datasets(_rt(), task="segmentation", size=32, n_train=1, n_val=1)
    assert info.claim(True, "fine") is True
    with pytest.raises(AssertionError, match="claim failed: too low"):
        info.claim(False, "too low")
    assert info.unchecked == [] and info.unchecked_report() == ""


@pytest.mark.parametrize(
    "data, task, match",
    [("cifar10", "segmentation", "SEGBOOK_DATA=cifar10 is a classification dataset.*'shapes', 'pets', 'voc'"),
     ("pets", "classification", "SEGBOOK_DATA=pets is a segmentation dataset.*'shapes', 'cifar10'"),
     ("voc", "classification", "SEGBOOK_DATA=voc is a segmentation dataset")],
)
def test_data_that_cannot_serve_the_task(data, task, match):
    with pytest.raises(ValueError, match=match):
        chapter_datasets(_rt(data), task=task, size=32, n_train=1, n_val=1)


def test_bad_arguments():
    with pytest.raises(ValueError, match="task must be one of"):
        chapter_datasets(_rt(), task="detection", size=32, n_train=1, n_val=1)
    with pytest.raises(ValueError, match="n_train must be a positive int"):
        chapter_datasets(_rt(), task="segmentation", size=32, n_train=0, n_val=1)
    with pytest.raises(TypeError, match="size must be a positive int"):  # a float is the wrong type
        chapter_datasets(_rt(), task="segmentation", size=32.0, n_train=1, n_val=1)


# ----------------------------------------------------------------------------------------------
# real data from fake folders
# ----------------------------------------------------------------------------------------------
def test_pets_through_the_factory(tmp_path):
    written = write_fake_pets(tmp_path, n_trainval=6, n_test=3)
    train, val, info = chapter_datasets(_rt("pets", tmp_path, seed=1), task="segmentation", size=16, n_train=4, n_val=10)
    assert isinstance(train, ChapterSubset) and len(train) == 4 and len(val) == 3  # val: all 3 of the split
    assert train.classes == PET_CLASSES and train.num_classes == 2
    assert info.classes == PET_CLASSES and info.num_classes == 2 and info.claims_apply is False
    assert (info.n_train, info.n_val) == (4, 3)
    assert "Oxford-IIIT Pet trainval 4 of 6 / test 3 of 3 images at 16x16" in info.description
    images, masks = take(val)
    assert images.shape == (3, 3, 16, 16) and images.dtype == torch.float32 and masks.dtype == torch.int64
    assert set(masks.unique().tolist()) == {0, 1, 255}  # background, pet, trimap border ignored
    # The subset is the seeded draw of real items: item 0 of val is the first test image, resized.
    image, mask = val[0]
    full = real.oxford_pets(tmp_path, split="test", size=16)
    ref_image, ref_mask = full[val.indices[0]]
    assert torch.equal(image, ref_image) and torch.equal(mask, ref_mask)
    assert len(written["test"]) == 3


def test_real_subsets_follow_the_seed(tmp_path):
    write_fake_pets(tmp_path, n_trainval=12, n_test=2)
    a, _, _ = chapter_datasets(_rt("pets", tmp_path, seed=0), task="segmentation", size=16, n_train=5, n_val=1)
    b, _, _ = chapter_datasets(_rt("pets", tmp_path, seed=0), task="segmentation", size=16, n_train=5, n_val=1)
    c, _, _ = chapter_datasets(_rt("pets", tmp_path, seed=1), task="segmentation", size=16, n_train=5, n_val=1)
    assert a.indices == b.indices and a.indices != c.indices
    assert a.indices == sorted(a.indices) and len(set(a.indices)) == 5


def test_pets_augmented_training_items_and_loader(tmp_path):
    write_fake_pets(tmp_path, n_trainval=4, n_test=2)
    train, val, info = chapter_datasets(_rt("pets", tmp_path), task="segmentation", size=16, n_train=4, n_val=2,
                                        augment=True)
    torch.manual_seed(0)
    images, masks = next(iter(make_loader(train, 4, shuffle=True, seed=0)))
    assert images.shape == (4, 3, 16, 16) and masks.shape == (4, 16, 16)
    assert set(masks.unique().tolist()) <= {0, 1, 255}
    pickle.loads(pickle.dumps(train))  # DataLoader workers need picklable datasets


def test_voc_through_the_factory(tmp_path):
    write_fake_voc(tmp_path, splits={"train": 3, "val": 2})
    train, val, info = chapter_datasets(_rt("voc", tmp_path), task="segmentation", size=24, n_train=8, n_val=8)
    assert (len(train), len(val)) == (3, 2)
    assert info.classes == VOC_CLASSES and info.num_classes == 21 and info.ignore_index == 255
    _, masks = take(train)
    values = set(masks.unique().tolist())
    assert 255 in values and 0 in values and 15 in values and values <= set(range(21)) | {255}


def test_cifar_through_the_factory_at_another_size(tmp_path, monkeypatch):
    write_fake_cifar10(tmp_path, per_batch=3)
    monkeypatch.setattr(real.CIFAR10, "verify_md5", False)  # fake files cannot match the official md5s
    train, val, info = chapter_datasets(_rt("cifar10", tmp_path), task="classification", size=32, n_train=100, n_val=2)
    assert (len(train), len(val)) == (15, 2) and info.num_classes == 10 and info.ignore_index is None
    images, labels = take(train, 3)
    assert images.shape == (3, 3, 32, 32) and labels.dtype == torch.int64
    small, _, _ = chapter_datasets(_rt("cifar10", tmp_path), task="classification", size=16, n_train=2, n_val=2,
                                   augment=True)
    assert small[0][0].shape == (3, 16, 16)


def test_missing_real_data_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        chapter_datasets(_rt("pets", tmp_path / "nothing"), task="segmentation", size=16, n_train=1, n_val=1)
    text = str(err.value)
    assert "Oxford-IIIT Pet not found" in text and "SEGBOOK_DOWNLOAD=1" in text and "SEGBOOK_DATA_ROOT" in text
    assert "about 800 MB" in text


def test_claims_are_recorded_not_checked_on_real_data(tmp_path):
    write_fake_pets(tmp_path, n_trainval=2, n_test=1)
    _, _, info = chapter_datasets(_rt("pets", tmp_path), task="segmentation", size=16, n_train=2, n_val=1)
    assert info.claim(False, "FCN-8s beats FCN-32s by 0.05 mIoU") is False  # no AssertionError
    assert info.claim(True, "mIoU above chance") is True
    report = info.unchecked_report()
    assert "Oxford-IIIT Pet" in report and "not checked" in report
    assert "FCN-8s beats FCN-32s by 0.05 mIoU [did not hold here]" in report
    assert "mIoU above chance [held here]" in report


def test_setup_env_to_factory(tmp_path, monkeypatch):
    """The path a chapter takes: $SEGBOOK_DATA / $SEGBOOK_DATA_ROOT -> setup -> chapter_datasets."""
    write_fake_pets(tmp_path, n_trainval=3, n_test=2)
    monkeypatch.setenv("SEGBOOK_DATA", "pets")
    monkeypatch.setenv("SEGBOOK_DATA_ROOT", str(tmp_path))
    monkeypatch.setenv("SEGBOOK_DOWNLOAD", "0")
    rt = setup(seed=0, device="cpu")
    _, _, info = chapter_datasets(rt, task="segmentation", size=16, n_train=3, n_val=2)
    assert info.name == "pets" and isinstance(info, DataInfo) and info.n_train == 3
