"""Fully connected layers as convolutions ("convolutionalisation", Long et al. 2015).

Two facts carry FCN:

* A 1x1 convolution is an affine layer applied at every pixel: with weight ``W [C', C]`` and bias
  ``b``, ``y[:, i, j] = W x[:, i, j] + b``. Its ``C' C + C'`` parameters do not depend on the map
  size (:func:`linear_to_conv1x1`).
* A classifier head that flattens a ``(C, h, w)`` map and applies ``Linear(C h w, K)`` is a
  convolution with a ``(h, w)`` kernel and no padding: on the ``(C, h, w)`` map it gives one
  ``(K, 1, 1)`` output, the same numbers; on a larger map it slides and gives a ``(K, H', W')``
  map of scores (:func:`fc_to_conv`).

:func:`convolutionalize` applies both to a small classifier ``Sequential(features..., Flatten,
Linear, act, Linear, ...)``: the result accepts larger images and returns a heat map whose
entry ``(i, j)`` is the classifier's output on the crop at ``(i s, j s)`` (``s`` the features'
total stride), exactly, when the features use no padding. Sliding the classifier crop by crop
would recompute the overlapping features; the convolutional version computes them once.
"""
from __future__ import annotations

import copy
from typing import Sequence, Union

import torch
import torch.nn as nn

from ..checks import int_pair, positive_int

__all__ = [
    "linear_to_conv1x1",
    "apply_per_pixel",
    "affine_from_conv1x1",
    "conv1x1_vs_affine_params",
    "fc_to_conv",
    "ConvolutionalizedNet",
    "convolutionalize",
    "sliding_window",
]

# Modules that act element-wise (or per channel) and so work unchanged on [N, C, H, W] maps.
_POINTWISE = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Identity,
)


def _check_linear(linear: nn.Module) -> nn.Linear:
    if not isinstance(linear, nn.Linear):
        raise TypeError(f"expected an nn.Linear, got {type(linear).__name__}")
    return linear


def linear_to_conv1x1(linear: nn.Linear) -> nn.Conv2d:
    """The 1x1 convolution that applies ``linear`` at every pixel.

    Shapes: ``Linear(C, C')`` -> ``Conv2d(C, C', 1)``; ``conv(x)[:, :, i, j] == linear(x[:, :, i, j])``.
    Same weights (viewed as ``[C', C, 1, 1]``), bias, dtype and device; the conv's weights are
    copies, so training one does not change the other.
    """
    linear = _check_linear(linear)
    conv = nn.Conv2d(linear.in_features, linear.out_features, 1, bias=linear.bias is not None,
                     device=linear.weight.device, dtype=linear.weight.dtype)
    with torch.no_grad():
        conv.weight.copy_(linear.weight.reshape(linear.out_features, linear.in_features, 1, 1))
        if linear.bias is not None:
            conv.bias.copy_(linear.bias)
    return conv


def apply_per_pixel(linear: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """Apply ``linear`` to the channel vector of every pixel: ``(N, C, H, W) -> (N, C', H, W)``.

    The reference for a 1x1 convolution: ``y[:, :, i, j] = linear(x[:, :, i, j])``, computed by
    moving the channels last, calling the linear layer and moving them back.
    """
    linear = _check_linear(linear)
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"x must be a tensor [N, C, H, W], got {getattr(x, 'shape', type(x))}")
    if x.shape[1] != linear.in_features:
        raise ValueError(f"x has {x.shape[1]} channels but the linear layer expects {linear.in_features}")
    return linear(x.movedim(1, -1)).movedim(-1, 1)


