"""The notebook rules of CONTRIBUTING.md, checked on every committed chapter.

nbval re-executes the chapters; these tests check what nbval does not: that the committed files
are executed in order without errors, start with the Colab cell, tag their varying cells, glue
every number the prose quotes, and check their claims in hidden cells.
"""
from __future__ import annotations

import json
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))
IGNORE_TAG = "nbval-ignore-output"
MAX_BYTES = 5 * 2**20


def _config_repo_url() -> str:
    text = (ROOT / "_config.yml").read_text()
    match = re.search(r"^repository:\s*\n(?:\s+.*\n)*?\s+url:\s*(\S+)", text, re.M)
    assert match, "_config.yml has no repository.url"
    return match.group(1).rstrip("/")


def _load(path: pathlib.Path) -> dict:
    return json.loads(path.read_text())


def _code_cells(nb: dict) -> list[dict]:
    return [c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]


def _tags(cell: dict) -> set[str]:
    return set(cell.get("metadata", {}).get("tags", []))


def _text_of(output: dict) -> str:
    if output.get("output_type") == "stream":
        return "".join(output.get("text", ""))
    data = output.get("data", {})
    return "".join("".join(v) if isinstance(v, list) else str(v) for k, v in data.items() if k.startswith("text/"))


def test_chapters_exist_and_are_in_the_toc():
    toc = (ROOT / "_toc.yml").read_text()
    files = re.findall(r"file:\s*(\S+)", toc)
    assert files, "_toc.yml lists no files"
    for f in files:
        matches = list(ROOT.glob(f + ".*"))
        assert any(m.suffix in (".md", ".ipynb") for m in matches), f"_toc.yml names {f}, which does not exist"
    for nb in CHAPTERS:
        assert f"chapters/{nb.stem}" in files, f"{nb.name} is not in _toc.yml"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
