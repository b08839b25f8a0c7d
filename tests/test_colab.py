"""The Colab path, proven offline: a simulated Colab runs each chapter's first (install) cell.

Slow (a fresh virtual environment and a few pip installs from git: about a minute or two), so it
runs only when asked::

    pytest -m slow tests/test_colab.py          # or: SEGBOOK_SLOW=1 pytest tests/test_colab.py

What is simulated, and how:

* **Colab's Python with torch already installed.** A fresh virtual environment on the interpreter
  running the tests (``--system-site-packages``, no pip of its own), with the site-packages of the
  environment running the tests (which has torch, torchvision, numpy, matplotlib, IPython, pip)
  added through a ``.pth`` file, as Colab's preinstalled packages are on its kernel's path. segbook
  (installed in development mode in the test environment) and pydensecrf2 are left out of that
  view, as Colab has neither.
* **``google.colab``.** A fake package on the path; the kernel script imports it first, as Colab's
  kernel does, so ``"google.colab" in sys.modules`` holds.
* **The notebook cell.** The first code cell of the notebook Colab opens (``colab/NAME.ipynb``,
  the chapter converted by ``tools/make_colab.py``), verbatim except the repository URL, which
  points at this checkout (``git+file://<repo>@<HEAD commit>``, so what is tested is the committed
  tree, as Colab installs the pushed one), runs in an IPython shell (``%pip`` is IPython's magic).
* **No network.** pip runs with ``PIP_NO_INDEX=1`` and a local wheelhouse holding the one build
  dependency it needs (setuptools >= 77 for the isolated build). The wheelhouse is filled from
  ``$SEGBOOK_WHEELHOUSE`` and the local folders pip is configured with or caches wheels in; when no
  such wheel is found the test is skipped and says so.

Checked: the cell installs segbook (imported from the new environment, not from the checkout);
``pip list`` is unchanged except for segbook (torch and torchvision neither reinstalled, upgraded
nor downgraded: same versions, same files); the cell is safe to run twice; ``import segbook``
and every chapter's setup cell work afterwards, in Colab mode (``colab=True`` in the setup line).

The ``crf`` extra (``pydensecrf2``, compiled from source) is checked separately in
``test_crf_extra_*`` when a pydensecrf2 source archive is in the wheelhouse: it builds with the C++
compiler, and without one :func:`segbook.colab.install_extra` says so in one paragraph and
returns False, leaving segbook working.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COLAB_URL = "git+https://github.com/segbook/segbook@main"
pytestmark = pytest.mark.slow  # skipped unless selected: see tests/conftest.py


# ----------------------------------------------------------------------------------------------
# Building the simulated Colab
# ----------------------------------------------------------------------------------------------
def _first_code_cells(path: Path) -> list[str]:
    code = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    return ["".join(c["source"]) for c in code[:2]]


def _chapter_cells() -> dict[str, list[str]]:
    """``{notebook name: [first code cell, second code cell]}`` of every notebook Colab opens.

    The rocket button opens ``colab/NAME.ipynb`` (made by ``tools/make_colab.py``), so those are
    the cells run here; every chapter must have one, with the chapter's own first cells.
    """
    out = {}
    for chapter in sorted((REPO / "chapters").glob("[0-9]*.ipynb")):
        converted = REPO / "colab" / chapter.name
        assert converted.exists(), f"colab/{chapter.name} is missing: run `python tools/make_colab.py`"
        cells = _first_code_cells(converted)
        assert cells == _first_code_cells(chapter), (
            f"colab/{chapter.name} starts with other cells than chapters/{chapter.name}: "
            "run `python tools/make_colab.py` and commit colab/")
        out[chapter.name] = cells
    return out


def _version(name: str) -> tuple[int, ...]:
    match = re.match(r"[A-Za-z_]+-([0-9.]+)", name)
    return tuple(int(p) for p in match.group(1).strip(".").split(".")) if match else ()


def _local_dirs() -> list[Path]:
    """Folders where wheels may already lie on this machine (never the network)."""
    dirs = [Path(p) for p in os.environ.get("SEGBOOK_WHEELHOUSE", "").split(os.pathsep) if p]
    dirs.append(Path.home() / ".cache" / "pip" / "wheels")
    config = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
    for token in re.findall(r"(?:file://)?(/[^\s'\"]+)", config):
        p = Path(token)
        dirs += [p, p.parent / "files"]
    return [d for d in dirs if d.is_dir()]


def _find_local(pattern: str, *, at_least: tuple[int, ...] = ()) -> Path | None:
    """The newest local file matching ``pattern`` (searched recursively in pip's cache)."""
    found = []
    for d in _local_dirs():
        found += list(d.rglob(pattern)) if d.name == "wheels" else list(d.glob(pattern))
    found = [f for f in found if _version(f.name) >= at_least]
    return max(found, key=lambda f: _version(f.name)) if found else None


@pytest.fixture(scope="module")
def colab(tmp_path_factory):
    """A simulated Colab: venv + preinstalled packages + fake google.colab + offline pip settings."""
    root = tmp_path_factory.mktemp("colab")
    setuptools_wheel = _find_local("setuptools-*.whl", at_least=(77,))
    if setuptools_wheel is None:
        pytest.skip("no local setuptools>=77 wheel for pip's isolated build: put one in a folder named by "
                    "$SEGBOOK_WHEELHOUSE (`pip download 'setuptools>=77' -d DIR` once, with a network)")
    wheelhouse = root / "wheelhouse"
    wheelhouse.mkdir()
    shutil.copy(setuptools_wheel, wheelhouse)

    # Colab's preinstalled packages: the test environment's site-packages, minus segbook and
    # pydensecrf2 (the crf extra), which Colab does not have.
    preinstalled = root / "preinstalled"
    preinstalled.mkdir()
    for site in dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]):
        for entry in Path(site).iterdir():
            skip = entry.name.startswith(("segbook", "__editable__", "pydensecrf")) or entry.suffix == ".pth"
            if not skip and not (preinstalled / entry.name).exists():
                (preinstalled / entry.name).symlink_to(entry)
    fake = root / "fake_colab" / "google" / "colab"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('"""Stand-in for Colab\'s google.colab (tests only)."""\n')

    venv = root / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "zz_colab_preinstalled.pth").write_text(f"{preinstalled}\n{root / 'fake_colab'}\n")

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_", "SEGBOOK_", "VIRTUAL_ENV"))}
    env.update(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheelhouse), PIP_DISABLE_PIP_VERSION_CHECK="1",
               PIP_NO_CACHE_DIR="1", PIP_ROOT_USER_ACTION="ignore", PATH=f"{venv / 'bin'}{os.pathsep}{env['PATH']}",
               SEGBOOK_PROFILE="quick", OMP_NUM_THREADS="1")
    content = root / "content"  # Colab's working directory
    content.mkdir()
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()
    return {"root": root, "python": python, "site": site, "env": env, "cwd": content, "wheelhouse": wheelhouse,
            "url": f"git+file://{REPO}@{head}", "head": head}


