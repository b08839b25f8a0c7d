"""Architecture diagrams drawn from the modules themselves: boxes and arrows in matplotlib.

Each function takes a built module (or builds the book's default one) and reads what it draws from
it -- the convolutions' kernel sizes and channel counts, the branches, the skips -- so a
diagram cannot disagree with the code the chapter trains. Every function returns a matplotlib
``Figure`` sized for the book's text column (:data:`segbook.viz.BOOK_FIGURE_WIDTH` inches wide at
most), with 9-10 pt text.

Flow is bottom to top (input at the bottom, as in the papers' figures) or down and back up for
the U-Net. Colours mark the kind of operation: convolutions blue, pooling orange, merges
(concatenations) green, inputs and outputs white.

=============================  ==========================================================
:func:`transposed_conv_diagram` how a transposed convolution scatters its input (overlaps)
:func:`unet_diagram`           U-Net: encoder, bottom, decoder, skips, with every map's side
:func:`deeplab_diagram`        DeepLab v3/v3+: dilated backbone, ASPP branches, decoder
=============================  ==========================================================

:func:`figure_text` returns every string drawn in a figure (the tests use it to check that the
diagram shows the module's real numbers).
"""
from __future__ import annotations

from typing import Optional

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch
from matplotlib.text import Text
from torch import nn

__all__ = [
    "figure_text",
    "transposed_conv_diagram",
    "unet_diagram",
    "deeplab_diagram",
]

_COLOURS = {"conv": "#cfe2f3", "pool": "#fce5cd", "merge": "#d9ead3", "io": "#ffffff"}
_MAX_WIDTH = 6.4  # inches; segbook.viz.BOOK_FIGURE_WIDTH (not imported: viz imports torch-heavy helpers lazily)
_FONT = 9


# ----------------------------------------------------------------------------------------------
# A tiny drawing kit: a canvas in inches, boxes, arrows
# ----------------------------------------------------------------------------------------------
class _Box:
    """A drawn box: centre ``(x, y)``, size ``w x h`` (data units = inches)."""

    def __init__(self, x: float, y: float, w: float, h: float) -> None:
        self.x, self.y, self.w, self.h = x, y, w, h

    @property
    def top(self):
        return (self.x, self.y + self.h / 2)

    @property
    def bottom(self):
        return (self.x, self.y - self.h / 2)

    @property
    def left(self):
        return (self.x - self.w / 2, self.y)

    @property
    def right(self):
        return (self.x + self.w / 2, self.y)


def _canvas(width: float, height: float, title: Optional[str] = None):
    """A figure whose data coordinates are inches: ``[0, width] x [0, height]``."""
    fig = plt.figure(figsize=(width, height + (0.35 if title else 0.0)))
    ax = fig.add_axes((0, 0, 1, height / (height + (0.35 if title else 0.0))))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=_FONT + 1, y=0.99, va="top")
    return fig, ax


def _box(ax, x: float, y: float, text: str, *, kind: str = "conv", w: float = 1.5, h: float = 0.42,
         fontsize: float = _FONT) -> _Box:
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0,rounding_size=0.06",
                                fc=_COLOURS[kind], ec="0.35", lw=0.8))
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize)
    return _Box(x, y, w, h)


def _arrow(ax, start, end, *, rad: float = 0.0, text: Optional[str] = None, text_offset=(0.0, 0.0),
           color: str = "0.25", fontsize: float = _FONT - 1) -> None:
    ax.annotate("", xy=end, xytext=start,
                arrowprops=dict(arrowstyle="-|>", color=color, lw=0.9, shrinkA=0, shrinkB=0,
                                mutation_scale=9, connectionstyle=f"arc3,rad={rad}"))
    if text:
        mx, my = (start[0] + end[0]) / 2 + text_offset[0], (start[1] + end[1]) / 2 + text_offset[1]
        ax.text(mx, my, text, ha="center", va="center", fontsize=fontsize, color="0.2",
                bbox=dict(fc="white", ec="none", pad=0.5))


def figure_text(fig: Figure) -> str:
    """Every string drawn in ``fig`` (titles, labels, box texts), joined by newlines."""
    return "\n".join(t.get_text() for t in fig.findobj(Text) if t.get_text())


