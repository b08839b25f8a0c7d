import pytest
import torch

from segbook.analysis import capture
import torch.nn as nn
import torch.nn.functional as F

from segbook.analysis import count_params
from segbook.nn import SqueezeExcite, se_hidden_channels, squeeze_excite


def test_shape_and_scores_in_unit_interval():
    torch.manual_seed(0)
    se = SqueezeExcite(64)
    x = torch.randn(3, 64, 7, 5) * 10
    with capture({"gate": se.gate}) as got:
        y = se(x)
    assert y.shape == x.shape
    s = got["gate"][0].flatten(1)
    assert s.shape == (3, 64) and not s.requires_grad
    assert (s > 0).all() and (s < 1).all()


@pytest.mark.parametrize("c,r", [(256, 16), (64, 4), (96, 8)])
def test_param_count_matches_hand_formula(c, r):
    se = SqueezeExcite(c, reduction=r)
    h = c // r
    assert se.hidden_channels == h
    assert count_params(se) == 2 * c * c // r + h + c     # W1, W2 + biases b1 [C/r], b2 [C]


def test_min_hidden_and_explicit_hidden():
    assert SqueezeExcite(32, reduction=16).hidden_channels == 4       # floor: max(4, 2)
    assert SqueezeExcite(32, reduction=16, min_hidden=1).hidden_channels == 2
    assert SqueezeExcite(96, hidden_channels=4).hidden_channels == 4  # EfficientNet-style sizing
    assert se_hidden_channels(512) == 32


def test_effect_is_input_times_hand_computed_scores():
    torch.manual_seed(1)
    se = SqueezeExcite(16, reduction=4)
    x = torch.randn(2, 16, 6, 6)
    y = se(x)
    # Hand computation: z = mean over H, W; s = sigmoid(W2 relu(W1 z + b1) + b2).
    z = x.mean(dim=(2, 3))
    w1, b1 = se.fc1.weight.flatten(1), se.fc1.bias
    w2, b2 = se.fc2.weight.flatten(1), se.fc2.bias
    s = torch.sigmoid(torch.relu(z @ w1.T + b1) @ w2.T + b2)
    assert torch.allclose(se.scores(x), s, atol=1e-6)
    assert not hasattr(se, "last_scores")  # forward stays pure: nothing is stored on the module
    assert torch.allclose(y, x * s[:, :, None, None], atol=1e-6)
    # The functional form agrees, with conv- or linear-shaped weights.
    y2, s2 = squeeze_excite(x, se.fc1.weight, b1, se.fc2.weight, b2)
    y3, _ = squeeze_excite(x, w1, b1, w2, b2)
    assert torch.allclose(y2, y, atol=1e-6) and torch.allclose(s2, s, atol=1e-6)
    assert torch.allclose(y3, y, atol=1e-6)


def test_scores_depend_on_global_content_only():
    # Spatially permuting the input permutes the output the same way: the gate sees only the mean.
    torch.manual_seed(2)
    se = SqueezeExcite(8, reduction=2)
    x = torch.randn(1, 8, 5, 5)
    perm = torch.randperm(25)
    xp = x.flatten(2)[..., perm].reshape_as(x)
    assert torch.allclose(se(xp).flatten(2), se(x).flatten(2)[..., perm], atol=1e-6)


def test_gradients_flow_and_act_option():
    torch.manual_seed(0)
    se = SqueezeExcite(8, reduction=2, act=nn.SiLU).double()
    x = torch.randn(2, 8, 4, 4, dtype=torch.float64, requires_grad=True)
    # the activation between the two 1x1 layers is the one asked for (SiLU, not the default ReLU)
    z = x.detach().mean(dim=(2, 3))
    silu = torch.sigmoid(se.fc2(F.silu(se.fc1(z[:, :, None, None])))).flatten(1)
    relu = torch.sigmoid(se.fc2(F.relu(se.fc1(z[:, :, None, None])))).flatten(1)
    assert not torch.allclose(silu, relu)  # the two activations give other scores here
    torch.testing.assert_close(se.scores(x.detach()), silu, rtol=0, atol=1e-12)
    # gradients reach the input (through both the rescaled input and the scores) and both layers
    assert torch.autograd.gradcheck(se, (x,), eps=1e-6, atol=1e-6)
    se(x).sum().backward()
    assert se.fc1.weight.grad.abs().sum() > 0 and se.fc2.weight.grad.abs().sum() > 0


def test_errors():
    se = SqueezeExcite(8)
    with pytest.raises(ValueError, match="4-D"):
        se(torch.randn(2, 8))
    with pytest.raises(ValueError, match="channels"):
        se(torch.randn(2, 4, 3, 3))
    with pytest.raises(ValueError):
        SqueezeExcite(0)
    with pytest.raises(ValueError):
        SqueezeExcite(8, reduction=0)
    with pytest.raises(ValueError):
        squeeze_excite(torch.randn(1, 8, 2, 2), torch.randn(2, 4), None, torch.randn(8, 2), None)
