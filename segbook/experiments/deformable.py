r"""A small experiment where learned offsets help: "is the blob pair horizontal or vertical?".

Task (procedural, :func:`blob_pair_sample`): a ``1 x S x S`` image holds two small Gaussian blobs
``gap`` pixels apart (``gap`` drawn from ``[min_gap, max_gap]``, 9-12 by default), side by side
(class 0, "horizontal") or one above the other (class 1, "vertical"), at a random position, plus
pixel noise. Every blob is at least ``margin`` pixels from the border.

Models (:class:`TinyConvNet`): ``conv3x3 -> BN -> ReLU -> conv3x3 -> BN -> ReLU -> global average
pool -> linear``. The plain net's receptive field is 5x5 (radius 2), and the blobs are too far
apart for any unit to see both: each unit sees at most one blob, a blob looks the same in both
classes, and the border is out of reach (the margin), so the pooled features have the same
distribution for both classes and the plain net is stuck at chance *by construction*. The
deformable twin replaces the second conv by :class:`~segbook.nn.DeformConv2d` (same weights at
init, plus the zero-initialised offset branch): to solve the task it must learn to move its
sampling points several pixels out, to where the partner blob is, which is what the chapter plots
with :func:`~segbook.nn.sampling_points`.

What this shows and what it does not: offsets, learned from zero by plain gradient descent, give a
3x3 kernel a large and sparse receptive field. A dilated convolution with the right rate, a
deeper or downsampling net would also solve this task, and the demo trains the first of these as
its baseline (:meth:`TinyConvNet.dilated_twin`, rate 5 by default: from the midpoint of a pair,
its taps at +-5 px plus the first conv's +-1 px reach both blobs at every gap of 9-12 px, so the
fixed wide grid is given the reach the task needs, chosen by hand); the point is that the
deformable layer *finds* where to look, starting from a plain conv, and that where it looks
depends on the image:
after training, the taps of a unit centred on a blob fly out by several pixels (up to ~15), to where
a partner blob could be, while on empty background they stay close to the 3x3 grid (seed 0: mean
``|offset|`` 1.3 px, standard deviation across positions 1.6 px).

All three nets train through :func:`segbook.train.fit` (Adam: AdamW without weight decay, constant
learning rate, one pass over ``steps * batch_size`` fresh items of :class:`BlobPairs`) and are
scored with :func:`segbook.train.evaluate`.

Measured on the 2-core CPU (quick setting: 120 steps of 16 images, held-out test set of 256):

====  ===============  ====================  ==============
seed  plain test acc   deformable test acc   time (both)
====  ===============  ====================  ==============
0     0.449            1.000                 9 s
1     0.457            1.000                 16 s
2     0.512            1.000                 14 s
3     0.484            1.000                 13 s
4     0.438            1.000                 14 s
====  ===============  ====================  ==============

(times on a machine shared with other jobs; 6-9 s when quieter). The plain net stays at chance
even after 1500 steps of 32 images with 16 channels (0.484). The deformable net sits on a plateau
first (its offsets get almost no gradient while the partner blob is out of reach) and escapes
between about 60 and 80 steps depending on the seed, hence the default of 120.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..analysis import capture
from ..checks import positive_int
from ..data.synthetic import make_loader
from ..nn.deform import DeformConv2d, regular_grid
from ..parallel import fit_many
from ..train import evaluate

__all__ = [
    "BLOB_PAIR_CLASSES",
    "blob_pair_sample",
    "blob_pair_batch",
    "BlobPairs",
    "TinyConvNet",
    "DeformDemoResult",
    "train_deformable_demo",
    "TapStudy",
    "deformable_taps",
]

BLOB_PAIR_CLASSES = ("horizontal", "vertical")
_SPLITS = {"train": 0, "test": 1}


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return x ^ (x >> 31)


def _generator(seed: int, index: int, split: str) -> torch.Generator:
    for value, name in ((seed, "seed"), (index, "index")):
        if positive_int(value, name, minimum=0) >= 2**31:
            raise ValueError(f"{name} must be an int in [0, 2**31), got {value!r}")
    if split not in _SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    # torch's CPU generator keeps only the low 32 bits of its seed, so packing (seed, split, index)
    # into the high bits would repeat streams; hash the triple down to 32 well-mixed bits instead.
    key = _splitmix64(_splitmix64(_splitmix64(seed) ^ _SPLITS[split]) ^ index)
    return torch.Generator().manual_seed(key & 0xFFFFFFFF)


def blob_pair_sample(
    seed: int,
    index: int,
    *,
    split: str = "train",
    size: int = 22,
    min_gap: float = 9.0,
    max_gap: float = 12.0,
    sigma: float = 0.8,
    margin: float = 5.0,
    noise: float = 0.05,
) -> tuple[torch.Tensor, int]:
    """Item ``index`` of the blob-pair task: a pure function of ``(seed, index, split)``.

    Returns:
        ``(image, label)``: float32 ``[1, size, size]`` and ``0`` (horizontal) or ``1`` (vertical).

    Each blob is ``exp(-|p - c|^2 / (2 sigma^2))`` with centre ``c``; the two centres are ``gap``
    apart along x (class 0) or y (class 1) and both lie at least ``margin`` from the border.
    Raises ``ValueError`` when the pair cannot fit (``size < 2 margin + max_gap``).
    """
    if not 0 < min_gap <= max_gap or sigma <= 0 or margin < 0 or noise < 0:
        raise ValueError("need 0 < min_gap <= max_gap, sigma > 0, margin >= 0, noise >= 0")
    if size < 2 * margin + max_gap:
        raise ValueError(f"size={size} is too small for margin={margin} and max_gap={max_gap}")
    g = _generator(seed, index, split)
    u = torch.rand(4, generator=g, dtype=torch.float64).tolist()
    label = int(u[0] < 0.5)
    gap = min_gap + (max_gap - min_gap) * u[1]
    along = margin + (size - 2 * margin - gap) * u[2]        # first centre, along the pair axis
    across = margin + (size - 2 * margin) * u[3]             # both centres, across it
    centres = [(across, along), (across, along + gap)]       # (y, x) for a horizontal pair
    if label == 1:
        centres = [(x, y) for y, x in centres]
    coords = torch.arange(size, dtype=torch.float32)
    image = torch.zeros(size, size)
    for cy, cx in centres:
        image += torch.exp(-((coords[:, None] - cy) ** 2 + (coords[None, :] - cx) ** 2) / (2 * sigma**2))
    image += noise * torch.randn(size, size, generator=g)
    return image[None], label


def blob_pair_batch(seed: int, start: int, n: int, *, split: str = "train", **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """Items ``start .. start + n - 1`` stacked: images ``[n, 1, S, S]``, labels int64 ``[n]``."""
    positive_int(n, "n")
    items = [blob_pair_sample(seed, start + i, split=split, **kwargs) for i in range(n)]
    return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items], dtype=torch.long)


class BlobPairs(Dataset):
    """Items ``start .. start + n - 1`` of the blob-pair task as a dataset (rendered once).

    Items: ``(image float32 [1, S, S], label int64 scalar)``; ``kwargs`` go to :func:`blob_pair_sample`.
    """

    classes = BLOB_PAIR_CLASSES

    def __init__(self, n: int, *, seed: int = 0, split: str = "train", start: int = 0, **kwargs) -> None:
        self.images, self.labels = blob_pair_batch(seed, start, n, split=split, **kwargs)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.labels[i]


class TinyConvNet(nn.Module):
    """``conv3x3-BN-ReLU -> conv3x3-BN-ReLU -> global average pool -> linear``: ``[N, C, H, W] -> [N, K]``.

    With ``deformable=True`` the second conv is a :class:`~segbook.nn.DeformConv2d` (attribute
    :attr:`deform`; None for the plain net); with ``dilation=d`` it is a 3x3 conv with dilation
    ``d`` (padding ``d``, same output size); everything else is identical. Use
    :meth:`deformable_twin` or :meth:`dilated_twin` to get such a copy of a plain net with the
    same weights.
    """

    def __init__(self, *, in_channels: int = 1, channels: int = 8, num_classes: int = 2,
                 deformable: bool = False, dilation: int = 1) -> None:
        super().__init__()
        dilation = positive_int(dilation, "dilation")
        if deformable and dilation != 1:
            raise ValueError("a TinyConvNet is either deformable or dilated: pass deformable=True or dilation=d, "
                             "not both")
        self.conv1 = nn.Conv2d(in_channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2: nn.Module = (DeformConv2d(channels, channels, 3, bias=False) if deformable
                                 else nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation,
                                                bias=False))
        self.bn2 = nn.BatchNorm2d(channels)
        self.fc = nn.Linear(channels, num_classes)

    @property
    def deform(self) -> Optional[DeformConv2d]:
        """The deformable layer, or None for the plain net."""
        return self.conv2 if isinstance(self.conv2, DeformConv2d) else None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"TinyConvNet expects a 4-D input [N, C, H, W], got shape {tuple(x.shape)}")
        x = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))

    def deformable_twin(self) -> "TinyConvNet":
        """A deep copy whose second conv is deformable with the same weights (zero offsets)."""
        if self.deform is not None:
            raise ValueError("this net is already deformable")
        twin = copy.deepcopy(self)
        twin.conv2 = DeformConv2d.from_conv(self.conv2)
        return twin

    def dilated_twin(self, dilation: int) -> "TinyConvNet":
        """A deep copy whose second conv has dilation ``dilation`` (padding ``dilation``), same weights.

        The fixed-grid baseline of the deformable twin: the same 9 taps per channel, spread
        ``dilation`` pixels apart instead of learned.
        """
        dilation = positive_int(dilation, "dilation")
        if self.deform is not None or self.conv2.dilation != (1, 1):
            raise ValueError("dilated_twin needs a plain net (a 3x3 conv with dilation 1 as conv2)")
        twin = copy.deepcopy(self)
        twin.conv2 = nn.Conv2d(self.conv2.in_channels, self.conv2.out_channels, 3, padding=dilation,
                               dilation=dilation, bias=False)
        with torch.no_grad():
            twin.conv2.weight.copy_(self.conv2.weight)
        return twin


@dataclass
class DeformDemoResult:
    """What :func:`train_deformable_demo` returns (models in eval mode, on ``device``)."""

    seed: int
    steps: int
    plain_accuracy: float
    plain_loss: float
    deform_accuracy: float
    deform_loss: float
    plain_model: TinyConvNet
    deform_model: TinyConvNet
    plain_history: list[float] = field(default_factory=list)   #: training loss per step
    deform_history: list[float] = field(default_factory=list)
    seconds: float = 0.0                                       #: wall time of all the trainings
    dilation: Optional[int] = None                             #: the dilated baseline's rate (None: not trained)
    dilated_accuracy: Optional[float] = None
    dilated_loss: Optional[float] = None
    dilated_model: Optional[TinyConvNet] = None
    dilated_history: list[float] = field(default_factory=list)
    test_images: Optional[torch.Tensor] = None                 #: the first 16 test images, CPU
    test_labels: Optional[torch.Tensor] = None

    def __repr__(self) -> str:
        dilated = ("" if self.dilation is None else
                   f", dilated (rate {self.dilation}) acc={self.dilated_accuracy:.3f} loss={self.dilated_loss:.3f}")
        return (f"DeformDemoResult(seed={self.seed}, steps={self.steps}, plain acc={self.plain_accuracy:.3f} "
                f"loss={self.plain_loss:.3f}, deformable acc={self.deform_accuracy:.3f} "
                f"loss={self.deform_loss:.3f}{dilated}, {self.seconds:.1f}s)")


def train_deformable_demo(
    seed: int = 0,
    steps: int = 120,
    *,
    batch_size: int = 16,
    lr: float = 1e-2,
    channels: int = 8,
    test_size: int = 256,
    device: Union[str, torch.device, None] = None,
    num_threads: Optional[int] = 1,
    dilation: Optional[int] = 5,
    workers: Optional[int] = None,
    **data_kwargs,
) -> DeformDemoResult:
    """Train the plain net, its deformable twin and a dilated twin on the blob-pair task; evaluate
    on held-out items.

    The nets start from the *same* weights (the twins are built with
    :meth:`TinyConvNet.deformable_twin`, its offsets zero, and :meth:`TinyConvNet.dilated_twin`
    with rate ``dilation``; ``None`` trains no dilated baseline) and see the same batches: training item
    ``i`` is ``blob_pair_sample(seed, i)``, test items come from ``split="test"``. Training runs
    through :func:`segbook.train.fit`: Adam (AdamW with no weight decay) at a constant ``lr``,
    ``steps`` steps of ``batch_size`` images, one pass over fresh items. The global torch RNG is
    left untouched (the initialisation runs under ``torch.random.fork_rng`` and ``fit`` is called
    with ``seed=None``), and on a CPU the result is deterministic for a seed.

    Quick setting (the defaults: 120 steps x 16 images of 22x22) takes about 10-15 s on a 2-core CPU;
    pass more ``steps`` on a GPU. On the CPU the training runs with ``num_threads`` intra-op
    threads (1 by default, restored afterwards): these nets are far too small to gain from more,
    and torchvision's CPU ``deform_conv2d`` slowed down 5-7x with 2 threads on a busy 2-core machine
    (``None`` keeps torch's setting). On a multi-core Linux CPU the nets train at once, one
    process each (:func:`segbook.parallel.fit_many`; ``workers=1`` trains them one after another in
    this process, with the same numbers). ``data_kwargs`` go to :func:`blob_pair_sample` (``size``,
    ``min_gap``, ``max_gap``, ``sigma``, ``margin``, ``noise``).

    Then, e.g.::

        res = train_deformable_demo(seed=0)
        layer = res.deform_model.deform
        with capture(layer.offset) as got:                 # segbook.analysis.capture
            res.deform_model(res.test_images[:1].to(device))
        pts = layer.sampling_points(got[""][0])            # [1, 22, 22, 9, 2], (y, x)
    """
    for value, name in ((steps, "steps"), (batch_size, "batch_size"), (test_size, "test_size")):
        positive_int(value, name)
    device = torch.device("cpu" if device is None else device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        plain = TinyConvNet(channels=channels)
        deform = plain.deformable_twin()
        nets = {"plain": plain, "deformable": deform}
        if dilation is not None:
            nets["dilated"] = plain.dilated_twin(dilation)
    # Training item i is blob_pair_sample(seed, i): step s sees items s*B .. s*B + B - 1, in order.
    train_set = BlobPairs(steps * batch_size, seed=seed, **data_kwargs)
    test_set = BlobPairs(test_size, seed=seed, split="test", **data_kwargs)
    test_loader = make_loader(test_set, 128)
    old_threads = torch.get_num_threads()
    if device.type == "cpu" and num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        t0 = time.perf_counter()
        # one process per core on a multi-core CPU (the numbers of a one-thread run, fit_many)
        hist = fit_many(nets, lambda: make_loader(train_set, batch_size), workers=workers,
                        task="classification", num_classes=2, epochs=1, lr=lr, weight_decay=0.0,
                        optimizer="adamw", schedule=None, device=device, seed=None, progress=False, log=False)
        seconds = time.perf_counter() - t0
        scores = {name: evaluate(model, test_loader, task="classification", num_classes=2, device=device)
                  for name, model in nets.items()}
    finally:
        torch.set_num_threads(old_threads)
    return DeformDemoResult(
        seed=seed, steps=steps, plain_accuracy=scores["plain"]["accuracy"], plain_loss=scores["plain"]["loss"],
        deform_accuracy=scores["deformable"]["accuracy"], deform_loss=scores["deformable"]["loss"],
        plain_model=plain, deform_model=deform, plain_history=hist["plain"].step_loss,
        deform_history=hist["deformable"].step_loss, seconds=seconds,
        test_images=test_set.images[:16], test_labels=test_set.labels[:16],
        **({} if dilation is None else dict(
            dilation=dilation, dilated_accuracy=scores["dilated"]["accuracy"], dilated_loss=scores["dilated"]["loss"],
            dilated_model=nets["dilated"], dilated_history=hist["dilated"].step_loss)),
    )


@dataclass
class TapStudy:
    """Where a trained :class:`TinyConvNet`'s deformable layer samples on one image.

    Attributes:
        image: the image's first channel ``[H, W]`` (CPU).
        points: the learned taps ``[H, W, k*k, 2]`` as ``(y, x)`` input coordinates.
        grid: the plain convolution's taps at the same outputs ``[H, W, k*k, 2]``.
        blobs: ``((y, x), (y, x))``: the brightest pixel, then the brightest pixel outside a 7x7
            window around it (the two blob centres of a :func:`blob_pair_sample` image).
        shift: ``[H, W]`` mean length in pixels of the learned offsets of each output's taps.
        far_px: outputs farther than this from both blob centres count as "away from the blobs".
        far: ``[H, W]`` bool, the outputs away from the blobs.
    """

    image: torch.Tensor
    points: torch.Tensor
    grid: torch.Tensor
    blobs: tuple
    shift: torch.Tensor
    far_px: int
    far: torch.Tensor

    @property
    def offset_blob(self) -> float:
        """Mean tap shift (pixels) at the two blob centres."""
        (y1, x1), (y2, x2) = self.blobs
        return (self.shift[y1, x1] + self.shift[y2, x2]).item() / 2

    @property
    def offset_far(self) -> float:
        """Mean tap shift (pixels) over the outputs away from the blobs."""
        return self.shift[self.far].mean().item()

    @property
    def blob_taps(self) -> torch.Tensor:
        """The learned taps of the two blob centres ``[2, k*k, 2]``."""
        return torch.stack([self.points[self.blobs[0]], self.points[self.blobs[1]]])

    @property
    def outside(self) -> int:
        """How many of :attr:`blob_taps` read outside the image, where the (zero-padded) input is 0."""
        h, w = self.points.shape[:2]
        taps = self.blob_taps
        out = (taps[..., 0] < 0) | (taps[..., 0] > h - 1) | (taps[..., 1] < 0) | (taps[..., 1] > w - 1)
        return int(out.sum().item())


@torch.inference_mode()
def deformable_taps(model: TinyConvNet, image: torch.Tensor, *, far_px: int = 4) -> TapStudy:
    """Record where ``model.deform`` samples on ``image [C, H, W]`` (one blob-pair test image).

    Runs ``model`` once, captures the offsets its offset convolution predicts
    (``[1, 2*k*k, H, W]``), turns them into tap coordinates with
    :meth:`~segbook.nn.DeformConv2d.sampling_points`, finds the two blob centres and measures the
    mean offset length per output. Chapter 1 draws ``points`` against ``grid`` and compares the
    shift at the blobs with the shift elsewhere (:class:`TapStudy`).
    """
    if not isinstance(model, TinyConvNet) or not isinstance(getattr(model, "deform", None), DeformConv2d):
        raise TypeError("model must be a TinyConvNet with a deformable layer (train_deformable_demo's deform_model)")
    if not isinstance(image, torch.Tensor) or image.dim() != 3:
        raise ValueError(f"image must be one image [C, H, W], got {getattr(image, 'shape', type(image))}")
    far_px = positive_int(far_px, "far_px", minimum=0)
    layer = model.deform
    img = image.unsqueeze(0)
    device = next(model.parameters()).device
    with capture(layer.offset) as got:
        model.eval()(img.to(device))
    offsets = got[""][0]                              # [1, 2*k*k, H, W]
    points = layer.sampling_points(offsets)[0].cpu()  # [H, W, k*k, 2]
    h, w, taps = points.shape[:3]
    grid = regular_grid((h, w), layer.kernel_size, layer.stride, layer.padding, layer.dilation)
    plane = img[0, 0].cpu()
    blob1 = divmod(int(plane.argmax()), w)
    masked = plane.clone()
    masked[max(0, blob1[0] - 3):blob1[0] + 4, max(0, blob1[1] - 3):blob1[1] + 4] = -1
    blob2 = divmod(int(masked.argmax()), w)
    shift = offsets[0].cpu().reshape(taps, 2, h, w).norm(dim=1).mean(0)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    far = torch.stack([(yy - by) ** 2 + (xx - bx) ** 2 for by, bx in (blob1, blob2)]).min(0).values > far_px ** 2
    return TapStudy(image=plane, points=points, grid=grid, blobs=(blob1, blob2), shift=shift, far_px=far_px,
                    far=far)
