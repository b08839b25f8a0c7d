"""Plotting helpers: label palettes, segmentation grids, map grids, tables.

All functions take torch tensors or NumPy arrays in the book's conventions (images ``[3, H, W]``
float in [0, 1], masks ``[H, W]`` int) and return matplotlib objects, so a chapter cell is one
call. ``results_table`` returns an object that renders as HTML in Jupyter and as aligned text
elsewhere, with numbers formatted once (so nbval sees stable text).
"""
from __future__ import annotations

import html
from typing import Mapping, Optional, Sequence, Union

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import Patch

from ..checks import positive_int
from ..constants import IGNORE_INDEX

__all__ = [
    "show_sampling_points",
    "plot_loss_curves",
    "plot_per_layer",
    "plot_bar_pairs",
    "PALETTE",
    "IGNORE_COLOR",
    "colorize",
    "to_image",
    "show_segmentation",
    "show_maps",
    "BOOK_FIGURE_WIDTH",
    "BOOK_RC",
    "figure_style",
    "MISSING",
    "ResultsTable",
    "results_table",
]

# A fixed palette: background black, then well-separated hues (enough for VOC's 21 classes).
PALETTE = np.array(
    [
        [0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
        [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212],
        [0, 128, 128], [220, 190, 255], [170, 110, 40], [255, 250, 200], [128, 0, 0],
        [170, 255, 195], [128, 128, 0], [255, 215, 180], [0, 0, 128], [128, 128, 128],
    ],
    dtype=np.uint8,
)
IGNORE_COLOR = np.array([255, 255, 255], dtype=np.uint8)

# ----------------------------------------------------------------------------------------------
# Figure defaults for the book
# ----------------------------------------------------------------------------------------------
BOOK_FIGURE_WIDTH = 6.4
"""Width in inches of a full-column figure. At the book's 100 dpi this is 640 CSS pixels, about the
text column of the HTML theme on a desktop; on a 390 px phone the figure is scaled to ~0.55, so
text drawn at 10-11 pt still reads at ~8 px. Keep at most 5-6 image panels per row."""

BOOK_RC = {
    "figure.dpi": 100,                      # CSS size: 1 inch = 100 px in the page
    "figure.figsize": (BOOK_FIGURE_WIDTH, 3.6),
    "savefig.dpi": 100,
    "savefig.bbox": "tight",
    "font.size": 11,
    "axes.titlesize": 11,
    "axes.labelsize": 11,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 10,
    "figure.titlesize": 12,
    "image.interpolation": "nearest",       # pixels of small images stay pixels, not blur
}
"""matplotlib rcParams that :func:`figure_style` applies."""


def figure_style(*, formats: Sequence[str] = ("retina",)) -> dict:
    """Set the book's figure defaults; call once near the top of a chapter.

    Applies :data:`BOOK_RC` (sizes for the text column, fonts legible at phone width) and, inside
    IPython/Jupyter, asks the inline backend for ``formats`` via
    ``matplotlib_inline.backend_inline.set_matplotlib_formats``. The default ``"retina"`` stores
    PNGs at twice the pixels with their display size in the output's metadata, so figures are
    sharp on high-resolution screens and shown at the same size (myst-nb copies that size into the
    ``<img>``; ``_static/segbook.css`` scales it down to narrow screens). Use ``("svg",)`` for
    line plots and diagrams that should stay sharp at any zoom (image panels become embedded
    bitmaps, and SVG text can differ by platform, so keep such cells ``nbval-ignore-output``).

    Returns:
        The rcParams it set (a copy of :data:`BOOK_RC`).
    """
    plt.rcParams.update(BOOK_RC)
    try:
        from IPython import get_ipython
    except ImportError:  # plain Python: rcParams only
        return dict(BOOK_RC)
    if get_ipython() is not None:
        from matplotlib_inline.backend_inline import set_matplotlib_formats

        set_matplotlib_formats(*formats)
    return dict(BOOK_RC)

ArrayLike = Union[torch.Tensor, np.ndarray]


def _np(x: ArrayLike) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach()
        if x.dtype in (torch.bfloat16, torch.float16):  # AMP activations; numpy has no bf16
            x = x.float()
        return x.cpu().numpy()
    return np.asarray(x)


def to_image(image: ArrayLike) -> np.ndarray:
    """``[3, H, W]`` (or ``[H, W, 3]``/``[H, W]``) float in [0, 1] -> ``[H, W, 3]`` for imshow."""
    img = _np(image).astype(np.float32)
    if img.ndim == 3 and img.shape[0] in (1, 3):  # channels first is the book's convention
        img = img.transpose(1, 2, 0)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"expected an image [3, H, W] or [H, W], got shape {_np(image).shape}")
    return np.clip(img, 0.0, 1.0)


