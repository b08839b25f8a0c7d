"""Joint image + mask transforms on :mod:`torchvision.transforms.v2`.

A segmentation sample is a pair ``(image, mask)``:

* ``image``: float32 ``[3, H, W]`` with values in [0, 1];
* ``mask``: int64 ``[H, W]`` of class indices, with ``ignore_index`` (255 by default) for pixels
  that carry no label.

The transforms wrap the pair as :class:`torchvision.tv_tensors.Image` and
:class:`torchvision.tv_tensors.Mask` before calling torchvision, so every geometric operation
(resize, rotation, crop, flip) draws its random parameters **once** and applies them to both, and
torchvision dispatches on the type: images are resampled bilinearly, masks always with nearest
neighbour. (For resizing we ask for ``"nearest-exact"``, which takes the pixel under each output
pixel's centre and so stays aligned with the bilinear image; torchvision's default for masks,
``"nearest"``, is off by up to half an input pixel.) A mask therefore never gains a value that
was not already in it, except ``ignore_index`` in the areas that a geometric operation brings in
from outside the image (padding, the corners uncovered by a rotation); the image gets 0 (black)
there. Colour jitter touches the image only.

Randomness comes from torch's global generator, so ``torch.manual_seed(s)`` (or
:func:`segbook.runtime.seed_everything`) makes a run of transforms repeatable. Outputs are plain
:class:`torch.Tensor` again (not tv_tensors), so the default ``DataLoader`` collation and every
other part of segbook see ordinary tensors.

Example::

    from segbook.data import ShapesSegmentation
    from segbook.data.transforms import SegmentationAugment, SegmentationEval

    train = ShapesSegmentation(n=512, size=64, seed=0,
                               transform=SegmentationAugment(64, scale=(0.75, 1.25), rotate=10))
    image, mask = train[0]        # [3, 64, 64] float32, [64, 64] int64 (255 where padded)
"""
from __future__ import annotations

import numbers
from typing import Optional, Sequence, Union

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from ..checks import positive_int
from ..constants import IGNORE_INDEX

__all__ = [
    "SegmentationAugment",
    "SegmentationEval",
    "ClassificationAugment",
    "check_segmentation_pair",
    "check_segmentation_batch",
    "adjust_colors",
    "rgb_to_hsv",
    "hsv_to_rgb",
    "elastic_displacement",
    "elastic_deform",
]

ColorJitterArg = Union[None, float, Sequence[float]]


# ----------------------------------------------------------------------------------------------
# Validation helpers
# ----------------------------------------------------------------------------------------------
def _describe(x: object) -> str:
    if isinstance(x, torch.Tensor):
        return f"a {x.dtype} tensor of shape {list(x.shape)}"
    return f"an object of type {type(x).__name__}"


def check_segmentation_pair(image: torch.Tensor, mask: torch.Tensor) -> None:
    """Raise a clear error unless ``(image, mask)`` is a valid segmentation sample.

    Args:
        image: float32 tensor ``[3, H, W]`` (values in [0, 1]).
        mask: int64 tensor ``[H, W]`` of class indices.

    Raises:
        TypeError: an argument is not a tensor or has the wrong dtype.
        ValueError: an argument has the wrong shape, or the two sizes differ.
    """
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"image: expected a float32 tensor [3, H, W], got {_describe(image)}")
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask: expected an int64 tensor [H, W], got {_describe(mask)}")
    if image.dtype != torch.float32:
        hint = " (convert with image.float() / 255)" if image.dtype == torch.uint8 else ""
        raise TypeError(f"image: expected dtype torch.float32 with values in [0, 1], got {image.dtype}{hint}")
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"image: expected shape [3, H, W], got {list(image.shape)}")
    if mask.dtype != torch.int64:
        raise TypeError(f"mask: expected dtype torch.int64 (class indices), got {mask.dtype} (use mask.long())")
    if mask.ndim != 2:
        hint = " (drop the channel dimension with mask.squeeze(0))" if mask.ndim == 3 and mask.shape[0] == 1 else ""
        raise ValueError(f"mask: expected shape [H, W], got {list(mask.shape)}{hint}")
    if tuple(image.shape[-2:]) != tuple(mask.shape):
        raise ValueError(
            f"image and mask sizes differ: image [3, H, W] = {list(image.shape)}, mask [H, W] = {list(mask.shape)}"
        )


