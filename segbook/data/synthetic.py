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
    Small images (32x32 by default; chapter 1's quick profile uses 16x16) with one shape out of
    ten, at random position, scale, rotation, hue and contrast, brighter than a darker textured,
    noisy background with small distractor specks: a ten-class task that needs no download, that
    small nets learn in a few hundred steps, rendered a batch at a time (:func:`render_shape_images`)
    so chapters can train on fresh images.

Images are float32 ``[3, H, W]`` in [0, 1]; masks are int64 ``[H, W]`` class indices. Items are
rendered once when the dataset is built and stored as uint8 (a 64x64 item takes 16 KiB).
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..checks import positive_int

__all__ = [
    "SEGMENTATION_CLASSES",
    "CLASSIFICATION_CLASSES",
    "ShapesSegmentation",
    "ShapesClassification",
    "stroke_width",
    "SCENE_STYLES",
    "render_scene",
    "render_scenes",
    "render_shape_image",
    "render_shape_images",
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


def stroke_width(size: int) -> float:
    """Width in pixels of the thin strokes (ring, line) of salient ``ShapesSegmentation`` scenes of
    side ``size``: 4 at 64x64, 5 at 80x80, 8 at 128x128 (the rendering scales it with the size)."""
    return 2 * _THIN * positive_int(size, "size") / 64.0


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
    thin = np.float32(_THIN * size / 64.0)   # stroke_width(size) / 2
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
    max_objects = positive_int(max_objects, "max_objects")
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


# Classification images, rendered a batch at a time. Each item's parameters come from its own
# generator ``default_rng((stream, seed, index))``; the pixels of a whole batch are then computed
# with array operations, about 20x faster than drawing one image at a time, so a chapter can
# afford tens of thousands of fresh images.
_CLS_MAX_SPECKS = 3
_CLS_UNIFORMS = 18 + 6 * _CLS_MAX_SPECKS   # uniform draws per image (their use: render_shape_images)
_CLS_NORMALS = 9                           # normal draws per image: three colour directions


def _shape_sdf(kind: str, u: np.ndarray, v: np.ndarray, scale: np.ndarray, thin: float) -> np.ndarray:
    r"""Signed distance (pixels, negative inside) to a shape of ``kind`` in its own frame.

    ``u, v``: ``[n, H, W]`` coordinates relative to the shape's centre, already rotated;
    ``scale``: ``[n, 1, 1]`` nominal radius in pixels; ``thin``: half-width of strokes. The value
    is exact for discs and rings and a close bound elsewhere (max/min of half-plane and box
    distances), which is all an anti-aliased edge ``clip(0.5 - d, 0, 1)`` needs.
    """
    r = np.hypot(u, v)
    au, av = np.abs(u), np.abs(v)
    if kind == "disc":
        return r - scale
    if kind == "ring":
        return np.abs(r - scale) - thin
    if kind == "square":
        return np.maximum(au, av) - 0.8 * scale
    if kind == "frame":
        return np.abs(np.maximum(au, av) - 0.8 * scale) - thin
    if kind == "triangle":
        return np.max([math.cos(a) * u + math.sin(a) * v for a in (0.0, 2 * math.pi / 3, 4 * math.pi / 3)],
                      axis=0) - 0.55 * scale
    if kind == "plus":
        w = np.maximum(thin, 0.22 * scale)
        return np.minimum(np.maximum(au - scale, av - w), np.maximum(av - scale, au - w))
    if kind == "ellipse":
        b = 0.45 * scale
        return (np.hypot(u / scale, v / b) - 1.0) * b
    if kind == "bar":
        return np.maximum(au - 1.4 * scale, av - thin)
    if kind == "pair":
        d, small = 0.6 * scale, 0.45 * scale
        return np.minimum(np.hypot(u - d, v), np.hypot(u + d, v)) - small
    if kind == "crescent":
        return np.maximum(r - scale, 0.8 * scale - np.hypot(u - 0.5 * scale, v))
    raise ValueError(f"unknown shape kind {kind!r}; expected one of {CLASSIFICATION_CLASSES}")


def _plane_waves(freq: np.ndarray, theta: np.ndarray, phase: np.ndarray, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Sum of plane waves, ``[n, H, W]``; ``freq, theta, phase``: ``[n, k]`` (cycles per pixel, radians)."""
    proj = np.cos(theta)[..., None, None] * xx + np.sin(theta)[..., None, None] * yy     # [n, k, H, W]
    return np.sin(2 * math.pi * freq[..., None, None] * proj + phase[..., None, None]).sum(axis=1)


def render_shape_images(seed: int, indices, size: int = 32, *, noise: float = 0.05,
                        return_masks: bool = False):
    """Render classification images ``indices`` of stream ``seed`` as one batch.

    Every image shows one of the ten :data:`CLASSIFICATION_CLASSES` (label ``index % 10``, so
    classes are balanced in any run of consecutive indices) at a random position, rotation and
    scale (nominal radius 25-40% of the side), on a darker background of random hue textured by
    plane waves, with up to three small specks of any colour as distractors, plus pixel noise.
    The object is brighter than the mean background by a random step (0.35-0.6 in RGB norm, grey
    plus a random tint): its hue says nothing about the class, its *shape* does. Edges are
    anti-aliased (coverage ``clip(0.5 - d, 0, 1)`` from the signed distance ``d``), so shapes stay
    readable down to 16x16.

    Image ``i`` depends only on ``(seed, i, size, noise)``, not on the other indices in the batch.

    Args:
        seed: stream seed (a non-negative int).
        indices: a sequence of non-negative ints.
        size: image side in pixels (>= 8).
        noise: standard deviation of the Gaussian pixel noise.
        return_masks: also return the object's coverage ``[n, size, size]`` in [0, 1].

    Returns:
        images float32 ``[n, 3, size, size]`` in [0, 1], labels int64 ``[n]`` (and coverage).
    """
    idx = np.asarray(list(indices), dtype=np.int64).reshape(-1)
    if idx.size and idx.min() < 0:
        raise ValueError(f"indices must be non-negative, got {int(idx.min())}")
    size = positive_int(size, "size", minimum=8)
    n, k_cls = len(idx), len(CLASSIFICATION_CLASSES)
    uni = np.empty((n, _CLS_UNIFORMS))
    nrm = np.empty((n, _CLS_NORMALS), np.float32)
    pix = np.empty((n, 3, size, size), np.float32)
    for j, i in enumerate(idx.tolist()):
        rng = np.random.default_rng((_CLS_STREAM, seed, i))
        uni[j] = rng.random(_CLS_UNIFORMS)
        nrm[j] = rng.standard_normal(_CLS_NORMALS, dtype=np.float32)
        pix[j] = rng.standard_normal((3, size, size), dtype=np.float32)
    labels = idx % k_cls
    yy, xx = _grid(size)
    lerp = lambda a, lo, hi: (lo + (hi - lo) * a).astype(np.float32)  # noqa: E731

    def unit(z):
        return z / (np.linalg.norm(z, axis=1, keepdims=True) + 1e-6)

    # Background: base colour in [0.1, 0.9], three plane waves along a random colour direction,
    # then darkened to about [0.1, 0.6].
    base = lerp(uni[:, 0:3], 0.1, 0.9)
    waves = _plane_waves(lerp(uni[:, 3:6], 0.5, 6.0) / size, lerp(uni[:, 6:9], 0, math.pi),
                         lerp(uni[:, 9:12], 0, 2 * math.pi), yy, xx)
    img = 0.1 + 0.5 * (base[:, :, None, None] + 0.1 * unit(nrm[:, 0:3])[:, :, None, None] * waves[:, None])
    bg_mean = img.mean(axis=(2, 3))                                                      # [n, 3]
    # Distractor specks: discs of radius 3-6% of the side, any colour (bright ones included).
    n_specks = np.floor(uni[:, 12] * (_CLS_MAX_SPECKS + 1)).astype(int)
    for s in range(_CLS_MAX_SPECKS):
        sp = uni[:, 18 + 6 * s: 24 + 6 * s]
        cy, cx = lerp(sp[:, 0], 0, size), lerp(sp[:, 1], 0, size)
        rad = lerp(sp[:, 2], 0.03, 0.06) * size
        d = np.hypot(yy - cy[:, None, None], xx - cx[:, None, None]) - rad[:, None, None]
        cover = np.clip(0.5 - d, 0, 1) * (n_specks > s)[:, None, None]
        img = img + cover[:, None] * (lerp(sp[:, 3:6], 0.1, 0.9)[:, :, None, None] - img)
    # The object: centre, rotation and scale, then its anti-aliased coverage.
    scale = lerp(uni[:, 13], 0.25, 0.40) * size
    margin = 0.3 * scale
    cy = margin + uni[:, 14] * (size - 2 * margin)
    cx = margin + uni[:, 15] * (size - 2 * margin)
    theta = 2 * math.pi * uni[:, 16]
    dy, dx = yy - cy[:, None, None], xx - cx[:, None, None]
    c, s_ = np.cos(theta)[:, None, None], np.sin(theta)[:, None, None]
    u, v = c * dx + s_ * dy, -s_ * dx + c * dy
    thin = max(0.75, size / 40.0)
    cover = np.empty((n, size, size), np.float32)
    for k, kind in enumerate(CLASSIFICATION_CLASSES):
        sel = labels == k
        if sel.any():
            cover[sel] = np.clip(0.5 - _shape_sdf(kind, u[sel], v[sel], scale[sel, None, None], thin), 0, 1)
    # Fill: brighter than the background mean by a grey-plus-tint step, with a faint texture.
    step = unit(1 / math.sqrt(3) + 0.3 * nrm[:, 3:6]) * lerp(uni[:, 17], 0.35, 0.6)[:, None]
    fill = np.clip(bg_mean + step, 0, 1)[:, :, None, None] + 0.04 * unit(nrm[:, 6:9])[:, :, None, None] * waves[:, None] / 3
    img = img + cover[:, None] * (fill - img)
    img = np.clip(img + noise * pix, 0.0, 1.0).astype(np.float32)
    if return_masks:
        return img, labels, cover
    return img, labels


def render_shape_image(seed: int, index: int, size: int = 32, *, noise: float = 0.05) -> tuple[np.ndarray, int]:
    """Render classification image ``index`` of stream ``seed`` (see :func:`render_shape_images`).

    Returns:
        image: float32 ``[3, size, size]`` in [0, 1].
        label: int in ``range(len(CLASSIFICATION_CLASSES))``, ``index % 10``.
    """
    images, labels = render_shape_images(seed, [index], size, noise=noise)
    return images[0], int(labels[0])


# ----------------------------------------------------------------------------------------------
# Datasets
# ----------------------------------------------------------------------------------------------
def _check_count_size(n: int, size: int, min_size: int) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"n must be >= 1 (an empty dataset cannot be trained on), got {n}")
    positive_int(size, "size", minimum=min_size)


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
    _CHUNK = 1024  # images rendered per batch (bounds the float32 scratch memory)

    def __init__(self, n: int, *, size: int = 32, seed: int = 0, transform: Optional[Callable] = None) -> None:
        _check_count_size(n, size, 16)
        super().__init__(n, size, seed, transform)
        images = np.empty((n, 3, size, size), np.uint8)
        labels = np.empty((n,), np.int64)
        for start in range(0, n, self._CHUNK):
            stop = min(n, start + self._CHUNK)
            img, labels[start:stop] = render_shape_images(self.seed, range(start, stop), size)
            images[start:stop] = np.round(img * 255)
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
    batch_size = positive_int(batch_size, "batch_size")
    generator = torch.Generator().manual_seed(int(seed))
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, generator=generator,
        num_workers=num_workers, drop_last=drop_last, pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
    )

