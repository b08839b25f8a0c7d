"""Chapter-4 helpers: odd-sized crops, border bands, and the U-Net input policies compared.

A U-Net with ``D`` poolings and same padding takes sides that are multiples of ``2^D``. For any other
size there are three fixes (:mod:`segbook.models.unet`): refuse and crop the input to the nearest
valid size ("strict"), mirror-pad to a valid size and crop the output back ("pad"), or resize the
decoder maps to their skips ("resize"). :func:`compare_input_policies` runs one trained net under
each and measures what the issue of sizes costs: how much of the image gets a prediction, the
accuracy in a band along the border (where padding and cropping act) and inside, and the time.

The chapter's studies, one call each: :class:`SeedScenes` (each seed's scenes and loss weights, rendered
once), :func:`train_unet_vs_fcn8s` (the two nets on the same batches, per seed),
:func:`input_policies_over_seeds` + :func:`input_policy_rows` (odd-sized crops under the three policies),
:func:`tiling_study` (one pass, plain tiles and overlap-tile on mosaics of scenes) and
:func:`augmentation_ablation` (a few scenes, one U-Net per augmentation).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence, Union

import torch
from torch import nn

from ..checks import positive_int
from ..data import SegmentationAugment, chapter_datasets, make_loader, take, tile_scenes
from ..metrics import SegmentationMetrics
from ..models.fcn import fcn8s
from ..models.unet import INPUT_POLICIES, UNet, center_crop, mirror_pad, predict_tiled, unet
from ..parallel import fit_many
from ..seeds import SeededRun, fit_over_seeds, spread
from ..sizes import is_valid_unet_size, nearest_valid_unet_sizes
from ..train import class_balance_weights, evaluate

__all__ = ["AugmentedPairs", "random_crops", "border_band", "compare_input_policies", "tiled_vs_one_pass",
           "kaiming_init_",
           "SeedScenes", "train_unet_vs_fcn8s", "input_policies_over_seeds", "input_policy_rows", "TilingStudy",
           "tiling_study", "augmentation_ablation"]


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
    if (images.dim() != 4 or masks.dim() != 3 or images.shape[0] != masks.shape[0]
            or images.shape[-2:] != masks.shape[-2:]):
        raise ValueError(f"expected images [N, C, H, W] and masks [N, H, W] of one size, got "
                         f"{tuple(images.shape)} and {tuple(masks.shape)}")
    h, w = int(size[0]), int(size[1])
    H, W = images.shape[-2:]
    if not (1 <= h <= H and 1 <= w <= W):
        raise ValueError(f"crop {h}x{w} does not fit images of {H}x{W}")
    g = torch.Generator().manual_seed(int(seed))
    tops = torch.randint(0, H - h + 1, (images.shape[0],), generator=g).tolist()
    lefts = torch.randint(0, W - w + 1, (images.shape[0],), generator=g).tolist()
    crops = [(images[i, :, t:t + h, l_:l_ + w], masks[i, t:t + h, l_:l_ + w])
             for i, (t, l_) in enumerate(zip(tops, lefts))]
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


def _mean(values: Sequence[float]) -> float:
    """``sum(values) / len(values)``, the chapter's mean over seeds (this order of operations)."""
    return sum(values) / len(values)


def _seed_list(seeds: Sequence[int], n: Optional[int] = None, what: str = "models") -> list[int]:
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds is empty: pass rt.seeds (at least one seed)")
    if n is not None and n != len(seeds):
        raise ValueError(f"got {n} {what} for {len(seeds)} seeds: give one per seed, in the order of seeds")
    return seeds