def _check_size(size: object, name: str = "size") -> int:
    return positive_int(size, name)


def _check_hw(size: object) -> tuple[int, int]:
    """``size`` as ``(height, width)`` from an int or a pair of ints."""
    if isinstance(size, Sequence) and not isinstance(size, str):
        if len(size) != 2:
            raise ValueError(f"size: expected an int or a pair (height, width), got {size!r}")
        return _check_size(size[0], "size[0]"), _check_size(size[1], "size[1]")
    s = _check_size(size)
    return s, s


def _check_ignore_index(ignore_index: object) -> int:
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
        raise TypeError(f"ignore_index must be an int (any int, e.g. 255 or -100), got {ignore_index!r}")
    return int(ignore_index)


def _color_jitter_args(color_jitter: ColorJitterArg) -> Optional[tuple[float, float, float, float]]:
    """Normalise ``color_jitter`` to ``(brightness, contrast, saturation, hue)`` or ``None``."""
    if color_jitter is None:
        return None
    if isinstance(color_jitter, numbers.Real) and not isinstance(color_jitter, bool):
        values = (float(color_jitter),) * 3 + (0.0,)
    elif isinstance(color_jitter, Sequence) and len(color_jitter) in (3, 4):
        values = tuple(float(v) for v in color_jitter) + ((0.0,) if len(color_jitter) == 3 else ())
    else:
        raise ValueError(
            "color_jitter: expected None, a float (brightness = contrast = saturation), or a tuple "
            f"(brightness, contrast, saturation[, hue]), got {color_jitter!r}"
        )
    b, c, s, h = values
    if min(b, c, s) < 0 or not 0 <= h <= 0.5:
        raise ValueError(
            f"color_jitter: brightness, contrast, saturation must be >= 0 and hue in [0, 0.5], got {values}"
        )
    return None if not any(values) else (b, c, s, h)


def _unwrap(x: torch.Tensor) -> torch.Tensor:
    return x.as_subclass(torch.Tensor)


