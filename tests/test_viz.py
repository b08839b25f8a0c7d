"""Tests for segbook.viz: palettes, segmentation grids, map grids, tables."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from segbook.viz import (  # noqa: E402
    IGNORE_COLOR,
    MISSING,
    PALETTE,
    ResultsTable,
    colorize,
    results_table,
    show_maps,
    show_segmentation,
    to_image,
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# ---------------------------------------------------------------------------------------------
# palette, colorize, to_image
# ---------------------------------------------------------------------------------------------
def test_palette():
    assert PALETTE.shape == (21, 3) and PALETTE.dtype == np.uint8
    assert PALETTE[0].tolist() == [0, 0, 0]  # background is black
    assert len({tuple(c) for c in PALETTE}) == 21  # distinct colours
    assert IGNORE_COLOR.tolist() == [255, 255, 255]
    assert not (PALETTE == 255).all(1).any()  # no class is drawn like the ignore colour


def test_colorize_maps_labels_to_palette_rows():
    mask = np.array([[0, 1, 2], [5, 255, 20]])
    rgb = colorize(mask)
    assert rgb.shape == (2, 3, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0].tolist() == PALETTE[0].tolist()
    assert rgb[0, 1].tolist() == PALETTE[1].tolist()
    assert rgb[0, 2].tolist() == PALETTE[2].tolist()
    assert rgb[1, 0].tolist() == PALETTE[5].tolist()
    assert rgb[1, 1].tolist() == [255, 255, 255]
    assert rgb[1, 2].tolist() == PALETTE[20].tolist()


def test_colorize_torch_input_and_custom_ignore():
    mask = torch.tensor([[0, 3], [-1, 1]])
    rgb = colorize(mask, ignore_index=-1)
    assert rgb[1, 0].tolist() == [255, 255, 255]
    assert rgb[0, 1].tolist() == PALETTE[3].tolist()
    # with another ignore_index, 255 is just a (wrapped) label, not white
    assert colorize(np.array([[255]]), ignore_index=0)[0, 0].tolist() == PALETTE[255 % 21].tolist()
    assert colorize(torch.zeros(2, 2, dtype=torch.uint8)).sum() == 0


def test_colorize_errors():
    with pytest.raises(ValueError, match=r"mask must be \[H, W\]"):
        colorize(np.zeros((1, 2, 2), int))
    with pytest.raises(TypeError, match="integer labels"):
        colorize(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="negative labels"):
        colorize(np.array([[0, -2]]))


def test_to_image():
    chw = torch.rand(3, 4, 5)
    img = to_image(chw)
    assert img.shape == (4, 5, 3) and img.dtype == np.float32
    assert np.allclose(img, chw.permute(1, 2, 0).numpy())
    gray = to_image(np.full((4, 5), 0.25))
    assert gray.shape == (4, 5, 3) and np.allclose(gray, 0.25)
    assert to_image(np.zeros((1, 4, 5))).shape == (4, 5, 3)
    assert to_image(np.zeros((4, 5, 3))).shape == (4, 5, 3)
    clipped = to_image(np.array([[-1.0, 2.0]]))
    assert clipped.min() == 0.0 and clipped.max() == 1.0
    with pytest.raises(ValueError, match="expected an image"):
        to_image(np.zeros((2, 4, 5)))
    with pytest.raises(ValueError, match="expected an image"):
        to_image(np.zeros((1, 3, 4, 5)))


# ---------------------------------------------------------------------------------------------
# show_segmentation
# ---------------------------------------------------------------------------------------------
def _seg_batch(n=5, size=8):
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 3, size, size, generator=g), torch.randint(0, 4, (n, size, size), generator=g)


def test_show_segmentation_grid():
    images, masks = _seg_batch()
    fig = show_segmentation(images, masks, {"fcn": masks, "unet": masks.flip(-1)}, n=3)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 3 * 4
    titles = [ax.get_title() for ax in fig.axes[:4]]
    assert titles == ["image", "ground truth", "fcn", "unet"]
    assert all(ax.get_title() == "" for ax in fig.axes[4:])
    assert not fig.legends
    # the ground-truth panel shows colorize(mask)
    shown = fig.axes[1].get_images()[0].get_array()
    assert np.array_equal(np.asarray(shown), colorize(masks[0]))


def test_show_segmentation_without_predictions_and_with_legend():
    images, masks = _seg_batch(n=2)
    fig = show_segmentation(images, masks, n=4, class_names=["bg", "a", "b", "c"])
    assert len(fig.axes) == 2 * 2  # n is capped at the batch size
    assert len(fig.legends) == 1
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["bg", "a", "b", "c"]
    fig1 = show_segmentation(images.numpy(), masks.numpy(), masks.numpy(), n=1)
    assert len(fig1.axes) == 3
    assert fig1.axes[2].get_title() == "prediction"


def test_show_segmentation_errors():
    images, masks = _seg_batch(n=3)
    with pytest.raises(ValueError, match=r"expected images \[N, 3, H, W\] and masks \[N, H, W\]"):
        show_segmentation(images[0], masks)
    with pytest.raises(ValueError, match="expected images"):
        show_segmentation(images, masks[:2])
    with pytest.raises(ValueError, match="prediction 'bad' has shape"):
        show_segmentation(images, masks, {"bad": masks[:, :4]})


# ---------------------------------------------------------------------------------------------
# results_table
# ---------------------------------------------------------------------------------------------
ROWS = [
    {"model": "fcn", "miou": 0.51234, "params": 1234567},
    {"model": "unet", "miou": float("nan"), "note": "<b>"},
]


def test_results_table_text():
    t = results_table(ROWS, title="Results")
    assert isinstance(t, ResultsTable)
    assert t.columns == ["model", "miou", "params", "note"]  # first-seen order over all rows
    # NaN and absent keys are shown as an em dash, never "nan" or a blank cell
    assert t.cells == [["fcn", "0.512", "1,234,567", "\u2014"], ["unet", "\u2014", "\u2014", "<b>"]]
    expected = "\n".join([
        "Results",
        "model  miou   params     note",
        "-----  -----  ---------  ----",
        "  fcn  0.512  1,234,567     \u2014",
        " unet      \u2014          \u2014   <b>",
    ])
    assert repr(t) == expected
    assert "nan" not in repr(t)


def test_results_table_missing_values_are_em_dashes():
    rows = [{"phi": 0, "ratio": float("nan"), "w": np.float32("nan"), "n": None},
            {"phi": 1, "ratio": 1.92, "w": np.float64(1.1), "n": 3}]
    t = results_table(rows, floatfmt=".2f")
    assert t.cells == [["0", "\u2014", "\u2014", "\u2014"], ["1", "1.92", "1.10", "3"]]
    html = t._repr_html_()
    assert "nan" not in html.lower() and "None" not in html
    assert html.count(f'<td class="num">{MISSING}</td>') == 3
    assert MISSING in t.to_markdown() and "nan" not in t.to_markdown()


def test_results_table_html():
    html = results_table(ROWS, title="A & B")._repr_html_()
    assert html.startswith('<table class="segbook-results"><caption>A &amp; B</caption>')
    # numeric columns (numbers or missing values only) carry class "num": right-aligned by segbook.css
    assert ('<thead><tr><th>model</th><th class="num">miou</th><th class="num">params</th><th>note</th>'
            '</tr></thead>') in html
    assert f'<tr><td>fcn</td><td class="num">0.512</td><td class="num">1,234,567</td><td>{MISSING}</td></tr>' in html
    assert (f'<tr><td>unet</td><td class="num">{MISSING}</td><td class="num">{MISSING}</td>'
            '<td>&lt;b&gt;</td></tr>') in html
    assert "<b>" not in html
    assert html.endswith("</tbody></table>")
    assert "<caption>" not in results_table(ROWS)._repr_html_()


def test_results_table_bool_column_is_not_numeric():
    t = results_table([{"ok": True, "x": 1}, {"ok": False, "x": 2.0}])
    assert t.numeric == [False, True]


def test_results_table_formats():
    rows = [{"a": 1.0, "b": 2.5, "n": np.int64(1000), "f": np.float32(0.125), "flag": True, "big": 10**7}]
    t = results_table(rows, floatfmt={"b": ".1%"})
    assert t.cells == [["1.000", "250.0%", "1,000", "0.125", "True", "10,000,000"]]
    t2 = results_table(rows, columns=["big", "a"], floatfmt=".2e")
    assert t2.columns == ["big", "a"]
    assert t2.cells == [["10,000,000", "1.00e+00"]]
    # columns are as wide as their widest cell; headers left-, cells right-aligned
    assert repr(t2).splitlines() == ["big".ljust(10) + "  " + "a".ljust(8), "-" * 10 + "  " + "-" * 8,
                                     "10,000,000  1.00e+00"]


def test_results_table_markdown():
    md = results_table([{"x": 1, "y": 0.5}, {"x": 22}]).to_markdown()
    assert md.splitlines() == ["| x | y |", "|---:|---:|", "| 1 | 0.500 |", f"| 22 | {MISSING} |"]


def test_results_table_needs_rows():
    with pytest.raises(ValueError, match="at least one row"):
        results_table([])


def test_to_image_accepts_bf16_activations():
    from segbook.viz import to_image
    x = torch.rand(3, 4, 5).to(torch.bfloat16)
    img = to_image(x)
    assert img.dtype.kind == "f" and img.shape[:2] == (4, 5)


# ---------------------------------------------------------------------------------------------
# figure_style
# ---------------------------------------------------------------------------------------------
def test_figure_style_sets_the_book_rc():
    from segbook.viz import BOOK_FIGURE_WIDTH, BOOK_RC, figure_style

    with matplotlib.rc_context():
        applied = figure_style()
        assert applied == BOOK_RC
        assert plt.rcParams["figure.dpi"] == 100 and plt.rcParams["font.size"] >= 10
        assert tuple(plt.rcParams["figure.figsize"])[0] == BOOK_FIGURE_WIDTH
    assert BOOK_RC["figure.figsize"][0] * BOOK_RC["figure.dpi"] <= 700  # fits the HTML text column


def test_figure_style_gives_retina_pngs_in_ipython():
    """Inside IPython the inline backend then stores a 2x PNG with its display size as metadata."""
    import base64
    import struct

    from IPython.core.interactiveshell import InteractiveShell

    from segbook.viz import figure_style

    shell = InteractiveShell.instance()
    try:
        with matplotlib.rc_context():
            figure_style()
            fig, ax = plt.subplots(figsize=(4, 2))
            ax.plot([0, 1], [0, 1])
            data, metadata = shell.display_formatter.format(fig)
        png = data["image/png"]
        raw = png if isinstance(png, bytes) else base64.b64decode(png)
        width_px, height_px = struct.unpack(">II", raw[16:24])  # the PNG IHDR chunk
        shown = metadata["image/png"]
        assert abs(width_px - 2 * shown["width"]) <= 1 and abs(height_px - 2 * shown["height"]) <= 1
        assert 350 <= shown["width"] <= 420  # ~4 in at 100 dpi (bbox "tight" trims a little)
    finally:
        InteractiveShell.clear_instance()


def test_show_maps_panels():
    maps = {"rgb": torch.rand(3, 8, 8), "hwc uint8": np.zeros((8, 8, 3), np.uint8), "map": torch.rand(4, 4),
            "numpy": np.ones((2, 2))}
    fig = show_maps(maps, ncols=3, vrange=(0, 1), suptitle="x")
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == list(maps)
    assert len(fig.axes) == 6 + 1  # 2 x 3 panels and one colour bar shared by the value maps (vrange fixed)
    plt.close(fig)
    with pytest.raises(ValueError):
        show_maps({})
    with pytest.raises(ValueError):
        show_maps({"bad": torch.rand(2, 2, 2, 2)})


def test_show_maps_draws_rgb_like_to_image():
    rgb = torch.rand(3, 5, 7) * 1.4 - 0.2          # out of range on purpose: clipped like to_image
    fig = show_maps({"rgb": rgb, "uint8": (torch.rand(5, 7, 3) * 255).to(torch.uint8)})
    drawn = fig.axes[0].images[0].get_array()
    assert np.allclose(np.asarray(drawn), to_image(rgb))
    assert fig.axes[1].images[0].get_array().shape == (5, 7, 3)
    assert float(np.asarray(fig.axes[1].images[0].get_array()).max()) <= 1.0


def test_show_maps_reads_a_3x3_colorized_map_channels_last():
    labels = torch.tensor([[0, 1, 2], [2, 1, 0], [1, 1, 1]])
    fig = show_maps({"labels": colorize(labels)})
    drawn = np.asarray(fig.axes[0].images[0].get_array())
    assert np.allclose(drawn, PALETTE[labels.numpy()] / 255.0)


def test_show_maps_colour_bars():
    import matplotlib.pyplot as plt

    def bars(fig):  # colour-bar axes are the ones matplotlib labels "<colorbar>"
        return [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]

    maps = {"rgb": torch.rand(3, 8, 8), "a": torch.rand(4, 4), "b": 10 * torch.rand(4, 4)}
    shared = show_maps(maps, vrange=(0, 1), colorbar_label="P(class)")
    assert len(bars(shared)) == 1 and bars(shared)[0].get_ylabel() == "P(class)"
    assert bars(shared)[0].get_ylim() == (0.0, 1.0)
    own = show_maps(maps)  # each value map has its own range, so its own bar; the RGB panel none
    assert len(bars(own)) == 2
    assert bars(own)[1].get_ylim()[1] > 1.0  # the second bar spans map "b"'s range (up to ~10)
    assert bars(show_maps(maps, colorbar=False)) == []
    assert bars(show_maps({"rgb": torch.rand(3, 8, 8)})) == []
    plt.close("all")


def test_show_sampling_points_draws_the_taps_of_each_pixel():
    from segbook.nn import regular_grid
    from segbook.viz import show_sampling_points

    grid = regular_grid((10, 12))
    moved = grid + torch.tensor([0.5, 2.0])
    fig = show_sampling_points(torch.zeros(10, 12), {"grid": grid, "moved": moved}, [(2, 3), (7, 8)],
                               suptitle="taps")
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert [ax.get_title() for ax in fig.axes] == ["grid", "moved"] and fig._suptitle.get_text() == "taps"
    for ax, taps in zip(fig.axes, (grid, moved)):
        scatters = ax.collections
        assert len(scatters) == 2  # one colour per pixel
        for sc, (y, x) in zip(scatters, [(2, 3), (7, 8)]):
            # offsets are (x, y) = (column, row) of the 9 taps of that pixel
            assert np.allclose(sc.get_offsets(), taps[y, x][:, [1, 0]].numpy())
        assert ax.get_xlim() == (-6, 17) and ax.get_ylim() == (15, -6)
    plt.close(fig)
    with pytest.raises(ValueError, match=r"\[H, W, K, 2\]"):
        show_sampling_points(torch.zeros(10, 12), {"bad": grid[..., 0]}, [(0, 0)])
    with pytest.raises(ValueError, match="empty"):
        show_sampling_points(torch.zeros(10, 12), {}, [(0, 0)])


def test_plot_loss_curves_draws_moving_averages_one_line_per_run():
    from segbook.viz import plot_loss_curves

    runs = {"plain": [[4.0, 2.0, 1.0, 1.0], [3.0, 3.0, 3.0, 3.0]], "res": [[1.0, 1.0, 1.0, 1.0]]}
    fig = plot_loss_curves(runs, window=2, styles={"plain": "C0--"}, title="t")
    ax = fig.axes[0]
    lines = ax.get_lines()
    assert len(lines) == 3 and ax.get_yscale() == "log" and ax.get_title() == "t"
    x, y = lines[0].get_data()
    assert list(x) == [2, 3, 4] and np.allclose(y, [3.0, 1.5, 1.0])  # mean of steps (1,2), (2,3), (3,4)
    assert lines[0].get_linestyle() == "--" and lines[0].get_linewidth() > lines[1].get_linewidth()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["plain", "res"]
    assert "moving average of 2" in ax.get_ylabel()
    plt.close(fig)
    with pytest.raises(ValueError, match="at least window=5"):
        plot_loss_curves(runs, window=5)
    with pytest.raises(ValueError, match="empty"):
        plot_loss_curves({})


def test_plot_per_layer_and_bar_pairs():
    from segbook.viz import plot_bar_pairs, plot_per_layer

    fig = plot_per_layer({"plain": np.array([1.0, 10.0, 100.0]), "res": [2.0, 2.0, 2.0]}, ylabel="g")
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and ax.get_ylabel() == "g"
    x, y = ax.get_lines()[0].get_data()
    assert list(x) == [1, 2, 3] and list(y) == [1.0, 10.0, 100.0]
    plt.close(fig)
    fig = plot_bar_pairs([1.0, 2.0], [0.5, 3.0], labels=("init", "trained"), ylabel="r")
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    centres = [p.get_x() + p.get_width() / 2 for p in ax.patches]
    assert heights == [1.0, 2.0, 0.5, 3.0] and np.allclose(centres, [0.8, 1.8, 1.2, 2.2])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["init", "trained"]
    plt.close(fig)
    with pytest.raises(ValueError, match="one length"):
        plot_bar_pairs([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match=r"\[L\]"):
        plot_per_layer({"bad": np.zeros((2, 2))})
