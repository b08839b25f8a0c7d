"""Shape arithmetic: how convolutions, pooling and transposed convolutions change a map's side.

Every formula here is the one torch uses (checked against the real modules in
``tests/test_sizes.py`` over many sizes), written for one spatial side ``n``:

* convolution (``nn.Conv2d``) and max pooling with ``ceil_mode=False``:
  :math:`\\lfloor (n + 2p - d(k-1) - 1) / s \\rfloor + 1`;
* pooling with ``ceil_mode=True``: the same with :math:`\\lceil\\cdot\\rceil`, except that the last
  window must start inside the input or the left padding (torch drops a window that would start in
  the right padding);
* transposed convolution (``nn.ConvTranspose2d``): :math:`(n - 1)s - 2p + d(k-1) + p_{out} + 1`.

A U-Net halves the side at every pooling and doubles it at every up-convolution, then
concatenates each decoder map with the encoder map of the same level. Floor pooling loses the
last row of an odd map, so the decoder comes back one row short: 7 -> 3 -> 6 cannot be
concatenated with 7. :func:`unet_trace` follows the sizes level by level and reports where they
stop matching; :func:`unet_valid_sizes` lists the sizes that work:

* **same** padding (3x3 convolutions with padding 1): the convolutions keep the size, so every
  map before a pooling is even exactly when the input is a multiple of :math:`2^D` (``D`` poolings);
* **valid** padding (the paper's unpadded convolutions): every 3x3 convolution removes 2 pixels,
  two per level remove 4, and each map before a pooling must be even. With a bottom map of side
  ``b`` (after its convolutions) the input is :math:`2^D (b + 4) + 4(2^D - 1)` and the output
  :math:`2^D b - 4(2^D - 1)`; for ``D = 4`` and ``b = 28`` that is the paper's 572 -> 388.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from .checks import positive_int

__all__ = [
    "UNET_PADDINGS",
    "conv_output_size",
    "pool_output_size",
    "conv_transpose_output_size",
    "SizeStep",
    "UNetTrace",
    "unet_trace",
    "is_valid_unet_size",
    "unet_output_size",
    "unet_valid_sizes",
    "nearest_valid_unet_sizes",
]

UNET_PADDINGS = ("same", "valid")


def conv_output_size(size: int, kernel_size: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Output side of ``nn.Conv2d`` on a side of ``size`` pixels (for pooling use :func:`pool_output_size`).

    ``floor((size + 2 * padding - dilation * (kernel_size - 1) - 1) / stride) + 1``.

    Raises:
        ValueError: when the (dilated) kernel does not fit into the padded input, as torch would.
    """
    positive_int(size, "size"); positive_int(kernel_size, "kernel_size"); positive_int(stride, "stride")
    positive_int(padding, "padding", minimum=0); positive_int(dilation, "dilation")
    span = dilation * (kernel_size - 1) + 1
    if size + 2 * padding < span:
        raise ValueError(f"a kernel spanning {span} pixels does not fit a side of {size} with padding {padding}")
    return (size + 2 * padding - span) // stride + 1


