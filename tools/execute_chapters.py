"""Re-execute chapter notebooks in place so their committed outputs are fresh.

Usage::

    python tools/execute_chapters.py                 # every chapters/*.ipynb
    python tools/execute_chapters.py chapters/02_fcn.ipynb

Runs each notebook top to bottom in a fresh kernel (working directory: the notebook's folder),
with the quick profile unless SEGBOOK_PROFILE says otherwise, and writes it back with execution
counts 1..n. Stops with a non-zero exit code at the first failing cell.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

import nbformat
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parents[1]


def execute(path: pathlib.Path, timeout: int = 1800) -> float:
    nb = nbformat.read(path, as_version=4)
    # Start from a clean slate so no stale output survives a cell that now prints nothing.
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
            cell.metadata.pop("execution", None)
    start = time.perf_counter()
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    nbformat.write(nb, path)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=pathlib.Path)
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted((ROOT / "chapters").glob("*.ipynb"))
    os.environ.setdefault("PYTHONHASHSEED", "0")
    for path in paths:
        print(f"executing {path} ...", flush=True)
        seconds = execute(path.resolve(), timeout=args.timeout)
        print(f"  done in {seconds:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
