"""Plotting helpers: label palettes, overlays, segmentation grids, training curves, tables.

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

__all__ = [
    "PALETTE",
    "IGNORE_COLOR",
    "colorize",
    "overlay",
    "to_image",
    "show_segmentation",
    "show_maps",
    "plot_history",
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

ArrayLike = Union[torch.Tensor, np.ndarray]


def _np(x: ArrayLike) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
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


def colorize(mask: ArrayLike, *, ignore_index: int = 255) -> np.ndarray:
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


def overlay(image: ArrayLike, mask: ArrayLike, *, alpha: float = 0.5, ignore_index: int = 255) -> np.ndarray:
    """Blend the coloured mask over the image (background pixels keep the image): ``[H, W, 3]`` float."""
    img = to_image(image)
    m = _np(mask)
    if m.shape != img.shape[:2]:
        raise ValueError(f"image is {img.shape[:2]} but mask is {m.shape}")
    colours = colorize(m, ignore_index=ignore_index).astype(np.float32) / 255.0
    blend = np.where((m > 0)[..., None], (1 - alpha) * img + alpha * colours, img)
    return blend


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
    ignore_index: int = 255,
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


def plot_history(histories, key: str = "train_loss", *, ax=None, logy: bool = False, steps: bool = False,
                 smooth: int = 1, title: Optional[str] = None):
    """Plot one series of one or several :class:`~segbook.train.History` objects.

    Args:
        histories: a History, or ``{"label": History, ...}``.
        key: ``"train_loss"``, ``"train_accuracy"`` or ``"val.<metric>"``; ignored when ``steps``.
        steps: plot the per-step training loss instead (x axis: optimisation step).
        smooth: moving-average window for per-step curves.
        logy: log-scale y axis.

    Returns:
        The matplotlib ``Axes``.
    """
    from .train import History  # local import: viz must not import the training loop at module load

    if isinstance(histories, History):
        histories = {"": histories}
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.2))
    for label, h in histories.items():
        if steps:
            y = np.asarray(h.step_loss, dtype=np.float64)
            if smooth > 1 and len(y) >= smooth:
                y = np.convolve(y, np.ones(smooth) / smooth, mode="valid")
            ax.plot(np.arange(len(y)) + (smooth - 1 if smooth > 1 else 0), y, label=label or None)
        else:
            y = h.series(key)
            ax.plot(np.arange(1, len(y) + 1), y, marker="o", ms=3, label=label or None)
    ax.set_xlabel("step" if steps else "epoch")
    ax.set_ylabel("training loss" if steps else key.replace("val.", "validation ").replace("_", " "))
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    if any(histories):
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax


class ResultsTable:
    """A small table that renders as HTML in Jupyter and as aligned text in ``repr``."""

    def __init__(self, rows: Sequence[Mapping], columns: Optional[Sequence[str]] = None, *,
                 floatfmt: Union[str, Mapping[str, str]] = ".3f", title: Optional[str] = None) -> None:
        if not rows:
            raise ValueError("results_table needs at least one row")
        self.columns = list(columns) if columns is not None else list(dict.fromkeys(k for r in rows for k in r))
        self.title = title
        self._floatfmt = floatfmt
        self.rows = [dict(r) for r in rows]
        self.cells = [[self._fmt(c, r.get(c, "")) for c in self.columns] for r in self.rows]

    def _fmt(self, column: str, value) -> str:
        fmt = self._floatfmt.get(column, ".3f") if isinstance(self._floatfmt, Mapping) else self._floatfmt
        if isinstance(value, (float, np.floating)):
            return "nan" if np.isnan(value) else format(float(value), fmt)
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            return f"{int(value):,}"
        return str(value)

    def __repr__(self) -> str:
        widths = [max(len(c), *(len(row[i]) for row in self.cells)) for i, c in enumerate(self.columns)]
        line = "  ".join(c.ljust(w) for c, w in zip(self.columns, widths))
        out = ([self.title] if self.title else []) + [line, "  ".join("-" * w for w in widths)]
        out += ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in self.cells]
        return "\n".join(out)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>" for row in self.cells)
        caption = f"<caption>{html.escape(self.title)}</caption>" if self.title else ""
        return f'<table class="segbook-results">{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'

    def to_markdown(self) -> str:
        lines = ["| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(row) + " |" for row in self.cells]
        return "\n".join(lines)


def results_table(rows: Sequence[Mapping], columns: Optional[Sequence[str]] = None, *,
                  floatfmt: Union[str, Mapping[str, str]] = ".3f", title: Optional[str] = None) -> ResultsTable:
    """Build a :class:`ResultsTable` from a list of dicts (one per row).

    Floats are formatted with ``floatfmt`` (one format, or one per column), ints with thousands
    separators; missing cells are blank.
    """
    return ResultsTable(rows, columns, floatfmt=floatfmt, title=title)


def show_maps(maps: Mapping[str, ArrayLike], *, ncols: Optional[int] = None, panel_size: float = 1.6,
              cmap: str = "viridis", suptitle: Optional[str] = None, vrange: Optional[Sequence[float]] = None):
    """Draw named maps in a grid: ``[H, W]`` arrays with ``cmap``, ``[3, H, W]``/``[H, W, 3]`` as RGB.

    Maps are drawn at their own resolution with nearest-neighbour interpolation, so a coarse
    stride-32 map looks blocky next to a stride-2 one. Float RGB maps go through :func:`to_image`
    (channels first or last); uint8 ones are scaled by 1/255, and uint8 ``[H, W, 3]`` (the output
    of :func:`colorize`) is always read channels-last, also for a 3x3 map. ``vrange=(lo, hi)`` fixes the
    colour range of the 2-D maps (probabilities: ``(0, 1)``); otherwise each panel uses its own.

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
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size * ncols, panel_size * nrows + (0.3 if suptitle else 0)),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (name, a) in zip(axes.flat, items):
        kw = {} if a.ndim == 3 else {"cmap": cmap}
        if vrange is not None and a.ndim == 2:
            kw.update(vmin=vrange[0], vmax=vrange[1])
        ax.imshow(a, interpolation="nearest", **kw)
        ax.set_title(name, fontsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    return fig
