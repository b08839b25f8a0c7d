"""Chapter 5's building-block studies: atrous receptive fields and the cost of separable convolutions.

Atrous (dilated) 3x3 layers at rates ``1, 2, 4, ...`` keep the weights of plain 3x3 layers but
their receptive field grows as ``2^(l+1) - 1`` after ``l`` layers, against ``2l + 1`` for plain
ones: :func:`atrous_rf_rows` measures both next to the formula. A depthwise separable convolution
(depthwise ``D_K x D_K``, then pointwise 1x1) costs ``1/N + 1/D_K^2`` of a standard convolution, in
multiply-adds and in parameters alike: :func:`separable_cost_rows` measures both counts next to the
formulas of :mod:`segbook.nn.separable`. Nothing here trains.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from ..analysis import count_macs, count_params, empirical_receptive_field, receptive_field
from ..checks import positive_int
from ..nn.atrous import dilated_stack
from ..nn.separable import SeparableConv2d, conv_macs, conv_params, separable_conv_macs, separable_conv_params

__all__ = ["atrous_rf_rows", "separable_cost_rows"]


def atrous_rf_rows(rates: Sequence[int], *, seed: int = 0, probe_size: int = 80) -> list[dict]:
    """Parameters and receptive fields of stacks of 3x3 convolutions, dilated by ``rates`` and plain.

    For ``n = 1 .. len(rates)`` builds :func:`segbook.nn.atrous.dilated_stack` of ``rates[:n]`` and
    of ``n`` plain layers (rate 1), both after ``torch.manual_seed(seed)``, and measures their
    receptive field on a ``[1, 1, probe_size, probe_size]`` input
    (:func:`segbook.analysis.empirical_receptive_field`); the atrous stack's is also computed from
    the rates (:func:`segbook.analysis.receptive_field`).

    Returns:
        One row per depth ``n``: ``{"layers", "rates", "params (atrous)", "params (plain)",
        "RF atrous (formula)", "RF atrous (measured)", "RF plain (measured)"}``.
    """
    rates = [positive_int(r, "rates") for r in rates]
    if not rates:
        raise ValueError("rates must name at least one dilation rate")
    positive_int(probe_size, "probe_size")
    probe = (1, 1, probe_size, probe_size)
    rows = []
    for n in range(1, len(rates) + 1):
        torch.manual_seed(seed)
        atrous, plain = dilated_stack(rates[:n]), dilated_stack([1] * n)
        rows.append({
            "layers": n,
            "rates": ", ".join(map(str, rates[:n])),
            "params (atrous)": count_params(atrous),
            "params (plain)": count_params(plain),
            "RF atrous (formula)": receptive_field([(3, 1, r) for r in rates[:n]])[-1],
            "RF atrous (measured)": empirical_receptive_field(atrous, probe),
            "RF plain (measured)": empirical_receptive_field(plain, probe),
        })
    return rows


def separable_cost_rows(separable: SeparableConv2d, standard: nn.Conv2d, map_side: int) -> list[dict]:
    """Multiply-adds and parameters of a separable and a standard convolution, measured and by formula.

    ``separable`` maps ``M`` to ``N`` channels with a ``D_K x D_K`` depthwise filter, ``standard``
    is the ``D_K x D_K`` convolution from ``M`` to ``N`` channels it replaces; both run on a
    ``[1, M, map_side, map_side]`` input ("same" padding, so the output is ``D_F = map_side``
    wide). Measured: :func:`segbook.analysis.count_macs` and ``count_params``; formulas: those of
    :mod:`segbook.nn.separable` (``D_K^2 M N D_F^2`` against ``D_K^2 M D_F^2 + M N D_F^2``, and the
    same without ``D_F^2`` for the parameters).

    Returns:
        Two rows, ``"multiply-adds"`` and ``"parameters"`` (key ``""``), each with
        ``"standard (measured)"``, ``"standard (formula)"``, ``"separable (measured)"``,
        ``"separable (formula)"`` and ``"ratio (measured)"`` (separable / standard).
    """
    if not isinstance(separable, SeparableConv2d):
        raise TypeError(f"separable must be a SeparableConv2d, got {type(separable).__name__}")
    if not isinstance(standard, nn.Conv2d):
        raise TypeError(f"standard must be an nn.Conv2d, got {type(standard).__name__}")
    m, n, dk = separable.in_channels, separable.out_channels, separable.kernel_size
    if (standard.in_channels, standard.out_channels, standard.kernel_size) != (m, n, (dk, dk)):
        raise ValueError(f"standard is a {standard.kernel_size} conv {standard.in_channels} -> "
                         f"{standard.out_channels}, not the {dk}x{dk} conv {m} -> {n} that separable replaces")
    df = positive_int(map_side, "map_side")
    shape = (1, m, df, df)
    sep_macs, std_macs = count_macs(separable, shape), count_macs(standard, shape)
    return [
        {"": "multiply-adds",
         "standard (measured)": std_macs,
         "standard (formula)": conv_macs(m, n, dk, df),
         "separable (measured)": sep_macs,
         "separable (formula)": separable_conv_macs(m, n, dk, df),
         "ratio (measured)": sep_macs / std_macs},
        {"": "parameters",
         "standard (measured)": count_params(standard),
         "standard (formula)": conv_params(m, n, dk),
         "separable (measured)": count_params(separable),
         "separable (formula)": separable_conv_params(m, n, dk),
         "ratio (measured)": count_params(separable) / count_params(standard)},
    ]
