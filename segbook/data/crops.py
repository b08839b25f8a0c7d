"""Crops, sliding-window labels and tiles cut from segmentation scenes.

* :func:`centre_labelled_crops`: random ``size x size`` crops labelled with the class of their centre pixel
  (a patch classification task made from segmentation data);
* :func:`window_centre_labels`: the same label for every window that a convolutionalised crop
  classifier scores on a whole image (the target of each heat-map cell);
* :func:`tile_scenes`: scenes side by side in a larger image, objects at their training scale.
"""
from __future__ import annotations

from typing import Optional

import torch

from ..checks import positive_int

__all__ = ["centre_labelled_crops", "window_centre_labels", "tile_scenes"]


def centre_labelled_crops(images: torch.Tensor, masks: torch.Tensor, n: int, size: int = 16, *, seed: int = 0,
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
    n = positive_int(n, "n")
    height, width = masks.shape[-2:]
    size = positive_int(size, "size")
    if size > min(height, width):
        raise ValueError(f"size must be an int in [1, {min(height, width)}] (the scenes' smaller side), got {size!r}")
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
    heat-map cell ``(i, j)`` of a convolutionalised crop classifier (see :func:`centre_labelled_crops`).
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
