"""Datasets: procedural (the offline default), real ones on request, and joint transforms.

``synthetic`` needs no files at all; ``real`` reads CIFAR-10, Oxford-IIIT Pet and PASCAL VOC from a
folder and downloads only when asked to (``download=True``); ``transforms`` augments an image and
its mask together so that masks are never interpolated bilinearly; ``chapter`` picks one of them
for a chapter from ``rt.data`` (:func:`chapter_datasets`).
"""
from .chapter import DATA_TASKS, ChapterSubset, DataInfo, chapter_datasets, take
from .crops import centre_labelled_crops, tile_scenes, window_centre_labels
from .real import (
    CIFAR10,
    CIFAR10_CLASSES,
    PET_CLASSES,
    VOC_CLASSES,
    OxfordIIITPetSegmentation,
    VOCSegmentation,
    cifar10,
    oxford_pets,
    voc_segmentation,
)
from .synthetic import (
    CLASSIFICATION_CLASSES,
    SEGMENTATION_CLASSES,
    ShapesClassification,
    ShapesSegmentation,
    make_loader,
    SCENE_STYLES,
    render_scene,
    render_scenes,
    render_shape_image,
    render_shape_images,
    stroke_width,
)
from .transforms import (
    ClassificationAugment,
    SegmentationAugment,
    SegmentationEval,
    check_segmentation_pair,
)

__all__ = [
    "DATA_TASKS",
    "ChapterSubset",
    "DataInfo",
    "chapter_datasets",
    "take",
    "CLASSIFICATION_CLASSES",
    "SEGMENTATION_CLASSES",
    "ShapesClassification",
    "ShapesSegmentation",
    "make_loader",
    "SCENE_STYLES",
    "render_scene",
    "render_scenes",
    "render_shape_image",
    "render_shape_images",
    "stroke_width",
    "centre_labelled_crops",
    "window_centre_labels",
    "tile_scenes",
    "ClassificationAugment",
    "SegmentationAugment",
    "SegmentationEval",
    "check_segmentation_pair",
    "CIFAR10",
    "CIFAR10_CLASSES",
    "PET_CLASSES",
    "VOC_CLASSES",
    "OxfordIIITPetSegmentation",
    "VOCSegmentation",
    "cifar10",
    "oxford_pets",
    "voc_segmentation",
]
