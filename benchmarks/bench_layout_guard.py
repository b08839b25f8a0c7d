"""What the CPU layout guard (segbook/layout.py) costs: training-step time of chapter 5's DeepLabs.

    python benchmarks/bench_layout_guard.py                 # one thread, as the chapters train
    python benchmarks/bench_layout_guard.py --threads 2

Three configurations of one model, timed in turns (round-robin, so drifts in machine load hit all
alike), median milliseconds per SGD step after warm-up, and the ratio to NCHW:

* ``NCHW``: contiguous everywhere (what the guard falls back to for its convs);
* ``channels_last, guarded``: the default of ``fit(channels_last=True)`` on the CPU;
* ``channels_last, unguarded``: every conv NHWC (``SEGBOOK_LAYOUT_GUARD=0``). On oneDNN's AVX2
  kernels this configuration is the one that corrupts the heap; time it only on the native ISA.

A benchmark, not a test: numbers depend on the machine and its load, so nothing asserts on them.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F

from segbook.layout import guarded_convs, unguard_cpu_layout
from segbook.models import deeplabv3, deeplabv3plus
from segbook.execution import resolve_execution


def step_timer(build, channels_last: bool, guard: bool, batch, size):
    torch.manual_seed(0)
    model = build()
    os.environ["SEGBOOK_LAYOUT_GUARD"] = "1" if guard else "0"
    ex = resolve_execution(model, device="cpu", channels_last=channels_last)
    ex.prepare(model)
    if not guard:
        unguard_cpu_layout(model)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = ex.images(torch.rand(batch, 3, size, size))
    y = torch.randint(0, 6, (batch, size, size))

    def step() -> float:
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return time.perf_counter() - t0

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "native")
    models = {
        "DeepLab v3+ OS8 (width 8)": lambda: deeplabv3plus(num_classes=6, width=8, output_stride=8, reduced_channels=8),
        "DeepLab v3 OS16 (width 8)": lambda: deeplabv3(num_classes=6, width=8, output_stride=16),
    }
    configs = [("NCHW", False, True), ("channels_last, guarded", True, True)]
    if isa.upper() != "AVX2":
        configs.append(("channels_last, unguarded", True, False))
    print(f"threads={args.threads} batch={args.batch} size={args.size} oneDNN ISA={isa} "
          f"torch={torch.__version__} capability={torch.backends.cpu.get_cpu_capability()}")
    print("| model | guarded convs | config | ms / step (median) | ratio to NCHW |")
    print("|---|---|---|---|---|")
    for name, build in models.items():
        n_guarded = len(guarded_convs(build()))
        steps = {label: step_timer(build, cl, g, args.batch, args.size) for label, cl, g in configs}
        times = {label: [] for label in steps}
        for r in range(args.warmup + args.repeats):
            for label, step in steps.items():
                t = step()
                if r >= args.warmup:
                    times[label].append(t)
        ref = statistics.median(times["NCHW"])
        for label in steps:
            med = statistics.median(times[label])
            print(f"| {name} | {n_guarded} | {label} | {1000 * med:.1f} | {med / ref:.3f} |")
    os.environ.pop("SEGBOOK_LAYOUT_GUARD", None)


if __name__ == "__main__":
    main()
