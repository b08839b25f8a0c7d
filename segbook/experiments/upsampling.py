"""Chapter-3 experiments: small decoders and 2x super-resolution nets that differ only in their upsampler.

The task with an image as output is **2x super-resolution** of the procedural scenes: the input
is the scene average-pooled 2x2 (a ``[3, H/2, W/2]`` image), the target is the scene itself
(``[3, H, W]``), the loss the mean squared error. The upsampler is the only layer that increases
the resolution, so its artifacts cannot be avoided by the network routing around it:

    conv3x3 -> ReLU -> conv3x3 -> ReLU  (at H/2)  ->  upsampler 2x -> ReLU  ->  conv3x3 (at H)

The regression trains with :func:`segbook.train.fit` and a loss of its own (:func:`train_regression`:
Adam, MSE, a fresh batch order per seed from :class:`PermutationBatches`, cosine learning-rate decay).

The chapter's studies run in one call each: :func:`scatter_agreement` (the scatter-add against
``F.conv_transpose2d``), :func:`init_checkerboards` (random decoders on a constant input),
:func:`gradient_checkerboards` (input gradients of strided encoders), :func:`train_super_resolution`
with :func:`interpolation_baseline` and :func:`super_resolution_table`, and
:func:`train_segmentation_decoders`. Their figures live in :mod:`segbook.viz.upsampling`.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..analysis import count_params
from ..checkerboard import checkerboard_score, masked_periodic_amplitude, nyquist_residual, periodic_amplitude
from ..checks import positive_float, positive_int
from ..data import ShapesSegmentation, make_loader
from ..nn.upsample import UPSAMPLERS, SubPixelConv2d, bilinear_init_, conv_transpose2d_scatter, icnr_, make_upsampler
from ..seeds import spread
from ..sizes import conv_transpose_output_size
from ..train import History, evaluate, fit

__all__ = [
    "UPSAMPLER_LABELS",
    "UpsamplingDecoder",
    "SuperResolutionNet",
    "Autoencoder",
    "downsample_pairs",
    "PermutationBatches",
    "mse_loss",
    "train_regression",
    "evaluate_regression",
    "scene_images",
    "flat_images",
    "interior",
    "DownsamplingEncoder",
    "DOWNSAMPLERS",
    "input_gradient",
    "init_upsamplers_",
    "SegmentationDecoderNet",
    "interior_mask",
    "foreground_labels",
    "segmentation_grid",
    "output_padding_table",
    "ScatterCheck",
    "scatter_agreement",
    "InitStudy",
    "init_checkerboards",
    "GradientStudy",
    "gradient_checkerboards",
    "FLAT_MARGIN",
    "GREY",
    "flat_amplitude",
    "sr_pairs",
    "train_super_resolution",
    "interpolation_baseline",
    "add_flat_responses",
    "super_resolution_table",
    "train_segmentation_decoders",
]

UPSAMPLER_LABELS = {
    "transposed3": "transposed k3 s2",
    "transposed4": "transposed k4 s2",
    "nearest": "nearest + conv",
    "bilinear": "bilinear + conv",
    "pixelshuffle": "sub-pixel (PixelShuffle)",
}


class UpsamplingDecoder(nn.Module):
    """``num_upsamples`` upsampling layers of one kind with ReLUs between: ``[N, C_in, h, w] -> [N, C_out, 2^n h, 2^n w]``.

    The decoder of the random-initialisation experiment: nothing but upsamplers (built by
    :func:`segbook.nn.upsample.make_upsampler`), so every pattern in its output comes from them.
    """

    def __init__(self, kind: str, *, in_channels: int = 8, width: int = 16, out_channels: int = 1,
                 num_upsamples: int = 3) -> None:
        super().__init__()
        num_upsamples = positive_int(num_upsamples, "num_upsamples")
        layers: list[nn.Module] = []
        c = in_channels
        for i in range(num_upsamples):
            last = i == num_upsamples - 1
            layers.append(make_upsampler(kind, c, out_channels if last else width))
            if not last:
                layers.append(nn.ReLU(inplace=True))
            c = width
        self.kind = kind
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.layers(x)


class SuperResolutionNet(nn.Module):
    """Super-resolution net whose only changes of resolution are ``num_upsamples`` 2x upsamplers of one kind.

    Shapes: ``[N, 3, h, w] -> [N, 3, 2^n h, 2^n w]``. Layers: two 3x3 convs at the input
    resolution, then per upsampling a ``width -> width`` upsampler and a ReLU, then a 3x3 conv to
    RGB (``final_conv=True``); with ``final_conv=False`` the last upsampler outputs RGB itself
    (as in DCGAN-style generators). ``residual=True`` adds the bilinear interpolation of the input
    to the output (the net then learns a correction). Without it, every output pixel goes through
    the upsamplers.
    """

    def __init__(self, kind: str, *, width: int = 32, channels: int = 3, num_upsamples: int = 1,
                 final_conv: bool = True, residual: bool = False) -> None:
        super().__init__()
        num_upsamples = positive_int(num_upsamples, "num_upsamples")
        self.kind, self.residual, self.channels = kind, residual, channels
        self.encode = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True),
        )
        ups: list[nn.Module] = []
        for i in range(num_upsamples):
            last = i == num_upsamples - 1
            if last and not final_conv:
                ups.append(make_upsampler(kind, width, channels))
            else:
                ups += [make_upsampler(kind, width, width), nn.ReLU(inplace=True)]
        if final_conv:
            ups.append(nn.Conv2d(width, channels, 3, padding=1))
        self.decode = nn.Sequential(*ups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"SuperResolutionNet expects [N, {self.channels}, h, w], got {tuple(x.shape)}")
        out = self.decode(self.encode(x))
        if self.residual:
            out = out + F.interpolate(x, size=out.shape[-2:], mode="bilinear", align_corners=False)
        return out


class Autoencoder(nn.Module):
    """An image autoencoder whose decoder upsamples with ``num_stages`` 2x upsamplers of one kind.

    Shapes: ``[N, 3, H, W] -> [N, 3, H, W]`` for ``H, W`` multiples of ``2^num_stages``. Encoder:
    a 3x3 conv, then per stage a 3x3 conv and 2x2 average pooling (so the encoder itself adds no
    grid), to ``width`` channels at ``H / 2^n``. Decoder: per stage an upsampler and a ReLU, the
    last upsampler outputs RGB directly (as the last layer of an image generator), so nothing
    after it can smooth its pattern away.
    """

    def __init__(self, kind: str, *, width: int = 32, channels: int = 3, num_stages: int = 3) -> None:
        super().__init__()
        num_stages = positive_int(num_stages, "num_stages")
        self.kind, self.channels, self.num_stages = kind, channels, num_stages
        enc: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(num_stages):
            enc += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True), nn.AvgPool2d(2)]
        dec: list[nn.Module] = []
        for i in range(num_stages):
            last = i == num_stages - 1
            dec.append(make_upsampler(kind, width, channels if last else width))
            if not last:
                dec.append(nn.ReLU(inplace=True))
        self.encode, self.decode = nn.Sequential(*enc), nn.Sequential(*dec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        m = 2 ** self.num_stages
        if x.dim() != 4 or x.shape[1] != self.channels or x.shape[-2] % m or x.shape[-1] % m:
            raise ValueError(f"Autoencoder expects [N, {self.channels}, H, W] with H, W multiples of {m}, got {tuple(x.shape)}")
        return self.decode(self.encode(x))


def scene_images(dataset) -> torch.Tensor:
    """All images of a procedural dataset as one float tensor ``[N, 3, H, W]`` in [0, 1].

    Uses the dataset's ``tensors()`` when it has one (the segbook datasets do), else stacks items.
    """
    if hasattr(dataset, "tensors"):
        return dataset.tensors()[0].float()
    return torch.stack([dataset[i][0] for i in range(len(dataset))]).float()


def downsample_pairs(images: torch.Tensor, factor: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Super-resolution pairs: ``images [N, C, H, W] -> (low [N, C, H/f, W/f], high = images)``.

    ``low`` is the ``f x f`` average (a box filter then subsampling). ``H`` and ``W`` must be
    multiples of ``f``.
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise ValueError(f"images must be [N, C, H, W], got {getattr(images, 'shape', type(images))}")
    if images.shape[-2] % factor or images.shape[-1] % factor:
        raise ValueError(f"H and W must be multiples of {factor}, got {tuple(images.shape[-2:])}")
    factor = positive_int(factor, "factor")
    return F.avg_pool2d(images, factor), images


class PermutationBatches:
    """``steps`` batches ``(inputs[idx], targets[idx])`` drawn without replacement from seeded permutations.

    ``inputs [N, ...]`` and ``targets [N, ...]`` are indexed by ``batch_size`` consecutive entries of
    a random permutation of ``range(N)`` (``torch.randperm`` with a generator seeded by ``seed``);
    when fewer than ``batch_size`` entries remain, a fresh permutation from the same generator
    starts. ``len()`` is ``steps``, so :func:`segbook.train.fit` with ``epochs=1`` takes ``steps``
    optimisation steps. Every iteration restarts from ``seed``: the same batches each time.
    """

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor, *, batch_size: int, steps: int,
                 seed: int = 0) -> None:
        if inputs.shape[0] != targets.shape[0]:
            raise ValueError(f"inputs and targets differ in length: {inputs.shape[0]} vs {targets.shape[0]}")
        self.inputs, self.targets = inputs, targets
        self.batch_size = positive_int(batch_size, "batch_size")
        self.steps = positive_int(steps, "steps")
        self.seed = int(seed)

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.seed)
        n = self.inputs.shape[0]
        order, pos = torch.randperm(n, generator=gen), 0
        for _ in range(self.steps):
            if pos + self.batch_size > n:
                order, pos = torch.randperm(n, generator=gen), 0
            idx = order[pos: pos + self.batch_size]
            pos += self.batch_size
            yield self.inputs[idx], self.targets[idx]


def mse_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The mean squared error in float32 (``output`` may come out of autocast in bf16/fp16)."""
    return F.mse_loss(output.float(), target)


