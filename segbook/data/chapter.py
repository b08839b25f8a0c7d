"""The data a chapter trains on: procedural shapes by default, a real dataset when asked.

A chapter asks for its data in one call, sized by its profile::

    rt = setup(seed=0)                                   # rt.data: "shapes" unless $SEGBOOK_DATA says otherwise
    train_set, val_set, info = chapter_datasets(rt, task="segmentation", size=64, n_train=2048, n_val=128)
    model = fcn8s(num_classes=info.num_classes)
    ...
    info.claim(miou > 0.5, f"FCN-8s mIoU {miou:.3f} <= 0.5")   # checked on shapes, listed as unchecked on real data
    print(info.unchecked_report())

Whatever the data, items have the same format (image float32 ``[3, S, S]`` in [0, 1]; a mask
int64 ``[S, S]`` with :data:`~segbook.constants.IGNORE_INDEX` (255) for unlabelled pixels,
or an int64 scalar label) and pass through the same joint transforms
(:class:`~segbook.data.transforms.SegmentationEval` / ``SegmentationAugment``,
:class:`~segbook.data.transforms.ClassificationAugment`), so the rest of the chapter does not
change.

=================  ==============  ============================================  ===========================
``rt.data``        task            train / validation split                      classes
=================  ==============  ============================================  ===========================
``shapes``         both            :class:`ShapesSegmentation` /                 6 / 10 shapes
                                   :class:`ShapesClassification`, seeds
                                   ``seed`` and ``seed + 1``
``cifar10``        classification  CIFAR-10 train (50,000) / test (10,000)       10
``pets``           segmentation    Oxford-IIIT Pet trainval (3,680) /            background, pet (trimap
                                   test (3,669)                                  border ignored)
``voc``            segmentation    PASCAL VOC 2012 train (1,464) / val (1,449)   21 (object outlines ignored)
=================  ==============  ============================================  ===========================

Real splits are cut to ``n_train`` / ``n_val`` items by a random subset drawn from ``seed`` (and
``seed + 1``), so ``$SEGBOOK_SEED_OFFSET`` changes which images a chapter sees, as it changes the
procedural scenes.

The chapters' claims (margins, thresholds) were calibrated on the procedural data, with its
budgets. On real data they are not checked: :attr:`DataInfo.claims_apply` is False,
:meth:`DataInfo.claim` records the claim instead of asserting it, and
:meth:`DataInfo.unchecked_report` lists what was not checked, next to the numbers the chapter
reports.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import torch
from torch.utils.data import Dataset, Subset

from ..checks import positive_int
from ..constants import IGNORE_INDEX, TASKS
from ..notebook import claim as _claim, claims_record
from . import real
from .synthetic import CLASSIFICATION_CLASSES, SEGMENTATION_CLASSES, ShapesClassification, ShapesSegmentation
from .transforms import ClassificationAugment, SegmentationAugment, SegmentationEval

__all__ = ["TASKS", "DATA_TASKS", "DataInfo", "ChapterSubset", "chapter_datasets", "take"]

# Which task each data choice can serve (rt.data -> tasks).
DATA_TASKS = {
    "shapes": ("segmentation", "classification"),
    "cifar10": ("classification",),
    "pets": ("segmentation",),
    "voc": ("segmentation",),
}
_TITLES = {
    "shapes": "procedural shapes",
    "cifar10": "CIFAR-10",
    "pets": "Oxford-IIIT Pet",
    "voc": "PASCAL VOC 2012",
}
_SPLITS = {"cifar10": ("train", "test"), "pets": ("trainval", "test"), "voc": ("train", "val")}
_DOWNLOAD_SIZES = {"cifar10": "about 170 MB", "pets": "about 800 MB", "voc": "about 2 GB"}


@dataclass
class DataInfo:
    """What :func:`chapter_datasets` loaded, and whether the chapter's claims are checked on it.

    Attributes:
        name: ``"shapes"``, ``"cifar10"``, ``"pets"`` or ``"voc"`` (``rt.data``).
        task: ``"segmentation"`` or ``"classification"``.
        classes: class names; index ``k`` is class ``k``.
        num_classes: ``len(classes)``.
        ignore_index: mask value of unlabelled pixels (segmentation; 255), ``None`` for classification.
        size: image side ``S`` of the items.
        n_train, n_val: number of items in the two datasets (real splits may hold fewer than asked).
        claims_apply: True on the procedural data the chapter's claims were calibrated on, False
            on real data.
        description: one line for the chapter log.
        unchecked: messages of the claims :meth:`claim` did not check (real data only).
    """

    name: str
    task: str
    classes: tuple[str, ...]
    num_classes: int
    ignore_index: Optional[int]
    size: int
    n_train: int
    n_val: int
    claims_apply: bool
    description: str
    unchecked: list[str] = field(default_factory=list)

    def claim(self, condition: Any, message: str) -> bool:
        """Check a claim calibrated on the procedural data, or record it as not checked.

        On ``shapes`` this is :func:`segbook.notebook.claim` (strict: raises; report mode: a
        notice). On real data nothing is checked: ``message`` is appended to :attr:`unchecked`
        and to the chapter's :func:`~segbook.notebook.claims_report`, and the function returns
        whether the condition held, for the report.
        """
        if self.claims_apply:
            return _claim(condition, message)
        held = bool(condition)
        line = f"{message} [{'held' if held else 'did not hold'} here]"
        self.unchecked.append(line)
        claims_record().unchecked.append(line)
        return held

    def unchecked_report(self) -> str:
        """Text listing the claims not checked on this data (empty on the procedural data)."""
        if self.claims_apply:
            return ""
        if not self.unchecked:
            return f"Trained on {_TITLES[self.name]}: the chapter's claims are calibrated on the procedural data and were not checked."
        lines = [f"Trained on {_TITLES[self.name]}: these claims are calibrated on the procedural data and were not checked "
                 "(each line: the message the check gives when it fails, then whether its condition held here):"]
        lines += [f"  - {m}" for m in self.unchecked]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.description


class ChapterSubset(Subset):
    """A :class:`torch.utils.data.Subset` that keeps the parent's ``classes`` and ``num_classes``."""

    def __init__(self, dataset: Dataset, indices: Sequence[int]) -> None:
        super().__init__(dataset, list(indices))
        self.classes = tuple(dataset.classes)  # type: ignore[attr-defined]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} of {len(self.dataset)} items of {type(self.dataset).__name__})"


