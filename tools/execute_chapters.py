"""Re-execute chapter notebooks (in place, or as a seed check that writes nothing).

Usage::

    python tools/execute_chapters.py                          # every chapters/*.ipynb, in place
    python tools/execute_chapters.py chapters/02_fcn.ipynb    # one chapter
    python tools/execute_chapters.py --seed 1 --no-write      # seed check: every seed shifted by 1
    python tools/execute_chapters.py --seeds 1 chapters/01_backbones.ipynb --no-write   # quick one-seed run

Each notebook runs top to bottom in a fresh kernel (working directory: the notebook's folder).
The quick profile is forced (``SEGBOOK_PROFILE=quick``) unless ``--profile`` says otherwise, so a
refresh on a CUDA machine still commits quick-profile outputs. ``--seed N`` sets
``SEGBOOK_SEED_OFFSET=N``, which :func:`segbook.runtime.setup` adds to the chapter's seed; every
seed a chapter uses derives from ``rt.seed``, so the whole chapter re-runs on other data, weights
and batch order, and its claim cells check that its findings still hold.

``--seeds N`` sets ``SEGBOOK_SEEDS=N``, how many seeds each chapter repeats its compared trainings
over (``rt.seeds``): 3 by default when writing (the committed book shows the spread over three
seeds), 1 by default with ``--no-write``. Claims are strict (``SEGBOOK_STRICT_CLAIMS=1``): a claim
that does not hold fails the notebook.

In place, the notebook is written back with execution counts 1..n. Exit status: 0 when every
notebook ran without a failing cell (claims included), 1 otherwise; with several notebooks all are
run and the failures listed at the end.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _clear(nb) -> None:
    # Start from a clean slate so no stale output survives a cell that now prints nothing.
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
            cell.metadata.pop("execution", None)


def _glued(nb) -> dict:
    """Glued names and their text values, for the seed-check report."""
    out = {}
    for cell in nb.cells:
        for o in cell.get("outputs", []) if cell.cell_type == "code" else []:
            scrap = o.get("metadata", {}).get("scrapbook")
            if scrap:
                data = o.get("data", {})
                text = next((v for k, v in data.items() if k.endswith("text/plain")), "")
                out[scrap["name"]] = "".join(text) if isinstance(text, list) else str(text)
    return out


def _cell_seconds(cell) -> float:
    """Wall time of one executed cell, from the timestamps nbclient records in its metadata."""
    from datetime import datetime

    stamps = cell.metadata.get("execution", {})
    if "iopub.execute_input" not in stamps or "shell.execute_reply" not in stamps:
        return 0.0
    start, end = (datetime.fromisoformat(stamps[k].replace("Z", "+00:00"))
                  for k in ("iopub.execute_input", "shell.execute_reply"))
    return (end - start).total_seconds()


def execute(path: pathlib.Path, *, timeout: int = 1800, write: bool = True,
            cell_times: list | None = None, reports: list | None = None) -> tuple[float, dict]:
    """Run one notebook; return (seconds, glued values). Raises ``CellExecutionError`` on a failing cell.

    ``cell_times``, when given, receives ``(cell index, seconds)`` for every code cell; ``reports``
    the printed output of the cell that calls ``claims_report()``."""
    nb = nbformat.read(path, as_version=4)
    _clear(nb)
    start = time.perf_counter()
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    for i, cell in enumerate(nb.cells):
        if cell_times is not None and cell.cell_type == "code":
            cell_times.append((i, _cell_seconds(cell)))
        if reports is not None and cell.cell_type == "code" and "claims_report()" in cell.source:
            reports.append("".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream"))
        cell.metadata.pop("execution", None)
    if write:
        nbformat.write(nb, path)
    return time.perf_counter() - start, _glued(nb)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=pathlib.Path)
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    parser.add_argument("--seed", type=int, default=0, help="shift every seed the chapters use by N (SEGBOOK_SEED_OFFSET)")
    parser.add_argument("--no-write", action="store_true", help="do not write the notebooks back (seed checks)")
    parser.add_argument("--seeds", type=int, default=None,
                        help="seeds per compared training (SEGBOOK_SEEDS; default 3 when writing, 1 with --no-write)")
    parser.add_argument("--profile", choices=("quick", "full"), default="quick",
                        help="the profile to run (default quick, whatever the device)")
    parser.add_argument("--report-claims", action="store_true",
                        help="claims report instead of failing (implies --no-write): one run shows every claim that "
                             "does not hold and every glued value, for re-deriving margins")
    parser.add_argument("--cell-times", action="store_true", help="print the cells that took 2 s or more, slowest first")
    parser.add_argument("--show-glue", action="store_true", help="print every glued value after each notebook")
    args = parser.parse_args(argv)
    if args.seed < 0:
        parser.error("--seed must be >= 0")
    if args.seed != 0 and not args.no_write:
        parser.error("--seed N (N > 0) only makes sense with --no-write: committed outputs use seed offset 0")
    paths = args.notebooks or sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))
    if args.report_claims:
        args.no_write = True
    os.environ.setdefault("PYTHONHASHSEED", "0")
    os.environ["SEGBOOK_PROFILE"] = args.profile
    os.environ["SEGBOOK_SEED_OFFSET"] = str(args.seed)
    n_seeds = args.seeds if args.seeds is not None else (1 if args.no_write else 3)
    if n_seeds < 1:
        parser.error("--seeds must be >= 1")
    os.environ["SEGBOOK_SEEDS"] = str(n_seeds)
    os.environ["SEGBOOK_STRICT_CLAIMS"] = "0" if args.report_claims else "1"
    failed = []
    for path in paths:
        print(f"executing {path} (profile={args.profile}, seed offset={args.seed}, seeds={n_seeds}"
              f"{', not written' if args.no_write else ''}) ...", flush=True)
        times: list = []
        reports: list = []
        try:
            seconds, glued = execute(path.resolve(), timeout=args.timeout, write=not args.no_write, cell_times=times,
                                     reports=reports)
        except CellExecutionError as err:
            lines = [ln for ln in str(err).splitlines() if ln.strip()]
            print(f"  FAILED: {lines[-1] if lines else err}", flush=True)
            failed.append(str(path))
            continue
        print(f"  done in {seconds:.1f} s", flush=True)
        if args.cell_times:
            for i, t in sorted((c for c in times if c[1] >= 2), key=lambda c: -c[1]):
                print(f"    cell {i}: {t:.1f} s")
        if args.report_claims:
            print("\n".join(r.rstrip() for r in reports) or "  (no claims report: the chapter has no claims_report() cell)")
        if args.show_glue:
            for name, value in glued.items():
                print(f"    {name} = {value}")
    if failed:
        print(f"{len(failed)} notebook(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
