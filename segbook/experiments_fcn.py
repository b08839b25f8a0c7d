"""Helpers for chapter 2 (fully convolutional networks): crops, instances, tiling, figures.

* :func:`connected_components` and :func:`instances_per_class` count the separate objects of each
  class in a label mask: semantic segmentation gives them all the same label.
* :func:`center_crops` cuts small crops out of segmentation scenes and labels each crop with the
  class of its centre pixel (a patch classification task); :func:`window_centre_labels` gives
  the same label for every window a convolutionalised classifier scores on a whole image.
* :func:`tile_scenes` puts scenes side by side: a larger image with objects at the training scale.
* :func:`show_maps` draws named 2-D maps (activations, score maps, heat maps) in a grid.
* :data:`PAPER_VOC2011_VAL`: the numbers of Long et al. (2015), Table 2, for the results table.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "PAPER_VOC2011_VAL",
    "connected_components",
    "instances_per_class",
    "center_crops",
    "window_centre_labels",
    "tile_scenes",
    "top_channels",
    "show_maps",
]

# Long, Shelhamer & Darrell, "Fully convolutional networks for semantic segmentation", CVPR 2015,
# Table 2: PASCAL VOC 2011 segval (a subset of val), in percent.
PAPER_VOC2011_VAL = {
    "FCN-32s": {"pixel_acc": 89.1, "mean_acc": 73.3, "miou": 59.4, "fw_iou": 81.4},
    "FCN-16s": {"pixel_acc": 90.0, "mean_acc": 75.7, "miou": 62.4, "fw_iou": 83.0},
    "FCN-8s": {"pixel_acc": 90.3, "mean_acc": 75.9, "miou": 62.7, "fw_iou": 83.2},
}


def _check_mask(mask: torch.Tensor, name: str = "mask") -> torch.Tensor:
    if isinstance(mask, np.ndarray):
        mask = torch.from_numpy(mask)
    if not isinstance(mask, torch.Tensor) or mask.dim() != 2:
        raise ValueError(f"{name} must be a 2-D tensor [H, W], got {getattr(mask, 'shape', type(mask))}")
    if mask.is_floating_point():
        raise TypeError(f"{name} must hold integer labels or booleans, got {mask.dtype}")
    return mask


def connected_components(mask: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Label the 4-connected regions of a boolean mask.

    Shapes: ``[H, W]`` bool -> (labels int64 ``[H, W]`` with 0 outside the mask and ``1..n`` for
    the ``n`` regions in raster order of their first pixel, ``n``).

    Pure torch: every pixel starts with its own index and repeatedly takes the smallest index
    among its 4 neighbours inside the mask until nothing changes.
    """
    mask = _check_mask(mask).bool()
    h, w = mask.shape
    big = h * w + 1
    labels = torch.where(mask, torch.arange(h * w).reshape(h, w), torch.full((h, w), big))
    while True:
        padded = F.pad(labels[None, None].float(), (1, 1, 1, 1), value=float(big))[0, 0].long()
        neighbours = torch.stack([padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:], labels])
        new = torch.where(mask, neighbours.min(0).values, labels)
        if torch.equal(new, labels):
            break
        labels = new
    roots = torch.unique(labels[mask])  # sorted: raster order of each region's first pixel
    out = torch.zeros(h, w, dtype=torch.int64)
    if roots.numel():
        out[mask] = torch.searchsorted(roots, labels[mask]) + 1
    return out, int(roots.numel())


def instances_per_class(mask: torch.Tensor, num_classes: int, *, background: Optional[int] = 0,
                        min_pixels: int = 1) -> list[int]:
    """Number of separate (4-connected) regions of each class in a label mask ``[H, W]``.

    Returns a list of ``num_classes`` counts; the ``background`` class (0 by default) counts as 0.
    Regions smaller than ``min_pixels`` (slivers left by occlusion) are not counted. Touching
    objects of one class merge into one region and an occluded object may split in two: the label
    map alone does not say which pixels form one object, which is the point of the count.
    """
    mask = _check_mask(mask)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if isinstance(min_pixels, bool) or not isinstance(min_pixels, int) or min_pixels < 1:
        raise ValueError(f"min_pixels must be a positive int, got {min_pixels!r}")
    counts = []
    for k in range(num_classes):
        if k == background:
            counts.append(0)
            continue
        labels, n = connected_components(mask == k)
        sizes = torch.bincount(labels.flatten(), minlength=n + 1)[1:]
        counts.append(int((sizes >= min_pixels).sum()))
    return counts


