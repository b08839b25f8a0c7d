"""Chapter 1 (classification backbones): GoogLeNet's 1x1 reductions and its auxiliary heads.

:func:`reduction_rows` prices an Inception module with and without the 1x1 convolutions in front
of its 3x3 and 5x5 branches (same input and output width): the reductions are what made the
module affordable. :func:`aux_head_results` reads a trained comparison of GoogLeNet with and
without its two side classifiers: the main head's accuracy and loss per seed, what each side head
reaches on its own, and the chapter's table.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from ..analysis import count_macs, count_params
from ..checks import positive_int
from ..models.inception import Inception, aux_classifier, without_reductions
from ..seeds import SeededRun, spread
from ..train import evaluate

__all__ = ["reduction_rows", "AuxHeadResults", "aux_head_results"]


def reduction_rows(module: Inception, *, size: int = 28, label: str = "module 3a") -> list[dict]:
    """Parameters and multiply-adds of ``module`` and of its twin without 1x1 reductions.

    The twin is :func:`~segbook.models.inception.without_reductions` (built here, freshly
    initialised: it draws from torch's global generator). Both are measured on an input
    ``[1, module.in_channels, size, size]``. Two rows, with reductions first, keys ``label``
    (``"with 1x1 reductions"`` / ``"without reductions"``), ``"params"`` and
    ``f"MMACs at {size}x{size}"`` (millions); pass them to :func:`segbook.viz.results_table`.
    """
    if not isinstance(module, Inception):
        raise TypeError(f"expected an Inception module (e.g. inception_3a()), got {type(module).__name__}")
    positive_int(size, "size")
    naive = without_reductions(module)
    shape = (1, module.in_channels, size, size)
    return [{label: name, "params": count_params(m), f"MMACs at {size}x{size}": count_macs(m, shape) / 1e6}
            for name, m in (("with 1x1 reductions", module), ("without reductions", naive))]


@dataclass
class AuxHeadResults:
    """What :func:`aux_head_results` read from the runs (lists: one value per seed, in seed order)."""

    #: ``{net name: [main-head validation accuracy per seed]}``
    accuracy: dict[str, list[float]] = field(default_factory=dict)
    #: ``{net name: [main-head validation loss per seed]}``
    loss: dict[str, list[float]] = field(default_factory=dict)
    #: ``{1: [...], 2: [...]}``: accuracy of each side head of the net with heads, on its own
    side_accuracy: dict[int, list[float]] = field(default_factory=dict)
    #: the table: one row per net, spreads as "mean [min, max]" over the seeds
    rows: list[dict] = field(default_factory=list)


def aux_head_results(
    runs: Mapping[str, Sequence[SeededRun]],
    data: Mapping[int, tuple],
    *,
    with_heads: str,
    num_classes: int,
) -> AuxHeadResults:
    """Scores of a GoogLeNet trained with and without auxiliary heads, and the chapter's table.

    ``runs`` is :func:`segbook.seeds.fit_over_seeds`' result (``{name: [SeededRun per seed]}``);
    ``runs[with_heads]`` holds the nets with side heads. Each side head ``h`` (1: after 4a, 2: after
    4d) is scored on its own with :func:`~segbook.train.evaluate` through
    :func:`~segbook.models.inception.aux_classifier` (eval mode) on its seed's validation images,
    ``data[seed] = (training set, validation loader)`` as
    :func:`~segbook.experiments.classification_data.seed_data` returns it (batches: images ``[N, 3, H, W]``,
    labels ``[N]``). The rows have ``"net"``, ``"val acc (main head)"``,
    ``"val loss (main head)"``, ``"val acc of head 1 / head 2"`` (an em dash for nets without heads)
    and ``"params in training"`` (side heads included).
    """
    if with_heads not in runs:
        raise ValueError(f"with_heads={with_heads!r} is not one of the runs {sorted(runs)}")
    positive_int(num_classes, "num_classes")
    missing = sorted({r.seed for r in runs[with_heads]} - set(data))
    if missing:
        raise ValueError(f"data has no (training set, validation loader) for seed(s) {missing}")

    acc = {n: [r.val["accuracy"] for r in rs] for n, rs in runs.items()}
    loss = {n: [r.val["loss"] for r in rs] for n, rs in runs.items()}
    side = {h: [evaluate(aux_classifier(r.model, h), data[r.seed][1], task="classification",
                         num_classes=num_classes)["accuracy"]
                for r in runs[with_heads]]
            for h in (1, 2)}
    heads = {n: "\u2014" for n in runs}
    heads[with_heads] = " / ".join(spread(side[h]).format() for h in (1, 2))
    rows = [{"net": n, "val acc (main head)": spread(acc[n]).format(),
             "val loss (main head)": spread(loss[n]).format(),
             "val acc of head 1 / head 2": heads[n],
             "params in training": count_params(rs[0].model)}
            for n, rs in runs.items()]
    return AuxHeadResults(accuracy=acc, loss=loss, side_accuracy=side, rows=rows)