def train_regression(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *, steps: int,
                     batch_size: int = 32, lr: float = 2e-3, seed: int = 0,
                     device: Union[str, torch.device, None] = None) -> History:
    """Train ``model`` to map ``inputs [N, ...]`` to ``targets [N, ...]`` with the mean squared error.

    One :func:`segbook.train.fit` call: Adam (no weight decay) with the learning rate decayed as
    ``(1 + cos(pi t / steps)) / 2`` at step ``t``, on ``steps`` batches of
    :class:`PermutationBatches` (order fixed by ``seed``; the global random state is left alone).
    ``device`` defaults to the CPU; on CUDA, fit's autocast dtype and channels_last apply.

    Returns:
        fit's :class:`~segbook.train.History` (``task="regression"``): ``step_loss`` has one MSE per
        step, ``total_seconds`` the training time.
    """
    batches = PermutationBatches(inputs, targets, batch_size=batch_size, steps=steps, seed=seed)
    return fit(model, batches, task="regression", loss_fn=mse_loss, epochs=1, lr=lr, optimizer="adam",
               weight_decay=0.0, schedule=lambda t: 0.5 * (1 + math.cos(math.pi * t / steps)),
               device="cpu" if device is None else device, seed=None, progress=False, log=False)


def evaluate_regression(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *, batch_size: int = 128,
                        period: int = 2, device: Union[str, torch.device, None] = None) -> dict:
    """Mean squared error and mean checkerboard score of ``model``'s outputs, under ``torch.inference_mode``.

    Returns ``{"mse": float, "checkerboard": float, "outputs": [N, C, H, W] on the CPU}``; the
    score is :func:`segbook.checkerboard.checkerboard_score` averaged over images and channels.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device).eval()
    outs = []
    with torch.inference_mode():
        for i in range(0, inputs.shape[0], batch_size):
            outs.append(model(inputs[i: i + batch_size].to(device)).float().cpu())
    out = torch.cat(outs)
    return {"mse": F.mse_loss(out, targets.float()).item(),
            "checkerboard": checkerboard_score(out, period).mean().item(), "outputs": out}


def flat_images(n: int, size: int, *, seed: int = 0, channels: int = 3) -> torch.Tensor:
    """``n`` flat images ``[n, channels, size, size]``: each one colour, drawn uniformly in [0.1, 0.9] per channel.

    A flat input is where a checkerboard has nowhere to hide: an upsampler that treats all output
    phases alike returns a flat output (away from the border), so any ``2``-periodic pattern in a
    network's response to it is an artifact of the network.
    """
    gen = torch.Generator().manual_seed(int(seed))
    colours = 0.1 + 0.8 * torch.rand(n, channels, 1, 1, generator=gen)
    return colours.expand(n, channels, size, size).contiguous()


def interior(x: torch.Tensor, margin: int) -> torch.Tensor:
    """Crop ``margin`` pixels from every side of ``x [..., H, W]`` (where zero padding does not reach)."""
    if margin < 0 or 2 * margin >= min(x.shape[-2:]):
        raise ValueError(f"margin {margin} leaves nothing of a {tuple(x.shape[-2:])} map")
    return x[..., margin: x.shape[-2] - margin, margin: x.shape[-1] - margin] if margin else x


DOWNSAMPLERS = ("strided3", "strided4", "conv+avgpool")


class DownsamplingEncoder(nn.Module):
    """``num_layers`` 2x downsampling stages with ReLUs: ``[N, C, H, W] -> [N, width, H / 2^n, W / 2^n]``.

    Kinds: ``"strided3"`` (3x3 conv, stride 2, padding 1), ``"strided4"`` (4x4 conv, stride 2,
    padding 1), ``"conv+avgpool"`` (3x3 conv, stride 1, then 2x2 average pooling). Their input
    gradients are transposed convolutions of the upstream gradient (the first two) or a uniform
    spreading followed by a stride-1 transposed conv (the third); see :func:`input_gradient`.
    """

    def __init__(self, kind: str, *, in_channels: int = 3, width: int = 16, num_layers: int = 3) -> None:
        super().__init__()
        if kind not in DOWNSAMPLERS:
            raise ValueError(f"unknown downsampler {kind!r}; expected one of {DOWNSAMPLERS}")
        layers: list[nn.Module] = []
        c = in_channels
        for _ in range(num_layers):
            if kind == "strided3":
                layers.append(nn.Conv2d(c, width, 3, stride=2, padding=1))
            elif kind == "strided4":
                layers.append(nn.Conv2d(c, width, 4, stride=2, padding=1))
            else:
                layers += [nn.Conv2d(c, width, 3, padding=1), nn.AvgPool2d(2)]
            layers.append(nn.ReLU())
            c = width
        self.kind = kind
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.layers(x)


def input_gradient(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``d (sum of model(x)) / d x``, summed over channels: ``[N, C, H, W] -> [N, H, W]``.

    The gradient a classifier or discriminator sends back to its input image (as in the
    gradient-based attacks and GAN generators where Odena et al. saw checkerboards).
    """
    x = x.detach().clone().requires_grad_(True)
    model(x).sum().backward()
    return x.grad.sum(1)


