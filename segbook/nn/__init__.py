"""Building blocks, one concern per module (timm ``layers/`` style)."""
from .conv import ConvBNAct, make_divisible, same_padding

__all__ = ["ConvBNAct", "make_divisible", "same_padding"]
