"""Write chapters/04_unet_sizes.ipynb from the cell list below (unexecuted).

Kept while the chapter is being calibrated; run ``python tools/execute_chapters.py
chapters/04_unet_sizes.ipynb`` afterwards to execute it in place.
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "chapters" / "04_unet_sizes.ipynb"

IGNORE = ["nbval-ignore-output"]
HIDE = ["remove-cell"]
HIDE_INPUT = ["remove-input"]


def md(text):
    return ("markdown", text.strip("\n"), None, None)


def code(text, tags=None, figure=None):
    return ("code", text.strip("\n"), tags, figure)


CELLS = [
    md(r"""
# U-Net and its feature-size pitfalls

FCN ({doc}`02_fcn`) showed that a classification network, made fully convolutional and given skips
from earlier layers, labels every pixel. Ronneberger, Fischer and Brox {cite}`ronneberger2015unet`
turned the skips into the main design: their **U-Net** has a decoder as deep as its encoder, and
at every level it *concatenates* the encoder's features with the upsampled decoder features. It
was built for microscopy, where a data set may hold a few dozen annotated images, and it won the
ISBI 2012 neuron-membrane challenge (warping error 0.0003529) and the ISBI 2015 cell-tracking
challenge (IoU 0.9203 on PhC-U373 and 0.7756 on DIC-HeLa, where the next entries scored 0.83 and
0.46), trained with heavy augmentation, elastic deformations above all.

Its symmetric shape also makes sizes matter: every pooling halves a side and every
up-convolution doubles it, and a skip can only be concatenated if both sides agree. This chapter

1. builds a U-Net and follows its channels and sizes level by level;
2. reproduces the classic 7 -> 3 -> 6 size mismatch with the error torch raises, and traces it;
3. computes which input sizes work, for "same" and for the paper's unpadded convolutions
   (572 -> 388), and the overlap-tile strategy that makes the latter usable on large images;
4. trains a small U-Net and chapter 2's FCN-8s on the same data and budget;
5. compares three fixes for inputs of odd sizes: refuse (and crop), mirror-pad, resize;
6. runs overlap-tile inference on images larger than the training scenes;
7. trains on a handful of images with and without augmentation (flips and elastic deformations
   applied to image and mask alike, colour jitter to the image).
"""),
    code(r'''
# Colab: install segbook (does nothing outside Colab).
import sys
if "google.colab" in sys.modules:
    %pip install -q "segbook @ git+https://github.com/segbook/segbook@main"
'''),
    code(r'''
import torch
from segbook.runtime import setup
from segbook.viz import figure_style

rt = setup(seed=0)
figure_style()
print(rt)
''', IGNORE),
    code(r'''
import time

import matplotlib.pyplot as plt
import torch.nn as nn

from segbook.analysis import count_params
from segbook.data import SegmentationAugment, chapter_datasets, make_loader, take, tile_scenes
from segbook.diagrams import unet_diagram
from segbook.experiments.fcn import ceiling_labels
from segbook.experiments.unet import AugmentedPairs, compare_input_policies, random_crops
from segbook.metrics import SegmentationMetrics
from segbook.models.fcn import fcn8s
from segbook.models.unet import UNet, predict_tiled, unet, unet_paper
from segbook.notebook import claim, glue, glue_all
from segbook.sizes import conv_transpose_output_size, nearest_valid_unet_sizes, pool_output_size, unet_trace, unet_valid_sizes
from segbook.train import class_balance_weights, evaluate, fit, predict
from segbook.viz import results_table, show_segmentation
'''),
    md(r"""
## Contracting and expanding paths

