"""The book's benchmark table: segbook against what readers would otherwise use, on the same work.

    OMP_NUM_THREADS=2 python benchmarks/run.py --quick             # CPU, under 10 minutes on 2 cores
    OMP_NUM_THREADS=2 python benchmarks/run.py --quick --chapters  # + every chapter (~15 minutes more)
    python benchmarks/run.py --sections models --output /tmp/models.md

Sections (each a Markdown table; all are written to ``--output``, default ``benchmarks/RESULTS.md``):

* ``models``: segbook's ImageNet ResNet-18/50 (``resnet_classifier``, ``benchmarks/models.py``) and DeepLab v3
  configured as torchvision's ``deeplabv3_resnet50`` (ResNet-50, output stride 8, ASPP rates 12/24/36,
  256 channels, dropout 0.5, no auxiliary head) against torchvision: one training step (forward,
  cross-entropy, backward, SGD step) and one inference pass (``eval`` + ``inference_mode``), timed in
  turns in one process (:func:`harness.time_interleaved`), as the ratio segbook / torchvision. The
  parameter counts are compared, and torchvision's weights are copied into segbook's model to show
  that both compute the same function (largest absolute difference of the eval-mode outputs).
* ``crf``: the dense CRF backends (pydensecrf, segbook's permutohedral ``lattice`` and, at 64x64 only,
  the O(N^2) ``exact`` one) on synthetic 21-class scenes, 10 mean-field iterations: seconds per image
  and label agreement (``benchmarks/bench_crf.py`` has more options).
* ``layouts``: channels_last against contiguous NCHW, and a DataLoader against pre-stacked tensors,
  for a U-Net and a CIFAR ResNet-20 training step (AMP too on CUDA), as ratios to contiguous + loader.
* ``chapters`` (only with ``--chapters``): every chapter notebook executed in a fresh process in the
  quick profile without writing it (as ``tools/execute_chapters.py --no-write``): wall time and the
  peak resident memory of the largest process (the kernel).

The numbers depend on the machine and on whatever else runs on it: the header records the load
average before and after, and nothing asserts on them. The timing and ratio code lives in
``benchmarks/harness.py`` and is unit-tested with a fake clock (``tests/test_benchmarks.py``).
"""
from __future__ import annotations

import argparse
import datetime
import os
import pathlib
import platform
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(ROOT))

from bench_train_step import training_step  # noqa: E402
from harness import markdown_table, paired_ratio, ratio, time_interleaved  # noqa: E402
from segbook.runtime import pick_device  # noqa: E402

SECTIONS = ("models", "crf", "layouts", "chapters")


# ----------------------------------------------------------------------------------------------
# Machine
# ----------------------------------------------------------------------------------------------
def cpu_name() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_lines() -> list[str]:
    import torchvision

    try:
        from importlib.metadata import version
        crf = f"pydensecrf2 {version('pydensecrf2')}"
    except Exception:  # noqa: BLE001 - optional dependency
        crf = "pydensecrf not installed"
    cuda = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
    mem = ""
    try:
        kb = int(next(ln for ln in pathlib.Path("/proc/meminfo").read_text().splitlines()
                      if ln.startswith("MemTotal")).split()[1])
        mem = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    return [
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- machine: {cpu_name()}, {os.cpu_count()} CPUs{mem}, {platform.system()} {platform.release()}; GPU: {cuda}",
        f"- threads: torch intra-op {torch.get_num_threads()} (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})",
        f"- versions: Python {platform.python_version()}, torch {torch.__version__}, torchvision {torchvision.__version__}, {crf}",
    ]


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


# ----------------------------------------------------------------------------------------------
# Models versus torchvision
# ----------------------------------------------------------------------------------------------
def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def copy_weights(source: nn.Module, target: nn.Module) -> None:
    """Copy ``source``'s state into ``target`` entry by entry in registration order (shapes must agree)."""
    src, dst = list(source.state_dict().values()), target.state_dict()
    if len(src) != len(dst):
        raise ValueError(f"state dicts differ in length: {len(src)} vs {len(dst)}")
    for (name, t), s in zip(dst.items(), src):
        if t.shape != s.shape:
            raise ValueError(f"{name}: shape {tuple(t.shape)} vs {tuple(s.shape)}")
    target.load_state_dict(dict(zip(dst.keys(), src)))


