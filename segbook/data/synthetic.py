"""Procedural datasets: the book's offline default, no download and no files.

Both datasets draw item ``i`` from ``numpy.random.default_rng((seed, i))``, so an item is a pure
function of ``(seed, i)``: the same on every machine and in every order, and two datasets with
different seeds never share a scene.

``ShapesSegmentation``
    Scenes of one to three shapes, brighter than a darker textured, noisy background, as objects
    stand out in photos (``style="salient"``, the default). Every object draws its tint, contrast
    and texture from the same distribution whatever its class, so colour tells object from
    background but not which object: the class is the *shape* (a ring and a disc differ only by
    the hole, a line and a square by their extent). Objects are large (a disc is 28-44 pixels
    across at 64x64, larger than a stride-32 cell) and the thin classes are strokes 4-5 pixels
    wide at 64x64 (widths scale with ``size``). Classes: background, disc, square, triangle, ring (thin),
    line (thin). Rendering is vectorised over a batch of scenes (8,192 scenes of 64x64 in a few
    seconds), so chapters can afford fresh scenes for every step.

    ``style="camouflage"`` is the hard variant: up to five smaller shapes whose colours come from
    the same distribution as the background's, so only shape and texture boundaries separate them
    (rendered scene by scene, about 20x slower).

``ShapesClassification``
    Small images (32x32 by default) with one shape out of ten, at random position, scale,
    rotation, hue and contrast, brighter than a darker textured, noisy background with small
    distractor specks: a CIFAR-sized task that needs no download, that small nets learn in a few
    hundred steps, and on which the chapter-1 backbones separate.

Images are float32 ``[3, H, W]`` in [0, 1]; masks are int64 ``[H, W]`` class indices. Items are
rendered once when the dataset is built and stored as uint8 (a 64x64 item takes 16 KiB).
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

__all__ = [
    "SEGMENTATION_CLASSES",
    "CLASSIFICATION_CLASSES",
    "ShapesSegmentation",
    "ShapesClassification",
    "SCENE_STYLES",
    "render_scene",
    "render_scenes",
    "render_shape_image",
    "make_loader",
]

SEGMENTATION_CLASSES = ("background", "disc", "square", "triangle", "ring", "line")
CLASSIFICATION_CLASSES = (
    "disc", "ring", "square", "frame", "triangle", "plus", "ellipse", "bar", "pair", "crescent",
)

# Separate RNG streams for the two datasets, so ShapesSegmentation(seed=0)[0] and
# ShapesClassification(seed=0)[0] are unrelated draws.
_SEG_STREAM, _CLS_STREAM, _SALIENT_STREAM = 11, 23, 12
SCENE_STYLES = ("salient", "camouflage")


# ----------------------------------------------------------------------------------------------
# Rendering primitives (vectorised over the pixel grid)
# ----------------------------------------------------------------------------------------------
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    return yy + 0.5, xx + 0.5


def _colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0.1, 0.9, size=3).astype(np.float32)


def _texture(rng: np.random.Generator, size: int, yy: np.ndarray, xx: np.ndarray, amp: float) -> np.ndarray:
    """A base colour modulated by a few random plane waves: ``[3, H, W]``."""
    base = _colour(rng)
    pattern = np.zeros((size, size), np.float32)
    for _ in range(3):
        freq = rng.uniform(0.5, 6.0) / size  # cycles per pixel
        theta = rng.uniform(0, math.pi)
        phase = rng.uniform(0, 2 * math.pi)
        pattern += np.sin(2 * math.pi * freq * (np.cos(theta) * xx + np.sin(theta) * yy) + phase)
    direction = rng.normal(size=3).astype(np.float32)
    direction /= np.linalg.norm(direction) + 1e-6
    return base[:, None, None] + amp / 3.0 * direction[:, None, None] * pattern[None]


def _rotate(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, theta: float) -> tuple[np.ndarray, np.ndarray]:
    dy, dx = yy - cy, xx - cx
    c, s = math.cos(theta), math.sin(theta)
    return c * dx + s * dy, -s * dx + c * dy  # (u, v) in the shape's frame


def _segment_distance(yy, xx, y0, x0, y1, x1) -> np.ndarray:
    py, px = yy - y0, xx - x0
    dy, dx = y1 - y0, x1 - x0
    t = np.clip((py * dy + px * dx) / (dy * dy + dx * dx + 1e-6), 0.0, 1.0)
    return np.hypot(py - t * dy, px - t * dx)


def _shape_mask(kind: str, rng: np.random.Generator, size: int, yy, xx, scale: float) -> np.ndarray:
    """Boolean ``[H, W]`` mask of one randomly placed shape of ``kind``.

    ``scale`` is the shape's nominal radius in pixels.
    """
    margin = 0.3 * scale
    cy, cx = rng.uniform(margin, size - margin, size=2)
    theta = rng.uniform(0, 2 * math.pi)
    u, v = _rotate(yy, xx, cy, cx, theta)
    r = np.hypot(u, v)
    thin = max(0.75, size / 64.0)  # half-width of thin strokes: 1 px at 64x64 (2-3 px wide)
    if kind == "disc":
        return r <= scale
    if kind == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.8 * scale
    if kind == "triangle":
        inside = np.ones_like(u, dtype=bool)
        for k in range(3):
            a = 2 * math.pi * k / 3
            inside &= (math.cos(a) * u + math.sin(a) * v) <= 0.55 * scale
        return inside
    if kind == "ring":
        return np.abs(r - scale) <= thin
    if kind == "frame":
        return np.abs(np.maximum(np.abs(u), np.abs(v)) - 0.8 * scale) <= thin
    if kind == "line":
        half = rng.uniform(1.2, 2.5) * scale
        return _segment_distance(u, v, 0.0, -half, 0.0, half) <= thin
    if kind == "bar":
        return (np.abs(u) <= 1.4 * scale) & (np.abs(v) <= thin)
    if kind == "plus":
        w = max(thin, 0.22 * scale)
        return ((np.abs(u) <= scale) & (np.abs(v) <= w)) | ((np.abs(v) <= scale) & (np.abs(u) <= w))
    if kind == "ellipse":
        return (u / scale) ** 2 + (v / (0.45 * scale)) ** 2 <= 1.0
    if kind == "pair":
        d = 0.6 * scale
        small = 0.45 * scale
        return (np.hypot(u - d, v) <= small) | (np.hypot(u + d, v) <= small)
    if kind == "crescent":
        return (r <= scale) & (np.hypot(u - 0.5 * scale, v) > 0.8 * scale)
    raise ValueError(f"unknown shape kind {kind!r}")


def _finish(img: np.ndarray, rng: np.random.Generator, noise: float) -> np.ndarray:
    img = img + rng.normal(0.0, noise, size=img.shape).astype(np.float32)
    return np.clip(img, 0.0, 1.0)


def _render_camouflage(seed: int, index: int, size: int, max_objects: int = 5,
                       noise: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """The hard variant: shapes and background draw their colours from one distribution."""
    rng = np.random.default_rng((_SEG_STREAM, seed, index))
    yy, xx = _grid(size)
    img = _texture(rng, size, yy, xx, amp=0.35)
    mask = np.zeros((size, size), np.int64)
    n_objects = int(rng.integers(2, max_objects + 1))
    for _ in range(n_objects):
        cls = int(rng.integers(1, len(SEGMENTATION_CLASSES)))
        scale = rng.uniform(0.07, 0.16) * size
        m = _shape_mask(SEGMENTATION_CLASSES[cls], rng, size, yy, xx, scale)
        fill = _texture(rng, size, yy, xx, amp=0.25)
        img = np.where(m[None], fill, img)
        mask[m] = cls
    return _finish(img, rng, noise), mask


# Salient scenes: per-scene parameters are drawn one scene at a time from the scene's own
# generator (cheap: a few dozen numbers), then every pixel operation runs on a whole batch.
_WAVES = 3            # plane waves in the background texture
_SALIENT_NOISE = 0.04  # std of the per-pixel noise (uniform, RGB in [0, 1])
_THIN = 2.0            # half-width of thin strokes at 64x64 in pixels (4-5 px wide; scaled with the size)


def _salient_params(seed: int, index: int, size: int, max_objects: int) -> tuple[np.ndarray, ...]:
    """Every random number of salient scene ``index``, in a fixed layout, and its pixel noise.

    Three calls to the scene's generator (uniforms, normals, noise bytes), then plain arithmetic:
    at this size per-call overhead, not arithmetic, is what costs time.
    """
    rng = np.random.default_rng((_SALIENT_STREAM, seed, index))
    uni = rng.random(3 + 3 * _WAVES + 2 + 9 * max_objects)
    nrm = rng.standard_normal(3 + 3 * max_objects)
    # Pixel noise: uniform with standard deviation _SALIENT_NOISE, from random bytes (the image is
    # stored as uint8 anyway; Gaussian draws would cost more than all the rest of the rendering).
    noise = np.frombuffer(rng.bytes(3 * size * size), np.uint8).reshape(3, size, size)
    bg = 0.08 + 0.30 * uni[:3]                                     # dark base colour, random hue
    w = uni[3: 3 + 3 * _WAVES].reshape(3, _WAVES)
    freq = (0.5 + 4.5 * w[0]) / size                               # cycles per pixel
    angle = math.pi * w[1]
    waves = np.stack([freq * np.cos(angle), freq * np.sin(angle), 2 * math.pi * w[2]], 1)
    u = uni[3 + 3 * _WAVES:]
    tint = nrm[:3]
    bg_dir = (0.04 + 0.08 * u[0]) * tint / (np.linalg.norm(tint) + 1e-6)   # texture amplitude and colour
    n_objects = 1 + min(int(u[1] * max_objects), max_objects - 1)
    objects = np.zeros((max_objects, 12))
    for k in range(max_objects):  # drawn for every slot, so the layout does not depend on n_objects
        o = u[2 + 9 * k: 11 + 9 * k]
        cls = 1 + min(int(o[0] * (len(SEGMENTATION_CLASSES) - 1)), len(SEGMENTATION_CLASSES) - 2)
        scale = (0.22 + 0.12 * o[1]) * size                        # nominal radius in pixels
        cy, cx = 0.6 * scale + (size - 1.2 * scale) * o[2:4]
        theta = 2 * math.pi * o[4]
        half = (1.0 + 0.6 * o[5]) * scale                          # half-length of a line
        step = np.full(3, 1 / math.sqrt(3)) + 0.3 * nrm[3 + 3 * k: 6 + 3 * k]   # grey plus a random tint
        step *= (0.3 + 0.25 * o[6]) / (np.linalg.norm(step) + 1e-6)   # random contrast
        shade = 0.06 * o[7]                                        # the object's own texture
        objects[k] = (cls if k < n_objects else 0, cy, cx, math.cos(theta), math.sin(theta), scale, half,
                      *step, shade, 0.0)
    return bg, waves, bg_dir, objects, noise


def _salient_masks(kind: int, u: np.ndarray, v: np.ndarray, scale: np.ndarray, half: np.ndarray,
                   thin: float) -> np.ndarray:
    """Boolean masks ``[B, H, W]`` of shape class ``kind`` in each scene's shape frame ``(u, v)``.

    Only products, sums and comparisons (no ``sqrt``/``hypot``), so a mask is bit-identical
    however many scenes are rendered together.
    """
    s = scale[:, None, None]
    r2 = u * u + v * v
    name = SEGMENTATION_CLASSES[kind]
    if name == "disc":
        return r2 <= s * s
    if name == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.8 * s
    if name == "triangle":  # equilateral, inradius 0.65 scale
        inside = u <= 0.65 * s
        for a in (2 * math.pi / 3, 4 * math.pi / 3):
            inside &= (math.cos(a) * u + math.sin(a) * v) <= 0.65 * s
        return inside
    if name == "ring":
        return (r2 >= (s - thin) ** 2) & (r2 <= (s + thin) ** 2)
    if name == "line":
        return (np.abs(u) <= thin) & (np.abs(v) <= half[:, None, None])
    raise ValueError(f"no salient mask for class {name!r}")


def _render_salient(seed: int, indices: np.ndarray, size: int, max_objects: int) -> tuple[np.ndarray, np.ndarray]:
    """Salient scenes ``indices`` of stream ``seed``: ``([B, 3, size, size] float32, [B, size, size] int64)``."""
    params = [_salient_params(seed, int(i), size, max_objects) for i in indices]
    if not params:
        return np.zeros((0, 3, size, size), np.float32), np.zeros((0, size, size), np.int64)
    bg = np.stack([p[0] for p in params]).astype(np.float32)             # [B, 3]
    waves = np.stack([p[1] for p in params])                             # [B, _WAVES, 3]
    bg_dir = np.stack([p[2] for p in params]).astype(np.float32)         # [B, 3]
    objects = np.stack([p[3] for p in params])                           # [B, max_objects, 12]
    b = len(params)
    coords = np.arange(size, dtype=np.float64) + 0.5
    # Texture: sum_k sin(2 pi (fx x + fy y) + phase) = sum_k sin(a_k(x)) cos(b_k(y)) + cos(a_k(x)) sin(b_k(y)),
    # so the sines are taken on [B, K, W] and [B, K, H] vectors, never on the full [B, H, W] grid.
    ax = 2 * math.pi * waves[:, :, 0, None] * coords + waves[:, :, 2, None]   # [B, K, W]
    by = 2 * math.pi * waves[:, :, 1, None] * coords                         # [B, K, H]
    sa, ca = np.sin(ax).astype(np.float32), np.cos(ax).astype(np.float32)
    sb, cb = np.sin(by).astype(np.float32), np.cos(by).astype(np.float32)
    pattern = np.zeros((b, size, size), np.float32)
    for k in range(_WAVES):
        pattern += cb[:, k, :, None] * sa[:, k, None, :] + sb[:, k, :, None] * ca[:, k, None, :]
    pattern /= np.float32(_WAVES)
    img = bg[:, :, None, None] + bg_dir[:, :, None, None] * pattern[:, None]   # [B, 3, H, W]
    shading = np.roll(pattern, 7, axis=-1)[:, None]  # objects' texture: shifted off the background's waves
    mask = np.zeros((b, size, size), np.uint8)
    yy = coords.astype(np.float32)[:, None]
    xx = coords.astype(np.float32)[None, :]
    thin = np.float32(_THIN * size / 64.0)
    for slot in range(max_objects):
        o = objects[:, slot].astype(np.float32)
        inside = np.zeros((b, size, size), bool)
        for kind in range(1, len(SEGMENTATION_CLASSES)):
            sel = np.nonzero(o[:, 0] == kind)[0]
            if sel.size == 0:
                continue
            p = o[sel]
            dy = yy[None] - p[:, 1, None, None]                           # [b, H, 1]
            dx = xx[None] - p[:, 2, None, None]                           # [b, 1, W]
            c, s_ = p[:, 3, None, None], p[:, 4, None, None]
            inside[sel] = _salient_masks(kind, c * dx + s_ * dy, c * dy - s_ * dx, p[:, 5], p[:, 6], thin)
        # Fill: the background's base colour plus the object's step, shaded by the texture.
        fill = (bg + o[:, 7:10])[:, :, None, None] + o[:, 10, None, None, None] * shading
        np.copyto(img, fill, where=inside[:, None])
        np.copyto(mask, o[:, 0].astype(np.uint8)[:, None, None], where=inside)
    levels = np.stack([p[4] for p in params]).astype(np.float32)            # [B, 3, H, W] in 0..255
    img += (levels - np.float32(127.5)) * np.float32(_SALIENT_NOISE * math.sqrt(12) / 256)
    return np.clip(img, 0.0, 1.0, out=img), mask.astype(np.int64)


def _check_style(style: str, max_objects: Optional[int]) -> int:
    if style not in SCENE_STYLES:
        raise ValueError(f"style must be one of {SCENE_STYLES}, got {style!r}")
    default = 3 if style == "salient" else 5
    if max_objects is None:
        return default
    if isinstance(max_objects, bool) or not isinstance(max_objects, (int, np.integer)) or max_objects < 1:
        raise ValueError(f"max_objects must be a positive int, got {max_objects!r}")
    return int(max_objects)


def render_scenes(seed: int, indices, size: int = 64, *, style: str = "salient",
                  max_objects: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
    """Render segmentation scenes ``indices`` of stream ``seed`` at once.

    Scene ``i`` is the same whatever else is rendered with it (``render_scene(seed, i)`` equals
    ``render_scenes(seed, [..., i, ...])`` up to float rounding of the texture, and its mask
    exactly).

    Args:
        seed: stream seed.
        indices: scene indices (a sequence or 1-D array of non-negative ints).
        size: image side in pixels.
        style: ``"salient"`` (default) or ``"camouflage"`` (see the module docstring).
        max_objects: most objects per scene (default 3 salient, 5 camouflage).

    Returns:
        images: float32 ``[B, 3, size, size]`` in [0, 1].
        masks: int64 ``[B, size, size]`` with values in ``range(len(SEGMENTATION_CLASSES))``.
    """
    max_objects = _check_style(style, max_objects)
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    if indices.size and indices.min() < 0:
        raise ValueError(f"scene indices must be >= 0, got {int(indices.min())}")
    if style == "camouflage":
        pairs = [_render_camouflage(seed, int(i), size, max_objects) for i in indices]
        images = np.stack([p[0] for p in pairs]) if pairs else np.zeros((0, 3, size, size), np.float32)
        masks = np.stack([p[1] for p in pairs]) if pairs else np.zeros((0, size, size), np.int64)
        return images, masks
    return _render_salient(seed, indices, size, max_objects)


def render_scene(seed: int, index: int, size: int = 64, *, style: str = "salient",
                 max_objects: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
    """Render segmentation scene ``index`` of stream ``seed`` (see :func:`render_scenes`).

    Returns:
        image: float32 ``[3, size, size]`` in [0, 1].
        mask: int64 ``[size, size]`` with values in ``range(len(SEGMENTATION_CLASSES))``.
    """
    images, masks = render_scenes(seed, [index], size, style=style, max_objects=max_objects)
    return images[0], masks[0]


def render_shape_image(seed: int, index: int, size: int = 32, *, noise: float = 0.06) -> tuple[np.ndarray, int]:
    """Render classification image ``index`` of stream ``seed``.

    Returns:
        image: float32 ``[3, size, size]`` in [0, 1].
        label: int in ``range(len(CLASSIFICATION_CLASSES))``; labels are balanced (``index % 10``)
        so every class has the same number of items in any prefix of 10k items.
    """
    rng = np.random.default_rng((_CLS_STREAM, seed, index))
    label = index % len(CLASSIFICATION_CLASSES)
    yy, xx = _grid(size)
    # A darkened, textured background of random hue: values in about [0.1, 0.65].
    img = 0.1 + 0.5 * _texture(rng, size, yy, xx, amp=0.3)
    # A few small distractor specks of any colour (bright ones included), so "find the bright
    # blob" is not enough and the shape of the object has to be read.
    for _ in range(int(rng.integers(0, 4))):
        speck = _shape_mask("disc", rng, size, yy, xx, rng.uniform(0.03, 0.06) * size)
        img = np.where(speck[None], _colour(rng)[:, None, None], img)
    scale = rng.uniform(0.2, 0.36) * size
    m = _shape_mask(CLASSIFICATION_CLASSES[label], rng, size, yy, xx, scale)
    # The object is brighter than the background mean by a random step (0.3 to 0.55 in RGB norm)
    # whose direction is grey plus a random tint, so its hue varies and says nothing about the
    # class. A fixed polarity matters: with objects randomly brighter *or* darker, the small nets
    # of chapter 1 learn nothing that generalises within a CPU budget of a few hundred steps
    # (measured: ResNet-8 at chance after 192 steps, against 33% with this rendering).
    bg_mean = img.reshape(3, -1).mean(axis=1)
    step = np.full(3, 1 / math.sqrt(3), np.float32) + 0.3 * rng.normal(size=3).astype(np.float32)
    step *= rng.uniform(0.3, 0.55) / (np.linalg.norm(step) + 1e-6)
    fill = np.clip(bg_mean + step, 0, 1)[:, None, None] + 0.1 * _texture(rng, size, yy, xx, amp=0.5) - 0.05
    img = np.where(m[None], fill, img)
    return _finish(img, rng, noise), label


# ----------------------------------------------------------------------------------------------
# Datasets
# ----------------------------------------------------------------------------------------------
def _check_count_size(n: int, size: int, min_size: int) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"n must be >= 1 (an empty dataset cannot be trained on), got {n}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < min_size:
        raise ValueError(f"size must be an int >= {min_size}, got {size!r}")


class _RenderedDataset(Dataset):
    classes: tuple[str, ...] = ()

    def __init__(self, n: int, size: int, seed: int, transform: Optional[Callable]) -> None:
        self.n, self.size, self.seed, self.transform = int(n), int(size), int(seed), transform

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return self.n

    def _index(self, i: int) -> int:
        if not -self.n <= i < self.n:
            raise IndexError(f"index {i} out of range for a dataset of {self.n} items")
        return i % self.n

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={self.n}, size={self.size}, seed={self.seed}, classes={self.num_classes})"


class ShapesSegmentation(_RenderedDataset):
    """Procedural semantic-segmentation scenes (see the module docstring).

    Args:
        n: number of scenes.
        size: image side in pixels (>= 32).
        seed: stream seed; item i is a pure function of (seed, i).
        transform: optional joint transform ``(image, mask) -> (image, mask)``, e.g.
            :class:`segbook.data.transforms.SegmentationAugment`.
        style: ``"salient"`` (default: bright objects on a darker background) or
            ``"camouflage"`` (the hard variant: objects coloured like the background).

    Items: ``(image float32 [3, size, size] in [0, 1], mask int64 [size, size])``.
    """

    classes = SEGMENTATION_CLASSES
    _CHUNK = 256  # scenes rendered per vectorised batch (about 40 MB of float32 temporaries at 64x64)

    def __init__(self, n: int, *, size: int = 64, seed: int = 0, transform: Optional[Callable] = None,
                 style: str = "salient") -> None:
        _check_count_size(n, size, 32)
        _check_style(style, None)
        super().__init__(n, size, seed, transform)
        self.style = style
        images = np.empty((n, 3, size, size), np.uint8)
        masks = np.empty((n, size, size), np.uint8)
        for start in range(0, n, self._CHUNK):
            stop = min(n, start + self._CHUNK)
            img, mask = render_scenes(self.seed, np.arange(start, stop), size, style=style)
            images[start:stop] = np.round(img * 255)
            masks[start:stop] = mask
        self._images = torch.from_numpy(images)
        self._masks = torch.from_numpy(masks)

    def __repr__(self) -> str:
        extra = "" if self.style == "salient" else f", style={self.style!r}"
        return f"{type(self).__name__}(n={self.n}, size={self.size}, seed={self.seed}, classes={self.num_classes}{extra})"

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        i = self._index(i)
        image = self._images[i].float().div_(255)
        mask = self._masks[i].long()
        if self.transform is not None:
            image, mask = self.transform(image, mask)
        return image, mask

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All items at once, without the transform: ``([n, 3, H, W] float32, [n, H, W] int64)``."""
        return self._images.float().div_(255), self._masks.long()