def pool_output_size(size: int, kernel_size: int = 2, stride: Optional[int] = None, padding: int = 0,
                     dilation: int = 1, *, ceil_mode: bool = False) -> int:
    """Output side of ``nn.MaxPool2d`` / ``F.max_pool2d`` (``stride`` defaults to ``kernel_size``, as in torch).

    Shapes: a map ``[N, C, size, W]`` pooled with these settings has ``pool_output_size(size, ...)``
    rows (the same formula gives the columns from ``W``). Equal to torch in every setting, errors
    included (``tests/test_sizes.py`` compares it with ``nn.MaxPool2d`` exhaustively):

    * ``ceil_mode=False`` rounds down: ``floor((size + 2 p - d (k - 1) - 1) / s) + 1`` (a 7-pixel
      side pooled 2x2 gives 3: the last row is dropped);
    * ``ceil_mode=True`` rounds up (7 gives 4: the last window is partial), except that the last
      window must start inside the input or the left padding: if ``(out - 1) s >= size + p`` then
      ``out - 1``. A kernel wider than the padded input still gives 1 when the rounded-up count is 1.

    Raises:
        ValueError: where torch raises: ``padding`` larger than ``kernel_size // 2`` (torch's
            "pad should be at most half of ... kernel size"; dilation does not relax it), or an
            output of fewer than 1 position (the error names the smallest side that works).
    """
    stride = kernel_size if stride is None else stride
    positive_int(size, "size"); positive_int(kernel_size, "kernel_size"); positive_int(stride, "stride")
    positive_int(padding, "padding", minimum=0); positive_int(dilation, "dilation")
    # torch checks both pad <= (d (k - 1) + 1) // 2 and pad <= k // 2; the second implies the first
    if padding > kernel_size // 2:
        raise ValueError(f"padding must be at most half the kernel size for max pooling (padding <= kernel_size // 2 "
                         f"= {kernel_size // 2} for kernel_size={kernel_size}, torch's rule), got padding={padding}; "
                         f"use padding <= {kernel_size // 2} or a larger kernel_size")
    span = dilation * (kernel_size - 1) + 1
    room = size + 2 * padding - span
    out = (-(-room // stride) if ceil_mode else room // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + padding:  # the last window would start in the right padding
        out -= 1
    if out < 1:
        smallest = span - 2 * padding - (stride - 1 if ceil_mode else 0)
        raise ValueError(f"a pooling window spanning {span} pixels does not fit a side of {size} with padding "
                         f"{padding} (stride {stride}, ceil_mode={ceil_mode}): torch would give {out} outputs; "
                         f"use a side of at least {smallest}, or a smaller kernel_size or dilation")
    return out


def conv_transpose_output_size(size: int, kernel_size: int, stride: int = 1, padding: int = 0,
                               output_padding: int = 0, dilation: int = 1) -> int:
    """Output length of a transposed convolution along one axis.

    ``(size - 1) * stride - 2 * padding + dilation * (kernel_size - 1) + output_padding + 1``,
    the formula of ``nn.ConvTranspose2d``. Example: ``size=4, kernel_size=3, stride=2,
    padding=1, output_padding=1 -> 8`` (exact 2x upsampling); a 2x2 transposed convolution with
    stride 2 (U-Net's up-convolution) gives exactly ``2 * size``.

    Raises ``ValueError`` when the result is not positive (the padding crops everything) or when
    ``output_padding`` is not smaller than ``stride`` or ``dilation`` (PyTorch's rule: larger
    values would add rows that no input can reach).
    """
    for name, v, lo in (("size", size, 1), ("kernel_size", kernel_size, 1), ("stride", stride, 1),
                        ("padding", padding, 0), ("output_padding", output_padding, 0), ("dilation", dilation, 1)):
        positive_int(v, name, minimum=lo)
    if output_padding >= max(stride, dilation):
        raise ValueError(
            f"output_padding={output_padding} must be smaller than stride ({stride}) or dilation ({dilation})"
        )
    out = (size - 1) * stride - 2 * padding + dilation * (kernel_size - 1) + output_padding + 1
    if out < 1:
        raise ValueError(
            f"a transposed conv with kernel {kernel_size}, stride {stride}, padding {padding} on {size} "
            f"positions gives {out} outputs; reduce the padding"
        )
    return out


@dataclass(frozen=True)
class SizeStep:
    """One map in a U-Net trace: ``name`` (e.g. ``"enc2 convs"``, ``"pool2"``, ``"up2"``), its side and level."""

    name: str
    size: int
    level: int


@dataclass
class UNetTrace:
    """The result of :func:`unet_trace`.

    Attributes:
        input_size, depth, padding: what was traced.
        steps: every map in order, encoder, bottom, decoder.
        problems: what breaks, in words (an odd map before a pooling, a decoder map that does not
            match its skip, a map that vanishes); empty when the size is valid.
        output_size: the side of the output (``None`` when the trace broke before the end).
    """

    input_size: int
    depth: int
    padding: str
    steps: list = field(default_factory=list)
    problems: list = field(default_factory=list)
    output_size: Optional[int] = None

    @property
    def valid(self) -> bool:
        """True when every map before a pooling is even and every skip matches its decoder map."""
        return not self.problems

    def rows(self) -> list[dict]:
        """The steps as table rows ``{"step", "level", "size"}``."""
        return [{"step": s.name, "level": s.level, "size": f"{s.size}x{s.size}"} for s in self.steps]


def _check_unet_args(depth: int, padding: str) -> None:
    positive_int(depth, "depth")
    if padding not in UNET_PADDINGS:
        raise ValueError(f"padding must be one of {UNET_PADDINGS}, got {padding!r}")


def unet_trace(size: int, depth: int = 4, padding: str = "same") -> UNetTrace:
    """Follow one side of a U-Net input through ``depth`` poolings and back.

    Each level has two 3x3 convolutions (padding 1 for ``"same"``, 0 for ``"valid"``), then a 2x2
    max pooling (floor mode, torch's default); the decoder doubles with a 2x2 stride-2 transposed
    convolution, compares with the skip (``"same"``: sizes must be equal; ``"valid"``: the skip is
    centre-cropped, which needs the skip to be at least as large), then two 3x3 convolutions.

    Example: ``unet_trace(7, depth=1).problems`` says that the 7-pixel map is odd before the pooling
    and that the 6-pixel up-convolved map does not match the 7-pixel skip.

    Returns:
        a :class:`UNetTrace` (``.steps``, ``.problems``, ``.output_size``, ``.valid``).
    """
    positive_int(size, "size")
    _check_unet_args(depth, padding)
    conv_pad = 1 if padding == "same" else 0
    trace = UNetTrace(size, depth, padding)
    trace.steps.append(SizeStep("input", size, 0))

    def convs(n: int, name: str, level: int) -> Optional[int]:
        for _ in range(2):
            if n + 2 * conv_pad < 3:
                trace.problems.append(f"{name}: a {n}-pixel map is too small for a 3x3 convolution")
                return None
            n = conv_output_size(n, 3, 1, conv_pad)
        trace.steps.append(SizeStep(name, n, level))
        return n

    n: Optional[int] = size
    skips = []
    for level in range(depth):
        n = convs(n, f"enc{level} convs", level)
        if n is None:
            return trace
        skips.append(n)
        if n % 2:
            trace.problems.append(f"level {level}: the {n}-pixel map before pool{level} is odd; pooling drops its last row")
        if n < 2:
            trace.problems.append(f"level {level}: a {n}-pixel map cannot be pooled 2x2")
            return trace
        n = pool_output_size(n, 2)
        trace.steps.append(SizeStep(f"pool{level}", n, level + 1))
    n = convs(n, "bottom convs", depth)
    if n is None:
        return trace
    for level in reversed(range(depth)):
        n = conv_transpose_output_size(n, 2, 2)
        trace.steps.append(SizeStep(f"up{level}", n, level))
        skip = skips[level]
        if padding == "same" and n != skip:
            trace.problems.append(f"level {level}: the up-convolved map is {n} pixels but its skip is {skip}: "
                                  "torch.cat fails")
        if padding == "valid" and n > skip:
            trace.problems.append(f"level {level}: the up-convolved map ({n}) is larger than its skip ({skip})")
        if padding == "valid" and (skip - n) % 2:
            trace.problems.append(f"level {level}: the skip ({skip}) minus the map ({n}) is odd: no centred crop")
        n = convs(n, f"dec{level} convs", level)
        if n is None:
            return trace
    trace.output_size = n
    return trace


def is_valid_unet_size(size: int, depth: int = 4, padding: str = "same") -> bool:
    """True when a ``size``-pixel side goes through the U-Net without a mismatch (see :func:`unet_trace`)."""
    return unet_trace(size, depth, padding).valid


def unet_output_size(size: int, depth: int = 4, padding: str = "same") -> int:
    """The output side for a valid input side (``size`` for same padding; smaller for valid padding).

    Raises:
        ValueError: naming the nearest valid sizes, when ``size`` is not valid.
    """
    trace = unet_trace(size, depth, padding)
    if not trace.valid:
        below, above = nearest_valid_unet_sizes(size, depth, padding)
        options = " or ".join(str(s) for s in (below, above) if s is not None)
        raise ValueError(f"{size} is not a valid input side for a depth-{depth} U-Net with {padding} padding "
                         f"({trace.problems[0]}); nearest valid: {options}")
    return trace.output_size  # type: ignore[return-value]


def _smallest_valid(depth: int, padding: str) -> int:
    if padding == "same":
        return 2 ** depth
    n = 1
    while not is_valid_unet_size(n, depth, padding):
        n += 1
    return n


def unet_valid_sizes(depth: int = 4, padding: str = "same", *, low: int = 1, high: int = 1024) -> list[tuple[int, int]]:
    """Valid input sides in ``[low, high]`` with their output sides: ``[(input, output), ...]``.

    Same padding: the multiples of ``2 ** depth`` (output = input). Valid padding: every
    ``2 ** depth``-th size from the smallest that leaves a positive output (``depth=4``: 188 -> 4,
    204 -> 20, ..., 572 -> 388).
    """
    _check_unet_args(depth, padding)
    positive_int(low, "low"); positive_int(high, "high", minimum=low)
    step = 2 ** depth
    first = _smallest_valid(depth, padding)
    start = first if low <= first else first + -(-(low - first) // step) * step
    return [(n, unet_trace(n, depth, padding).output_size) for n in range(start, high + 1, step)]


def nearest_valid_unet_sizes(size: int, depth: int = 4, padding: str = "same") -> tuple[Optional[int], int]:
    """The nearest valid input sides ``<= size`` and ``>= size`` (``below`` is ``None`` when there is none).

    Example: ``nearest_valid_unet_sizes(100, 4, "same") == (96, 112)``;
    ``nearest_valid_unet_sizes(570, 4, "valid") == (556, 572)``.
    """
    positive_int(size, "size")
    _check_unet_args(depth, padding)
    step = 2 ** depth
    first = _smallest_valid(depth, padding)
    if size <= first:
        return (first if size == first else None), first
    below = first + (size - first) // step * step
    above = below if below == size else below + step
    return below, above
