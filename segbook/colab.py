"""Installing segbook's optional extras in Colab, with a clear word when a build fails.

The first cell of every chapter installs segbook itself in Colab (``%pip install
"segbook @ git+..."``; see ``CONTRIBUTING.md``). segbook's dependencies are only lower bounds, so
that install keeps the torch and torchvision Colab ships. An *extra* that compiles code is a
different matter: ``pydensecrf2`` (the ``crf`` extra, chapter 5's dense CRF backend) is a C++
extension built from source, and when that build fails pip prints a long traceback and, had it
been part of the segbook install (``segbook[crf]``), would install nothing at all. So a chapter
installs segbook first and then calls::

    from segbook.colab import install_extra
    install_extra("crf")      # True when pydensecrf2 is importable afterwards; never raises

which runs pip for the extra alone and, when the build fails, says so in one paragraph (no C++
compiler, or the compiler's error) and names the fallback (segbook's pure-torch mean-field CRF),
with the last lines of pip's output for whoever wants the details.
"""
from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from typing import Callable, Optional, Sequence

__all__ = ["EXTRAS", "EXTRA_MODULES", "find_cxx_compiler", "install_extra"]

# Mirrors [project.optional-dependencies] in pyproject.toml (a test checks they agree).
EXTRAS: dict[str, tuple[str, ...]] = {"crf": ("pydensecrf2",)}
# The module each extra provides, to tell whether it is usable.
EXTRA_MODULES: dict[str, str] = {"crf": "pydensecrf.densecrf"}
_FALLBACKS = {"crf": "segbook's pure-torch mean-field CRF backend is used instead (same model, slower)"}

Runner = Callable[..., "subprocess.CompletedProcess[str]"]


def find_cxx_compiler() -> Optional[str]:
    """Path of the C++ compiler a source build would use (``$CXX``, else ``g++``/``c++``/``clang++``), or None."""
    candidates = [os.environ["CXX"].split()[0]] if os.environ.get("CXX", "").strip() else ["g++", "c++", "clang++"]
    for name in candidates:
        found = shutil.which(name)
        if found:
            return found
    return None


def _importable(module: str) -> bool:
    importlib.invalidate_caches()
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def install_extra(extra: str = "crf", *, pip_args: Sequence[str] = (), runner: Runner = subprocess.run,
                  echo: Callable[[str], None] = print) -> bool:
    """Install the packages of one of segbook's extras with pip; report clearly; never raise.

    Args:
        extra: a key of :data:`EXTRAS` (``"crf"``).
        pip_args: extra arguments for ``pip install`` (e.g. ``["--no-index", "--find-links", dir]``).
        runner: ``subprocess.run`` (tests pass a stand-in).
        echo: where the one-paragraph report goes (``print``).

    Returns:
        True when the extra's module imports afterwards (already installed counts), False when
        the install failed; the report then says why (no C++ compiler found, or the build's
        error) and what the chapter falls back to.

    Raises:
        ValueError: unknown ``extra`` (a programming error, not an install failure).
    """
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; segbook's extras are {tuple(EXTRAS)}")
    packages, module = EXTRAS[extra], EXTRA_MODULES[extra]
    if _importable(module):
        echo(f"segbook[{extra}]: {', '.join(packages)} already installed.")
        return True
    cmd = [sys.executable, "-m", "pip", "install", "-q", *pip_args, *packages]
    proc = runner(cmd, capture_output=True, text=True)
    if proc.returncode == 0 and _importable(module):
        echo(f"segbook[{extra}]: installed {', '.join(packages)}.")
        return True
    output = ((proc.stdout or "") + (proc.stderr or "")).strip().splitlines()
    compiler = find_cxx_compiler()
    if compiler is None:
        why = (f"{', '.join(packages)} is compiled from source and no C++ compiler was found "
               "(looked for $CXX, g++, c++, clang++); install one (Debian/Ubuntu: apt-get install g++) and rerun")
    elif any("error: command" in line or "compiler" in line.lower() or ".cpp" in line for line in output):
        why = f"building {', '.join(packages)} with {compiler} failed (see pip's last lines below)"
    else:
        why = f"pip could not install {', '.join(packages)} (exit code {proc.returncode}; see pip's last lines below)"
    tail = "\n".join("    " + line for line in output[-12:])
    echo(f"segbook[{extra}] NOT installed: {why}. {_FALLBACKS[extra]}.\n  pip's last lines:\n{tail}")
    return False
