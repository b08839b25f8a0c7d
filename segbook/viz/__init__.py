"""Plotting helpers: label palettes, segmentation grids, map grids, tables, and each chapter's figures.

``core`` holds what every chapter uses (palettes, ``show_segmentation``, ``show_maps``,
``results_table``, ``figure_style``, curve plots); one module per chapter topic holds the figures only
that chapter draws (``classification``, ``fcn``, ``upsampling``, ``unet``, ``deeplab``). Everything is
re-exported here, so ``from segbook.viz import show_maps`` works for all of them.
"""
from . import classification, core, deeplab, fcn, unet, upsampling
from .classification import *  # noqa: F401,F403
from .core import *  # noqa: F401,F403
from .deeplab import *  # noqa: F401,F403
from .fcn import *  # noqa: F401,F403
from .unet import *  # noqa: F401,F403
from .upsampling import *  # noqa: F401,F403

__all__ = [*core.__all__, *classification.__all__, *fcn.__all__, *upsampling.__all__, *unet.__all__,
           *deeplab.__all__]
