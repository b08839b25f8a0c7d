import pytest

from segbook.notebook import GLUE_PREFIX, claim, glue


def test_glue_writes_the_myst_nb_record(monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda data, raw, metadata: shown.append((data, raw, metadata)))
    glue("fcn8s_miou", "0.512")
    (data, raw, metadata), = shown
    assert raw is True
    assert data == {GLUE_PREFIX + "text/plain": "'0.512'"}
    assert metadata["scrapbook"] == {"name": "fcn8s_miou", "mime_prefix": GLUE_PREFIX}


def test_glue_matches_myst_nb_when_available(monkeypatch):
    myst_glue = pytest.importorskip("myst_nb").glue
    ours, theirs = [], []
    monkeypatch.setattr("IPython.display.display", lambda *a, **k: ours.append((a, k)))
    glue("x", 1.25)
    monkeypatch.setattr("myst_nb.ext.glue.ipy_display", lambda *a, **k: theirs.append((a, k)))
    myst_glue("x", 1.25, display=False)
    assert ours == theirs


def test_glue_display_true_has_no_prefix(monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda data, raw, metadata: shown.append(data))
    glue("n", 3, display=True)
    assert shown == [{"text/plain": "3"}]


def test_glue_rejects_empty_name():
    with pytest.raises(ValueError, match="non-empty name"):
        glue("", 1)


def test_claim():
    claim(1 < 2, "never raised")
    with pytest.raises(AssertionError, match="claim failed: deeper plain net trains worse"):
        claim(False, "deeper plain net trains worse")


def test_glue_all_glues_each_value_formatted(monkeypatch):
    import numpy as np
    import torch

    from segbook.notebook import glue_all

    shown = []
    monkeypatch.setattr("IPython.display.display", lambda data, raw, metadata: shown.append((data, metadata)))
    out = glue_all({"miou": 0.51234, "params": 16781312, "ratio": np.float32(1.5), "n": np.int64(7),
                    "t": torch.tensor(0.25), "word": "twice"}, fmt={"ratio": ".1f"})
    assert out == {"miou": "0.512", "params": "16,781,312", "ratio": "1.5", "n": "7", "t": "0.250",
                   "word": "twice"}
    assert [m["scrapbook"]["name"] for _, m in shown] == list(out)
    assert [d[GLUE_PREFIX + "text/plain"] for d, _ in shown] == [repr(v) for v in out.values()]


def test_glue_all_single_format_and_errors(monkeypatch):
    from segbook.notebook import glue_all

    shown = []
    monkeypatch.setattr("IPython.display.display", lambda data, raw, metadata: shown.append(data))
    assert glue_all({"a": 0.5, "b": 2.0}, fmt=".1%") == {"a": "50.0%", "b": "200.0%"}
    shown.clear()
    with pytest.raises(ValueError, match="'bad'.*nan"):
        glue_all({"ok": 1.0, "bad": float("nan")})
    assert shown == []  # nothing glued when one value is bad
    with pytest.raises(TypeError, match="'lst'.*format it yourself"):
        glue_all({"lst": [1, 2]})
    with pytest.raises(ValueError, match="non-empty dict"):
        glue_all({})
    with pytest.raises(ValueError, match="non-empty strings"):
        glue_all({"": 1})


# -- strict and report modes of claim -------------------------------------------------------------

import subprocess
import sys

from segbook import notebook


@pytest.fixture
def report_mode(monkeypatch):
    monkeypatch.delenv(notebook.STRICT_ENV, raising=False)
    notebook.reset_claims()
    yield
    notebook.reset_claims()


def test_claim_is_strict_under_pytest():
    # the project's conftest.py sets SEGBOOK_STRICT_CLAIMS=1 for every test and notebook kernel
    assert notebook.strict_claims()


def test_claim_reports_instead_of_raising(report_mode, capsys):
    notebook.set_run_context(seed=7, device="cuda", profile="quick", data="shapes")
    assert notebook.claim(True, "fine") is True
    assert notebook.claim(False, "deeper plain net trains worse: 0.73 vs 0.76") is False
    err = capsys.readouterr().err
    assert "did not hold in this run: deeper plain net trains worse: 0.73 vs 0.76" in err
    assert "seed 7" in err and "device cuda" in err
    report = notebook.claims_report()
    assert report.startswith("1 of 2 claims checked in this run did not hold:")
    assert "  - deeper plain net trains worse" in report


def test_claims_report_when_all_held(report_mode):
    notebook.claim(True, "a")
    notebook.claim(1, "b")
    assert notebook.claims_report() == "All 2 claims checked in this run held."


def test_full_profile_only_reports(monkeypatch):
    monkeypatch.setenv(notebook.STRICT_ENV, "1")
    notebook.set_run_context(profile="full")
    try:
        assert not notebook.strict_claims()
        assert notebook.claim(False, "unverified profile") is False
    finally:
        notebook.set_run_context(profile="quick")
        notebook.reset_claims()
    assert notebook.strict_claims()


def test_claim_outside_the_test_runner_exits_zero():
    env = {k: v for k, v in __import__("os").environ.items() if k != notebook.STRICT_ENV}
    out = subprocess.run([sys.executable, "-c", "from segbook.notebook import claim; claim(False, 'demo')"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "demo" in out.stderr
    env[notebook.STRICT_ENV] = "1"
    out = subprocess.run([sys.executable, "-c", "from segbook.notebook import claim; claim(False, 'demo')"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "claim failed: demo" in out.stderr


def test_a_failing_claim_fails_the_notebook_under_nbval():
    """The README's test command (`pytest --nbval`) runs notebooks strict: a claim that does not
    hold is a failed cell, not a notice."""
    import json
    import os
    import shutil
    from pathlib import Path

    import nbformat

    root = Path(__file__).resolve().parent.parent
    folder = root / "_build" / "claim_check"   # inside the repository: its conftest.py applies
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    try:
        for name, cond in (("holds", "True"), ("fails", "False")):
            nb = nbformat.v4.new_notebook()
            nb.cells = [nbformat.v4.new_code_cell(f"from segbook.notebook import claim\nclaim({cond}, 'demo claim')")]
            nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
            (folder / f"{name}.ipynb").write_text(json.dumps(nb))
        env = {k: v for k, v in os.environ.items() if k != notebook.STRICT_ENV}   # conftest.py must set it
        runs = {name: subprocess.run([sys.executable, "-m", "pytest", "--nbval", "-q", str(folder / f"{name}.ipynb")],
                                     cwd=root, env=env, capture_output=True, text=True, timeout=300)
                for name in ("holds", "fails")}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    assert runs["holds"].returncode == 0, runs["holds"].stdout[-2000:]
    assert runs["fails"].returncode != 0 and "claim failed: demo claim" in runs["fails"].stdout
