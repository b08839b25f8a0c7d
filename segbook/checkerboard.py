"""Measuring checkerboard artifacts: overlap (coverage) maps, a checkerboard score and a periodic amplitude.

Coverage
--------
A transposed convolution with kernel ``k`` and stride ``s`` pastes one copy of the kernel per
input pixel, ``s`` pixels apart. The *coverage* of an output pixel is how many copies overlap
there: the output of the same transposed convolution applied to an all-ones input with an
all-ones kernel. In 1-D, away from the border, coverage is periodic with period ``s``: positions
get ``floor(k / s)`` or ``ceil(k / s)`` copies, equal only when ``s`` divides ``k`` (Odena et al.
2016). A 2-D kernel is ``k x k``, so the 2-D coverage is the outer product of the 1-D ones and the
max/min ratio is squared: ``k=3, s=2`` gives 1 and 2 in 1-D and 1, 2, 4 in 2-D (ratio 4), ``k=4,
s=2`` gives 2 everywhere (ratio 1). Stacking layers multiplies the patterns into a coarser,
more uneven one (period ``s1 s2 ...``). :func:`coverage_map` computes the coverage of a stack
of layers on the interior, where no copy is missing because of the border.

Checkerboard score
------------------
For a map ``x`` of size ``H x W`` (multiples of the period ``P``), split the pixels into the
``P x P`` *phases* ``(a, b)``: ``x[a::P, b::P]``. A checkerboard is a pattern that repeats with
period ``P``, so it shows up as differences between the phase means ``m_ab``. The score is the
fraction of the map's variance explained by the phase means::

    score(x) = sum_ab (H W / P^2) (m_ab - m)^2 / sum_ij (x_ij - m)^2         (m: the mean of x)

Equivalently (Parseval): the energy of the 2-D DFT at the ``P^2 - 1`` non-zero frequencies that
are multiples of ``(H/P, W/P)`` (the frequencies of any ``P``-periodic pattern) over the energy
at all non-zero frequencies. It lies in ``[0, 1]``: 1 for a pure ``P``-periodic pattern (a
checkerboard ``(-1)^(i+j)``), 0 for a constant map (defined as 0 when the variance vanishes), and
close to ``(P^2 - 1) / (H W)`` for white noise. It does not change when ``x`` is scaled or
shifted (``a x + b``, ``a != 0``), so brightness and contrast do not matter. A smooth image has
almost no energy at those frequencies; a network output with checkerboard artifacts has.

Periodic amplitude
------------------
The score is a *share*: it says how much of a map's variation is periodic, not how strong the
periodic part is. On a textured image a faint grid has a small share, on a flat image any grid at
all has share 1. :func:`periodic_amplitude` returns the size of the same component instead, in the
units of the map: the root mean square of the ``P``-periodic part ``m_ab - m`` (the phase means
minus the overall mean, tiled over the map)::

    amplitude(x) = sqrt( (1 / P^2) sum_ab (m_ab - m)^2 )

It is 0 for a constant map and for any map whose phase means agree (no period-``P`` component),
exactly ``|a|`` for a checkerboard ``a (-1)^(i+j) + b`` (period 2), it scales with ``|a|`` when
``x`` becomes ``a x + b`` and ignores ``b``. Measured on a network's output for a flat input,
where the correct output has no periodic part, it is the strength of the artifact itself (times
255: in grey levels of an 8-bit image).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .checks import positive_int

__all__ = ["coverage_1d", "coverage_map", "coverage_ratio", "stack_margin", "checkerboard_score", "periodic_amplitude",
           "phase_kernels", "nyquist_residual", "masked_periodic_amplitude"]


def _layers(layers) -> list[tuple[int, int]]:
    if isinstance(layers, tuple) and len(layers) == 2 and all(isinstance(v, int) for v in layers):
        layers = [layers]
    out = []
    for layer in layers:
        if not (isinstance(layer, (tuple, list)) and len(layer) == 2):
            raise ValueError(f"layers must be (kernel_size, stride) pairs, got {layer!r}")
        k, s = layer
        for name, v in (("kernel_size", k), ("stride", s)):
            positive_int(v, f"{name} in layer {layer!r}")
        out.append((k, s))
    if not out:
        raise ValueError("layers is empty: give at least one (kernel_size, stride) pair")
    return out


def stack_margin(layers) -> int:
    """Output positions at each border that miss some kernel copies, for a stack of transposed convs.

    ``layers``: ``(kernel_size, stride)`` pairs, first layer first. One layer without padding:
    ``k - 1`` (the first and last ``k - 1`` outputs lack copies from inputs before the first or
    after the last); each further layer scales the margin by its stride and adds its own
    ``k - 1``: ``m_i = m_(i-1) s_i + k_i - 1``.
    """
    m = 0
    for k, s in _layers(layers):
        m = m * s + k - 1
    return m


def coverage_1d(layers, *, periods: int = 2) -> torch.Tensor:
    """Interior coverage of a stack of 1-D transposed convs: ``periods`` repeats of the pattern, int64 ``[periods * S]``.

    ``S = s1 s2 ...`` is the period. Computed by running the stack (all-ones kernels, no padding)
    on an all-ones input long enough to have an interior, then cropping :func:`stack_margin` from
    each side (the phase of the pattern is then that of the output positions after the margin).
    Examples: ``coverage_1d((3, 2)) -> [2, 1, 2, 1]``, ``coverage_1d((4, 2)) -> [2, 2, 2, 2]``,
    ``coverage_1d([(3, 2), (3, 2)]) -> [3, 1, 3, 2, 3, 1, 3, 2]``.
    """
    layers = _layers(layers)
    periods = positive_int(periods, "periods")
    period = 1
    for _, s in layers:
        period *= s
    margin = stack_margin(layers)
    n = periods + 2 * (margin // period + 2) + 2  # enough inputs at the first layer
    x = torch.ones(1, 1, n, dtype=torch.float64)
    for k, s in layers:
        x = F.conv_transpose1d(x, torch.ones(1, 1, k, dtype=torch.float64), stride=s)
    interior = x[0, 0, margin: x.shape[-1] - margin]
    if interior.numel() < periods * period:
        raise RuntimeError("internal: interior too short")  # pragma: no cover
    return interior[: periods * period].round().long()


def coverage_map(layers, *, periods: int = 2) -> torch.Tensor:
    """Interior coverage of a stack of 2-D transposed convs with ``k x k`` kernels: int64 ``[periods S, periods S]``.

    The outer product of :func:`coverage_1d` with itself (a ``k x k`` all-ones kernel is the outer
    product of two 1-D ones, so the 2-D count factorises).
    """
    c = coverage_1d(layers, periods=periods)
    return torch.outer(c, c)


def coverage_ratio(coverage: torch.Tensor) -> float:
    """``max / min`` of a coverage map (1.0 for even overlap; 4.0 for ``k=3, s=2`` in 2-D)."""
    if not isinstance(coverage, torch.Tensor) or coverage.numel() == 0:
        raise ValueError("coverage must be a non-empty tensor")
    lo = coverage.min().item()
    if lo <= 0:
        raise ValueError(f"coverage has a position with {lo} copies: the stride exceeds the kernel size, the ratio is infinite")
    return float(coverage.max().item() / lo)


def _periodic_part(x: torch.Tensor, period: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Check ``x [..., H, W]`` and ``period``; return (``x - mean`` in float64, phase means of it ``[..., P, P]``)."""
    if not isinstance(x, torch.Tensor) or x.dim() < 2:
        raise ValueError(f"x must be a tensor [..., H, W], got {getattr(x, 'shape', type(x))}")
    period = positive_int(period, "period", minimum=2)
    h, w = x.shape[-2:]
    if h % period or w % period:
        raise ValueError(
            f"H and W must be multiples of the period {period}, got {h}x{w}; crop first, "
            f"e.g. x[..., :{h - h % period}, :{w - w % period}]"
        )
    x = x.detach().to(torch.float64)
    centred = x - x.mean(dim=(-2, -1), keepdim=True)
    phases = centred.reshape(*x.shape[:-2], h // period, period, w // period, period)
    return centred, phases.mean(dim=(-4, -2))                      # [..., P, P]


def checkerboard_score(x: torch.Tensor, period: int = 2) -> torch.Tensor:
    """Fraction of each map's variance that is ``period``-periodic (see the module docstring), in ``[0, 1]``.

    Shapes: ``x [..., H, W]`` with ``H`` and ``W`` multiples of ``period`` -> score ``[...]`` (one
    value per map, e.g. ``[N, C]`` for a batch; a 0-d tensor for one ``[H, W]`` map). Computed in
    float64. A map whose variance is below ``1e-12`` times its mean square (a constant, up to
    rounding) scores 0. Scale-invariant; for the strength of the pattern use
    :func:`periodic_amplitude`.
    """
    centred, phase_means = _periodic_part(x, period)
    h, w = centred.shape[-2:]
    total = centred.square().sum(dim=(-2, -1))
    periodic = phase_means.square().sum(dim=(-2, -1)) * (h * w / period ** 2)
    scale = x.detach().to(torch.float64).square().sum(dim=(-2, -1))
    flat = total <= 1e-12 * scale
    score = torch.where(flat, torch.zeros_like(total), periodic / torch.where(flat, torch.ones_like(total), total))
    return score.clamp(0.0, 1.0)


def periodic_amplitude(x: torch.Tensor, period: int = 2) -> torch.Tensor:
    """RMS of each map's ``period``-periodic component, in the units of ``x`` (see the module docstring).

    Shapes: ``x [..., H, W]`` with ``H`` and ``W`` multiples of ``period`` -> amplitude ``[...]``
    (float64; a 0-d tensor for one ``[H, W]`` map). Not scale-invariant: ``periodic_amplitude(a x + b)
    = |a| periodic_amplitude(x)``. 0 for a constant map; ``|a|`` for ``a (-1)^(i+j) + b``. The
    squared amplitude times ``H W`` is the periodic energy in :func:`checkerboard_score`'s numerator.
    """
    _, phase_means = _periodic_part(x, period)
    return phase_means.square().mean(dim=(-2, -1)).sqrt()


def phase_kernels(kernel: torch.Tensor, stride: int = 2) -> list[torch.Tensor]:
    """The sub-kernels a transposed conv with ``stride`` uses at each output phase: ``kernel[..., a::s]``.

    Shapes: ``kernel [k]`` (1-D) -> a list of ``s`` tensors (phase ``a`` of the output uses taps
    ``a, a + s, ...``; with padding ``p`` the output position ``o`` has phase ``(o + p) mod s``).
    A constant input gives each phase the *sum* of its sub-kernel, so the output is flat exactly
    when all sums agree (away from the border), whatever the individual taps.
    Examples: ``[1/4, 3/4, 3/4, 1/4]`` (bilinear, ``k = 4``) -> ``[1/4, 3/4]`` and ``[3/4, 1/4]``,
    sums 1 and 1; a 2-D ``k x k`` kernel's phase ``(a, b)`` is ``kernel[a::s, b::s]``.
    """
    stride = positive_int(stride, "stride")
    if not isinstance(kernel, torch.Tensor) or kernel.dim() != 1:
        raise ValueError(f"kernel must be a 1-D tensor [k], got {getattr(kernel, 'shape', type(kernel))}")
    return [kernel[a::stride] for a in range(stride)]


def nyquist_residual(x: torch.Tensor) -> torch.Tensor:
    """``x`` minus its ``[1, 2, 1] / 4`` blur in both directions (replicate padding): ``[..., H, W] -> [..., H, W]``.

    The separable blur passes a constant and any linear ramp unchanged and removes the period-2
    patterns ``(-1)^i``, ``(-1)^j`` and ``(-1)^(i+j)`` entirely, so the residual keeps a period-2
    grid at full strength and drops the smooth part of the map (a region's level and slope).
    Measuring :func:`masked_periodic_amplitude` on it isolates the grid inside a region whose
    values vary smoothly (a segmentation logit map's object interior). Float64.
    """
    if not isinstance(x, torch.Tensor) or x.dim() < 2:
        raise ValueError(f"x must be a tensor [..., H, W], got {getattr(x, 'shape', type(x))}")
    h, w = x.shape[-2:]
    if min(h, w) < 3:
        raise ValueError(f"x must be at least 3x3, got {h}x{w}")
    t = x.detach().to(torch.float64).reshape(-1, 1, h, w)
    b = torch.tensor([0.25, 0.5, 0.25], dtype=torch.float64, device=t.device)
    blur = F.conv2d(F.pad(t, (1, 1, 1, 1), mode="replicate"), (b[:, None] * b[None, :]).view(1, 1, 3, 3))
    return (t - blur).reshape(x.shape)


def masked_periodic_amplitude(x: torch.Tensor, mask: torch.Tensor, period: int = 2) -> torch.Tensor:
    """:func:`periodic_amplitude` restricted to the pixels where ``mask`` is true, pooled over the batch.

    Shapes: ``x [N, C, H, W]``, ``mask [N, H, W]`` (bool) -> ``[C]`` (float64). Per channel, the
    phase means ``m_ab`` are taken over the masked pixels of all ``N`` maps at phase ``(a, b)``
    (phases counted from each map's top-left pixel, where a decoder's grid is aligned), ``m`` over
    all masked pixels; the result is ``sqrt(mean_ab (m_ab - m)^2)``. With the mask all true and
    ``N = 1`` it equals :func:`periodic_amplitude`. Raises if a phase has no masked pixel.
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"x must be [N, C, H, W], got {getattr(x, 'shape', type(x))}")
    if not isinstance(mask, torch.Tensor) or mask.shape != (x.shape[0], *x.shape[-2:]):
        raise ValueError(f"mask must be [N, H, W] = {(x.shape[0], *x.shape[-2:])}, got {getattr(mask, 'shape', type(mask))}")
    period = positive_int(period, "period", minimum=2)
    n, c, h, w = x.shape
    if h % period or w % period:
        raise ValueError(f"H and W must be multiples of the period {period}, got {h}x{w}")
    xm = x.detach().to(torch.float64)
    m = mask.to(torch.float64).unsqueeze(1)                                        # [N, 1, H, W]
    count = m.reshape(n, 1, h // period, period, w // period, period).sum(dim=(0, 2, 4))   # [1, P, P]
    if (count == 0).any():
        raise ValueError("some phase has no masked pixel; use a larger mask or more maps")
    sums = (xm * m).reshape(n, c, h // period, period, w // period, period).sum(dim=(0, 2, 4))  # [C, P, P]
    phase_means = sums / count
    overall = sums.sum(dim=(-2, -1)) / count.sum()
    return (phase_means - overall[:, None, None]).square().mean(dim=(-2, -1)).sqrt()