def _run(colab, args, **kwargs):
    return subprocess.run([str(colab["python"]), *args], env=colab["env"], cwd=colab["cwd"], capture_output=True,
                          text=True, **kwargs)


def _pip_list(colab) -> dict[str, str]:
    proc = _run(colab, ["-m", "pip", "list", "--format=json"])
    assert proc.returncode == 0, proc.stderr
    return {p["name"].lower(): p["version"] for p in json.loads(proc.stdout)}


def _module_file(colab, module: str) -> str:
    proc = _run(colab, ["-c", f"import {module}; print({module}.__file__)"])
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


KERNEL = r'''
import json, sys
import google.colab  # Colab's kernel has it imported before the first cell
from IPython.core.interactiveshell import InteractiveShell

shell = InteractiveShell.instance()
results = []
for source in json.load(open(sys.argv[1])):
    shell.user_ns.pop("_exit_code", None)
    result = shell.run_cell(source)
    results.append({"success": bool(result.success), "exit_code": shell.user_ns.get("_exit_code"),
                    "error": repr(result.error_in_exec or result.error_before_exec)})
    if not result.success:
        break
print("RESULTS " + json.dumps(results))
'''


def _kernel(colab, cells: list[str], timeout: int = 600, **env) -> tuple[list[dict], str]:
    """Run ``cells`` in an IPython shell of the simulated Colab (extra environment variables: ``env``)."""
    script, cells_file = colab["root"] / "kernel.py", colab["root"] / "cells.json"
    script.write_text(KERNEL)
    cells_file.write_text(json.dumps(cells))
    proc = subprocess.run([str(colab["python"]), str(script), str(cells_file)], env={**colab["env"], **env},
                          cwd=colab["cwd"], capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULTS ")]
    assert proc.returncode == 0 and line, f"kernel failed:\n{out[-4000:]}"
    return json.loads(line[-1][len("RESULTS "):]), out


# ----------------------------------------------------------------------------------------------
# The tests
# ----------------------------------------------------------------------------------------------
def test_colab_cell_installs_segbook_and_leaves_torch_alone(colab):
    chapters = _chapter_cells()
    assert chapters, "no chapter notebooks found"
    first_cells = {cells[0] for cells in chapters.values()}
    for cell in first_cells:
        assert COLAB_URL in cell, f"the Colab cell does not install from {COLAB_URL}:\n{cell}"

    before = _pip_list(colab)
    assert "segbook" not in before, "segbook must not be preinstalled in the simulated Colab"
    torch_file, tv_file = _module_file(colab, "torch"), _module_file(colab, "torchvision")

    start = time.perf_counter()
    install = next(iter(chapters.values()))[0].replace(COLAB_URL, colab["url"])
    check = ("import segbook, segbook.data, segbook.runtime\n"
             "print('SEGBOOK_AT', segbook.__file__)\n"
             "print('IN_COLAB', segbook.runtime.in_colab())\n")
    cells = [install, install, check]  # the install cell twice: it must be safe to rerun
    for name, (first, second) in chapters.items():
        cells += [first.replace(COLAB_URL, colab["url"]), second]
    results, out = _kernel(colab, cells)
    seconds = time.perf_counter() - start
    print(f"simulated Colab kernel ({len(cells)} cells, {len(chapters)} chapters) took {seconds:.0f}s")

    assert all(r["success"] for r in results) and len(results) == len(cells), (results, out[-4000:])
    pip_codes = [r["exit_code"] for r in results if r["exit_code"] is not None]
    assert pip_codes and all(code == 0 for code in pip_codes), (pip_codes, out[-4000:])
    assert len(pip_codes) == 2 + len(chapters), "every install cell must run pip in Colab mode"

    installed_at = re.search(r"SEGBOOK_AT (\S+)", out).group(1)
    assert installed_at.startswith(str(colab["site"])), f"segbook imported from {installed_at}, not the new environment"
    assert "IN_COLAB True" in out
    assert out.count("colab=True") == len(chapters), "every chapter's setup line should say colab=True"
    assert "profile=quick device=cpu" in out and "data=shapes" in out

    after = _pip_list(colab)
    assert after.pop("segbook") == "0.1.0"
    changed = {k: (before.get(k), after.get(k)) for k in set(before) | set(after) if before.get(k) != after.get(k)}
    assert not changed, f"the Colab cell changed preinstalled packages: {changed}"
    assert _module_file(colab, "torch") == torch_file and _module_file(colab, "torchvision") == tv_file
    new_dists = sorted(p.name for p in colab["site"].iterdir() if p.name.endswith(".dist-info"))
    assert new_dists == ["segbook-0.1.0.dist-info"], new_dists


def test_colab_cell_does_nothing_outside_colab(colab):
    """Without google.colab the same cell is a no-op (no pip run), as on a laptop or in CI."""
    install = next(iter(_chapter_cells().values()))[0].replace(COLAB_URL, colab["url"])
    script = ("import json, sys\nfrom IPython.core.interactiveshell import InteractiveShell\n"
              "shell = InteractiveShell.instance()\nr = shell.run_cell(json.load(open(sys.argv[1]))[0])\n"
              "print('OK', r.success, shell.user_ns.get('_exit_code'), 'google.colab' in sys.modules)\n")
    (colab["root"] / "plain.py").write_text(script)
    (colab["root"] / "plain.json").write_text(json.dumps([install]))
    proc = _run(colab, [str(colab["root"] / "plain.py"), str(colab["root"] / "plain.json")])
    assert "OK True None False" in proc.stdout, proc.stdout + proc.stderr


# ----------------------------------------------------------------------------------------------
# The crf extra (chapter 5): builds with a compiler, fails clearly without one
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def crf_wheelhouse(colab):
    sdist = _find_local("pydensecrf2-*.tar.gz")
    cython = _find_local("cython-0.29.36-*.whl") or _find_local("Cython-0.29.36-*.whl")
    wheel, packaging = _find_local("wheel-*.whl"), _find_local("packaging-*.whl", at_least=(24,))
    if not (sdist and cython and wheel and packaging):
        pytest.skip("crf extra: needs a pydensecrf2 source archive and wheels of its build dependencies "
                    "(Cython==0.29.36, wheel, packaging>=24) in $SEGBOOK_WHEELHOUSE or pip's cache")
    for f in (sdist, cython, wheel, packaging):
        shutil.copy(f, colab["wheelhouse"])
    return colab["wheelhouse"]


INSTALL_EXTRA = "from segbook.colab import install_extra\nprint('EXTRA_OK', install_extra('crf'))\n"


def test_crf_extra_without_a_compiler_fails_clearly(colab, crf_wheelhouse):
    install = next(iter(_chapter_cells().values()))[0].replace(COLAB_URL, colab["url"])
    results, out = _kernel(colab, [install, INSTALL_EXTRA, "import segbook.runtime; print('STILL', segbook.runtime.in_colab())"],
                           CXX="/nonexistent/g++", CC="/nonexistent/gcc")
    assert [r["success"] for r in results] == [True, True, True], out[-3000:]  # segbook still imports
    assert "EXTRA_OK False" in out and "STILL True" in out, out[-3000:]
    assert "segbook[crf] NOT installed: pydensecrf2 is compiled from source and no C++ compiler was found" in out
    assert "pure-torch mean-field CRF" in out
    assert "/nonexistent/" in out, "the build should have failed at the compiler, not earlier"


def test_crf_extra_builds_with_a_compiler(colab, crf_wheelhouse):
    if shutil.which("g++") is None:
        pytest.skip("no g++ here")
    start = time.perf_counter()
    results, out = _kernel(colab, [INSTALL_EXTRA, "import pydensecrf.densecrf as d; print('CRF', d.DenseCRF2D)"],
                           timeout=900)
    print(f"building pydensecrf2 took {time.perf_counter() - start:.0f}s")
    assert "EXTRA_OK True" in out and "segbook[crf]: installed pydensecrf2" in out, out[-3000:]
    assert [r["success"] for r in results] == [True, True]