def _resize_pair(image: torch.Tensor, mask: torch.Tensor, size: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize image (bilinear, antialiased) and mask (nearest-exact) to ``size`` (as ``v2.Resize``).

    A single ``v2.Resize`` takes one interpolation mode and coerces masks to legacy ``"nearest"``,
    which samples source pixel ``floor(i * in / out)`` and so shifts the mask by up to half an
    input pixel against the bilinear image. ``"nearest-exact"`` samples the source pixel under
    the output pixel's centre, the same geometry as the image's bilinear resampling.
    """
    image = TF.resize(tv_tensors.Image(image), size, interpolation=v2.InterpolationMode.BILINEAR, antialias=True)
    mask = TF.resize(tv_tensors.Mask(mask), size, interpolation=v2.InterpolationMode.NEAREST_EXACT)
    return image, mask


# ----------------------------------------------------------------------------------------------
# Elastic deformation (U-Net)
# ----------------------------------------------------------------------------------------------
def elastic_displacement(size: Sequence[int], *, grid: int = 3, std: float = 10.0,
                         generator: Optional[torch.Generator] = None,
                         n: Optional[int] = None) -> torch.Tensor:
    """A smooth random displacement field ``[H, W, 2]`` (``(dx, dy)`` in pixels), as in U-Net.

    Ronneberger et al. draw displacement vectors on a coarse 3x3 grid from a Gaussian with a
    standard deviation of 10 pixels and interpolate them bicubically to every pixel. We do the
    same with ``grid x grid`` control points spread over the image (corners included).
    (torchvision's ``ElasticTransform`` instead blurs per-pixel noise with a large Gaussian kernel,
    which is about 30 times slower on a 64x64 image.)

    With ``n`` given, ``n`` independent fields ``[n, H, W, 2]`` in one draw (a batch); ``n = 1``
    draws the same numbers as ``n = None``.
    """
    h, w = _check_hw(tuple(size))
    grid = positive_int(grid, "grid (control points per side)", minimum=2)
    count = 1 if n is None else positive_int(n, "n (fields to draw)")
    if not isinstance(std, numbers.Real) or std < 0:
        raise ValueError(f"std: expected a displacement standard deviation >= 0 in pixels, got {std!r}")
    coarse = torch.randn(count, 2, grid, grid, generator=generator) * float(std)
    field = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)
    field = field.permute(0, 2, 3, 1).contiguous()
    return field[0] if n is None else field


def elastic_deform(image: torch.Tensor, mask: torch.Tensor, displacement: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Warp ``image [3, H, W]`` (bilinear) and ``mask [H, W]`` (nearest) by one field ``[H, W, 2]``.

    Output pixel ``p`` takes the value at ``p + displacement[p]``; points that land outside the
    image are mirrored back inside (``padding_mode="reflection"``), so no label is invented and the
    mask keeps only values it had. Returns ``(image [3, H, W], mask [H, W])`` with the input dtypes.

    A batch works the same way: ``image [B, 3, H, W]``, ``mask [B, H, W]`` and one field per
    pair, ``displacement [B, H, W, 2]``.
    """
    batched = image.dim() == 4
    if batched:
        check_segmentation_batch(image, mask)
    else:
        check_segmentation_pair(image, mask)
    h, w = mask.shape[-2:]
    expected = (image.shape[0], h, w, 2) if batched else (h, w, 2)
    if tuple(displacement.shape) != expected:
        raise ValueError(f"displacement: expected shape {list(expected)} for {'a batch of ' if batched else 'a '}"
                         f"{h}x{w} image{'s' if batched else ''}, got {list(displacement.shape)}")
    ys = torch.arange(h, dtype=torch.float32) + 0.5
    xs = torch.arange(w, dtype=torch.float32) + 0.5
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    field = displacement if batched else displacement[None]
    # grid_sample's normalised coordinates with align_corners=False: -1 and 1 are the outer pixel edges.
    sample = torch.stack(((gx + field[..., 0]) / w * 2 - 1, (gy + field[..., 1]) / h * 2 - 1), -1)
    images = image if batched else image[None]
    masks = mask if batched else mask[None]
    warped = torch.nn.functional.grid_sample(images, sample, mode="bilinear", padding_mode="reflection",
                                             align_corners=False)
    # Nearest for the labels; ignored pixels stay ignored (their value is copied like any other label).
    warped_mask = torch.nn.functional.grid_sample(masks[:, None].float(), sample, mode="nearest",
                                                  padding_mode="reflection", align_corners=False)[:, 0]
    warped_mask = warped_mask.round().long()
    return (warped, warped_mask) if batched else (warped[0], warped_mask[0])


# ----------------------------------------------------------------------------------------------
# Colour jitter on a batch (one factor per image)
# ----------------------------------------------------------------------------------------------
# The luma weights of ITU-R BT.601, as torchvision's rgb_to_grayscale uses.
_LUMA = (0.2989, 0.587, 0.114)


def _grayscale(images: torch.Tensor) -> torch.Tensor:
    r, g, b = images.unbind(-3)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(-3)


def rgb_to_hsv(images: torch.Tensor) -> torch.Tensor:
    """RGB ``[..., 3, H, W]`` in [0, 1] to HSV ``[..., 3, H, W]``, every channel in [0, 1].

    ``v = max(r, g, b)``, ``s = (max - min) / max`` (0 for black) and the hue ``h`` is the
    position on the colour hexagon, ``/ 6`` so that it lies in [0, 1): red 0, green 1/3,
    blue 2/3; grey pixels (``max = min``) get ``h = 0``.
    """
    r, g, b = images.unbind(-3)
    maxc, _ = images.max(dim=-3)
    minc, _ = images.min(dim=-3)
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    # Which channel is the largest decides the hexagon's sector (ties give the same hue).
    hue = torch.where(maxc == r, ((g - b) / safe) % 6,
                      torch.where(maxc == g, (b - r) / safe + 2, (r - g) / safe + 4))
    hue = torch.where(delta > 0, hue / 6, torch.zeros_like(hue))
    sat = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc))
    return torch.stack((hue, sat, maxc), dim=-3)


