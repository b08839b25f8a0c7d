"""Chapter 1 (classification backbones): the EfficientNet compound-scaling experiment.

``efficientnet_scaling_table`` measures what compound scaling does to the small EfficientNet of
:mod:`segbook.models.efficientnet`, and ``single_dimension_scaling`` finds the depth-only,
width-only and resolution-only nets of the same cost (the paper's control); they live here rather
than in ``models`` because they are chapter tables built with :mod:`segbook.analysis`, which the
model code does not need.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Mapping, Optional, Sequence

from ..analysis import count_flops, count_macs, count_params
from ..checks import positive_float, positive_int
from ..data import make_loader
from ..models.efficientnet import (SMALL_STAGES, efficientnet_small, round_filters, round_repeats,
                                   scaled_efficientnet_small)
from ..seeds import SeededRun, fit_over_seeds, spread

__all__ = ["efficientnet_scaling_table", "single_dimension_scaling", "efficientnet_scaling_controls",
           "SCALING_DIMENSIONS", "scaling_run_names", "train_scaling_controls", "ScalingResults",
           "scaling_results"]

#: The three single dimensions of Tan and Le's control, in the order of their Fig. 3.
SCALING_DIMENSIONS = ("width", "depth", "resolution")


def efficientnet_scaling_table(
    phis: Sequence[float] = (0, 1, 2, 3),
    *,
    num_classes: int = 10,
    base_resolution: int = 32,
) -> list[dict]:
    """One row per ``phi`` for the chapter's compound-scaling table.

    Each row builds ``efficientnet_small(phi=phi)`` and measures it at its own resolution ``r``.

    Keys: ``phi``, ``depth_mult``, ``width_mult``, ``resolution``, ``blocks`` (MBConv count),
    ``params``, ``flops`` (measured with :func:`~segbook.analysis.count_flops` at ``(1, 3, r, r)``;
    a multiply-add counts as 2 FLOPs), ``macs`` (``flops / 2``, the unit of the paper's tables),
    ``flops_ratio`` (vs the previous row; ``None`` for the first row, which has no predecessor) and
    ``ideal_ratio`` (``(alpha beta^2 gamma^2)^(phi - phi_prev)`` = 1.92 per unit step; ``None`` for
    the first row). Pass the list to :func:`segbook.viz.results_table`.
    """
    if not phis:
        raise ValueError("phis is empty: pass at least one scaling coefficient, e.g. (0, 1, 2, 3)")
    rows: list[dict] = []
    prev_factor: Optional[float] = None
    for phi in phis:
        m = efficientnet_small(phi=phi, num_classes=num_classes, base_resolution=base_resolution)
        s = m.scaling
        flops = count_flops(m, (1, 3, s.resolution, s.resolution))
        prev = rows[-1] if rows else None
        rows.append({
            "phi": phi,
            "depth_mult": round(s.depth_mult, 3),
            "width_mult": round(s.width_mult, 3),
            "resolution": s.resolution,
            "blocks": sum(m.stage_repeats),
            "params": count_params(m),
            "flops": flops,
            "macs": flops // 2,
            "flops_ratio": flops / prev["flops"] if prev else None,
            "ideal_ratio": s.flops_factor / prev_factor if prev_factor is not None else None,
        })
        prev_factor = s.flops_factor
    return rows


def single_dimension_scaling(
    target_macs: int,
    *,
    base_resolution: int = 32,
    num_classes: int = 10,
    dimensions: Sequence[str] = SCALING_DIMENSIONS,
    max_factor: float = 4.0,
) -> list[dict]:
    """For each dimension, the base net grown in that dimension alone to cost ``target_macs``.

    The control of compound scaling (Tan and Le, Fig. 3): scale only the width, only the depth or
    only the input resolution of the base :func:`~segbook.models.efficientnet.efficientnet_small`
    (``phi = 0`` at ``base_resolution``) until it costs what the compound-scaled net costs, then
    train all of them the same way. The multiplier is searched upwards on a grid (steps of 0.01 for
    depth and width, 1 pixel for resolution, up to ``max_factor`` times the base; the cost never
    falls as a multiplier grows, so the search stops at the first net that costs at least the
    target) and the one whose
    *measured* multiply-adds (:func:`~segbook.analysis.count_macs` at ``(1, 3, r, r)``) are
    closest to ``target_macs`` in ratio wins (the smaller multiplier on a tie). Because block
    counts, widths and stride-2 map sizes are rounded, costs move in jumps and an exact match is
    rarely possible: ``macs_ratio`` says how close each one came (e.g. resolution-only can only
    be 12% below or 21% above a 2.5x target on a 16-pixel base).

    Returns one row per dimension with keys ``scaling`` (the dimension), ``depth_mult``,
    ``width_mult``, ``resolution`` (build with
    ``scaled_efficientnet_small(depth_mult=..., width_mult=..., resolution=...)``),
    ``blocks`` (MBConv count), ``params``, ``macs`` and ``macs_ratio`` (``macs / target_macs``).
    """
    positive_float(target_macs, "target_macs")  # a number of multiply-adds
    unknown = [d for d in dimensions if d not in SCALING_DIMENSIONS]
    if unknown or not dimensions:
        raise ValueError(f"dimensions must be some of {SCALING_DIMENSIONS}, got {tuple(dimensions)!r}")
    if not max_factor > 1:
        raise ValueError(f"max_factor must be > 1, got {max_factor!r}")

    def build(d, w):
        return scaled_efficientnet_small(depth_mult=d, width_mult=w, resolution=base_resolution,
                                         num_classes=num_classes)

    rows = []
    for dim in dimensions:
        best = None  # (|log ratio|, depth_mult, width_mult, resolution, macs)
        if dim == "resolution":
            model = build(1.0, 1.0)
            for r in range(base_resolution, int(base_resolution * max_factor) + 1):
                macs = count_macs(model, (1, 3, r, r))
                cand = (abs(math.log(macs / target_macs)), 1.0, 1.0, r, macs)
                best = cand if best is None or cand[0] < best[0] else best
                if macs >= target_macs:  # the cost only grows from here
                    break
        else:
            seen: dict = {}
            for i in range(0, int(round((max_factor - 1) * 100)) + 1):
                m = round(1 + i / 100, 2)
                d, w = (m, 1.0) if dim == "depth" else (1.0, m)
                # rounding makes most neighbouring multipliers the same net: build each net once
                key = (tuple(round_repeats(st.repeats, d) for st in SMALL_STAGES),
                       tuple(round_filters(c, w) for c in [16, 256] + [st.channels for st in SMALL_STAGES]))
                if key not in seen:
                    seen[key] = count_macs(build(d, w), (1, 3, base_resolution, base_resolution))
                macs = seen[key]
                cand = (abs(math.log(macs / target_macs)), d, w, base_resolution, macs)
                best = cand if best is None or cand[0] < best[0] - 1e-12 else best
                if macs >= target_macs:  # the cost only grows with the multiplier
                    break
        _, d, w, r, macs = best
        model = build(d, w)
        rows.append({"scaling": dim, "depth_mult": d, "width_mult": w, "resolution": r,
                     "blocks": sum(model.stage_repeats), "params": count_params(model), "macs": int(macs),
                     "macs_ratio": macs / target_macs})
    return rows


def efficientnet_scaling_controls(
    phi: float = 1,
    *,
    base_resolution: int = 32,
    num_classes: int = 10,
) -> list[dict]:
    """The nets of the compound-scaling experiment: the base, the compound-scaled net and the
    three single-dimension nets of the same cost.

    Rows, in this order: ``"base"`` (``efficientnet_small(phi=0)``), ``"compound"``
    (``efficientnet_small(phi=phi)``), then ``"width"``, ``"depth"`` and ``"resolution"`` from
    :func:`single_dimension_scaling` with the compound net's measured multiply-adds as target.
    Keys: ``scaling``, ``depth_mult``, ``width_mult``, ``resolution`` (train and score the net at
    ``resolution x resolution``), ``blocks``, ``params``, ``macs``, ``macs_ratio`` (to the
    compound net) and ``build`` (a no-argument builder, for :func:`segbook.seeds.fit_over_seeds`).
    """
    rows = []
    for scaling, p in (("base", 0), ("compound", phi)):
        m = efficientnet_small(phi=p, num_classes=num_classes, base_resolution=base_resolution)
        rows.append({"scaling": scaling, "depth_mult": round(m.depth_mult, 3), "width_mult": round(m.width_mult, 3),
                     "resolution": m.resolution, "blocks": sum(m.stage_repeats), "params": count_params(m),
                     "macs": count_macs(m, (1, 3, m.resolution, m.resolution)),
                     "build": partial(efficientnet_small, phi=p, num_classes=num_classes,
                                      base_resolution=base_resolution)})
    target = rows[1]["macs"]
    for r in rows:
        r["macs_ratio"] = r["macs"] / target
    for r in single_dimension_scaling(target, base_resolution=base_resolution, num_classes=num_classes):
        r["build"] = partial(scaled_efficientnet_small, depth_mult=r["depth_mult"], width_mult=r["width_mult"],
                             resolution=r["resolution"], num_classes=num_classes)
        rows.append(r)
    return rows


def scaling_run_names(rows: Sequence[Mapping], *, prefix: str = "EfficientNet-s") -> dict[str, str]:
    """``{scaling: run name}`` for the rows of :func:`efficientnet_scaling_controls`, e.g.
    ``{"base": "EfficientNet-s base", "compound": "EfficientNet-s compound", ...}`` (row order)."""
    return {r["scaling"]: f"{prefix} {r['scaling']}" for r in rows}


def train_scaling_controls(
    rows: Sequence[Mapping],
    make_data: Callable[[int], Mapping[int, tuple]],
    seeds: Sequence[int],
    *,
    batch_size: int,
    names: Optional[Mapping[str, str]] = None,
    **fit_kwargs,
) -> dict[str, list[SeededRun]]:
    """Train every net of :func:`efficientnet_scaling_controls` once per seed, each at its own
    resolution.

    ``make_data(resolution)`` returns ``{seed: (training set, validation loader)}`` with images
    ``[3, resolution, resolution]`` (e.g. :func:`~segbook.experiments.classification_data.seed_data`: per seed
    the same scenes drawn at every size); it is called once per distinct resolution, smallest
    first, before any training. Each net ``row["build"]()`` then trains with
    :func:`segbook.seeds.fit_over_seeds` on ``make_loader(train_set, batch_size, shuffle=True,
    seed=s)`` of its resolution and is validated on that seed's loader; the nets with the most
    ``blocks x resolution^2`` (a rough cost) start first, which changes no number.

    Args:
        rows: :func:`efficientnet_scaling_controls`' rows (``scaling``, ``resolution``, ``blocks``,
            ``build``).
        make_data: ``resolution -> {seed: (training set, validation loader)}``.
        seeds: e.g. ``rt.seeds``.
        batch_size: training batch size.
        names: ``{scaling: run name}`` (default :func:`scaling_run_names`).
        **fit_kwargs: passed on to :func:`~segbook.train.fit` (``task``, ``num_classes``, ``lr``...).

    Returns:
        ``{run name: [SeededRun per seed]}`` in the order of ``rows``.
    """
    if not rows:
        raise ValueError("rows is empty: pass efficientnet_scaling_controls(...)")
    positive_int(batch_size, "batch_size")
    names = dict(scaling_run_names(rows) if names is None else names)
    missing = [r["scaling"] for r in rows if r["scaling"] not in names]
    if missing:
        raise ValueError(f"names has no run name for {missing}")
    of = {names[r["scaling"]]: r for r in rows}
    data = {res: make_data(res) for res in sorted({r["resolution"] for r in rows})}

    def train_loader(n):
        res = of[n]["resolution"]
        return lambda s: make_loader(data[res][s][0], batch_size, shuffle=True, seed=s)

    def val_loader(n):
        return lambda s: data[of[n]["resolution"]][s][1]

    return fit_over_seeds({n: of[n]["build"] for n in of}, {n: train_loader(n) for n in of}, seeds,
                          val_loader={n: val_loader(n) for n in of},
                          costs={n: of[n]["blocks"] * of[n]["resolution"] ** 2 for n in of}, **fit_kwargs)


@dataclass
class ScalingResults:
    """What :func:`scaling_results` read from the runs (lists: one value per seed, in seed order)."""

    #: ``{scaling: [validation accuracy per seed]}``
    accuracy: dict[str, list[float]] = field(default_factory=dict)
    #: ``{scaling: [final training loss per seed]}`` (mean over the last fifth of the steps)
    final_loss: dict[str, list[float]] = field(default_factory=dict)
    #: ``{scaling: mean training seconds over the seeds}``
    seconds: dict[str, float] = field(default_factory=dict)
    #: the table: one row per net, accuracy first, then what was matched and how
    rows: list[dict] = field(default_factory=list)


def scaling_results(
    rows: Sequence[Mapping],
    runs: Mapping[str, Sequence[SeededRun]],
    *,
    names: Optional[Mapping[str, str]] = None,
) -> ScalingResults:
    """Per-seed accuracies and losses of the compound-scaling experiment, and its table.

    ``rows`` are :func:`efficientnet_scaling_controls`' rows, ``runs`` what
    :func:`train_scaling_controls` returned (keyed by ``names[scaling]``, default
    :func:`scaling_run_names`). Table columns (the result first, phones show the first columns):
    ``"net"``, ``"val acc"`` (mean [min, max] over the seeds), ``"MACs vs compound"``,
    ``"resolution"``, ``"depth x"``, ``"width x"``, ``"MBConv blocks"``, ``"params"``, ``"MMACs"``
    and ``"final training loss"`` (mean [min, max]).
    """
    names = dict(scaling_run_names(rows) if names is None else names)
    missing = [names.get(r["scaling"], r["scaling"]) for r in rows if names.get(r["scaling"]) not in runs]
    if missing:
        raise ValueError(f"no runs for {missing}; the runs are {sorted(runs)}")

    def over_seeds(scaling, get):  # one value per seed for the net of that scaling
        return [get(x) for x in runs[names[scaling]]]

    scalings = [r["scaling"] for r in rows]
    acc = {d: over_seeds(d, lambda x: x.val["accuracy"]) for d in scalings}
    loss = {d: over_seeds(d, lambda x: x.final_loss) for d in scalings}
    sec = {}
    for d in scalings:
        v = over_seeds(d, lambda x: x.history.total_seconds)
        sec[d] = sum(v) / len(v)
    table = [{"net": names[r["scaling"]],
              "val acc": spread(acc[r["scaling"]]).format(),
              "MACs vs compound": r["macs_ratio"], "resolution": r["resolution"],
              "depth x": r["depth_mult"], "width x": r["width_mult"],
              "MBConv blocks": r["blocks"], "params": r["params"],
              "MMACs": r["macs"] / 1e6,
              "final training loss": spread(loss[r["scaling"]]).format()}
             for r in rows]
    return ScalingResults(accuracy=acc, final_loss=loss, seconds=sec, rows=table)
