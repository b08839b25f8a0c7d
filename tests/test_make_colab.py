"""The Colab notebooks (``colab/``, made by ``tools/make_colab.py``): in sync, and prose, not markup.

Fast (JSON and text only). Needs the ``book`` extra (PyYAML, pybtex and sphinxcontrib-bibtex for
the bibliography labels), which CI installs.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("yaml", reason="PyYAML (installed with jupyter-book) reads _config.yml and _toc.yml")
pytest.importorskip("pybtex", reason="pybtex (installed with jupyter-book) makes the bibliography labels")
pytest.importorskip("sphinxcontrib.bibtex", reason="the book extra: pip install -e '.[book]'")
sys.path.insert(0, str(ROOT / "tools"))
import make_colab  # noqa: E402

sys.path.remove(str(ROOT / "tools"))
CHAPTERS = make_colab.chapters(ROOT)
MARKUP = re.compile(r"\{(glue|cite|doc|numref|ref|eq|term|math)[\w:]*\}`|^\((?:[^()\s]+)\)=\s*$|^(```|:::)\{", re.M)


@pytest.fixture(scope="module")
def book():
    return make_colab.load_book(ROOT)


def _chapter(book, glue=None, doc="chapters/02_fcn"):
    return make_colab.Chapter(book, doc, glue or {})


# ----------------------------------------------------------------------------------------------
# The converter on small inputs
# ----------------------------------------------------------------------------------------------
def test_glue_roles_become_the_stored_text(book):
    ch = _chapter(book, {"miou": "'0.512'", "n": "'5,600'", "x": "0.12345"})
    assert ch.markdown("FCN-8s reaches {glue:text}`miou` on {glue}`n` scenes") == \
        "FCN-8s reaches **0.512** on **5,600** scenes"
    assert ch.markdown("{glue:text}`x:.2f`") == "**0.12**"
    with pytest.raises(make_colab.ConversionError, match="no glued value named 'gone'"):
        ch.markdown("{glue:text}`gone`")


def test_glue_values_are_read_from_the_scrapbook_outputs():
    nb = {"cells": [{"cell_type": "code", "outputs": [
        {"output_type": "display_data", "data": {make_colab.GLUE_MIME: "'0.5'"},
         "metadata": {"scrapbook": {"name": "a", "mime_prefix": "application/papermill.record/"}}},
        {"output_type": "stream", "name": "stdout", "text": "x"}]}]}
    assert make_colab.glued_values(nb) == {"a": "'0.5'"}
    assert make_colab.format_glue("'0.5'") == "0.5" and make_colab.format_glue("3") == "3"


def test_citations_read_author_year_and_link_to_the_bibliography(book):
    ch = _chapter(book)
    url = "https://segbook.github.io/segbook/chapters/references.html#cite-he2016deep"
    assert ch.markdown("ResNet {cite}`he2016deep` adds") == f"ResNet ([He et al., 2016]({url})) adds"
    assert ch.markdown("{cite:p}`he2016deep`") == f"([He et al., 2016]({url}))"
    assert ch.markdown("{cite:t}`he2016deep` found") == f"[He et al. (2016)]({url}) found"
    two = ch.markdown("{cite}`chollet2017xception,howard2017mobilenets`")
    assert two.startswith("([Chollet, 2017](") and "; [Howard et al., 2017](" in two and two.endswith("))")
    with pytest.raises(make_colab.ConversionError, match="not in references.bib"):
        ch.markdown("{cite}`nobody2099`")


def test_labels_follow_the_book_bibliography_suffixes(book):
    """Two entries with one author-year label get "a"/"b", as _ext/segbook_bib.py labels them."""
    labels = list(book.citations.values())
    assert len(labels) == len(set(labels)), "two bibliography entries share a label"
    assert all(re.search(r", (\d{4}[a-z]?|n\.d\.)$", label) for label in labels), labels


def test_cross_references_link_into_the_html_book(book):
    ch = _chapter(book, doc="chapters/04_unet_sizes")
    base = "https://segbook.github.io/segbook/chapters/"
    assert ch.markdown("see {doc}`02_fcn`") == f"see [Fully convolutional networks]({base}02_fcn.html)"
    assert ch.markdown("{doc}`the FCN chapter <02_fcn>`") == f"[the FCN chapter]({base}02_fcn.html)"
    assert ch.markdown("{ref}`real-data`") == f"[Running a chapter on real data]({base}intro.html#real-data)"
    assert ch.markdown("{numref}`fig-transposed-scatter`") == f"[Fig. 3.3]({base}03_upsampling.html#fig-transposed-scatter)"
    assert ch.markdown("{numref}`Figure %s <fig-transposed-scatter>`").startswith("[Figure 3.3](")
    with pytest.raises(make_colab.ConversionError, match="defined nowhere"):
        ch.markdown("{numref}`fig-nowhere`")


def test_code_is_left_alone(book):
    ch = _chapter(book, {"x": "'1'"})
    text = "write ``{glue:text}`x` `` in Markdown, `segbook.glue(...)` in code:\n\n```python\nglue('{cite}`a`')\n```"
    assert ch.markdown(text) == text


def test_directives_become_plain_markdown(book):
    ch = _chapter(book, {"v": "'7'"})
    note = ch.markdown(":::{note}\nThe value is {glue:text}`v`.\n:::")
    assert note == "> **Note**\n>\n> The value is **7**."
    adm = ch.markdown("```{admonition} Why it matters\n:class: tip\nBecause.\n```")
    assert adm == "> **Why it matters**\n>\n> Because."
    fig = ch.markdown("```{figure} img/a.png\n:name: fig-x\n:alt: A plot\nThe caption.\n```")
    assert fig.startswith("![A plot](https://raw.githubusercontent.com/segbook/segbook/main/chapters/img/a.png)")
    assert fig.endswith("*The caption.*")
    assert ch.markdown("```{math}\nE = mc^2\n```") == "$$\nE = mc^2\n$$"
    assert ch.markdown("```{code-block} python\nx = 1\n```") == "```python\nx = 1\n```"
    assert ch.markdown("```{dropdown} More\nHidden text.\n```").startswith("<details><summary>More</summary>")
    assert ch.markdown("(my-label)=\n## A section\n% a comment\n+++\ntext") == "## A section\ntext"
    assert ch.markdown("{abbr}`CRF (conditional random field)` and {term}`stride`") == "CRF and stride"
    assert ch.markdown("```{bibliography}\n:all:\n```") == ""


# ----------------------------------------------------------------------------------------------
# The committed notebooks
# ----------------------------------------------------------------------------------------------
def test_every_chapter_has_its_colab_notebook_and_it_is_up_to_date(book):
    assert CHAPTERS, "no chapter notebooks found"
    stale = []
    for path in CHAPTERS:
        target = make_colab.target_of(path, ROOT)
        text = make_colab.dumps(make_colab.convert(path, book))
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            stale.append(target.relative_to(ROOT).as_posix())
    assert not stale, (f"{', '.join(stale)} out of date with chapters/ (a chapter was edited or re-executed): "
                       f"run `{make_colab.COMMAND}` and commit colab/")
    extra = {p.name for p in (ROOT / make_colab.COLAB_DIR).glob("*.ipynb")} - {p.name for p in CHAPTERS}
    assert not extra, f"colab/ has notebooks for no chapter: {sorted(extra)} (delete them)"


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_colab_notebook_reads_as_prose_and_runs_as_the_chapter(path):
    target = make_colab.target_of(path, ROOT)
    assert target.exists(), f"{target.relative_to(ROOT)} is missing: run `{make_colab.COMMAND}`"
    nb, source = json.loads(target.read_text(encoding="utf-8")), json.loads(path.read_text(encoding="utf-8"))
    nbformat = pytest.importorskip("nbformat")
    nbformat.validate(nbformat.reads(target.read_text(encoding="utf-8"), as_version=4))
    problems = []
    for i, cell in enumerate(nb["cells"]):
        text = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            outside_code = re.sub(r"```.*?```|`[^`\n]*`", "", text, flags=re.S)
            problems += [f"cell {i}: MyST markup left: {m.group(0)!r}" for m in MARKUP.finditer(outside_code)]
        elif cell["outputs"] or cell["execution_count"] is not None:
            problems.append(f"cell {i}: stored outputs (the Colab notebook has none)")
    assert not problems, "\n".join(problems)
    assert "reference run" in "".join(nb["cells"][0]["source"]), "the first cell must say where the numbers come from"

    def code(cells):
        return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]

    ours = [re.sub(r"\A# @title \(.*?\)\n", "", c) for c in code(nb["cells"])]
    assert ours == code(source["cells"]), "the Colab notebook's code differs from the chapter's"
    assert code(nb["cells"])[0] == code(source["cells"])[0], "the install cell must be the chapter's, verbatim"