def _logits(out):
    return out["out"] if isinstance(out, dict) else out


def model_pairs(quick: bool):
    """(name, segbook builder, torchvision builder, input shape, number of classes, dense targets)."""
    import torchvision
    from torchvision.models.segmentation import deeplabv3_resnet50

    from models import resnet_classifier  # benchmarks/models.py: only the benchmarks need it

    from segbook.models import deeplabv3

    batch = 2 if quick else 8
    seg = 128 if quick else 256
    return [
        ("ResNet-18", lambda: resnet_classifier(depth=18), lambda: torchvision.models.resnet18(),
         (batch, 3, 224, 224), 1000, False),
        ("ResNet-50", lambda: resnet_classifier(depth=50), lambda: torchvision.models.resnet50(),
         (batch, 3, 224, 224), 1000, False),
        ("DeepLab v3 R-50 OS8", lambda: deeplabv3(num_classes=21, depth=50, width=64, output_stride=8,
                                                  stem="imagenet", aspp_channels=256, dropout=0.5),
         lambda: deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=21, aux_loss=False),
         (batch, 3, seg, seg), 21, True),
    ]


def bench_models(quick: bool, device: torch.device, warmup: int, repeats: int, threads: list[int]) -> list[dict]:
    """Rows of the models table, for each intra-op thread count in ``threads`` (CPU only; 0: leave as is)."""
    rows = []
    before = torch.get_num_threads()
    for n in threads if device.type == "cpu" else [0]:
        if n:
            torch.set_num_threads(n)
        try:
            rows += _bench_models(quick, device, warmup, repeats)
        finally:
            torch.set_num_threads(before)
    return rows


def _bench_models(quick: bool, device: torch.device, warmup: int, repeats: int) -> list[dict]:
    rows = []
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    for name, make_ours, make_theirs, shape, classes, dense in model_pairs(quick):
        torch.manual_seed(0)
        ours, theirs = make_ours().to(device), make_theirs().to(device)
        params = (n_params(ours), n_params(theirs))
        copy_weights(theirs, ours)
        gen = torch.Generator().manual_seed(0)
        x = torch.rand(shape, generator=gen).to(device)
        y_shape = (shape[0], *shape[2:]) if dense else (shape[0],)
        y = torch.randint(0, classes, y_shape, generator=gen).to(device)
        ours.eval(), theirs.eval()
        with torch.inference_mode():
            diff = (_logits(ours(x)) - _logits(theirs(x))).abs().max().item()

        def infer(model):
            def call():
                with torch.inference_mode():
                    _logits(model(x))
            return call

        def train(model):
            opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

            def call():
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(_logits(model(x)), y).backward()
                opt.step()
            return call

        for mode in ("inference", "train step"):
            for m in (ours, theirs):
                m.train(mode == "train step")
            fns = {"segbook": (train if mode == "train step" else infer)(ours),
                   "torchvision": (train if mode == "train step" else infer)(theirs)}
            t = time_interleaved(fns, warmup=warmup, repeats=repeats, sync=sync)
            rows.append({
                "model": name, "work": mode, "input": "x".join(map(str, shape)),
                "threads": torch.get_num_threads() if device.type == "cpu" else "-",
                "segbook s": f"{t['segbook'].median:.3f}", "torchvision s": f"{t['torchvision'].median:.3f}",
                "ratio": f"{ratio(t['segbook'], t['torchvision']):.3f}",
                "paired ratio": f"{paired_ratio(t['segbook'], t['torchvision']):.3f}",
                "spread segbook / torchvision": f"{t['segbook'].spread:.2f} / {t['torchvision'].spread:.2f}",
                "params segbook / torchvision": f"{params[0]:,} / {params[1]:,}",
                "max abs diff (same weights)": f"{diff:.1e}",
            })
            print(markdown_table(rows[-1:]).splitlines()[-1], flush=True)
        del ours, theirs
    return rows


