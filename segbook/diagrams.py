"""Architecture diagrams drawn from the modules themselves: boxes and arrows in matplotlib.

Each function takes a built module (or builds the book's default one) and reads what it draws from
it -- the convolutions' kernel sizes and channel counts, the branches, the shortcut -- so a
diagram cannot disagree with the code the chapter trains. Every function returns a matplotlib
``Figure`` sized for the book's text column (:data:`segbook.viz.BOOK_FIGURE_WIDTH` inches wide at
most), with 9-10 pt text.

Flow is bottom to top for blocks (input at the bottom, as in the papers' figures) and left to
right for whole networks. Colours mark the kind of operation: convolutions blue, pooling orange,
normalisation/activation grey, merges (add, concatenate, multiply) green, fully connected purple.

=============================  ==========================================================
:func:`inception_diagram`      an :class:`~segbook.models.inception.Inception` module
:func:`residual_block_diagram` a plain block beside its residual twin (:class:`BasicBlock`)
:func:`dense_block_diagram`    a :class:`~segbook.models.densenet.DenseBlock`
:func:`se_block_diagram`       a :class:`~segbook.nn.SqueezeExcite` block
:func:`mbconv_diagram`         an :class:`~segbook.models.efficientnet.MBConv` block
:func:`fcn_skip_diagram`       FCN-32s/16s/8s: backbone strides, score layers, fusions
:func:`transposed_conv_diagram` how a transposed convolution scatters its input (overlaps)
:func:`unet_diagram`           U-Net: encoder, bottom, decoder, skips, with every map's side
:func:`deeplab_diagram`        DeepLab v3/v3+: dilated backbone, ASPP branches, decoder
=============================  ==========================================================

:func:`figure_text` returns every string drawn in a figure (the tests use it to check that the
diagram shows the module's real numbers).
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch
from matplotlib.text import Text
from torch import nn

__all__ = [
    "figure_text",
    "inception_diagram",
    "residual_block_diagram",
    "dense_block_diagram",
    "se_block_diagram",
    "mbconv_diagram",
    "fcn_skip_diagram",
    "transposed_conv_diagram",
    "unet_diagram",
    "deeplab_diagram",
]

_COLOURS = {"conv": "#cfe2f3", "pool": "#fce5cd", "norm": "#eeeeee", "merge": "#d9ead3", "io": "#ffffff",
            "fc": "#e4d7f0"}
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


def _merge(ax, x: float, y: float, symbol: str = "+", r: float = 0.16) -> _Box:
    """A round merge node: ``"+"`` (add), ``"×"`` (multiply)."""
    ax.add_patch(plt.Circle((x, y), r, fc=_COLOURS["merge"], ec="0.35", lw=0.8))
    ax.text(x, y, symbol, ha="center", va="center", fontsize=_FONT + 2)
    return _Box(x, y, 2 * r, 2 * r)


def _arrow(ax, start, end, *, rad: float = 0.0, text: Optional[str] = None, text_offset=(0.0, 0.0),
           color: str = "0.25", fontsize: float = _FONT - 1) -> None:
    ax.annotate("", xy=end, xytext=start,
                arrowprops=dict(arrowstyle="-|>", color=color, lw=0.9, shrinkA=0, shrinkB=0,
                                mutation_scale=9, connectionstyle=f"arc3,rad={rad}"))
    if text:
        mx, my = (start[0] + end[0]) / 2 + text_offset[0], (start[1] + end[1]) / 2 + text_offset[1]
        ax.text(mx, my, text, ha="center", va="center", fontsize=fontsize, color="0.2",
                bbox=dict(fc="white", ec="none", pad=0.5))


def _shortcut(ax, start: _Box, end: _Box, *, side: float, label: str) -> None:
    """A shortcut that leaves ``start`` sideways, runs up at ``x = side`` and enters ``end``."""
    x0, y0 = start.right if side > start.x else start.left
    x1, y1 = end.right if side > end.x else end.left
    ax.plot([x0, side, side], [y0, y0, y1], color="0.25", lw=0.9)
    _arrow(ax, (side, y1), (x1, y1))
    ax.text(side + (0.08 if side > start.x else -0.08), (y0 + y1) / 2, label, rotation=90,
            ha="left" if side > start.x else "right", va="center", fontsize=_FONT - 1, color="0.2")


def figure_text(fig: Figure) -> str:
    """Every string drawn in ``fig`` (titles, labels, box texts), joined by newlines."""
    return "\n".join(t.get_text() for t in fig.findobj(Text) if t.get_text())


def _conv_label(conv: nn.Conv2d) -> str:
    k = conv.kernel_size[0] if conv.kernel_size[0] == conv.kernel_size[1] else None
    size = f"{k}×{k}" if k else "×".join(map(str, conv.kernel_size))
    kind = " depthwise" if conv.groups == conv.in_channels and conv.groups > 1 else ""
    stride = f", stride {conv.stride[0]}" if conv.stride[0] != 1 else ""
    return f"{size}{kind} conv, {conv.out_channels}{stride}"


def _ops(module: nn.Module) -> list[tuple[str, str]]:
    """The convolutions and poolings of ``module`` in order, as ``(kind, label)``."""
    out = []
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            out.append(("conv", _conv_label(m)))
        elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
            name = "max" if isinstance(m, nn.MaxPool2d) else "avg"
            out.append(("pool", f"{k}×{k} {name} pool"))
    return out


def _last_conv(module: nn.Module) -> nn.Conv2d:
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"{type(module).__name__} has no convolution to read channels from")
    return convs[-1]


# ----------------------------------------------------------------------------------------------
# Chapter 1: backbones
# ----------------------------------------------------------------------------------------------
def inception_diagram(module: Optional[nn.Module] = None) -> Figure:
    """The four branches of an Inception module and their concatenation (GoogLeNet Fig. 2b).

    Args:
        module: an :class:`~segbook.models.inception.Inception` (default: GoogLeNet's 3a,
            ``192 -> 256`` channels). Branches are read from ``module.branch1..4``, so the
            "naive" module (``reductions=False``) shows no 1x1 reductions.

    Returns:
        The ``Figure``: input at the bottom, one column per branch, the concatenation on top
        with the branch widths summed (``64 + 128 + 32 + 32 = 256 ch`` for 3a).
    """
    if module is None:
        from .models.inception import inception_3a

        module = inception_3a()
    branches = [getattr(module, f"branch{i}", None) for i in range(1, 5)]
    if any(b is None for b in branches):
        raise TypeError(f"expected an Inception module with branch1..branch4, got {type(module).__name__}")
    ops = [_ops(b) for b in branches]
    widths = [_last_conv(b).out_channels for b in branches]
    depth = max(len(o) for o in ops)
    height = 0.3 + 0.7 * (depth + 1) + 0.35
    fig, ax = _canvas(_MAX_WIDTH, height, title=f"Inception module: {module.in_channels} → {sum(widths)} channels")
    inp = _box(ax, 3.2, 0.3, f"input, {module.in_channels} ch", kind="io", w=2.0)
    top = 0.3 + 0.7 * (depth + 1)
    cat = _box(ax, 3.2, top, "concatenate: " + " + ".join(map(str, widths)) + f" = {sum(widths)} ch",
               kind="merge", w=5.9)
    for col, branch_ops in enumerate(ops):
        x = 0.8 + 1.6 * col
        prev = None
        for row, (kind, label) in enumerate(branch_ops):
            b = _box(ax, x, 1.0 + 0.7 * row, label.replace(" conv, ", " conv\n") if len(label) > 15 else label,
                     kind=kind, w=1.45, h=0.48)
            _arrow(ax, inp.top if prev is None else prev.top, b.bottom)
            prev = b
        _arrow(ax, prev.top, (x, cat.bottom[1]))
    return fig


def residual_block_diagram(block: Optional[nn.Module] = None) -> Figure:
    """A plain two-layer block beside the same block with a shortcut (He et al. Fig. 2).

    Args:
        block: a :class:`~segbook.models.resnet.BasicBlock` (default ``BasicBlock(16, 16)``);
            both panels show its convolutions (``conv1``, ``conv2``: kernel, width, stride), its SE
            gate if it has one, and the right panel its shortcut (identity, zero-padding or 1x1
            projection, read from ``block.downsample``).

    Returns:
        The ``Figure``: left "plain: y = ReLU(F(x))", right "residual: y = ReLU(F(x) + x)".
    """
    if block is None:
        from .models.resnet import BasicBlock

        block = BasicBlock(16, 16)
    for name in ("conv1", "conv2"):
        if not isinstance(getattr(block, name, None), nn.Conv2d):
            raise TypeError(f"expected a BasicBlock with conv1 and conv2, got {type(block).__name__}")
    in_ch = block.conv1.in_channels
    layers = [("conv", _conv_label(block.conv1)), ("norm", "BN, ReLU"), ("conv", _conv_label(block.conv2)),
              ("norm", "BN")]
    if getattr(block, "se", None) is not None:
        layers.append(("fc", f"SE gate, {block.se.channels} → {block.se.hidden_channels} → {block.se.channels}"))
    down = getattr(block, "downsample", None)
    if down is None:
        short = "identity x"
    elif isinstance(down, nn.Sequential) and any(isinstance(m, nn.Conv2d) for m in down.modules()):
        short = f"1×1 conv, {_last_conv(down).out_channels}, stride {_last_conv(down).stride[0]}"
    else:
        short = f"{type(down).__name__} (zero-pad to {block.conv2.out_channels} ch)"
    n = len(layers)
    height = 0.3 + 0.62 * (n + 3)
    fig, ax = _canvas(_MAX_WIDTH, height)
    for panel, residual in enumerate((False, True)):
        x = 1.45 + 3.2 * panel
        ax.text(x, height - 0.2, "residual: y = ReLU(F(x) + x)" if residual else "plain: y = ReLU(F(x))",
                ha="center", va="center", fontsize=_FONT + 1)
        prev = inp = _box(ax, x, 0.3, f"x, {in_ch} ch", kind="io", w=1.3)
        for row, (kind, label) in enumerate(layers):
            b = _box(ax, x, 0.3 + 0.62 * (row + 1), label, kind=kind, w=2.1)
            _arrow(ax, prev.top, b.bottom)
            prev = b
        y = 0.3 + 0.62 * (n + 1)
        if residual:
            add = _merge(ax, x, y)
            _arrow(ax, prev.top, add.bottom)
            _shortcut(ax, inp, add, side=x + 1.35, label=short)
            prev = add
        out = _box(ax, x, y + 0.62 if residual else y, f"ReLU → y, {block.conv2.out_channels} ch", kind="io", w=1.9)
        _arrow(ax, prev.top, out.bottom)
    return fig


def dense_block_diagram(block: Optional[nn.Module] = None) -> Figure:
    """Dense connectivity: layer ``l`` reads the block input and every earlier layer's output.

    Args:
        block: a :class:`~segbook.models.densenet.DenseBlock` (default: 4 layers, 24 input
            channels, growth rate 12). Each layer box shows its real widths (``1x1 conv, 4k`` then
            ``3x3 conv, k``) and how many channels it reads (``c0 + (l - 1) k``); one arrow per
            connection, ``L (L + 1) / 2`` in all (:func:`~segbook.models.count_dense_connections`).

    Returns:
        The ``Figure``: feature maps ``x0 .. xL`` on the bottom row, layers ``H1 .. HL`` above,
        the concatenation at the right.
    """
    if block is None:
        from .models.densenet import DenseBlock

        block = DenseBlock(4, 24, 12)
    layers = list(getattr(block, "layers", []))
    if not layers or not all(hasattr(layer, "conv1") and hasattr(layer, "conv2") for layer in layers):
        raise TypeError(f"expected a DenseBlock of DenseLayers, got {type(block).__name__}")
    L, c0, k = len(layers), block.in_channels, block.growth_rate
    step = 0.5
    height = 0.3 + step * 2 * L + 0.35
    fig, ax = _canvas(_MAX_WIDTH, height,
                      title=f"Dense block: {L} layers, growth rate k = {k}, {L * (L + 1) // 2} connections")
    x, w = 2.3, 2.6
    edge = x + w / 2
    maps = [_box(ax, x, 0.3, f"x0: block input, {c0} ch", kind="io", w=w)]
    for i, layer in enumerate(layers, start=1):
        h = _box(ax, x, 0.3 + step * (2 * i - 1),
                 f"H{i}: reads {layer.conv1.in_channels} ch; 1×1 conv, {layer.conv1.out_channels}; "
                 f"3×3 conv, {layer.conv2.out_channels}", kind="conv", w=w + 1.0, h=0.36, fontsize=_FONT - 1)
        for j in range(i):  # one arrow per input map: the dense connections
            colour = plt.cm.viridis(0.85 * j / max(1, L))
            if j == i - 1:
                _arrow(ax, maps[j].top, h.bottom, color=colour)
            else:
                _arrow(ax, (edge, maps[j].y), (h.right[0], h.y), color=colour, rad=0.35)
        maps.append(_box(ax, x, 0.3 + step * 2 * i, f"x{i}, {layer.conv2.out_channels} ch", kind="io", w=w))
        _arrow(ax, h.top, maps[i].bottom)
    out_ch = c0 + sum(layer.conv2.out_channels for layer in layers)
    ax.text(_MAX_WIDTH - 0.05, 0.3 + step * 2 * L, f"output: concat x0..x{L}\n{c0} + {L}×{k} = {out_ch} ch",
            ha="right", va="center", fontsize=_FONT, bbox=dict(fc=_COLOURS["merge"], ec="0.35", lw=0.8))
    return fig


def se_block_diagram(se: Optional[nn.Module] = None) -> Figure:
    """Squeeze-and-excitation (Hu et al. Fig. 1): pool, two FC layers, a sigmoid gate per channel.

    Args:
        se: a :class:`~segbook.nn.SqueezeExcite` (default ``SqueezeExcite(64)``: hidden width 4).
            Widths come from ``se.fc1`` and ``se.fc2``.

    Returns:
        The ``Figure``: input at the bottom, the squeeze and excitation path, the channel-wise
        product with the input (a shortcut on the right).
    """
    if se is None:
        from .nn.squeeze_excite import SqueezeExcite

        se = SqueezeExcite(64)
    if not (isinstance(getattr(se, "fc1", None), nn.Conv2d) and isinstance(getattr(se, "fc2", None), nn.Conv2d)):
        raise TypeError(f"expected a SqueezeExcite with fc1 and fc2, got {type(se).__name__}")
    c, hidden = se.fc1.in_channels, se.fc1.out_channels
    act = type(se.act).__name__
    steps = [("pool", f"global average pool → {c}×1×1"),
             ("fc", f"FC {c} → {hidden}, {act}"),
             ("fc", f"FC {hidden} → {se.fc2.out_channels}, sigmoid")]
    height = 0.3 + 0.62 * (len(steps) + 1) + 0.35
    fig, ax = _canvas(4.2, height, title=f"Squeeze-and-excitation, reduction {c} → {hidden}")
    prev = inp = _box(ax, 1.7, 0.3, f"x, {c}×H×W", kind="io", w=1.6)
    for row, (kind, label) in enumerate(steps, start=1):
        b = _box(ax, 1.7, 0.3 + 0.62 * row, label, kind=kind, w=2.9)
        _arrow(ax, prev.top, b.bottom)
        prev = b
    y = 0.3 + 0.62 * (len(steps) + 1)
    mul = _merge(ax, 1.7, y, "×")
    _arrow(ax, prev.top, mul.bottom)
    _shortcut(ax, inp, mul, side=3.55, label="x")
    ax.text(1.45, y, f"scale each of the {c} channels", ha="right", va="center", fontsize=_FONT - 1)
    return fig


def mbconv_diagram(block: Optional[nn.Module] = None) -> Figure:
    """EfficientNet's MBConv: 1x1 expand, depthwise conv, SE, linear 1x1 projection (+ shortcut).

    Args:
        block: an :class:`~segbook.models.efficientnet.MBConv` (default ``MBConv(16, 16)``:
            expansion 6, 3x3, SE). Read from ``block.expand``, ``.depthwise``, ``.se``,
            ``.project`` and ``.use_residual`` (the shortcut is drawn only when the block has one).

    Returns:
        The ``Figure``, input at the bottom.
    """
    if block is None:
        from .models.efficientnet import MBConv

        block = MBConv(16, 16)
    for name in ("expand", "depthwise", "se", "project"):
        if not hasattr(block, name):
            raise TypeError(f"expected an MBConv block, got {type(block).__name__}")
    steps = []
    if any(isinstance(m, nn.Conv2d) for m in block.expand.modules()):
        conv = _last_conv(block.expand)
        steps.append(("conv", f"1×1 conv, {conv.out_channels} (expand ×{block.expand_ratio}), BN, SiLU"))
    steps.append(("conv", _conv_label(_last_conv(block.depthwise)) + ", BN, SiLU"))
    if isinstance(getattr(block.se, "fc1", None), nn.Conv2d):
        steps.append(("fc", f"SE: {block.se.fc1.in_channels} → {block.se.fc1.out_channels} → "
                            f"{block.se.fc2.out_channels}"))
    steps.append(("conv", f"1×1 conv, {_last_conv(block.project).out_channels} (project), BN, no activation"))
    height = 0.3 + 0.62 * (len(steps) + 1 + block.use_residual) + 0.35
    fig, ax = _canvas(_MAX_WIDTH, height, title=f"MBConv: {block.in_ch} → {block.out_ch} channels, "
                                                 f"expansion {block.expand_ratio}, stride {block.stride}")
    x = 2.6
    prev = inp = _box(ax, x, 0.3, f"x, {block.in_ch} ch", kind="io", w=1.4)
    for row, (kind, label) in enumerate(steps, start=1):
        b = _box(ax, x, 0.3 + 0.62 * row, label, kind=kind, w=4.3)
        _arrow(ax, prev.top, b.bottom)
        prev = b
    y = 0.3 + 0.62 * (len(steps) + 1)
    if block.use_residual:
        add = _merge(ax, x, y)
        _arrow(ax, prev.top, add.bottom)
        _shortcut(ax, inp, add, side=x + 2.55, label="identity")
        prev, y = add, y + 0.62
    out = _box(ax, x, y, f"y, {block.out_ch} ch" + ("" if block.use_residual else " (no shortcut: shape changes)"),
               kind="io", w=1.4 if block.use_residual else 3.4)
    _arrow(ax, prev.top, out.bottom)
    return fig


# ----------------------------------------------------------------------------------------------
# Chapter 2 (FCN) and chapter 3 (upsampling)
# ----------------------------------------------------------------------------------------------
def _fcn_panel(ax, model, y0: float) -> None:
    backbone = model.backbone
    stages = list(backbone.channels)
    dx = (_MAX_WIDTH - 0.5) / (len(stages) + 1)
    xs = {name: 0.55 + dx * (i + 1) for i, name in enumerate(stages)}
    ax.text(0.05, y0 + 2.35, f"FCN-{model.output_stride}s" + (f": skips from {', '.join(model.skips)}" if model.skips
                                                         else ": no skips"),
            ha="left", va="center", fontsize=_FONT + 1)
    prev = _box(ax, 0.55, y0 + 1.85, f"image\n{backbone.in_channels} ch", kind="io", w=0.8, h=0.5)
    boxes = {}
    for name in stages:
        b = _box(ax, xs[name], y0 + 1.85, f"{name}\n/{backbone.strides[name]}, {backbone.channels[name]} ch",
                 kind="pool", w=dx * 0.86, h=0.5, fontsize=_FONT - 1)
        _arrow(ax, prev.right, b.left)
        prev = boxes[name] = b
    k = model.num_classes
    last = stages[-1]
    head_hidden = _last_conv(model.head).in_channels
    score = _box(ax, xs[last], y0 + 0.95, f"fc6, fc7: {head_hidden}\nscore: {k} ch", kind="conv", w=dx * 0.9,
                 h=0.5, fontsize=_FONT - 1)
    _arrow(ax, boxes[last].bottom, score.top)
    current = score
    for name in model.skips:
        s = _box(ax, xs[name], y0 + 0.95, f"score_{name}\n1×1, {k} ch", kind="conv", w=dx * 0.86, h=0.5,
                 fontsize=_FONT - 1)
        _arrow(ax, boxes[name].bottom, s.top)
        add = _merge(ax, xs[name], y0 + 0.3)
        _arrow(ax, s.bottom, add.top)
        _arrow(ax, current.bottom if current is score else current.left, add.right, rad=-0.25 if current is score else 0.0,
               text="2× up", text_offset=(0.0, -0.12))
        current = add
    stride = model.output_stride
    out = _box(ax, 0.75, y0 + 0.3, f"{stride}× bilinear\n→ {k}×H×W", kind="io", w=1.2, h=0.5, fontsize=_FONT - 1)
    _arrow(ax, current.left if current is not score else current.bottom, out.right,
           rad=0.0 if current is not score else -0.15)


def fcn_skip_diagram(models: Union[nn.Module, Sequence[nn.Module], None] = None) -> Figure:
    """The FCN skip graph (Long et al. Fig. 3): where each variant reads its scores and fuses them.

    Args:
        models: an :class:`~segbook.models.fcn.FCN` or a list of them, one panel each (default:
            ``fcn32s()``, ``fcn16s()``, ``fcn8s()`` at the book's width). Stage names, strides
            and widths come from ``model.backbone``; the skips from ``model.skips``; the final
            upsampling factor from ``model.output_stride``.

    Returns:
        The ``Figure``: per panel, the backbone's pooling stages left to right, the score layers
        below them, the sums (+) after each 2x upsampling, and the final bilinear upsampling.
    """
    if models is None:
        from .models.fcn import fcn8s, fcn16s, fcn32s

        models = [fcn32s(), fcn16s(), fcn8s()]
    if isinstance(models, nn.Module):
        models = [models]
    models = list(models)
    for m in models:
        if not all(hasattr(m, a) for a in ("backbone", "skips", "head", "output_stride")):
            raise TypeError(f"expected FCN models, got {type(m).__name__}")
    panel = 2.6
    fig, ax = _canvas(_MAX_WIDTH, panel * len(models))
    for i, m in enumerate(models):
        _fcn_panel(ax, m, panel * (len(models) - 1 - i))
    return fig


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
    """``"up-conv 2×2"`` (transposed) or ``"bilinear ×2, 3×3 conv"``, with the output channels."""
    up = block.up
    if isinstance(up, nn.ConvTranspose2d):
        k = up.kernel_size[0]
        return f"up-conv {k}×{k}\n→ {up.out_channels} ch"
    conv = _last_conv(up)
    k = conv.kernel_size[0]
    return f"bilinear ×2,\n{k}×{k} conv → {conv.out_channels} ch"


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
            base_width=8)``, 8/16/32/64 channels).
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
        model = unet(num_classes=6, depth=3, base_width=8)
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

