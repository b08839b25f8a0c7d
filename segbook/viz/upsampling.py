"""Figures for chapter 3 (upsampling and checkerboard artifacts).

Each function takes a result from the chapter's study (or plain tensors) and returns the matplotlib
figure (or axes), so the chapter cell is one call: the scatter of a 1-D transposed convolution
(:func:`draw_scatter_1d`), a grid of images and maps (:func:`show_images`), linear maps as matrices
(:func:`plot_operator_matrices`) and input gradients next to their scene (:func:`plot_input_gradients`).
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

__all__ = ["draw_scatter_1d", "show_images", "plot_operator_matrices", "plot_input_gradients"]


def draw_scatter_1d(x: Sequence[float], kernel: Sequence[float], *, stride: int = 2, padding: int = 0, ax=None):
    """Draw a 1-D transposed convolution as a scatter: one row per input value, its scaled kernel copy, and the sum.

    Row ``i`` shows ``x[i] * kernel`` at output positions ``i * stride - padding + a`` (the rule of
    :func:`segbook.nn.upsample.conv_transpose2d_scatter`); the bottom row is the output, whose
    values are checked against ``F.conv_transpose1d`` before drawing. Returns the axes.
    """
    xt = torch.as_tensor(x, dtype=torch.float64)
    kt = torch.as_tensor(kernel, dtype=torch.float64)
    full = F.conv_transpose1d(xt.view(1, 1, -1), kt.view(1, 1, -1), stride=stride)[0, 0]
    n_out = full.numel()
    rows = torch.zeros(len(xt), n_out, dtype=torch.float64)
    for i, v in enumerate(xt):     # one row per *input* value (a handful), for the drawing only
        rows[i, i * stride: i * stride + len(kt)] = v * kt
    if not torch.allclose(rows.sum(0), full):
        raise RuntimeError("internal: the drawn scatter does not sum to conv_transpose1d")  # pragma: no cover
    if ax is None:
        _, ax = plt.subplots(figsize=(0.55 * n_out + 1.5, 0.45 * (len(xt) + 2) + 0.4), dpi=100)
    cmap = plt.get_cmap("tab10")
    for i in range(len(xt)):
        for j in range(i * stride, i * stride + len(kt)):
            ax.add_patch(plt.Rectangle((j, i), 1, 1, color=cmap(i % 10), alpha=0.35))
            ax.text(j + 0.5, i + 0.5, f"{rows[i, j].item():g}", ha="center", va="center", fontsize=8)
        ax.text(-0.3, i + 0.5, f"x[{i}]={xt[i].item():g}", ha="right", va="center", fontsize=8)
    y0 = len(xt) + 0.3
    for j in range(n_out):
        kept = padding <= j < n_out - padding
        ax.add_patch(plt.Rectangle((j, y0), 1, 1, fill=False, lw=1, ls="-" if kept else ":"))
        ax.text(j + 0.5, y0 + 0.5, f"{full[j].item():g}", ha="center", va="center", fontsize=8,
                color="black" if kept else "grey")
    ax.text(-0.3, y0 + 0.5, "sum", ha="right", va="center", fontsize=8)
    ax.set_xlim(-2.2, n_out + 0.2)
    ax.set_ylim(y0 + 1.2, -0.2)
    ax.set_xticks([j + 0.5 for j in range(n_out)], [str(j - padding) for j in range(n_out)], fontsize=7)
    ax.set_yticks([])
    ax.set_xlabel("output position" + (" (dotted: cropped by the padding)" if padding else ""), fontsize=8)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    return ax


def show_images(panels: dict, *, ncols: Optional[int] = None, panel_size: float = 1.6, cmap: str = "gray",
                suptitle: Optional[str] = None, symmetric: bool = False,
                vrange: Optional[tuple[float, float]] = None, colorbar_label: Optional[str] = None):
    """Show a dict ``title -> image`` (``[3, H, W]`` RGB in [0, 1], or ``[H, W]`` with its own colour scale).

    2-D maps get a colour bar (labelled ``colorbar_label``, e.g. the unit); ``symmetric`` centres
    each map's scale on 0 (for gradients); ``vrange=(lo, hi)`` gives all maps the same scale
    instead (to compare their strength). Returns the figure.
    """
    if vrange is not None and not (len(vrange) == 2 and vrange[0] < vrange[1]):
        raise ValueError(f"vrange must be (lo, hi) with lo < hi, got {vrange!r}")
    n = len(panels)
    ncols = ncols or n
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size * ncols + 0.4 * ncols, panel_size * nrows + 0.3),
                             dpi=100, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (title, img) in zip(axes.flat, panels.items()):
        t = torch.as_tensor(img).detach().cpu().float()
        if t.dim() == 3:
            ax.imshow(t.clamp(0, 1).permute(1, 2, 0).numpy(), interpolation="nearest")
        else:
            kw = {}
            if vrange is not None:
                kw = {"vmin": vrange[0], "vmax": vrange[1]}
            elif symmetric:
                m = t.abs().max().item() or 1.0
                kw = {"vmin": -m, "vmax": m}
            im = ax.imshow(t.numpy(), cmap=cmap, interpolation="nearest", **kw)
            bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
            bar.ax.tick_params(labelsize=6)
            if colorbar_label:
                bar.set_label(colorbar_label, fontsize=7)
        ax.set_title(title, fontsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    return fig


def plot_operator_matrices(matrices: Mapping[str, torch.Tensor], *, vlim: Optional[float] = None,
                           proportional: bool = False):
    """Draw linear maps as heat maps, one panel per ``title -> matrix [out, in]`` (e.g. from
    :func:`segbook.nn.upsample.operator_matrix`); rows are output pixels, columns input pixels.

    ``vlim``: one shared colour scale ``[-vlim, vlim]`` with one colour bar for all panels (to compare
    weights); without it each panel is scaled to its own largest ``|entry|`` (no colour bar: the
    picture is about where the entries are). ``proportional`` gives each panel a width in proportion
    to its number of columns (a 64 x 16 matrix next to a 64 x 64 one). Returns the figure.
    """
    if not matrices:
        raise ValueError("plot_operator_matrices needs at least one matrix")
    mats = {t: torch.as_tensor(m).detach().cpu() for t, m in matrices.items()}
    for title, m in mats.items():
        if m.dim() != 2:
            raise ValueError(f"matrix {title!r} must be 2-D [out, in], got shape {tuple(m.shape)}")
    if vlim is not None and not float(vlim) > 0:
        raise ValueError(f"vlim must be > 0, got {vlim!r}")
    kw = {"gridspec_kw": {"width_ratios": [m.shape[1] for m in mats.values()]}} if proportional else {}
    fig, axes = plt.subplots(1, len(mats), figsize=(6.4, 2.9), dpi=100, squeeze=False, **kw)
    axes = axes[0]
    for i, (ax, (title, m)) in enumerate(zip(axes, mats.items())):
        lim = float(vlim) if vlim is not None else m.abs().max().item()
        im = ax.imshow(m.numpy(), cmap="coolwarm", vmin=-lim, vmax=lim,
                       aspect="auto" if proportional else None)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("input pixel", fontsize=8)
        if vlim is not None or i == 0:
            ax.set_ylabel("output pixel", fontsize=8)
    if vlim is not None:
        fig.colorbar(im, ax=list(axes), fraction=0.03).ax.tick_params(labelsize=7)
    else:
        fig.tight_layout()
    return fig


def plot_input_gradients(scene: torch.Tensor, gradients: Mapping[str, torch.Tensor], scores: Mapping[str, float], *,
                         crop: Optional[tuple[slice, slice]] = None, ncols: int = 2, panel_size: float = 2.0):
    """A scene ``[3, H, W]`` next to input gradients ``name -> [H, W]``, each titled with its checkerboard score.

    ``crop`` (a pair of slices, e.g. the centre) is applied to the scene and every map; the
    gradients are drawn with a red-blue scale centred on 0 (:func:`show_images` with
    ``symmetric=True``). Returns the figure.
    """
    if scene.dim() != 3:
        raise ValueError(f"scene must be [3, H, W], got shape {tuple(scene.shape)}")
    missing = set(gradients) - set(scores)
    if missing:
        raise ValueError(f"no score for gradient(s) {sorted(missing)}")
    crop = (slice(None), slice(None)) if crop is None else tuple(crop)
    panels = {"scene" + (" (centre)" if crop != (slice(None), slice(None)) else ""): scene[(slice(None), *crop)],
              **{f"d/dx, {k}\nscore {scores[k]:.3f}": v[crop] for k, v in gradients.items()}}
    return show_images(panels, ncols=ncols, panel_size=panel_size, cmap="coolwarm", symmetric=True,
                       colorbar_label="gradient")
