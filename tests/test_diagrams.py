"""Tests for segbook.diagrams: each diagram shows the numbers of the module it is given."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.text import Text  # noqa: E402
from torch import nn  # noqa: E402

from segbook.diagrams import deeplab_diagram, figure_text, transposed_conv_diagram, unet_diagram  # noqa: E402
from segbook.models.unet import unet, unet_paper  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _fits_column(fig: Figure) -> None:
    w, h = fig.get_size_inches()
    assert w <= 6.4 + 1e-9 and 1.0 < h < 9.0


def test_figure_text_collects_every_string():
    fig, ax = plt.subplots()
    ax.set_title("a title")
    ax.text(0, 0, "box 42")
    text = figure_text(fig)
    assert "a title" in text and "box 42" in text


def test_transposed_conv_diagram_counts_overlaps():
    fig = transposed_conv_diagram()
    _fits_column(fig)
    text = figure_text(fig)
    assert "k=3, s=2: 4 → 9 pixels per side" in text
    # 1-D output counts for k=3, s=2 over 4 inputs: 1 1 2 1 2 1 2 1 1 (the uneven overlap)
    row = [t.get_text() for t in fig.axes[0].texts if t.get_text().isdigit()]
    assert row == ["1", "1", "2", "1", "2", "1", "2", "1", "1"]
    bar = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(bar) == 1 and bar[0].get_ylim()[1] == 4  # 2 x 2 overlaps in 2-D
    even = transposed_conv_diagram(nn.ConvTranspose2d(1, 1, 4, stride=2, padding=1), in_size=3)
    row4 = [t.get_text() for t in even.axes[0].texts if t.get_text().isdigit()]
    assert row4 == ["1", "2", "2", "2", "2", "1"]  # k divisible by s: even overlap inside
    with pytest.raises(TypeError, match="ConvTranspose2d"):
        transposed_conv_diagram(nn.Conv2d(1, 1, 3))
    with pytest.raises(ValueError, match="in_size"):
        transposed_conv_diagram(in_size=0)


def _texts_do_not_overlap(fig: Figure) -> None:
    """No two drawn strings share pixels, and every string lies inside the figure."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in fig.findobj(Text) if t.get_text()]
    frame = fig.bbox
    for text, bb in boxes:
        assert frame.x0 <= bb.x0 and bb.x1 <= frame.x1 and frame.y0 <= bb.y0 and bb.y1 <= frame.y1, text
    for i, (a, bb_a) in enumerate(boxes):
        for b, bb_b in boxes[i + 1:]:
            assert not bb_a.overlaps(bb_b), (a, b)


def test_unet_diagram_default_shows_the_modules_channels_and_sides():
    fig = unet_diagram()
    _fits_column(fig)
    _texts_do_not_overlap(fig)
    text = figure_text(fig)
    assert "U-Net: depth 3, same padding, 32×32 → 32×32" in text
    assert "input, 3 ch\n32×32" in text and "1×1 conv → 6 classes\n32×32" in text
    for channels, side in ((8, 32), (16, 16), (32, 8)):  # encoder and decoder level: same box text
        assert text.count(f"2× 3×3 conv, {channels} ch\n{side}×{side}") == 2
        assert f"concat → {2 * channels} ch" in text and f"up-conv 2×2\n→ {channels} ch" in text
    assert text.count("2× 3×3 conv, 64 ch\n4×4") == 1  # the bottom
    assert text.count("2×2 max pool") == 3 and "crop" not in text


def test_unet_diagram_sides_agree_with_a_forward_pass():
    for model, size in ((unet(num_classes=3, depth=2, width=4), 24),
                        (unet(num_classes=3, depth=2, width=4, padding="valid", upsampling="bilinear"), 76)):
        text = figure_text(unet_diagram(model, input_size=size))
        maps = model.eval().features(torch.zeros(1, 3, size, size))
        n_in = size
        for name, x in maps.items():  # enc0, enc1, bottom, dec1, dec0, logits: real channels and sides
            c, n = x.shape[1], x.shape[-1]
            if name == "logits":
                assert f"1×1 conv → {c} classes\n{n}×{n}" in text
                continue
            if name.startswith("dec"):
                n_in *= 2  # the decoder level's input is the up-sampled map below it
            sides = f"{n}×{n}" if n_in == n else f"{n_in}×{n_in} → {n}×{n}"
            assert f"2× 3×3 conv, {c} ch\n{sides}" in text, name
            n_in = n // 2 if name.startswith("enc") else n
    valid = figure_text(unet_diagram(model, input_size=76))
    assert "bilinear ×2,\n3×3 conv → 4 ch" in valid and "crop 72 → 40\nconcat → 8 ch" in valid
    assert "crop 32 → 24\nconcat → 16 ch" in valid


