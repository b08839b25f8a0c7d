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
