"""U-Net (Ronneberger, Fischer and Brox, 2015) with the size handling made explicit.

The idea
--------
An encoder (the *contracting path*) of ``D`` levels, each two 3x3 convolutions and a 2x2 max
pooling, halves the side and doubles the channels at every level: ``C, 2C, 4C, ..., 2^D C`` channels
at sides ``n, n/2, ..., n/2^D``. A decoder (the *expanding path*) climbs back: a 2x2 stride-2
transposed convolution doubles the side and halves the channels, the result is **concatenated**
with the encoder map of the same level (the skip), and two 3x3 convolutions mix them. A 1x1
convolution gives the class scores at full resolution.

Concatenation, not FCN's sum: FCN reduces each skip to ``K`` class scores and adds score maps, so an
early layer can only vote for classes; U-Net passes the skip's *features* on and lets the decoder's
convolutions learn how to combine fine detail (where an edge is) with coarse context (what it
belongs to), at the price of wider decoder convolutions.

Sizes
-----
Concatenation needs the decoder map and its skip to have the same side. With floor pooling a 7-pixel
map pools to 3, which up-convolves to 6, and ``torch.cat`` of 6 with 7 fails: with ``D`` poolings
and "same" padding the input side must be a multiple of ``2^D``. The paper's unpadded ("valid")
convolutions lose 2 pixels per convolution, so the skip is larger than the decoder map and is
centre-cropped; there every map before a pooling must be even (572 -> 388 for ``D = 4``; see
:mod:`segbook.sizes`). This module offers three policies for an input that does not fit:

* ``"strict"``: raise a ``ValueError`` that names the nearest valid sizes below and above;
* ``"pad"``: mirror (reflect) the borders up to a valid size, run, and crop the output back to the
  input's size. With valid padding the input is mirrored by the net's whole context margin, so the
  output covers the entire input: the paper's overlap-tile strategy on one tile;
* ``"resize"``: pool with floor and resize each up-sampled decoder map (bilinear, ``size=``) to its
  skip's size before concatenating ("same" padding only).

Every policy returns logits at the input's size, except ``"strict"`` with valid padding, which
returns the documented smaller size (:meth:`UNet.output_size`).

Where this departs from the paper
---------------------------------
Batch norm after every convolution (the paper has none; it makes small nets train quickly from
scratch); a configurable depth and base width (the paper: depth 4, 64 channels); optional "same"
padding and any upsampler of :func:`segbook.nn.upsample.make_upsampler`, e.g. bilinear + 3x3
convolution (the paper: valid padding, 2x2 up-convolution, ``"transposed2"``); no weighted loss for
touching borders.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checks import positive_int
from ..nn.conv import ConvBNAct
from ..nn.upsample import UPSAMPLER_KINDS, ResizeConv2d, make_upsampler
from ..sizes import UNET_PADDINGS, is_valid_unet_size, nearest_valid_unet_sizes, unet_trace
from .segmentation import SegmentationModel, check_spatial_sizes

__all__ = [
    "INPUT_POLICIES",
    "center_crop",
    "mirror_pad",
    "DoubleConv",
    "UpBlock",
    "UNet",
    "unet",
    "unet_paper",
    "predict_tiled",
]

INPUT_POLICIES = ("strict", "pad", "resize")


def center_crop(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The centre ``size = (h, w)`` window of ``x [..., H, W]`` (``H >= h``, ``W >= w``): ``[..., h, w]``.

    When ``H - h`` is odd the window sits half a pixel towards the top/left.
    """
    h, w = int(size[0]), int(size[1])
    H, W = x.shape[-2:]
    if h > H or w > W:
        raise ValueError(f"cannot centre-crop a {H}x{W} map to {h}x{w}: the crop is larger than the map")
    top, left = (H - h) // 2, (W - w) // 2
    return x[..., top:top + h, left:left + w]


