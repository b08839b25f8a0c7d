"""Tests for segbook.analysis: parameter and FLOP counts, gradients at init, receptive fields,
feature capture, and the channels that follow a target."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from segbook.analysis import (
    count_flops, count_macs, count_params, empirical_receptive_field, grad_norms_at_init, receptive_field, top_channels,
)
from segbook.nn import ConvBNAct


# ---------------------------------------------------------------------------------------------
# count_params
# ---------------------------------------------------------------------------------------------
def test_count_params_by_hand():
    assert count_params(nn.Linear(10, 5)) == 10 * 5 + 5
    assert count_params(nn.Linear(10, 5, bias=False)) == 50
    assert count_params(nn.Conv2d(3, 16, 3)) == 16 * 3 * 3 * 3 + 16
    assert count_params(nn.Conv2d(8, 8, 3, groups=8, bias=False)) == 8 * 1 * 3 * 3
    assert count_params(nn.Conv2d(8, 12, (1, 5), groups=4)) == 12 * 2 * 1 * 5 + 12
    assert count_params(nn.BatchNorm2d(16)) == 32  # weight + bias; running stats are buffers
    assert count_params(ConvBNAct(3, 16)) == 16 * 3 * 9 + 32
    assert count_params(nn.ReLU()) == 0
    assert isinstance(count_params(nn.Linear(2, 2)), int)


def test_count_params_shared_counted_once():
    lin = nn.Linear(10, 5)
    assert count_params(nn.Sequential(lin, nn.ReLU(), lin)) == 55
    a, b = nn.Linear(6, 6, bias=False), nn.Linear(6, 6)
    b.weight = a.weight  # tied weights, separate biases
    assert count_params(nn.ModuleList([a, b])) == 36 + 6


def test_count_params_trainable_only():
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    for p in model[0].parameters():
        p.requires_grad_(False)
    assert count_params(model) == 15 + 8
    assert count_params(model, trainable_only=True) == 8


def test_count_params_rejects_non_modules():
    with pytest.raises(TypeError, match="expects an nn.Module, got Tensor"):
        count_params(torch.zeros(3))
    with pytest.raises(TypeError, match="got list"):
        count_params([nn.Linear(2, 2)])


# ---------------------------------------------------------------------------------------------
# count_flops / count_macs
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cin,cout,k,stride,pad,h,w", [
    (3, 16, 3, 1, 1, 8, 8),
    (3, 16, 3, 2, 1, 9, 9),
    (4, 5, 5, 1, 0, 10, 7),
    (2, 7, 1, 1, 0, 6, 6),
])
def test_count_flops_single_conv(cin, cout, k, stride, pad, h, w):
    conv = nn.Conv2d(cin, cout, k, stride=stride, padding=pad)
    hout = (h + 2 * pad - k) // stride + 1
    wout = (w + 2 * pad - k) // stride + 1
    expected = 2 * cout * cin * k * k * hout * wout
    assert count_flops(conv, (1, cin, h, w)) == expected
    assert count_flops(conv, (3, cin, h, w)) == 3 * expected  # linear in the batch size
    assert count_macs(conv, (1, cin, h, w)) == expected // 2


def test_count_flops_grouped_and_linear():
    dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
    assert count_flops(dw, (1, 8, 8, 8)) == 2 * 8 * 1 * 9 * 64
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(48, 5))
    assert count_flops(mlp, (2, 3, 4, 4)) == 2 * 2 * 48 * 5
    assert count_macs(mlp, (2, 3, 4, 4)) == 2 * 48 * 5


def test_count_flops_default_shape_and_zero_flop_models():
    conv = nn.Conv2d(3, 4, 1)
    assert count_flops(conv) == 2 * 4 * 3 * 224 * 224
    assert count_flops(nn.Identity(), (1, 3, 4, 4)) == 0  # no parameters: runs on the CPU


def test_count_flops_restores_mode_and_runs_in_eval_without_grad():
    class Probe(nn.Module):
        def __init__(self):
            super().__init__()
            self.bn = nn.BatchNorm2d(3)
            self.seen = []

        def forward(self, x):
            self.seen.append((self.training, torch.is_grad_enabled()))
            return self.bn(x + 1)

    m = Probe()
    m.train()
    before = m.bn.running_mean.clone()
    count_flops(m, (2, 3, 4, 4))
    assert m.training and m.bn.training
    assert m.seen == [(False, False)]
    assert torch.equal(m.bn.running_mean, before)  # eval mode: running stats untouched
    m.eval()
    count_flops(m, (2, 3, 4, 4))
    assert not m.training


def test_count_flops_restores_mode_after_an_error():
    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 2)

        def forward(self, x):
            raise RuntimeError("boom")

    m = Broken().train()
    with pytest.raises(RuntimeError, match="boom"):
        count_flops(m, (1, 3, 4, 4))
    assert m.training


def test_count_flops_uses_model_dtype():
    conv = nn.Conv2d(3, 4, 3, padding=1).double()
    assert count_flops(conv, (1, 3, 5, 5)) == 2 * 4 * 3 * 9 * 25


@pytest.mark.parametrize("shape", [(3, 224, 224), (1, 3, 224), (1, 3, 0, 8), (0, 3, 8, 8), (1, 3, 8, 8, 1),
                                   (1, -3, 8, 8)])
def test_count_flops_bad_shape(shape):
    with pytest.raises(ValueError, match=r"input_shape must be \(N, C, H, W\) with positive sizes"):
        count_flops(nn.Conv2d(3, 4, 1), shape)
    with pytest.raises(ValueError, match="input_shape"):
        count_macs(nn.Conv2d(3, 4, 1), shape)


# ---------------------------------------------------------------------------------------------
# grad_norms_at_init, receptive fields, capture, top_channels
# ---------------------------------------------------------------------------------------------
def small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 3))


def batch(n=8, k=3):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, k, (n,), generator=g)


def test_grad_norms_match_manual_backward():
    model = small_net()
    x, y = batch()
    norms = grad_norms_at_init(model, (x, y))
    assert [name for name, _ in norms] == ["0", "3", "7"]
    ref = small_net().train()
    F.cross_entropy(ref(x), y).backward()
    expected = [ref[0].weight.grad.norm().item(), ref[3].weight.grad.norm().item(), ref[7].weight.grad.norm().item()]
    assert [v for _, v in norms] == pytest.approx(expected, rel=1e-5)


def test_grad_norms_leave_model_untouched():
    model = small_net().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grad_norms_at_init(model, batch())
    assert not model.training
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN stats too


def test_grad_norms_custom_loss_tuple_output_and_errors():
    class Aux(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3 * 8 * 8, 3)

        def forward(self, x):
            out = self.fc(x.flatten(1))
            return out, 0 * out

    x, y = batch()
    norms = grad_norms_at_init(Aux(), (x, y), loss_fn=lambda o, t: o.pow(2).mean())
    assert len(norms) == 1 and norms[0][1] > 0
    with pytest.raises(ValueError, match="pair"):
        grad_norms_at_init(Aux(), x)
    with pytest.raises(ValueError, match="no layers"):
        grad_norms_at_init(nn.Sequential(nn.ReLU()), (x, y))


def test_receptive_field_formula():
    assert receptive_field([(3, 1)] * 4) == [3, 5, 7, 9]  # +2 per 3x3 layer
    assert receptive_field([(3, 1), (2, 2), (3, 1), (3, 1, 2)]) == [3, 4, 8, 16]
    net = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.MaxPool2d(2), nn.Conv2d(3, 3, 5, padding=2))
    assert receptive_field(net) == [3, 4, 12]
    with pytest.raises(ValueError):
        receptive_field([(0, 1)])
    with pytest.raises(ValueError):
        receptive_field(nn.ReLU())


def test_empirical_receptive_field_matches_theory():
    torch.manual_seed(0)
    net = nn.Sequential(*[nn.Conv2d(3, 3, 3, padding=1) for _ in range(5)])
    assert empirical_receptive_field(net, (1, 3, 33, 33)) == receptive_field(net)[-1] == 11
    strided = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1, stride=2), nn.Conv2d(3, 3, 3, padding=1))
    assert empirical_receptive_field(strided, (1, 3, 33, 33)) == receptive_field(strided)[-1] == 7


def test_receptive_field_follows_branches_like_the_measurement():
    """Shortcuts and parallel branches are merged as the data flows, not chained in registration order."""
    from segbook.analysis import empirical_receptive_field
    from segbook.models import inception_3a
    from segbook.models.resnet import BasicBlock
    torch.manual_seed(0)
    down = nn.Sequential(nn.Conv2d(8, 16, 1, stride=2, bias=False), nn.BatchNorm2d(16))
    net = nn.Sequential(BasicBlock(8, 16, stride=2, downsample=down), nn.Conv2d(16, 16, 3, padding=1))
    theory = receptive_field(net, input_shape=(1, 8, 64, 64))[-1]
    assert theory == empirical_receptive_field(net, (1, 8, 64, 64)) == 11
    block = inception_3a()
    fields = receptive_field(block, input_shape=(1, 192, 28, 28))
    assert fields[-1] == 5 == empirical_receptive_field(block, (1, 192, 28, 28))
    assert max(fields) == 5


def test_receptive_field_of_a_chain_module_equals_the_tuple_form():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(4, 4, 3, padding=2, dilation=2), nn.AvgPool2d(2), nn.Conv2d(4, 4, 5, padding=2))
    assert receptive_field(net) == receptive_field([(3, 1), (2, 2), (3, 1, 2), (2, 2), (5, 1)])


def test_capture_outputs_and_inputs_then_removes_hooks():
    from segbook.analysis import capture
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 1))
    x = torch.randn(2, 3, 8, 8)
    with capture({"first": net[0], "last": net[2]}) as out, capture(net[2], kind="input") as inp:
        y = net(x)
        net(x)
    assert len(out["first"]) == 2 and out["first"][0].shape == (2, 4, 6, 6)
    assert torch.equal(out["last"][0], y) and not out["last"][0].requires_grad
    assert torch.equal(inp[""][0], torch.relu(net[0](x)))
    net(x)
    assert len(out["first"]) == 2  # hooks are gone after the block
    assert not net[0]._forward_hooks and not net[2]._forward_pre_hooks
    with pytest.raises(ValueError, match="kind"):
        with capture(net, kind="grad"):
            pass


def test_top_channels_finds_the_matching_channel():
    target = torch.zeros(8, 8)
    target[:4, :4] = 1
    g = torch.Generator().manual_seed(0)
    feats = torch.rand(5, 4, 4, generator=g) * 0.1
    feats[3] = torch.nn.functional.adaptive_avg_pool2d(target[None, None], (4, 4))[0, 0]   # exact match
    feats[1] = -feats[3] + 0.01 * feats[1]                                                 # anti-correlated
    feats[4] = 1.0                                                                         # constant
    idx = top_channels(feats, target, 2)
    assert idx[0] == 3 and idx[1] == 1
    assert top_channels(feats, target, 5)[-1] == 4
    with pytest.raises(ValueError):
        top_channels(feats[0], target)


def test_best_time_returns_the_fastest_call(monkeypatch):
    import types

    import segbook.analysis as analysis

    clock = iter([0.0, 3.0, 10.0, 11.5, 20.0, 22.0])  # calls of 3 s, 1.5 s and 2 s
    monkeypatch.setattr(analysis, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
    calls = []
    assert analysis.best_time(lambda: calls.append(1), repeats=3) == 1.5
    assert len(calls) == 3


def test_best_time_checks_its_arguments():
    from segbook.analysis import best_time

    with pytest.raises(TypeError, match="callable"):
        best_time(42)
    with pytest.raises(ValueError, match="repeats"):
        best_time(lambda: None, repeats=0)