def _conv_label(conv: nn.Conv2d) -> str:
    k = conv.kernel_size[0] if conv.kernel_size[0] == conv.kernel_size[1] else None
    size = f"{k}×{k}" if k else "×".join(map(str, conv.kernel_size))
    kind = " depthwise" if conv.groups == conv.in_channels and conv.groups > 1 else ""
    stride = f", stride {conv.stride[0]}" if conv.stride[0] != 1 else ""
    return f"{size}{kind} conv, {conv.out_channels}{stride}"


def _last_conv(module: nn.Module) -> nn.Conv2d:
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"{type(module).__name__} has no convolution to read channels from")
    return convs[-1]


# ----------------------------------------------------------------------------------------------
# Chapter 3: upsampling
# ----------------------------------------------------------------------------------------------
def transposed_conv_diagram(layer: Optional[nn.Module] = None, *, in_size: int = 4) -> Figure:
    """How a transposed convolution scatters: each input pixel writes a ``k x k`` copy of the
    kernel into the output, ``stride`` pixels apart; where copies overlap, outputs sum more terms.

    The overlap count of each output pixel is computed, not drawn by hand: it is the transposed
    convolution (with the layer's kernel size, stride, padding, output padding and dilation) of
    an all-ones input with an all-ones kernel. When ``k`` is not divisible by ``stride`` the counts
    alternate -- the checkerboard pattern of Odena et al. (2016).

    Args:
        layer: an ``nn.ConvTranspose2d`` (default: kernel 3, stride 2, as in the checkerboard
            example).
        in_size: input side length drawn (``in_size x in_size``; a row of ``in_size`` in the 1-D panel).

    Returns:
        The ``Figure``: left, one row of inputs scattering into one row of outputs (lines coloured
        by input pixel, each output annotated with its count); right, the 2-D count map with a
        colour bar.
    """
    if layer is None:
        layer = nn.ConvTranspose2d(1, 1, 3, stride=2)
    if not isinstance(layer, nn.ConvTranspose2d):
        raise TypeError(f"expected an nn.ConvTranspose2d, got {type(layer).__name__}")
    if in_size < 1:
        raise ValueError(f"in_size must be >= 1, got {in_size}")
    k, s, p = layer.kernel_size[0], layer.stride[0], layer.padding[0]
    op, d = layer.output_padding[0], layer.dilation[0]
    ones = torch.ones(1, 1, in_size, in_size)
    counts = F.conv_transpose2d(ones, torch.ones(1, 1, k, k), stride=s, padding=p, output_padding=op,
                                dilation=d)[0, 0].round().to(torch.int64).numpy()
    n_out = counts.shape[-1]
    fig = plt.figure(figsize=(_MAX_WIDTH, 2.9))
    fig.suptitle(f"Transposed convolution, k={k}, s={s}" + (f", p={p}" if p else "") + ": "
                 f"{in_size} → {n_out} pixels per side", fontsize=_FONT + 1, y=0.99, va="top")
    ax = fig.add_axes((0.01, 0.02, 0.58, 0.82))
    ax.axis("off")
    cell = min(0.32, 3.5 / n_out)
    ax.set_xlim(0, cell * n_out + 0.2)
    ax.set_ylim(-0.35, 1.55)
    x_in0 = 0.1 + (cell * n_out - cell * in_size * s) / 2
    row_counts = F.conv_transpose1d(torch.ones(1, 1, in_size), torch.ones(1, 1, k), stride=s, padding=p,
                                    output_padding=op, dilation=d)[0, 0].round().to(torch.int64).numpy()
    for i in range(in_size):
        colour = plt.cm.tab10(i % 10)
        xi = x_in0 + cell * s * i + cell * s / 2
        ax.add_patch(plt.Rectangle((xi - cell / 2, 1.2), cell, cell, fc=colour, ec="0.3", alpha=0.8))
        for j in range(k):
            o = i * s - p + j * d
            if 0 <= o < n_out:
                ax.plot([xi, 0.1 + cell * o + cell / 2], [1.2, 0.35 + cell], color=colour, lw=1.0)
    for o in range(n_out):
        ax.add_patch(plt.Rectangle((0.1 + cell * o, 0.35), cell, cell, fc=plt.cm.Greys(0.15 + 0.2 * row_counts[o]),
                                   ec="0.3"))
        ax.text(0.1 + cell * o + cell / 2, 0.35 + cell / 2, str(row_counts[o]), ha="center", va="center",
                fontsize=_FONT - 1, color="white" if row_counts[o] >= 3 else "black")
    ax.text(0.1, 1.2 + cell + 0.08, f"input row ({in_size} px)", fontsize=_FONT - 1, va="bottom")
    ax.text(0.1, 0.3, f"output row ({n_out} px): number of inputs written to each", fontsize=_FONT - 1, va="top")
    ax2 = fig.add_axes((0.63, 0.08, 0.3, 0.72))
    im = ax2.imshow(counts, cmap="Greys", vmin=0, vmax=max(1, int(counts.max())), interpolation="nearest")
    ax2.set_xticks([])
    ax2.set_yticks([])
    ax2.set_title("overlaps in 2-D", fontsize=_FONT)
    bar = fig.colorbar(im, ax=ax2, fraction=0.05, pad=0.04, ticks=sorted(set(counts.ravel().tolist())))
    bar.ax.tick_params(labelsize=_FONT - 1)
    bar.set_label("inputs summed", fontsize=_FONT - 1)
    return fig