def affine_from_conv1x1(conv: nn.Conv2d, height: int, width: int) -> nn.Linear:
    """The fully connected layer over a whole ``height x width`` map that equals a 1x1 convolution.

    Shapes: ``Conv2d(C, C', 1)`` -> ``Linear(C H W, C' H W)`` with
    ``linear(x.flatten(1)).view(N, C', H, W) == conv(x)`` for ``x`` of shape ``(N, C, H, W)``.
    Its weight is ``kron(W, I_{HW})`` (``torch.flatten`` order: channel, then row, then column):
    ``C C' (HW)^2`` entries, of which only the ``C C' HW`` on the pixel diagonal are non-zero and
    they repeat the conv's ``C C'`` weights ``HW`` times. A general affine layer over the map
    would learn all of them; the 1x1 convolution shares one ``C' x C`` matrix across pixels.
    """
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"expected an nn.Conv2d, got {type(conv).__name__}")
    if conv.kernel_size != (1, 1) or conv.stride != (1, 1) or conv.padding != (0, 0) \
            or conv.dilation != (1, 1) or conv.groups != 1:
        raise ValueError("affine_from_conv1x1 needs a plain 1x1 convolution (stride 1, no padding, groups 1)")
    h, w = int_pair((height, width), "map size (height, width)")
    c_in, c_out, hw = conv.in_channels, conv.out_channels, h * w
    weight = conv.weight.detach().reshape(c_out, c_in)
    eye = torch.eye(hw, dtype=weight.dtype, device=weight.device)
    linear = nn.Linear(c_in * hw, c_out * hw, bias=conv.bias is not None,
                       device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        linear.weight.copy_(torch.kron(weight, eye))
        if conv.bias is not None:
            linear.bias.copy_(conv.bias.detach().repeat_interleave(hw))
    return linear


def conv1x1_vs_affine_params(in_channels: int, out_channels: int, sizes: Sequence[int]) -> list[dict]:
    """Parameters of a 1x1 conv vs a fully connected layer over the whole map, one row per map size.

    For a ``(C, s, s)`` -> ``(C', s, s)`` map: the 1x1 convolution has ``C C' + C'`` parameters
    whatever ``s``; the affine layer ``Linear(C s^2, C' s^2)`` has ``C s^2 C' s^2 + C' s^2``.

    Returns:
        ``[{"map": "s x s", "1x1 conv": int, "affine over the map": int, "ratio": float}, ...]``.
    """
    in_channels, out_channels = positive_int(in_channels, "in_channels"), positive_int(out_channels, "out_channels")
    rows = []
    for s in sizes:
        h, w = int_pair(s, "size")
        conv = in_channels * out_channels + out_channels
        affine = (in_channels * h * w) * (out_channels * h * w) + out_channels * h * w
        rows.append({"map": f"{h}x{w}", "1x1 conv": conv, "affine over the map": affine, "ratio": affine / conv})
    return rows


def fc_to_conv(linear: nn.Linear, in_channels: int, spatial_size: Union[int, Sequence[int]]) -> nn.Conv2d:
    """The convolution equal to ``linear(flatten(x))`` for ``x`` of shape ``(N, C, h, w)``.

    ``Linear(C h w, K)`` becomes ``Conv2d(C, K, kernel_size=(h, w))`` without padding: on a
    ``(C, h, w)`` map the output is ``(N, K, 1, 1)`` with the same values as the linear layer on the
    flattened map (``torch.flatten`` order: channel, then row, then column); on a ``(C, H, W)``
    map it is ``(N, K, H - h + 1, W - w + 1)``.

    Raises:
        ValueError: when ``linear.in_features != in_channels * h * w``.
    """
    linear = _check_linear(linear)
    in_channels = positive_int(in_channels, "in_channels")
    h, w = int_pair(spatial_size, "spatial_size")
    expected = in_channels * h * w
    if linear.in_features != expected:
        raise ValueError(
            f"the linear layer has in_features={linear.in_features} but a ({in_channels}, {h}, {w}) map "
            f"flattens to {in_channels}*{h}*{w} = {expected}; pass the shape of the map the classifier flattens"
        )
    conv = nn.Conv2d(in_channels, linear.out_features, (h, w), bias=linear.bias is not None,
                     device=linear.weight.device, dtype=linear.weight.dtype)
    with torch.no_grad():
        conv.weight.copy_(linear.weight.reshape(linear.out_features, in_channels, h, w))
        if linear.bias is not None:
            conv.bias.copy_(linear.bias)
    return conv


def _batchnorm1d_to_2d(bn: nn.BatchNorm1d) -> nn.BatchNorm2d:
    # Same device and dtype as the original (its parameters or, without affine, its running
    # statistics): a float64 or CUDA classifier stays float64 or CUDA after conversion.
    ref = next((t for t in (*bn.parameters(), *bn.buffers()) if t.is_floating_point()), None)
    new = nn.BatchNorm2d(bn.num_features, eps=bn.eps, momentum=bn.momentum, affine=bn.affine,
                         track_running_stats=bn.track_running_stats,
                         device=None if ref is None else ref.device, dtype=None if ref is None else ref.dtype)
    new.load_state_dict(bn.state_dict())
    new.train(bn.training)
    return new


class ConvolutionalizedNet(nn.Sequential):
    """A classifier turned fully convolutional: ``features`` then the converted head.

    Shapes: ``(N, C_in, H, W) -> (N, K, (H' - h) + 1, (W' - w) + 1)`` where ``(H', W')`` is the
    feature map size and ``(h, w)`` the map size the original head flattened; on an image of the
    original ``window`` size the output is ``(N, K, 1, 1)``.

    Attributes:
        window: ``(height, width)`` of the crops the classifier was built for.
        stride: input pixels between neighbouring outputs (product of the feature strides).
        feature_shape: ``(C, h, w)`` of the map the original head flattened.
    """

    def __init__(self, features: nn.Module, head: nn.Sequential, *, window: tuple[int, int],
                 stride: tuple[int, int], feature_shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.features = features
        self.head = head
        self.window, self.stride, self.feature_shape = window, stride, feature_shape

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """Heat-map size for an input of ``height x width`` (with unpadded features)."""
        (wh, ww), (sh, sw) = self.window, self.stride
        if height < wh or width < ww:
            raise ValueError(f"the input {height}x{width} is smaller than the classifier's window {wh}x{ww}")
        return (height - wh) // sh + 1, (width - ww) // sw + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if x.dim() != 4:
            raise ValueError(f"expected images [N, C, H, W], got {tuple(x.shape)}")
        wh, ww = self.window
        if x.shape[-2] < wh or x.shape[-1] < ww:
            raise ValueError(
                f"the input {x.shape[-2]}x{x.shape[-1]} is smaller than the classifier's window {wh}x{ww}"
            )
        return self.head(self.features(x))


def _stride_of(features: nn.Module) -> tuple[int, int]:
    sh = sw = 1
    for m in features.modules():
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            s = m.stride if isinstance(m.stride, (tuple, list)) else (m.stride, m.stride)
            sh, sw = sh * int(s[0]), sw * int(s[1])
    return sh, sw


def convolutionalize(classifier: nn.Sequential, input_size: Union[int, Sequence[int]]) -> ConvolutionalizedNet:
    """Turn ``Sequential(features..., Flatten, Linear, act, ..., Linear)`` into a fully convolutional net.

    The modules before the first ``nn.Flatten`` are kept (deep copies); the first ``Linear`` after
    it becomes a ``(h, w)`` convolution (:func:`fc_to_conv`), later ``Linear`` layers become 1x1
    convolutions (:func:`linear_to_conv1x1`), ``BatchNorm1d`` becomes ``BatchNorm2d`` with the same
    statistics, and element-wise modules (activations, ``Dropout``) are copied. The classifier is
    left unchanged.

    On an ``input_size`` image the result outputs ``(N, K, 1, 1)`` equal to the classifier's
    ``(N, K)``; on a larger image output ``(i, j)`` equals the classifier on the crop at
    ``(i * stride, j * stride)`` when the features have no padding (with padding, crops see zeros
    at their border where the large image has pixels, so only the interior matches).

    Args:
        classifier: the classifier (its mode, train or eval, is copied).
        input_size: the crop size ``h`` or ``(h, w)`` it was trained on; used to find the shape of
            the map that ``Flatten`` receives.

    Raises:
        TypeError: when the model is not of this form or has a layer that cannot be converted.
        ValueError: when the first ``Linear`` does not match the flattened feature map.
    """
    if not isinstance(classifier, nn.Sequential):
        raise TypeError(f"convolutionalize expects an nn.Sequential classifier, got {type(classifier).__name__}")
    modules = list(classifier.children())
    flat = next((i for i, m in enumerate(modules) if isinstance(m, nn.Flatten)), None)
    if flat is None:
        raise TypeError("the classifier has no nn.Flatten: expected Sequential(features..., Flatten, Linear, ...)")
    if flat == 0:
        raise TypeError("the classifier has no convolutional features before nn.Flatten")
    if modules[flat].start_dim != 1 or modules[flat].end_dim != -1:
        raise TypeError("only nn.Flatten(start_dim=1, end_dim=-1) (the default) can be converted")
    features = nn.Sequential(*(copy.deepcopy(m) for m in modules[:flat]))
    head_modules = modules[flat + 1:]
    if not head_modules or not isinstance(head_modules[0], nn.Linear):
        raise TypeError("the module after nn.Flatten must be an nn.Linear")

    h, w = int_pair(input_size, "input_size")
    first_conv = next((m for m in features.modules() if isinstance(m, nn.Conv2d)), None)
    if first_conv is None:
        raise TypeError("the features before nn.Flatten contain no nn.Conv2d")
    param = next(features.parameters())
    was_training = features.training
    features.eval()
    with torch.no_grad():
        fmap = features(torch.zeros(1, first_conv.in_channels, h, w, device=param.device, dtype=param.dtype))
    features.train(was_training)
    if fmap.dim() != 4:
        raise TypeError(f"the features must output a map [N, C, h, w], got {tuple(fmap.shape)}")
    c, fh, fw = fmap.shape[1:]

    head: list[nn.Module] = []
    for i, m in enumerate(head_modules):
        if isinstance(m, nn.Linear):
            head.append(fc_to_conv(m, c, (fh, fw)) if i == 0 else linear_to_conv1x1(m))
        elif isinstance(m, nn.BatchNorm1d):
            head.append(_batchnorm1d_to_2d(m))
        elif isinstance(m, nn.Dropout):
            head.append(nn.Dropout(m.p))  # element-wise dropout works on any shape
        elif isinstance(m, _POINTWISE):
            head.append(copy.deepcopy(m))
        else:
            raise TypeError(
                f"cannot convert {type(m).__name__} after nn.Flatten: only Linear, BatchNorm1d, Dropout and "
                "element-wise activations are supported"
            )
    head_seq = nn.Sequential(*head)
    head_seq.train(classifier.training)
    net = ConvolutionalizedNet(features, head_seq, window=(h, w), stride=_stride_of(features),
                               feature_shape=(int(c), int(fh), int(fw)))
    net.train(classifier.training)
    return net


@torch.no_grad()
def sliding_window(classifier: nn.Module, images: torch.Tensor, window: Union[int, Sequence[int]],
                   stride: Union[int, Sequence[int]], *, batch_size: int = 256) -> torch.Tensor:
    """Run a crop classifier on every ``window`` crop at steps of ``stride``, the slow way.

    Shapes: ``(N, C, H, W) -> (N, K, (H - h) // s + 1, (W - w) // s + 1)``; entry ``(i, j)`` is
    ``classifier(images[..., i s : i s + h, j s : j s + w])``. The reference that a
    :func:`convolutionalize`-d net reproduces in one pass (recomputing nothing that overlaps).
    The classifier is run in its current mode (call ``.eval()`` first for batch norm).
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise ValueError(f"images must be a tensor [N, C, H, W], got {getattr(images, 'shape', type(images))}")
    (wh, ww), (sh, sw) = int_pair(window, "window"), int_pair(stride, "stride")
    n, c, height, width = images.shape
    if height < wh or width < ww:
        raise ValueError(f"the images {height}x{width} are smaller than the window {wh}x{ww}")
    crops = images.unfold(2, wh, sh).unfold(3, ww, sw)        # [N, C, h', w', wh, ww]
    oh, ow = crops.shape[2:4]
    crops = crops.permute(0, 2, 3, 1, 4, 5).reshape(n * oh * ow, c, wh, ww)
    logits = torch.cat([classifier(chunk) for chunk in crops.split(batch_size)])
    if logits.dim() != 2:
        raise ValueError(f"the classifier must return logits [N, K], got {tuple(logits.shape)}")
    return logits.reshape(n, oh, ow, -1).permute(0, 3, 1, 2)