def mirror_pad(x: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """Reflect-pad ``x [N, C, H, W]`` to ``[N, C, H + top + bottom, W + left + right]``.

    ``F.pad(mode="reflect")`` needs each pad to be smaller than the side; larger margins are
    reached by mirroring again (the mirrored image is mirrored), as the paper's overlap-tile
    strategy does at the image border.
    """
    for name, v in (("top", top), ("bottom", bottom), ("left", left), ("right", right)):
        positive_int(v, name, minimum=0)
    if x.dim() != 4:
        raise ValueError(f"mirror_pad expects [N, C, H, W], got shape {tuple(x.shape)}")
    if (top or bottom) and x.shape[-2] < 2 or (left or right) and x.shape[-1] < 2:
        raise ValueError(f"cannot mirror a side of one pixel (shape {tuple(x.shape)})")
    while top or bottom or left or right:
        h, w = x.shape[-2:]
        t, b, l_, r = min(top, h - 1), min(bottom, h - 1), min(left, w - 1), min(right, w - 1)
        x = F.pad(x, (l_, r, t, b), mode="reflect")
        top, bottom, left, right = top - t, bottom - b, left - l_, right - r
    return x


class DoubleConv(nn.Sequential):
    """Two ``3x3 conv -> BN -> ReLU``: ``[N, in, H, W] -> [N, out, H, W]`` ("same") or ``[N, out, H-4, W-4]`` ("valid")."""

    def __init__(self, in_channels: int, out_channels: int, *, padding: str = "same") -> None:
        p = 1 if padding == "same" else 0
        super().__init__(ConvBNAct(in_channels, out_channels, 3, padding=p),
                         ConvBNAct(out_channels, out_channels, 3, padding=p))
        self.in_channels, self.out_channels = in_channels, out_channels


class UpBlock(nn.Module):
    """One decoder level: upsample 2x, match the skip, concatenate ``[skip, up]``, two 3x3 convolutions.

    Shapes: ``x [N, in, h, w]`` and ``skip [N, skip, H, W]`` -> ``[N, out, H', W']`` where the
    up-sampled map is ``[N, in / 2, 2h, 2w]``; then

    * ``match="equal"``: ``(2h, 2w)`` must equal ``(H, W)`` (the caller guaranteed it);
    * ``match="crop"``: the skip is centre-cropped to ``(2h, 2w)`` (valid padding);
    * ``match="resize"``: the up-sampled map is resized to ``(H, W)`` (bilinear, ``size=``).

    ``upsampling`` is any kind of :func:`segbook.nn.upsample.make_upsampler` (chapter 3's
    comparison), from ``in`` to ``in / 2`` channels: ``"transposed2"`` is the paper's
    up-convolution, ``ConvTranspose2d(in, in / 2, 2, stride=2)``. For the resize kinds
    (``"nearest"``, ``"bilinear"``: interpolation to ``(2h, 2w)`` then a 3x3 convolution, padding 1)
    the convolution is followed by batch norm and ReLU, like every other 3x3 convolution of the net;
    the learned strided kinds (transposed, pixel shuffle) stay linear, as in the paper.
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, *, upsampling: str = "transposed2",
                 padding: str = "same") -> None:
        super().__init__()
        up_channels = in_channels // 2
        self.upsampling = upsampling
        resize = upsampling in ResizeConv2d.MODES
        self.up = make_upsampler(upsampling, in_channels, up_channels, bias=not resize)
        if resize:  # conv -> BN -> ReLU, as ConvBNAct (BN's shift replaces the conv's bias)
            self.up = nn.Sequential(self.up, nn.BatchNorm2d(up_channels), nn.ReLU())
        self.convs = DoubleConv(skip_channels + up_channels, out_channels, padding=padding)

    def upsample(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, in, h, w] -> [N, in / 2, 2h, 2w]``."""
        return self.up(x)

    def forward(self, x: torch.Tensor, skip: torch.Tensor, match: str = "equal") -> torch.Tensor:  # noqa: D102
        up = self.upsample(x)
        if match == "crop":
            skip = center_crop(skip, up.shape[-2:])
        elif match == "resize" and up.shape[-2:] != skip.shape[-2:]:
            up = F.interpolate(up, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.convs(torch.cat([skip, up], dim=1))


class UNet(SegmentationModel):
    """U-Net: ``forward(x [N, in_channels, H, W]) -> logits [N, num_classes, H_out, W_out]``.

    ``(H_out, W_out) = (H, W)`` for every policy except ``input_policy="strict"`` with
    ``padding="valid"``, where each side shrinks by the context margin (572 -> 388 at depth 4):
    see :meth:`output_size`.

    Args:
        num_classes: ``K``.
        in_channels: image channels.
        depth: number of poolings ``D`` (the paper: 4).
        width: channels of the first level ``C``; level ``l`` has ``C * 2^l`` (the paper: 64).
        padding: ``"same"`` (3x3 convolutions with padding 1) or ``"valid"`` (no padding, the skip is
            centre-cropped).
        upsampling: a kind of :func:`segbook.nn.upsample.make_upsampler`
            (:data:`~segbook.nn.upsample.UPSAMPLER_KINDS`): ``"transposed2"`` (the paper's 2x2
            stride-2 up-convolution), ``"bilinear"`` (+ 3x3 conv-BN-ReLU), or any of chapter 3's
            others (see :class:`UpBlock`).
        input_policy: ``"strict"``, ``"pad"`` or ``"resize"`` (see the module docstring).
    """

    def __init__(self, *, num_classes: int, in_channels: int = 3, depth: int = 4, width: int = 64,
                 padding: str = "same", upsampling: str = "transposed2", input_policy: str = "strict") -> None:
        super().__init__()
        for name, v, lo in (("num_classes", num_classes, 1), ("in_channels", in_channels, 1), ("depth", depth, 1),
                            ("width", width, 1)):
            positive_int(v, name, minimum=lo)
        if padding not in UNET_PADDINGS:
            raise ValueError(f"padding must be one of {UNET_PADDINGS}, got {padding!r}")
        if upsampling not in UPSAMPLER_KINDS:
            raise ValueError(f"upsampling must be one of {UPSAMPLER_KINDS} (segbook.nn.upsample.make_upsampler), "
                             f"got {upsampling!r}")
        self.num_classes, self.in_channels, self.depth, self.width = num_classes, in_channels, depth, width
        self.padding, self.upsampling = padding, upsampling
        self.widths = [width * 2 ** level for level in range(depth + 1)]
        if padding == "same":
            self._context_margin = 0
        else:
            n = nearest_valid_unet_sizes(1, depth, "valid")[1]
            self._context_margin = (n - unet_trace(n, depth, "valid").output_size) // 2
        self.set_input_policy(input_policy)

        self.encoder = nn.ModuleList()
        channels = in_channels
        for level_width in self.widths[:-1]:
            self.encoder.append(DoubleConv(channels, level_width, padding=padding))
            channels = level_width
        self.pool = nn.MaxPool2d(2)
        self.bottom = DoubleConv(channels, self.widths[-1], padding=padding)
        self.decoder = nn.ModuleList(
            UpBlock(self.widths[level + 1], self.widths[level], self.widths[level], upsampling=upsampling, padding=padding)
            for level in reversed(range(depth))
        )
        self.head = nn.Conv2d(self.widths[0], num_classes, kernel_size=1)

    def set_input_policy(self, input_policy: str) -> "UNet":
        """Switch how inputs that do not fit are handled (``"strict"``, ``"pad"``, ``"resize"``); returns ``self``.

        The policy changes no parameter, so one trained net can be run under each of them.
        """
        if input_policy not in INPUT_POLICIES:
            raise ValueError(f"input_policy must be one of {INPUT_POLICIES}, got {input_policy!r}")
        if self.padding == "valid" and input_policy == "resize":
            raise ValueError("input_policy='resize' needs padding='same' (valid padding crops its skips); "
                             "use input_policy='strict' or 'pad' with padding='valid'")
        self.input_policy = input_policy
        smallest_valid = nearest_valid_unet_sizes(1, self.depth, self.padding)[1]
        # strict: the smallest valid size; pad: anything that can be mirrored; resize: D floor poolings.
        self.min_input_size = {"strict": smallest_valid, "pad": 2, "resize": 2 ** self.depth}[input_policy]
        self.size_multiple = 2 ** self.depth if (self.padding == "same" and input_policy == "strict") else 1
        return self

    @property
    def total_stride(self) -> int:
        return 2 ** self.depth

    @property
    def context_margin(self) -> int:
        """Pixels lost on each side with valid padding (0 with same padding): 92 at depth 4."""
        return self._context_margin

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """The logits' ``(H_out, W_out)`` for an input of ``height x width`` (after the size check)."""
        if self.padding == "valid" and self.input_policy == "strict":
            return tuple(unet_trace(n, self.depth, "valid").output_size or 0 for n in (height, width))  # type: ignore[return-value]
        return height, width

    def check_input(self, x: torch.Tensor) -> None:
        """The base checks (rank, dtype, channels, minimum size, a multiple of ``2^D`` with same padding
        and the strict policy, a batch of one), and with valid padding and the strict policy every map
        before a pooling even; the errors name the nearest sizes that work."""
        super().check_input(x)
        if self.padding == "valid" and self.input_policy == "strict":
            check_spatial_sizes(
                x, lambda n: is_valid_unet_size(n, self.depth, "valid"),
                lambda n: nearest_valid_unet_sizes(n, self.depth, "valid"),
                name=f"{type(self).__name__} (valid padding, depth {self.depth})",
                rule=f"every map before a pooling must be even, i.e. each side = {2 ** self.depth}k - 4 and at "
                     f"least {self.min_input_size}",
                fix="Use input_policy='pad', or crop/pad the input.")

    def _pad_plan(self, height: int, width: int) -> tuple[int, int, int, int, int]:
        """``(top, bottom, left, right, offset)`` of the ``"pad"`` policy for a ``height x width`` input.

        The image keeps its place on the pooling grid (the top/left pad is a multiple of ``2^D``), so on a
        size the net takes directly the ``"pad"`` output equals the ``"strict"`` one where the latter is
        defined; the logits of the input's pixels start at ``offset``.
        """
        margin = self.context_margin
        lead = -(-margin // self.total_stride) * self.total_stride
        pads = []
        for n in (height, width):
            target = nearest_valid_unet_sizes(n + lead + margin, self.depth, self.padding)[1]
            pads.append((lead, target - n - lead))
        (top, bottom), (left, right) = pads
        return top, bottom, left, right, lead - margin

    def contracting_path(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        """The encoder's maps ``enc0 .. enc{D-1}`` and ``bottom`` of ``x`` (no check, no policy), by name."""
        maps: "OrderedDict[str, torch.Tensor]" = OrderedDict()
        for level, block in enumerate(self.encoder):
            x = block(x)
            maps[f"enc{level}"] = x
            x = self.pool(x)
        maps["bottom"] = self.bottom(x)
        return maps

    def expanding_path(self, maps: "OrderedDict[str, torch.Tensor]") -> "OrderedDict[str, torch.Tensor]":
        """``maps`` of :meth:`contracting_path` plus the decoder's ``dec{D-1} .. dec0`` and the ``logits``.

        Each level up-samples, matches its skip ``enc{l}`` (crop with valid padding, resize under
        ``input_policy="resize"``), concatenates and convolves (:class:`UpBlock`).
        """
        maps = OrderedDict(maps)
        x = maps["bottom"]
        match = "crop" if self.padding == "valid" else ("resize" if self.input_policy == "resize" else "equal")
        for block, level in zip(self.decoder, reversed(range(self.depth))):
            x = block(x, maps[f"enc{level}"], match)
            maps[f"dec{level}"] = x
        maps["logits"] = self.head(x)
        return maps

    def features(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        """Every map on the way, in order: ``enc0 .. enc{D-1}``, ``bottom``, ``dec{D-1} .. dec0``, ``logits``.

        No size check, padding or cropping is applied: ``x`` must already be a size the net takes
        (under ``input_policy="resize"`` the decoder still resizes to the skips).
        """
        return self.expanding_path(self.contracting_path(x))

    def encode(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        """:meth:`contracting_path`; under ``input_policy="pad"`` of the mirror-padded input."""
        if self.input_policy == "pad":
            x = mirror_pad(x, *self._pad_plan(*x.shape[-2:])[:4])
        return self.contracting_path(x)

    def decode(self, features: "OrderedDict[str, torch.Tensor]") -> torch.Tensor:
        """:meth:`expanding_path` and the 1x1 head on :meth:`encode`'s maps: logits ``[N, K, H_out, W_out]``."""
        return self.expanding_path(features)["logits"]

    def resize_output(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The logits as they are, except under ``"pad"``: cropped back to the input's pixels."""
        if self.input_policy != "pad":
            return logits
        (h, w), off = x.shape[-2:], self._pad_plan(*x.shape[-2:])[4]
        return logits[..., off:off + h, off:off + w]


def unet(*, num_classes: int = 6, in_channels: int = 3, depth: int = 4, width: int = 16,
         padding: str = "same", upsampling: str = "transposed2", input_policy: str = "strict") -> UNet:
    """A U-Net for the book's scenes: same padding, depth 4, 16 channels at the first level by default.

    ``[N, in_channels, H, W] -> [N, num_classes, H, W]``; with ``input_policy="strict"`` ``H`` and
    ``W`` must be multiples of ``2 ** depth``. Keyword arguments only; ``TypeError`` for a value of
    the wrong type (a float width), ``ValueError`` for one out of range or an unknown choice.
    """
    return UNet(num_classes=num_classes, in_channels=in_channels, depth=depth, width=width,
                padding=padding, upsampling=upsampling, input_policy=input_policy)


def unet_paper(*, num_classes: int = 2, in_channels: int = 1, input_policy: str = "strict") -> UNet:
    """The paper's configuration: depth 4, 64 to 1024 channels, valid padding, 2x2 up-convolutions.

    ``[N, 1, 572, 572] -> [N, 2, 388, 388]`` with the strict policy (31M parameters).
    """
    return UNet(num_classes=num_classes, in_channels=in_channels, depth=4, width=64, padding="valid",
                upsampling="transposed2", input_policy=input_policy)


@torch.inference_mode()
def predict_tiled(model: UNet, images: torch.Tensor, *, tile: int, margin: int) -> torch.Tensor:
    """Overlap-tile inference: logits ``[N, K, H, W]`` for images ``[N, C, H, W]`` of any size.

    The image is mirrored by ``margin`` pixels on every side (and at the bottom/right up to a whole
    number of tiles); the net runs on ``tile x tile`` windows taken with a stride of
    ``step = tile - 2 * margin``, and from each window only the central ``step x step`` logits
    are kept, whose context lies entirely inside the window. With valid padding (``margin`` at
    least :attr:`UNet.context_margin`) this is the paper's overlap-tile strategy: every kept pixel
    saw its full context, mirrored at the image border. With same padding it discards the logits
    next to the window border, where zero padding stands in for missing context.

    Args:
        model: a :class:`UNet` with ``input_policy="strict"``; ``tile`` must be a size it takes.
        images: ``[N, C, H, W]`` float.
        tile: side of the windows fed to the net.
        margin: context discarded on each side of a window's output (>= the net's context margin).
    """
    if not isinstance(model, UNet) or model.input_policy != "strict":
        raise ValueError("predict_tiled needs a UNet with input_policy='strict' (the tiling replaces the policy)")
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        got = f"shape {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a tensor [N, C, H, W], got {got}; "
                         "for a single image [C, H, W] add a batch dimension with x.unsqueeze(0)")
    positive_int(margin, "margin (at least the net's context margin)", minimum=model.context_margin)
    step = tile - 2 * margin if isinstance(tile, int) and not isinstance(tile, bool) else 0
    if step < 1:
        raise ValueError(f"tile ({tile!r}) must be an int larger than 2 * margin ({2 * margin})")
    if not is_valid_unet_size(tile, model.depth, model.padding):
        below, above = nearest_valid_unet_sizes(tile, model.depth, model.padding)
        raise ValueError(f"tile {tile} is not a size the net takes; nearest: {below} or {above}")
    model.eval()
    n, _, h, w = images.shape
    rows, cols = -(-h // step), -(-w // step)
    padded = mirror_pad(images, margin, rows * step - h + margin, margin, cols * step - w + margin)
    out = None
    crop = margin - model.context_margin  # output pixel j is input pixel j + context_margin
    for i in range(rows):
        for j in range(cols):
            window = padded[..., i * step:i * step + tile, j * step:j * step + tile]
            logits = model(window)[..., crop:crop + step, crop:crop + step]
            if out is None:
                out = logits.new_empty(n, logits.shape[1], rows * step, cols * step)
            out[..., i * step:(i + 1) * step, j * step:(j + 1) * step] = logits
    return out[..., :h, :w]
