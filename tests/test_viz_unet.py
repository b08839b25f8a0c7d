"""Tests for segbook.viz.unet: chapter 4's figures."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import segbook.viz as viz  # noqa: E402
from segbook.viz import colorize  # noqa: E402
from segbook.viz.unet import show_augmented  # noqa: E402


def test_show_augmented_one_row_per_draw():
    image, mask = torch.rand(3, 8, 8), torch.randint(0, 3, (8, 8))
    samples = [(torch.rand(3, 8, 8), torch.randint(0, 3, (8, 8))) for _ in range(3)]
    fig = show_augmented(image, mask, samples)
    assert viz.show_augmented is show_augmented                  # re-exported as segbook.viz.NAME
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 8                                      # 4 rows: image | mask
    assert [ax.get_title() for ax in panels[:2]] == ["image", "ground truth"]
    # row 0 is the scene, row r the (r-1)-th draw, in order
    assert np.allclose(np.asarray(panels[0].images[0].get_array()), image.permute(1, 2, 0).numpy())
    assert np.allclose(np.asarray(panels[4].images[0].get_array()), samples[1][0].permute(1, 2, 0).numpy())
    assert np.array_equal(np.asarray(panels[7].images[0].get_array()), colorize(samples[2][1]))
    plt.close(fig)


@pytest.mark.parametrize("image, mask, samples, match", [
    (torch.rand(3, 8, 8), torch.zeros(8, 8, dtype=torch.long), [], "empty"),
    (torch.rand(3, 8, 8), torch.zeros(7, 8, dtype=torch.long), [], "one size"),
    (torch.rand(3, 8, 8), torch.zeros(8, 8, dtype=torch.long), [(torch.rand(3, 8, 7), torch.zeros(8, 7))], "sample 0"),
])
def test_show_augmented_bad_input(image, mask, samples, match):
    with pytest.raises(ValueError, match=match):
        show_augmented(image, mask, samples)