class SeedScenes:
    """The scenes of every seed of the chapter's comparisons, rendered once: ``scenes(seed) -> (train, val, weights)``.

    Seed ``s`` gets ``chapter_datasets(rt, task="segmentation", size=size, n_train=n_train, n_val=n_val,
    seed=s)`` (training scenes from stream ``s``, validation scenes from ``s + 1``) and loss weights
    ``[K]`` (median-frequency, :func:`segbook.train.class_balance_weights`) counted on its first
    ``weight_scenes`` training masks. ``rt.seed``'s sets are rendered at construction: ``info`` is their
    :class:`~segbook.data.DataInfo` (classes, ``claim``), ``sample_masks [weight_scenes, size, size]``
    the masks its weights were counted on (for class shares). Later seeds are rendered on first use.
    """

    def __init__(self, rt, *, size: int, n_train: int, n_val: int, weight_scenes: int = 2048) -> None:
        self.rt = rt
        self.size = positive_int(size, "size")
        self.n_train, self.n_val = positive_int(n_train, "n_train"), positive_int(n_val, "n_val")
        self.weight_scenes = positive_int(weight_scenes, "weight_scenes")
        train, val, self.info = chapter_datasets(rt, task="segmentation", size=self.size, n_train=self.n_train,
                                                 n_val=self.n_val, seed=rt.seed)
        self.sample_masks = take(train, self.weight_scenes)[1]
        weights = class_balance_weights(self.sample_masks, self.info.num_classes)
        self._sets = {int(rt.seed): (train, val, weights)}

    @property
    def num_classes(self) -> int:
        return self.info.num_classes

    def __call__(self, seed: int) -> tuple:
        """``(train_set, val_set, weights [K])`` of ``seed`` (rendered on the first call)."""
        seed = int(seed)
        if seed not in self._sets:
            tr, va, _ = chapter_datasets(self.rt, task="segmentation", size=self.size, n_train=self.n_train,
                                         n_val=self.n_val, seed=seed)
            self._sets[seed] = (tr, va, class_balance_weights(take(tr, self.weight_scenes)[1], self.num_classes))
        return self._sets[seed]


def train_unet_vs_fcn8s(scenes: SeedScenes, seeds: Sequence[int], *, depth: int, width: int, fcn_width: int,
                        batch: int, lr: float, warmup_steps: int, device: Optional[Union[str, torch.device]] = None,
                        channels_last: bool = True, val_batch: int = 128) -> dict[str, list[SeededRun]]:
    """A same-padding U-Net (``depth``, ``width``) and FCN-8s (``fcn_width``) trained on the same batches, per seed.

    For each seed ``s``: ``scenes(s)`` gives the training scenes (one pass, ``batch`` per step, order
    from ``s``, last partial batch dropped), the validation scenes and the loss weights;
    :func:`segbook.seeds.fit_over_seeds` builds both nets after ``torch.manual_seed(s)`` and trains
    them at once (on a multi-core CPU in two one-thread processes: equal conditions for the times)
    with AdamW, ``warmup_steps`` of linear warm-up then cosine decay. Both map ``[N, 3, S, S]`` to
    logits ``[N, K, S, S]``.

    Returns:
        ``{"U-Net": [SeededRun per seed], "FCN-8s": [...]}``; each run's ``val`` holds the final
        validation metrics (``miou``, ``pixel_acc``, ``boundary_f1``, ``iou_per_class``).
    """
    seeds = _seed_list(seeds)
    depth, width, fcn_width = (positive_int(v, n) for v, n in ((depth, "depth"), (width, "width"),
                                                                (fcn_width, "fcn_width")))
    batch = positive_int(batch, "batch")
    k = scenes.num_classes
    builders = {"U-Net": lambda: unet(num_classes=k, depth=depth, width=width),
                "FCN-8s": lambda: fcn8s(num_classes=k, width=fcn_width)}
    runs: dict[str, list[SeededRun]] = {name: [] for name in builders}
    for s in seeds:
        tr, va, w = scenes(s)
        one = fit_over_seeds(
            builders, lambda s, tr=tr: make_loader(tr, batch, shuffle=True, seed=s, drop_last=True),
            [s], val_loader=make_loader(va, val_batch), task="segmentation", num_classes=k, epochs=1, lr=lr,
            warmup_steps=warmup_steps, class_weights=w, device=device, channels_last=channels_last, progress=False)
        for name in builders:
            runs[name] += one[name]
    return runs


def input_policies_over_seeds(models: Sequence[UNet], scenes: SeedScenes, seeds: Sequence[int], *,
                              size: tuple[int, int], n_crops: int = 128, band: int = 4,
                              repeats: int = 3) -> list[dict[str, dict]]:
    """:func:`compare_input_policies` per seed: seed ``s``'s trained U-Net on odd-sized crops of its validation scenes.

    ``models[i]`` belongs to ``seeds[i]`` (it is moved to the CPU, in place). The crops are one
    ``size = (h, w)`` window of each of the first ``n_crops`` validation scenes of ``scenes(s)``, at
    offsets drawn from seed ``s + 2`` (:func:`random_crops`).

    Returns:
        one ``{policy: row}`` per seed (rows as :func:`compare_input_policies` gives them).
    """
    seeds = _seed_list(seeds, len(models))
    n_crops = positive_int(n_crops, "n_crops")
    runs = []
    for s, model in zip(seeds, models):
        v_images, v_masks = take(scenes(s)[1])
        odd_images, odd_masks = random_crops(v_images[:n_crops], v_masks[:n_crops], size, seed=s + 2)
        runs.append({r["policy"]: r for r in compare_input_policies(model.cpu(), odd_images, odd_masks, band=band,
                                                                    repeats=repeats)})
    return runs


