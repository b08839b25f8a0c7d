"""Building blocks, one concern per module (timm ``layers/`` style)."""
from .conv import ConvBNAct, make_divisible, same_padding

__all__ = ["ConvBNAct", "make_divisible", "same_padding"]
from .squeeze_excite import SqueezeExcite, se_hidden_channels, squeeze_excite
from .deform import DeformConv2d, regular_grid, sampling_points

__all__ += ["SqueezeExcite", "se_hidden_channels", "squeeze_excite", "DeformConv2d", "regular_grid", "sampling_points"]