def test_unet_diagram_names_each_upsampling_kind():
    # the label is read from the block's kind: a nearest or pixel-shuffle U-Net is not "bilinear"
    for kind, label in (("nearest", "nearest ×2,\n3×3 conv → 4 ch"), ("bilinear", "bilinear ×2,\n3×3 conv → 4 ch"),
                        ("pixelshuffle", "pixel shuffle ×2\n→ 4 ch"), ("transposed2", "up-conv 2×2\n→ 4 ch")):
        text = figure_text(unet_diagram(unet(num_classes=3, depth=1, width=4, upsampling=kind), input_size=16))
        assert label in text, (kind, text)
        others = {"nearest ×2", "bilinear ×2", "pixel shuffle ×2", "up-conv 2×2"} - {label.split(",")[0].split("\n")[0]}
        assert not any(o in text for o in others), (kind, text)


def test_unet_diagram_paper_configuration():
    fig = unet_diagram(unet_paper(), input_size=572)
    _fits_column(fig)
    _texts_do_not_overlap(fig)
    text = figure_text(fig)
    assert "valid padding, 572×572 → 388×388" in text
    assert "input, 1 ch\n572×572" in text and "1×1 conv → 2 classes\n388×388" in text
    assert "2× 3×3 conv, 64 ch\n572×572 → 568×568" in text  # encoder level 0
    assert "2× 3×3 conv, 64 ch\n392×392 → 388×388" in text  # decoder level 0
    assert "2× 3×3 conv, 1024 ch\n32×32 → 28×28" in text
    for channels in (64, 128, 256, 512):
        assert f"up-conv 2×2\n→ {channels} ch" in text and f"concat → {2 * channels} ch" in text
    for skip, up in ((568, 392), (280, 200), (136, 104), (64, 56)):
        assert f"crop {skip} → {up}" in text
    assert figure_text(unet_diagram(unet_paper())) == text  # 572 is the default for the paper's net


def test_unet_diagram_rejects_what_it_cannot_draw():
    with pytest.raises(ValueError, match="expects a segbook.models.unet.UNet"):
        unet_diagram(nn.Conv2d(3, 3, 1))
    with pytest.raises(ValueError, match="input_size 30 .*depth-3 U-Net with same padding.*24 or 32"):
        unet_diagram(input_size=30)
    with pytest.raises(ValueError, match="input_size 570 .*with valid padding.*556 or 572"):
        unet_diagram(unet_paper(), input_size=570)
    with pytest.raises(ValueError, match="input_size"):
        unet_diagram(input_size=0)
    for bad in (32.0, "32"):
        with pytest.raises(TypeError, match="input_size"):
            unet_diagram(input_size=bad)


def test_deeplab_diagram_reads_rates_and_widths():
    from segbook.models.deeplab import deeplabv3, deeplabv3plus

    plus = deeplabv3plus(num_classes=6, depth=10, width=8, output_stride=8, base_rates=(1, 2, 3), aspp_channels=32,
                         reduced_channels=6)
    fig = deeplab_diagram(plus)
    _fits_column(fig)
    text = figure_text(fig)
    assert "DeepLab v3+, output stride 8" in text
    assert "layer3 /8\n32 ch, rate 2" in text and "layer4 /8\n64 ch, rate 4" in text
    for rate in (2, 4, 6):
        assert f"3×3 conv, rate {rate}\n32 ch" in text
    assert "image pooling" in text and "concat, 160 ch\n1×1 conv, 32" in text
    assert "1×1 conv, 6\n(low-level)" in text and "concat, 38 ch" in text and "bilinear ×2" in text
    assert "bilinear ×4\n→ 6×H×W" in text

    v3 = figure_text(deeplab_diagram(deeplabv3(num_classes=21)))
    assert "DeepLab v3, output stride 16" in v3 and "layer4 /16\n128 ch, rate 2" in v3
    assert all(f"rate {r}\n64 ch" in v3 for r in (6, 12, 18))
    assert "low-level" not in v3 and "bilinear ×16\n→ 21×H×W" in v3
    sep = figure_text(deeplab_diagram(deeplabv3plus(separable=True)))
    assert "3×3 sep. conv, rate 12" in sep
    with pytest.raises(TypeError, match="DeepLab"):
        deeplab_diagram(nn.Conv2d(3, 3, 1))