class TestChapterNotebook:
    def test_executed_in_order_without_errors(self, path):
        nb = _load(path)
        counts = [c.get("execution_count") for c in _code_cells(nb)]
        assert counts, "the notebook has no code"
        assert None not in counts, f"{counts.count(None)} code cells were never executed"
        assert counts == list(range(1, len(counts) + 1)), (
            f"execution counts {counts} are not 1..n: re-run with tools/execute_chapters.py"
        )
        for i, cell in enumerate(_code_cells(nb)):
            errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
            assert not errors, f"code cell {i} has an error output: {errors[0].get('ename')}"

    def test_colab_cell_first_and_matches_repository(self, path):
        first = "".join(_code_cells(_load(path))[0]["source"])
        assert 'if "google.colab" in sys.modules:' in first, "the first code cell must be the Colab setup cell"
        match = re.search(r"git\+(\S+?)(?:@[\w.-]+)?\"", first)
        assert match, "the Colab cell must pip-install segbook from the repository (git+URL)"
        assert match.group(1).rstrip("/") == _config_repo_url(), "Colab cell URL differs from _config.yml repository.url"

    def test_setup_cell_second_and_tagged(self, path):
        second = _code_cells(_load(path))[1]
        assert "setup(" in "".join(second["source"]), "the second code cell must call segbook.runtime.setup(...)"
        assert IGNORE_TAG in _tags(second), f"the setup cell prints the device; tag it {IGNORE_TAG}"

    def test_varying_outputs_are_tagged(self, path):
        for i, cell in enumerate(_code_cells(_load(path))):
            if IGNORE_TAG in _tags(cell):
                continue
            for out in cell.get("outputs", []):
                text = _text_of(out)
                assert not (out.get("output_type") == "stream" and out.get("name") == "stderr"), (
                    f"code cell {i} writes to stderr (progress bars, warnings) but is not tagged {IGNORE_TAG}"
                )
                assert not re.search(r"\d\s?(it/s|s/it)\b|\(\d+(\.\d+)? s\)", text), (
                    f"code cell {i} prints timings but is not tagged {IGNORE_TAG}"
                )

    def test_trained_results_are_not_compared_by_nbval(self, path):
        """Training and evaluation give numbers that differ in the last digit between CPUs and
        thread counts: a cell that trains or evaluates and shows output must be ignored by nbval."""
        pattern = re.compile(r"\b(fit|evaluate|train_[a-z_]+)\(")
        for i, cell in enumerate(_code_cells(_load(path))):
            src = "".join(cell["source"])
            if pattern.search(src) and cell.get("outputs") and not _tags(cell) & {IGNORE_TAG, "remove-cell"}:
                raise AssertionError(f"code cell {i} trains or evaluates and shows output but is not tagged {IGNORE_TAG}")

    def test_seeds_derive_from_the_runtime_seed(self, path):
        """`tools/execute_chapters.py --seed N` shifts rt.seed; a literal seed would not move."""
        literal = re.compile(r"(?<![\w.])seed\s*=\s*\d+|manual_seed\(\s*\d+\s*\)|default_rng\(\s*\d+\s*\)")
        for i, cell in enumerate(_code_cells(_load(path))):
            src = "".join(cell["source"])
            for line in src.splitlines():
                if "setup(" in line:
                    continue
                match = literal.search(line)
                assert not match, (f"code cell {i} uses a literal seed ({match.group(0)!r}): derive every seed "
                                   "from rt.seed (rt.seed, rt.seed + 1, ...) so the seed check can shift it")

    def test_outputs_leak_no_local_paths(self, path):
        for i, cell in enumerate(_code_cells(_load(path))):
            for out in cell.get("outputs", []):
                assert not re.search(r"/(root|tmp|work|home)/[\w.-]+", _text_of(out)), (
                    f"code cell {i} output shows a local path"
                )

    def test_every_glued_name_used_in_prose_is_glued(self, path):
        nb = _load(path)
        prose = "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
        used = set(re.findall(r"\{glue(?::\w+)?\}`([^`]+)`", prose))
        glued = set()
        for cell in _code_cells(nb):
            for out in cell.get("outputs", []):
                scrap = out.get("metadata", {}).get("scrapbook")
                if scrap:
                    glued.add(scrap["name"])
        missing = sorted(n.split(":")[0] for n in used if n.split(":")[0] not in glued)
        assert not missing, f"the prose uses glued names that no cell glues: {missing}"
        assert used, "the prose quotes no glued numbers; numbers in the text must come from the cells"

    def test_claims_are_checked_in_hidden_cells(self, path):
        checks = [c for c in _code_cells(_load(path)) if "remove-cell" in _tags(c)]
        assert checks, "no claim-check cell tagged remove-cell"
        for c in checks:
            src = "".join(c["source"])
            assert re.search(r"\bclaim\(|\bassert\b|raise\b", src), "a remove-cell check cell asserts nothing"

    def test_size(self, path):
        assert path.stat().st_size < MAX_BYTES, f"{path.name} is {path.stat().st_size / 2**20:.1f} MiB; shrink figures"


def _long_code_lines_tool():
    """tools/long_code_lines.py as a module (tools/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("long_code_lines", ROOT / "tools" / "long_code_lines.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_visible_code_fits_the_code_column(path):
    """No visible code line is longer than 88 characters: a longer one scrolls sideways in the
    book, and its end (an error message, a log's mIoU) is cut off (``tools/long_code_lines.py``)."""
    tool = _long_code_lines_tool()
    found = tool.long_lines(path, 88)
    assert not found, (f"{path.name}: {len(found)} visible code line(s) over 88 characters "
                       f"(cell, line, length): {found[:10]}; wrap them (python tools/long_code_lines.py --lines)")


def test_long_code_lines_finds_a_long_visible_line_and_skips_hidden_cells(tmp_path):
    tool = _long_code_lines_tool()
    long = "x = " + "1 + " * 30 + "1"
    nb = {"cells": [{"cell_type": "code", "metadata": {}, "source": [long]},
                    {"cell_type": "code", "metadata": {"tags": ["remove-cell"]}, "source": [long]},
                    {"cell_type": "markdown", "metadata": {}, "source": [long]}]}
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(nb), encoding="utf-8")
    assert tool.long_lines(path, 88) == [(0, 1, len(long))]


