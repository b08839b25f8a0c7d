"""Helpers for the chapter notebooks that must also work outside the book build (Colab).

``glue`` stores a value in a cell output the way ``myst_nb.glue`` does, so ``{glue:text}`name```
in the book's Markdown shows it, without making myst-nb (and Sphinx) a dependency of a notebook
running in Colab. ``claim`` is the book's assertion: it raises even under ``python -O``.
"""
from __future__ import annotations

from typing import Any

__all__ = ["GLUE_PREFIX", "glue", "claim"]

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


def claim(condition: Any, message: str) -> None:
    """Raise ``AssertionError(message)`` when ``condition`` is false (never skipped by ``-O``)."""
    if not condition:
        raise AssertionError(f"claim failed: {message}")