def _subset(dataset: Dataset, n: int, seed: int) -> ChapterSubset:
    """``min(n, len(dataset))`` items drawn without replacement by ``seed`` (sorted, so reading stays sequential)."""
    total = len(dataset)  # type: ignore[arg-type]
    if total == 0:
        raise ValueError(f"{type(dataset).__name__} is empty: check the split files under its root")
    order = torch.randperm(total, generator=torch.Generator().manual_seed(int(seed)))[: min(n, total)]
    return ChapterSubset(dataset, sorted(order.tolist()))


class _ResizeImage:
    """``image [3, h, w] -> [3, size, size]``, bilinear with antialiasing (CIFAR at another size)."""

    def __init__(self, size: int, then: Optional[ClassificationAugment] = None) -> None:
        self.size, self.then = size, then

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if image.shape[-2:] != (self.size, self.size):
            image = torch.nn.functional.interpolate(
                image[None], size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True
            )[0].clamp_(0.0, 1.0)
        return self.then(image) if self.then is not None else image

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, then={self.then!r})"


def _load_real(name: str, split: str, *, size: int, augment: bool, root, download: bool) -> Dataset:
    try:
        if name == "cifar10":
            transform = ClassificationAugment(size, padding=max(1, size // 8)) if augment else None
            if size != 32:
                transform = _ResizeImage(size, transform)
            return real.cifar10(root, train=split == "train", transform=transform, download=download)
        joint = SegmentationAugment(size) if augment else SegmentationEval(size)
        if name == "pets":
            return real.oxford_pets(root, split=split, transform=joint, download=download)
        return real.voc_segmentation(root, year="2012", image_set=split, transform=joint, download=download)
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"{err}\nIn a chapter: set SEGBOOK_DOWNLOAD=1 (or setup(download=True)) to fetch it "
            f"({_DOWNLOAD_SIZES[name]}) into {root}, or point SEGBOOK_DATA_ROOT at the folder that "
            "already holds it; unset SEGBOOK_DATA to use the procedural data."
        ) from None


def chapter_datasets(
    rt: Any,
    *,
    task: str,
    size: int,
    n_train: int,
    n_val: int,
    seed: Optional[int] = None,
    augment: bool = False,
) -> tuple[Dataset, Dataset, DataInfo]:
    """The training and validation datasets of a chapter for ``rt.data``, and what they are.

    Args:
        rt: the :class:`~segbook.runtime.Runtime` from ``setup`` (uses ``data``, ``data_root``,
            ``download`` and ``seed``).
        task: ``"segmentation"`` or ``"classification"``.
        size: image side ``S`` of the items (procedural images are rendered at ``S``; real ones
            are resized, masks with nearest neighbour).
        n_train, n_val: number of items (real splits: a random subset of at most this many).
        seed: default ``rt.seed``; the training data uses ``seed``, the validation data ``seed + 1``.
        augment: apply the random training augmentation (``SegmentationAugment(S)`` or
            ``ClassificationAugment(S)``) to the training items; validation items are never
            augmented.

    Returns:
        ``(train, val, info)``. Items: segmentation ``(image float32 [3, S, S] in [0, 1], mask
        int64 [S, S])`` with classes ``0..K-1`` and 255 for ignored pixels; classification
        ``(image float32 [3, S, S], label int64 scalar)``. Both datasets have ``classes`` and
        ``num_classes``; ``info`` is a :class:`DataInfo`.

    Raises:
        ValueError: unknown ``task``, a data choice that cannot serve the task (``cifar10`` for
            segmentation, ``pets``/``voc`` for classification), or bad sizes.
        FileNotFoundError: real data missing under ``rt.data_root`` with downloads off (the
            message says how to fetch it or where to point ``SEGBOOK_DATA_ROOT``).
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    name = getattr(rt, "data", "shapes")
    if name not in DATA_TASKS:
        raise ValueError(f"rt.data must be one of {tuple(DATA_TASKS)}, got {name!r}")
    if task not in DATA_TASKS[name]:
        fits = [k for k, tasks in DATA_TASKS.items() if task in tasks]
        raise ValueError(
            f"SEGBOOK_DATA={name} is a {DATA_TASKS[name][0]} dataset, but this chapter trains {task}; "
            f"use one of {fits} (unset SEGBOOK_DATA for the procedural default)"
        )
    size = positive_int(size, "size")
    n_train, n_val = positive_int(n_train, "n_train"), positive_int(n_val, "n_val")
    seed = int(rt.seed if seed is None else seed)

    if name == "shapes":
        if task == "segmentation":
            train = ShapesSegmentation(n_train, size=size, seed=seed, transform=SegmentationAugment(size) if augment else None)
            val = ShapesSegmentation(n_val, size=size, seed=seed + 1)
            classes = SEGMENTATION_CLASSES
        else:
            train = ShapesClassification(n_train, size=size, seed=seed,
                                         transform=ClassificationAugment(size, padding=max(1, size // 8)) if augment else None)
            val = ShapesClassification(n_val, size=size, seed=seed + 1)
            classes = CLASSIFICATION_CLASSES
        description = f"data=shapes: {n_train} training / {n_val} validation procedural {task} images of {size}x{size}"
        claims_apply = True
    else:
        train_split, val_split = _SPLITS[name]
        kwargs = dict(size=size, root=rt.data_root, download=bool(rt.download))
        full_train = _load_real(name, train_split, augment=augment, **kwargs)
        full_val = _load_real(name, val_split, augment=False, **kwargs)
        train, val = _subset(full_train, n_train, seed), _subset(full_val, n_val, seed + 1)
        classes = tuple(full_train.classes)
        description = (
            f"data={name}: {_TITLES[name]} {train_split} {len(train)} of {len(full_train)} / "
            f"{val_split} {len(val)} of {len(full_val)} images at {size}x{size} from {rt.data_root}"
        )
        if task == "segmentation":
            description += f"; pixels labelled {IGNORE_INDEX} are ignored"
        claims_apply = False
    info = DataInfo(
        name=name, task=task, classes=tuple(classes), num_classes=len(classes),
        ignore_index=IGNORE_INDEX if task == "segmentation" else None, size=size,
        n_train=len(train), n_val=len(val), claims_apply=claims_apply, description=description,
    )
    return train, val, info


def take(dataset: Dataset, n: Optional[int] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` items (all by default) stacked: ``([n, 3, S, S] float32, [n, S, S] or [n] int64)``.

    Works for every dataset :func:`chapter_datasets` returns (``ShapesSegmentation.tensors()``
    exists only for the procedural ones); items pass through the dataset's transform.
    """
    total = len(dataset)  # type: ignore[arg-type]
    n = total if n is None else min(positive_int(n, "n"), total)
    if n == 0:
        raise ValueError("dataset is empty: nothing to take")
    images, targets = zip(*(dataset[i] for i in range(n)))
    return torch.stack(images), torch.stack([torch.as_tensor(t) for t in targets])