# ----------------------------------------------------------------------------------------------
# Dense CRF backends
# ----------------------------------------------------------------------------------------------
def bench_crf(quick: bool, device: torch.device) -> list[dict]:
    from bench_crf import make_inputs, run_backend

    from segbook.crf import pydensecrf_available

    images, repeats = (2, 1) if quick else (3, 2)
    rows = []
    for size in (64, 128, 256):
        inputs = make_inputs("scenes", size, images, 21, seed=0)
        runs = ([("pydensecrf", "cpu")] if pydensecrf_available() else []) + ([("exact", "cpu")] if size <= 64 else [])
        runs.append(("lattice", "cpu"))
        if device.type == "cuda":
            runs += [("lattice", "cuda")] + ([("exact", "cuda")] if size <= 64 else [])
        results = {run: run_backend(*run, inputs, repeats, 10) for run in runs}
        ref, exact = results.get(("pydensecrf", "cpu")), results.get(("exact", "cpu"))

        def agree(a, b):
            return float(np.mean([(p == q).mean() for p, q in zip(a, b)]))

        for (backend, dev), (seconds, labels) in results.items():
            rows.append({
                "size": f"{size}x{size}", "backend": backend, "device": dev, "s / image": f"{seconds:.4f}",
                "x pydensecrf": f"{seconds / ref[0]:.2f}" if ref else "-",
                "agrees with pydensecrf": f"{100 * agree(labels, ref[1]):.2f}%" if ref else "-",
                "agrees with exact": f"{100 * agree(labels, exact[1]):.2f}%" if exact else "-",
            })
            print(markdown_table(rows[-1:]).splitlines()[-1], flush=True)
    return rows


# ----------------------------------------------------------------------------------------------
# Layouts and data path
# ----------------------------------------------------------------------------------------------
def _cycle(loader):
    while True:
        yield from loader


def bench_layouts(quick: bool, device: torch.device, warmup: int, repeats: int) -> list[dict]:
    from torch.utils.data import TensorDataset

    from segbook.data import ShapesSegmentation, make_loader
    from segbook.models import resnet20, unet
    from segbook.execution import resolve_execution

    batch = 8 if quick else 32
    shapes = ShapesSegmentation(batch * 4, size=64, seed=0)
    gen = torch.Generator().manual_seed(0)
    cifar_x = torch.rand(batch * 4, 3, 32, 32, generator=gen)
    cifar_y = torch.randint(0, 10, (batch * 4,), generator=gen)
    workloads = [
        ("U-Net (base width 16, depth 4)", lambda: unet(num_classes=6), shapes, shapes.tensors(), "64x64"),
        ("ResNet-20 (CIFAR)", lambda: resnet20(num_classes=10), TensorDataset(cifar_x, cifar_y),
         (cifar_x, cifar_y), "32x32"),
    ]
    amp_options = (False, True) if device.type == "cuda" else (False,)
    rows = []
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    for name, make, dataset, (all_x, all_y), size in workloads:
        fns = {}
        for amp in amp_options:
            for channels_last in (False, True):
                for source in ("DataLoader", "pre-stacked"):
                    torch.manual_seed(0)
                    model = make().to(device)
                    if channels_last:
                        model = model.to(memory_format=torch.channels_last)
                    opt = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)
                    ex = resolve_execution(model, device=device, amp=amp, channels_last=channels_last)
                    scaler = torch.amp.GradScaler("cuda", enabled=ex.grad_scaler)
                    if source == "DataLoader":
                        batches = _cycle(make_loader(dataset, batch, shuffle=True, seed=0, drop_last=True))
                    else:
                        batches = ((all_x[i:i + batch], all_y[i:i + batch])
                                   for i in _cycle_starts(len(all_x), batch))

                    def step(model=model, opt=opt, ex=ex, scaler=scaler, batches=batches, channels_last=channels_last):
                        training_step(model, opt, ex, scaler, *next(batches), channels_last=channels_last)

                    label = ("AMP, " if amp else "") + ("channels_last" if channels_last else "contiguous") + f", {source}"
                    fns[label] = step
        t = time_interleaved(fns, warmup=warmup, repeats=repeats, sync=sync)
        reference = t["contiguous, DataLoader"]
        for label, timing in t.items():
            rows.append({"model": name, "input": f"{batch}x3x{size}", "config": label,
                         "ms / step": f"{1000 * timing.median:.1f}",
                         "ratio to contiguous + DataLoader": f"{ratio(timing, reference):.3f}",
                         "paired ratio": f"{paired_ratio(timing, reference):.3f}"})
            print(markdown_table(rows[-1:]).splitlines()[-1], flush=True)
    return rows


