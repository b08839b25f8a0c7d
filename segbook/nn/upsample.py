"""Upsampling layers: transposed convolution (as a scatter-add, and bilinear-initialised as in FCN),
resize-convolution, and the matrix of any linear upsampling operator.

Transposed convolution as a scatter-add
---------------------------------------
A strided convolution *gathers*: output ``y[o]`` is a weighted sum of the inputs in a window
starting at ``o s - p``. A transposed convolution *scatters*: every input value ``x[i]`` multiplies
the whole kernel and adds it into the output starting at position ``i s - p``, with taps ``d``
apart (1-D, one channel)::

    y[i s - p + d a] += x[i] w[a]        for every input i and kernel tap a = 0 .. k-1

Overlapping copies are summed. The output has ``(H - 1) s - 2 p + d (k - 1) + output_padding + 1``
positions (:func:`conv_transpose_output_size`): ``(H - 1) s + d (k - 1) + 1`` is the extent of the
scattered copies, ``p`` is cropped from each side, and ``output_padding`` extra rows and columns
are added at the bottom and right (they only receive contributions when ``p > 0``). Read as
matrices, the scatter is the transpose of the gather: ``conv_transpose2d`` with weight ``w`` is
``C^T`` where ``C`` is the matrix of ``conv2d`` with the same weight, stride, padding and
dilation, which is why autograd uses it as the gradient of a strided convolution
(Dumoulin & Visin 2016). :func:`conv_transpose2d_scatter` writes the scatter out with one
``index_add_`` (no Python loop over pixels) and equals ``F.conv_transpose2d``.

Resize-convolution
------------------
Odena, Dumoulin & Olah (2016) replace the transposed convolution by interpolation (nearest or
bilinear) followed by an ordinary stride-1 convolution: :class:`ResizeConv2d`. Every output pixel
then receives the same number of kernel taps, so a constant input gives a constant output away
from the border, at any weights. :func:`make_upsampler` builds either kind with the same
signature, mapping ``[N, C_in, H, W] -> [N, C_out, f H, f W]``.

Bilinear-initialised transposed convolution (FCN)
-------------------------------------------------

FCN (Long et al. 2015) upsamples coarse score maps with a transposed ("backwards strided")
convolution whose kernel starts as bilinear interpolation and may then be learned. For an
integer factor ``f`` this module uses

    kernel_size k = 2f - (f mod 2),   stride s = f,   padding p = f // 2

so that the output size ``(H - 1) s - 2p + k`` is exactly ``f * H`` for every ``H`` (even ``f``:
``k = 2f``, ``p = f/2``; odd ``f``: ``k = 2f - 1``, ``p = (f - 1)/2``), and output pixel ``y``
interpolates the input at ``(y + 1/2) / f - 1/2``: the ``align_corners=False`` convention of
``F.interpolate``. Away from the border the result equals
``F.interpolate(x, size=(f H, f W), mode="bilinear", align_corners=False)`` exactly (up to float
rounding). In the outermost ``ceil(f/2)`` rows and columns it differs: the transposed convolution
treats the outside as zeros (the edge weights do not sum to 1), while ``F.interpolate`` repeats the
edge pixel.

The bilinear kernel is the outer product of a 1-D "tent" ``1 - |t - c| / f`` (``c`` the kernel
centre), as in FCN's ``upsample_filt`` (``surgery.py`` of the reference code).

Pairs: :func:`bilinear_upsample` (functional, fixed kernel, one channel at a time) and
:class:`BilinearConvTranspose2d` (a ``nn.ConvTranspose2d`` that starts as bilinear upsampling
and can be trained, FCN's "learned upsampling").
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checks import int_pair, positive_int
from ..sizes import conv_transpose_output_size

__all__ = [
    "conv_transpose2d_scatter",
    "transposed_padding",
    "ResizeConv2d",
    "SubPixelConv2d",
    "icnr_",
    "subpixel_as_transposed",
    "bilinear_init_",
    "resize_conv_kernel",
    "UPSAMPLERS",
    "UPSAMPLER_KINDS",
    "make_upsampler",
    "operator_matrix",
    "upsample_params",
    "bilinear_filter",
    "bilinear_kernel",
    "bilinear_upsample",
    "BilinearConvTranspose2d",
]


def upsample_params(factor: int) -> tuple[int, int, int]:
    """``(kernel_size, stride, padding)`` of a transposed conv that upsamples by exactly ``factor``.

    ``k = 2 f - (f mod 2)``, ``s = f``, ``p = f // 2``: output size ``(H - 1) s - 2 p + k = f H``.
    Example: ``factor=2 -> (4, 2, 1)``, ``factor=32 -> (64, 32, 16)``, ``factor=3 -> (5, 3, 1)``.
    """
    f = positive_int(factor, "factor")
    return 2 * f - f % 2, f, f // 2


def bilinear_filter(kernel_size: int, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """2-D bilinear interpolation kernel ``[k, k]``: outer product of a tent of half-width ``ceil(k/2)``.

    ``k = 4`` gives the tent ``[0.25, 0.75, 0.75, 0.25]`` (factor 2); the kernel for factor ``f``
    is ``bilinear_filter(2 f - f % 2)``.
    """
    kernel_size = positive_int(kernel_size, "kernel_size")
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    t = torch.arange(kernel_size, dtype=torch.float64)
    tent = 1.0 - (t - center).abs() / factor
    return torch.outer(tent, tent).to(dtype)


def bilinear_kernel(channels: int, kernel_size: int, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Weight ``[channels, channels, k, k]`` for ``nn.ConvTranspose2d(channels, channels, k)``.

    Channel ``c`` is upsampled from channel ``c`` alone (a diagonal in the channel dimensions,
    zeros elsewhere), so every class score map is interpolated separately, as in FCN. The
    off-diagonal entries are zero but trainable when the layer is learned.
    """
    channels = positive_int(channels, "channels")
    weight = torch.zeros(channels, channels, kernel_size, kernel_size, dtype=dtype)
    filt = bilinear_filter(kernel_size, dtype=dtype)
    idx = torch.arange(channels)
    weight[idx, idx] = filt
    return weight


