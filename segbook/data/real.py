"""Real datasets, loaded only when a chapter or a user asks for them.

The book runs offline on procedural data (:mod:`segbook.data.synthetic`); these loaders are the
bridge to the classic benchmarks. They read a **local folder** and never touch the network unless
``download=True`` is passed, which is handed to torchvision unchanged. A missing folder raises a
:class:`FileNotFoundError` that names the expected layout and how to get the files, before
torchvision is even asked.

Items follow the conventions of the rest of segbook:

=========================  ====================================  ==================================
loader                     image                                 target
=========================  ====================================  ==================================
:func:`cifar10`            float32 ``[3, 32, 32]`` in [0, 1]     int64 scalar label, 0..9
:func:`oxford_pets`        float32 ``[3, S, S]`` in [0, 1]       int64 ``[S, S]``: 0 background,
                                                                 1 pet, 255 border (ignored)
:func:`voc_segmentation`   float32 ``[3, S, S]`` in [0, 1]       int64 ``[S, S]``: 0..20, 255
                                                                 object borders (ignored)
=========================  ====================================  ==================================

Expected layouts under ``root`` (what torchvision's archives extract to)::

    root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}
    root/oxford-iiit-pet/images/<id>.jpg
    root/oxford-iiit-pet/annotations/{trainval.txt, test.txt, trimaps/<id>.png}
    root/VOCdevkit/VOC2012/{JPEGImages/<id>.jpg, SegmentationClass/<id>.png,
                            ImageSets/Segmentation/{train,val,trainval}.txt}

Each returned dataset has ``classes`` (a tuple of names) and ``num_classes``, like the procedural
datasets.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np
import torch
from PIL import Image
from torchvision import datasets
from torchvision.datasets.utils import check_integrity
from torchvision.transforms.v2 import functional as TF

from ..constants import IGNORE_INDEX
from .transforms import SegmentationEval

__all__ = [
    "CIFAR10_CLASSES",
    "PET_CLASSES",
    "VOC_CLASSES",
    "cifar10",
    "oxford_pets",
    "voc_segmentation",
    "CIFAR10",
    "OxfordIIITPetSegmentation",
    "VOCSegmentation",
]

PathLike = Union[str, os.PathLike]
JointTransform = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
PET_CLASSES = ("background", "pet")
VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)


# ----------------------------------------------------------------------------------------------
# Shared helpers
# ----------------------------------------------------------------------------------------------
def _require(paths: list[Path], *, dataset: str, layout: str, fix: str) -> None:
    """Raise FileNotFoundError naming the missing paths, the expected layout and the fix."""
    missing = [p for p in paths if not p.exists()]
    if missing:
        shown = ", ".join(str(p) for p in missing[:3])
        if len(missing) > 3:
            shown += f" (and {len(missing) - 3} more)"
        raise FileNotFoundError(f"{dataset} not found: missing {shown}.\nExpected layout:\n{layout}\nTo fix: {fix}")


def _pil_to_float(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> float32 ``[3, H, W]`` in [0, 1]."""
    return TF.pil_to_tensor(image.convert("RGB")).float().div_(255.0)


def _lookup(values: np.ndarray, table: torch.Tensor) -> torch.Tensor:
    """Map uint8 label values through a 256-entry int64 lookup table: ``[H, W]`` int64."""
    return table[torch.from_numpy(np.array(values, dtype=np.uint8)).long()]  # np.array: a writable copy


