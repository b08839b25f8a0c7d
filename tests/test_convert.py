"""Tests for segbook.nn.convert: 1x1 conv == per-pixel affine, FC head == (h, w) conv, convolutionalize."""
import pytest
import torch
import torch.nn as nn

from segbook.models.fcn import patch_classifier
from segbook.nn.convert import ConvolutionalizedNet, convolutionalize, fc_to_conv, linear_to_conv1x1


@pytest.mark.parametrize("bias", [True, False])
def test_linear_to_conv1x1_equals_linear_at_every_pixel(bias):
    torch.manual_seed(0)
    lin = nn.Linear(7, 5, bias=bias)
    conv = linear_to_conv1x1(lin)
    assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1) and (conv.bias is not None) == bias
    x = torch.randn(3, 7, 6, 4)
    y = conv(x)
    ref = lin(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    assert y.shape == (3, 5, 6, 4)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-6)
    assert sum(p.numel() for p in conv.parameters()) == sum(p.numel() for p in lin.parameters())


def test_conversion_copies_weights():
    # same values, own storage: training the conv (weight or bias) leaves the linear layer as it was
    lin = nn.Linear(3, 2)
    before = {k: v.clone() for k, v in lin.state_dict().items()}
    conv = linear_to_conv1x1(lin)
    assert torch.equal(conv.weight, lin.weight.view(2, 3, 1, 1)) and torch.equal(conv.bias, lin.bias)
    with torch.no_grad():
        conv.weight.add_(1.0)
        conv.bias.add_(1.0)
    for name, value in lin.state_dict().items():
        assert torch.equal(value, before[name]), f"changing the conv changed the linear layer's {name}"


def test_linear_to_conv1x1_keeps_dtype():
    conv = linear_to_conv1x1(nn.Linear(4, 3).double())
    assert conv.weight.dtype == torch.float64


@pytest.mark.parametrize("chw", [(4, 3, 5), (1, 1, 1), (6, 2, 2)])
def test_fc_to_conv_matches_flatten_linear(chw):
    torch.manual_seed(1)
    c, h, w = chw
    lin = nn.Linear(c * h * w, 9)
    conv = fc_to_conv(lin, c, (h, w))
    assert conv.kernel_size == (h, w)
    x = torch.randn(2, c, h, w)
    out = conv(x)
    assert out.shape == (2, 9, 1, 1)
    torch.testing.assert_close(out.flatten(1), lin(x.flatten(1)), rtol=1e-5, atol=1e-5)


def test_fc_to_conv_slides_over_a_larger_map():
    torch.manual_seed(2)
    lin = nn.Linear(3 * 2 * 2, 4)
    conv = fc_to_conv(lin, 3, 2)
    x = torch.randn(1, 3, 5, 6)
    out = conv(x)
    assert out.shape == (1, 4, 4, 5)
    for i in range(4):
        for j in range(5):
            torch.testing.assert_close(out[0, :, i, j], lin(x[:, :, i:i + 2, j:j + 2].flatten(1))[0],
                                       rtol=1e-5, atol=1e-5)


def test_fc_to_conv_errors():
    with pytest.raises(ValueError, match=r"in_features=12 .* 3\*2\*3 = 18"):
        fc_to_conv(nn.Linear(12, 2), 3, (2, 3))
    with pytest.raises(TypeError, match="nn.Linear"):
        fc_to_conv(nn.Conv2d(1, 1, 1), 1, 1)
    with pytest.raises(TypeError, match="nn.Linear"):
        linear_to_conv1x1(nn.Identity())
    with pytest.raises(ValueError, match="in_channels"):
        fc_to_conv(nn.Linear(4, 2), 0, 2)
    with pytest.raises(ValueError, match="spatial_size"):
        fc_to_conv(nn.Linear(4, 2), 1, (2, 2, 1))


def _trained_like(model):
    # Give batch norm non-trivial running statistics and put the model in eval mode.
    torch.manual_seed(3)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(8, 3, 16, 16))
    return model.eval()


def test_convolutionalize_equals_the_classifier_on_every_crop():
    clf = _trained_like(patch_classifier(num_classes=6, width=8, hidden=16))
    fcn = convolutionalize(clf, 16)
    assert isinstance(fcn, ConvolutionalizedNet) and fcn.stride == (4, 4) and fcn.window == (16, 16)
    assert fcn.feature_shape == (16, 2, 2) and not fcn.training
    x = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(fcn(x).flatten(1), clf(x), rtol=1e-4, atol=1e-5)
    big = torch.rand(1, 3, 40, 36)
    heat = fcn(big)
    assert heat.shape[-2:] == fcn.output_size(40, 36) == (7, 6)
    crops = torch.stack([big[0, :, 4 * i:4 * i + 16, 4 * j:4 * j + 16] for i in range(7) for j in range(6)])
    ref = clf(crops).reshape(7, 6, 6).permute(2, 0, 1)
    torch.testing.assert_close(heat[0], ref, rtol=1e-4, atol=1e-5)


def test_convolutionalize_handles_batchnorm1d_dropout_and_leaves_the_original():
    torch.manual_seed(4)
    clf = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 3 * 3, 8),
                        nn.BatchNorm1d(8), nn.Dropout(0.5), nn.GELU(), nn.Linear(8, 2))
    clf.train()
    clf(torch.randn(16, 3, 5, 5))
    clf.eval()
    before = {k: v.clone() for k, v in clf.state_dict().items()}
    fcn = convolutionalize(clf, 5)
    x = torch.randn(4, 3, 5, 5)
    torch.testing.assert_close(fcn(x).flatten(1), clf(x), rtol=1e-4, atol=1e-5)
    for k, v in clf.state_dict().items():
        assert torch.equal(v, before[k])


