"""List the visible code lines of the chapters that are longer than 88 characters.

A line longer than the code column scrolls sideways in the HTML book (and the end of it is often
the point: an error message, a training log's mIoU). Cells the book hides (``remove-cell``,
``remove-input``, ``hide-input``) are not counted.

Usage::

    python tools/long_code_lines.py            # one line per chapter: cell index -> lengths
    python tools/long_code_lines.py --lines    # every line: chapter, cell index, line number, length
    python tools/long_code_lines.py --max 100  # another limit

Exit status 1 when any line is too long, so it can become a check once the chapters comply.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HIDDEN = {"remove-cell", "remove-input", "hide-input"}


def long_lines(path: Path, limit: int = 88) -> list[tuple[int, int, int]]:
    """``[(cell index, line number, length), ...]`` of visible code lines longer than ``limit``."""
    out = []
    for i, cell in enumerate(json.loads(path.read_text(encoding="utf-8"))["cells"]):
        if cell["cell_type"] != "code" or HIDDEN & set((cell.get("metadata") or {}).get("tags") or []):
            continue
        for n, line in enumerate("".join(cell["source"]).split("\n"), start=1):
            if len(line) > limit:
                out.append((i, n, len(line)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", type=Path)
    parser.add_argument("--max", type=int, default=88)
    parser.add_argument("--lines", action="store_true", help="one output line per code line")
    args = parser.parse_args(argv)
    paths = args.paths or sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))
    total = 0
    for path in paths:
        found = long_lines(path, args.max)
        total += len(found)
        if args.lines:
            for cell, line, length in found:
                print(f"{path.name}\tcell {cell}\tline {line}\t{length}")
            continue
        cells: dict[int, list[int]] = {}
        for cell, _, length in found:
            cells.setdefault(cell, []).append(length)
        detail = "; ".join(f"cell {c}: {', '.join(map(str, v))}" for c, v in cells.items())
        print(f"{path.name}: {len(found)} line(s) > {args.max}" + (f" ({detail})" if detail else ""))
    print(f"total: {total} visible code line(s) longer than {args.max} characters")
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