class _SegmentationItem:
    """Turns a PIL ``(image, label image)`` pair into tensors, then applies the joint transform.

    A class (not a closure) so that datasets stay picklable for ``DataLoader`` workers.
    """

    def __init__(self, decode_mask: Callable[[Image.Image], torch.Tensor], transform: JointTransform) -> None:
        self.decode_mask = decode_mask
        self.transform = transform

    def __call__(self, image: Image.Image, target: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(_pil_to_float(image), self.decode_mask(target))

    def __repr__(self) -> str:
        return f"{self.transform!r}"


class _NumClasses:
    """``num_classes = len(self.classes)`` for the torchvision datasets below (mixed in first)."""

    @property
    def num_classes(self) -> int:
        return len(self.classes)  # type: ignore[attr-defined]


# ----------------------------------------------------------------------------------------------
# CIFAR-10
# ----------------------------------------------------------------------------------------------
class CIFAR10(_NumClasses, datasets.CIFAR10):
    """torchvision's CIFAR-10 with tensor items and an md5 switch (what :func:`cifar10` returns).

    torchvision verifies the md5 of every batch file and of ``batches.meta`` against the official
    archive. That is the right default, but it rejects any file that is not the official one, such
    as the small fakes the tests write. Setting the class attribute ``verify_md5 = False`` (tests do
    it with ``monkeypatch.setattr``) keeps the existence checks and skips the hashes; it is not a
    constructor argument on purpose, so users always get verified data.
    """

    verify_md5: bool = True

    def _file_ok(self, filename: str, md5: str) -> bool:
        path = os.path.join(self.root, self.base_folder, filename)
        return check_integrity(path, md5 if self.verify_md5 else None)

    def _check_integrity(self) -> bool:  # overrides torchvision
        return all(self._file_ok(name, md5) for name, md5 in self.train_list + self.test_list)

    def _load_meta(self) -> None:  # overrides torchvision (which calls check_integrity directly)
        if not self._file_ok(self.meta["filename"], self.meta["md5"]):
            raise RuntimeError("Dataset metadata file not found or corrupted. You can use download=True to get it")
        with open(os.path.join(self.root, self.base_folder, self.meta["filename"]), "rb") as f:
            meta = pickle.load(f, encoding="latin1")
        self.classes = tuple(meta[self.meta["key"]])
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}

    def __getitem__(self, index: int) -> tuple[Any, torch.Tensor]:
        # self.data: uint8 [N, 32, 32, 3] (HWC), as torchvision stores it.
        image = torch.from_numpy(self.data[index]).permute(2, 0, 1).float().div_(255.0)
        if self.transform is not None:
            image = self.transform(image)
        label = torch.tensor(self.targets[index], dtype=torch.int64)
        if self.target_transform is not None:
            label = self.target_transform(label)
        return image, label


def cifar10(
    root: PathLike,
    *,
    train: bool = True,
    transform: Optional[Callable[[torch.Tensor], Any]] = None,
    download: bool = False,
) -> CIFAR10:
    """CIFAR-10 from ``root/cifar-10-batches-py`` (the python version of the dataset).

    Args:
        root: folder that contains ``cifar-10-batches-py/``.
        train: the 50,000 training images (``data_batch_1`` .. ``data_batch_5``) or the 10,000
            test images (``test_batch``).
        transform: applied to the float32 ``[3, 32, 32]`` image tensor, e.g.
            :class:`segbook.data.transforms.ClassificationAugment`.
        download: fetch and extract the archive (~170 MB) with torchvision if it is missing.

    Returns:
        A :class:`CIFAR10` (a :class:`torchvision.datasets.CIFAR10`) whose items are
        ``(image, label)``: image float32 ``[3, 32, 32]`` in [0, 1] (before ``transform``), label
        an int64 scalar tensor in 0..9.
        ``classes`` holds the 10 names from ``batches.meta``.

    Raises:
        FileNotFoundError: the folder or one of its files is missing and ``download`` is False.
    """
    base = Path(root) / CIFAR10.base_folder
    if not download:
        names = [name for name, _ in CIFAR10.train_list + CIFAR10.test_list] + [CIFAR10.meta["filename"]]
        _require(
            [base / name for name in names],
            dataset="CIFAR-10",
            layout=f"  {base}/data_batch_1 ... data_batch_5, test_batch, batches.meta",
            fix=(
                "pass download=True (about 170 MB), or download cifar-10-python.tar.gz from "
                f"https://www.cs.toronto.edu/~kriz/cifar.html and extract it into {Path(root)}."
            ),
        )
    return CIFAR10(str(root), train=train, transform=transform, download=download)


# ----------------------------------------------------------------------------------------------
# Oxford-IIIT Pet
# ----------------------------------------------------------------------------------------------
# Trimap pixel values: 1 pet, 2 background, 3 border (unsure).
_TRIMAP_TO_CLASS = torch.full((256,), IGNORE_INDEX, dtype=torch.int64)
_TRIMAP_TO_CLASS[1] = 1
_TRIMAP_TO_CLASS[2] = 0


def _decode_trimap(trimap: Image.Image) -> torch.Tensor:
    """Trimap PNG -> int64 ``[H, W]``: 0 background, 1 pet, 255 border and anything unexpected."""
    return _lookup(np.asarray(trimap), _TRIMAP_TO_CLASS)