def test_convolutionalize_errors():
    with pytest.raises(TypeError, match="Flatten"):
        convolutionalize(nn.Sequential(nn.Conv2d(3, 2, 3), nn.Linear(2, 2)), 8)
    with pytest.raises(TypeError, match="Sequential"):
        convolutionalize(nn.Linear(3, 2), 8)
    with pytest.raises(TypeError, match="nn.Linear"):
        convolutionalize(nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten(), nn.ReLU()), 8)
    with pytest.raises(TypeError, match="cannot convert LayerNorm"):
        convolutionalize(nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten(), nn.Linear(8, 4), nn.LayerNorm(4)), 4)
    # The crop size does not match what the classifier's first Linear expects.
    with pytest.raises(ValueError, match="in_features=64"):
        convolutionalize(patch_classifier(width=8), 20)
    fcn = convolutionalize(patch_classifier(width=8).eval(), 16)
    with pytest.raises(ValueError, match="smaller than the classifier's window 16x16"):
        fcn(torch.rand(1, 3, 12, 20))


# ---- per-pixel reference, dense equivalent, parameter table, sliding window ----------------------
from segbook.nn.convert import (  # noqa: E402
    affine_from_conv1x1, apply_per_pixel, conv1x1_vs_affine_params, sliding_window,
)


def test_apply_per_pixel_matches_a_loop():
    torch.manual_seed(0)
    lin = nn.Linear(5, 3)
    x = torch.randn(2, 5, 4, 6)
    y = apply_per_pixel(lin, x)
    assert y.shape == (2, 3, 4, 6)
    for i in range(4):
        for j in range(6):
            torch.testing.assert_close(y[:, :, i, j], lin(x[:, :, i, j]))
    with pytest.raises(ValueError):
        apply_per_pixel(lin, torch.randn(2, 4, 4, 6))
    with pytest.raises(ValueError):
        apply_per_pixel(lin, torch.randn(5, 4))
    with pytest.raises(TypeError):
        apply_per_pixel(nn.Conv2d(5, 3, 1), x)


@pytest.mark.parametrize("bias", [True, False])
def test_affine_from_conv1x1_equals_the_conv(bias):
    torch.manual_seed(1)
    conv = nn.Conv2d(4, 3, 1, bias=bias)
    dense = affine_from_conv1x1(conv, 5, 7)
    assert (dense.in_features, dense.out_features) == (4 * 35, 3 * 35)
    assert (dense.bias is None) == (not bias)
    x = torch.randn(2, 4, 5, 7)
    with torch.no_grad():
        torch.testing.assert_close(dense(x.flatten(1)).view(2, 3, 5, 7), conv(x))
    # only the pixel diagonal is non-zero: C C' HW of the C C' (HW)^2 weights
    assert int((dense.weight != 0).sum()) <= 4 * 3 * 35


def test_affine_from_conv1x1_errors():
    with pytest.raises(ValueError):
        affine_from_conv1x1(nn.Conv2d(4, 3, 3), 5, 5)
    with pytest.raises(ValueError):
        affine_from_conv1x1(nn.Conv2d(4, 3, 1, stride=2), 5, 5)
    with pytest.raises(TypeError):
        affine_from_conv1x1(nn.Linear(4, 3), 5, 5)
    with pytest.raises(ValueError):
        affine_from_conv1x1(nn.Conv2d(4, 3, 1), 0, 5)


def test_conv1x1_vs_affine_params_matches_modules():
    rows = conv1x1_vs_affine_params(6, 4, [1, 3, (2, 5)])
    assert [r["map"] for r in rows] == ["1x1", "3x3", "2x5"]
    for r, hw in zip(rows, [(1, 1), (3, 3), (2, 5)]):
        conv = nn.Conv2d(6, 4, 1)
        dense = affine_from_conv1x1(conv, *hw)
        assert r["1x1 conv"] == sum(p.numel() for p in conv.parameters())
        assert r["affine over the map"] == sum(p.numel() for p in dense.parameters())
        assert r["ratio"] == pytest.approx(r["affine over the map"] / r["1x1 conv"])
    assert rows[0]["ratio"] == 1
    with pytest.raises(ValueError):
        conv1x1_vs_affine_params(0, 4, [2])


def test_sliding_window_equals_classifier_on_each_crop_and_the_convolutionalized_net():
    torch.manual_seed(2)
    clf = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 3 * 3, 5)).eval()
    x = torch.randn(2, 3, 16, 20)
    out = sliding_window(clf, x, 8, 2, batch_size=7)
    assert out.shape == (2, 5, 5, 7)
    with torch.no_grad():
        torch.testing.assert_close(out[:, :, 2, 3], clf(x[:, :, 4:12, 6:14]))
        torch.testing.assert_close(out[:, :, 4, 6], clf(x[:, :, 8:16, 12:20]))
        net = convolutionalize(clf, 8).eval()
        torch.testing.assert_close(net(x), out, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError):
        sliding_window(clf, torch.randn(1, 3, 6, 6), 8, 2)
    with pytest.raises(ValueError):
        sliding_window(clf, torch.randn(3, 6, 6), 8, 2)


def test_convolutionalize_keeps_a_float64_classifiers_dtype_with_batchnorm1d():
    """Was: BatchNorm1d became a float32 BatchNorm2d and a float64 net failed with 'mixed dtype (CPU)'."""
    import torch.nn as nn
    from segbook.nn import convolutionalize
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 8),
                          nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 5)).double().eval()
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    conv = convolutionalize(model, 8).eval()
    out = conv(x)
    assert out.dtype == torch.float64 and out.shape == (2, 5, 1, 1)
    assert torch.allclose(out.flatten(1), model(x), atol=1e-10)
