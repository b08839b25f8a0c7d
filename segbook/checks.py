"""Argument checks shared by the whole package, so every error says the same thing the same way."""
from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import numpy as np
import torch.nn as nn

__all__ = ["positive_int", "positive_float", "int_pair", "batch_norm_batch_of_one"]


def positive_int(value, name: str, *, minimum: int = 1, allow_none: bool = False) -> Optional[int]:
    """``value`` as an ``int`` if it is an integer ``>= minimum``.

    Raises ``TypeError`` when ``value`` is not an integer at all (a float, a string, a bool) and
    ``ValueError`` when it is an integer below ``minimum``, as Python's own functions do.

    Example: ``positive_int(num_classes, "num_classes")``; ``positive_int(0, "padding", minimum=0)``.
    """
    if value is None and allow_none:
        return None
    what = {1: "a positive int", 0: "a non-negative int"}.get(minimum, f"an int >= {minimum}")
    what += " or None" if allow_none else ""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be {what}, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return int(value)


def positive_float(value, name: str, *, minimum: float = 0.0, inclusive: bool = False,
                   maximum: Optional[float] = None, allow_none: bool = False) -> Optional[float]:
    """``value`` as a finite ``float`` above ``minimum`` (or equal to it with ``inclusive=True``),
    and at most ``maximum`` when given.

    Ints and numpy numbers are accepted; bools, strings and tensors are not (``TypeError``). NaN,
    infinities and values out of range raise ``ValueError``.

    Example: ``positive_float(lr, "lr")``; ``positive_float(p, "p", inclusive=True, maximum=1)``.
    """
    if value is None and allow_none:
        return None
    lo = f">= {minimum:g}" if inclusive else f"> {minimum:g}"
    what = f"a finite number {lo}" + (f" and <= {maximum:g}" if maximum is not None else "")
    what += " or None" if allow_none else ""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be {what}, got {type(value).__name__} {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < minimum or (v == minimum and not inclusive) \
            or (maximum is not None and v > maximum):
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return v


def int_pair(value: Union[int, Sequence[int]], name: str, *, minimum: int = 1) -> tuple[int, int]:
    """``(a, b)`` from an int or a pair of ints, each ``>= minimum`` (kernel sizes, strides, map sizes).

    ``TypeError`` for something that is not ints (a float, a string, None); ``ValueError`` for the
    wrong number of ints or an int below ``minimum``.
    """
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (value, value)
    try:
        items = tuple(value)  # type: ignore[arg-type]
    except TypeError:
        items = ()
    what = f"{name} must be an int or a pair of ints >= {minimum}, got {value!r}"
    if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in items) or not items:
        raise TypeError(what)
    if len(items) != 2 or any(v < minimum for v in items):
        raise ValueError(what)
    return int(items[0]), int(items[1])


def batch_norm_batch_of_one(model: nn.Module, batch_size: int, *, values_per_channel: int = 1) -> Optional[str]:
    """Why training ``model`` on this batch fails in a batch norm, or ``None`` when it does not.

    In training mode a batch norm normalises every channel over the batch and the positions of
    its map; with a batch of one image and ``values_per_channel <= 1`` positions (a ``1 x 1`` map:
    the coarsest map of a small image, or an image-pooling branch) it sees a single value, the
    variance is zero and torch stops with "Expected more than 1 value per channel". Returns ``None``
    for any other batch size, more positions, a ``model`` in eval mode or one without batch norm
    (its modules are searched only for a batch of one); else the cause and the fix, for the
    caller to put after what it was doing::

        why = batch_norm_batch_of_one(model, x.shape[0])
        if why:
            raise ValueError(f"{name} got a batch of one image: {why}, or model.eval() for inference")

    ``fit``, :class:`~segbook.models.segmentation.SegmentationModel` and DeepLab's image pooling
    use it (the first skips such a batch, the models raise).
    """
    if batch_size != 1 or values_per_channel > 1 or not model.training:
        return None
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return None
    return ("batch norm cannot normalise a single value per channel in training mode; use a batch of 2 or "
            "more (DataLoader(drop_last=True) avoids a last batch of one)")
