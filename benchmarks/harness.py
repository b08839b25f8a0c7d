"""Timing harness for the benchmarks: warm-up, repeats, medians and ratios, with an injectable clock.

The numbers a benchmark reports are only as good as the way they are taken. Three rules:

* **warm up first**: the first calls pay for allocator growth, oneDNN kernel selection, lazy
  imports and (on CUDA) the context; they are run and thrown away;
* **report the median** of several repeats, not the mean: on a shared machine a few calls are
  slowed by other processes, and the median ignores them while the mean does not;
* **compare in one process, interleaved**: when two implementations are compared, run them in
  turns (A B, B A, A B, ...) so that a change of machine load hits both equally. Besides the ratio
  of the two medians, :func:`paired_ratio` takes the median of the per-round ratios ``a_i / b_i``,
  which cancels load that drifts slowly over the rounds.

Nothing here imports torch or segbook: the clock is a plain callable returning seconds
(``time.perf_counter`` by default), and ``sync`` is called before every clock read (pass
``torch.cuda.synchronize`` on a GPU), so the code is unit-tested with a fake clock
(``tests/test_benchmarks.py``) without timing anything.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, Sequence

__all__ = ["Timing", "time_call", "time_interleaved", "ratio", "paired_ratio", "markdown_table"]

Clock = Callable[[], float]


@dataclass
class Timing:
    """Timed repeats of one callable, in seconds (warm-up calls are not included)."""

    name: str
    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        """Median of the samples (seconds); raises ``ValueError`` when there are none."""
        if not self.samples:
            raise ValueError(f"{self.name}: no timed samples (repeats must be >= 1)")
        return statistics.median(self.samples)

    @property
    def spread(self) -> float:
        """``(max - min) / median`` of the samples: how noisy the measurement was (0 for one sample)."""
        return (max(self.samples) - min(self.samples)) / self.median if self.median > 0 else 0.0


def _check_counts(warmup: int, repeats: int) -> None:
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an int >= 0, got {warmup!r}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an int >= 1, got {repeats!r}")


def _timed(fn: Callable[[], object], clock: Clock, sync: Optional[Callable[[], None]]) -> float:
    if sync is not None:
        sync()
    start = clock()
    fn()
    if sync is not None:
        sync()
    return clock() - start


def time_call(fn: Callable[[], object], *, warmup: int = 2, repeats: int = 5, name: str = "call",
              clock: Clock = time.perf_counter, sync: Optional[Callable[[], None]] = None) -> Timing:
    """Call ``fn()`` ``warmup`` times untimed, then ``repeats`` times timed; return the :class:`Timing`.

    Each sample is ``clock()`` after the call minus ``clock()`` before it (``sync()`` runs just
    before each read, e.g. ``torch.cuda.synchronize``).
    """
    _check_counts(warmup, repeats)
    for _ in range(warmup):
        fn()
    return Timing(name, [_timed(fn, clock, sync) for _ in range(repeats)])


def time_interleaved(fns: Mapping[str, Callable[[], object]], *, warmup: int = 2, repeats: int = 5,
                     clock: Clock = time.perf_counter,
                     sync: Optional[Callable[[], None]] = None) -> dict[str, Timing]:
    """Time several callables in turns: every round calls each once, the order reversed every other round.

    Warm-up: ``warmup`` untimed calls of each, in the same turns. Round ``r`` runs the callables in
    the given order for even ``r`` and reversed for odd ``r``, so no callable always runs first
    (right after another one has warmed or evicted the caches). Returns ``{name: Timing}`` with
    ``repeats`` samples each; ``samples[i]`` of every callable come from the same round ``i``.
    """
    _check_counts(warmup, repeats)
    if not fns:
        raise ValueError("time_interleaved needs at least one callable")
    names = list(fns)
    for r in range(warmup):
        for n in (names if r % 2 == 0 else names[::-1]):
            fns[n]()
    out = {n: Timing(n) for n in names}
    for r in range(repeats):
        for n in (names if r % 2 == 0 else names[::-1]):
            out[n].samples.append(_timed(fns[n], clock, sync))
    return out


def ratio(a: Timing, b: Timing) -> float:
    """``median(a) / median(b)``: above 1 means ``a`` is slower than ``b``."""
    if b.median <= 0:
        raise ValueError(f"{b.name}: median time {b.median} is not positive; cannot take a ratio")
    return a.median / b.median


def paired_ratio(a: Timing, b: Timing) -> float:
    """Median over rounds of ``a.samples[i] / b.samples[i]`` (from :func:`time_interleaved`).

    Less sensitive than :func:`ratio` to load that changes between rounds, since both samples of
    a pair were taken back to back.
    """
    if len(a.samples) != len(b.samples) or not a.samples:
        raise ValueError(f"paired_ratio needs the same (non-zero) number of samples, got "
                         f"{len(a.samples)} ({a.name}) and {len(b.samples)} ({b.name})")
    if any(s <= 0 for s in b.samples):
        raise ValueError(f"{b.name}: every sample must be positive to take ratios")
    return statistics.median(x / y for x, y in zip(a.samples, b.samples))


def markdown_table(rows: Sequence[Mapping[str, object]], columns: Optional[Sequence[str]] = None) -> str:
    """A GitHub Markdown table of ``rows`` (dicts); ``columns`` defaults to the keys of the first row.

    Values are written with ``str``; a missing key gives an empty cell.
    """
    if not rows:
        return ""
    columns = list(columns or rows[0].keys())
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)
