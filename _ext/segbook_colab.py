"""The rocket button's Colab link opens ``colab/NAME.ipynb``, the notebook made for Colab.

Colab does not render MyST: in ``chapters/NAME.ipynb`` a reader would see
"FCN-8s reaches {glue:text}`fcn8s_miou`" instead of a number. ``tools/make_colab.py`` writes
``colab/NAME.ipynb`` with the glued values, citations and cross-references resolved; this
extension points sphinx-book-theme's Colab launch button at it. The other buttons (repository,
edit, issues, download) keep pointing at the chapter sources.

sphinx-book-theme 1.x builds the link in an ``html-page-context`` handler at priority 501
(``.../blob/BRANCH/chapters/NAME.ipynb``); this handler runs after it (priority 502) and swaps the
folder. A chapter without a converted notebook keeps the theme's link and logs a warning
(an error under ``-W``) that names the command to run.

Config: ``segbook_colab_dir`` (default ``"colab"``), the folder of the converted notebooks,
relative to the repository root (= the book's root here).
"""
from __future__ import annotations

from pathlib import Path

from sphinx.util import logging

LOGGER = logging.getLogger(__name__)
REGENERATE = "python tools/make_colab.py"


def colab_url(url: str, pagename: str, colab_dir: str) -> str:
    """``.../blob/main/chapters/02_fcn.ipynb`` -> ``.../blob/main/colab/02_fcn.ipynb``."""
    suffix = f"/{pagename}.ipynb"
    if not url.endswith(suffix):
        raise ValueError(f"unexpected Colab URL {url!r} for page {pagename!r}")
    return f"{url[: -len(suffix)]}/{colab_dir}/{Path(pagename).name}.ipynb"


def _launch_buttons(context) -> list[dict]:
    for group in context.get("header_buttons") or []:
        if group.get("label") == "launch-buttons":
            return group.get("buttons", [])
    return []


def point_colab_at_converted(app, pagename, templatename, context, doctree):
    buttons = [b for b in _launch_buttons(context) if b.get("text") == "Colab"]
    if not buttons:
        return
    colab_dir = app.config.segbook_colab_dir.strip("/")
    target = Path(app.srcdir) / colab_dir / f"{Path(pagename).name}.ipynb"
    if not target.exists():
        LOGGER.warning(f"{pagename}: no {target.relative_to(app.srcdir)} for the Colab button "
                       f"(run `{REGENERATE}`); the button opens the MyST source instead")
        return
    for button in buttons:
        button["url"] = colab_url(button["url"], pagename, colab_dir)
        button["tooltip"] = "Launch on Colab (the chapter with its numbers and references filled in)"


def setup(app):
    app.add_config_value("segbook_colab_dir", "colab", "html")
    app.connect("html-page-context", point_colab_at_converted, priority=502)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
