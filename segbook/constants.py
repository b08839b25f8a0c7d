"""Constants shared across the package, defined once at the bottom of the import graph."""
from __future__ import annotations

__all__ = ["IGNORE_INDEX", "TASKS"]

#: Label of pixels excluded from losses and metrics (VOC's object borders, padding added by
#: joint transforms, Oxford-IIIT Pet's "border" trimap class). ``F.cross_entropy``,
#: :func:`segbook.train.fit`, :class:`segbook.metrics.SegmentationMetrics` and the viz palettes
#: all use this one value.
IGNORE_INDEX = 255

#: The two kinds of labelled data the book trains on: one class per image (targets ``[N]``) or
#: one class per pixel (masks ``[N, H, W]``). :func:`segbook.train.fit`,
#: :func:`segbook.train.evaluate` and :func:`segbook.data.chapter_datasets` take one of them.
TASKS = ("classification", "segmentation")
