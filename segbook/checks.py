"""Argument checks shared by the whole package, so every error says the same thing the same way."""
from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np

__all__ = ["positive_int", "int_pair"]


def positive_int(value, name: str, *, minimum: int = 1, allow_none: bool = False) -> Optional[int]:
    """``value`` as an ``int`` if it is an integer ``>= minimum`` (bools refused), else ``ValueError``.

    Example: ``positive_int(num_classes, "num_classes")``; ``positive_int(0, "padding", minimum=0)``.
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        what = {1: "a positive int", 0: "a non-negative int"}.get(minimum, f"an int >= {minimum}")
        raise ValueError(f"{name} must be {what}{' or None' if allow_none else ''}, got {value!r}")
    return int(value)


def int_pair(value: Union[int, Sequence[int]], name: str, *, minimum: int = 1) -> tuple[int, int]:
    """``(a, b)`` from an int or a pair of ints, each ``>= minimum`` (kernel sizes, strides, map sizes)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (value, value)
    try:
        items = tuple(value)  # type: ignore[arg-type]
    except TypeError:
        items = ()
    if len(items) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum for v in items):
        raise ValueError(f"{name} must be an int or a pair of ints >= {minimum}, got {value!r}")
    return int(items[0]), int(items[1])