def bilinear_upsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Upsample ``[N, C, H, W] -> [N, C, f H, f W]`` with a fixed bilinear transposed convolution.

    Equal to ``F.interpolate(x, scale_factor=f, mode="bilinear", align_corners=False)`` away from
    the border (see the module docstring for the border).
    """
    f = positive_int(factor, "factor")
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"x must be a tensor [N, C, H, W], got {getattr(x, 'shape', type(x))}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a float tensor, got {x.dtype}")
    if f == 1:
        return x
    k, s, p = upsample_params(f)
    c = x.shape[1]
    weight = bilinear_filter(k, dtype=x.dtype).to(x.device).expand(c, 1, k, k)
    return F.conv_transpose2d(x, weight, stride=s, padding=p, groups=c)


class BilinearConvTranspose2d(nn.ConvTranspose2d):
    """A ``channels -> channels`` transposed convolution that starts as bilinear upsampling by ``factor``.

    Shapes: ``(N, C, H, W) -> (N, C, factor * H, factor * W)`` for every ``H, W``.

    Args:
        channels: number of channels (class score maps in FCN).
        factor: integer upsampling factor; kernel, stride and padding from :func:`upsample_params`.
        learnable: when ``False`` the weight is frozen (FCN's last, fixed upsampling layer).
        bias: add a (zero-initialised) bias; FCN's upsampling layers have none.
    """

    def __init__(self, channels: int, factor: int, *, learnable: bool = True, bias: bool = False) -> None:
        k, s, p = upsample_params(positive_int(factor, "factor"))
        super().__init__(channels, channels, k, stride=s, padding=p, bias=bias)
        self.factor = factor
        self.reset_parameters()
        self.weight.requires_grad_(learnable)

    def reset_parameters(self) -> None:
        # nn.ConvTranspose2d.__init__ calls this before ``factor`` exists; only then fall back.
        if not hasattr(self, "factor"):
            return super().reset_parameters()
        with torch.no_grad():
            self.weight.copy_(bilinear_kernel(self.in_channels, self.kernel_size[0], dtype=self.weight.dtype))
            if self.bias is not None:
                self.bias.zero_()

    def forward(self, x: torch.Tensor, output_size=None) -> torch.Tensor:  # noqa: D102
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__} expects [N, {self.in_channels}, H, W], got {tuple(x.shape)}"
            )
        return super().forward(x, output_size)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", factor={self.factor}, learnable={self.weight.requires_grad}"


# ----------------------------------------------------------------------------------------------
# Transposed convolution as an explicit scatter-add
# ----------------------------------------------------------------------------------------------
def conv_transpose2d_scatter(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *,
                             stride=1, padding=0, output_padding=0, dilation=1, groups: int = 1) -> torch.Tensor:
    """``F.conv_transpose2d`` written as a scatter-add: each input pixel adds a scaled kernel into the output.

    Shapes: ``x [N, C_in, H, W]``, ``weight [C_in, C_out / groups, kH, kW]`` (the layout of
    ``nn.ConvTranspose2d.weight``), ``bias [C_out]`` -> ``[N, C_out, H_out, W_out]`` with sizes from
    :func:`conv_transpose_output_size`.

    The computation, with no loop over pixels:

    1. ``contrib[n, o, i, j, a, b] = sum_c x[n, c, i, j] * weight[c, o, a, b]`` (within a group):
       every input pixel's copy of the kernel, scaled by its value.
    2. The copy of pixel ``(i, j)`` lands on the canvas rows ``i s + a d`` and columns
       ``j s + b d``; ``index_add_`` sums all copies into a canvas of
       ``(H - 1) s + d (k - 1) + 1 + output_padding`` rows (and columns), overlaps added up.
    3. ``padding`` rows and columns are cropped from each side of the canvas; then the bias is added.

    Raises ``ValueError`` where ``F.conv_transpose2d`` raises: wrong shapes, a bias that is not
    ``[C_out]`` (``C_out = groups * weight.shape[1]``), ``x`` and ``weight`` of different dtypes.
    A bias of another float dtype is cast to the output's, as torch does.
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"x must be a tensor [N, C_in, H, W], got {getattr(x, 'shape', type(x))}")
    if not isinstance(weight, torch.Tensor) or weight.dim() != 4:
        raise ValueError(f"weight must be a tensor [C_in, C_out/groups, kH, kW], got {getattr(weight, 'shape', type(weight))}")
    groups = positive_int(groups, "groups")
    if x.shape[1] % groups:
        raise ValueError(f"groups must divide C_in={x.shape[1]}, got {groups!r}")
    if weight.shape[0] != x.shape[1]:
        raise ValueError(f"weight has {weight.shape[0]} input channels but x has {x.shape[1]}: weight must be [C_in, C_out/groups, kH, kW]")
    if x.dtype != weight.dtype:
        raise ValueError(f"x ({x.dtype}) and weight ({weight.dtype}) dtypes differ; cast one to the other's, "
                         f"e.g. weight.to(x.dtype)")
    c_out = groups * weight.shape[1]
    if bias is not None and (not isinstance(bias, torch.Tensor) or bias.dim() != 1 or bias.shape[0] != c_out):
        got = f"shape {tuple(bias.shape)}" if isinstance(bias, torch.Tensor) else type(bias).__name__
        raise ValueError(f"bias must be a 1-D tensor of C_out = {c_out} entries (groups * weight.shape[1]) or None, "
                         f"got {got}")
    s, p, op, d = (int_pair(stride, "stride"), int_pair(padding, "padding", minimum=0),
                   int_pair(output_padding, "output_padding", minimum=0), int_pair(dilation, "dilation"))
    n, c_in, h, w = x.shape
    k = weight.shape[-2:]
    out_hw = [conv_transpose_output_size(size, k[i], s[i], p[i], op[i], d[i]) for i, size in enumerate((h, w))]
    canvas = [(size - 1) * s[i] + d[i] * (k[i] - 1) + 1 + op[i] for i, size in enumerate((h, w))]
    c_out_g = weight.shape[1]
    # 1. scaled kernel copies, per group: [N, G, C_out/G, H, W, kH, kW]
    xg = x.reshape(n, groups, c_in // groups, h, w)
    wg = weight.reshape(groups, c_in // groups, c_out_g, k[0], k[1])
    contrib = torch.einsum("ngchw,gcoab->ngohwab", xg, wg).reshape(n, groups * c_out_g, -1)
    # 2. where each copy lands on the canvas (flat index), same order as contrib's last dim
    rows = (torch.arange(h, device=x.device) * s[0])[:, None] + (torch.arange(k[0], device=x.device) * d[0])[None, :]
    cols = (torch.arange(w, device=x.device) * s[1])[:, None] + (torch.arange(k[1], device=x.device) * d[1])[None, :]
    target = (rows[:, None, :, None] * canvas[1] + cols[None, :, None, :]).reshape(-1)   # [H, W, kH, kW] -> flat
    out = x.new_zeros(n, groups * c_out_g, canvas[0] * canvas[1])
    out.index_add_(2, target, contrib)
    out = out.view(n, groups * c_out_g, canvas[0], canvas[1])
    # 3. crop the padding
    out = out[..., p[0]: p[0] + out_hw[0], p[1]: p[1] + out_hw[1]]
    if bias is not None:
        out = out + bias.to(out.dtype).view(1, -1, 1, 1)
    return out


def transposed_padding(kernel_size: int, factor: int) -> tuple[int, int]:
    """``(padding, output_padding)`` that make a transposed conv with stride ``factor`` upsample exactly ``factor`` times.

    Solves ``k - 2 p + output_padding = f`` with the smallest ``p >= 0``:
    ``p = max(0, ceil((k - f) / 2))``, ``output_padding = f - k + 2 p`` (0 or 1 when ``k >= f``).
    Raises ``ValueError`` for ``f = 1`` with an even ``k`` (no exact solution).
    Examples for ``f = 2``: ``k = 3 -> (1, 1)``, ``k = 4 -> (1, 0)``, ``k = 2 -> (0, 0)``.
    """
    f = positive_int(factor, "factor")
    kernel_size = positive_int(kernel_size, "kernel_size")
    p = max(0, -(-(kernel_size - f) // 2))
    op = f - kernel_size + 2 * p
    if op >= f:  # only f = 1 with an even kernel: k - 2p is odd, it cannot equal 1 without output_padding 1
        raise ValueError(f"no padding makes a kernel of size {kernel_size} with stride {f} keep the size exactly; use an odd kernel")
    return p, op


# ----------------------------------------------------------------------------------------------
# Resize-convolution and a common builder
# ----------------------------------------------------------------------------------------------
class ResizeConv2d(nn.Module):
    """Interpolate by ``factor`` (nearest or bilinear), then a stride-1 ``k x k`` convolution ("same" padding).

    Shapes: ``[N, C_in, H, W] -> [N, C_out, factor H, factor W]``, like a transposed conv built by
    :func:`make_upsampler`. The interpolation is fixed; only the convolution is learned.
    Bilinear uses ``align_corners=False`` (the convention of ``F.interpolate``). Odd kernel sizes
    only, so the "same" padding ``k // 2`` keeps the size.

    Args:
        in_channels, out_channels: channels before and after.
        kernel_size: of the convolution (odd).
        factor: integer upsampling factor.
        mode: ``"nearest"`` or ``"bilinear"``.
        bias: add a bias in the convolution.
    """

    MODES = ("nearest", "bilinear")

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, *, factor: int = 2,
                 mode: str = "nearest", bias: bool = True) -> None:
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}, got {mode!r}")
        if positive_int(kernel_size, "kernel_size") % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd int (so 'same' padding keeps the size), got {kernel_size!r}")
        self.factor = positive_int(factor, "factor")
        self.mode = mode
        self.in_channels = positive_int(in_channels, "in_channels")
        self.out_channels = positive_int(out_channels, "out_channels")
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)

    def resize(self, x: torch.Tensor) -> torch.Tensor:
        """The fixed interpolation alone: ``[N, C, H, W] -> [N, C, f H, f W]``."""
        size = (x.shape[-2] * self.factor, x.shape[-1] * self.factor)
        if self.mode == "nearest":
            return F.interpolate(x, size=size, mode="nearest")
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"{type(self).__name__} expects [N, {self.in_channels}, H, W], got {tuple(x.shape)}")
        return self.conv(self.resize(x))

    def extra_repr(self) -> str:
        return f"factor={self.factor}, mode={self.mode!r}"


