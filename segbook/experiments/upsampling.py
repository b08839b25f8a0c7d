"""Chapter-3 experiments: small decoders and 2x super-resolution nets that differ only in their upsampler.

The task with an image as output is **2x super-resolution** of the procedural scenes: the input
is the scene average-pooled 2x2 (a ``[3, H/2, W/2]`` image), the target is the scene itself
(``[3, H, W]``), the loss the mean squared error. The upsampler is the only layer that increases
the resolution, so its artifacts cannot be avoided by the network routing around it:

    conv3x3 -> ReLU -> conv3x3 -> ReLU  (at H/2)  ->  upsampler 2x -> ReLU  ->  conv3x3 (at H)

The regression trains with :func:`segbook.train.fit` and a loss of its own (:func:`train_regression`:
Adam, MSE, a fresh batch order per seed from :class:`PermutationBatches`, cosine learning-rate decay).

The drawing of a transposed convolution as a scatter (:func:`draw_scatter_1d`) is computed
from :func:`segbook.nn.upsample.conv_transpose2d_scatter`'s placement rule, so the picture and
the code cannot disagree.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checkerboard import checkerboard_score, masked_periodic_amplitude, nyquist_residual
from ..checks import positive_int
from ..nn.upsample import SubPixelConv2d, bilinear_init_, icnr_, make_upsampler
from ..train import History, fit

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
    "draw_scatter_1d",
    "show_images",
    "init_upsamplers_",
    "SegmentationDecoderNet",
    "interior_mask",
    "foreground_labels",
    "segmentation_grid",
    "output_padding_table",
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


def draw_scatter_1d(x: Sequence[float], kernel: Sequence[float], *, stride: int = 2, padding: int = 0, ax=None):
    """Draw a 1-D transposed convolution as a scatter: one row per input value, its scaled kernel copy, and the sum.

    Row ``i`` shows ``x[i] * kernel`` at output positions ``i * stride - padding + a`` (the rule of
    :func:`segbook.nn.upsample.conv_transpose2d_scatter`); the bottom row is the output, whose
    values are checked against ``F.conv_transpose1d`` before drawing. Returns the axes.
    """
    import matplotlib.pyplot as plt

    xt = torch.as_tensor(x, dtype=torch.float64)
    kt = torch.as_tensor(kernel, dtype=torch.float64)
    full = F.conv_transpose1d(xt.view(1, 1, -1), kt.view(1, 1, -1), stride=stride)[0, 0]
    n_out = full.numel()
    rows = torch.zeros(len(xt), n_out, dtype=torch.float64)
    for i, v in enumerate(xt):     # one row per *input* value (a handful), for the drawing only
        rows[i, i * stride: i * stride + len(kt)] = v * kt
    if not torch.allclose(rows.sum(0), full):
        raise RuntimeError("internal: the drawn scatter does not sum to conv_transpose1d")  # pragma: no cover
    if ax is None:
        _, ax = plt.subplots(figsize=(0.55 * n_out + 1.5, 0.45 * (len(xt) + 2) + 0.4), dpi=100)
    cmap = plt.get_cmap("tab10")
    for i in range(len(xt)):
        for j in range(i * stride, i * stride + len(kt)):
            ax.add_patch(plt.Rectangle((j, i), 1, 1, color=cmap(i % 10), alpha=0.35))
            ax.text(j + 0.5, i + 0.5, f"{rows[i, j].item():g}", ha="center", va="center", fontsize=8)
        ax.text(-0.3, i + 0.5, f"x[{i}]={xt[i].item():g}", ha="right", va="center", fontsize=8)
    y0 = len(xt) + 0.3
    for j in range(n_out):
        kept = padding <= j < n_out - padding
        ax.add_patch(plt.Rectangle((j, y0), 1, 1, fill=False, lw=1, ls="-" if kept else ":"))
        ax.text(j + 0.5, y0 + 0.5, f"{full[j].item():g}", ha="center", va="center", fontsize=8,
                color="black" if kept else "grey")
    ax.text(-0.3, y0 + 0.5, "sum", ha="right", va="center", fontsize=8)
    ax.set_xlim(-2.2, n_out + 0.2)
    ax.set_ylim(y0 + 1.2, -0.2)
    ax.set_xticks([j + 0.5 for j in range(n_out)], [str(j - padding) for j in range(n_out)], fontsize=7)
    ax.set_yticks([])
    ax.set_xlabel("output position" + (" (dotted: cropped by the padding)" if padding else ""), fontsize=8)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    return ax


def show_images(panels: dict, *, ncols: Optional[int] = None, panel_size: float = 1.6, cmap: str = "gray",
                suptitle: Optional[str] = None, symmetric: bool = False,
                vrange: Optional[tuple[float, float]] = None, colorbar_label: Optional[str] = None):
    """Show a dict ``title -> image`` (``[3, H, W]`` RGB in [0, 1], or ``[H, W]`` with its own colour scale).

    2-D maps get a colour bar (labelled ``colorbar_label``, e.g. the unit); ``symmetric`` centres
    each map's scale on 0 (for gradients); ``vrange=(lo, hi)`` gives all maps the same scale
    instead (to compare their strength). Returns the figure.
    """
    if vrange is not None and not (len(vrange) == 2 and vrange[0] < vrange[1]):
        raise ValueError(f"vrange must be (lo, hi) with lo < hi, got {vrange!r}")
    import matplotlib.pyplot as plt

    n = len(panels)
    ncols = ncols or n
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size * ncols + 0.4 * ncols, panel_size * nrows + 0.3),
                             dpi=100, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (title, img) in zip(axes.flat, panels.items()):
        t = torch.as_tensor(img).detach().cpu().float()
        if t.dim() == 3:
            ax.imshow(t.clamp(0, 1).permute(1, 2, 0).numpy(), interpolation="nearest")
        else:
            kw = {}
            if vrange is not None:
                kw = {"vmin": vrange[0], "vmax": vrange[1]}
            elif symmetric:
                m = t.abs().max().item() or 1.0
                kw = {"vmin": -m, "vmax": m}
            im = ax.imshow(t.numpy(), cmap=cmap, interpolation="nearest", **kw)
            bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
            bar.ax.tick_params(labelsize=6)
            if colorbar_label:
                bar.set_label(colorbar_label, fontsize=7)
        ax.set_title(title, fontsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    return fig


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
