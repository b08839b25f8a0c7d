"""Tiny stand-ins for real datasets, written in their exact on-disk formats.

Used by tests/test_real.py to exercise segbook.data.real (and torchvision's readers underneath)
without any download. Each builder writes under ``root`` what the official archive extracts to,
only with a handful of small images, and returns what it wrote so tests can compare.

Formats (matched to torchvision 0.29's readers):

* CIFAR-10 ("python version"): ``cifar-10-batches-py/data_batch_1..5`` and ``test_batch`` are
  pickled dicts with ``data`` (uint8 ``[N, 3072]``, each row 1024 red, then 1024 green, then 1024
  blue values of a row-major 32x32 image), ``labels`` (list of N ints), ``batch_label`` and
  ``filenames``; ``batches.meta`` is a pickled dict with ``label_names`` (10 names),
  ``num_cases_per_batch`` and ``num_vis``.
* Oxford-IIIT Pet: ``oxford-iiit-pet/images/<id>.jpg`` (RGB JPEG),
  ``annotations/trimaps/<id>.png`` (8-bit greyscale PNG, 1 pet / 2 background / 3 border) and
  ``annotations/{trainval,test}.txt`` with lines ``<id> <class 1..37> <species 1 cat, 2 dog>
  <breed id>``; ids are ``<Breed_name>_<n>``, cat breeds capitalised, dog breeds lower case.
* PASCAL VOC: ``VOCdevkit/VOC2012/JPEGImages/<id>.jpg``, ``SegmentationClass/<id>.png`` (palette
  "P" PNGs with the VOC colour map, pixel values 0..20 and 255 for object outlines) and
  ``ImageSets/Segmentation/{train,val,trainval}.txt`` (one id per line, ids like ``2007_000032``).
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image

CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_fake_cifar10(root: Path, *, per_batch: int = 4, seed: int = 0) -> dict[str, tuple[np.ndarray, list[int]]]:
    """Write ``root/cifar-10-batches-py`` with ``per_batch`` images in each of the 6 batch files.

    Returns ``{file name: (data uint8 [N, 3072], labels)}`` for the batch files.
    """
    rng = np.random.default_rng(seed)
    base = Path(root) / "cifar-10-batches-py"
    base.mkdir(parents=True, exist_ok=True)
    written = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=per_batch)]
        entry = {
            "batch_label": f"fake {name}",
            "labels": labels,
            "data": data,
            "filenames": [f"fake_{name}_{i}.png" for i in range(per_batch)],
        }
        with open(base / name, "wb") as f:
            pickle.dump(entry, f, protocol=2)
        written[name] = (data, labels)
    with open(base / "batches.meta", "wb") as f:
        pickle.dump({"label_names": CIFAR_NAMES, "num_cases_per_batch": per_batch, "num_vis": 3072}, f, protocol=2)
    return written


# A few real breed names with their official class ids (1..37) and species (1 cat, 2 dog).
PET_BREEDS = [("Abyssinian", 1, 1), ("american_bulldog", 2, 2), ("Bengal", 6, 1), ("beagle", 4, 2)]


def fake_trimap(height: int, width: int, index: int) -> np.ndarray:
    """A trimap: background (2) with a pet rectangle (1) outlined by a 2-pixel border band (3)."""
    t = np.full((height, width), 2, dtype=np.uint8)
    top, left = 2 + index % 3, 3 + index % 4
    bottom, right = height - 3, width - 4
    t[top:bottom, left:right] = 3
    t[top + 2 : bottom - 2, left + 2 : right - 2] = 1
    return t


def write_fake_pets(
    root: Path, *, n_trainval: int = 4, n_test: int = 2, height: int = 24, width: int = 32, seed: int = 0
) -> dict[str, list[tuple[str, np.ndarray]]]:
    """Write ``root/oxford-iiit-pet`` with small JPEG images and trimap PNGs.

    Returns ``{split: [(image id, trimap uint8 [H, W]), ...]}``.
    """
    rng = np.random.default_rng(seed)
    base = Path(root) / "oxford-iiit-pet"
    images, trimaps = base / "images", base / "annotations" / "trimaps"
    images.mkdir(parents=True, exist_ok=True)
    trimaps.mkdir(parents=True, exist_ok=True)
    written: dict[str, list[tuple[str, np.ndarray]]] = {}
    k = 0
    for split, n in (("trainval", n_trainval), ("test", n_test)):
        lines, items = [], []
        for _ in range(n):
            breed, class_id, species = PET_BREEDS[k % len(PET_BREEDS)]
            image_id = f"{breed}_{100 + k}"
            pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(images / f"{image_id}.jpg", quality=90)
            trimap = fake_trimap(height, width, k)
            Image.fromarray(trimap).save(trimaps / f"{image_id}.png")
            lines.append(f"{image_id} {class_id} {species} {1 + k % 12}\n")
            items.append((image_id, trimap))
            k += 1
        (base / "annotations" / f"{split}.txt").write_text("".join(lines))
        written[split] = items
    return written


def voc_palette() -> list[int]:
    """The VOC colour map as a flat list of 768 ints for ``Image.putpalette``.

    Written independently of segbook's copy: colour of index k spreads the bits of k over
    (r, g, b), most significant first.
    """
    palette = []
    for k in range(256):
        rgb = [0, 0, 0]
        for bit in range(8):
            for channel in range(3):
                if (k >> (3 * bit + channel)) & 1:
                    rgb[channel] |= 1 << (7 - bit)
        palette.extend(rgb)
    return palette


def fake_voc_mask(height: int, width: int, index: int) -> np.ndarray:
    """Background (0), two objects of classes 1 + index % 20 and 15 (person), 255 outlines."""
    m = np.zeros((height, width), dtype=np.uint8)
    m[2:10, 3:14] = 255
    m[3:9, 4:13] = 1 + index % 20
    m[12:22, 16:30] = 255
    m[13:21, 17:29] = 15
    return m


def write_fake_voc(
    root: Path,
    *,
    year: str = "2012",
    splits: dict[str, int] | None = None,
    height: int = 24,
    width: int = 32,
    rgb_masks: bool = False,
    seed: int = 0,
) -> dict[str, list[tuple[str, np.ndarray]]]:
    """Write ``root/VOCdevkit/VOC<year>`` with small JPEGs and palette label PNGs.

    ``rgb_masks=True`` saves the label images as RGB colours instead of palette indices, as some
    conversion tools do. Returns ``{image_set: [(image id, mask uint8 [H, W]), ...]}``;
    ``trainval`` is the union of ``train`` and ``val``.
    """
    splits = splits or {"train": 3, "val": 2}
    rng = np.random.default_rng(seed)
    voc = Path(root) / "VOCdevkit" / f"VOC{year}"
    jpeg, seg, sets = voc / "JPEGImages", voc / "SegmentationClass", voc / "ImageSets" / "Segmentation"
    for folder in (jpeg, seg, sets):
        folder.mkdir(parents=True, exist_ok=True)
    palette = voc_palette()
    written: dict[str, list[tuple[str, np.ndarray]]] = {}
    k = 0
    for split, n in splits.items():
        items = []
        for _ in range(n):
            image_id = f"{year}_{k:06d}"
            pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(jpeg / f"{image_id}.jpg", quality=90)
            mask = fake_voc_mask(height, width, k)
            label = Image.frombytes("P", (width, height), mask.tobytes())
            label.putpalette(palette)
            if rgb_masks:
                label = label.convert("RGB")
            label.save(seg / f"{image_id}.png")
            items.append((image_id, mask))
            k += 1
        (sets / f"{split}.txt").write_text("".join(f"{i}\n" for i, _ in items))
        written[split] = items
    if "train" in written and "val" in written and "trainval" not in written:
        written["trainval"] = written["train"] + written["val"]
        (sets / "trainval.txt").write_text("".join(f"{i}\n" for i, _ in written["trainval"]))
    return written
