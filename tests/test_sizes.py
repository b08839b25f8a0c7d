"""Tests for segbook.sizes: every formula against the torch module it describes, and the U-Net sizes."""
from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from segbook.sizes import (conv_output_size, conv_transpose_output_size, is_valid_unet_size, nearest_valid_unet_sizes,
                           pool_output_size, unet_output_size, unet_trace, unet_valid_sizes)


def _side(module: nn.Module, n: int) -> int:
    with torch.no_grad():
        return module(torch.zeros(1, 1, n, 1)).shape[-2]


@pytest.mark.parametrize("k,s,p,d", [(3, 1, 1, 1), (3, 1, 0, 1), (3, 2, 1, 1), (5, 2, 2, 1), (3, 1, 2, 2),
                                     (1, 1, 0, 1), (7, 3, 3, 1), (4, 2, 1, 1), (3, 3, 0, 2)])
def test_conv_output_size_matches_conv2d(k, s, p, d):
    conv = nn.Conv2d(1, 1, (k, 1), stride=(s, 1), padding=(p, 0), dilation=(d, 1))
    for n in range(1, 60):
        if n + 2 * p < d * (k - 1) + 1:
            with pytest.raises(ValueError, match="does not fit"):
                conv_output_size(n, k, s, p, d)
            continue
        assert conv_output_size(n, k, s, p, d) == _side(conv, n), (n, k, s, p, d)


@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("k,s,p", [(2, 2, 0), (3, 2, 1), (3, 2, 0), (2, 1, 0), (3, 3, 1), (5, 2, 2), (4, 3, 2)])
def test_pool_output_size_matches_maxpool2d(k, s, p, ceil_mode):
    pool = nn.MaxPool2d((k, 1), stride=(s, 1), padding=(p, 0), ceil_mode=ceil_mode)
    for n in range(max(1, k - 2 * p), 60):
        assert pool_output_size(n, k, s, p, ceil_mode=ceil_mode) == _side(pool, n), (n, k, s, p, ceil_mode)


# every setting of the issue-21 property check, plus stride=None (torch: stride = kernel_size)
POOL_GRID = list(itertools.product(range(1, 10), range(1, 5), (None, 1, 2, 3), range(0, 3), (False, True), (1, 2)))


def _torch_pool_side(n, k, s, p, d, ceil_mode):
    """The output side of nn.MaxPool2d and of F.max_pool2d on an n x n map (both must agree), or None if they raise."""
    x = torch.zeros(1, 1, n, n)
    sides = []
    for pool in (nn.MaxPool2d(k, s, p, dilation=d, ceil_mode=ceil_mode),
                 lambda t: F.max_pool2d(t, k, s, p, dilation=d, ceil_mode=ceil_mode)):
        try:
            y = pool(x)
        except RuntimeError:
            sides.append(None)
        else:
            assert y.shape[-1] == y.shape[-2]
            sides.append(y.shape[-1])
    assert sides[0] == sides[1], (n, k, s, p, d, ceil_mode, sides)
    return sides[0]


def test_pool_output_size_equals_torch_in_every_setting():
    differ = []
    for n, k, s, p, ceil_mode, d in POOL_GRID:
        expected = _torch_pool_side(n, k, s, p, d, ceil_mode)
        try:
            got = pool_output_size(n, k, s, p, d, ceil_mode=ceil_mode)
        except ValueError:
            got = None
        if got != expected:
            differ.append(dict(size=n, kernel_size=k, stride=s, padding=p, dilation=d, ceil_mode=ceil_mode,
                               torch=expected, got=got))
    assert not differ, f"{len(differ)} of {len(POOL_GRID)} settings differ from nn.MaxPool2d, e.g. {differ[:3]}"


def test_pool_output_size_errors_say_what_would_work():
    with pytest.raises(ValueError, match=r"padding must be at most half the kernel size.*kernel_size // 2 = 1.*"
                                         r"got padding=2; use padding <= 1 or a larger kernel_size"):
        pool_output_size(9, 3, 1, 2)
    with pytest.raises(ValueError, match=r"at most half.*got padding=2"):  # dilation does not relax torch's rule
        pool_output_size(9, 3, 1, 2, 2)
    with pytest.raises(ValueError, match=r"spanning 4 pixels does not fit a side of 2.*at least 4"):
        pool_output_size(2, 4, 2)
    with pytest.raises(ValueError, match=r"at least 3"):  # ceil mode keeps a partial window
        pool_output_size(2, 4, 2, ceil_mode=True)
    assert pool_output_size(3, 4, 2, ceil_mode=True) == 1  # a kernel wider than the input: torch gives 1


def test_pool_floor_and_ceil_on_seven():
    assert pool_output_size(7, 2) == 3 and pool_output_size(7, 2, ceil_mode=True) == 4
    assert pool_output_size(8, 2) == pool_output_size(8, 2, ceil_mode=True) == 4


@pytest.mark.parametrize("k,s,p,op,d", [(2, 2, 0, 0, 1), (4, 2, 1, 0, 1), (3, 2, 1, 1, 1), (16, 8, 4, 0, 1),
                                        (3, 1, 1, 0, 1), (3, 2, 0, 1, 2), (64, 32, 16, 0, 1)])