FOLDED_OR_HIDDEN = {"remove-input", "remove-cell", "hide-input"}
MAX_UNFOLDED_LINES = 50


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_bookkeeping_and_long_cells_stay_out_of_the_readers_way(path):
    """Glue calls live in hidden cells (the reader sees the number in the prose, not the
    bookkeeping), and a code cell longer than 50 lines is folded (``hide-input``): a page of set-up
    or plotting code between two paragraphs hides the argument."""
    glue_call = re.compile(r"\bglue(?:_all)?\(")
    visible = [(i, "".join(c["source"])) for i, c in enumerate(_load(path)["cells"])
               if c["cell_type"] == "code" and not (_tags(c) & FOLDED_OR_HIDDEN)]
    with_glue = [i for i, src in visible if glue_call.search(src)]
    too_long = [(i, len(src.splitlines())) for i, src in visible if len(src.splitlines()) > MAX_UNFOLDED_LINES]
    assert not with_glue, (f"{path.name}: visible cells {with_glue} call glue; move the calls into a cell "
                           "tagged remove-input right after")
    assert not too_long, (f"{path.name}: cells (index, lines) {too_long} are longer than {MAX_UNFOLDED_LINES} "
                          "lines; fold them with the hide-input tag or split them")


MAX_VISIBLE_LINES = 15


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_visible_cells_are_short_calls_into_the_package(path):
    """A visible code cell is at most 15 lines: set-up, training over seeds, tables and figures are
    calls into ``segbook`` (tested there), not code on the page. A cell whose code *is* the lesson
    (an identity shown in plain torch, say) may be longer when its metadata says why:
    ``"segbook": {"lesson": "..."}``. And no chapter defines a function or class in a cell, hidden
    or not: a helper belongs in the package, with a docstring and a test."""
    long_cells, defined = [], []
    for i, cell in enumerate(_load(path)["cells"]):
        if cell["cell_type"] != "code":
            continue
        src = "".join(cell["source"])
        defined += [(i, m.group(0)) for m in re.finditer(r"^(?:async\s+)?(?:def|class)\s+\w+", src, re.M)]
        lesson = cell.get("metadata", {}).get("segbook", {}).get("lesson")
        n = len(src.rstrip("\n").splitlines())
        if not (_tags(cell) & FOLDED_OR_HIDDEN) and n > MAX_VISIBLE_LINES and not lesson:
            long_cells.append((i, n))
    assert not long_cells, (f"{path.name}: visible cells (index, lines) {long_cells} are over {MAX_VISIBLE_LINES} "
                            "lines; move set-up, training or plotting into segbook.experiments / segbook.viz, or, "
                            "when the code is the lesson, say why in the cell's metadata {'segbook': {'lesson': ...}}")
    assert not defined, f"{path.name}: cells define {defined}; move them into segbook (with a docstring and a test)"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_hidden_glue_cells_display_nothing(path):
    """A ``remove-input`` cell still shows its outputs: ``glue_all(...)`` as its last line would
    print the returned dict in the book, and under nbval a trailing ``;`` does not hide it (nbval
    then reports an unexpected ``text/plain``). Assign it: ``_ = glue_all(...)``."""
    import ast

    bad = []
    for i, cell in enumerate(_load(path)["cells"]):
        if cell["cell_type"] != "code" or "remove-input" not in _tags(cell):
            continue
        body = ast.parse("".join(cell["source"])).body
        last = body[-1] if body else None
        if (isinstance(last, ast.Expr) and isinstance(last.value, ast.Call)
                and getattr(last.value.func, "id", "") == "glue_all"):
            bad.append(i)
        if any(o.get("output_type") == "execute_result" for o in cell.get("outputs", [])):
            bad.append(i)
    assert not bad, f"{path.name}: hidden cells {sorted(set(bad))} display a value; write `_ = glue_all(...)`"
