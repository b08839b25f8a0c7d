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