def init_upsamplers_(model: nn.Module, scheme: Optional[str]) -> nn.Module:
    """Re-initialise the upsamplers of ``model`` in place; returns ``model``.

    ``scheme``: ``None`` (leave the default initialisation), ``"bilinear"`` (every
    ``nn.ConvTranspose2d`` gets :func:`segbook.nn.upsample.bilinear_init_`: FCN's bilinear kernel
    shape, the random channel mixing kept) or ``"icnr"`` (every :class:`SubPixelConv2d` gets
    :func:`segbook.nn.upsample.icnr_`). Other layers are untouched.
    """
    if scheme not in (None, "bilinear", "icnr"):
        raise ValueError(f"scheme must be None, 'bilinear' or 'icnr', got {scheme!r}")
    for m in model.modules():
        if scheme == "bilinear" and isinstance(m, nn.ConvTranspose2d):
            bilinear_init_(m)
        elif scheme == "icnr" and isinstance(m, SubPixelConv2d):
            icnr_(m)
    return model


class SegmentationDecoderNet(nn.Module):
    """A small segmenter whose decoder differs only in its upsampler kind: ``[N, 3, H, W] -> [N, K, H, W]`` logits.

    Encoder (the same for every kind): a 3x3 conv, then ``num_stages`` times a 3x3 conv, and
    2x2 average pooling (no strided conv, so the encoder adds no grid of its own), to ``width``
    channels at ``H / 2^n``; every conv is followed by BatchNorm and a ReLU. Decoder: ``num_stages``
    2x upsamplers of ``kind`` (:func:`segbook.nn.upsample.make_upsampler`, ``"pixelshuffle"``
    included), each followed by BatchNorm (a per-channel affine map at evaluation: it cannot
    remove a grid) and a ReLU, then a 1x1 classifier (which cannot smooth a grid away either). ``init``: see
    :func:`init_upsamplers_`. ``H`` and ``W`` must be multiples of ``2^n``.
    """

    def __init__(self, kind: str, num_classes: int, *, width: int = 24, num_stages: int = 2,
                 init: Optional[str] = None) -> None:
        super().__init__()
        num_stages = positive_int(num_stages, "num_stages")
        self.kind, self.num_stages = kind, num_stages
        def bn_relu() -> list[nn.Module]:
            return [nn.BatchNorm2d(width), nn.ReLU(inplace=True)]

        enc: list[nn.Module] = [nn.Conv2d(3, width, 3, padding=1), *bn_relu()]
        for _ in range(num_stages):
            enc += [nn.Conv2d(width, width, 3, padding=1), *bn_relu(), nn.AvgPool2d(2)]
        dec: list[nn.Module] = []
        for _ in range(num_stages):
            dec += [make_upsampler(kind, width, width), *bn_relu()]
        self.encode, self.decode = nn.Sequential(*enc), nn.Sequential(*dec)
        self.classifier = nn.Conv2d(width, positive_int(num_classes, "num_classes"), 1)
        init_upsamplers_(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        m = 2 ** self.num_stages
        if x.dim() != 4 or x.shape[1] != 3 or x.shape[-2] % m or x.shape[-1] % m:
            raise ValueError(f"SegmentationDecoderNet expects [N, 3, H, W] with H, W multiples of {m}, got {tuple(x.shape)}")
        return self.classifier(self.decode(self.encode(x)))


def foreground_labels(image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A joint transform for :class:`segbook.data.ShapesSegmentation`: every object class becomes 1.

    ``(image [3, H, W], mask [H, W] int64) -> (image, (mask > 0) int64)``: the two-class
    (background / object) version of the scenes, where a small decoder's errors are about *where*
    the objects are (their outlines) rather than which shape they are.
    """
    return image, (mask > 0).long()


def interior_mask(masks: torch.Tensor, radius: int = 2, *, foreground_only: bool = True) -> torch.Tensor:
    """Pixels whose ``(2 r + 1)^2`` neighbourhood holds one label only: ``[N, H, W]`` int -> ``[N, H, W]`` bool.

    Windows that reach past the image border count as mixed (the border is excluded). With
    ``foreground_only`` the background's interior is dropped too (label 0): what remains are the
    object interiors, where the correct label map is constant.
    """
    if not isinstance(masks, torch.Tensor) or masks.dim() != 3:
        raise ValueError(f"masks must be [N, H, W], got {getattr(masks, 'shape', type(masks))}")
    r = int(radius)
    if r < 1:
        raise ValueError(f"radius must be >= 1, got {radius!r}")
    m = masks.to(torch.float32).unsqueeze(1)
    hi = F.max_pool2d(m, 2 * r + 1, stride=1, padding=r)
    lo = -F.max_pool2d(-m, 2 * r + 1, stride=1, padding=r)
    out = (hi == lo).squeeze(1)
    out[:, :r] = False
    out[:, -r:] = False
    out[:, :, :r] = False
    out[:, :, -r:] = False
    if foreground_only:
        out &= masks > 0
    return out


def segmentation_grid(model: nn.Module, images: torch.Tensor, masks: torch.Tensor, *, radius: int = 2,
                      batch_size: int = 128) -> dict:
    """The period-2 grid in a segmenter's logits and label map, on object interiors (:func:`interior_mask`).

    Shapes: ``images [N, 3, H, W]``, ``masks [N, H, W]`` (``H, W`` even). Returns floats:

    - ``"logit_grid"``: :func:`segbook.checkerboard.masked_periodic_amplitude` of the logits'
      :func:`segbook.checkerboard.nyquist_residual` (the smooth part removed, a period-2 grid kept
      at full strength), pooled over the maps, averaged over the ``K`` logit channels (logit units);
    - ``"margin"``: mean gap between the largest and second-largest logit on the interiors (how
      far a pixel's decision is from flipping);
    - ``"interior_error"``: fraction of interior pixels labelled wrongly;
    - ``"label_grid"``: the masked periodic amplitude of the error indicator (0 / 1) on the
      interiors (0 when errors do not prefer any phase);
    - ``"interior_pixels"``: the number of interior pixels measured.
    """
    model.eval()
    device = next(model.parameters()).device
    outs = []
    with torch.inference_mode():
        for i in range(0, images.shape[0], batch_size):
            outs.append(model(images[i: i + batch_size].to(device)).float().cpu())
    logits = torch.cat(outs)
    inner = interior_mask(masks, radius)
    top2 = logits.topk(2, dim=1).values
    margin = (top2[:, 0] - top2[:, 1])[inner].double().mean().item()
    wrong = (logits.argmax(1) != masks).to(torch.float64)
    return {
        "logit_grid": masked_periodic_amplitude(nyquist_residual(logits), inner).mean().item(),
        "margin": margin,
        "interior_error": wrong[inner].mean().item(),
        "label_grid": masked_periodic_amplitude(wrong.unsqueeze(1), inner).item(),
        "interior_pixels": int(inner.sum()),
    }


def output_padding_table(sizes: Sequence[int], *, kernel_size: int = 3, stride: int = 2, padding: int = 1) -> list[dict]:
    """Why ``output_padding`` exists: a strided conv maps several input sizes to one output size.

    For each ``H`` in ``sizes``: the conv's output size ``h = floor((H + 2p - k) / s) + 1`` and the
    transposed conv's output size from ``h`` with ``output_padding`` 0 and ``s - 1``
    (:func:`segbook.sizes.conv_transpose_output_size`); the row says which one gives ``H`` back.
    Returns ``[{"input H", "conv output h", "transposed, output_padding=0", ..., "output_padding for H"}]``.
    """
    from ..sizes import conv_output_size, conv_transpose_output_size

    rows = []
    for h_in in sizes:
        h = conv_output_size(h_in, kernel_size, stride, padding)
        back = {op: conv_transpose_output_size(h, kernel_size, stride, padding, op) for op in range(stride)}
        need = [op for op, v in back.items() if v == h_in]
        row = {"input H": h_in, "conv output h": h}
        row.update({f"transposed, output_padding={op}": v for op, v in back.items()})
        row["output_padding for H"] = need[0] if need else None
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------------------------
# The chapter's studies, one call each
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScatterCheck:
    """:func:`scatter_agreement`'s result: the settings tried, the largest difference, the size check."""

    settings: list[tuple[int, int, int, int, int]]   # (kernel, stride, padding, output_padding, dilation)
    max_error: float                                # max |scatter - F.conv_transpose2d| over all settings
    sizes_ok: bool                                  # output sizes = the formula = torch's, for every setting


def scatter_agreement(*, seed: int, kernel_sizes: Sequence[int] = range(1, 6), strides: Sequence[int] = (1, 2, 3),
                      paddings: Sequence[int] = (0, 1, 2), output_paddings: Sequence[int] = (0, 1),
                      dilations: Sequence[int] = (1, 2)) -> ScatterCheck:
    """Compare :func:`segbook.nn.upsample.conv_transpose2d_scatter` with ``F.conv_transpose2d`` on a grid of settings.

    For every ``(kernel, stride, padding, output_padding, dilation)`` in the product of the given
    values that PyTorch accepts (``output_padding < max(stride, dilation)``, a non-empty output
    for a 4-pixel input), both functions transpose-convolve one random float64 input
    ``[2, 4, 4, 5]`` with random weights ``[4, 3, k, k]`` and a bias ``[6]`` in ``groups=2``
    (drawn in that order from one generator seeded with ``seed``). The output sizes must also equal
    :func:`segbook.sizes.conv_transpose_output_size`.
    """
    gen = torch.Generator().manual_seed(int(seed))
    settings = [(k, s, p, op, d)
                for k, s, p, op, d in itertools.product(kernel_sizes, strides, paddings, output_paddings, dilations)
                if op < max(s, d) and (4 - 1) * s - 2 * p + d * (k - 1) + op + 1 >= 1]
    if not settings:
        raise ValueError("no valid (kernel, stride, padding, output_padding, dilation) setting in the grid")
    worst, sizes_ok = 0.0, True
    for k, s, p, op, d in settings:
        x = torch.randn(2, 4, 4, 5, generator=gen, dtype=torch.float64)
        w = torch.randn(4, 3, k, k, generator=gen, dtype=torch.float64)
        b = torch.randn(6, generator=gen, dtype=torch.float64)
        ref = F.conv_transpose2d(x, w, b, stride=s, padding=p, output_padding=op, dilation=d, groups=2)
        got = conv_transpose2d_scatter(x, w, b, stride=s, padding=p, output_padding=op, dilation=d, groups=2)
        worst = max(worst, (got - ref).abs().max().item())
        sizes_ok &= (tuple(got.shape[-2:]) == tuple(ref.shape[-2:])
                     == (conv_transpose_output_size(4, k, s, p, op, d), conv_transpose_output_size(5, k, s, p, op, d)))
    return ScatterCheck(settings=settings, max_error=worst, sizes_ok=bool(sizes_ok))


@dataclass(frozen=True)
class InitStudy:
    """:func:`init_checkerboards`'s result, one entry per variant name."""

    outputs: dict[str, torch.Tensor]   # the decoder's output for a constant input, [H, W]
    score: dict[str, float]            # checkerboard score of the interior (0 flat, 1 purely periodic)
    relative: dict[str, float]         # the interior's periodic amplitude / its mean |value| (grid strength)


def init_checkerboards(variants: Mapping[str, tuple[str, Optional[str]]], *, seed: int, in_channels: int = 16,
                       width: int = 16, num_upsamples: int = 3, size: int = 8, period: int = 8,
                       margin: int = 16) -> InitStudy:
    """Random :class:`UpsamplingDecoder` s on a constant input: does the upsampler print a grid before training?

    ``variants`` maps a name to ``(kind, scheme)``: a :func:`segbook.nn.upsample.make_upsampler`
    kind and an :func:`init_upsamplers_` scheme (``None``, ``"bilinear"``, ``"icnr"``). Each
    decoder (``in_channels -> width -> ... -> 1`` channel, ``num_upsamples`` 2x layers) is built
    right after ``torch.manual_seed(seed)``, so all start from the same random stream, and maps
    ``torch.ones(1, in_channels, size, size)`` to ``[size 2^n, size 2^n]``. The interior
    (``margin`` pixels from the border, where zero padding does not reach) is scored with
    :func:`segbook.checkerboard.checkerboard_score` and ``periodic_amplitude / mean |output|`` at ``period``.
    """
    if not variants:
        raise ValueError("init_checkerboards needs at least one variant")
    outputs, score, relative = {}, {}, {}
    for name, (kind, scheme) in variants.items():
        torch.manual_seed(seed)
        decoder = UpsamplingDecoder(kind, in_channels=in_channels, width=width, out_channels=1,
                                    num_upsamples=num_upsamples).eval()
        init_upsamplers_(decoder, scheme)
        with torch.no_grad():
            outputs[name] = decoder(torch.ones(1, in_channels, size, size))[0, 0]
        inner = interior(outputs[name], margin)
        score[name] = checkerboard_score(inner, period).item()
        relative[name] = (periodic_amplitude(inner, period) / inner.abs().mean()).item()
    return InitStudy(outputs=outputs, score=score, relative=relative)


@dataclass(frozen=True)
class GradientStudy:
    """:func:`gradient_checkerboards`'s result, one entry per downsampler kind."""

    maps: dict[str, torch.Tensor]   # the input gradient of the first image, [H, W]
    score: dict[str, float]         # mean checkerboard score of the gradients' interiors over the images


def gradient_checkerboards(images: torch.Tensor, *, seed: int, kinds: Sequence[str] = DOWNSAMPLERS, width: int = 16,
                           num_layers: int = 3, period: int = 8, margin: int = 16) -> GradientStudy:
    """The grid in the input gradient of random :class:`DownsamplingEncoder` s, for ``images [N, 3, H, W]``.

    Per kind, an encoder (``num_layers`` 2x stages, ``width`` channels) is built right after
    ``torch.manual_seed(seed)``; :func:`input_gradient` gives ``[N, H, W]``, whose interior
    (``margin`` pixels in) is scored with :func:`segbook.checkerboard.checkerboard_score` at
    ``period`` and averaged over the images.
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise ValueError(f"images must be [N, C, H, W], got {getattr(images, 'shape', type(images))}")
    maps, score = {}, {}
    for kind in kinds:
        torch.manual_seed(seed)
        encoder = DownsamplingEncoder(kind, width=width, num_layers=num_layers)
        g = input_gradient(encoder, images)
        maps[kind] = g[0]
        score[kind] = checkerboard_score(interior(g, margin), period).mean().item()
    return GradientStudy(maps=maps, score=score)


FLAT_MARGIN = 8    # pixels of a super-resolved flat image left out at each border (zero padding)
GREY = 255         # grey levels of an 8-bit image per unit of a [0, 1] image


def flat_amplitude(outputs: torch.Tensor, *, margin: int = FLAT_MARGIN, grey: float = GREY) -> float:
    """The period-2 grid on flat inputs, in grey levels: ``outputs [N, C, H, W] -> float``.

    ``grey`` times :func:`segbook.checkerboard.periodic_amplitude` of the interior (``margin``
    pixels in), averaged over images and channels. 0 for flat outputs, ``a * grey`` for a
    checkerboard of amplitude ``a``.
    """
    return grey * periodic_amplitude(interior(outputs, margin)).mean().item()


def sr_pairs(seed: int, *, n_train: int, n_val: int, size: int):
    """One seed's super-resolution data: ``((low, high), (val_low, val_high))`` from procedural scenes.

    Training scenes: ``ShapesSegmentation(n_train, size=size, seed=seed)``; validation scenes:
    ``ShapesSegmentation(n_val, size=size, seed=seed + 1)``, both through :func:`downsample_pairs`
    (``low [N, 3, size/2, size/2]``, ``high [N, 3, size, size]``).
    """
    n_train, n_val = positive_int(n_train, "n_train"), positive_int(n_val, "n_val")
    train = scene_images(ShapesSegmentation(n_train, size=size, seed=seed))
    val = scene_images(ShapesSegmentation(n_val, size=size, seed=seed + 1))
    return downsample_pairs(train), downsample_pairs(val)


def train_super_resolution(pairs: Mapping[int, tuple], flats: Mapping[int, torch.Tensor], *,
                           kinds: Sequence[str] = UPSAMPLERS, width: int = 16, steps: int = 500,
                           batch_size: int = 16, lr: float = 4e-3,
                           device: Union[str, torch.device, None] = None) -> dict[str, list[dict]]:
    """Train one residual :class:`SuperResolutionNet` per upsampler kind and seed; returns ``{kind: [run per seed]}``.

    ``pairs[s]`` is seed ``s``'s :func:`sr_pairs`, ``flats[s]`` its flat images ``[F, 3, h, w]``.
    For each seed (in ``pairs``' order) and kind: ``torch.manual_seed(s + 2)`` (every kind of a seed
    starts from the same random stream), the net (``final_conv=False, residual=True``), its
    :func:`flat_amplitude` on ``flats[s]`` before training, :func:`train_regression` with
    ``seed=s + 2``, then :func:`evaluate_regression` on the validation pair. A run is
    ``{"seed", "model" (on the CPU, eval mode), "hist", "flat_amp_init", "val"}``.
    """
    steps, batch_size = positive_int(steps, "steps"), positive_int(batch_size, "batch_size")
    lr = positive_float(lr, "lr")
    missing = set(pairs) - set(flats)
    if missing:
        raise ValueError(f"flats has no images for seed(s) {sorted(missing)}")
    runs: dict[str, list[dict]] = {kind: [] for kind in kinds}
    for s in pairs:
        (low, high), (v_low, v_high) = pairs[s]
        for kind in kinds:
            torch.manual_seed(s + 2)
            model = SuperResolutionNet(kind, width=width, final_conv=False, residual=True)
            with torch.no_grad():
                amp_init = flat_amplitude(model(flats[s]))
            hist = train_regression(model, low, high, steps=steps, batch_size=batch_size, lr=lr, seed=s + 2,
                                    device=device)
            runs[kind].append({"seed": s, "model": model.cpu().eval(), "hist": hist, "flat_amp_init": amp_init,
                               "val": evaluate_regression(model, v_low, v_high)})
    return runs


def interpolation_baseline(pairs: Mapping[int, tuple], flats: Mapping[int, torch.Tensor]) -> list[dict]:
    """Plain bilinear interpolation (no net) on each seed's validation pair and flat images.

    Per seed of ``pairs`` (see :func:`train_super_resolution`): ``{"mse"}`` against the targets,
    ``"checkerboard"`` (mean score of the interpolated images), ``"flat_amp"``
    (:func:`flat_amplitude` of the interpolated flats) and ``"target"`` (the targets' own score).
    """
    out = []
    for s in pairs:
        _, (v_low, v_high) = pairs[s]

        def up(t: torch.Tensor) -> torch.Tensor:
            return F.interpolate(t, size=v_high.shape[-2:], mode="bilinear", align_corners=False)

        out.append({"mse": F.mse_loss(up(v_low), v_high).item(),
                    "checkerboard": checkerboard_score(up(v_low)).mean().item(),
                    "flat_amp": flat_amplitude(up(flats[s])),
                    "target": checkerboard_score(v_high).mean().item()})
    return out


def add_flat_responses(runs: Mapping[str, list[dict]], flats: Mapping[int, torch.Tensor]) -> Mapping[str, list[dict]]:
    """Add each trained net's output on its seed's flat images to its run, in place; returns ``runs``.

    Sets ``run["flat"]`` (``[F, 3, H, W]``, under ``torch.inference_mode``) and ``run["flat_amp"]``
    (:func:`flat_amplitude`) for every run of :func:`train_super_resolution`.
    """
    for rs in runs.values():
        for run in rs:
            with torch.inference_mode():
                run["flat"] = run["model"](flats[run["seed"]])
            run["flat_amp"] = flat_amplitude(run["flat"])
    return runs


def super_resolution_table(runs: Mapping[str, list[dict]], baseline: Sequence[dict], *,
                           labels: Optional[Mapping[str, str]] = None, fmt: str = ".3g") -> list[dict]:
    """The super-resolution results as rows for :func:`segbook.viz.results_table`, mean [min, max] over seeds.

    One row for :func:`interpolation_baseline` and one per kind of ``runs`` (after
    :func:`add_flat_responses`): parameters, validation MSE, checkerboard score on the scenes, flat
    amplitude at initialisation and after training (grey levels).
    """
    labels = UPSAMPLER_LABELS if labels is None else labels
    missing = [kind for kind, rs in runs.items() if any("flat_amp" not in r for r in rs)]
    if missing:
        raise ValueError(f"runs of {missing} have no flat responses: call add_flat_responses(runs, flats) first")

    def col(values) -> str:
        return spread(values).format(fmt)

    table = [{"upsampler": "bilinear interpolation (no net)", "params": 0,
              "val MSE": col(r["mse"] for r in baseline),
              "score on scenes": col(r["checkerboard"] for r in baseline),
              "flat amplitude at init": "—",
              "flat amplitude (grey levels)": col(r["flat_amp"] for r in baseline)}]
    for kind, rs in runs.items():
        table.append({"upsampler": labels[kind],
                      "params": count_params(rs[0]["model"]),
                      "val MSE": col(r["val"]["mse"] for r in rs),
                      "score on scenes": col(r["val"]["checkerboard"] for r in rs),
                      "flat amplitude at init": col(r["flat_amp_init"] for r in rs),
                      "flat amplitude (grey levels)": col(r["flat_amp"] for r in rs)})
    return table


def train_segmentation_decoders(data: Mapping[int, tuple], variants: Mapping[str, tuple[str, Optional[str]]], *,
                                width: int = 16, epochs: int = 2, lr: float = 1e-2, num_classes: int = 2,
                                batch_size: int = 32, device: Union[str, torch.device, None] = None
                                ) -> dict[str, list[dict]]:
    """Train one :class:`SegmentationDecoderNet` per decoder variant and seed; returns ``{name: [run per seed]}``.

    ``data[s]`` is seed ``s``'s ``(train_set, val_set)`` (datasets with ``tensors()`` whose masks
    are made binary, e.g. :func:`foreground_labels`); ``variants`` maps a name to ``(kind, scheme)``.
    For each seed and variant: ``torch.manual_seed(s + 6)`` (the same stream for every decoder),
    the net, its :func:`segmentation_grid` logit grid at initialisation, :func:`segbook.train.fit`
    (batches of ``batch_size`` from ``make_loader(..., shuffle=True, seed=s)``, ``seed=s``), then
    :func:`segbook.train.evaluate` on the validation set. A run is ``{"seed", "model", "params",
    "grid_init"}`` plus :func:`segmentation_grid`'s and ``evaluate``'s keys.
    """
    epochs, batch_size = positive_int(epochs, "epochs"), positive_int(batch_size, "batch_size")
    lr = positive_float(lr, "lr")
    runs: dict[str, list[dict]] = {name: [] for name in variants}
    for s, (train_set, val_set) in data.items():
        v_img, v_mask = val_set.tensors()
        v_mask = (v_mask > 0).long()  # tensors() skips the transform
        for name, (kind, scheme) in variants.items():
            torch.manual_seed(s + 6)
            net = SegmentationDecoderNet(kind, num_classes, width=width, init=scheme)
            grid_init = segmentation_grid(net, v_img, v_mask)["logit_grid"]
            fit(net, make_loader(train_set, batch_size, shuffle=True, seed=s), task="segmentation",
                num_classes=num_classes, epochs=epochs, lr=lr, seed=s, device=device, progress=False, log=False)
            scores = evaluate(net, make_loader(val_set, 128, seed=s), task="segmentation", num_classes=num_classes,
                              device=device)
            runs[name].append({"seed": s, "model": net.eval(), "params": count_params(net), "grid_init": grid_init,
                               **segmentation_grid(net, v_img, v_mask), **scores})
    return runs