def hsv_to_rgb(images: torch.Tensor) -> torch.Tensor:
    """HSV ``[..., 3, H, W]`` (each in [0, 1], hue taken modulo 1) back to RGB ``[..., 3, H, W]``.

    Channel ``n`` in ``(5, 3, 1)`` for ``(r, g, b)`` is ``v - v s clamp(min(k, 4 - k), 0, 1)``
    with ``k = (n + 6 h) mod 6``: the piecewise-linear hexagon written without sector branches.
    """
    h, s, v = images.unbind(-3)
    out = []
    for n in (5.0, 3.0, 1.0):
        k = (n + 6 * h) % 6
        out.append(v - v * s * torch.clamp(torch.minimum(k, 4 - k), 0, 1))
    return torch.stack(out, dim=-3)


def adjust_colors(images: torch.Tensor, *, brightness: Optional[torch.Tensor] = None,
                  contrast: Optional[torch.Tensor] = None, saturation: Optional[torch.Tensor] = None,
                  hue: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Brightness, contrast, saturation and hue changes with one factor per image of a batch.

    ``images [B, 3, H, W]`` in [0, 1]; each factor ``[B]`` (or ``None`` to skip that step). The
    steps follow torchvision's definitions, in this fixed order, each clamped to [0, 1]:

    * brightness ``f``: ``f x``;
    * contrast ``f``: ``f x + (1 - f) mean(gray(x))`` (the image's mean luma);
    * saturation ``f``: ``f x + (1 - f) gray(x)`` (per pixel);
    * hue ``d`` in [-0.5, 0.5]: ``h -> (h + d) mod 1`` in HSV.

    (torchvision's ``ColorJitter`` applies the four in a random order per image; a fixed order is
    what lets a whole batch go through each step at once.) Returns ``[B, 3, H, W]``.
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images: expected a float tensor [B, 3, H, W], got {_describe(images)}")
    if not images.is_floating_point():
        raise TypeError(f"images: expected a float tensor with values in [0, 1], got {images.dtype}")
    n = images.shape[0]
    factors = {}
    for name, f in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation), ("hue", hue)):
        if f is None:
            continue
        if not isinstance(f, torch.Tensor) or tuple(f.shape) != (n,):
            raise ValueError(f"{name}: expected one factor per image, a tensor [{n}], got {_describe(f)}")
        factors[name] = f.to(images.dtype).view(n, 1, 1, 1)
    x = images
    if "brightness" in factors:
        x = (factors["brightness"] * x).clamp(0, 1)
    if "contrast" in factors:
        mean = _grayscale(x).mean(dim=(-3, -2, -1), keepdim=True)
        x = (factors["contrast"] * x + (1 - factors["contrast"]) * mean).clamp(0, 1)
    if "saturation" in factors:
        x = (factors["saturation"] * x + (1 - factors["saturation"]) * _grayscale(x)).clamp(0, 1)
    if "hue" in factors:
        hsv = rgb_to_hsv(x)
        hsv = torch.cat(((hsv[:, :1] + factors["hue"]) % 1.0, hsv[:, 1:]), dim=1)
        x = hsv_to_rgb(hsv)
    return x


