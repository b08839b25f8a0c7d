"""Unit tests for segbook.colab.install_extra (pip is replaced by a stand-in; nothing is installed).

The real install, in a simulated Colab, is in tests/test_colab.py (slow).
"""
from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from segbook import colab


def test_extras_mirror_pyproject():
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    declared = pyproject["project"]["optional-dependencies"]
    for extra, packages in colab.EXTRAS.items():
        assert tuple(declared[extra]) == packages
    assert set(colab.EXTRA_MODULES) == set(colab.EXTRAS)


class FakePip:
    """Records the command; returns a chosen exit code and output."""

    def __init__(self, returncode=0, stdout="", stderr=""):
        self.returncode, self.stdout, self.stderr, self.calls = returncode, stdout, stderr, []

    def __call__(self, cmd, **kwargs):
        self.calls.append(cmd)
        return subprocess.CompletedProcess(cmd, self.returncode, self.stdout, self.stderr)


@pytest.fixture
def not_installed(monkeypatch):
    state = {"installed": False}
    monkeypatch.setattr(colab, "_importable", lambda module: state["installed"])
    return state


def test_install_success(not_installed):
    def pip(cmd, **kwargs):
        not_installed["installed"] = True
        return subprocess.CompletedProcess(cmd, 0, "", "")

    said = []
    assert colab.install_extra("crf", runner=pip, echo=said.append) is True
    assert said == ["segbook[crf]: installed pydensecrf2."]


def test_install_command(not_installed):
    pip = FakePip(returncode=1)
    colab.install_extra("crf", pip_args=["--no-index"], runner=pip, echo=lambda s: None)
    assert pip.calls == [[sys.executable, "-m", "pip", "install", "-q", "--no-index", "pydensecrf2"]]


def test_already_installed_runs_no_pip(monkeypatch):
    monkeypatch.setattr(colab, "_importable", lambda module: True)
    pip, said = FakePip(), []
    assert colab.install_extra("crf", runner=pip, echo=said.append) is True
    assert pip.calls == [] and "already installed" in said[0]


def test_no_compiler_is_said_plainly(not_installed, monkeypatch):
    monkeypatch.setattr(colab, "find_cxx_compiler", lambda: None)
    said = []
    pip = FakePip(returncode=1, stderr="error: subprocess-exited-with-error\nlong traceback\nlast line")
    assert colab.install_extra("crf", runner=pip, echo=said.append) is False
    text = said[0]
    assert text.startswith("segbook[crf] NOT installed: pydensecrf2 is compiled from source and no C++ compiler was found")
    assert "apt-get install g++" in text and "pure-torch mean-field CRF" in text and "    last line" in text


def test_compiler_error_names_the_compiler(not_installed, monkeypatch):
    monkeypatch.setattr(colab, "find_cxx_compiler", lambda: "/usr/bin/g++")
    said = []
    pip = FakePip(returncode=1, stderr="pydensecrf/eigen.cpp:1:10: fatal error: Python.h: No such file\n"
                                       "error: command '/usr/bin/g++' failed with exit code 1")
    assert colab.install_extra("crf", runner=pip, echo=said.append) is False
    assert "building pydensecrf2 with /usr/bin/g++ failed" in said[0] and "Python.h" in said[0]


def test_other_pip_failure(not_installed, monkeypatch):
    monkeypatch.setattr(colab, "find_cxx_compiler", lambda: "/usr/bin/g++")
    said = []
    pip = FakePip(returncode=1, stderr="ERROR: No matching distribution found for pydensecrf2")
    assert colab.install_extra("crf", runner=pip, echo=said.append) is False
    assert "pip could not install pydensecrf2 (exit code 1" in said[0]


def test_exit_zero_but_not_importable_is_a_failure(not_installed, monkeypatch):
    monkeypatch.setattr(colab, "find_cxx_compiler", lambda: "/usr/bin/g++")
    said = []
    assert colab.install_extra("crf", runner=FakePip(returncode=0), echo=said.append) is False
    assert "NOT installed" in said[0]


def test_unknown_extra():
    with pytest.raises(ValueError, match=r"unknown extra 'gpu'; segbook's extras are \('crf',\)"):
        colab.install_extra("gpu", runner=FakePip())


def test_find_cxx_compiler_honours_cxx(monkeypatch, tmp_path):
    monkeypatch.setenv("CXX", str(tmp_path / "missing-g++"))
    assert colab.find_cxx_compiler() is None
    fake = tmp_path / "my-g++"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("CXX", f"{fake} -std=c++17")
    assert colab.find_cxx_compiler() == str(fake)
