"""Tests for segbook.models.pretrained: torchvision VGG-16 weights in segbook's VGGBackbone.

Never downloads: weights are random tensors in torchvision's exact layout (built with
torchvision's own ``vgg.make_layers``), saved to tmp_path and loaded from there. The named-weights
path is checked with torchvision's builder replaced by a stand-in.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torchvision.models as tvm
from torchvision.models import vgg as tv_vgg

from segbook.models.backbones import vgg_backbone
from segbook.models.fcn import FCN
from segbook.models.pretrained import (
    IMAGENET_MEAN, IMAGENET_STD, ImageNetNormalized, fcn_vgg16, load_vgg16_features, vgg16_backbone,
)


def _torchvision_features(batch_norm: bool, seed: int = 0) -> nn.Sequential:
    """torchvision's VGG-16 ``features`` with random weights and non-trivial BN statistics."""
    torch.manual_seed(seed)
    features = tv_vgg.make_layers(tv_vgg.cfgs["D"], batch_norm=batch_norm)
    with torch.no_grad():
        for m in features.modules():
            if isinstance(m, nn.Conv2d):
                m.bias.uniform_(-0.5, 0.5)
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
    return features


def _pool_outputs(features: nn.Sequential, x: torch.Tensor) -> list[torch.Tensor]:
    outs = []
    for layer in features:
        x = layer(x)
        if isinstance(layer, nn.MaxPool2d):
            outs.append(x)
    return outs


@pytest.fixture(scope="module", params=[True, False], ids=["vgg16_bn", "vgg16"])
def saved(request, tmp_path_factory):
    batch_norm = request.param
    features = _torchvision_features(batch_norm)
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 3)  # a full model's dict also has the classifier: ignored
    path = tmp_path_factory.mktemp("weights") / ("vgg16_bn.pth" if batch_norm else "vgg16.pth")
    torch.save(state, path)
    return batch_norm, features, path


def test_loaded_backbone_matches_torchvision_in_eval_mode(saved):
    batch_norm, features, path = saved
    backbone = vgg16_backbone(weights=path, normalize=False).eval()
    features.eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        ours = backbone(x)
        theirs = _pool_outputs(features, x)
    assert list(ours) == ["pool1", "pool2", "pool3", "pool4", "pool5"]
    for (name, a), b in zip(ours.items(), theirs):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4, msg=f"{name} differs")


def test_bn_weights_match_in_training_mode_too(saved):
    """The conv bias folded into BN's mean is exact under batch statistics as well (vgg16_bn only)."""
    batch_norm, features, path = saved
    if not batch_norm:
        pytest.skip("plain vgg16 weights are exact in eval mode only (documented)")
    backbone = vgg16_backbone(weights=path, normalize=False).train()
    reference = _torchvision_features(True).train()  # same seed: same weights, fresh BN buffers
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        ours, theirs = backbone(x), _pool_outputs(reference, x)
    for a, b in zip(ours.values(), theirs):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_normalized_wrapper_and_fcn(saved):
    _, _, path = saved
    wrapped = vgg16_backbone(weights=path).eval()
    assert isinstance(wrapped, ImageNetNormalized)
    x = torch.rand(1, 3, 32, 32)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(wrapped(x)["pool5"], wrapped.backbone((x - mean) / std)["pool5"])
    assert wrapped.channels["pool5"] == 512 and wrapped.strides["pool3"] == 8 and wrapped.min_input_size == 32
    model = fcn_vgg16("fcn8s", num_classes=2, weights=path, hidden=32).eval()
    assert isinstance(model, FCN) and model.variant == "fcn8s"
    with torch.no_grad():
        assert model(torch.rand(1, 3, 40, 56)).shape == (1, 2, 40, 56)
    with pytest.raises(ValueError, match="expects 3 input channels"):
        wrapped(torch.rand(1, 1, 32, 32))


def test_small_backbone_is_refused_clearly(saved):
    _, features, _ = saved
    with pytest.raises(ValueError, match=r"not VGG-16-sized: 8 conv layers .*vgg16_backbone\(\)"):
        load_vgg16_features(vgg_backbone(width=16), features.state_dict())


def test_wrong_state_dict_is_refused_clearly(tmp_path):
    with pytest.raises(ValueError, match=r"not a torchvision vgg16 state dict \(26 keys missing"):
        load_vgg16_features(vgg16_backbone(normalize=False), {"conv1.weight": torch.zeros(64, 3, 7, 7)})
    narrow = tv_vgg.make_layers([32 if v == 64 else v for v in tv_vgg.cfgs["D"]], batch_norm=True)
    with pytest.raises(ValueError, match=r"features.0.weight: \[32, 3, 3, 3\], expected \[64, 3, 3, 3\]"):
        load_vgg16_features(vgg16_backbone(normalize=False), narrow.state_dict())
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="not a state dict"):
        vgg16_backbone(weights=tmp_path / "list.pth")
    with pytest.raises(FileNotFoundError, match="neither one of"):
        vgg16_backbone(weights=tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="variant must be one of"):
        fcn_vgg16("fcn4s", num_classes=2, weights=None)


def test_named_weights_ask_torchvision_for_imagenet(monkeypatch, saved):
    """'imagenet' goes to torchvision's VGG16_BN IMAGENET1K_V1 (stand-in here: no download)."""
    batch_norm, features, _ = saved
    if not batch_norm:
        pytest.skip("checked once")
    asked = []

    class StandIn:
        def state_dict(self):
            return {f"features.{k}": v for k, v in features.state_dict().items()}

    def fake_vgg16_bn(*, weights):
        asked.append(weights)
        return StandIn()

    monkeypatch.setattr(tvm, "vgg16_bn", fake_vgg16_bn)
    backbone = vgg16_backbone(weights="imagenet", normalize=False)
    assert asked == [tvm.VGG16_BN_Weights.IMAGENET1K_V1]
    torch.testing.assert_close(backbone.stages["pool1"][0][0].weight, features[0].weight)
