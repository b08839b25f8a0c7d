"""Tests for segbook.nn.atrous and the receptive-field calculator on dilated stacks."""
import pytest
import torch
import torch.nn as nn

from segbook.analysis import count_params, empirical_receptive_field, receptive_field
from segbook.nn.atrous import atrous_conv, dilated_stack, effective_kernel_size, tap_counts


@pytest.mark.parametrize("k,d,expected", [(3, 1, 3), (3, 2, 5), (3, 4, 9), (5, 3, 13), (1, 7, 1)])
def test_effective_kernel_size(k, d, expected):
    assert effective_kernel_size(k, d) == expected


def test_atrous_conv_keeps_size_and_parameters():
    for rate in (1, 2, 5):
        conv = atrous_conv(3, 4, 3, rate=rate)
        assert conv(torch.zeros(1, 3, 17, 12)).shape == (1, 4, 17, 12)
        assert count_params(conv) == 3 * 4 * 9
    assert atrous_conv(3, 4, 3, rate=2, stride=2)(torch.zeros(1, 3, 17, 12)).shape == (1, 4, 9, 6)


@pytest.mark.parametrize("spec", [
    [(3, 1, 1), (3, 1, 2), (3, 1, 4), (3, 1, 8)],
    [(3, 1, 2), (3, 1, 2), (3, 1, 2)],
    [(3, 2, 1), (3, 1, 2), (3, 2, 1), (3, 1, 3)],
    [(5, 1, 3), (3, 2, 1), (1, 1, 1), (3, 1, 4)],
    [(7, 2, 1), (3, 2, 1), (3, 1, 1), (3, 1, 2), (3, 1, 4)],
])
def test_receptive_field_calculator_matches_gradients(spec):
    torch.manual_seed(0)
    layers = [nn.Conv2d(1, 1, k, stride=s, padding=d * (k - 1) // 2, dilation=d) for k, s, d in spec]
    theory = receptive_field(spec)
    assert receptive_field(nn.Sequential(*layers)) == theory  # read off the modules
    for n in range(1, len(layers) + 1):
        measured = empirical_receptive_field(nn.Sequential(*layers[:n]), (1, 1, 2 * theory[-1] + 9, 2 * theory[-1] + 9))
        assert measured == theory[n - 1], (spec[:n], measured, theory[n - 1])


def test_doubling_rates_grow_the_field_exponentially():
    rates = [2 ** i for i in range(6)]
    assert receptive_field([(3, 1, r) for r in rates]) == [2 ** (l + 2) - 1 for l in range(6)]
    assert receptive_field([(3, 1, 1)] * 6) == [2 * l + 3 for l in range(6)]


def test_tap_counts_total_and_size():
    counts = tap_counts([1, 2, 4])
    assert counts.shape == (15, 15)
    assert int(counts.sum()) == 9 ** 3


def test_equal_rates_leave_holes_and_mixed_rates_do_not():
    grid = tap_counts([2, 2, 2])
    offsets = torch.arange(grid.shape[0]) - grid.shape[0] // 2
    odd = (offsets % 2 == 1)
    assert grid[odd].sum() == 0 and grid[:, odd].sum() == 0  # the gridding effect
    assert (grid[~odd][:, ~odd] > 0).all()
    assert (tap_counts([1, 2, 3]) > 0).all()  # a hybrid schedule covers every pixel


def test_tap_counts_equal_the_gradient_of_an_all_ones_stack():
    rates = [1, 3, 2]
    stack = dilated_stack(rates).double()
    for conv in stack:
        nn.init.ones_(conv.weight)
    size = 31
    x = torch.zeros(1, 1, size, size, dtype=torch.float64, requires_grad=True)
    stack(x)[0, 0, size // 2, size // 2].backward()
    counts = tap_counts(rates)
    r = counts.shape[0] // 2
    c = size // 2
    torch.testing.assert_close(x.grad[0, 0, c - r:c + r + 1, c - r:c + r + 1].round().long(), counts)
    assert x.grad.abs().sum().round() == counts.sum()


@pytest.mark.parametrize("rates,k,error", [([], 3, ValueError), ([0], 3, ValueError), ([2], 2, ValueError),
                                           ([1.5], 3, TypeError)])  # a float rate is the wrong type
def test_bad_rates_raise(rates, k, error):
    with pytest.raises(error):
        tap_counts(rates, kernel_size=k)