# ----------------------------------------------------------------------------------------------
# Segmentation
# ----------------------------------------------------------------------------------------------
def check_segmentation_batch(images: torch.Tensor, masks: torch.Tensor) -> None:
    """Raise a clear error unless ``images`` float32 ``[B, 3, H, W]`` and ``masks`` int64 ``[B, H, W]`` match."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images: expected a float32 tensor [B, 3, H, W], got {_describe(images)}")
    if not isinstance(masks, torch.Tensor) or masks.dim() != 3:
        raise ValueError(f"masks: expected an int64 tensor [B, H, W], got {_describe(masks)}")
    if images.dtype != torch.float32 or masks.dtype != torch.int64:
        raise TypeError(f"expected float32 images and int64 masks, got {images.dtype} and {masks.dtype}")
    if images.shape[0] != masks.shape[0] or tuple(images.shape[-2:]) != tuple(masks.shape[-2:]):
        raise ValueError(f"images {list(images.shape)} and masks {list(masks.shape)}: expected the same "
                         "number of pairs and the same size")


class SegmentationAugment:
    """Random training augmentation for a segmentation pair, with one geometry for both.

    The steps, in order (each one skipped when switched off):

    1. **scale**: resize so the shorter side is ``s * size`` pixels, ``s ~ U(scale)``
       (aspect ratio kept; image bilinear with antialiasing, mask nearest-exact);
    2. **rotate**: rotate by an angle ``~ U(-rotate, rotate)`` degrees about the centre;
    3. **crop**: take a random ``size x size`` window; where the image is smaller than the window
       it is padded first (image 0, mask ``ignore_index``);
    4. **hflip**: mirror left-right with probability 0.5; **vflip**: top-bottom with probability 0.5;
    5. **elastic**: U-Net's elastic deformation (:func:`elastic_deform`): random displacements on
       a coarse ``g x g`` grid, interpolated bicubically to every pixel, the same field for image
       (bilinear) and mask (nearest, so labels stay labels), borders mirrored;
    6. **colour jitter**: brightness / contrast / saturation / hue on the image only
       (:func:`adjust_colors`: factors drawn as torchvision's ``ColorJitter`` draws them, applied
       in that fixed order).

    Steps 1-3 run on one pair at a time (each pair gets its own size) and are skipped when they
    cannot change anything (no scale range, no rotation, the input already ``size x size``);
    steps 4-6 run on a whole batch at once. :meth:`batch` augments a batch, which is how
    :class:`segbook.experiments.unet.AugmentedPairs` feeds a loader; calling the object on one
    pair is the same computation with a batch of one.

    Args:
        size: side of the square output.
        hflip: random horizontal flips.
        vflip: random vertical flips (off by default: most photos have an up).
        scale: ``(low, high)`` range of the scale factor ``s`` relative to ``size``; ``None`` or
            ``(1, 1)`` resizes the shorter side to exactly ``size``.
        rotate: maximum rotation in degrees (0 switches rotation off).
        color_jitter: ``None`` (off), a float ``j`` (brightness, contrast and saturation factors
            drawn from ``[1 - j, 1 + j]``), or a tuple ``(brightness, contrast, saturation[, hue])``
            as for :class:`torchvision.transforms.v2.ColorJitter` (hue shifts from ``[-hue, hue]``).
        elastic: ``None`` (off) or ``(grid, std)``: control points per side and the standard
            deviation of their displacement in pixels (the paper: ``(3, 10.0)`` on 572-pixel tiles;
            e.g. ``(4, 2.5)`` on a 64x64 image).
        ignore_index: mask value for pixels brought in by padding, rotation or deformation.

    Call:
        ``(image, mask) -> (image, mask)`` with image float32 ``[3, H, W]`` in [0, 1] and mask
        int64 ``[H, W]``; returns float32 ``[3, size, size]`` in [0, 1] and int64
        ``[size, size]``.
    """

    def __init__(
        self,
        size: int,
        *,
        hflip: bool = True,
        scale: Optional[tuple[float, float]] = (0.75, 1.25),
        rotate: float = 0.0,
        color_jitter: ColorJitterArg = 0.2,
        vflip: bool = False,
        elastic: Optional[tuple[float, float]] = None,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        self.size = _check_size(size)
        self.hflip = bool(hflip)
        self.vflip = bool(vflip)
        if elastic is not None:
            if (not isinstance(elastic, Sequence) or len(elastic) != 2
                    or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in elastic)
                    or int(elastic[0]) != elastic[0] or elastic[0] < 2 or elastic[1] < 0):
                raise ValueError(f"elastic: expected None or (grid >= 2 control points, std >= 0 pixels), got {elastic!r}")
            elastic = (int(elastic[0]), float(elastic[1]))
        self.elastic = elastic
        if scale is None:
            scale = (1.0, 1.0)
        if (
            not isinstance(scale, Sequence)
            or len(scale) != 2
            or not all(isinstance(v, numbers.Real) for v in scale)
            or not 0 < scale[0] <= scale[1]
        ):
            raise ValueError(f"scale: expected (low, high) with 0 < low <= high, got {scale!r}")
        self.scale = (float(scale[0]), float(scale[1]))
        if not isinstance(rotate, numbers.Real) or not 0 <= rotate <= 180:
            raise ValueError(f"rotate: expected a maximum angle in degrees in [0, 180], got {rotate!r}")
        self.rotate = float(rotate)
        self.color_jitter = _color_jitter_args(color_jitter)
        self.ignore_index = _check_ignore_index(ignore_index)

        fill = {tv_tensors.Image: 0.0, tv_tensors.Mask: self.ignore_index}
        # Shorter side after scaling: an integer drawn uniformly from [low * size, high * size].
        self._short_side = (max(1, round(self.scale[0] * self.size)), max(1, round(self.scale[1] * self.size)))
        steps: list[torch.nn.Module] = []
        if self.rotate > 0:
            steps.append(
                v2.RandomRotation(self.rotate, interpolation=v2.InterpolationMode.BILINEAR, fill=fill)
            )
        steps.append(v2.RandomCrop(self.size, pad_if_needed=True, fill=fill))
        self.transform = v2.Compose(steps)

    def _geometry_is_identity(self, height: int, width: int) -> bool:
        return self._short_side == (self.size, self.size) and self.rotate == 0 and height == width == self.size

    def _geometry(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Steps 1-3 on one pair: ``[3, H, W], [H, W] -> [3, size, size], [size, size]``."""
        lo, hi = self._short_side
        short = int(torch.randint(lo, hi + 1, ())) if hi > lo else lo
        pair = _resize_pair(tv_tensors.Image(image), tv_tensors.Mask(mask), [short])
        out_image, out_mask = self.transform(*pair)
        return _unwrap(out_image), _unwrap(out_mask)

    def _draw(self, n: int, low: float, high: float) -> torch.Tensor:
        return torch.empty(n).uniform_(low, high)

    def _batch_steps(self, images: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Steps 4-6 on ``[B, 3, S, S], [B, S, S]``, one random draw per pair."""
        n = images.shape[0]
        for on, dims in ((self.hflip, (-1,)), (self.vflip, (-2,))):
            if on:
                flip = torch.rand(n) < 0.5
                images = torch.where(flip.view(n, 1, 1, 1), images.flip(dims), images)
                masks = torch.where(flip.view(n, 1, 1), masks.flip(dims), masks)
        if self.elastic is not None and self.elastic[1] > 0:
            field = elastic_displacement(images.shape[-2:], grid=self.elastic[0], std=self.elastic[1], n=n)
            images, masks = elastic_deform(images, masks, field)
        if self.color_jitter is not None:
            b, c, s, h = self.color_jitter
            images = adjust_colors(
                images,
                brightness=self._draw(n, max(0.0, 1 - b), 1 + b) if b > 0 else None,
                contrast=self._draw(n, max(0.0, 1 - c), 1 + c) if c > 0 else None,
                saturation=self._draw(n, max(0.0, 1 - s), 1 + s) if s > 0 else None,
                hue=self._draw(n, -h, h) if h > 0 else None)
        return images.clamp(0.0, 1.0), masks

    def batch(self, images: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment a batch: ``images [B, 3, H, W]`` float32, ``masks [B, H, W]`` int64 -> ``[B, 3, size, size]``,
        ``[B, size, size]``, every pair with its own random draws."""
        check_segmentation_batch(images, masks)
        if not self._geometry_is_identity(*images.shape[-2:]):
            pairs = [self._geometry(i, m) for i, m in zip(images, masks)]
            images = torch.stack([p[0] for p in pairs])
            masks = torch.stack([p[1] for p in pairs])
        return self._batch_steps(images, masks)

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_segmentation_pair(image, mask)
        if not self._geometry_is_identity(*image.shape[-2:]):
            image, mask = self._geometry(image, mask)
        images, masks = self._batch_steps(image[None], mask[None])
        return images[0], masks[0]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(size={self.size}, hflip={self.hflip}, vflip={self.vflip}, scale={self.scale}, "
            f"rotate={self.rotate}, elastic={self.elastic}, color_jitter={self.color_jitter}, "
            f"ignore_index={self.ignore_index})"
        )


class SegmentationEval:
    """Deterministic evaluation transform: resize a segmentation pair to a fixed size.

    The whole image is kept (no crop), so the aspect ratio changes when the input is not of the
    output's shape. Image bilinear with antialiasing, mask nearest neighbour (nearest-exact).

    Args:
        size: ``S`` for a square ``S x S`` output, or ``(height, width)``.

    Call:
        ``(image, mask) -> (image, mask)`` with image float32 ``[3, H, W]`` in [0, 1] and mask
        int64 ``[H, W]``; returns float32 ``[3, S, S]`` and int64 ``[S, S]`` (or the given
        ``(height, width)``).
    """

    def __init__(self, size: Union[int, tuple[int, int]]) -> None:
        self.size = _check_hw(size)

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_segmentation_pair(image, mask)
        out_image, out_mask = _resize_pair(image, mask, list(self.size))
        return _unwrap(out_image).clamp(0.0, 1.0), _unwrap(out_mask)

    def __repr__(self) -> str:
        h, w = self.size
        return f"{type(self).__name__}(size={h if h == w else self.size})"


# ----------------------------------------------------------------------------------------------
# Classification
# ----------------------------------------------------------------------------------------------
class ClassificationAugment:
    """CIFAR-style training augmentation: random crop of a zero-padded image, then a random flip.

    Pads ``padding`` pixels of zeros on each side, takes a random ``size x size`` window (an image
    smaller than the window is padded further as needed) and mirrors it left-right with
    probability 0.5, as in the ResNet paper's CIFAR-10 recipe.

    Args:
        size: side of the square output (32 for CIFAR-10).
        padding: zero padding on each side before cropping.
        hflip: random horizontal flips.

    Call:
        ``image -> image``, a tensor ``[C, H, W]`` (float32 ``[3, 32, 32]`` for CIFAR-10); returns
        ``[C, size, size]`` of the same dtype.
    """

    def __init__(self, size: int = 32, padding: int = 4, *, hflip: bool = True) -> None:
        self.size = _check_size(size)
        self.padding = positive_int(padding, "padding", minimum=0)
        self.hflip = bool(hflip)
        steps: list[torch.nn.Module] = [
            v2.RandomCrop(self.size, padding=self.padding or None, pad_if_needed=True, fill=0)
        ]
        if self.hflip:
            steps.append(v2.RandomHorizontalFlip(p=0.5))
        self.transform = v2.Compose(steps)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if not isinstance(image, torch.Tensor):
            raise TypeError(f"image: expected a tensor [C, H, W], got {_describe(image)}")
        if image.ndim != 3:
            raise ValueError(f"image: expected shape [C, H, W], got {list(image.shape)}")
        return _unwrap(self.transform(tv_tensors.Image(image)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, padding={self.padding}, hflip={self.hflip})"