def test_conv_transpose_output_size_matches_module(k, s, p, op, d):
    up = nn.ConvTranspose2d(1, 1, (k, 1), stride=(s, 1), padding=(p, 0), output_padding=(op, 0), dilation=(d, 1))
    for n in range(1, 40):
        expected = (n - 1) * s - 2 * p + d * (k - 1) + op + 1
        if expected < 1:
            with pytest.raises(ValueError):
                conv_transpose_output_size(n, k, s, p, op, d)
            continue
        assert conv_transpose_output_size(n, k, s, p, op, d) == _side(up, n)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "7"])
def test_size_functions_reject_bad_sizes(bad):
    for fn in (lambda n: conv_output_size(n, 3), lambda n: pool_output_size(n, 2),
               lambda n: conv_transpose_output_size(n, 2, 2), lambda n: unet_trace(n, 2)):
        # segbook.checks: ValueError for an int out of range, TypeError for a value that is no int
        with pytest.raises(ValueError if type(bad) is int else TypeError):
            fn(bad)


def test_output_padding_must_be_below_stride():
    with pytest.raises(ValueError, match="output_padding"):
        conv_transpose_output_size(4, 3, 2, 1, 2)


def test_seven_three_six_trace():
    t = unet_trace(7, depth=1, padding="same")
    assert [s.size for s in t.steps] == [7, 7, 3, 3, 6, 6]
    assert not t.valid and any("6 pixels but its skip is 7" in p for p in t.problems)
    assert unet_trace(8, depth=1).valid and unet_trace(8, depth=1).output_size == 8


def test_paper_572_to_388():
    t = unet_trace(572, depth=4, padding="valid")
    assert t.valid and t.output_size == 388
    sizes = {s.name: s.size for s in t.steps}
    assert (sizes["enc0 convs"], sizes["enc3 convs"], sizes["bottom convs"]) == (568, 64, 28)  # the paper's figure
    assert (sizes["up3"], sizes["dec0 convs"]) == (56, 388)
    assert unet_output_size(572, 4, "valid") == 388


def test_closed_forms_of_valid_sizes():
    for depth in (1, 2, 3, 4, 5):
        step = 2 ** depth
        same = [n for n in range(1, 700) if is_valid_unet_size(n, depth, "same")]
        assert same == list(range(step, 700, step))
        valid = [n for n in range(1, 700) if is_valid_unet_size(n, depth, "valid")]
        # input = 2^D (b + 4) + 4 (2^D - 1) with the bottom side b; output = 2^D b - 4 (2^D - 1) >= 1
        b_min = min(b for b in range(1, 100) if step * b - 4 * (step - 1) >= 1)
        expected = [step * (b + 4) + 4 * (step - 1) for b in range(b_min, 1000)]
        assert valid == [n for n in expected if n < 700]
        for n in valid:
            b = (n - 4 * (step - 1)) // step - 4
            assert unet_output_size(n, depth, "valid") == step * b - 4 * (step - 1)
        assert unet_valid_sizes(depth, "valid", high=699) == [(n, unet_output_size(n, depth, "valid")) for n in valid]
        assert unet_valid_sizes(depth, "same", low=3, high=699) == [(n, n) for n in same if n >= 3]


def test_nearest_valid_unet_sizes_brute_force():
    for depth in (2, 3, 4):
        for padding in ("same", "valid"):
            ok = [n for n in range(1, 900) if is_valid_unet_size(n, depth, padding)]
            for size in range(1, 600, 7):
                below = max((n for n in ok if n <= size), default=None)
                above = min(n for n in ok if n >= size)
                assert nearest_valid_unet_sizes(size, depth, padding) == (below, above)
    assert nearest_valid_unet_sizes(570, 4, "valid") == (556, 572)
    assert nearest_valid_unet_sizes(100, 4, "same") == (96, 112)


def test_unet_output_size_names_nearest_valid():
    with pytest.raises(ValueError, match="nearest valid: 556 or 572"):
        unet_output_size(570, 4, "valid")


def test_trace_rejects_bad_padding_and_depth():
    with pytest.raises(ValueError, match="padding"):
        unet_trace(64, 2, "full")
    with pytest.raises(ValueError, match="depth"):
        unet_trace(64, 0)


def test_trace_matches_the_unet_module():
    from segbook.models.unet import unet

    for padding, sizes in (("same", [8, 16, 24, 40]), ("valid", [44, 60, 76])):
        net = unet(depth=2, width=2, padding=padding).eval()
        for n in sizes:
            trace = unet_trace(n, 2, padding)
            steps = {s.name: s.size for s in trace.steps}
            with torch.no_grad():
                maps = net.features(torch.rand(1, 3, n, n))
            assert maps["enc0"].shape[-1] == steps["enc0 convs"] and maps["enc1"].shape[-1] == steps["enc1 convs"]
            assert maps["bottom"].shape[-1] == steps["bottom convs"]
            assert maps["dec1"].shape[-1] == steps["dec1 convs"] and maps["logits"].shape[-1] == trace.output_size