# ----------------------------------------------------------------------------------------------
# Chapter 4: U-Net
# ----------------------------------------------------------------------------------------------
def _double_conv_label(block: nn.Module) -> str:
    """``"2× 3×3 conv, 64 ch"``: how many convolutions ``block`` has, their kernel and output width."""
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"{type(block).__name__} has no convolution to read channels from")
    kh, kw = convs[0].kernel_size
    return f"{len(convs)}× {kh}×{kw} conv, {convs[-1].out_channels} ch"


def _up_label(block: nn.Module) -> str:
    """``"up-conv 2×2"`` (transposed), ``"bilinear ×2, 3×3 conv"`` (or nearest), or ``"pixel
    shuffle ×2"``, with the output channels; read from the block's own upsampling kind."""
    up = block.up
    if isinstance(up, nn.ConvTranspose2d):
        k = up.kernel_size[0]
        return f"up-conv {k}×{k}\n→ {up.out_channels} ch"
    conv = _last_conv(up)
    k = conv.kernel_size[0]
    kind = getattr(block, "upsampling", "bilinear")
    if kind in ("nearest", "bilinear"):
        return f"{kind} ×2,\n{k}×{k} conv → {conv.out_channels} ch"
    return f"{kind.replace('pixelshuffle', 'pixel shuffle')} ×2\n→ {conv.out_channels // 4} ch"