def center_crops(images: torch.Tensor, masks: torch.Tensor, n: int, size: int = 16, *, seed: int = 0,
                 balanced: bool = True, num_classes: Optional[int] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ``size x size`` crops labelled with the class of their centre pixel.

    Shapes: images ``[N, C, H, W]``, masks ``[N, H, W]`` -> (crops ``[n, C, size, size]``,
    labels int64 ``[n]``). The centre of the crop with top-left ``(t, l)`` is pixel
    ``(t + size // 2, l + size // 2)``, the convention of :func:`window_centre_labels`.

    Args:
        n: number of crops.
        size: crop side.
        seed: the draw is a pure function of the seed.
        balanced: draw the centre class uniformly first (``n // K`` crops per class present, the
            rest spread over the first classes), then a crop among those with that centre class;
            otherwise crops are uniform over positions (mostly background).
        num_classes: number of classes (default: ``masks.max() + 1``).
    """
    if images.dim() != 4 or masks.dim() != 3 or images.shape[0] != masks.shape[0] \
            or images.shape[-2:] != masks.shape[-2:]:
        raise ValueError(f"expected images [N, C, H, W] and masks [N, H, W], got {tuple(images.shape)} "
                         f"and {tuple(masks.shape)}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    height, width = masks.shape[-2:]
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= min(height, width):
        raise ValueError(f"size must be an int in [1, {min(height, width)}], got {size!r}")
    gen = torch.Generator().manual_seed(int(seed))
    c = size // 2
    # every valid top-left corner, flattened as (image, top, left), and its centre class
    centre = masks[:, c: c + height - size + 1, c: c + width - size + 1]
    flat = centre.reshape(-1)
    if balanced:
        k = int(num_classes) if num_classes is not None else int(masks.max()) + 1
        present = [cls for cls in range(k) if bool((flat == cls).any())]
        counts = [n // len(present) + (1 if i < n % len(present) else 0) for i in range(len(present))]
        picks = []
        for cls, m in zip(present, counts):
            where = (flat == cls).nonzero().squeeze(1)
            picks.append(where[torch.randint(len(where), (m,), generator=gen)])
        idx = torch.cat(picks)
        idx = idx[torch.randperm(len(idx), generator=gen)]
    else:
        idx = torch.randint(flat.numel(), (n,), generator=gen)
    oh, ow = centre.shape[-2:]
    img_i, rem = idx // (oh * ow), idx % (oh * ow)
    top, left = rem // ow, rem % ow
    rows = (top[:, None] + torch.arange(size)[None])            # [n, size]
    cols = (left[:, None] + torch.arange(size)[None])
    crops = images[img_i[:, None, None, None], torch.arange(images.shape[1])[None, :, None, None],
                   rows[:, None, :, None], cols[:, None, None, :]]
    return crops, flat[idx].long()


def window_centre_labels(masks: torch.Tensor, window: int, stride: int) -> torch.Tensor:
    """The centre-pixel label of every ``window`` crop at steps of ``stride``.

    Shapes: ``[N, H, W] -> [N, (H - window) // stride + 1, (W - window) // stride + 1]``; entry
    ``(i, j)`` is ``masks[:, i stride + window // 2, j stride + window // 2]``: the target of the
    heat-map cell ``(i, j)`` of a convolutionalised crop classifier (see :func:`center_crops`).
    """
    if masks.dim() != 3:
        raise ValueError(f"masks must be [N, H, W], got {tuple(masks.shape)}")
    height, width = masks.shape[-2:]
    if window > min(height, width) or window < 1 or stride < 1:
        raise ValueError(f"need 1 <= window <= {min(height, width)} and stride >= 1, got {window}, {stride}")
    oh, ow = (height - window) // stride + 1, (width - window) // stride + 1
    c = window // 2
    return masks[:, c::stride, c::stride][:, :oh, :ow]


def tile_scenes(images: torch.Tensor, masks: torch.Tensor, rows: int, cols: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Put ``rows x cols`` consecutive scenes side by side into one larger image.

    Shapes: ``[N, C, H, W]``, ``[N, H, W]`` -> ``[N // (rows cols), C, rows H, cols W]``,
    ``[N // (rows cols), rows H, cols W]`` (leftover scenes are dropped). Objects keep their
    size, so a net trained on ``H x W`` scenes meets the same scale on a larger canvas.
    """
    if images.dim() != 4 or masks.dim() != 3 or images.shape[0] != masks.shape[0]:
        raise ValueError(f"expected images [N, C, H, W] and masks [N, H, W], got {tuple(images.shape)} "
                         f"and {tuple(masks.shape)}")
    g = rows * cols
    if rows < 1 or cols < 1 or images.shape[0] < g:
        raise ValueError(f"need at least rows*cols = {g} scenes and rows, cols >= 1, got {images.shape[0]} scenes")
    m = images.shape[0] // g
    _, c, h, w = images.shape
    img = images[: m * g].reshape(m, rows, cols, c, h, w).permute(0, 3, 1, 4, 2, 5).reshape(m, c, rows * h, cols * w)
    msk = masks[: m * g].reshape(m, rows, cols, h, w).permute(0, 1, 3, 2, 4).reshape(m, rows * h, cols * w)
    return img, msk


def top_channels(features: torch.Tensor, target: torch.Tensor, k: int = 3) -> list[int]:
    """The ``k`` channels of a feature map that follow ``target`` most closely.

    Shapes: ``features [C, h, w]``, ``target [H, W]`` (e.g. a 0/1 foreground mask) -> ``k`` channel
    indices, sorted by the absolute Pearson correlation between each channel and ``target``
    average-pooled to ``h x w`` (largest first; constant channels count as 0).
    """
    if features.dim() != 3 or target.dim() != 2:
        raise ValueError(f"expected features [C, h, w] and target [H, W], got {tuple(features.shape)} "
                         f"and {tuple(target.shape)}")
    t = F.adaptive_avg_pool2d(target.float()[None, None], features.shape[-2:]).flatten()
    f = features.float().flatten(1)
    f = f - f.mean(1, keepdim=True)
    t = t - t.mean()
    denom = f.norm(dim=1) * t.norm()
    corr = torch.where(denom > 0, (f @ t) / denom.clamp(min=1e-12), torch.zeros_like(denom))
    return corr.abs().argsort(descending=True, stable=True)[: int(k)].tolist()


def show_maps(maps: Mapping[str, object], *, ncols: Optional[int] = None, panel_size: float = 1.6,
              cmap: str = "viridis", suptitle: Optional[str] = None, vrange: Optional[Sequence[float]] = None,
              colorbar: bool = True, colorbar_label: str = ""):
    """Draw named maps in a grid: ``[H, W]`` arrays with ``cmap``, ``[3, H, W]``/``[H, W, 3]`` as RGB.

    Maps are drawn at their own resolution with nearest-neighbour interpolation, so a coarse
    stride-32 map looks blocky next to a stride-2 one. uint8 maps (e.g. :func:`segbook.viz.colorize`)
    are scaled by 1/255. ``vrange=(lo, hi)`` fixes the colour range (probabilities: ``(0, 1)``) and
    draws one colour bar for the whole figure; otherwise each ``[H, W]`` panel uses its own range
    and gets its own small colour bar (``colorbar=False`` leaves them out; RGB panels never get one,
    their colour is not a value). ``colorbar_label`` names the quantity ("P(class)").

    Returns:
        The matplotlib ``Figure``.
    """
    import matplotlib.pyplot as plt

    if not maps:
        raise ValueError("show_maps needs at least one map")
    items = []
    for name, m in maps.items():
        a = m.detach().cpu().numpy() if isinstance(m, torch.Tensor) else np.asarray(m)
        a = a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32)
        if a.ndim == 3 and a.shape[0] == 3:
            a = np.clip(a.transpose(1, 2, 0), 0, 1)
        elif a.ndim == 3 and a.shape[-1] == 3:
            a = np.clip(a, 0, 1)
        elif a.ndim != 2:
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
        ax.set_title(name, fontsize=9)
        if a.ndim == 2:
            image = im
            if has_values and not shared_bar:
                bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
                bar.ax.tick_params(labelsize=7)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    if shared_bar:
        bar = fig.colorbar(image, ax=axes.ravel().tolist(), fraction=0.03, pad=0.02)
        bar.ax.tick_params(labelsize=8)
        if colorbar_label:
            bar.set_label(colorbar_label, fontsize=9)
    return fig
