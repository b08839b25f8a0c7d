"""Helpers for the chapter notebooks that must also work outside the book build (Colab).

``glue`` stores a value in a cell output the way ``myst_nb.glue`` does, so ``{glue:text}`name```
in the book's Markdown shows it, without making myst-nb (and Sphinx) a dependency of a notebook
running in Colab. ``claim`` is the book's assertion: it raises even under ``python -O``.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Union

__all__ = ["GLUE_PREFIX", "glue", "glue_all", "format_value", "claim"]

GLUE_PREFIX = "application/papermill.record/"  # the MIME prefix myst-nb reads glued values from


def glue(name: str, value: Any, display: bool = False) -> None:
    """Record ``value`` under ``name`` for ``{glue:text}`name``` / ``{glue:}`name``` in the book.

    Same output format as ``myst_nb.glue``. Glue formatted strings (``f"{x:.3f}"``) so the text
    is stable under ``pytest --nbval``.
    """
    if not isinstance(name, str) or not name:
        raise ValueError("glue needs a non-empty name")
    from IPython.core.formatters import format_display_data
    from IPython.display import display as ipy_display

    bundle, metadata = format_display_data(value)
    prefix = "" if display else GLUE_PREFIX
    metadata["scrapbook"] = {"name": name, "mime_prefix": prefix}
    ipy_display({prefix + k: v for k, v in bundle.items()}, raw=True, metadata=metadata)


def format_value(value: Any, fmt: Optional[str] = ".3f") -> str:
    """How :func:`glue_all` writes one value: strings unchanged, ints with thousands separators
    (``16,781,312``), other reals with ``fmt`` (``".3f"``, ``".1%"``, ...). NaN or an infinity raises
    ``ValueError``: prose must never say "nan"."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value)
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        value = value.item()  # NumPy scalars and 0-d tensors
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot glue {value!r} into the text: compute a finite number or glue a word")
        return format(value, fmt or "")
    raise TypeError(f"glue_all formats str, int and float values, got {type(value).__name__}; "
                    f"format it yourself and pass the string")


def glue_all(values: Mapping[str, Any], *, fmt: Union[str, Mapping[str, str]] = ".3f") -> dict[str, str]:
    """Glue every ``name -> value`` of ``values`` in one call, for ``{glue:text}`name``` in the prose.

    One line in a (hidden or visible) cell replaces a column of ``glue(...)`` calls::

        glue_all({"fcn8s_miou": miou8, "fcn32s_miou": miou32, "params": n_params,
                  "gain": f"{100 * (miou8 - miou32):.1f}"}, fmt={"fcn8s_miou": ".2f"})

    Values are formatted by :func:`format_value` (``fmt``: one format for all floats, or a mapping
    name -> format with ``".3f"`` for names it lacks). Strings are glued as given.

    Returns:
        ``{name: glued string}``, in the order given (print it to see what the prose will say).
    """
    if not isinstance(values, Mapping) or not values:
        raise ValueError("glue_all needs a non-empty dict of name -> value")
    glued: dict[str, str] = {}
    for name, value in values.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"glue names must be non-empty strings, got {name!r}")
        f = fmt.get(name, ".3f") if isinstance(fmt, Mapping) else fmt
        try:
            glued[name] = format_value(value, f)
        except (TypeError, ValueError) as err:
            raise type(err)(f"{name!r}: {err}") from None
    for name, text in glued.items():  # format everything first: a bad value glues nothing
        glue(name, text)
    return glued


def claim(condition: Any, message: str) -> None:
    """Raise ``AssertionError(message)`` when ``condition`` is false (never skipped by ``-O``)."""
    if not condition:
        raise AssertionError(f"claim failed: {message}")