def unet_diagram(model: Optional[nn.Module] = None, *, input_size: Optional[int] = None) -> Figure:
    """The U-Net of Ronneberger et al. (2015, Fig. 1) drawn from a built :class:`~segbook.models.unet.UNet`.

    The encoder goes down on the left (each level's convolutions, then a 2x2 max pooling), the
    bottom level joins the two paths, and the decoder climbs back up on the right (upsampling,
    concatenation with the skip of the same level, convolutions), ending in the 1x1 head. Every
    number is read from the module or computed: channels and kernels from each level's
    convolutions (``model.encoder``, ``model.bottom``, ``model.decoder``, ``model.head``), the
    upsampling from the decoder blocks (``up-conv 2×2`` or ``bilinear ×2`` + conv), and the side
    of every map from :func:`segbook.sizes.unet_trace` for an ``input_size x input_size`` input
    (``a → b`` where a level's convolutions change the side, i.e. with valid padding, and the
    skips' centre crop, ``crop 568 → 392``).

    Args:
        model: a :class:`~segbook.models.unet.UNet` (default: ``unet(num_classes=6, depth=3,
            width=8)``, 8/16/32/64 channels).
        input_size: side of the (square) input drawn. It must be a size the net takes as it is
            (a multiple of ``2^D`` with same padding; ``2^D k - 4`` and large enough with valid
            padding, e.g. 572 for :func:`~segbook.models.unet.unet_paper`): the diagram shows the
            net's own maps, not what an input policy pads or resizes. Default: 32 (or ``2^D`` if
            larger) with same padding; the first valid size from 572 up with valid padding.

    Returns:
        The ``Figure``, ``6.4`` inches wide at most.

    Raises:
        ValueError: ``model`` is not a ``UNet``, or ``input_size`` is not a size it takes (the
            message names the nearest sizes that work).
    """
    from .checks import positive_int
    from .models.unet import UNet, unet
    from .sizes import nearest_valid_unet_sizes, unet_output_size, unet_trace

    if model is None:
        model = unet(num_classes=6, depth=3, width=8)
    if not isinstance(model, UNet):
        raise ValueError(f"unet_diagram expects a segbook.models.unet.UNet (e.g. unet() or unet_paper()), "
                         f"got {type(model).__name__}")
    depth, padding = model.depth, model.padding
    if input_size is None:
        input_size = (max(32, 2 ** depth) if padding == "same"
                      else nearest_valid_unet_sizes(572, depth, padding)[1])
    positive_int(input_size, "input_size")
    try:
        unet_output_size(input_size, depth, padding)  # raises naming the nearest sizes that work
    except ValueError as err:
        raise ValueError(f"input_size {input_size} does not go through this U-Net: {err}") from None
    trace = unet_trace(input_size, depth, padding)
    side = {step.name: step.size for step in trace.steps}

    def sides(n_in: int, n_out: int) -> str:
        return f"{n_out}×{n_out}" if n_in == n_out else f"{n_in}×{n_in} → {n_out}×{n_out}"

    row, w, h = 0.78, 1.5, 0.46
    height = row * (depth + 2) + 0.05
    out_size = trace.output_size
    fig, ax = _canvas(_MAX_WIDTH, height, title=f"U-Net: depth {depth}, {padding} padding, "
                                                f"{input_size}×{input_size} → {out_size}×{out_size}")
    step = min(0.4, 0.8 / max(1, depth - 1))  # how far each level moves in: the U
    x_enc = [0.8 + step * level for level in range(depth)]
    x_dec = [_MAX_WIDTH - 0.8 - step * level for level in range(depth)]
    y_level = [height - row * (level + 1.5) for level in range(depth + 1)]
    label = dict(fontsize=_FONT - 1, color="0.2", va="center")
    skip_colour = "#38761d"

    prev = _box(ax, x_enc[0], height - row * 0.5, f"input, {model.in_channels} ch\n{input_size}×{input_size}",
                kind="io", w=w, h=h, fontsize=_FONT - 1)
    pool_k = model.pool.kernel_size if isinstance(model.pool.kernel_size, int) else model.pool.kernel_size[0]
    enc_boxes = []
    for level, block in enumerate(model.encoder):
        n_in = input_size if level == 0 else side[f"pool{level - 1}"]
        text = f"{_double_conv_label(block)}\n{sides(n_in, side[f'enc{level} convs'])}"
        b = _box(ax, x_enc[level], y_level[level], text, kind="conv", w=w, h=h, fontsize=_FONT - 1)
        if level == 0:
            _arrow(ax, prev.bottom, b.top)
        else:
            _arrow(ax, (prev.x, prev.bottom[1]), (prev.x, b.top[1]))
            ax.text(prev.x + 0.08, (prev.bottom[1] + b.top[1]) / 2, f"{pool_k}×{pool_k} max pool", ha="left", **label)
        enc_boxes.append(prev := b)
    # the bottom level spans the U's floor, under the deepest encoder and decoder levels
    bw = x_dec[-1] - x_enc[-1] + 0.6
    bottom = _box(ax, _MAX_WIDTH / 2, y_level[depth],
                  f"{_double_conv_label(model.bottom)}\n{sides(side[f'pool{depth - 1}'], side['bottom convs'])}",
                  kind="conv", w=bw, h=h, fontsize=_FONT - 1)
    _arrow(ax, (prev.x, prev.bottom[1]), (prev.x, bottom.top[1]))
    ax.text(prev.x + 0.08, (prev.bottom[1] + bottom.top[1]) / 2, f"{pool_k}×{pool_k} max pool", ha="left", **label)
    below_x, below_top = x_dec[-1], bottom.top[1]
    for block, level in zip(model.decoder, reversed(range(depth))):
        n_up, skip = side[f"up{level}"], side[f"enc{level} convs"]
        text = f"{_double_conv_label(block.convs)}\n{sides(n_up, side[f'dec{level} convs'])}"
        b = _box(ax, x_dec[level], y_level[level], text, kind="conv", w=w, h=h, fontsize=_FONT - 1)
        _arrow(ax, (below_x, below_top), (below_x, b.bottom[1]))
        ax.text(below_x - 0.08, (below_top + b.bottom[1]) / 2, _up_label(block), ha="right", **label)
        first = next(m for m in block.convs.modules() if isinstance(m, nn.Conv2d))  # reads [skip, up]
        text = f"concat → {first.in_channels} ch"
        if skip != n_up:
            text = f"crop {skip} → {n_up}\n" + text
        _arrow(ax, enc_boxes[level].right, b.left, color=skip_colour, text=text)
        below_x, below_top = b.x, b.top[1]
    head = model.head
    out = _box(ax, x_dec[0], height - row * 0.5,
               f"{head.kernel_size[0]}×{head.kernel_size[1]} conv → {head.out_channels} classes\n"
               f"{out_size}×{out_size}", kind="io", w=w, h=h, fontsize=_FONT - 1)
    _arrow(ax, (below_x, below_top), out.bottom)
    return fig


