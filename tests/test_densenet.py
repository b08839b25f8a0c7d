"""Tests for segbook.models.densenet: dense wiring, channel growth, compression, sizes."""
import pytest
import torch

from segbook.analysis import count_params
from segbook.models.densenet import DenseBlock, DenseLayer, Transition, count_dense_connections, densenet_bc


@pytest.mark.parametrize("layers", [1, 2, 4, 7])
def test_connections_counted_from_the_module(layers):
    block = DenseBlock(layers, 6, 3)
    assert count_dense_connections(block) == layers * (layers + 1) // 2


def test_connection_count_sees_rewiring():
    # A block whose layers each read only their predecessor (a plain chain) has L connections.
    class ChainBlock(DenseBlock):
        def forward(self, x, *, return_features=False):
            features = [x]
            for layer in self.layers:
                features.append(layer(features[-1:]))
            return features[-1]

    block = ChainBlock(4, 5, 5)
    block.layers = torch.nn.ModuleList(DenseLayer(5, 5) for _ in range(4))
    assert count_dense_connections(block) == 4
    with pytest.raises(TypeError):
        count_dense_connections(torch.nn.Conv2d(1, 1, 1))


def test_block_channel_growth():
    block = DenseBlock(4, 24, 12).eval()
    out, feats = block(torch.randn(2, 24, 8, 8), return_features=True)
    assert out.shape == (2, 24 + 4 * 12, 8, 8) and block.out_channels == 72
    assert [f.shape[1] for f in feats] == [24, 12, 12, 12, 12]
    assert [layer.in_channels for layer in block.layers] == [24, 36, 48, 60]


def test_dense_layer_is_bottleneck():
    layer = DenseLayer(40, 12)
    # BN(40) + 1x1 40->48 + BN(48) + 3x3 48->12
    assert count_params(layer) == 2 * 40 + 40 * 48 + 2 * 48 + 9 * 48 * 12
    with pytest.raises(ValueError, match="40 input channels"):
        layer([torch.zeros(1, 30, 4, 4)])


def test_transition_compresses_and_halves():
    t = Transition(75, theta=0.5)
    assert t(torch.randn(1, 75, 8, 8)).shape == (1, 37, 4, 4)
    assert Transition(64, theta=1.0).out_channels == 64
    with pytest.raises(ValueError, match="theta"):
        Transition(64, theta=0)


def test_densenet_bc_sizes():
    m = densenet_bc(depth=40).eval()
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert [len(b.layers) for b in m.blocks] == [6, 6, 6]
    # Huang et al. 2017, Table 2: DenseNet-BC (L=100, k=12) has 0.8M parameters.
    assert round(count_params(densenet_bc(depth=100)) / 1e6, 1) == 0.8


def test_bad_depth():
    with pytest.raises(ValueError, match="6n \\+ 4") as err:
        densenet_bc(depth=41)
    assert "40" in str(err.value) and "46" in str(err.value)
    with pytest.raises(TypeError, match="depth"):
        densenet_bc(depth=40.0)
    with pytest.raises(TypeError):
        densenet_bc(40)  # keyword-only: densenet_bc(depth=40)
    with pytest.raises(ValueError, match="images"):
        densenet_bc(depth=10)(torch.randn(1, 1, 8, 8))
