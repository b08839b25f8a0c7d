"""Chapter-4 helpers: odd-sized crops, border bands, and the U-Net input policies compared.

A U-Net with ``D`` poolings and same padding takes sides that are multiples of ``2^D``. For any other
size there are three fixes (:mod:`segbook.models.unet`): refuse and crop the input to the nearest
valid size ("strict"), mirror-pad to a valid size and crop the output back ("pad"), or resize the
decoder maps to their skips ("resize"). :func:`compare_input_policies` runs one trained net under
each and measures what the issue of sizes costs: how much of the image gets a prediction, the
accuracy in a band along the border (where padding and cropping act) and inside, and the time.
"""
from __future__ import annotations

import time
from typing import Optional

import torch

from ..checks import positive_int
from ..metrics import SegmentationMetrics
from ..models.unet import INPUT_POLICIES, UNet, center_crop, mirror_pad, predict_tiled
from ..sizes import is_valid_unet_size, nearest_valid_unet_sizes

__all__ = ["AugmentedPairs", "random_crops", "border_band", "compare_input_policies", "tiled_vs_one_pass", "kaiming_init_"]


class AugmentedPairs(torch.utils.data.Dataset):
    """A few ``(image, mask)`` pairs, each drawn ``repeats`` times per epoch through a joint ``transform``.

    ``images [N, C, H, W]`` float and ``masks [N, H, W]`` int64; item ``i`` is pair ``i % N``
    passed through ``transform(image, mask)`` (e.g. :class:`segbook.data.SegmentationAugment`), so
    with ``repeats = r`` an epoch shows ``r`` fresh random variants of every pair. Without a
    transform the pairs are returned as they are (the same ``r`` copies: equal steps, no new views).
    A loader fetches a whole batch through :meth:`__getitems__`, which augments it in one call of
    ``transform.batch`` when the transform has one.
    """

    def __init__(self, images: torch.Tensor, masks: torch.Tensor, *, transform=None, repeats: int = 1) -> None:
        if (not isinstance(images, torch.Tensor) or not isinstance(masks, torch.Tensor) or images.dim() != 4
                or masks.dim() != 3 or images.shape[0] != masks.shape[0] or images.shape[-2:] != masks.shape[-2:]
                or images.shape[0] == 0):
            raise ValueError(f"expected images [N, C, H, W] and masks [N, H, W] of one size (N >= 1), got "
                             f"{tuple(getattr(images, 'shape', ()))} and {tuple(getattr(masks, 'shape', ()))}")
        if not images.is_floating_point() or masks.is_floating_point():
            raise ValueError(f"expected float images and integer masks, got {images.dtype} and {masks.dtype}")
        self.images, self.masks = images, masks
        self.transform = transform
        self.repeats = positive_int(repeats, "repeats")

    def __len__(self) -> int:
        return self.images.shape[0] * self.repeats

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} items")
        j = i % self.images.shape[0]
        image, mask = self.images[j], self.masks[j]
        if self.transform is not None:
            image, mask = self.transform(image, mask)
        return image, mask

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """A whole batch at once (``DataLoader`` calls this when it exists): with a transform that
        has a ``batch(images, masks)`` method (:class:`segbook.data.SegmentationAugment`), the
        batch is augmented in one go instead of one pair at a time."""
        if not hasattr(self.transform, "batch"):  # no transform, or one that takes one pair
            return [self[i] for i in indices]
        for i in indices:
            if not -len(self) <= i < len(self):
                raise IndexError(f"index {i} out of range for {len(self)} items")
        rows = torch.tensor([i % self.images.shape[0] for i in indices], dtype=torch.long)
        images, masks = self.transform.batch(self.images[rows], self.masks[rows])
        return list(zip(images, masks))