def colorize(mask: ArrayLike, *, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Class map ``[H, W]`` -> RGB ``[H, W, 3]`` uint8 with :data:`PALETTE`; ``ignore_index`` is white."""
    m = _np(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be [H, W], got shape {m.shape}")
    if not np.issubdtype(m.dtype, np.integer):
        raise TypeError(f"mask must hold integer labels, got {m.dtype}")
    out = np.empty(m.shape + (3,), np.uint8)
    ignored = m == ignore_index
    labels = np.where(ignored, 0, m)
    if labels.min() < 0:
        raise ValueError("mask has negative labels")
    out[:] = PALETTE[labels % len(PALETTE)]
    out[ignored] = IGNORE_COLOR
    return out


def _legend(fig, class_names: Sequence[str]) -> None:
    handles = [Patch(facecolor=PALETTE[i % len(PALETTE)] / 255.0, edgecolor="0.5", label=name)
               for i, name in enumerate(class_names)]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 7), frameon=False,
               bbox_to_anchor=(0.5, -0.02))


def show_segmentation(
    images: ArrayLike,
    masks: ArrayLike,
    preds: Optional[Union[ArrayLike, Mapping[str, ArrayLike]]] = None,
    *,
    class_names: Optional[Sequence[str]] = None,
    n: int = 4,
    panel_size: float = 1.9,
    ignore_index: int = IGNORE_INDEX,
):
    """A grid: one row per image, columns image | ground truth | each prediction.

    Args:
        images: ``[N, 3, H, W]``; masks: ``[N, H, W]``.
        preds: ``[N, H, W]`` or ``{"name": [N, H, W], ...}`` (one column each, in order).
        class_names: draws a colour legend when given.
        n: number of rows (the first ``n`` items).

    Returns:
        The matplotlib ``Figure``.
    """
    images, masks = _np(images), _np(masks)
    if images.ndim != 4 or masks.ndim != 3 or images.shape[0] != masks.shape[0]:
        raise ValueError(f"expected images [N, 3, H, W] and masks [N, H, W], got {images.shape} and {masks.shape}")
    if preds is None:
        columns = {}
    elif isinstance(preds, Mapping):
        columns = {k: _np(v) for k, v in preds.items()}
    else:
        columns = {"prediction": _np(preds)}
    for name, p in columns.items():
        if p.shape != masks.shape:
            raise ValueError(f"prediction {name!r} has shape {p.shape}, masks have {masks.shape}")
    rows = min(n, images.shape[0])
    titles = ["image", "ground truth", *columns]
    fig, axes = plt.subplots(rows, len(titles), figsize=(panel_size * len(titles), panel_size * rows + 0.4),
                             squeeze=False)
    for r in range(rows):
        panels = [to_image(images[r]), colorize(masks[r], ignore_index=ignore_index)]
        panels += [colorize(p[r], ignore_index=ignore_index) for p in columns.values()]
        for c, panel in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(panel, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=9)
    if class_names:
        _legend(fig, class_names)
    fig.tight_layout(rect=(0, 0.06 if class_names else 0, 1, 1))
    return fig


MISSING = "\u2014"  # an em dash: what a table shows for a missing value (None, NaN, an absent key)


def _is_missing(value) -> bool:
    if value is None:
        return True
    if isinstance(value, (float, np.floating)):
        return bool(np.isnan(value))
    return False


class ResultsTable:
    """A small table that renders as HTML in Jupyter and as aligned text in ``repr``.

    In HTML the table has class ``segbook-results`` (styled by ``_static/segbook.css``) and the cells
    of numeric columns (every value a number or missing) class ``num`` (right-aligned). A missing
    value -- ``None``, NaN or a key the row lacks -- shows as an em dash (:data:`MISSING`), never
    ``nan``.
    """

    def __init__(self, rows: Sequence[Mapping], columns: Optional[Sequence[str]] = None, *,
                 floatfmt: Union[str, Mapping[str, str]] = ".3f", title: Optional[str] = None) -> None:
        if not rows:
            raise ValueError("results_table needs at least one row")
        self.columns = list(columns) if columns is not None else list(dict.fromkeys(k for r in rows for k in r))
        self.title = title
        self._floatfmt = floatfmt
        self.rows = [dict(r) for r in rows]
        self.cells = [[self._fmt(c, r.get(c)) for c in self.columns] for r in self.rows]
        # A column is numeric (right-aligned in HTML) when every value in it is a number or missing.
        self.numeric = [all(self._numeric(r.get(c)) for r in self.rows) for c in self.columns]

    def _fmt(self, column: str, value) -> str:
        fmt = self._floatfmt.get(column, ".3f") if isinstance(self._floatfmt, Mapping) else self._floatfmt
        if _is_missing(value):
            return MISSING
        if isinstance(value, (float, np.floating)):
            return format(float(value), fmt)
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            return f"{int(value):,}"
        return str(value)

    def _numeric(self, value) -> bool:
        return _is_missing(value) or (isinstance(value, (int, float, np.integer, np.floating))
                                      and not isinstance(value, bool))

    def __repr__(self) -> str:
        widths = [max(len(c), *(len(row[i]) for row in self.cells)) for i, c in enumerate(self.columns)]
        line = "  ".join(c.ljust(w) for c, w in zip(self.columns, widths))
        out = ([self.title] if self.title else []) + [line, "  ".join("-" * w for w in widths)]
        out += ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in self.cells]
        return "\n".join(out)

    def _repr_html_(self) -> str:
        cls = ['<th class="num">' if num else "<th>" for num in self.numeric]
        head = "".join(f"{open_}{html.escape(c)}</th>" for open_, c in zip(cls, self.columns))
        tds = ['<td class="num">' if num else "<td>" for num in self.numeric]
        body = "".join("<tr>" + "".join(f"{open_}{html.escape(v)}</td>" for open_, v in zip(tds, row)) + "</tr>"
                       for row in self.cells)
        caption = f"<caption>{html.escape(self.title)}</caption>" if self.title else ""
        return f'<table class="segbook-results">{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'

    def to_markdown(self) -> str:
        lines = ["| " + " | ".join(self.columns) + " |", "|" + "".join("---:|" if num else "---|" for num in self.numeric)]
        lines += ["| " + " | ".join(row) + " |" for row in self.cells]
        return "\n".join(lines)


def results_table(rows: Sequence[Mapping], columns: Optional[Sequence[str]] = None, *,
                  floatfmt: Union[str, Mapping[str, str]] = ".3f", title: Optional[str] = None) -> ResultsTable:
    """Build a :class:`ResultsTable` from a list of dicts (one per row).

    Floats are formatted with ``floatfmt`` (one format, or one per column), ints with thousands
    separators; a missing value (``None``, NaN, or a key the row lacks) shows as an em dash.
    """
    return ResultsTable(rows, columns, floatfmt=floatfmt, title=title)


def show_maps(maps: Mapping[str, ArrayLike], *, ncols: Optional[int] = None, panel_size: float = 1.6,
              cmap: str = "viridis", suptitle: Optional[str] = None, vrange: Optional[Sequence[float]] = None,
              colorbar: bool = True, colorbar_label: str = ""):
    """Draw named maps in a grid: ``[H, W]`` arrays with ``cmap``, ``[3, H, W]``/``[H, W, 3]`` as RGB.

    Maps are drawn at their own resolution with nearest-neighbour interpolation, so a coarse
    stride-32 map looks blocky next to a stride-2 one. Float RGB maps go through :func:`to_image`
    (channels first or last); uint8 ones are scaled by 1/255, and uint8 ``[H, W, 3]`` (the output
    of :func:`colorize`) is always read channels-last, also for a 3x3 map. ``vrange=(lo, hi)`` fixes
    the colour range of the 2-D maps (probabilities: ``(0, 1)``) and draws one colour bar for the
    whole figure; otherwise each ``[H, W]`` panel uses its own range and gets its own small colour
    bar (``colorbar=False`` leaves them out; RGB panels never get one, their colour is not a value).
    ``colorbar_label`` names the quantity ("P(class)").

    Returns:
        The matplotlib ``Figure``.
    """
    if not maps:
        raise ValueError("show_maps needs at least one map")
    items = []
    for name, m in maps.items():
        a = _np(m)
        if a.dtype == np.uint8 and a.ndim == 3 and a.shape[-1] == 3:
            # uint8 RGB is channels-last (colorize's output), also for a 3x3 map, where shape
            # (3, 3, 3) would otherwise be read as channels-first
            a = a.astype(np.float32) / 255.0
        elif a.ndim == 3 and 3 in (a.shape[0], a.shape[-1]):
            a = to_image(a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32))
        elif a.ndim == 2:
            a = a.astype(np.float32)
        else:
            raise ValueError(f"map {name!r} must be [H, W], [3, H, W] or [H, W, 3], got shape {a.shape}")
        items.append((name, a))
    ncols = min(len(items), ncols or len(items))
    nrows = -(-len(items) // ncols)
    has_values = colorbar and any(a.ndim == 2 for _, a in items)
    shared_bar = has_values and vrange is not None
    extra_w = 0.9 if shared_bar else (0.35 * ncols if has_values else 0.0)
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size * ncols + extra_w,
                                                    panel_size * nrows + (0.3 if suptitle else 0)),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    image = None
    for ax, (name, a) in zip(axes.flat, items):
        kw = {} if a.ndim == 3 else {"cmap": cmap}
        if vrange is not None and a.ndim == 2:
            kw.update(vmin=vrange[0], vmax=vrange[1])
        im = ax.imshow(a, interpolation="nearest", **kw)
        ax.set_title(name, fontsize=8)
        if a.ndim == 2:
            image = im
            if has_values and not shared_bar:
                bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
                bar.ax.tick_params(labelsize=7)
                if colorbar_label:
                    bar.set_label(colorbar_label, fontsize=7)
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    if shared_bar:
        bar = fig.colorbar(image, ax=axes.ravel().tolist(), fraction=0.03, pad=0.02)
        bar.ax.tick_params(labelsize=8)
        if colorbar_label:
            bar.set_label(colorbar_label, fontsize=9)
    return fig


def show_sampling_points(image: ArrayLike, panels: Mapping[str, ArrayLike], pixels: Sequence[Sequence[int]], *,
                         suptitle: Optional[str] = None, margin: int = 5):
    """Draw where a convolution samples: one panel per entry of ``panels`` over the same image.

    Args:
        image: ``[H, W]`` grey image.
        panels: ``{title: taps}`` with ``taps [H_out, W_out, K, 2]`` input coordinates ``(y, x)`` of
            the ``K`` taps of every output (e.g. :func:`segbook.nn.regular_grid` and
            :meth:`segbook.nn.DeformConv2d.sampling_points`).
        pixels: the outputs ``(y, x)`` whose taps are drawn, each in its own colour, marked ``+``.
        margin: pixels shown around the image (taps may read outside it).

    Returns:
        the figure (one row of panels).
    """
    img = _np(image)
    if img.ndim != 2:
        raise ValueError(f"image must be [H, W], got shape {img.shape}")
    if not panels:
        raise ValueError("panels is empty: pass {title: taps [H, W, K, 2]}")
    h, w = img.shape
    fig, axes = plt.subplots(1, len(panels), figsize=(3.5 * len(panels), 3.6), squeeze=False)
    for ax, (title, taps) in zip(axes[0], panels.items()):
        taps = _np(taps)
        if taps.ndim != 4 or taps.shape[-1] != 2:
            raise ValueError(f"panel {title!r}: taps must be [H, W, K, 2] (y, x), got shape {taps.shape}")
        ax.imshow(img, cmap="gray")
        for i, (oy, ox) in enumerate(pixels):
            c = f"C{(1, 2, 0, 3, 4)[i % 5]}"
            ax.scatter(taps[oy, ox, :, 1], taps[oy, ox, :, 0], s=14, color=c)
            ax.plot(ox, oy, "+", color=c, ms=11, mew=2)
        ax.set_xlim(-1 - margin, w + margin)
        ax.set_ylim(h + margin, -1 - margin)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(title, fontsize=9)
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    return fig


def plot_loss_curves(curves: Mapping[str, Sequence[Sequence[float]]], *, window: int = 1,
                     styles: Optional[Mapping[str, str]] = None, log: bool = True,
                     xlabel: str = "optimisation step", ylabel: Optional[str] = None,
                     title: Optional[str] = None, figsize: Sequence[float] = (6, 3.4)):
    """Training curves, one line per run: ``curves[name]`` lists the per-step losses of each run
    (e.g. one run per seed); the first run of a name is drawn thicker and carries the legend label.

    Each curve is a moving average over ``window`` steps (``np.convolve(..., mode="valid")``),
    plotted at the 1-based number of the window's last step. ``styles[name]`` is a matplotlib
    format string (``"C3--"``); ``log`` puts the loss on a log scale. Returns the figure.
    """
    window = positive_int(window, "window")
    if not curves:
        raise ValueError("curves is empty: pass {name: [per-step losses of each run]}")
    fig, ax = plt.subplots(figsize=tuple(figsize))
    for name, runs in curves.items():
        for k, steps in enumerate(runs):
            steps = np.asarray(steps, dtype=float)
            if steps.ndim != 1 or len(steps) < window:
                raise ValueError(f"{name!r} run {k}: need a 1-D sequence of at least window={window} losses, "
                                 f"got shape {steps.shape}")
            loss = np.convolve(steps, np.ones(window) / window, mode="valid")
            ax.plot(np.arange(len(loss)) + window, loss, (styles or {}).get(name, "-"),
                    lw=1.2 if k == 0 else 0.6, label=name if k == 0 else None)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel or (f"training loss (moving average of {window})" if window > 1 else "training loss"))
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def plot_per_layer(values: Mapping[str, ArrayLike], *, log: bool = True, xlabel: str = "layer",
                   ylabel: str = "", figsize: Sequence[float] = (6, 3.2)):
    """One marked line per network: ``values[name]`` holds one number per layer ``[L]``, drawn at
    layers ``1..L`` (e.g. gradient norms from :func:`segbook.analysis.grad_norms_at_init`).
    ``log`` uses a log scale for the values. Returns the figure."""
    if not values:
        raise ValueError("values is empty: pass {name: [one value per layer]}")
    fig, ax = plt.subplots(figsize=tuple(figsize))
    for name, v in values.items():
        v = _np(v).astype(float)
        if v.ndim != 1:
            raise ValueError(f"{name!r}: expected one value per layer [L], got shape {v.shape}")
        (ax.semilogy if log else ax.plot)(np.arange(1, len(v) + 1), v, "o-", ms=3, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def plot_bar_pairs(first: ArrayLike, second: ArrayLike, *, labels: Sequence[str] = ("before", "after"),
                   colors: Sequence[str] = ("0.6", "C3"), xlabel: str = "", ylabel: str = "",
                   figsize: Sequence[float] = (6, 2.6)):
    """Two values per item side by side: ``first [n]`` and ``second [n]`` as pairs of bars at
    items ``1..n`` (e.g. a block's residual ratio at initialisation and after training).
    Returns the figure."""
    a, b = _np(first).astype(float), _np(second).astype(float)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"first and second must be 1-D and of one length, got {a.shape} and {b.shape}")
    fig, ax = plt.subplots(figsize=tuple(figsize))
    items = np.arange(1, len(a) + 1)
    ax.bar(items - 0.2, a, width=0.4, color=colors[0], label=labels[0])
    ax.bar(items + 0.2, b, width=0.4, color=colors[1], label=labels[1])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return fig
