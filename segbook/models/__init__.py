"""Models of the book. Each module follows torchvision's layout: blocks, the model, then builders."""
from .efficientnet import (
    B0_STAGES, SMALL_STAGES, CompoundScaling, EfficientNet, MBConv, StageSpec, compound_scaling,
    efficientnet_scaling_table, efficientnet_small, round_filters, round_repeats,
)