def random_crops(images: torch.Tensor, masks: torch.Tensor, size: tuple[int, int], *,
                 seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """One ``size = (h, w)`` window per pair at a random offset: ``[N, C, h, w]``, ``[N, h, w]``.

    Offsets are drawn from a generator seeded with ``seed`` (same seed, same windows).
    """
    if images.dim() != 4 or masks.dim() != 3 or images.shape[0] != masks.shape[0] or images.shape[-2:] != masks.shape[-2:]:
        raise ValueError(f"expected images [N, C, H, W] and masks [N, H, W] of one size, got "
                         f"{tuple(images.shape)} and {tuple(masks.shape)}")
    h, w = int(size[0]), int(size[1])
    H, W = images.shape[-2:]
    if not (1 <= h <= H and 1 <= w <= W):
        raise ValueError(f"crop {h}x{w} does not fit images of {H}x{W}")
    g = torch.Generator().manual_seed(int(seed))
    tops = torch.randint(0, H - h + 1, (images.shape[0],), generator=g).tolist()
    lefts = torch.randint(0, W - w + 1, (images.shape[0],), generator=g).tolist()
    crops = [(images[i, :, t:t + h, l_:l_ + w], masks[i, t:t + h, l_:l_ + w]) for i, (t, l_) in enumerate(zip(tops, lefts))]
    return torch.stack([c[0] for c in crops]), torch.stack([c[1] for c in crops])


def border_band(height: int, width: int, band: int) -> torch.Tensor:
    """Bool ``[height, width]``: True for pixels within ``band`` pixels of the image border."""
    if band < 1 or 2 * band > min(height, width):
        raise ValueError(f"band must be in [1, min(height, width) / 2], got {band} for {height}x{width}")
    inner = torch.zeros(height, width, dtype=torch.bool)
    inner[band:height - band, band:width - band] = True
    return ~inner


def _best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


@torch.inference_mode()
def compare_input_policies(model: UNet, images: torch.Tensor, masks: torch.Tensor, *, band: int = 4,
                           policies: tuple = INPUT_POLICIES, repeats: int = 3,
                           ignore_index: int = 255) -> list[dict]:
    """Run one same-padding U-Net under each input policy on ``images [N, C, H, W]`` of one (invalid) size.

    ``"strict"`` cannot take the size, so its input is centre-cropped to the nearest valid size below
    and the pixels outside the crop get no prediction (they count as errors in the accuracies). The
    net's policy is restored afterwards.

    Returns:
        one row per policy: ``policy``, ``input`` and ``output`` sizes, ``covered`` (share of pixels
        with a prediction), ``acc border`` and ``acc interior`` (pixel accuracy within / beyond
        ``band`` pixels of the border, over all pixels), ``mIoU`` (all pixels; a missing
        prediction counts as a wrong label) and ``ms`` (best of ``repeats`` forward passes).
    """
    if not isinstance(model, UNet) or model.padding != "same":
        raise ValueError("compare_input_policies needs a UNet with padding='same'")
    n, _, h, w = images.shape
    k = model.num_classes
    edge = border_band(h, w, band)
    original = model.input_policy
    was_training = model.training
    model.eval()
    rows = []
    try:
        for policy in policies:
            model.set_input_policy(policy)
            x = images
            if policy == "strict":
                hs, ws = (nearest_valid_unet_sizes(s, model.depth, "same")[0] for s in (h, w))
                if hs is None or ws is None:
                    raise ValueError(f"no valid size below {h}x{w} for a depth-{model.depth} U-Net")
                x = center_crop(images, (hs, ws))
            logits = model(x)
            pred = torch.full((n, h, w), -1, dtype=torch.long)
            top, left = (h - logits.shape[-2]) // 2, (w - logits.shape[-1]) // 2
            pred[:, top:top + logits.shape[-2], left:left + logits.shape[-1]] = logits.argmax(1)
            valid = masks != ignore_index
            correct = (pred == masks) & valid
            acc_border = float(correct[:, edge].sum()) / max(int(valid[:, edge].sum()), 1)
            acc_inner = float(correct[:, ~edge].sum()) / max(int(valid[:, ~edge].sum()), 1)
            metrics = SegmentationMetrics(k, ignore_index=ignore_index)
            # A missing prediction counts as a wrong class: the next class after the true one.
            filled = torch.where(pred >= 0, pred, (masks.clamp(max=k - 1) + 1) % k)
            metrics.update(filled, masks)
            ms = 1e3 * _best_time(lambda: model(x), repeats)
            rows.append({"policy": policy, "input": f"{x.shape[-2]}x{x.shape[-1]}",
                         "output": f"{logits.shape[-2]}x{logits.shape[-1]}",
                         "covered": float((pred >= 0).float().mean()), "acc border": acc_border,
                         "acc interior": acc_inner, "mIoU": float(metrics.compute()["miou"]), "ms": ms})
    finally:
        model.set_input_policy(original)
        model.train(was_training)
    return rows


@torch.inference_mode()
def tiled_vs_one_pass(model: UNet, images: torch.Tensor, *, tile: int, margin: int) -> float:
    """Largest ``|overlap-tile - one pass|`` over the logits of a valid-padding U-Net on ``images [N, C, H, W]``.

    Overlap-tile is :func:`segbook.models.unet.predict_tiled` with windows of ``tile`` and a step of
    ``tile - 2 * margin``. The reference is one pass of the same net over the whole image, mirrored
    by the same ``margin`` on the top and left (so tile 0 and the single pass share their pooling
    grid) and at the bottom and right up to a size the net takes, its logits cropped to ``H x W``.
    Both give ``[N, K, H, W]``. With ``D`` poolings the two agree (to rounding) when the step is a
    multiple of ``2^D``; otherwise neighbouring windows pool on grids offset from the single pass.
    """
    if not isinstance(model, UNet) or model.padding != "valid":
        raise ValueError("tiled_vs_one_pass needs a UNet with padding='valid'")
    model.eval()
    n, _, h, w = images.shape
    tiled = predict_tiled(model, images, tile=tile, margin=margin)
    cm = model.context_margin
    sides = []
    for s in (h, w):                      # input side margin + s + (>= margin), valid for the net
        need = s + 2 * margin
        sides.append(need if is_valid_unet_size(need, model.depth, "valid")
                     else nearest_valid_unet_sizes(need, model.depth, "valid")[1])
    padded = mirror_pad(images, margin, sides[0] - h - margin, margin, sides[1] - w - margin)
    crop = margin - cm                    # output pixel j is padded input pixel j + cm = image pixel j + cm - margin
    one = model(padded)[..., crop:crop + h, crop:crop + w]
    return float((tiled - one).abs().max())


def kaiming_init_(model: torch.nn.Module, *, seed: int = 0) -> torch.nn.Module:
    """Redraw every (transposed) convolution's weights He-normal for ReLU, in place; returns ``model``.

    torch's default initialisation shrinks the signal at every convolution, so in an *untrained*
    deep U-Net the lower levels barely reach the logits; with this one they do, and properties of
    the architecture (such as the pooling grid's effect on tiling) show in the outputs.
    """
    g = torch.Generator().manual_seed(int(seed))
    for m in model.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            fan_in = m.weight[0].numel() if isinstance(m, torch.nn.Conv2d) else m.weight.shape[0]
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
    return model