class ShapesClassification(_RenderedDataset):
    """Procedural 10-class shape images (see the module docstring).

    Args:
        n: number of images (classes are balanced: label = index % 10).
        size: image side in pixels (>= 16), 32 by default like CIFAR-10.
        seed: stream seed; item i is a pure function of (seed, i).
        transform: optional image transform ``image -> image``.

    Items: ``(image float32 [3, size, size] in [0, 1], label int64 scalar)``.
    """

    classes = CLASSIFICATION_CLASSES

    def __init__(self, n: int, *, size: int = 32, seed: int = 0, transform: Optional[Callable] = None) -> None:
        _check_count_size(n, size, 16)
        super().__init__(n, size, seed, transform)
        images = np.empty((n, 3, size, size), np.uint8)
        labels = np.empty((n,), np.int64)
        for i in range(n):
            img, labels[i] = render_shape_image(self.seed, i, size)
            images[i] = np.round(img * 255)
        self._images = torch.from_numpy(images)
        self._labels = torch.from_numpy(labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        i = self._index(i)
        image = self._images[i].float().div_(255)
        if self.transform is not None:
            image = self.transform(image)
        return image, self._labels[i]

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All items at once, without the transform: ``([n, 3, H, W] float32, [n] int64)``."""
        return self._images.float().div_(255), self._labels.clone()


def make_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
    num_workers: int = 0,
    drop_last: bool = False,
    pin_memory: bool = False,
) -> DataLoader:
    """A ``DataLoader`` whose shuffling order is fixed by ``seed`` (same seed, same batches).

    Raises:
        ValueError: for an empty dataset or a non-positive batch size.
    """
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise ValueError("dataset is empty: nothing to load (check its size/split)")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    generator = torch.Generator().manual_seed(int(seed))
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, generator=generator,
        num_workers=num_workers, drop_last=drop_last, pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
    )

