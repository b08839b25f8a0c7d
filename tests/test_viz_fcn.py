"""Tests for segbook.viz.fcn: chapter 2's figures (panel counts, titles, colour scales, bad input)."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from segbook.viz import decoder_stages_figure, heat_map_figure, stage_channels_figure  # noqa: E402

CLASSES = ("background", "disc", "ring")


def _scene(size=16):
    image = torch.rand(3, size, size)
    mask = torch.zeros(size, size, dtype=torch.int64)
    mask[4:12, 4:12] = 1
    return image, mask


def _titles(fig):
    return [ax.get_title() for ax in fig.axes if ax.get_title()]


def test_heat_map_figure_has_one_panel_per_class():
    image, mask = _scene()
    probs = torch.rand(3, 4, 4).softmax(0)
    fig = heat_map_figure(image, mask, probs, CLASSES, title="heat")
    try:
        assert _titles(fig) == ["image (16x16)", "ground truth", "P(background)", "P(disc)", "P(ring)"]
        images = [im for ax in fig.axes for im in ax.get_images()]
        assert len(images) == 5
        assert images[2].get_array().shape == (4, 4)          # the heat map at its own resolution
        assert images[2].get_clim() == (0, 1)                 # probabilities on one 0-1 scale
        assert fig._suptitle.get_text() == "heat"
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match="probs must be"):
        heat_map_figure(image, mask, probs[:2], CLASSES)
    with pytest.raises(ValueError, match="same size"):
        heat_map_figure(image, mask[:8], probs, CLASSES)


def test_stage_channels_figure_picks_the_channels_that_follow_the_objects():
    image, mask = _scene()
    foreground = (mask > 0).float()
    fine = torch.rand(5, 8, 8)
    fine[3] = torch.nn.functional.avg_pool2d(foreground[None, None], 2)[0, 0]   # channel 3 is the foreground
    coarse = torch.rand(4, 2, 2)
    fig = stage_channels_figure({"pool1": fine, "pool5": coarse}, foreground,
                                {"image": image, "ground truth": mask.float()}, per_stage=2)
    try:
        titles = _titles(fig)
        assert len(titles) == 6 and titles[0] == "image" and titles[3] == "ground truth"
        assert titles[1] == "pool1 ch 3 (8x8)"
        assert all(t.startswith("pool5 ch") and t.endswith("(2x2)") for t in titles[4:])
        assert len([im for ax in fig.axes for im in ax.get_images()]) == 6
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match="one lead panel per stage"):
        stage_channels_figure({"pool1": fine}, foreground, {})
    with pytest.raises(ValueError, match=r"\[C, h, w\]"):
        stage_channels_figure({"pool1": fine[0]}, foreground, {"image": image})


def test_decoder_stages_figure_rows_of_probabilities_and_labels():
    image, mask = _scene()
    scores = {"stride 32": torch.randn(3, 1, 1), "stride 8": torch.randn(3, 2, 2), "output": torch.randn(3, 16, 16)}
    fig = decoder_stages_figure(image, mask, scores, 1, CLASSES)
    try:
        assert _titles(fig) == ["image", "P(disc) stride 32", "P(disc) stride 8", "P(disc) output",
                                "ground truth", "labels stride 32", "labels stride 8", "labels output"]
        images = [im for ax in fig.axes for im in ax.get_images()]
        assert len(images) == 8 and images[1].get_clim() == (0, 1)
        assert images[1].get_array().shape == (1, 1) and images[3].get_array().shape == (16, 16)
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match="k must be"):
        decoder_stages_figure(image, mask, scores, 3, CLASSES)
    with pytest.raises(ValueError, match="empty"):
        decoder_stages_figure(image, mask, {}, 1, CLASSES)
    with pytest.raises(ValueError, match="K = 3"):
        decoder_stages_figure(image, mask, {"out": torch.randn(2, 4, 4)}, 1, CLASSES)