# ----------------------------------------------------------------------------------------------
# Chapter 5: DeepLab
# ----------------------------------------------------------------------------------------------
def _aspp_branch_label(branch: nn.Module) -> str:
    convs = [m for m in branch.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"ASPP branch {type(branch).__name__} has no convolution")
    first, last = convs[0], convs[-1]
    if isinstance(getattr(branch, "pool", None), nn.AdaptiveAvgPool2d):
        return f"image pooling\n+ 1×1 conv, {last.out_channels}"
    k = first.kernel_size[0]
    kind = " sep." if first.groups == first.in_channels and first.groups > 1 else ""
    rate = f", rate {first.dilation[0]}" if k > 1 else ""
    return f"{k}×{k}{kind} conv{rate}\n{last.out_channels} ch"


def deeplab_diagram(model: Optional[nn.Module] = None) -> Figure:
    """DeepLab v3 or v3+ (Chen et al. 2017 Fig. 5, 2018 Fig. 2): dilated backbone, ASPP and decoder.

    Args:
        model: a :class:`~segbook.models.deeplab.DeepLab` (default: ``deeplabv3plus()`` at output
            stride 16 with the paper's rates 6, 12, 18). Everything drawn is read from it: each
            backbone stage's stride, channels and atrous rate (``backbone.strides``,
            ``backbone.channels``, ``backbone.dilations``), every ASPP branch's kernel, rate and
            width (``model.aspp.branches``), the projection width, and for v3+ the decoder's
            low-level reduction, fusion convolutions and classifier (``model.decoder``).

    Returns:
        The ``Figure``: the backbone bottom to top on the left, the parallel ASPP branches in the
        middle with their concatenation and 1x1 projection, then (v3+) the upsampling to output
        stride 4, the concatenation with the reduced ``layer1`` features and the fusion convs,
        or (v3) the head, and the final bilinear upsampling to the input size.
    """
    if model is None:
        from .models.deeplab import deeplabv3plus

        model = deeplabv3plus()
    if not all(hasattr(model, a) for a in ("backbone", "aspp", "decoder", "num_classes")):
        raise TypeError(f"expected a DeepLab model (backbone, aspp, decoder), got {type(model).__name__}")
    bb = model.backbone
    stages = [s for s in ("stem", "layer1", "layer2", "layer3", "layer4") if s in bb.channels]
    branches = list(model.aspp.branches.values())
    project = _last_conv(model.aspp.project)
    k = model.num_classes
    os_ = bb.strides["layer4"]
    plus = model.decoder is not None
    row = 0.62
    height = max(0.35 + row * (len(stages) + 1), 0.5 + 0.5 * len(branches) + 0.5) + 0.3
    title = f"DeepLab v3{'+' if plus else ''}, output stride {os_}"
    fig, ax = _canvas(_MAX_WIDTH, height, title=title)
    # backbone, bottom to top
    xb = 0.72
    prev = _box(ax, xb, 0.35, f"image, {bb.in_channels} ch", kind="io", w=1.3, h=0.4)
    boxes = {}
    for i, name in enumerate(stages):
        rate = bb.dilations.get(name, 1)
        text = f"{name} /{bb.strides[name]}\n{bb.channels[name]} ch" + (f", rate {rate}" if rate > 1 else "")
        b = _box(ax, xb, 0.35 + row * (i + 1), text, kind="pool" if rate == 1 else "conv", w=1.3, h=0.5,
                 fontsize=_FONT - 1)
        _arrow(ax, prev.top, b.bottom)
        prev = boxes[name] = b
    top4 = boxes[stages[-1]]
    # ASPP branches in a column
    xa = 2.3
    n = len(branches)
    ys = [height - 0.55 - 0.5 * i for i in range(n)]
    ax.text(xa, height - 0.2, "ASPP", ha="center", va="center", fontsize=_FONT + 1)
    bboxes = []
    for y, br in zip(ys, branches):
        b = _box(ax, xa, y, _aspp_branch_label(br), kind="pool" if hasattr(br, "pool") else "conv", w=1.45, h=0.42,
                 fontsize=_FONT - 1)
        _arrow(ax, top4.right, b.left)
        bboxes.append(b)
    ycat = sum(ys) / n
    cat_ch = sum(_last_conv(br).out_channels for br in branches)
    xp = 3.75
    proj = _box(ax, xp, ycat, f"concat, {cat_ch} ch\n1×1 conv, {project.out_channels}", kind="merge", w=1.2,
                h=0.62, fontsize=_FONT - 1)
    for b in bboxes:
        _arrow(ax, b.right, proj.left)
    xd = 5.5
    if plus:
        dec = model.decoder
        reduce = _last_conv(dec.reduce)
        fuse = [m for m in dec.fuse.modules() if isinstance(m, nn.Conv2d)]
        low_name = "layer1"
        low = boxes[low_name]
        up = _box(ax, xd, ycat, f"bilinear ×{os_ // bb.strides[low_name]}\nto /{bb.strides[low_name]}", kind="io",
                  w=1.3, h=0.5, fontsize=_FONT - 1)
        _arrow(ax, proj.right, up.left)
        red = _box(ax, xp, low.y, f"1×1 conv, {reduce.out_channels}\n(low-level)", kind="conv", w=1.2, h=0.5,
                   fontsize=_FONT - 1)
        _arrow(ax, low.right, red.left)
        ycat2 = low.y - 0.1
        cat2 = _box(ax, xd, (ycat + ycat2) / 2, f"concat, {project.out_channels + reduce.out_channels} ch", kind="merge",
                    w=1.3, h=0.4, fontsize=_FONT - 1)
        _arrow(ax, up.bottom, cat2.top)
        _arrow(ax, red.right, cat2.left)
        convs = [m for m in fuse if m.kernel_size[0] > 1 or m.groups == 1]
        ks = {c.kernel_size[0] for c in convs if c.kernel_size[0] > 1}
        n3 = sum(1 for c in convs if c.kernel_size[0] > 1)
        width = _last_conv(dec.fuse).out_channels
        sep = " sep." if any(c.groups == c.in_channels and c.groups > 1 for c in fuse) else ""
        kk = max(ks) if ks else 1
        fz = _box(ax, xd, ycat2, f"{n3}× {kk}×{kk}{sep} conv, {width}\n1×1 conv, {dec.classifier.out_channels}",
                  kind="conv", w=1.5, h=0.5, fontsize=_FONT - 1)
        _arrow(ax, cat2.bottom, fz.top)
        final_stride, last = bb.strides[low_name], fz
    else:
        head = [m for m in model.head.modules() if isinstance(m, nn.Conv2d)]
        hz = _box(ax, xd, ycat, "\n".join(_conv_label(c) for c in head), kind="conv", w=1.5, h=0.55,
                  fontsize=_FONT - 1)
        _arrow(ax, proj.right, hz.left)
        final_stride, last = os_, hz
    out = _box(ax, xd, 0.35, f"bilinear ×{final_stride}\n→ {k}×H×W", kind="io", w=1.3, h=0.5, fontsize=_FONT - 1)
    _arrow(ax, last.bottom, out.top)
    return fig

