"""Train models a few SGD steps through ``fit`` in channels_last and in NCHW, and compare weights.

Run as a script (``tests/test_layout.py`` does, in fresh processes with chosen thread counts and
oneDNN ISAs, since ``ONEDNN_MAX_CPU_ISA`` is read once per process)::

    python tests/layout_equivalence.py minimal      # Conv2d(c, 8, 1, stride=2) nets, c = 1..16
    python tests/layout_equivalence.py chapters     # every chapter model's smallest configuration

Prints one JSON object per case: ``{"case", "max_abs_diff", "float32_floor", "max_abs_weight"}``. A crash (heap
corruption) or a hang shows up in the caller as a non-zero exit code or a time-out.
"""
from __future__ import annotations

import json
import os
import sys

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from segbook.train import fit  # noqa: E402

STEPS = 3


def _batches(task: str, n_classes: int, size: int, in_ch: int = 3, batch: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(STEPS):
        x = torch.rand(batch, in_ch, size, size, generator=g)
        if task == "classification":
            y = torch.randint(0, n_classes, (batch,), generator=g)
        else:
            y = torch.randint(0, n_classes, (batch, size, size), generator=g)
        out.append((x, y))
    return out


def _train(build, task, n_classes, size, in_ch, channels_last, dtype=torch.float32):
    torch.manual_seed(0)
    model = build().to(dtype)
    batches = [(x.to(dtype), y) for x, y in _batches(task, n_classes, size, in_ch)]
    fit(model, batches, task=task, num_classes=n_classes, epochs=1, optimizer="sgd", lr=0.01, momentum=0.9,
        weight_decay=0.0, schedule=None, device="cpu", channels_last=channels_last, seed=0, progress=False,
        log=False)
    return {k: v.detach().double() for k, v in model.state_dict().items() if v.is_floating_point()}


def _max_diff(a, b):
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def compare(name, build, task="classification", n_classes=4, size=16, in_ch=3):
    """Print the channels_last-vs-NCHW weight difference and the float32 noise floor (NCHW float32
    vs NCHW float64): a layout bug is far above the floor, rounding is at or near it."""
    a = _train(build, task, n_classes, size, in_ch, channels_last=True)
    b = _train(build, task, n_classes, size, in_ch, channels_last=False)
    ref = _train(build, task, n_classes, size, in_ch, channels_last=False, dtype=torch.float64)
    print(json.dumps({"case": name, "max_abs_diff": _max_diff(a, b), "float32_floor": _max_diff(b, ref),
                      "max_abs_weight": max(float(v.abs().max()) for v in b.values())}), flush=True)


class StridedOneByOne(nn.Module):
    """conv3x3(3 -> c) - ReLU - conv1x1(c -> 8, stride 2) - BN - ReLU - pool - linear: the bug's shape."""

    def __init__(self, c: int):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.down = nn.Conv2d(c, 8, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = torch.relu(self.bn(self.down(x)))
        return self.head(x.mean((2, 3)))


def minimal():
    for c in range(1, 17):
        compare(f"conv1x1-stride2-cin{c}", lambda c=c: StridedOneByOne(c))


def chapters():
    from segbook.experiments.deformable import TinyConvNet
    from segbook.models import (cifar_resnet, deeplabv3, deeplabv3plus, densenet_bc, efficientnet_small, fcn8s,
                                fcn16s, fcn32s, googlenet_small, unet)

    cases = [
        ("ch1 plain-8 w4", lambda: cifar_resnet(depth=8, width=4, shortcuts=False, num_classes=4), {}),
        ("ch1 ResNet-8 w4", lambda: cifar_resnet(depth=8, width=4, num_classes=4), {}),
        ("ch1 ResNet-8 w8 (chapter width)", lambda: cifar_resnet(depth=8, width=8, num_classes=4), {}),
        ("ch1 SE-ResNet-8 w8", lambda: cifar_resnet(depth=8, width=8, se_reduction=16, num_classes=4), {}),
        ("ch1 GoogLeNet w0.25 (aux heads)", lambda: googlenet_small(num_classes=4, width_mult=0.25, dropout=0.0,
                                                                     aux_dropout=0.0), {"size": 32}),
        ("ch1 DenseNet-BC-10", lambda: densenet_bc(depth=10, growth_rate=4, num_classes=4), {}),
        ("ch1 EfficientNet-s phi=0", lambda: efficientnet_small(phi=0, num_classes=4, base_resolution=16), {}),
        ("ch1 deformable TinyConvNet", lambda: TinyConvNet(in_channels=1, channels=8, num_classes=2, deformable=True),
         {"n_classes": 2, "in_ch": 1}),
        ("ch2 FCN-32s w8", lambda: fcn32s(num_classes=4, width=8), {"task": "segmentation", "size": 32}),
        ("ch2 FCN-16s w8", lambda: fcn16s(num_classes=4, width=8), {"task": "segmentation", "size": 32}),
        ("ch2/4/5 FCN-8s w8", lambda: fcn8s(num_classes=4, width=8), {"task": "segmentation", "size": 32}),
        ("ch4 U-Net depth 2 w4", lambda: unet(num_classes=4, depth=2, width=4), {"task": "segmentation"}),
        ("ch5 DeepLab v3 OS16 w4", lambda: deeplabv3(num_classes=4, width=4, output_stride=16, dropout=0.0),
         {"task": "segmentation", "size": 32}),
        ("ch5 DeepLab v3+ OS8 w8", lambda: deeplabv3plus(num_classes=4, width=8, output_stride=8, dropout=0.0,
                                                         reduced_channels=8), {"task": "segmentation", "size": 32}),
    ]
    for name, build, kw in cases:
        compare(name, build, **kw)


if __name__ == "__main__":
    torch.use_deterministic_algorithms(False)
    {"minimal": minimal, "chapters": chapters}[sys.argv[1]]()
