"""Repeat a comparison over seeds and report its spread.

A single training run is one draw: another seed (data, initial weights, batch order) or another
CPU moves a trained number about as much as the differences a chapter compares. So a chapter
trains each compared model once per seed in ``rt.seeds`` (:mod:`segbook.runtime`), shows every
number as *mean [min, max] over n seeds*, and checks its claims on every seed::

    runs = fit_over_seeds({"plain-8": lambda: cifar_resnet(depth=8, shortcuts=False), ...},
                          lambda seed: make_loader(train_set, 64, shuffle=True, seed=seed),
                          rt.seeds, val_loader=val_loader, task="classification", ...)
    runs["plain-8"][0].history, runs["plain-8"][0].model, runs["plain-8"][0].seed
    spread([r.final_loss for r in runs["plain-8"]])      # SeedSpread(mean, min, max, n)

With ``n`` seeds the reported range is the observed minimum and maximum (not a confidence
interval): with three seeds it says how far apart the runs landed, which is what a margin in a
claim has to cover.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Optional, Sequence, Union

import torch
import torch.nn as nn

from .checks import positive_int
from .parallel import fit_many
from .train import History

__all__ = ["SeedSpread", "SeededRun", "spread", "format_spread", "final_loss", "fit_over_seeds", "describe_runs",
           "accuracy_noise", "paired_verdict", "direction_on_seeds"]


@dataclass(frozen=True)
class SeedSpread:
    """Mean, minimum and maximum of one number over ``n`` seeds."""

    mean: float
    min: float
    max: float
    n: int

    @property
    def width(self) -> float:
        """``max - min``: how far apart the seeds landed."""
        return self.max - self.min

    def format(self, fmt: str = ".3f") -> str:
        """``"0.756 [0.741, 0.770]"``, ``"0.756"`` for one seed, an em dash for none."""
        if self.n == 0:
            return "\u2014"
        if self.n == 1:
            return format(self.mean, fmt)
        return f"{self.mean:{fmt}} [{self.min:{fmt}}, {self.max:{fmt}}]"

    def __str__(self) -> str:
        return self.format()


def spread(values: Iterable[float]) -> SeedSpread:
    """The :class:`SeedSpread` of ``values`` (one number per seed; at least one).

    NaN means "not defined on that seed" (the IoU of a class absent from that seed's validation
    scenes, as on small real splits): such seeds are left out and ``n`` counts the others. If
    every value is NaN the spread has ``n = 0`` and formats as an em dash. An infinity raises.
    """
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("spread needs at least one value (one per seed)")
    if any(math.isinf(v) for v in vals):
        raise ValueError(f"spread got an infinite value: {vals}")
    vals = [v for v in vals if not math.isnan(v)]
    if not vals:
        return SeedSpread(math.nan, math.nan, math.nan, 0)
    return SeedSpread(sum(vals) / len(vals), min(vals), max(vals), len(vals))


def format_spread(values: Iterable[float], fmt: str = ".3f") -> str:
    """``spread(values).format(fmt)``: the table cell for a number measured on several seeds."""
    return spread(values).format(fmt)


def final_loss(history: History, fraction: float = 0.2, *, steps: Optional[int] = None) -> float:
    """Mean training loss over the last ``fraction`` of the optimisation steps, or over the last
    ``steps`` steps when given (a steadier end point than the last step's loss)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    losses = history.step_loss
    if not losses:
        raise ValueError("the history has no step losses: was the model trained?")
    n = max(1, int(len(losses) * fraction)) if steps is None else positive_int(steps, "steps")
    tail = losses[-n:]
    return sum(tail) / len(tail)


@dataclass
class SeededRun:
    """One trained model of a comparison: its name, seed, trained model and :class:`History`."""

    name: str
    seed: int
    model: nn.Module
    history: History

    @property
    def final_loss(self) -> float:
        return final_loss(self.history)

    @property
    def val(self) -> dict:
        """The last validation metrics (``{}`` without a validation loader)."""
        return self.history.final if self.history.val else {}


def fit_over_seeds(builders: Mapping[str, Callable[[], nn.Module]],
                   make_train_loader: Union[Callable[[int], Iterable], Mapping[str, Callable[[int], Iterable]]],
                   seeds: Sequence[int], *, val_loader=None, workers: Optional[int] = None,
                   costs: Optional[Mapping[str, float]] = None, **fit_kwargs) -> dict[str, list[SeededRun]]:
    """Train every model of ``builders`` once per seed, all models of a seed on the same batches.

    For each seed ``s``: ``torch.manual_seed(s)`` before each builder (so two builders of the
    same architecture start from the same weights), then :func:`segbook.parallel.fit_many` on
    ``make_train_loader(s)`` with ``seed=s`` (on a multi-core CPU the models train in parallel
    processes of one thread each, with the numbers of a one-thread run).

    Args:
        builders: ``{name: () -> nn.Module}``, in the order the table should show them.
        make_train_loader: ``seed -> loader`` (a fresh one per call; each model of a seed gets one);
            or ``{name: seed -> loader}``, one per builder, for models that train on different
            data (e.g. each at its own input resolution).
        seeds: e.g. ``rt.seeds``.
        val_loader: evaluated at the end of training (``fit``'s ``val_loader``): a loader, or a
            callable ``seed -> loader`` when each seed has its own validation data; or
            ``{name: loader or seed -> loader}``, one per builder.
        workers: processes at once (default: one per usable core on a Linux CPU).
        costs: ``{name: relative training time}``: start the longest first (see
            :func:`~segbook.parallel.fit_many`); the numbers do not change.
        **fit_kwargs: passed to :func:`~segbook.train.fit` (``task``, ``epochs``, ``lr``, ...;
            not ``seed``, ``desc`` or ``val_loader``).

    Returns:
        ``{name: [SeededRun per seed, in the order of seeds]}``.
    """
    if not isinstance(builders, Mapping) or not builders:
        raise TypeError("builders must be a non-empty mapping {name: () -> nn.Module}")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds is empty: pass rt.seeds (at least one seed)")
    for bad in ("seed", "desc"):
        if bad in fit_kwargs:
            raise TypeError(f"fit_over_seeds sets {bad}= itself (one run per seed, named by its builder)")
    for what, given in (("make_train_loader", make_train_loader), ("val_loader", val_loader)):
        if isinstance(given, Mapping) and set(given) != set(builders):
            raise ValueError(f"{what} has entries for {sorted(given)} but the builders are {sorted(builders)}: "
                             "give one per builder, under its name")

    def per_seed(v, s):  # a loader, or seed -> loader
        return v(s) if callable(v) else v

    runs: dict[str, list[SeededRun]] = {name: [] for name in builders}
    for s in seeds:
        models = {}
        for name, build in builders.items():
            torch.manual_seed(s)
            models[name] = build()
        if isinstance(val_loader, Mapping):
            val = {name: per_seed(v, s) for name, v in val_loader.items()}
        else:
            val = per_seed(val_loader, s)
        if isinstance(make_train_loader, Mapping):
            train = {name: (lambda f=f, s=s: f(s)) for name, f in make_train_loader.items()}
        else:
            train = lambda s=s: make_train_loader(s)  # noqa: E731
        histories = fit_many(models, train, workers=workers, val_loader=val, costs=costs, seed=s, **fit_kwargs)
        for name in builders:
            runs[name].append(SeededRun(name, s, models[name], histories[name]))
    return runs


def describe_runs(runs: Mapping[str, Sequence[SeededRun]], metric: str = "accuracy") -> str:
    """One line per model: final training loss and validation ``metric`` as mean [min, max] over
    its seeds, and the training time of one run (for the chapter's training log)."""
    lines = []
    width = max(len(n) for n in runs)
    for name, rs in runs.items():
        loss = spread(r.final_loss for r in rs)
        val = f"  val {metric} {spread(r.val[metric] for r in rs)}" if rs[0].val else ""
        sec = sum(r.history.total_seconds for r in rs) / len(rs)
        lines.append(f"{name:>{width}}: final training loss {loss}{val}  ({len(rs)} seed{'s' if len(rs) > 1 else ''}, "
                     f"{sec:.1f} s a run)")
    return "\n".join(lines)


def accuracy_noise(accuracy: float, n: int) -> float:
    """One standard error of the difference of two accuracies near ``accuracy``, each measured
    on ``n`` independent images: ``sqrt(2 p (1 - p) / n)`` (two binomial proportions).

    The yardstick for "measurable" in :func:`paired_verdict`: two nets that classify equally well
    still differ by about this much on a finite validation set.
    """
    if not 0.0 <= accuracy <= 1.0:
        raise ValueError(f"accuracy must be in [0, 1], got {accuracy!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive number of images, got {n!r}")
    return math.sqrt(2.0 * accuracy * (1.0 - accuracy) / n)


def paired_verdict(differences: Iterable[float], noise: float, *, k: float = 2.0) -> str:
    """Classify per-seed differences (``A - B`` on each seed, same data and batches) against noise.

    Returns ``"higher"`` when every difference exceeds ``k * noise``, ``"lower"`` when every one
    is below ``-k * noise``, ``"none"`` when every one lies within ``k * noise`` of zero, and
    ``"mixed"`` otherwise (some seeds clearly apart, others not, or both signs). The book words
    a comparison from this, so the sentence cannot claim more than the seeds show.
    """
    d = [float(x) for x in differences]
    if not d or not all(math.isfinite(x) for x in d):
        raise ValueError(f"differences must be finite numbers, one per seed, got {d}")
    if not (math.isfinite(noise) and noise >= 0) or not k > 0:
        raise ValueError(f"need noise >= 0 and k > 0, got noise={noise!r}, k={k!r}")
    bar = k * noise
    if min(d) > bar:
        return "higher"
    if max(d) < -bar:
        return "lower"
    if max(abs(x) for x in d) <= bar:
        return "none"
    return "mixed"


def direction_on_seeds(differences: Iterable[float], what: str) -> str:
    """Say in words which way per-seed differences went (``A - B`` on each seed), with no noise
    threshold: ``"raised WHAT on every seed"`` when all are positive, ``"lowered WHAT on every
    seed"`` when all are negative, ``"left WHAT unchanged on every seed"`` when all are zero, the
    same with "... and left it unchanged on others" when some are zero, and ``"raised WHAT on some
    seeds and lowered it on others"`` when the signs differ. For a verdict that
    weighs the differences against the seed-to-seed noise, use :func:`paired_verdict`."""
    values = [float(d) for d in differences]
    if not values:
        raise ValueError("differences is empty: pass one difference per seed")
    if min(values) > 0:
        return f"raised {what} on every seed"
    if max(values) < 0:
        return f"lowered {what} on every seed"
    if all(v == 0 for v in values):
        return f"left {what} unchanged on every seed"
    if min(values) == 0:
        return f"raised {what} on some seeds and left it unchanged on others"
    if max(values) == 0:
        return f"lowered {what} on some seeds and left it unchanged on others"
    return f"raised {what} on some seeds and lowered it on others"
