"""What one training step of each of chapter 1's networks costs, as ratios to ResNet-32.

    python benchmarks/bench_ch1_steps.py            # one thread, as chapter 1's fit_many workers run
    python benchmarks/bench_ch1_steps.py --threads 2 --steps 20

For every net chapter 1 trains (quick profile: 16x16 images, batch 64, channels_last, AdamW) one
full training step (forward, cross-entropy, backward, optimiser step) is timed on random data,
the nets in turns (round-robin, so drifts in machine load hit all alike), and the median over
the rounds after warm-up is printed with its ratio to ``cifar_resnet(depth=32, width=8)``, the
reference. The EfficientNets are the compound-scaling experiment's five nets, each at its own
resolution (:func:`segbook.experiments.efficientnet_scaling.efficientnet_scaling_controls`). A benchmark,
not a test: numbers depend on the machine and its load, so nothing asserts on them.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from segbook.experiments.efficientnet_scaling import efficientnet_scaling_controls
from segbook.models import cifar_resnet, googlenet_small, without_aux_heads
from segbook.viz import results_table


def _step_fn(model: torch.nn.Module, res: int, batch: int):
    model = model.train().to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, res, res).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    opt = torch.optim.AdamW(model.parameters(), 1e-3)

    def step():
        out = model(x)
        loss = sum((0.3 if i else 1.0) * F.cross_entropy(o, y)
                   for i, o in enumerate(out if isinstance(out, tuple) else (out,)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=12, help="timed rounds per net (after 3 warm-up steps)")
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    nets = {"ResNet-32 (reference)": (cifar_resnet(depth=32, width=8), 16),
            "plain-32": (cifar_resnet(depth=32, width=8, shortcuts=False), 16),
            "SE-ResNet-32": (cifar_resnet(depth=32, width=8, se_reduction=16), 16),
            "GoogLeNet, aux heads": (googlenet_small(num_classes=10, width_mult=0.125), 16),
            "GoogLeNet, no aux heads": (without_aux_heads(googlenet_small(num_classes=10, width_mult=0.125)), 16)}
    for r in efficientnet_scaling_controls(1, base_resolution=16):
        nets[f"EfficientNet-s {r['scaling']}"] = (r["build"](), r["resolution"])
    steps = {name: _step_fn(m, res, args.batch) for name, (m, res) in nets.items()}
    for step in steps.values():
        for _ in range(3):
            step()
    times = {name: [] for name in steps}
    for _ in range(args.steps):
        for name, step in steps.items():
            t0 = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - t0)
    ref = statistics.median(times["ResNet-32 (reference)"])
    rows = [{"net": name, "input": f"{nets[name][1]}x{nets[name][1]}",
             "ms per step (median)": 1000 * statistics.median(t),
             "vs ResNet-32": statistics.median(t) / ref} for name, t in times.items()]
    print(results_table(rows, floatfmt={"ms per step (median)": ".1f", "vs ResNet-32": ".2f"},
                        title=f"batch {args.batch}, {args.threads} thread(s), channels_last, "
                              f"{torch.backends.cpu.get_cpu_capability()}").to_markdown())


if __name__ == "__main__":
    main()
