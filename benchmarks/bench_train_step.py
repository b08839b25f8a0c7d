"""Training-step speed: memory format and data path, as ratios against a reference.

    python benchmarks/bench_train_step.py            # CPU (or CUDA when present)
    python benchmarks/bench_train_step.py --size 128 --batch 32

Prints a table of median milliseconds per step (after warm-up) and the ratio to the reference
(contiguous NCHW, batches from a DataLoader over ShapesSegmentation). It is a benchmark, not a
test: numbers depend on the machine and its load, so nothing asserts on them.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from segbook.execution import resolve_execution
from segbook.data import ShapesSegmentation, make_loader
from segbook.nn import ConvBNAct
from segbook.runtime import pick_device, seed_everything
from segbook.viz import results_table


class SmallSegmenter(nn.Module):
    """A stride-2 dilated conv net whose logits are resized to the input (``size=x.shape[-2:]``)."""

    def __init__(self, num_classes: int = 6, width: int = 32) -> None:
        super().__init__()
        self.body = nn.Sequential(
            ConvBNAct(3, width, 3), ConvBNAct(width, width, 3, stride=2), ConvBNAct(width, 2 * width, 3, dilation=2),
            ConvBNAct(2 * width, 2 * width, 3, dilation=4), nn.Conv2d(2 * width, num_classes, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.body(x), size=x.shape[-2:], mode="bilinear", align_corners=False)


def small_segmenter(num_classes: int = 6, width: int = 32) -> nn.Module:
    return SmallSegmenter(num_classes, width)


def training_step(model, opt, ex, scaler, x, y, *, channels_last: bool) -> None:
    """One optimiser step as ``segbook.train.fit`` takes it: move, (channels_last), autocast, scaled backward."""
    x, y = x.to(ex.device, non_blocking=True), y.to(ex.device, non_blocking=True)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with ex.autocast():
        loss = F.cross_entropy(model(x).float(), y)
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()


def time_steps(model, batches, device, channels_last: bool, amp: bool, warmup: int, repeats: int) -> float:
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    # The same precision choice as segbook.train: bf16 on capability >= 8.0, else fp16 with loss scaling.
    ex = resolve_execution(model, device=device, amp=amp, channels_last=channels_last)
    scaler = torch.amp.GradScaler("cuda", enabled=ex.grad_scaler)
    times = []
    for i, (x, y) in enumerate(batches(warmup + repeats)):
        start = time.perf_counter()
        training_step(model, opt, ex, scaler, x, y, channels_last=channels_last)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    seed_everything(0)
    device = pick_device()
    data = ShapesSegmentation(args.batch * 8, size=args.size, seed=0)
    loader = make_loader(data, args.batch, shuffle=True)
    images, masks = data.tensors()

    def from_loader(n):
        it = iter(loader)
        for _ in range(n):
            try:
                yield next(it)
            except StopIteration:
                it = iter(loader)
                yield next(it)

    def from_tensors(n):
        for i in range(n):
            j = (i * args.batch) % (len(data) - args.batch + 1)
            yield images[j:j + args.batch], masks[j:j + args.batch]

    rows = []
    configs = [("NCHW, DataLoader (reference)", from_loader, False, False),
               ("NCHW, pre-stacked tensors", from_tensors, False, False),
               ("channels_last, DataLoader", from_loader, True, False)]
    if device.type == "cuda":
        configs.append(("channels_last + AMP, DataLoader", from_loader, True, True))
    reference = None
    for name, batches, cl, amp in configs:
        seed_everything(0)
        ms = time_steps(small_segmenter(), batches, device, cl, amp, args.warmup, args.repeats)
        reference = reference or ms
        rows.append({"config": name, "ms/step (median)": ms, "ratio to reference": ms / reference})
    print(f"device={device} threads={torch.get_num_threads()} size={args.size} batch={args.batch}")
    print(results_table(rows, floatfmt={"ms/step (median)": ".1f", "ratio to reference": ".2f"}))


if __name__ == "__main__":
    main()
