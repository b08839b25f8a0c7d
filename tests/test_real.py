"""Tests for segbook.data.real on small fake datasets written in the official on-disk formats.

Nothing here downloads: every test runs with sockets disabled, and the datasets are written by
tests/fakedata.py into pytest's tmp_path.

CIFAR-10 md5s: torchvision checks every batch file and ``batches.meta`` against the official
archive's md5, which fake files cannot match. segbook's CIFAR-10 subclass routes both checks
through one method that honours the class attribute ``verify_md5``; the ``cifar_root`` fixture sets
it to False with ``monkeypatch`` (undone after each test), so existence is still checked and only
the hashes are skipped. ``test_cifar_checks_md5_by_default`` shows users keep the verification.
"""
from __future__ import annotations

import inspect
import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import segbook.data.real as real
from fakedata import CIFAR_NAMES, voc_palette, write_fake_cifar10, write_fake_pets, write_fake_voc
from segbook.data.real import CIFAR10_CLASSES, PET_CLASSES, VOC_CLASSES, cifar10, oxford_pets, voc_segmentation
from segbook.constants import IGNORE_INDEX
from segbook.data.transforms import ClassificationAugment, SegmentationAugment


@pytest.mark.parametrize("loader", [cifar10, oxford_pets, voc_segmentation])
def test_download_is_off_by_default(loader):
    assert inspect.signature(loader).parameters["download"].default is False


# ----------------------------------------------------------------------------------------------
# CIFAR-10
# ----------------------------------------------------------------------------------------------
@pytest.fixture
def cifar_root(tmp_path, monkeypatch):
    written = write_fake_cifar10(tmp_path, per_batch=4)
    monkeypatch.setattr(real.CIFAR10, "verify_md5", False)  # fake files cannot match official md5s
    return tmp_path, written


def test_cifar_train_items(cifar_root):
    root, written = cifar_root
    ds = cifar10(root)
    assert len(ds) == 5 * 4
    assert ds.classes == tuple(CIFAR_NAMES) == CIFAR10_CLASSES and ds.num_classes == 10
    data, labels = written["data_batch_1"]
    for i in range(4):
        image, label = ds[i]
        assert image.shape == (3, 32, 32) and image.dtype == torch.float32
        assert label.shape == () and label.dtype == torch.int64 and int(label) == labels[i]
        # Row layout: 1024 red, 1024 green, 1024 blue, each a row-major 32x32 plane.
        expected = torch.from_numpy(data[i].reshape(3, 32, 32)).float() / 255
        assert torch.equal(image, expected)
    data5, labels5 = written["data_batch_5"]
    image, label = ds[len(ds) - 1]
    assert int(label) == labels5[-1]
    assert torch.equal(image, torch.from_numpy(data5[-1].reshape(3, 32, 32)).float() / 255)


def test_cifar_test_split_transform_and_loader(cifar_root):
    root, written = cifar_root
    ds = cifar10(root, train=False, transform=ClassificationAugment(32, padding=4))
    data, labels = written["test_batch"]
    assert len(ds) == 4
    torch.manual_seed(0)
    images, targets = next(iter(DataLoader(ds, batch_size=4)))
    assert images.shape == (4, 3, 32, 32) and images.dtype == torch.float32
    assert targets.tolist() == labels and targets.dtype == torch.int64
    assert 0.0 <= images.min() and images.max() <= 1.0


def test_cifar_checks_md5_by_default(tmp_path):
    write_fake_cifar10(tmp_path, per_batch=2)
    assert real.CIFAR10.verify_md5 is True
    with pytest.raises(RuntimeError, match="corrupted"):
        cifar10(tmp_path)