The **contracting path** repeats one level $D$ times: two 3x3 convolutions (each followed by
batch norm and ReLU here), then a 2x2 max pooling with stride 2. After level $\ell$ a map has
$C \cdot 2^\ell$ channels and side $n / 2^\ell$: the side halves and the channels double, so the
cost per level stays roughly constant while each unit sees more of the image. A bottom level of two
convolutions follows. The **expanding path** climbs back: a 2x2 transposed convolution with stride 2
(the paper's "up-convolution") doubles the side and halves the channels, the result is concatenated
with the encoder map of the same level (the *skip*), and two 3x3 convolutions mix the
$C 2^\ell + C 2^\ell$ channels down to $C 2^\ell$. A 1x1 convolution gives the $K$ class scores.

The paper's network has $D = 4$ levels and $C = 64$ (64 to 1024 channels). Our scenes are
32x32 pixels, so we use $D = 3$ (a fourth pooling would leave 2x2 maps) and $C = 8$, small enough
to train on a CPU in about a minute. The diagram is drawn from the module itself:
"""),
    code(r'''
P = rt.profile
SIZE = P.choose(quick=32, full=32)         # scene side: objects span a few stride-8 cells
DEPTH = 3                                  # poolings: 32 -> 16 -> 8 -> 4
WIDTH = P.choose(quick=8, full=16)         # channels at the first level (the paper: 64)

torch.manual_seed(rt.seed)
net = unet(num_classes=6, depth=DEPTH, base_width=WIDTH).eval()
fig = unet_diagram(net, input_size=SIZE)
plt.show()
''', figure=({"caption": "The chapter's U-Net, drawn from the module: channels double and sides halve on the way down; "
                         "each decoder level up-convolves, concatenates the skip and applies two 3x3 convolutions.",
              "name": "fig-unet-diagram"},
             {"alt": "U-shaped block diagram: encoder levels on the left going down with their channels and sides, "
                     "the bottom level, decoder levels on the right going up, horizontal concatenation arrows between "
                     "levels of equal size, and a 1x1 convolution head."})),
    code(r'''
with torch.inference_mode():
    maps = net.features(torch.rand(1, 3, SIZE, SIZE))
arch_rows = [{"map": name, "channels": m.shape[1], "side": m.shape[-1]} for name, m in maps.items()]
_ = glue_all({"depth": DEPTH, "width": WIDTH, "unet_params": count_params(net),
              "bottom_side": maps["bottom"].shape[-1], "bottom_channels": maps["bottom"].shape[1]})
print(f"U-Net depth {DEPTH}, base width {WIDTH}: {count_params(net):,} parameters")
results_table(arch_rows)
'''),
    code(r'''
claim(all(maps[f"enc{l}"].shape[1] == WIDTH * 2 ** l and maps[f"enc{l}"].shape[-1] == SIZE >> l for l in range(DEPTH)),
      "encoder channels do not double / sides do not halve per level")
claim(all(maps[f"dec{l}"].shape[1] == WIDTH * 2 ** l and maps[f"dec{l}"].shape[-1] == SIZE >> l for l in range(DEPTH)),
      "decoder levels do not mirror the encoder")
claim(maps["logits"].shape[-2:] == (SIZE, SIZE), "the logits are not at the input size")
''', HIDE),
    md(r"""
The encoder ends at a {glue:text}`bottom_side`x{glue:text}`bottom_side` map of
{glue:text}`bottom_channels` channels; the decoder mirrors it back to full resolution, and the net
has {glue:text}`unet_params` parameters.

**Concatenation, not summation.** FCN fuses a skip by turning it into $K$ class scores with a 1x1
convolution and *adding* them to the upsampled coarse scores: cheap (one $C \times K$ matrix per
skip), but an early layer can speak only through class scores, and on its own an early layer
barely knows the class. U-Net concatenates the skip's *features* with the decoder's,
$[\,x_{\text{skip}};\ \mathrm{up}(x)\,]$, and lets the next convolutions learn how to combine
"there is an edge here" (fine, from the encoder) with "this region is a disc" (coarse, from
below). A sum of feature maps would make both share the same channels with the same meaning;
concatenation keeps them apart at the price of decoder convolutions with twice the input
channels. The decoder is as heavy as the encoder, where FCN's decoder is a few 1x1 convolutions
and fixed or learned upsamplings.

## The 7 -> 3 -> 6 pitfall

Concatenation needs equal sides. Pooling rounds down (`ceil_mode=False` is torch's default): a
7x7 map pools to 3x3, whose up-convolution is 6x6, and 6 is not 7. A one-level "U-Net" in plain
torch shows what happens:
"""),
    code(r'''
torch.manual_seed(rt.seed)
conv = nn.Conv2d(3, 8, 3, padding=1)
pool = nn.MaxPool2d(2)
up = nn.ConvTranspose2d(8, 8, kernel_size=2, stride=2)
x7 = torch.rand(1, 3, 7, 7)
with torch.no_grad():
    skip = conv(x7)
    down = pool(skip)
    upsampled = up(down)
print(f"skip {tuple(skip.shape)} -> pooled {tuple(down.shape)} -> up-convolved {tuple(upsampled.shape)}")
try:
    torch.cat([skip, upsampled], dim=1)
    cat_error = ""
except RuntimeError as err:
    cat_error = str(err)
    print(f"RuntimeError: {cat_error}")
'''),
    code(r'''
claim("Sizes of tensors must match" in cat_error, f"torch.cat did not fail as expected: {cat_error!r}")
''', HIDE),
    md(r"""
The message is accurate but says nothing about *why* 6 appeared. `segbook.sizes` follows the side
through the net with the formulas torch uses ($\lfloor (n + 2p - k)/s \rfloor + 1$ for convolution
and pooling, $(n - 1)s - 2p + k$ for the transposed convolution; checked against the modules in
the tests):
"""),
    code(r'''
trace7 = unet_trace(7, depth=1, padding="same")
print("\n".join(trace7.problems))
results_table(trace7.rows())
'''),
    md(r"""
Rounding up instead (`ceil_mode=True`) does not help: the pooled map is then 4x4 and comes back as
8x8, one row too many. The only sides that survive $D$ halvings and doublings unchanged are
multiples of $2^D$. Our `UNet` checks this before running anything and says what would work:
"""),
    code(r'''
ceil_side = conv_transpose_output_size(pool_output_size(7, 2, ceil_mode=True), 2, 2)
print(f"with ceil_mode: 7 -> {pool_output_size(7, 2, ceil_mode=True)} -> {ceil_side}")
try:
    unet(num_classes=6, depth=1, base_width=4)(x7)
    strict_error = ""
except ValueError as err:
    strict_error = str(err)
    print(f"ValueError: {strict_error}")
'''),
    code(r'''
claim(ceil_side == 8 and "nearest that work: 6 or 8" in strict_error, f"unexpected: {ceil_side}, {strict_error!r}")
''', HIDE),
    md(r"""
## Which sizes work: same and valid convolutions

With "same" padding (a 3x3 convolution with 1 pixel of zeros on each side) the convolutions keep
the size, and the valid sides are the multiples of $2^D$. The paper uses **unpadded** ("valid")
convolutions: every 3x3 convolution trims 2 pixels, two per level trim 4, and the skip, now larger
than the decoder map, is centre-cropped before the concatenation. Every map entering a pooling must
be even. Writing $b$ for the side of the bottom map after its convolutions, the input and output
sides are

$$ n_{\text{in}} = 2^D (b + 4) + 4 (2^D - 1), \qquad n_{\text{out}} = 2^D b - 4 (2^D - 1), $$

so valid inputs come every $2^D$ pixels and the output is smaller than the input by a constant
margin. The first valid sizes for depths 3 to 5:
"""),
    code(r'''
size_rows = []
for depth in (3, 4, 5):
    valid = unet_valid_sizes(depth, "valid", high=700)
    same = unet_valid_sizes(depth, "same", high=200)
    size_rows.append({"depth": depth, "same: valid sides": ", ".join(str(n) for n, _ in same[:5]) + ", ...",
                      "valid: input -> output": ", ".join(f"{a}->{b}" for a, b in valid[:3]) + ", ...",
                      "valid: margin lost per side": (valid[0][0] - valid[0][1]) // 2})
results_table(size_rows)
'''),
    code(r'''
paper = unet_trace(572, depth=4, padding="valid")
paper_in, paper_out = 572, paper.output_size
below, above = nearest_valid_unet_sizes(570, 4, "valid")
# The same computation by torch: the paper's layout with 1 to 16 channels instead of 64 to 1024.
thin = UNet(num_classes=2, in_channels=1, depth=4, base_width=1, padding="valid").eval()
with torch.inference_mode():
    thin_out = thin(torch.rand(1, 1, paper_in, paper_in))
full_params = count_params(unet_paper())
_ = glue_all({"paper_in": paper_in, "paper_out": paper_out, "paper_margin": (paper_in - paper_out) // 2,
              "near_below": below, "near_above": above, "paper_params": f"{full_params / 1e6:.1f}"})
print(f"unet_trace: {paper_in} -> {paper_out}; torch module: {paper_in} -> {thin_out.shape[-1]}; "
      f"nearest valid sizes to 570: {below}, {above}; paper-sized net: {full_params:,} parameters")
results_table([r for r in paper.rows() if r["step"] != "input"][:10])
'''),
    code(r'''
claim(paper_out == 388 and thin_out.shape[-1] == paper_out, f"572 gives {paper_out} (module: {thin_out.shape[-1]})")
b = int(next(r["size"] for r in paper.rows() if r["step"] == "bottom convs").split("x")[0])
claim(2 ** 4 * (b + 4) + 4 * (2 ** 4 - 1) == paper_in and 2 ** 4 * b - 4 * (2 ** 4 - 1) == paper_out,
      f"the closed forms with the traced bottom side b = {b} do not give {paper_in} -> {paper_out}")
''', HIDE),
    md(r"""
The paper's figure follows: a {glue:text}`paper_in`x{glue:text}`paper_in` tile gives a
{glue:text}`paper_out`x{glue:text}`paper_out` segmentation, {glue:text}`paper_margin` pixels
short on every side (the same number from the formula, from the trace and from a torch module
with the paper's layout). A 570-pixel tile would fail; the nearest that work are
{glue:text}`near_below` and {glue:text}`near_above`. The paper-sized network built with
`unet_paper()` has {glue:text}`paper_params` M parameters. Our net uses "same" padding instead, so
its output has the input's size.

**Overlap-tile.** Because each output pixel of the valid-convolution net has seen a full
{glue:text}`paper_margin`-pixel context on every side, and no padded zeros, a large image can be
cut into tiles whose *outputs* abut exactly: input tiles of 572 overlap by $2 \times 92$ pixels,
output tiles of 388 do not overlap at all, and the result does not depend on where the seams are,
up to the pooling grid. At the image border the missing context is filled by mirroring the image.
`predict_tiled` does this; on a 512x512 image (the size of the ISBI 2012 images):
"""),
    code(r'''
big = torch.rand(1, 1, 512, 512)
tiles_per_side = -(-512 // paper_out)
padded_side = tiles_per_side * paper_out + 2 * thin.context_margin
with torch.inference_mode():
    tiled_thin = predict_tiled(thin, big, tile=paper_in, margin=thin.context_margin)
_ = glue_all({"tiles_per_side": tiles_per_side, "padded_side": padded_side})
print(f"{tiles_per_side}x{tiles_per_side} tiles of {paper_in} (outputs {paper_out}x{paper_out}) on the image mirrored "
      f"to {padded_side}x{padded_side}: output {tuple(tiled_thin.shape[-2:])}")
'''),
    code(r'''
claim(tuple(tiled_thin.shape[-2:]) == (512, 512), f"overlap-tile output {tuple(tiled_thin.shape)}")
''', HIDE),
    md(r"""
The 512x512 image is mirrored out to {glue:text}`padded_side`x{glue:text}`padded_side`,
{glue:text}`tiles_per_side`x{glue:text}`tiles_per_side` input tiles of 572 are run, and their
388x388 outputs are stitched into a 512x512 segmentation. We come back to tiling with a trained net
below.

## Training: U-Net against FCN-8s

The data is the book's procedural scenes (`ShapesSegmentation`, as in chapters 2 and 5): a few
shapes (disc, square, triangle, thin ring, thin line) that stand out from a darker textured
background, the class given by the shape, here at 32x32 pixels. At this size an object spans only
a few cells of FCN-8s' finest (stride 8) score map, so the comparison asks what U-Net was built
for: precise outlines of small objects. Both nets see the same fresh scenes in the same order,
for the same number of steps, with the same optimiser and schedule.

Lines and rings cover few pixels ({glue:text}`line_share`% and {glue:text}`ring_share`% of the
training pixels, against {glue:text}`bg_share`% background), so an unweighted loss lets a net
ignore them for a long time. U-Net's loss weights every pixel to balance the class frequencies
(plus a term for the narrow gaps between touching cells, which our scenes do not have). We use the
balancing part, median-frequency weights {cite}`eigen2015predicting` $w_c = \mathrm{median}_k f_k / f_c$, for both nets:
"""),
    code(r'''
BATCH = 32
STEPS = P.choose(quick=1500, full=4000)    # one pass over fresh scenes
N_VAL = P.choose(quick=256, full=1024)
LR = 0.01
train_set, val_set, info = chapter_datasets(rt, task="segmentation", size=SIZE, n_train=STEPS * BATCH, n_val=N_VAL)
K, CLASSES = info.num_classes, info.classes
val_images, val_masks = take(val_set)
val_loader = make_loader(val_set, 128)
sample_masks = take(train_set, 2048)[1]                     # enough scenes to count class shares
weights = class_balance_weights(sample_masks, K)
print(f"{info.description}: {len(train_set):,} training scenes (one pass), {len(val_set)} validation scenes of "
      f"{SIZE}x{SIZE}; {STEPS} steps of {BATCH}")
results_table([{"class": c, "loss weight": float(w)} for c, w in zip(CLASSES, weights)], floatfmt={"loss weight": ".2f"})
''', IGNORE),
    code(r'''
shares = torch.bincount(sample_masks.flatten(), minlength=256)[:K].double()
shares = 100 * shares / shares.sum()
if info.claims_apply:
    _ = glue_all({"line_share": shares[CLASSES.index("line")], "ring_share": shares[CLASSES.index("ring")],
                  "bg_share": shares[0]}, fmt=".1f")
else:
    _ = glue_all({"line_share": "—", "ring_share": "—", "bg_share": f"{shares[0]:.1f}"})
_ = glue_all({"n_train": len(train_set), "n_val": len(val_set), "steps": STEPS, "batch": BATCH, "size": SIZE})
''', HIDE_INPUT + IGNORE),
    code(r'''
runs = {}
builders = {"U-Net": lambda: unet(num_classes=K, depth=DEPTH, base_width=WIDTH),
            "FCN-8s": lambda: fcn8s(num_classes=K, width=8)}
for name, build in builders.items():
    torch.manual_seed(rt.seed)
    model = build()
    loader = make_loader(train_set, BATCH, shuffle=True, seed=rt.seed, drop_last=True)   # the same batches for both
    hist = fit(model, loader, task="segmentation", num_classes=K, epochs=1, lr=LR, class_weights=weights,
               device=rt.device, seed=rt.seed, desc=name, progress=False)
    runs[name] = {"model": model.eval(), "hist": hist,
                  "val": evaluate(model, val_loader, task="segmentation", num_classes=K, device=rt.device)}
''', IGNORE),
    code(r'''
ceiling = SegmentationMetrics(K)
ceiling.update(ceiling_labels(val_masks, 8, K), val_masks)
ceiling = ceiling.compute()
rows = []
for name, run in runs.items():
    v = run["val"]
    rows.append({"model": name, "params": count_params(run["model"]), "mIoU": v["miou"], "pixel acc": v["pixel_acc"],
                 "boundary F1": v["boundary_f1"], **{f"IoU {c}": float(v["iou_per_class"][i]) for i, c in enumerate(CLASSES)
                                                     if i > 0}, "train (s)": run["hist"].total_seconds})
rows.append({"model": "stride-8 ceiling (no net)", "mIoU": ceiling["miou"], "pixel acc": ceiling["pixel_acc"],
             "boundary F1": ceiling["boundary_f1"]})
u, f = runs["U-Net"]["val"], runs["FCN-8s"]["val"]
_ = glue_all({"unet_miou": u["miou"], "unet_bf1": u["boundary_f1"], "fcn8s_miou": f["miou"], "fcn8s_bf1": f["boundary_f1"],
              "ceiling8_miou": ceiling["miou"], "ceiling8_bf1": ceiling["boundary_f1"],
              "fcn8s_params": count_params(runs["FCN-8s"]["model"]),
              "unet_train_s": f"{runs['U-Net']['hist'].total_seconds:.0f}",
              "fcn8s_train_s": f"{runs['FCN-8s']['hist'].total_seconds:.0f}"})
results_table(rows, floatfmt=".3f")
''', IGNORE),
    code(r'''
info.claim(u["miou"] >= 0.75, f"U-Net mIoU {u['miou']:.3f} < 0.75")
info.claim(u["miou"] >= f["miou"] + 0.05, f"U-Net mIoU {u['miou']:.3f} is not 0.05 above FCN-8s {f['miou']:.3f}")
info.claim(u["boundary_f1"] > f["boundary_f1"], f"U-Net boundary F1 {u['boundary_f1']:.3f} <= FCN-8s {f['boundary_f1']:.3f}")
info.claim(f["miou"] < ceiling["miou"] + 0.05, f"FCN-8s ({f['miou']:.3f}) is well above the stride-8 ceiling "
           f"({ceiling['miou']:.3f}): the text's explanation would not hold")
''', HIDE),
    code(r'''
show = [0, 1, 2, 3]
preds = {name: predict(run["model"], val_images[show], device=rt.device) for name, run in runs.items()}
fig = show_segmentation(val_images[show], val_masks[show], preds, class_names=CLASSES, n=4, panel_size=1.4)
plt.show()
''', IGNORE, figure=({"caption": "Validation scenes: U-Net's outlines follow the shapes; FCN-8s, which scores at stride 8 "
                                 "and interpolates, rounds corners and turns thin rings into blobs.",
                      "name": "fig-unet-fcn-masks"},
                     {"alt": "Grid of four 32 by 32 validation scenes in rows; columns: image, ground truth, U-Net "
                             "prediction, FCN-8s prediction, with a colour legend for the six classes."})),
    md(r"""
With {glue:text}`n_train` fresh scenes ({glue:text}`steps` steps of {glue:text}`batch`), the
U-Net reaches a mean IoU of {glue:text}`unet_miou` and a boundary F1 of {glue:text}`unet_bf1` on
{glue:text}`n_val` validation scenes; FCN-8s, trained identically, reaches
{glue:text}`fcn8s_miou` and {glue:text}`fcn8s_bf1`. The last row of the table says why: scoring
each stride-8 cell perfectly (the share of each class in the cell, upsampled bilinearly as FCN
does; see {doc}`02_fcn`) and taking the arg-max gives a mean IoU of only
{glue:text}`ceiling8_miou`. FCN-8s is close to that bound; it is not a strict bound, since learned
scores can place a boundary inside a cell, but at this scale the coarse score map, not the
classifier, limits FCN-8s. The U-Net's last convolutions work at full resolution on features the
skip carried up from the first level, so its outlines can be exact. The price is compute: the
U-Net trained in {glue:text}`unet_train_s` s against {glue:text}`fcn8s_train_s` s for FCN-8s here,
because its widest convolutions run on full-resolution maps. (FCN-8s has
{glue:text}`fcn8s_params` parameters, the U-Net {glue:text}`unet_params`.) On larger scenes,
where objects span many stride-8 cells, the gap narrows; chapter 5 compares both with DeepLab on
64x64 scenes.

## Inputs of odd sizes: refuse, pad or resize

Real images rarely come in multiples of $2^D$. We cut validation scenes to an odd size and run the
*same trained U-Net* under the three policies of `segbook.models.unet`:

* **strict** refuses the size, naming the nearest valid sides; the caller crops to the size below
  (here the centre), and the pixels outside the crop get no prediction;
* **pad** mirrors the image at its edges up to the next valid size and crops the logits back:
  every pixel gets a prediction, from mirrored image content rather than zeros;
* **resize** runs the odd size as it is, pooling with floor, and resizes each up-sampled decoder
  map (bilinearly, `size=`) to its skip before concatenating.

We score pixel accuracy in a band of 4 pixels along the border and in the interior separately
(a pixel without prediction counts as an error), the mIoU, and the time of one forward pass:
"""),
    code(r'''
ODD = (SIZE - 5, SIZE - 3)
odd_images, odd_masks = random_crops(val_images[:128], val_masks[:128], ODD, seed=rt.seed + 2)
unet_model = runs["U-Net"]["model"].cpu()
policy_rows = compare_input_policies(unet_model, odd_images, odd_masks, band=4, repeats=3)
pol = {r["policy"]: r for r in policy_rows}
_ = glue_all({"odd_size": f"{ODD[0]}x{ODD[1]}", "strict_size": pol["strict"]["input"],
              "strict_cover": f"{100 * pol['strict']['covered']:.0f}",
              **{f"{name}_border": r["acc border"] for name, r in pol.items()},
              **{f"{name}_inner": r["acc interior"] for name, r in pol.items()},
              **{f"{name}_ms": f"{r['ms']:.0f}" for name, r in pol.items()}})
results_table(policy_rows, floatfmt={"covered": ".3f", "acc border": ".3f", "acc interior": ".3f", "mIoU": ".3f",
                                     "ms": ".0f"})
''', IGNORE),
    code(r'''
claim(pol["pad"]["output"] == pol["resize"]["output"] == f"{ODD[0]}x{ODD[1]}", f"pad/resize output sizes {policy_rows}")
claim(pol["strict"]["covered"] < 0.95, f"strict covers {pol['strict']['covered']:.3f} of the pixels")
info.claim(pol["pad"]["acc border"] > pol["strict"]["acc border"] + 0.05,
           f"pad's border accuracy {pol['pad']['acc border']:.3f} is not clearly above strict's {pol['strict']['acc border']:.3f}")
info.claim(pol["pad"]["acc interior"] > 0.9 and pol["resize"]["acc interior"] > 0.9,
           f"interior accuracy: pad {pol['pad']['acc interior']:.3f}, resize {pol['resize']['acc interior']:.3f}")
''', HIDE),
    md(r"""
On {glue:text}`odd_size` crops, strict mode can only run on the {glue:text}`strict_size` centre and
so labels {glue:text}`strict_cover`% of the pixels. The dropped rows and columns lie along the
border, most of them inside the 4-pixel band, whose accuracy falls to {glue:text}`strict_border`
(interior {glue:text}`strict_inner`, where the crop also removed a few rows). Mirror padding
labels everything (border {glue:text}`pad_border`, interior {glue:text}`pad_inner`), and so does
resizing the decoder maps (border {glue:text}`resize_border`, interior
{glue:text}`resize_inner`). Resizing misaligns each decoder map with its skip by a fraction of a
pixel at every level, which the net never saw in training; padding keeps the geometry the net was
trained on and only invents content beyond the border, by mirroring. Both cost little time here
(strict {glue:text}`strict_ms` ms, pad {glue:text}`pad_ms` ms, resize {glue:text}`resize_ms` ms
per batch on this machine; pad runs on a slightly larger input). Which of pad and resize is ahead
at the border varies with the seed; the claims checked below the table are only that padding beats
cropping at the border and that both stay accurate inside.

## Overlap-tile on images larger than the training scenes

The same-padding U-Net takes any valid size, so an image of 2x2 validation scenes can be run in
one pass. Tiling is still how large images (whole-slide microscopy, satellite images) are
processed when they do not fit into memory. Plain tiling, without overlap, puts each tile's zero
padding at every seam; overlap-tile runs larger windows and keeps only the centre of each
window's output, mirroring the image at its border. We compare the three on the trained U-Net;
both tilings cut the image every {glue:text}`tile_step` pixels (seams that do not coincide with
the borders of the scenes), overlap-tile with {glue:text}`size`-pixel windows, that is
{glue:text}`tile_margin` pixels of extra context on each side:
"""),
    code(r'''
N_TILE_SCENES = P.choose(quick=128, full=256)
big_images, big_masks = tile_scenes(val_images[:N_TILE_SCENES], val_masks[:N_TILE_SCENES], 2, 2)   # 2x2 scenes each
MARGIN = SIZE // 4
STEP = SIZE - 2 * MARGIN          # both tilings cut the image at the same seams, every STEP pixels
tilings = {"one pass": lambda x: unet_model(x),
           f"tiles of {STEP}, no overlap": lambda x: predict_tiled(unet_model, x, tile=STEP, margin=0),
           f"overlap-tile: {SIZE} in, {STEP} kept": lambda x: predict_tiled(unet_model, x, tile=SIZE, margin=MARGIN)}
tile_rows = []
with torch.inference_mode():
    for name, run_tiles in tilings.items():
        t0 = time.perf_counter()
        logits = run_tiles(big_images)
        seconds = time.perf_counter() - t0
        m = SegmentationMetrics(K)
        m.update(logits.argmax(1), big_masks)
        res = m.compute()
        tile_rows.append({"method": name, "output": "x".join(map(str, logits.shape[-2:])), "mIoU": res["miou"],
                          "boundary F1": res["boundary_f1"], "s": seconds})
one, plain, overlap = tile_rows
_ = glue_all({"big_side": big_images.shape[-1], "n_big": big_images.shape[0], "tile_step": STEP, "tile_margin": MARGIN,
              "one_pass_miou": one["mIoU"], "one_pass_bf1": one["boundary F1"],
              "tile_plain_miou": plain["mIoU"], "tile_plain_bf1": plain["boundary F1"],
              "tile_overlap_miou": overlap["mIoU"], "tile_overlap_bf1": overlap["boundary F1"]})
results_table(tile_rows, floatfmt={"mIoU": ".3f", "boundary F1": ".3f", "s": ".2f"})
''', IGNORE),
    code(r'''
claim(all(r["output"] == f"{2 * SIZE}x{2 * SIZE}" for r in tile_rows), f"tiled output sizes {tile_rows}")
info.claim(overlap["mIoU"] > plain["mIoU"] and overlap["boundary F1"] > plain["boundary F1"],
           f"overlap-tile (mIoU {overlap['mIoU']:.3f}, BF1 {overlap['boundary F1']:.3f}) is not above plain tiles "
           f"({plain['mIoU']:.3f}, {plain['boundary F1']:.3f})")
''', HIDE),
    md(r"""
On {glue:text}`n_big` images of {glue:text}`big_side`x{glue:text}`big_side`, plain tiles cost
accuracy (mIoU {glue:text}`tile_plain_miou`, boundary F1 {glue:text}`tile_plain_bf1`, against
{glue:text}`one_pass_miou` and {glue:text}`one_pass_bf1` in one pass): at every seam each tile
sees zero padding where its neighbour's pixels are, and an object cut by a seam is seen in two
pieces. Overlap-tile gives back most of it (mIoU {glue:text}`tile_overlap_miou`, boundary F1
{glue:text}`tile_overlap_bf1`), because every kept pixel has at least {glue:text}`tile_margin`
pixels of real (or mirrored) context. The valid-convolution net of the paper needs no such
choice: its margin is fixed by the architecture ({glue:text}`paper_margin` pixels) and *no*
output pixel ever sees padding.

## Few training images and joint augmentation

U-Net's paper trained on 30 images (ISBI 2012) and relied on augmentation to teach invariances
the data could not show: shifts, rotations, grey-value changes and, above all, **elastic
deformations**. They drew random displacement vectors on a coarse 3x3 grid (standard deviation 10
pixels) and interpolated them bicubically to a smooth per-pixel field.
`SegmentationAugment(..., elastic=(grid, std))` does the same, and applies one draw of every
geometric operation to the image (bilinear) and its mask (nearest neighbour, so a label stays a
label). Our stand-in for the grey-value variations is a colour jitter (brightness, contrast,
saturation and hue) on the image alone: each scene draws its colours at random, so a net that sees
a dozen scenes could tie a class to the colours it happened to see. We use flips (both axes),
elastic deformation and colour jitter; rotations by a few degrees are available
(`rotate=...`) but did not help in our calibration runs at this budget: on a 32-pixel scene they
blur thin strokes and bring in unlabelled corners. A few augmented versions of one scene:
"""),
    code(r'''
AUG = dict(hflip=True, vflip=True, rotate=0, elastic=(3, 1.0), scale=None, color_jitter=(0.3, 0.3, 0.3, 0.5))
augment = SegmentationAugment(SIZE, **AUG)
torch.manual_seed(rt.seed)
image0, mask0 = val_images[0], val_masks[0]
samples = [augment(image0, mask0) for _ in range(3)]
fig = show_segmentation(torch.stack([image0] + [s[0] for s in samples]), torch.stack([mask0] + [s[1] for s in samples]),
                        n=4, panel_size=1.3)
plt.show()
''', IGNORE, figure=({"caption": "One scene (first row) and three augmentations: flips and an elastic deformation move image "
                                 "and mask together; the colour jitter changes the image only.",
                      "name": "fig-unet-augment"},
                     {"alt": "Four rows of image and mask pairs: the original 32 by 32 scene and three flipped, smoothly "
                             "deformed and recoloured copies whose masks follow the deformed shapes."})),
    code(r'''
labels_kept = all(set(m.unique().tolist()) <= set(mask0.unique().tolist()) | {255} for _, m in samples)
claim(labels_kept, "an augmented mask holds a label that the original did not")
''', HIDE),
    md(r"""
The first row is the scene, the others augmented draws: the deformed mask follows the deformed
shapes, and no new label appears.
We now train the same U-Net on only {glue:text}`n_few` scenes, once on the scenes as they are and
once with a fresh augmentation of each scene at every draw, with the same number of steps, and
evaluate both on the validation scenes:
"""),
    code(r'''
N_FEW = P.choose(quick=16, full=32)
FEW_STEPS = P.choose(quick=600, full=1200)
FEW_BATCH = 8
few_images, few_masks = take(train_set, N_FEW)             # the first few training scenes
few_weights = class_balance_weights(few_masks, K)
repeats = FEW_STEPS * FEW_BATCH // N_FEW                   # one epoch = FEW_STEPS steps
few = {}
for name, transform in (("no augmentation", None), ("joint augmentation", SegmentationAugment(SIZE, **AUG))):
    pairs = AugmentedPairs(few_images, few_masks, transform=transform, repeats=repeats)
    torch.manual_seed(rt.seed)
    model = unet(num_classes=K, depth=DEPTH, base_width=WIDTH)
    loader = make_loader(pairs, FEW_BATCH, shuffle=True, seed=rt.seed, drop_last=True)
    hist = fit(model, loader, task="segmentation", num_classes=K, epochs=1, lr=LR, class_weights=few_weights,
               device=rt.device, seed=rt.seed, desc=name, progress=False, log=False)
    few[name] = {"hist": hist, "val": evaluate(model, val_loader, task="segmentation", num_classes=K, device=rt.device)}
''', IGNORE),
    code(r'''
def last_loss(hist, n=50):
    tail = hist.step_loss[-n:]
    return sum(tail) / len(tail)

few_rows = [{"training": name, "scenes": N_FEW, "final train loss": last_loss(r["hist"]), "val mIoU": r["val"]["miou"],
             "val boundary F1": r["val"]["boundary_f1"], "train (s)": r["hist"].total_seconds} for name, r in few.items()]
noaug, aug = few["no augmentation"]["val"], few["joint augmentation"]["val"]
_ = glue_all({"n_few": N_FEW, "few_steps": FEW_STEPS, "noaug_miou": noaug["miou"], "aug_miou": aug["miou"],
              "noaug_bf1": noaug["boundary_f1"], "aug_bf1": aug["boundary_f1"],
              "noaug_loss": last_loss(few["no augmentation"]["hist"]), "aug_loss": last_loss(few["joint augmentation"]["hist"])})
results_table(few_rows, floatfmt={"final train loss": ".3f", "val mIoU": ".3f", "val boundary F1": ".3f", "train (s)": ".0f"})
''', IGNORE),
    code(r'''
info.claim(aug["miou"] > noaug["miou"], f"augmentation mIoU {aug['miou']:.3f} is not above none {noaug['miou']:.3f}")
info.claim(aug["boundary_f1"] > noaug["boundary_f1"] + 0.02,
           f"augmentation boundary F1 {aug['boundary_f1']:.3f} is not above none {noaug['boundary_f1']:.3f}")
info.claim(last_loss(few["no augmentation"]["hist"]) < last_loss(few["joint augmentation"]["hist"]),
           "without augmentation the training loss is not the lower one (no sign of memorising)")
''', HIDE),
    md(r"""
Without augmentation the net fits its {glue:text}`n_few` scenes (training loss over the last
steps {glue:text}`noaug_loss`) and reaches a validation mIoU of {glue:text}`noaug_miou` (boundary
F1 {glue:text}`noaug_bf1`). With flips, elastic deformations and colour jitter of the same scenes the
training loss stays higher ({glue:text}`aug_loss`), since every draw is a new variant, and the
validation mIoU rises to {glue:text}`aug_miou` (boundary F1 {glue:text}`aug_bf1`): the variants
teach that a mirrored or slightly bent triangle in another colour is still a triangle, which
{glue:text}`n_few` scenes cannot show. The gain is modest, and in mIoU its size varies with the
seed (the checks below hold for seeds 0, 1 and 2, the mIoU one with the least room); boundary F1
gains more, and consistently. Both nets are far below the U-Net trained on thousands of fresh
scenes above: augmentation widens what a few images teach, it does not replace data. (In our
calibration runs the colour jitter mattered most; flips, rotations and deformations without it did
not beat no augmentation at this budget, since they make the training task harder and this small
net had few steps to learn it.)
On our scenes the classes are defined by shape, and a deformation that bends a line into a curve
or a square into a blob could in principle change the class; we keep the displacements small (a
standard deviation of 1 pixel on a 32-pixel scene), as the paper kept its 10 pixels small against
572-pixel tiles.

## Summary

* U-Net: an encoder that halves sizes and doubles channels, a decoder that mirrors it, and skips
  that **concatenate** features, where FCN **adds** class scores. On our 32-pixel scenes, with the
  same data and budget, it beat FCN-8s: mIoU {glue:text}`unet_miou` vs {glue:text}`fcn8s_miou`,
  boundary F1 {glue:text}`unet_bf1` vs {glue:text}`fcn8s_bf1`; FCN-8s sits near what a perfect
  stride-8 score map allows ({glue:text}`ceiling8_miou`).
* Sizes: with $D$ poolings a same-padding U-Net takes multiples of $2^D$; 7 -> 3 -> 6 is what
  happens otherwise, and torch only tells you at the concatenation. The paper's valid convolutions
  take sizes $2^D k - 4$ (large enough) and shrink them by a fixed margin:
  {glue:text}`paper_in` -> {glue:text}`paper_out`. Plan sizes with `segbook.sizes` and let the
  model check its input.
* Odd sizes: cropping loses the border, mirror padding keeps it and the trained geometry,
  resizing the decoder maps works too but misaligns skips slightly. Overlap-tile with mirrored
  borders processes images of any size without seams.
* Few images: augmentation (joint flips and elastic deformation, and colour jitter) raised the
  mIoU from {glue:text}`noaug_miou` to {glue:text}`aug_miou` and the boundary F1 from
  {glue:text}`noaug_bf1` to {glue:text}`aug_bf1`.
"""),
    code(r'''
print(info.unchecked_report())
''', HIDE_INPUT + IGNORE),
]


def build() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                   "language_info": {"name": "python"}}
    for kind, text, tags, figure in CELLS:
        cell = nbformat.v4.new_markdown_cell(text) if kind == "markdown" else nbformat.v4.new_code_cell(text)
        if tags:
            cell.metadata["tags"] = list(tags)
        if figure:
            cell.metadata["mystnb"] = {"figure": figure[0], "image": figure[1]}
        nb.cells.append(cell)
    return nb


if __name__ == "__main__":
    nbformat.write(build(), TARGET)
    print(f"wrote {TARGET} ({len(CELLS)} cells)", file=sys.stderr)
