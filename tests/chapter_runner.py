"""Execute a chapter notebook top to bottom, offline, and save the executed copy (tests and by hand).

    SEGBOOK_DATA=pets SEGBOOK_DATA_ROOT=/tmp/fake python tests/chapter_runner.py chapters/02_fcn.ipynb out.ipynb

A learner sets ``SEGBOOK_DATA`` (and the data folder) before opening a chapter; this runner does
the same from the environment it inherits, runs every cell in a fresh kernel (nbclient, the
notebook's folder as working directory) and writes the executed notebook to ``OUT`` even when a
cell fails, so a test can read what each cell printed. Before the chapter's first code cell it
runs one extra cell in the kernel that makes every Python-level network connection fail
(``socket.connect``, ``create_connection``, ``getaddrinfo``): a chapter that tried to download
something would stop there. ``--no-cifar-md5`` also switches off the md5 check of the CIFAR-10
files, which fake files cannot pass. The chapter file itself is never modified.

Exit status 0 when every cell ran, 1 when one failed (its error is printed). The last line of
the output is ``RAN <n> code cells in <s> s`` on success.
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import time

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

OFFLINE_CELL = """\
# added by tests/chapter_runner.py: no network inside this kernel
import socket as _socket

def _refuse(*args, **kwargs):
    raise RuntimeError("network access while running a chapter offline")

_socket.socket.connect = _refuse
_socket.create_connection = _refuse
_socket.getaddrinfo = _refuse
"""

NO_CIFAR_MD5_CELL = """\
# added by tests/chapter_runner.py: fake CIFAR-10 files cannot match the official md5 sums
import segbook.data.real as _real
_real.CIFAR10.verify_md5 = False
"""

RUNNER_TAG = "added-by-chapter-runner"


def prepare(nb: nbformat.NotebookNode, *, no_cifar_md5: bool = False) -> nbformat.NotebookNode:
    """The notebook with outputs cleared and the runner's cells inserted before its first code cell."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    first_code = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    extra = [OFFLINE_CELL] + ([NO_CIFAR_MD5_CELL] if no_cifar_md5 else [])
    for offset, source in enumerate(extra):
        cell = nbformat.v4.new_code_cell(source)
        cell.metadata["tags"] = [RUNNER_TAG]
        nb.cells.insert(first_code + offset, cell)
    return nb


def chapter_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    """The notebook's own code cells (without the runner's)."""
    return [c for c in nb.cells if c.cell_type == "code" and RUNNER_TAG not in c.metadata.get("tags", [])]


def cell_text(cell: nbformat.NotebookNode) -> str:
    """Everything a code cell printed or displayed as text (streams, text/plain, errors)."""
    parts = []
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            parts.append(out.text)
        elif out.output_type == "error":
            parts.append(f"{out.ename}: {out.evalue}")
        else:
            parts.append(str(out.get("data", {}).get("text/plain", "")))
    return "".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook", type=pathlib.Path)
    parser.add_argument("out", type=pathlib.Path, help="where to write the executed copy")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    parser.add_argument("--no-cifar-md5", action="store_true", help="skip the md5 check of CIFAR-10 files")
    args = parser.parse_args(argv)
    nb = prepare(nbformat.read(args.notebook, as_version=4), no_cifar_md5=args.no_cifar_md5)
    client = NotebookClient(nb, timeout=args.timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(args.notebook.resolve().parent)}})
    start = time.perf_counter()
    try:
        client.execute()
    except CellExecutionError as err:
        nbformat.write(nb, args.out)
        print(f"FAILED after {time.perf_counter() - start:.1f} s:\n{err}", file=sys.stderr)
        return 1
    nbformat.write(nb, args.out)
    print(f"RAN {len(chapter_cells(nb))} code cells in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
