"""Tests for segbook.models.inception: module widths, reductions, auxiliary heads."""
import pytest
import torch

from segbook.analysis import count_macs, count_params
from segbook.models.inception import (
    GOOGLENET_CONFIGS,
    Inception,
    InceptionConfig,
    googlenet_small,
    inception_3a,
    without_reductions,
)


def conv_bn(cin, cout, k):
    return cin * cout * k * k + 2 * cout  # bias-free conv + BN scale/shift


def test_inception_3a_gives_256_channels():
    m = inception_3a().eval()
    x = torch.randn(2, 192, 28, 28)
    y = m(x)
    assert y.shape == (2, 256, 28, 28)
    assert m.out_channels == 256 == GOOGLENET_CONFIGS["3a"].out_channels
    assert [b.shape[1] for b in m.forward_branches(x)] == [64, 128, 32, 32]
    # The concatenation is exactly the branches side by side.
    assert torch.equal(torch.cat(m.forward_branches(x), 1), y)


def test_param_counts_with_and_without_reductions():
    with_red = inception_3a()
    expected = (conv_bn(192, 64, 1) + conv_bn(192, 96, 1) + conv_bn(96, 128, 3)
                + conv_bn(192, 16, 1) + conv_bn(16, 32, 5) + conv_bn(192, 32, 1))
    assert count_params(with_red) == expected
    naive = without_reductions(with_red)
    expected_naive = conv_bn(192, 64, 1) + conv_bn(192, 128, 3) + conv_bn(192, 32, 5) + conv_bn(192, 32, 1)
    assert count_params(naive) == expected_naive
    assert count_params(naive) > 2 * count_params(with_red)
    assert naive(torch.randn(1, 192, 8, 8)).shape == (1, 256, 8, 8)
    assert count_macs(naive, (1, 192, 8, 8)) > 2 * count_macs(with_red, (1, 192, 8, 8))


def test_config_scaling_and_errors():
    cfg = InceptionConfig(64, 96, 128, 16, 32, 32).scaled(0.25)
    assert cfg == InceptionConfig(16, 24, 32, 4, 8, 8)
    with pytest.raises(ValueError):
        Inception(0, cfg)
    with pytest.raises(ValueError, match="expected input"):
        Inception(8, cfg)(torch.randn(1, 4, 8, 8))
    with pytest.raises(TypeError):
        without_reductions(torch.nn.Conv2d(1, 1, 1))


def test_aux_heads_in_train_only():
    torch.manual_seed(0)
    m = googlenet_small(num_classes=5, width_mult=0.125)
    x = torch.randn(2, 3, 16, 16)
    m.train()
    out = m(x)
    assert isinstance(out, tuple) and len(out) == 3
    assert all(o.shape == (2, 5) for o in out)
    m.eval()
    out = m(x)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 5)
    # The aux heads get gradient in training mode, none from the eval output.
    m.train()
    sum(o.sum() for o in m(x)).backward()
    assert m.aux1.fc2.weight.grad is not None and m.aux2.fc2.weight.grad is not None
    m.zero_grad(set_to_none=True)
    m.eval()
    m(x).sum().backward()
    assert m.aux1.fc2.weight.grad is None


def test_no_aux_logits():
    m = googlenet_small(width_mult=0.125, aux_logits=False).train()
    assert isinstance(m(torch.randn(2, 3, 16, 16)), torch.Tensor)
    assert m.aux1 is None
    assert count_params(m) < count_params(googlenet_small(width_mult=0.125))


def test_without_aux_heads_keeps_every_shared_weight_and_trains_on_the_main_output():
    from segbook.models import without_aux_heads

    torch.manual_seed(0)
    aux = googlenet_small(num_classes=5, width_mult=0.125)
    twin = without_aux_heads(aux)
    shared = {k: v for k, v in aux.state_dict().items() if not k.startswith(("aux1.", "aux2."))}
    assert shared.keys() == twin.state_dict().keys() and len(shared) < len(aux.state_dict())
    assert all(torch.equal(v, twin.state_dict()[k]) for k, v in shared.items())   # values, not only names
    x = torch.randn(2, 3, 16, 16)
    aux.eval(), twin.eval()
    assert torch.equal(aux(x), twin(x))                       # the same function at test time
    twin.train()
    assert isinstance(twin(x), torch.Tensor) and twin.aux1 is None and aux.aux1 is not None   # original untouched
    # a second net built with aux_logits=False from the same seed does not share the final classifier
    torch.manual_seed(0)
    fresh = googlenet_small(num_classes=5, width_mult=0.125, aux_logits=False)
    assert not torch.equal(fresh.fc.weight, aux.fc.weight)
    with pytest.raises(TypeError, match="GoogLeNet"):
        without_aux_heads(torch.nn.Linear(2, 2))


def test_googlenet_small_is_keyword_only():
    with pytest.raises(TypeError):
        googlenet_small(10)  # noqa: num_classes must be named, like the other builders
    assert googlenet_small(num_classes=7, width_mult=0.125).eval()(torch.randn(1, 3, 32, 32)).shape == (1, 7)


def test_googlenet_bad_input():
    m = googlenet_small(width_mult=0.125)
    with pytest.raises(ValueError, match="images"):
        m(torch.randn(2, 1, 32, 32))
    with pytest.raises(ValueError, match="width"):
        googlenet_small(width_mult=0)


def test_inception_aux_head_shapes_and_parameters():
    from segbook.models.inception import InceptionAux

    head = InceptionAux(64, 10, conv_ch=8, fc_ch=32, dropout=0.5)
    for hw in ((14, 14), (5, 7), (2, 2)):   # adaptive pooling to 4x4 accepts any map size
        assert head(torch.randn(3, 64, *hw)).shape == (3, 10)
    # 1x1 conv (no bias, BN) + FC(8*16 -> 32) + FC(32 -> 10)
    expected = 64 * 8 + 2 * 8 + (8 * 16 * 32 + 32) + (32 * 10 + 10)
    assert count_params(head) == expected


def test_aux_classifier_is_the_side_head_on_the_shared_trunk():
    from segbook.models import aux_classifier, googlenet_small, without_aux_heads
    torch.manual_seed(0)
    net = googlenet_small(num_classes=5, width_mult=0.125).eval()
    x = torch.randn(3, 3, 16, 16)
    # reference: what forward() feeds each head in training mode, recomputed by hand in eval mode
    feats = {}
    hooks = [getattr(net, n).register_forward_hook(lambda m, i, o, n=n: feats.__setitem__(n, o))
             for n in ("inception4a", "inception4d")]
    with torch.no_grad():
        net(x)
        for h in hooks:
            h.remove()
        for which, tap, head in ((1, "inception4a", net.aux1), (2, "inception4d", net.aux2)):
            got = aux_classifier(net, which)(x)
            assert got.shape == (3, 5)
            assert torch.allclose(got, head(feats[tap]), atol=1e-6), which
    side = aux_classifier(net, 1)
    assert side.model is net and sum(p.numel() for p in side.parameters()) == sum(p.numel() for p in net.parameters())
    with pytest.raises(ValueError, match="which must be 1"):
        aux_classifier(net, 3)
    with pytest.raises(ValueError, match="no auxiliary heads"):
        aux_classifier(without_aux_heads(net), 1)
    with pytest.raises(TypeError, match="expected a GoogLeNet"):
        aux_classifier(torch.nn.Linear(2, 2), 1)
    with pytest.raises(ValueError, match=r"expected images \[N, 3, H, W\]"):
        side(torch.randn(2, 1, 16, 16))