def _cycle_starts(n: int, batch: int):
    while True:
        yield from range(0, n - batch + 1, batch)


# ----------------------------------------------------------------------------------------------
# Chapters
# ----------------------------------------------------------------------------------------------
_PEAK_RSS = (
    "import resource, subprocess, sys, time\n"
    "t = time.perf_counter(); rc = subprocess.call(sys.argv[1:]); t = time.perf_counter() - t\n"
    "r = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "print('BENCH', rc, t, r.ru_maxrss, r.ru_utime + r.ru_stime)\n"
)


def run_with_peak_rss(cmd: list[str], env: dict | None = None) -> tuple[int, float, float, float]:
    """Run ``cmd`` under a small wrapper process; return (exit status, wall seconds, peak RSS in MiB, CPU seconds).

    The peak is ``ru_maxrss`` of the wrapper's children: the resident size of the largest process
    among the command and the descendants it waited for (for a notebook, the kernel). CPU seconds
    (user + system, summed over those processes) depend much less on other jobs than the wall time
    does: with one thread they approximate the wall time on an idle machine.
    """
    out = subprocess.run([sys.executable, "-c", _PEAK_RSS, *cmd], capture_output=True, text=True, env=env)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCH ")), None)
    if line is None:
        raise RuntimeError(f"the wrapper printed no result: {out.stderr[-2000:]}")
    _, rc, seconds, kib, cpu = line.split()
    return int(rc), float(seconds), int(kib) / 1024, float(cpu)


CHAPTER_BUDGET_S = {"05_deeplab_crf.ipynb": 240}   # its issue's limit; every other chapter: 180 s


def chapter_budget_s(name: str) -> int:
    """The run-time budget of a chapter notebook on the 2-core CPU, in seconds."""
    return CHAPTER_BUDGET_S.get(name, 180)


def bench_chapters() -> list[dict]:
    rows = []
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for path in sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb")):
        before = os.getloadavg()[0]
        rc, seconds, mib, cpu = run_with_peak_rss([sys.executable, str(ROOT / "tools" / "execute_chapters.py"),
                                              "--no-write", str(path)], env=env)
        rows.append({"chapter": path.name, "status": "ok" if rc == 0 else f"FAILED (exit {rc})",
                     "run time s": f"{seconds:.0f}", "CPU s": f"{cpu:.0f}",
                     "budget s": str(chapter_budget_s(path.name)),
                     "within budget": "yes" if rc == 0 and seconds <= chapter_budget_s(path.name) else "no",
                     "peak RSS MiB": f"{mib:.0f}", "load (1 min) before": f"{before:.1f}"})
        print(markdown_table(rows[-1:]).splitlines()[-1], flush=True)
    return rows


