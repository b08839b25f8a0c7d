"""Tests for segbook.viz.classification: chapter 1's figures."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from segbook.models import densenet_bc  # noqa: E402
from segbook.viz import plot_densenet_widths, plot_excitation_scores, show_class_samples  # noqa: E402

CLASSES = ("disc", "ring", "square", "frame")


def test_show_class_samples_titles_every_image_with_its_class():
    images, labels = torch.rand(7, 3, 8, 8), torch.tensor([0, 1, 2, 3, 0, 1, 2])
    fig = show_class_samples(images, labels, CLASSES, ncols=4, title="samples")
    try:
        assert len(fig.axes) == 8                                   # 2 rows of 4
        assert [ax.get_title() for ax in fig.axes[:7]] == [CLASSES[i] for i in labels.tolist()]
        assert [len(ax.images) for ax in fig.axes] == [1] * 7 + [0]   # the 8th panel is blank
        assert np.allclose(fig.axes[2].images[0].get_array(), images[2].permute(1, 2, 0).numpy())
        assert fig._suptitle.get_text() == "samples"
    finally:
        plt.close(fig)


def test_show_class_samples_rejects_bad_input():
    with pytest.raises(ValueError, match="images"):
        show_class_samples(torch.rand(3, 8, 8), torch.tensor([0]), CLASSES)
    with pytest.raises(ValueError, match="labels must index classes"):
        show_class_samples(torch.rand(2, 3, 8, 8), torch.tensor([0, 4]), CLASSES)
    with pytest.raises(ValueError, match="ncols"):
        show_class_samples(torch.rand(2, 3, 8, 8), torch.tensor([0, 1]), CLASSES, ncols=0)


def test_plot_densenet_widths_shows_the_ramps_and_the_transitions():
    dn = densenet_bc(depth=40, growth_rate=12)
    fig = plot_densenet_widths(dn, xlabel="position")
    try:
        ax, = fig.axes
        heights = [p.get_height() for p in ax.patches][:-3]           # the last three bars: legend entries
        assert len(heights) == 3 * 6 + 3 + 2                           # 6 bottleneck layers per block (L=40)
        first = dn.blocks[0]
        assert heights[:7] == [first.in_channels + 12 * i for i in range(7)]   # a ramp of slope k = 12
        assert heights[7] == dn.transitions[0].out_channels == heights[6] // 2
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["layer", "block output", "after transition"]
        assert ax.get_xlabel() == "position"
    finally:
        plt.close(fig)


def test_plot_densenet_widths_rejects_other_models():
    with pytest.raises(TypeError, match="DenseNet"):
        plot_densenet_widths(torch.nn.Linear(2, 2))


def test_plot_excitation_scores_draws_the_gates_and_the_class_means():
    g = torch.Generator().manual_seed(0)
    scores, labels = torch.rand(12, 5, generator=g), torch.tensor([1, 0, 2, 3] * 3)
    fig = plot_excitation_scores(scores, labels, CLASSES, show=(0, 2))
    try:
        assert len(fig.axes) == 3                                      # heat map, class means, colour bar
        img = fig.axes[0].images[0].get_array()
        order = torch.argsort(labels, stable=True)
        assert img.shape == (5, 12) and np.allclose(img, scores[order].T.numpy())
        lines = fig.axes[1].get_lines()
        assert [ln.get_label() for ln in lines] == ["disc", "square"]
        assert np.allclose(lines[1].get_ydata(), scores[labels == 2].mean(0).numpy())
    finally:
        plt.close(fig)


def test_plot_excitation_scores_rejects_bad_input():
    with pytest.raises(ValueError, match="scores"):
        plot_excitation_scores(torch.rand(4, 3), torch.tensor([0, 1, 2]), CLASSES)
    with pytest.raises(ValueError, match="show"):
        plot_excitation_scores(torch.rand(4, 3), torch.tensor([0, 1, 1, 0]), CLASSES, show=(2,))
