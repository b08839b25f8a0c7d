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


def test_periodic_amplitude_on_constructed_images():
    from segbook.checkerboard import periodic_amplitude

    cb = _checker(16).double()                          # +-1 checkerboard
    for a, b in ((0.25, 0.5), (3.0, -1.0), (-0.01, 7.0)):
        assert periodic_amplitude(a * cb + b).item() == pytest.approx(abs(a), rel=1e-12)
    assert periodic_amplitude(torch.full((8, 8), 0.37)).item() == 0.0
    # a pattern of period 2 along rows only: phase means +-0.3, so the RMS over the 4 phases is 0.3
    i = torch.arange(8)
    stripes = (0.3 * (-1.0) ** i)[:, None].expand(8, 8)
    assert periodic_amplitude(stripes).item() == pytest.approx(0.3)
    # a smooth image has no period-2 component; adding a known checkerboard gives back its amplitude
    t = torch.arange(16, dtype=torch.float64) * (2 * torch.pi / 16)
    ramp = torch.cos(t)[:, None] + torch.sin(2 * t)[None, :]
    assert periodic_amplitude(ramp).item() < 1e-12
    assert periodic_amplitude(ramp + 0.02 * cb).item() == pytest.approx(0.02, rel=1e-9)
    # unlike the score, it is not scale-invariant: the same faint grid on a flat image scores 1
    faint = 1e-3 * cb + 0.5
    assert checkerboard_score(faint).item() == pytest.approx(1.0)
    assert periodic_amplitude(faint).item() == pytest.approx(1e-3)
    # period 4: a 4-periodic pattern of amplitude 2 (blocks of 2x2)
    assert periodic_amplitude(2 * _checker(16, 4), 4).item() == pytest.approx(2.0)


def test_periodic_amplitude_matches_the_score_energy_and_shapes():
    from segbook.checkerboard import periodic_amplitude

    x = torch.randn(2, 3, 16, 24, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    amp = periodic_amplitude(x)
    assert amp.shape == (2, 3) and periodic_amplitude(x[0, 0]).dim() == 0
    centred = x - x.mean((-2, -1), keepdim=True)
    variance = centred.square().mean((-2, -1))
    assert (amp.square() / variance).flatten().tolist() == pytest.approx(checkerboard_score(x).flatten().tolist())
    # the FFT: energy at the three non-zero period-2 frequencies / (H W)^2 = amplitude^2
    power = torch.fft.fft2(x[0, 0]).abs() ** 2
    periodic = power[0, 12] + power[8, 0] + power[8, 12]
    assert amp[0, 0].item() ** 2 == pytest.approx((periodic / (16 * 24) ** 2).item())
    with pytest.raises(ValueError, match="multiples"):
        periodic_amplitude(torch.randn(7, 8))
    with pytest.raises(ValueError, match="period"):
        periodic_amplitude(torch.randn(8, 8), 1)
    with pytest.raises(ValueError, match=r"\[\.\.\., H, W\]"):
        periodic_amplitude(torch.randn(8))


def test_phase_kernels_and_sums():
    from segbook.checkerboard import phase_kernels

    ph = phase_kernels(torch.tensor([0.25, 0.75, 0.75, 0.25]))
    assert [p.tolist() for p in ph] == [[0.25, 0.75], [0.75, 0.25]]
    assert [p.sum().item() for p in phase_kernels(torch.tensor([1.0, 1.0, 1.0]))] == [2.0, 1.0]
    with pytest.raises(ValueError, match=r"1-D"):
        phase_kernels(torch.ones(3, 3))


def test_nyquist_residual_keeps_the_grid_and_drops_ramps():
    from segbook.checkerboard import nyquist_residual

    i = torch.arange(8, dtype=torch.float64)
    ramp = 0.3 * i[:, None] - 0.2 * i[None, :] + 1.0
    grid = 0.1 * (-1.0) ** (i[:, None] + i[None, :])
    r = nyquist_residual(ramp + grid)
    inner = r[1:-1, 1:-1]                                     # replicate padding bends the ramp at the border
    torch.testing.assert_close(inner, grid[1:-1, 1:-1])
    with pytest.raises(ValueError, match="3x3"):
        nyquist_residual(torch.ones(2, 5))


def test_masked_periodic_amplitude_matches_the_unmasked_one_and_ignores_masked_out_pixels():
    from segbook.checkerboard import masked_periodic_amplitude, periodic_amplitude

    x = torch.randn(1, 2, 8, 8, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    full = masked_periodic_amplitude(x, torch.ones(1, 8, 8, dtype=torch.bool))
    torch.testing.assert_close(full, periodic_amplitude(x)[0])
    i = torch.arange(8, dtype=torch.float64)
    grid = 0.5 * (-1.0) ** (i[:, None] + i[None, :])
    y = grid.expand(1, 1, 8, 8).clone()
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[:, 2:6, 2:6] = True
    y[..., :2, :] = 100.0                                      # outside the mask: ignored
    assert masked_periodic_amplitude(y, mask).item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="no masked pixel"):
        masked_periodic_amplitude(y, torch.zeros(1, 8, 8, dtype=torch.bool))