def input_policy_rows(policy_runs: Sequence[Mapping[str, dict]]) -> list[dict]:
    """One table row per policy over seeds: sizes and coverage of the first seed, accuracies as
    ``"mean [min, max]"`` (:func:`segbook.seeds.spread`), ``ms`` the mean time of one pass."""
    if not policy_runs:
        raise ValueError("policy_runs is empty: one {policy: row} per seed expected")
    first = policy_runs[0]
    acc_cols = ("acc border", "acc interior", "mIoU")
    return [{"policy": p, "input": r["input"], "output": r["output"], "covered": r["covered"],
             **{c: spread([pr[p][c] for pr in policy_runs]).format(".3f") for c in acc_cols},
             "ms": _mean([pr[p]["ms"] for pr in policy_runs])}
            for p, r in first.items()]


@dataclass
class TilingStudy:
    """What :func:`tiling_study` measured.

    ``runs``: per seed ``{method: {"output": "HxW", "mIoU", "boundary F1", "s"}}`` with the methods
    one pass, plain tiles and overlap-tile, in that order; ``n_images`` mosaics of ``side x side``
    pixels; both tilings cut every ``step`` pixels, overlap-tile with ``margin`` pixels of context.
    """

    runs: list[dict[str, dict]]
    n_images: int
    side: int
    step: int
    margin: int

    def rows(self) -> list[dict]:
        """One table row per method: output size, mIoU and boundary F1 as ``"mean [min, max]"`` over
        seeds, ``s`` the mean time of one run."""
        return [{"method": name, "output": r["output"],
                 **{c: spread([t[name][c] for t in self.runs]).format(".3f") for c in ("mIoU", "boundary F1")},
                 "s": _mean([t[name]["s"] for t in self.runs])}
                for name, r in self.runs[0].items()]

    def means(self) -> list[dict[str, float]]:
        """Per method, in order (one pass, plain tiles, overlap-tile): ``{"mIoU", "boundary F1"}``
        means over the seeds."""
        return [{c: _mean([list(t.values())[k][c] for t in self.runs]) for c in ("mIoU", "boundary F1")}
                for k in range(len(self.runs[0]))]


def tiling_study(models: Sequence[UNet], scenes: SeedScenes, seeds: Sequence[int], *, n_scenes: int, window: int,
                 margin: int) -> TilingStudy:
    """Seed ``s``'s trained same-padding U-Net on mosaics of 2x2 of its validation scenes, three ways.

    The first ``n_scenes`` validation scenes of ``scenes(s)`` become ``n_scenes // 4`` images
    ``[n, 3, 2S, 2S]`` (:func:`segbook.data.tile_scenes`), run in one pass, in plain tiles of
    ``step = window - 2 * margin`` (no overlap: each tile sees zero padding at its seams) and by
    overlap-tile (:func:`segbook.models.unet.predict_tiled`: windows of ``window``, the centre
    ``step`` kept, the image mirrored at its border); both tilings cut at the same seams. Each is
    scored (mIoU, boundary F1 of the arg-max against the mosaic's masks) and timed (one run).
    """
    seeds = _seed_list(seeds, len(models))
    n_scenes, window = positive_int(n_scenes, "n_scenes", minimum=4), positive_int(window, "window")
    margin = positive_int(margin, "margin", minimum=0)
    step = window - 2 * margin
    if step < 1:
        raise ValueError(f"window {window} leaves no pixels to keep with a margin of {margin} on each side")
    runs = []
    for s, net_s in zip(seeds, models):
        v_images, v_masks = take(scenes(s)[1])
        big_images, big_masks = tile_scenes(v_images[:n_scenes], v_masks[:n_scenes], 2, 2)  # 2x2 scenes each
        tilings = {"one pass": lambda x: net_s(x),
                   f"tiles of {step}, no overlap": lambda x: predict_tiled(net_s, x, tile=step, margin=0),
                   f"overlap-tile: {window} in, {step} kept":
                       lambda x: predict_tiled(net_s, x, tile=window, margin=margin)}
        results = {}
        with torch.inference_mode():
            for name, run_tiles in tilings.items():
                t0 = time.perf_counter()
                logits = run_tiles(big_images)
                seconds = time.perf_counter() - t0
                m = SegmentationMetrics(net_s.num_classes)
                m.update(logits.argmax(1), big_masks)
                res = m.compute()
                results[name] = {"output": "x".join(map(str, logits.shape[-2:])), "mIoU": res["miou"],
                                 "boundary F1": res["boundary_f1"], "s": seconds}
        runs.append(results)
    return TilingStudy(runs=runs, n_images=big_images.shape[0], side=big_images.shape[-1], step=step, margin=margin)