# ----------------------------------------------------------------------------------------------
# Sub-pixel convolution (PixelShuffle), ICNR, bilinear initialisation, resize-conv's kernel
# ----------------------------------------------------------------------------------------------
class SubPixelConv2d(nn.Module):
    """Sub-pixel convolution (Shi et al. 2016): a ``k x k`` conv to ``C_out f^2`` channels, then ``nn.PixelShuffle(f)``.

    Shapes: ``[N, C_in, H, W] -> [N, C_out, f H, f W]`` (odd ``k``, "same" padding ``k // 2``).
    Output channel ``o`` at phase ``(a, b)`` (pixel ``(f i + a, f j + b)``) is conv channel
    ``o f^2 + a f + b`` at ``(i, j)``: each phase has its own kernel. It equals a transposed
    convolution with kernel ``k f``, stride ``f`` and padding ``f (k - 1) / 2`` (see
    :func:`subpixel_as_transposed`), so it has the same freedom to paint a grid; :func:`icnr_`
    starts it without one.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, *, factor: int = 2,
                 bias: bool = True) -> None:
        super().__init__()
        if positive_int(kernel_size, "kernel_size") % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd int, got {kernel_size!r}")
        self.factor = positive_int(factor, "factor")
        self.in_channels = positive_int(in_channels, "in_channels")
        self.out_channels = positive_int(out_channels, "out_channels")
        self.conv = nn.Conv2d(in_channels, out_channels * self.factor ** 2, kernel_size, padding=kernel_size // 2,
                              bias=bias)
        self.shuffle = nn.PixelShuffle(self.factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"{type(self).__name__} expects [N, {self.in_channels}, H, W], got {tuple(x.shape)}")
        return self.shuffle(self.conv(x))

    def extra_repr(self) -> str:
        return f"factor={self.factor}"


def icnr_(module: SubPixelConv2d) -> SubPixelConv2d:
    """ICNR initialisation (Aitken et al. 2017) of a :class:`SubPixelConv2d`, in place; returns it.

    Keeps the kernels of phase ``(0, 0)`` (conv channels ``o f^2``) and copies them to the other
    ``f^2 - 1`` phases (the bias too), so at initialisation every phase computes the same thing:
    the layer equals a ``k x k`` conv followed by nearest-neighbour upsampling, and a constant
    input gives a constant output (no grid). Training may then make the phases differ.
    """
    if not isinstance(module, SubPixelConv2d):
        raise TypeError(f"icnr_ expects a SubPixelConv2d, got {type(module).__name__}")
    f2 = module.factor ** 2
    with torch.no_grad():
        w = module.conv.weight                                     # [C_out f^2, C_in, k, k]
        base = w.view(module.out_channels, f2, *w.shape[1:])[:, :1]
        w.copy_(base.expand(-1, f2, -1, -1, -1).reshape(w.shape))
        if module.conv.bias is not None:
            b = module.conv.bias.view(module.out_channels, f2)
            b.copy_(b[:, :1].expand(-1, f2))
    return module


def subpixel_as_transposed(module: SubPixelConv2d) -> nn.ConvTranspose2d:
    """The ``nn.ConvTranspose2d`` that computes exactly what ``module`` computes (float rounding aside).

    A sub-pixel conv with a ``k x k`` kernel (``k`` odd, padding ``q = k // 2``) and factor ``f`` is a
    transposed conv with kernel ``K = k f`` (a multiple of the stride, Odena et al. 2016), stride
    ``f``, padding ``P = f (k - 1 - q)`` and no output padding, so ``(H - 1) f - 2 P + k f = f H``.
    Output ``f i + a`` reads input ``i + u - q`` with tap ``u``; pasted from input ``i' = i + u - q``
    it lands at ``f i' + t - P`` with ``t = f (k - 1 - u) + a``.
    Weight: ``T[c, o, f (k - 1 - u) + a, f (k - 1 - v) + b] = W[o f^2 + a f + b, c, u, v]``.
    Shapes: the returned layer maps ``[N, C_in, H, W] -> [N, C_out, f H, f W]`` like ``module``.
    """
    if not isinstance(module, SubPixelConv2d):
        raise TypeError(f"subpixel_as_transposed expects a SubPixelConv2d, got {type(module).__name__}")
    f, c_out = module.factor, module.out_channels
    w = module.conv.weight.detach()                                # [C_out f^2, C_in, k, k]
    k = w.shape[-1]
    q = k // 2
    w6 = w.view(c_out, f, f, module.in_channels, k, k)            # [o, a, b, c, u, v]
    w6 = w6.flip(-2, -1)                                           # u -> k - 1 - u
    t = w6.permute(3, 0, 4, 1, 5, 2).reshape(module.in_channels, c_out, k * f, k * f)   # [c, o, (u', a), (v', b)]
    layer = nn.ConvTranspose2d(module.in_channels, c_out, k * f, stride=f, padding=f * (k - 1 - q),
                               bias=module.conv.bias is not None).to(w.dtype)
    with torch.no_grad():
        layer.weight.copy_(t)
        if module.conv.bias is not None:
            layer.bias.copy_(module.conv.bias.view(c_out, f * f)[:, 0])
    if module.conv.bias is not None:
        b = module.conv.bias.detach().view(c_out, f * f)
        if not torch.equal(b, b[:, :1].expand_as(b)):
            raise ValueError("the sub-pixel conv's bias differs between phases; a transposed conv has one bias per "
                             "channel. Build it with bias=False, or use icnr_ (equal phase biases)")
    return layer


def bilinear_init_(layer: nn.ConvTranspose2d) -> nn.ConvTranspose2d:
    """Give every (input, output) channel pair of ``layer`` the bilinear kernel's shape, in place; returns it.

    ``weight[i, o] = m[i, o] * bilinear_filter(k)`` with ``m[i, o]`` the sum of the pair's current
    (e.g. default random) weights, so the layer keeps its random channel mixing and gets FCN's
    bilinear spatial kernel; for ``k = 2 s`` (e.g. ``k = 4, s = 2``: tent ``[1/4, 3/4, 3/4, 1/4]``)
    every output phase's taps sum to the same value, so a constant input gives a constant output
    (away from the border). The bias is zeroed. Square kernels only.
    """
    if not isinstance(layer, nn.ConvTranspose2d):
        raise TypeError(f"bilinear_init_ expects an nn.ConvTranspose2d, got {type(layer).__name__}")
    k = layer.kernel_size
    if k[0] != k[1]:
        raise ValueError(f"bilinear_init_ needs a square kernel, got {k}")
    with torch.no_grad():
        m = layer.weight.sum(dim=(-2, -1), keepdim=True)
        filt = bilinear_filter(k[0], dtype=layer.weight.dtype).to(layer.weight.device)
        layer.weight.copy_(m * filt)
        if layer.bias is not None:
            layer.bias.zero_()
    return layer


def resize_conv_kernel(weight: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """The transposed-conv kernel of nearest upsampling by ``factor`` followed by a convolution with ``weight``.

    Shapes: ``weight [k]`` (1-D) or ``[..., k, k]`` (any tensor with ``dim() >= 2`` is taken as 2-D
    kernels, e.g. ``[C_out, C_in, k, k]``) -> ``[k + f - 1]`` or ``[..., k + f - 1, k + f - 1]``.
    Each input pixel is copied to an ``f x f`` block, then correlated with ``weight`` (what
    ``nn.Conv2d`` does): the kernel it pastes, in the layout of ``nn.ConvTranspose2d.weight``, is
    ``weight`` flipped and convolved with an ``f``-long block of ones. With it a transposed conv
    of stride ``f`` and padding ``1`` (for ``k = 3``, ``f = 2``) equals ``ResizeConv2d`` (nearest),
    borders included (both see zeros outside). In 1-D with ``f = 2`` and ``weight = (w_-1, w_0, w_1)`` it is
    ``(w_1, w_0 + w_1, w_-1 + w_0, w_-1)``: its two phase sub-kernels ``(w_1, w_-1 + w_0)`` and
    ``(w_0 + w_1, w_-1)`` differ but have equal sums.
    """
    f = positive_int(factor, "factor")
    if not isinstance(weight, torch.Tensor) or weight.dim() < 1:
        raise ValueError(f"weight must be a tensor [..., k] or [..., k, k], got {getattr(weight, 'shape', type(weight))}")
    w = weight.detach()
    if w.dim() == 1:
        out = F.conv_transpose1d(w.flip(-1).reshape(1, 1, -1), torch.ones(1, 1, f, dtype=w.dtype, device=w.device))
        return out.reshape(-1)
    lead = w.shape[:-2]
    x = w.flip(-2, -1).reshape(-1, 1, *w.shape[-2:])
    out = F.conv_transpose2d(x, torch.ones(1, 1, f, f, dtype=w.dtype, device=w.device))
    return out.reshape(*lead, *out.shape[-2:])


UPSAMPLERS = ("transposed3", "transposed4", "nearest", "bilinear")
"""The four kinds chapter 3 compares everywhere (:func:`make_upsampler` builds them)."""
UPSAMPLER_KINDS = ("transposed2",) + UPSAMPLERS + ("pixelshuffle",)
"""Every kind :func:`make_upsampler` builds: :data:`UPSAMPLERS`, U-Net's ``"transposed2"`` and ``"pixelshuffle"``."""


def make_upsampler(kind: str, in_channels: int, out_channels: int, *, factor: int = 2, bias: bool = True) -> nn.Module:
    """An exact ``factor``-times upsampling layer ``[N, C_in, H, W] -> [N, C_out, f H, f W]`` of one of :data:`UPSAMPLER_KINDS`.

    ``"transposed2"``: ``nn.ConvTranspose2d`` with kernel ``f`` (2 for ``f = 2``), stride ``f``: no
    overlap, every input pixel paints its own ``f x f`` block (the U-Net paper's 2x2 up-convolution).
    ``"transposed3"``: kernel ``f + 1`` (3 for ``f = 2``), stride ``f``: the kernel size is not a
    multiple of the stride, overlaps are uneven.
    ``"transposed4"``: kernel ``2 f`` (4 for ``f = 2``), stride ``f``: even overlap.
    ``"nearest"`` / ``"bilinear"``: :class:`ResizeConv2d` with a 3x3 convolution.
    ``"pixelshuffle"``: :class:`SubPixelConv2d` with a 3x3 convolution.
    :data:`UPSAMPLERS` lists the four kinds chapter 3 compares everywhere.
    Padding and output padding come from :func:`transposed_padding`. The transposed kinds need
    ``factor >= 2`` (with stride 1 their even kernel cannot keep the size); the resize kinds take any
    ``factor >= 1``. ``in_channels`` and ``out_channels`` must be positive ints.
    """
    f = positive_int(factor, "factor")
    in_channels, out_channels = positive_int(in_channels, "in_channels"), positive_int(out_channels, "out_channels")
    if kind in ("transposed2", "transposed3", "transposed4"):
        if f < 2:
            raise ValueError(f"make_upsampler({kind!r}) supports factor >= 2, got factor={factor!r}; "
                             f"for factor 1 use 'nearest' or 'bilinear' (a 3x3 convolution, no resizing)")
        k = {"transposed2": f, "transposed3": f + 1, "transposed4": 2 * f}[kind]
        p, op = transposed_padding(k, f)
        return nn.ConvTranspose2d(in_channels, out_channels, k, stride=f, padding=p, output_padding=op, bias=bias)
    if kind in ResizeConv2d.MODES:
        return ResizeConv2d(in_channels, out_channels, 3, factor=f, mode=kind, bias=bias)
    if kind == "pixelshuffle":
        return SubPixelConv2d(in_channels, out_channels, 3, factor=f, bias=bias)
    raise ValueError(f"unknown upsampler {kind!r}; expected one of {UPSAMPLER_KINDS}")


# ----------------------------------------------------------------------------------------------
# Linear operators as matrices
# ----------------------------------------------------------------------------------------------
def operator_matrix(op, input_shape, *, dtype: torch.dtype = torch.float64, check_linear: bool = True) -> torch.Tensor:
    """The matrix ``M`` of a linear map ``op`` on tensors of ``input_shape``: ``op(x).flatten() == M @ x.flatten()``.

    Built by applying ``op`` to every basis image (one-hot tensor) at once: column ``j`` of ``M`` is
    ``op(e_j)`` flattened. Shapes: ``input_shape = (C, H, W)`` (no batch dimension; ``op`` is called
    on a batch ``[C H W, C, H, W]``) -> ``M [numel(op output), C H W]``.

    Works for any linear upsampling or convolution (``F.interpolate``, ``nn.ConvTranspose2d`` and
    ``nn.Conv2d`` without bias, :class:`ResizeConv2d` with ``bias=False``, compositions). With
    ``check_linear`` it raises ``ValueError`` when ``op(0) != 0`` (a bias: the map is affine, not
    linear) or when ``op`` is not linear on a random input. Modules are run in float64 under
    ``torch.no_grad`` on a copy of their parameters' dtype (the module itself is not changed).
    """
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"input_shape must be (C, H, W) with positive sizes, got {input_shape!r}")
    numel = shape[0] * shape[1] * shape[2]
    if numel > 16384:
        raise ValueError(f"input_shape {shape} has {numel} entries; the dense matrix would be too large (max 16384)")
    if isinstance(op, nn.Module):
        import copy
        op = copy.deepcopy(op).to(dtype).eval()
    basis = torch.eye(numel, dtype=dtype).view(numel, *shape)
    with torch.no_grad():
        cols = op(basis)
        matrix = cols.reshape(numel, -1).T.contiguous()
        if check_linear:
            zero = op(torch.zeros(1, *shape, dtype=dtype))
            if zero.abs().max().item() > 1e-12:
                raise ValueError("op(0) is not 0: the map is affine (a bias?), not linear; build it with bias=False")
            gen = torch.Generator().manual_seed(0)
            x = torch.randn(1, *shape, generator=gen, dtype=dtype)
            err = (op(x).flatten() - matrix @ x.flatten()).abs().max().item()
            if err > 1e-8 * max(1.0, matrix.abs().max().item()):
                raise ValueError(f"op is not linear: op(x) differs from M x by {err:.2e} on a random x")
    return matrix
