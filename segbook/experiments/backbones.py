"""Chapter 1 (classification backbones): tables the chapter builds from the models.

``efficientnet_scaling_table`` measures what compound scaling does to the small EfficientNet of
:mod:`segbook.models.efficientnet`; it lives here rather than in ``models`` because it is a chapter
table built with :mod:`segbook.analysis`, which the model code does not need.
"""
from __future__ import annotations

from typing import Optional, Sequence

from ..analysis import count_flops, count_params
from ..models.efficientnet import efficientnet_small

__all__ = ["efficientnet_scaling_table"]


def efficientnet_scaling_table(
    phis: Sequence[float] = (0, 1, 2, 3),
    *,
    num_classes: int = 10,
    base_resolution: int = 32,
) -> list[dict]:
    """One row per ``phi`` for the chapter's compound-scaling table.

    Each row builds ``efficientnet_small(phi)`` and measures it at its own resolution ``r``.

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
        m = efficientnet_small(phi, num_classes=num_classes, base_resolution=base_resolution)
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