def augmentation_ablation(scenes: SeedScenes, seeds: Sequence[int], ablation: Mapping[str, Optional[dict]], *,
                          n_images: int, steps: int, batch: int, depth: int, width: int, lr: float,
                          device: Optional[Union[str, torch.device]] = None,
                          build_order: Optional[Sequence[str]] = None,
                          channels_last: bool = True, val_batch: int = 128) -> dict[str, list[dict]]:
    """One U-Net per augmentation of ``ablation``, trained on a few scenes, per seed.

    For each seed ``s``: the first ``n_images`` training scenes of ``scenes(s)`` (``[n, 3, S, S]``)
    and loss weights counted on their masks; for every ``name: kwargs`` of ``ablation`` a loader of
    :class:`AugmentedPairs` that shows each scene ``steps * batch // n_images`` times per epoch
    through ``SegmentationAugment(S, **kwargs)`` (``None``: the scenes as they are), order from
    ``s``; one same-padding U-Net each (``depth``, ``width``), built after ``torch.manual_seed(s)``
    (the same initial weights for all) in ``build_order`` (default: the order of ``ablation``;
    costliest augmentation first keeps the cores busy); one epoch of :func:`segbook.parallel.fit_many`
    (independent runs, in parallel one-thread processes on a multi-core CPU); then each net is
    evaluated on the validation scenes of ``scenes(s)``.

    Returns:
        ``{name: [{"hist": History, "seed": s, "val": metrics dict} per seed]}``, names in the order of ``ablation``.
    """
    seeds = _seed_list(seeds)
    if not isinstance(ablation, Mapping) or not ablation:
        raise ValueError("ablation must be a non-empty mapping {name: SegmentationAugment kwargs or None}")
    order = list(ablation) if build_order is None else list(build_order)
    if sorted(order) != sorted(ablation):
        raise ValueError(f"build_order {order} must name each entry of ablation {list(ablation)} once")
    n_images, steps, batch = (positive_int(v, n) for v, n in ((n_images, "n_images"), (steps, "steps"),
                                                               (batch, "batch")))
    k, size = scenes.num_classes, scenes.size
    repeats = steps * batch // n_images          # one epoch = steps steps
    few: dict[str, list[dict]] = {name: [] for name in ablation}
    for s in seeds:
        tr, va, _ = scenes(s)
        few_images, few_masks = take(tr, n_images)  # the first few training scenes
        few_weights = class_balance_weights(few_masks, k)
        loaders = {
            name: lambda kw=aug_kw: make_loader(
                AugmentedPairs(few_images, few_masks, repeats=repeats,
                               transform=kw and SegmentationAugment(size, **kw)),
                batch, shuffle=True, seed=s, drop_last=True)
            for name, aug_kw in ablation.items()}  # one loader factory per augmentation
        models: dict[str, nn.Module] = {}
        for name in order:
            torch.manual_seed(s)  # the same initial weights for all
            models[name] = unet(num_classes=k, depth=depth, width=width)
        hists = fit_many(models, loaders, task="segmentation", num_classes=k, epochs=1, lr=lr,
                         class_weights=few_weights, device=device, seed=s, channels_last=channels_last,
                         progress=False, log=False)
        for name, model in models.items():
            few[name].append({"hist": hists[name], "seed": s,
                              "val": evaluate(model, make_loader(va, val_batch), task="segmentation", num_classes=k,
                                              device=device)})
    return few
