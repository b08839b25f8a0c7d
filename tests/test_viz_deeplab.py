"""Tests for segbook.viz.deeplab: chapter 5's figures."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from segbook.nn.atrous import tap_counts  # noqa: E402
from segbook.viz import plot_crf_cost, plot_tap_counts  # noqa: E402


def test_plot_tap_counts_one_panel_per_schedule_holes_black():
    grids = {"rates 2, 2": tap_counts([2, 2]), "rates 1, 2": tap_counts([1, 2])}
    fig = plot_tap_counts(grids)
    try:
        panels = [ax for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>"]
        assert len(fig.axes) == 3 and len(panels) == 2                  # two maps and a colour bar
        assert panels[0].get_title() == f"rates 2, 2\n{grids['rates 2, 2'].shape[0]}x{grids['rates 2, 2'].shape[1]}"
        shown = np.ma.filled(panels[0].images[0].get_array().astype(float), np.nan)
        assert np.isnan(shown).sum() == int((grids["rates 2, 2"] == 0).sum()) > 0   # holes are NaN (black)
        assert panels[1].images[0].norm.vmax == pytest.approx(max(float(g.max()) for g in grids.values()))
    finally:
        plt.close(fig)


def test_plot_tap_counts_rejects_bad_grids():
    with pytest.raises(ValueError, match="at least one"):
        plot_tap_counts({})
    with pytest.raises(ValueError, match="2-D"):
        plot_tap_counts({"x": torch.ones(3)})
    with pytest.raises(ValueError, match="zeros"):
        plot_tap_counts({"x": torch.zeros(3, 3)})


def test_plot_crf_cost_one_line_per_backend_with_its_slope():
    cost = [{"backend": b, "pixels": p, "seconds": s * p} for b, s in (("exact", 1e-6), ("lattice", 1e-4))
            for p in (64, 256)]
    fig = plot_crf_cost(cost, {"exact": 2.04, "lattice": 0.5})
    try:
        ax = fig.axes[0]
        assert len(fig.axes) == 1 and len(ax.lines) == 2
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["exact (slope 2.04)", "lattice (slope 0.50)"]
        assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
        np.testing.assert_allclose(ax.lines[1].get_ydata(), [64e-4, 256e-4])
        # x ticks: the measured sizes, labelled once (no colliding log minor labels)
        assert list(ax.get_xticks()) == [64, 256] and [t.get_text() for t in ax.get_xticklabels()] == ["64", "256"]
        assert len(ax.xaxis.get_minorticklocs()) == 0
    finally:
        plt.close(fig)


def test_plot_crf_cost_rejects_a_backend_without_rows():
    with pytest.raises(ValueError, match="'pydensecrf'"):
        plot_crf_cost([{"backend": "exact", "pixels": 4, "seconds": 1.0}], {"pydensecrf": 1.0})
    with pytest.raises(ValueError, match="at least one"):
        plot_crf_cost([], {})
    plt.close("all")
