"""Tests for segbook.viz.upsampling (chapter 3's figures)."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest
import torch

from segbook.viz import draw_scatter_1d, plot_input_gradients, plot_operator_matrices, show_images


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_draw_scatter_1d_one_row_per_input_and_the_sum():
    ax = draw_scatter_1d([1, 2, 3], [1, 2, 3], stride=2, padding=1)
    assert len(ax.patches) == 3 * 3 + 7          # three kernel copies of 3 cells, 7 output cells
    texts = [t.get_text() for t in ax.texts]
    assert "sum" in texts and "x[2]=3" in texts
    assert texts[-8:-1] == ["1", "2", "5", "4", "9", "6", "9"]   # the output row: copies summed
    assert ax.get_xlabel().startswith("output position (dotted")


def test_show_images_panels_colour_bars_and_range():
    fig = show_images({"rgb": torch.rand(3, 4, 4), "map": torch.randn(4, 4)}, symmetric=True)
    assert len(fig.axes) == 3   # two panels and one colour bar
    fig = show_images({"a": torch.randn(4, 4), "b": 1e-6 * torch.randn(4, 4)}, vrange=(-2.0, 2.0),
                      colorbar_label="grey levels")
    bars = [ax for ax in fig.axes if ax.get_ylabel() == "grey levels"]
    assert len(bars) == 2
    assert all(im.get_clim() == (-2.0, 2.0) for ax in fig.axes for im in ax.get_images())
    with pytest.raises(ValueError, match="vrange"):
        show_images({"a": torch.randn(4, 4)}, vrange=(1.0, 1.0))


def test_plot_operator_matrices_shared_scale_and_proportional():
    C, T = torch.randn(9, 36, dtype=torch.float64), torch.randn(36, 9, dtype=torch.float64)
    fig = plot_operator_matrices({"C": C, "T": T}, vlim=2.5)
    panels = [ax for ax in fig.axes if ax.get_images()]
    assert len(fig.axes) == 3 and len(panels) == 2                    # two matrices, one shared colour bar
    assert [ax.get_title() for ax in panels] == ["C", "T"]
    assert all(ax.get_images()[0].get_clim() == (-2.5, 2.5) for ax in panels)
    assert panels[0].get_images()[0].get_array().shape == (9, 36)
    U, M = torch.zeros(64, 16), torch.randn(64, 16)
    U[0, 0] = 1
    fig = plot_operator_matrices({"U": U, "C": torch.randn(64, 64), "M": M}, proportional=True)
    assert len(fig.axes) == 3                                          # no colour bar without vlim
    assert fig.axes[0].get_images()[0].get_clim() == (-1.0, 1.0)      # each on its own scale
    assert fig.axes[0].get_ylabel() == "output pixel" and fig.axes[1].get_ylabel() == ""
    with pytest.raises(ValueError, match="2-D"):
        plot_operator_matrices({"x": torch.randn(3)})
    with pytest.raises(ValueError, match="at least one"):
        plot_operator_matrices({})
    with pytest.raises(ValueError, match="vlim"):
        plot_operator_matrices({"C": C}, vlim=0)


def test_plot_input_gradients_titles_and_crop():
    scene, g = torch.rand(3, 16, 16), {"strided3": torch.randn(16, 16), "conv+avgpool": torch.randn(16, 16)}
    fig = plot_input_gradients(scene, g, {"strided3": 0.5, "conv+avgpool": 0.01}, crop=(slice(4, 12), slice(4, 12)))
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["scene (centre)", "d/dx, strided3\nscore 0.500", "d/dx, conv+avgpool\nscore 0.010"]
    maps = [ax.get_images()[0] for ax in fig.axes if ax.get_images() and ax.get_title().startswith("d/dx")]
    assert all(im.get_array().shape == (8, 8) for im in maps)
    assert all(im.get_clim()[0] == -im.get_clim()[1] for im in maps)   # centred on 0
    with pytest.raises(ValueError, match="no score"):
        plot_input_gradients(scene, g, {"strided3": 0.5})
    with pytest.raises(ValueError, match=r"\[3, H, W\]"):
        plot_input_gradients(scene[0], g, {"strided3": 0.5, "conv+avgpool": 0.0})
