"""Helpers for the chapter notebooks that must also work outside the book build (Colab).

``glue`` stores a value in a cell output the way ``myst_nb.glue`` does, so ``{glue:text}`name```
in the book's Markdown shows it, without making myst-nb (and Sphinx) a dependency of a notebook
running in Colab.

``claim`` is the book's check of what its text says about a run. It has two modes:

* **strict** (``$SEGBOOK_STRICT_CLAIMS=1``: set by the project's pytest configuration, ``.ci/run``
  and ``tools/execute_chapters.py``): a claim that does not hold raises ``AssertionError``, even
  under ``python -O``, so ``pytest --nbval`` fails and the book is never built on a broken claim;
* **report** (everywhere else, e.g. a reader's Colab run, and always in the unverified ``full``
  profile): a claim that does not hold shows a notice (what the text expected, what this run
  measured, and what differs from the book's reference run: seed, device, profile or data) and
  the chapter runs on. :func:`claims_report` (the chapter's last cell) lists them.
"""
from __future__ import annotations

import html
import math
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Union

__all__ = ["GLUE_PREFIX", "STRICT_ENV", "glue", "glue_all", "format_value", "claim", "strict_claims",
           "set_run_context", "claims_report", "claims_record", "reset_claims", "ClaimsRecord", "REFERENCE_RUN"]

STRICT_ENV = "SEGBOOK_STRICT_CLAIMS"
#: where the committed book's claims were checked (what a failing claim is compared against)
REFERENCE_RUN = {"seed": "0-2", "device": "cpu", "profile": "quick", "data": "shapes"}

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


@dataclass
class ClaimsRecord:
    """What this process's claims did: how many were checked, which did not hold, and which were
    recorded without a check (real data, see :meth:`segbook.data.DataInfo.claim`)."""

    checked: int = 0
    failed: list = field(default_factory=list)
    unchecked: list = field(default_factory=list)
    context: dict = field(default_factory=dict)


_RECORD = ClaimsRecord()


def claims_record() -> ClaimsRecord:
    """This process's :class:`ClaimsRecord` (a chapter kernel has one)."""
    return _RECORD


def reset_claims() -> None:
    """Forget the claims checked so far (tests; a chapter starts with a fresh kernel)."""
    global _RECORD
    _RECORD = ClaimsRecord(context=dict(_RECORD.context))


def set_run_context(**context: Any) -> None:
    """Tell the claims what this run is (``seed``, ``device``, ``profile``, ``data``); called by
    :func:`segbook.runtime.setup`."""
    _RECORD.context.update({k: str(v) for k, v in context.items()})


def strict_claims() -> bool:
    """True when a failed claim raises: ``$SEGBOOK_STRICT_CLAIMS=1`` and not the ``full`` profile
    (which is not verified end to end, so its claims only report)."""
    if _RECORD.context.get("profile") == "full":
        return False
    return os.environ.get(STRICT_ENV, "").strip() == "1"


def _differences() -> list[str]:
    ctx = _RECORD.context
    out = []
    if ctx.get("seed") not in (None, "0", "1", "2"):
        out.append(f"seed {ctx['seed']} (the book checks seeds 0-2)")
    if ctx.get("device") not in (None, "cpu"):
        out.append(f"device {ctx['device']} (the book is checked on CPUs; GPU arithmetic and mixed precision differ)")
    if ctx.get("profile") not in (None, "quick"):
        out.append(f"profile {ctx['profile']} (not verified end to end; the book is checked in 'quick')")
    if ctx.get("data") not in (None, "shapes"):
        out.append(f"data {ctx['data']} (claims are calibrated on the procedural shapes)")
    return out


def _in_kernel() -> bool:
    """True inside a Jupyter/Colab kernel (where a notice is shown as HTML in the cell output)."""
    try:
        from IPython import get_ipython
        from ipykernel.zmqshell import ZMQInteractiveShell
    except ImportError:
        return False
    return isinstance(get_ipython(), ZMQInteractiveShell)


def _notice(message: str) -> None:
    diffs = _differences()
    why = ("what differs from the book's reference run: " + "; ".join(diffs)) if diffs else (
        "this run matches the reference settings, so the likely reason is this machine's arithmetic "
        "(another CPU or thread count moves trained numbers about as much as a change of seed)")
    text = (f"A claim of the text did not hold in this run: {message}. The book's own run held it; {why}. "
            "The chapter goes on; its last cell lists every claim that did not hold.")
    if _in_kernel():
        from IPython.display import HTML, display

        display(HTML('<div class="segbook-claim-notice" style="border-left:4px solid #d97706;padding:6px 10px;'
                     'background:#fff7ed;color:#111"><b>Claim not held in this run.</b> '
                     f"{html.escape(text)}</div>"))
    else:
        print(f"segbook: {text}", file=sys.stderr, flush=True)


def claim(condition: Any, message: str) -> bool:
    """Check a claim of the text; ``message`` says what failed, with the measured numbers.

    Strict mode (:func:`strict_claims`) raises ``AssertionError("claim failed: " + message)``
    (never skipped by ``-O``); report mode shows a notice and records the message for
    :func:`claims_report`. Returns whether the claim held.
    """
    _RECORD.checked += 1
    if condition:
        return True
    if strict_claims():
        raise AssertionError(f"claim failed: {message}")
    _RECORD.failed.append(message)
    _notice(message)
    return False


def claims_report() -> str:
    """A chapter's last word on its claims: how many held in this run, and the ones that did not
    (with what differs from the reference run), plus any recorded without a check (real data)."""
    r = _RECORD
    lines = []
    if not r.failed:
        lines.append(f"All {r.checked} claims checked in this run held.")
    else:
        lines.append(f"{len(r.failed)} of {r.checked} claims checked in this run did not hold:")
        lines += [f"  - {m}" for m in r.failed]
        diffs = _differences()
        lines.append("What differs from the book's reference run: " + ("; ".join(diffs) if diffs else
                     "nothing in the settings; the machine's arithmetic moves trained numbers about as much as a seed"))
    if r.unchecked:
        lines.append(f"{len(r.unchecked)} claims are calibrated on the procedural data and were not checked on "
                     f"{r.context.get('data', 'this data')} (each: the message a failure gives, then whether it held):")
        lines += [f"  - {m}" for m in r.unchecked]
    return "\n".join(lines)
