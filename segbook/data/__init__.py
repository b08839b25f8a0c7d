"""Datasets: procedural (the offline default), real ones on request, and joint transforms."""
from .synthetic import (
    CLASSIFICATION_CLASSES,
    SEGMENTATION_CLASSES,
    ShapesClassification,
    ShapesSegmentation,
    make_loader,
    render_scene,
    render_shape_image,
)

__all__ = [
    "CLASSIFICATION_CLASSES",
    "SEGMENTATION_CLASSES",
    "ShapesClassification",
    "ShapesSegmentation",
    "make_loader",
    "render_scene",
    "render_shape_image",
]