# ----------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small batches and few repeats (< 10 min on 2 CPU cores)")
    ap.add_argument("--chapters", action="store_true", help="also run every chapter (quick profile, ~15 min)")
    ap.add_argument("--sections", nargs="+", choices=SECTIONS, default=None,
                    help="sections to run (default: models crf layouts, plus chapters with --chapters)")
    ap.add_argument("--output", type=pathlib.Path, default=HERE / "RESULTS.md")
    ap.add_argument("--device", default=None, help="cpu, cuda or mps (default: segbook.runtime.pick_device's choice)")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default, from OMP_NUM_THREADS)")
    ap.add_argument("--model-threads", type=int, nargs="+", default=None,
                    help="thread counts for the models section on the CPU (default with --quick: 1 and the "
                         "--threads count; one thread is far less disturbed by other processes on a busy machine)")
    ap.add_argument("--repeats", type=int, default=0, help="timed rounds (default 9 with --quick, else 15; "
                    "the layouts section takes 2x as many)")
    args = ap.parse_args(argv)
    if args.repeats < 0:
        ap.error("--repeats must be >= 0")
    if args.threads < 0:
        ap.error("--threads must be >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    model_threads = args.model_threads or sorted({1, torch.get_num_threads()} if args.quick else {torch.get_num_threads()})
    if any(n < 1 for n in model_threads):
        ap.error("--model-threads must be >= 1")
    sections = args.sections or ["models", "crf", "layouts"] + (["chapters"] if args.chapters else [])
    device = pick_device(args.device)  # the package's one device rule (CUDA, then MPS, then the CPU)
    warmup, repeats = (2, 9) if args.quick else (3, 15)
    if args.repeats:
        repeats = args.repeats
    started, load_before = time.perf_counter(), load()
    header = ["# Benchmark results", "", "Written by `benchmarks/run.py`; what the numbers show, the changes they led to "
              "and what limits each ratio: `benchmarks/NOTES.md`.", "", *machine_lines(),
              f"- command: `{' '.join(['python', 'benchmarks/run.py', *(argv if argv is not None else sys.argv[1:])])}`"
              f" on {device}; warm-up {warmup}, repeats {repeats} (medians)",
              f"- load average (1, 5, 15 min) before: {load_before}"]
    print("\n".join(header), flush=True)
    body = []
    if "models" in sections:
        print("\n## models", flush=True)
        rows = bench_models(args.quick, device, warmup, repeats, model_threads)
        body += ["", "## Models versus torchvision", "",
                 "One process, segbook and torchvision timed in turns; `ratio` = median(segbook) / median(torchvision), "
                 "`paired ratio` = median over rounds of segbook / torchvision; `spread` = (max - min) / median of "
                 "each model's samples (how noisy the rows are). Same parameters (counts below); torchvision's "
                 "weights copied into segbook's model give the eval-mode difference in the last column.",
                 "", markdown_table(rows)]
    if "crf" in sections:
        print("\n## crf", flush=True)
        rows = bench_crf(args.quick, device)
        body += ["", "## Dense CRF backends", "",
                 "Synthetic 21-class scenes, 10 mean-field iterations, one image per call; pydensecrf runs on one "
                 f"CPU thread, segbook's torch backends on {torch.get_num_threads()}. Agreement: share of pixels "
                 "with the same refined label.", "", markdown_table(rows)]
    if "layouts" in sections:
        print("\n## layouts", flush=True)
        rows = bench_layouts(args.quick, device, warmup, 2 * repeats)  # cheap steps, noisy: more rounds
        body += ["", "## Layouts and data path", "",
                 "One training step (forward, cross-entropy, backward, SGD); the DataLoader (no workers) gathers "
                 "items from the dataset, pre-stacked slices ready tensors; all configurations timed in turns.",
                 "", markdown_table(rows)]
    if "chapters" in sections:
        print("\n## chapters", flush=True)
        rows = bench_chapters()
        body += ["", "## Chapters", "",
                 "Each chapter notebook executed in a fresh process, quick profile, nothing written "
                 "(`tools/execute_chapters.py --no-write`); peak RSS of the largest process (the kernel).",
                 "", markdown_table(rows)]
    else:
        body += ["", "## Chapters", "", "Not measured in this run (add `--chapters`; about 15 minutes on 2 cores)."]
    header.append(f"- load average after: {load()}; total run time {time.perf_counter() - started:.0f} s")
    text = "\n".join(header + body) + "\n"
    args.output.write_text(text)
    print(f"\nwrote {args.output}", flush=True)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
