"""Tests for segbook.models.backbones: the VGG backbone of FCN, the dilated ResNet backbone and its output stride."""
import pytest
import torch
import torch.nn as nn
import torchvision

from segbook.analysis import empirical_receptive_field, receptive_field
from segbook.models.resnet import BasicBlock, Bottleneck
from segbook.models.backbones import (
    OUTPUT_STRIDES, VGG_MIN_INPUT_SIZE, ResNetBackbone, VGGBackbone, dilation_schedule, resnet_backbone, vgg_backbone,
)

NAMES = ["stem", "layer1", "layer2", "layer3", "layer4"]


class _Layer4(nn.Module):
    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone

    def forward(self, x):
        return self.backbone(x)["layer4"]


def test_vgg_features_by_name_and_stride():
    bb = vgg_backbone(width=4).eval()
    feats = bb(torch.rand(2, 3, 64, 64))
    assert list(feats) == ["pool1", "pool2", "pool3", "pool4", "pool5"]
    assert bb.strides == {"pool1": 2, "pool2": 4, "pool3": 8, "pool4": 16, "pool5": 32}
    for name, f in feats.items():
        s = bb.strides[name]
        assert f.shape == (2, bb.channels[name], 64 // s, 64 // s)
    assert bb.channels == {"pool1": 4, "pool2": 8, "pool3": 16, "pool4": 32, "pool5": 32}


@pytest.mark.parametrize("hw", [(50, 70), (33, 95), (45, 45)])
def test_vgg_ceil_sizes(hw):
    feats = vgg_backbone(width=4).eval()(torch.rand(1, 3, *hw))
    for k, f in enumerate(feats.values(), start=1):
        assert f.shape[-2:] == tuple(-(-s // 2 ** k) for s in hw)


def test_vgg_bad_arguments_and_input():
    with pytest.raises(ValueError, match="5 entries"):
        VGGBackbone(widths=(4, 8, 16))
    with pytest.raises(ValueError, match=r"depths\[2\] must be a positive int, got 0"):
        VGGBackbone(depths=(1, 1, 0, 2, 2))
    with pytest.raises(ValueError, match="width must be a positive int, got 0"):
        vgg_backbone(width=0)
    bb = vgg_backbone(width=4)
    assert bb.min_input_size == VGG_MIN_INPUT_SIZE == bb.strides["pool5"]
    with pytest.raises(ValueError, match=f"at least {VGG_MIN_INPUT_SIZE}"):
        bb(torch.rand(1, 3, VGG_MIN_INPUT_SIZE - 1, 64))


def test_vgg_backbone_has_one_public_home():
    # The VGG backbone lives in segbook.models.backbones (exported by segbook.models); segbook.models.fcn
    # only uses it and does not re-export it (no chapter imports it from there).
    import segbook.models.fcn as fcn
    from segbook.models import VGGBackbone as from_models, vgg_backbone as builder_from_models

    assert from_models is VGGBackbone and builder_from_models is vgg_backbone
    assert "VGGBackbone" not in fcn.__all__ and "vgg_backbone" not in fcn.__all__


def test_dilation_schedule():
    assert dilation_schedule(32) == (False, False, False)
    assert dilation_schedule(16) == (False, False, True)
    assert dilation_schedule(8) == (False, True, True)
    with pytest.raises(ValueError, match="output_stride"):
        dilation_schedule(4)


@pytest.mark.parametrize("output_stride", OUTPUT_STRIDES)
@pytest.mark.parametrize("stem", ["small", "imagenet"])
@pytest.mark.parametrize("size", [(64, 64), (67, 45), (33, 100)])
def test_maps_by_name_with_the_advertised_strides(output_stride, stem, size):
    bb = resnet_backbone(depth=10, width=4, output_stride=output_stride, stem=stem).eval()
    with torch.inference_mode():
        feats = bb(torch.rand(2, 3, *size))
    assert list(feats) == NAMES
    expected = {"stem": 2 if stem == "small" else 4, "layer1": 4, "layer2": 8,
                "layer3": min(16, output_stride), "layer4": output_stride}
    assert bb.strides == expected and bb.output_stride == output_stride
    for name, f in feats.items():
        s = bb.strides[name]
        assert f.shape == (2, bb.channels[name], -(-size[0] // s), -(-size[1] // s)), name


def test_dilation_multiplies_as_in_torchvision():
    # compare every 3x3 conv's (stride, dilation, padding) with torchvision's ResNet-50
    for output_stride in OUTPUT_STRIDES:
        replace = list(dilation_schedule(output_stride))
        ours = ResNetBackbone("bottleneck", (3, 4, 6, 3), widths=(4, 8, 16, 32), stem="imagenet",
                              replace_stride_with_dilation=replace)
        ref = torchvision.models.resnet50(weights=None, replace_stride_with_dilation=replace)
        for name in NAMES[1:]:
            a = [(m.stride, m.dilation, m.padding) for m in getattr(ours, name).modules()
                 if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
            b = [(m.stride, m.dilation, m.padding) for m in getattr(ref, name).modules()
                 if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
            assert a == b, (output_stride, name)
            sa = [m.stride for m in getattr(ours, name).modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)]
            sb = [m.stride for m in getattr(ref, name).modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)]
            assert sa == sb, (output_stride, name)
    assert ResNetBackbone("basic", (2, 2, 2, 2), replace_stride_with_dilation=[False, True, True]).dilations == \
        {"layer1": 1, "layer2": 1, "layer3": 2, "layer4": 4}


def _first(v):
    return v[0] if isinstance(v, tuple) else v


def _main_path_spec(bb):
    layers = [m for m in bb.stem.modules() if isinstance(m, (nn.Conv2d, nn.MaxPool2d))]
    for name in NAMES[1:]:
        for block in getattr(bb, name):
            layers += [block.conv1, block.conv2]
    return [(_first(m.kernel_size), _first(m.stride), _first(m.dilation)) for m in layers]


@pytest.mark.parametrize("stem", ["small", "imagenet"])
def test_dilation_keeps_the_receptive_field(stem):
    # dilating instead of striding changes the resolution, not the field (theory and gradients agree)
    fields = []
    for output_stride in OUTPUT_STRIDES:
        torch.manual_seed(0)
        bb = resnet_backbone(depth=10, width=4, output_stride=output_stride, stem=stem)
        theory = receptive_field(_main_path_spec(bb))[-1]
        measured = empirical_receptive_field(_Layer4(bb), (1, 3, 2 * theory + 10, 2 * theory + 10))
        assert measured == theory
        fields.append(measured)
    assert len(set(fields)) == 1


def test_bottleneck_backbone_channels():
    bb = resnet_backbone(depth=50, width=4, output_stride=16).eval()
    assert bb.channels == {"stem": 4, "layer1": 16, "layer2": 32, "layer3": 64, "layer4": 128}
    assert bb(torch.rand(1, 3, 48, 48))["layer4"].shape == (1, 128, 3, 3)


def test_backbone_trains():
    torch.manual_seed(0)
    bb = resnet_backbone(depth=10, width=4, output_stride=8)
    out = bb(torch.rand(2, 3, 32, 32))
    out["layer4"].mean().backward()
    assert all(p.grad is not None for p in bb.parameters())


@pytest.mark.parametrize("kwargs,match", [
    (dict(depth=12), "depth"), (dict(width=0), "width"), (dict(output_stride=4), "output_stride"),
    (dict(stem="vgg"), "stem"),
])
def test_bad_builder_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        resnet_backbone(**kwargs)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="3 bools"):
        ResNetBackbone(replace_stride_with_dilation=(True, True))
    with pytest.raises(ValueError, match="4 entries"):
        ResNetBackbone(layers=(1, 1, 1))
    with pytest.raises(ValueError, match="block"):
        ResNetBackbone("wide")


def test_bad_input_is_named():
    bb = resnet_backbone(depth=10, width=4, output_stride=16).eval()
    with pytest.raises(ValueError, match="nearest that work: 16"):
        bb(torch.rand(1, 3, 8, 32))
    with pytest.raises(ValueError, match="3 input channels"):
        bb(torch.rand(1, 1, 32, 32))
    with pytest.raises(TypeError, match="float"):
        bb(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))


@pytest.mark.parametrize("block_cls", [BasicBlock, Bottleneck])
def test_blocks_take_a_dilation_and_keep_the_size(block_cls):
    out_ch = 8 * block_cls.expansion
    down = nn.Sequential(nn.Conv2d(8, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch)) if out_ch != 8 else None
    block = block_cls(8, 8, 1, down, dilation=4, first_dilation=2).eval()
    assert block(torch.rand(1, 8, 11, 9)).shape == (1, out_ch, 11, 9)
    convs3 = [m for m in block.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    expected = [(2, 2), (4, 4)] if block_cls is BasicBlock else [(2, 2)]  # a bottleneck's one 3x3 takes first_dilation
    assert [c.dilation for c in convs3] == expected
    assert all(c.padding == c.dilation for c in convs3)
    plain = block_cls(8, 8, 1, down)
    assert all(m.dilation == (1, 1) for m in plain.modules() if isinstance(m, nn.Conv2d))
