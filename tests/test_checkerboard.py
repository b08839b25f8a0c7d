"""Tests for segbook.checkerboard: coverage maps and the checkerboard score."""
import pytest
import torch
import torch.nn.functional as F

from segbook.checkerboard import checkerboard_score, coverage_1d, coverage_map, coverage_ratio, stack_margin


def test_coverage_one_layer():
    assert coverage_1d((3, 2)).tolist() == [2, 1, 2, 1]
    assert coverage_1d((4, 2)).tolist() == [2, 2, 2, 2]
    assert coverage_1d((5, 2), periods=3).tolist() == [3, 2] * 3
    assert coverage_1d((3, 3)).tolist() == [1] * 6
    assert coverage_map((3, 2)).tolist() == [[4, 2, 4, 2], [2, 1, 2, 1], [4, 2, 4, 2], [2, 1, 2, 1]]
    assert coverage_ratio(coverage_map((3, 2))) == 4.0
    assert coverage_ratio(coverage_map((4, 2))) == 1.0
    assert coverage_ratio(coverage_1d((3, 2))) == 2.0


def test_coverage_counts_kernel_copies_like_the_module():
    # the interior coverage equals conv_transpose2d of ones with an all-ones kernel, cropped
    layers = [(3, 2), (3, 2)]
    full = torch.ones(1, 1, 12, 12)
    for k, s in layers:
        full = F.conv_transpose2d(full, torch.ones(1, 1, k, k), stride=s)
    m = stack_margin(layers)
    inner = full[0, 0, m: m + 8, m: m + 8].round().long()
    assert torch.equal(inner, coverage_map(layers))


def test_stacks_compound_the_unevenness():
    assert stack_margin([(3, 2)]) == 2 and stack_margin([(3, 2), (3, 2)]) == 6
    assert coverage_1d([(3, 2), (3, 2)]).tolist() == [3, 1, 3, 2, 3, 1, 3, 2]
    assert coverage_ratio(coverage_map([(3, 2)] * 2)) == 9.0
    assert coverage_ratio(coverage_map([(3, 2)] * 3)) == 25.0
    assert coverage_ratio(coverage_map([(4, 2)] * 3)) == 1.0


def test_coverage_errors():
    with pytest.raises(ValueError, match="pairs"):
        coverage_1d([(3, 2, 1)])
    with pytest.raises(ValueError, match="empty"):
        coverage_1d([])
    with pytest.raises(ValueError, match="stride"):
        coverage_1d((3, 0))
    with pytest.raises(ValueError, match="infinite"):
        coverage_ratio(coverage_map((1, 2)))


def _checker(n, period=2):
    i = torch.arange(n)
    return ((i[:, None] // (period // 2) + i[None, :] // (period // 2)) % 2).float() * 2 - 1


def test_score_on_constructed_images():
    cb = _checker(16)
    assert checkerboard_score(cb).item() == pytest.approx(1.0)
    assert checkerboard_score(torch.full((16, 16), 0.37)).item() == 0.0
    assert checkerboard_score(torch.zeros(8, 8)).item() == 0.0
    # brightness and contrast do not matter
    for a, b in ((3.0, 5.0), (0.01, -2.0), (-1.0, 0.0)):
        assert checkerboard_score(a * cb + b).item() == pytest.approx(1.0)
    # a smooth (low-frequency) image has no period-2 energy; adding a faint checkerboard raises the score
    t = torch.arange(16, dtype=torch.float32) * (2 * torch.pi / 16)
    ramp = torch.cos(t)[:, None] + torch.sin(2 * t)[None, :]
    assert checkerboard_score(ramp).item() < 1e-6
    faint = checkerboard_score(ramp + 0.02 * cb).item()
    strong = checkerboard_score(ramp + 0.2 * cb).item()
    assert checkerboard_score(ramp).item() < faint < strong < 1.0
    x = torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert checkerboard_score(2.5 * x + 1).tolist() == pytest.approx(checkerboard_score(x).tolist())


def test_score_is_the_fft_energy_at_the_period_frequencies():
    x = torch.randn(16, 24, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    power = torch.fft.fft2(x).abs() ** 2
    rows, cols = [0, 8], [0, 12]
    periodic = sum(power[a, b] for a in rows for b in cols) - power[0, 0]
    assert checkerboard_score(x).item() == pytest.approx((periodic / (power.sum() - power[0, 0])).item())
    # period 4 includes the period-2 frequencies and more
    assert checkerboard_score(x, 4).item() > checkerboard_score(x, 2).item()


def test_score_shapes_and_errors():
    assert checkerboard_score(torch.randn(2, 3, 8, 8)).shape == (2, 3)
    assert checkerboard_score(torch.randn(8, 8)).dim() == 0
    assert checkerboard_score(_checker(16, 4), 4).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="multiples"):
        checkerboard_score(torch.randn(7, 8))
    with pytest.raises(ValueError, match="period"):
        checkerboard_score(torch.randn(8, 8), 1)
    with pytest.raises(ValueError, match=r"\[\.\.\., H, W\]"):
        checkerboard_score(torch.randn(8))