class OxfordIIITPetSegmentation(_NumClasses, datasets.OxfordIIITPet):
    """torchvision's Oxford-IIIT Pet with segmentation classes (what :func:`oxford_pets` returns).

    ``classes`` is :data:`PET_CLASSES`; torchvision's 37 breed names move to ``breeds``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.breeds = tuple(self.classes)
        self.classes = PET_CLASSES


def oxford_pets(
    root: PathLike,
    *,
    split: str = "trainval",
    size: Union[int, tuple[int, int]] = 128,
    transform: Optional[JointTransform] = None,
    download: bool = False,
) -> OxfordIIITPetSegmentation:
    """Oxford-IIIT Pet foreground/background segmentation from ``root/oxford-iiit-pet``.

    The trimaps (1 pet, 2 background, 3 border) become classes 0 background, 1 pet, and 255
    (ignore) for the uncertain border band.

    Args:
        root: folder that contains ``oxford-iiit-pet/``.
        split: ``"trainval"`` (3,680 images) or ``"test"`` (3,669 images).
        size: output size ``S`` (or ``(height, width)``) of the default transform
            :class:`~segbook.data.transforms.SegmentationEval`.
        transform: a joint ``(image, mask) -> (image, mask)`` callable used *instead of* the
            default resize, applied to the full-resolution float32 ``[3, H, W]`` image and int64
            ``[H, W]`` mask, e.g. ``SegmentationAugment(S)``.
        download: fetch the two archives (~800 MB) with torchvision if they are missing.

    Returns:
        An :class:`OxfordIIITPetSegmentation` (a :class:`torchvision.datasets.OxfordIIITPet`)
        whose items are ``(image, mask)``: float32 ``[3, S, S]`` in [0, 1] and int64 ``[S, S]``
        in {0, 1, 255}. ``classes`` is ``("background", "pet")``; the breed names are in
        ``breeds``.

    Raises:
        ValueError: unknown ``split``.
        FileNotFoundError: the folder or the split's files are missing and ``download`` is False.
    """
    if split not in ("trainval", "test"):
        raise ValueError(f"split: expected 'trainval' or 'test', got {split!r}")
    base = Path(root) / "oxford-iiit-pet"
    if not download:
        _require(
            [base / "images", base / "annotations" / "trimaps", base / "annotations" / f"{split}.txt"],
            dataset="Oxford-IIIT Pet",
            layout=(
                f"  {base}/images/<image_id>.jpg\n"
                f"  {base}/annotations/trimaps/<image_id>.png\n"
                f"  {base}/annotations/{split}.txt   (lines '<image_id> <class> <species> <breed>')"
            ),
            fix=(
                "pass download=True (about 800 MB), or download images.tar.gz and annotations.tar.gz "
                f"from https://www.robots.ox.ac.uk/~vgg/data/pets/ and extract both into {base}."
            ),
        )
    item = _SegmentationItem(_decode_trimap, transform if transform is not None else SegmentationEval(size))
    return OxfordIIITPetSegmentation(
        str(root), split=split, target_types="segmentation", transforms=item, download=download
    )


# ----------------------------------------------------------------------------------------------
# PASCAL VOC
# ----------------------------------------------------------------------------------------------
def _voc_colormap(n: int = 256) -> np.ndarray:
    """The PASCAL VOC palette: uint8 ``[n, 3]``; entry ``k`` is the colour of class ``k``."""
    cmap = np.zeros((n, 3), dtype=np.uint8)
    for k in range(n):
        r = g = b = 0
        c = k
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap[k] = (r, g, b)
    return cmap


# Palette index -> class: 0..20 stay, 255 (object borders, "void") and anything else is ignored.
_VOC_INDEX_TO_CLASS = torch.full((256,), IGNORE_INDEX, dtype=torch.int64)
_VOC_INDEX_TO_CLASS[: len(VOC_CLASSES)] = torch.arange(len(VOC_CLASSES))


def _decode_voc_mask(target: Image.Image) -> torch.Tensor:
    """VOC label PNG -> int64 ``[H, W]`` class ids 0..20, 255 ignore.

    The official files are palette ("P") images whose pixel values *are* the class ids. Masks that
    were saved as RGB colours (by some conversion tools) are mapped back through the VOC palette;
    colours that are not one of the 21 class colours become 255.
    """
    if target.mode in ("P", "L"):
        return _lookup(np.asarray(target), _VOC_INDEX_TO_CLASS)
    rgb = np.asarray(target.convert("RGB")).astype(np.int64)
    code = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    palette = _voc_colormap(len(VOC_CLASSES)).astype(np.int64)
    keys = (palette[:, 0] << 16) | (palette[:, 1] << 8) | palette[:, 2]
    out = np.full(code.shape, IGNORE_INDEX, dtype=np.int64)
    for cls, key in enumerate(keys):
        out[code == key] = cls
    return torch.from_numpy(out)


_VOC_YEARS = tuple(str(y) for y in range(2007, 2013))


def _voc_base_dir(year: str, image_set: str) -> str:
    key = "2007-test" if year == "2007" and image_set == "test" else year
    table = getattr(datasets.voc, "DATASET_YEAR_DICT", {})
    return table.get(key, {}).get("base_dir", os.path.join("VOCdevkit", f"VOC{year}"))


class VOCSegmentation(_NumClasses, datasets.VOCSegmentation):
    """torchvision's VOC segmentation with ``classes`` / ``num_classes``.

    What :func:`voc_segmentation` returns.
    """

    classes = VOC_CLASSES


def voc_segmentation(
    root: PathLike,
    *,
    year: str = "2012",
    image_set: str = "train",
    size: Union[int, tuple[int, int]] = 256,
    transform: Optional[JointTransform] = None,
    download: bool = False,
) -> VOCSegmentation:
    """PASCAL VOC semantic segmentation (21 classes) from ``root/VOCdevkit/VOC<year>``.

    Args:
        root: folder that contains ``VOCdevkit/`` (for 2011: ``TrainVal/VOCdevkit/``).
        year: ``"2007"`` .. ``"2012"``.
        image_set: ``"train"``, ``"val"`` or ``"trainval"`` (and ``"test"`` for 2007).
        size: output size ``S`` (or ``(height, width)``) of the default transform
            :class:`~segbook.data.transforms.SegmentationEval`.
        transform: a joint ``(image, mask) -> (image, mask)`` callable used *instead of* the
            default resize, applied to the full-resolution float32 ``[3, H, W]`` image and int64
            ``[H, W]`` mask, e.g. ``SegmentationAugment(S)``.
        download: fetch and extract the archive (VOC2012: ~2 GB) with torchvision if missing.

    Returns:
        A :class:`VOCSegmentation` (a :class:`torchvision.datasets.VOCSegmentation`) whose
        items are ``(image, mask)``: float32 ``[3, S, S]`` in [0, 1] and int64 ``[S, S]`` with
        class ids 0..20 (:data:`VOC_CLASSES`) and 255 for the "void" outlines around objects.

    Raises:
        ValueError: unknown ``year`` or ``image_set``.
        FileNotFoundError: the folder or the split's files are missing and ``download`` is False.
    """
    year = str(year)
    if year not in _VOC_YEARS:
        raise ValueError(f"year: expected one of {_VOC_YEARS}, got {year!r}")
    valid_sets = ("train", "trainval", "val") + (("test",) if year == "2007" else ())
    if image_set not in valid_sets:
        raise ValueError(f"image_set: expected one of {valid_sets} for year {year}, got {image_set!r}")
    voc_root = Path(root) / _voc_base_dir(year, image_set)
    if not download:
        _require(
            [
                voc_root / "JPEGImages",
                voc_root / "SegmentationClass",
                voc_root / "ImageSets" / "Segmentation" / f"{image_set}.txt",
            ],
            dataset=f"PASCAL VOC {year} segmentation",
            layout=(
                f"  {voc_root}/JPEGImages/<image_id>.jpg\n"
                f"  {voc_root}/SegmentationClass/<image_id>.png   (palette PNG, values 0..20 and 255)\n"
                f"  {voc_root}/ImageSets/Segmentation/{image_set}.txt   (one <image_id> per line)"
            ),
            fix=(
                "pass download=True (VOC2012 is about 2 GB), or download the VOC trainval tar from "
                f"http://host.robots.ox.ac.uk/pascal/VOC/ and extract it into {Path(root)}."
            ),
        )
    item = _SegmentationItem(_decode_voc_mask, transform if transform is not None else SegmentationEval(size))
    return VOCSegmentation(str(root), year=year, image_set=image_set, transforms=item, download=download)