def test_cifar_missing_folder_says_where_and_how(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        cifar10(tmp_path / "nowhere")
    message = str(info.value)
    assert "cifar-10-batches-py" in message and "data_batch_1" in message and "batches.meta" in message
    assert "download=True" in message and "cs.toronto.edu" in message


def test_cifar_missing_file_is_named(cifar_root):
    root, _ = cifar_root
    (root / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3"):
        cifar10(root)


# ----------------------------------------------------------------------------------------------
# Oxford-IIIT Pet
# ----------------------------------------------------------------------------------------------
@pytest.fixture
def pets_root(tmp_path):
    return tmp_path, write_fake_pets(tmp_path, n_trainval=4, n_test=2, height=24, width=32)


def trimap_to_classes(trimap: np.ndarray) -> torch.Tensor:
    expected = np.full(trimap.shape, IGNORE_INDEX, dtype=np.int64)
    expected[trimap == 1] = 1  # pet
    expected[trimap == 2] = 0  # background
    return torch.from_numpy(expected)  # border (3) stays 255


def test_pets_items_and_trimap_mapping(pets_root):
    root, written = pets_root
    ds = oxford_pets(root, size=(24, 32))  # native size: the mask is not resampled at all
    assert len(ds) == 4
    assert ds.classes == PET_CLASSES and ds.num_classes == 2
    assert "Abyssinian" in ds.breeds
    for i, (_, trimap) in enumerate(written["trainval"]):
        image, mask = ds[i]
        assert image.shape == (3, 24, 32) and image.dtype == torch.float32
        assert 0.0 <= image.min() and image.max() <= 1.0
        assert mask.dtype == torch.int64
        assert torch.equal(mask, trimap_to_classes(trimap))
        assert set(mask.unique().tolist()) == {0, 1, IGNORE_INDEX}


def test_pets_resized_square_and_test_split(pets_root):
    root, _ = pets_root
    ds = oxford_pets(root, split="test", size=16)
    assert len(ds) == 2
    image, mask = ds[0]
    assert image.shape == (3, 16, 16) and mask.shape == (16, 16)
    assert set(mask.unique().tolist()) <= {0, 1, IGNORE_INDEX}


def test_pets_custom_joint_transform_and_pickling(pets_root):
    root, _ = pets_root
    ds = oxford_pets(root, transform=SegmentationAugment(20, rotate=10))
    ds = pickle.loads(pickle.dumps(ds))  # DataLoader workers pickle the dataset
    torch.manual_seed(0)
    images, masks = next(iter(DataLoader(ds, batch_size=4)))
    assert images.shape == (4, 3, 20, 20) and masks.shape == (4, 20, 20) and masks.dtype == torch.int64
    assert set(masks.unique().tolist()) <= {0, 1, IGNORE_INDEX}


def test_pets_missing_folder_says_where_and_how(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        oxford_pets(tmp_path)
    message = str(info.value)
    assert "oxford-iiit-pet" in message and "images" in message and "trimaps" in message
    assert "trainval.txt" in message and "download=True" in message and "robots.ox.ac.uk" in message


def test_pets_bad_split(pets_root):
    with pytest.raises(ValueError, match="split"):
        oxford_pets(pets_root[0], split="train")


# ----------------------------------------------------------------------------------------------
# PASCAL VOC
# ----------------------------------------------------------------------------------------------
def test_voc_classes_and_palette():
    assert len(VOC_CLASSES) == 21 and VOC_CLASSES[0] == "background" and VOC_CLASSES[15] == "person"
    assert VOC_CLASSES[-1] == "tvmonitor"
    cmap = real._voc_colormap(256)
    assert cmap.reshape(-1).tolist() == voc_palette()  # two independent implementations agree
    assert cmap[1].tolist() == [128, 0, 0] and cmap[15].tolist() == [192, 128, 128]
    assert cmap[255].tolist() == [224, 224, 192]  # the colour of the void outlines


@pytest.mark.parametrize("rgb_masks", [False, True], ids=["palette", "rgb"])
def test_voc_items_and_labels(tmp_path, rgb_masks):
    written = write_fake_voc(tmp_path, height=24, width=32, rgb_masks=rgb_masks)
    ds = voc_segmentation(tmp_path, size=(24, 32))  # native size: no resampling
    assert len(ds) == 3 and ds.classes == VOC_CLASSES and ds.num_classes == 21
    for i, (_, expected) in enumerate(written["train"]):
        image, mask = ds[i]
        assert image.shape == (3, 24, 32) and image.dtype == torch.float32
        assert mask.dtype == torch.int64
        assert torch.equal(mask, torch.from_numpy(expected.astype(np.int64)))
        assert IGNORE_INDEX in mask.unique().tolist() and 15 in mask.unique().tolist()


def test_voc_image_sets_and_resize(tmp_path):
    write_fake_voc(tmp_path, splits={"train": 2, "val": 3})
    assert len(voc_segmentation(tmp_path, image_set="val")) == 3
    ds = voc_segmentation(tmp_path, image_set="trainval", size=16)
    assert len(ds) == 5
    image, mask = ds[4]
    assert image.shape == (3, 16, 16) and mask.shape == (16, 16)
    assert set(mask.unique().tolist()) <= set(range(21)) | {IGNORE_INDEX}


def test_voc_unknown_values_become_ignore(tmp_path):
    written = write_fake_voc(tmp_path, splits={"train": 1})
    image_id, _ = written["train"][0]
    path = tmp_path / "VOCdevkit" / "VOC2012" / "SegmentationClass" / f"{image_id}.png"
    from PIL import Image

    label = Image.open(path)
    values = np.array(label)
    values[0, :5] = 77  # not a VOC class
    patched = Image.frombytes("P", label.size, values.tobytes())
    patched.putpalette(voc_palette())
    patched.save(path)
    _, mask = voc_segmentation(tmp_path, size=(24, 32))[0]
    assert mask[0, :5].tolist() == [IGNORE_INDEX] * 5


def test_voc_missing_folder_says_where_and_how(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        voc_segmentation(tmp_path)
    message = str(info.value)
    assert "VOCdevkit" in message and "VOC2012" in message and "JPEGImages" in message
    assert "SegmentationClass" in message and "train.txt" in message and "download=True" in message


def test_voc_missing_split_file_is_named(tmp_path):
    write_fake_voc(tmp_path, splits={"train": 1})
    (tmp_path / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation" / "trainval.txt").unlink(missing_ok=True)
    with pytest.raises(FileNotFoundError, match="val.txt"):
        voc_segmentation(tmp_path, image_set="val")


@pytest.mark.parametrize("kwargs", [dict(year="2013"), dict(image_set="test"), dict(image_set="training")])
def test_voc_bad_arguments(tmp_path, kwargs):
    with pytest.raises(ValueError):
        voc_segmentation(tmp_path, **kwargs)
