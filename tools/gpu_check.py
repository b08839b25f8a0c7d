"""Check the GPU path in one run: precision choice, every chapter model, the analysis helpers, the chapters.

Usage::

    python tools/gpu_check.py --out benchmarks/gpu_report.md     # on a CUDA machine
    python tools/gpu_check.py --dry-run                            # on a CPU: same code paths, tiny sizes

What it does, in order, writing one Markdown report:

1. the device, its compute capability, the AMP dtype that :func:`segbook.execution.resolve_execution`
   picks (bf16 on capability >= 8.0, fp16 + GradScaler below), torch/CUDA versions;
2. for every chapter model at its full-profile size: ``--steps`` training steps in the chosen
   dtype and again in fp16 with a GradScaler (the T4 path), median ms per step after warm-up,
   loss finite, channels_last;
3. the analysis helpers on CUDA models fed CPU batches (residual ratios, gradient norms, FLOPs,
   receptive fields, ``evaluate``/``predict``);
4. every chapter executed the way a GPU reader gets it (the default: the quick profile with three
   seeds, ``SEGBOOK_SEEDS`` unset) on a copy (never in place), with strict claims: time per cell,
   every failing cell (claims included) with its message, and the glued numbers.
   ``--chapter-profile full`` runs the opt-in full profile instead (its claims only report).

``--dry-run`` runs 1-3 at tiny sizes on the CPU (CPU autocast in bf16 stands in for the GPU
dtypes) and 4 on a two-cell generated notebook, so the script itself is tested without a GPU;
it exits 0 when every check passed. Sized to finish within 10 minutes on one H100.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

from segbook.execution import Execution, amp_dtype_for, resolve_execution  # noqa: E402
from segbook.train import evaluate, make_optimizer, predict, train_one_epoch  # noqa: E402


@dataclass
class ModelCase:
    name: str
    build: Callable[[], nn.Module]
    shape: tuple  # full-profile batch (N, C, H, W)
    task: str  # classification | segmentation
    classes: int


def _optional(builder_path: str, **kwargs) -> Optional[Callable[[], nn.Module]]:
    """A builder from ``module:function`` if that module exists in this checkout (chapters land over time)."""
    module, func = builder_path.split(":")
    try:
        mod = __import__(module, fromlist=[func])
        fn = getattr(mod, func)
    except (ImportError, AttributeError):
        return None
    return lambda: fn(**kwargs)


def model_cases(dry: bool) -> list[ModelCase]:
    from segbook.models import cifar_resnet, densenet_bc, efficientnet_small, fcn8s, googlenet_small

    cls_batch = (4, 3, 32, 32) if dry else (128, 3, 32, 32)
    seg_batch = (2, 3, 64, 64) if dry else (32, 3, 128, 128)
    depth = 8 if dry else 56
    cases = [
        ModelCase(f"ResNet-{depth}", lambda: cifar_resnet(depth=depth, width=16), cls_batch, "classification", 10),
        ModelCase(f"plain-{depth}", lambda: cifar_resnet(depth=depth, width=16, shortcuts=False), cls_batch, "classification", 10),
        ModelCase("SE-ResNet-20", lambda: cifar_resnet(depth=20, width=16, se_reduction=4), cls_batch, "classification", 10),
        ModelCase("DenseNet-BC-40", lambda: densenet_bc(depth=22 if dry else 40, growth_rate=12), cls_batch, "classification", 10),
        ModelCase("GoogLeNet-small", lambda: googlenet_small(num_classes=10), cls_batch, "classification", 10),
        ModelCase("EfficientNet-small", lambda: efficientnet_small(num_classes=10), cls_batch, "classification", 10),
        ModelCase("FCN-8s", lambda: fcn8s(num_classes=6, width=16), seg_batch, "segmentation", 6),
    ]
    for name, path, kwargs in (
        ("U-Net", "segbook.models.unet:unet", {"num_classes": 6}),
        ("DeepLab v3+", "segbook.models.deeplab:deeplabv3plus", {"num_classes": 6}),
    ):
        build = _optional(path, **kwargs)
        if build is not None:
            cases.append(ModelCase(name, build, seg_batch, "segmentation", 6))
    return cases


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed_batches(images: torch.Tensor, targets: torch.Tensor, steps: int, device: torch.device,
                   times: list) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The same batch ``steps`` times; appends to ``times`` the seconds from handing a batch out to
    being asked for the next one (the device synchronised at both ends), i.e. one training step."""
    for _ in range(steps):
        _sync(device)
        start = time.perf_counter()
        yield images, targets
        _sync(device)
        times.append(time.perf_counter() - start)


def time_training(case: ModelCase, ex: Execution, steps: int) -> dict:
    """``steps`` optimisation steps of the package's own training step (:func:`train_one_epoch`, as
    :func:`segbook.train.fit` runs it: aux losses, accuracy counting, GradScaler) on one random batch;
    median ms of the steps after the first 3."""
    torch.manual_seed(0)
    model = ex.prepare(case.build())
    optimizer = make_optimizer(model.parameters(), "adamw", lr=1e-3)
    n, c, h, w = case.shape
    x = torch.rand(n, c, h, w)
    y = torch.randint(0, case.classes, (n,) if case.task == "classification" else (n, h, w))
    times: list[float] = []
    out = train_one_epoch(model, _timed_batches(x, y, steps, ex.device, times), optimizer, task=case.task,
                          num_classes=case.classes, execution=ex)
    losses = [float(v) for v in out["step_loss"]]
    measured = times[3:] if len(times) > 4 else times
    return {"ms": 1000 * statistics.median(measured), "finite": all(math.isfinite(v) for v in losses),
            "loss0": losses[0], "loss_last": losses[-1]}


def check_analysis(device: torch.device, dry: bool) -> list[tuple[str, str]]:
    """Run every helper that takes a model on a model living on ``device``, with CPU inputs."""
    from segbook.analysis import count_flops, empirical_receptive_field, grad_norms_at_init, receptive_field
    from segbook.models import cifar_resnet, fcn8s
    from segbook.models.resnet import residual_ratios

    results = []

    def run(name, fn):
        try:
            results.append((name, f"ok: {fn()}"))
        except Exception as err:  # noqa: BLE001 - the report lists every failure
            results.append((name, f"FAILED: {type(err).__name__}: {err}"))

    net = cifar_resnet(depth=8 if dry else 20, width=16).to(device)
    batch = (torch.rand(8, 3, 32, 32), torch.randint(0, 10, (8,)))
    run("residual_ratios (CPU batch, CUDA model)", lambda: len(residual_ratios(net, batch[0])))
    run("grad_norms_at_init", lambda: len(grad_norms_at_init(net, batch)))
    run("count_flops", lambda: count_flops(net, (1, 3, 32, 32)))
    run("receptive_field(module)", lambda: receptive_field(net, input_shape=(1, 3, 32, 32))[-1])
    feats = nn.Sequential(*[nn.Conv2d(3 if i == 0 else 8, 8, 3, padding=1) for i in range(4)]).to(device)
    run("empirical_receptive_field (expect 9)", lambda: empirical_receptive_field(feats, (1, 3, 32, 32)))
    seg = fcn8s(num_classes=6, width=8).to(device)
    data = [(torch.rand(2, 3, 64, 64), torch.randint(0, 6, (2, 64, 64)))]
    run("evaluate (segmentation)", lambda: round(evaluate(seg, data, task="segmentation", num_classes=6)["miou"], 3))
    run("predict", lambda: tuple(predict(seg, data[0][0]).shape))
    return results


def execute_chapter(path: pathlib.Path, profile: str, timeout: int) -> dict:
    """Execute a copy of ``path`` with ``SEGBOOK_PROFILE=profile``: per-cell seconds, failures, glue."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
    os.environ["SEGBOOK_PROFILE"] = profile
    os.environ["SEGBOOK_STRICT_CLAIMS"] = "1"     # a claim that does not hold is a failing cell
    os.environ.pop("SEGBOOK_SEEDS", None)         # what a reader gets: 3 seeds on CUDA
    os.environ.pop("SEGBOOK_SEED_OFFSET", None)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    total = time.perf_counter() - start
    cells, failures, glued = [], [], {}
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        timing = cell.metadata.get("execution", {})
        t0, t1 = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
        seconds = None
        if t0 and t1:
            from datetime import datetime
            seconds = (datetime.fromisoformat(t1.replace("Z", "+00:00")) -
                       datetime.fromisoformat(t0.replace("Z", "+00:00"))).total_seconds()
        cells.append((i, seconds, cell.source.splitlines()[0][:60] if cell.source else ""))
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                failures.append((i, f"{out.get('ename')}: {out.get('evalue')}"[:400]))
            scrap = out.get("metadata", {}).get("scrapbook")
            if scrap:
                text = out.get("data", {})
                value = next((v for k, v in text.items() if k.endswith("text/plain")), "")
                glued[scrap["name"]] = "".join(value) if isinstance(value, list) else str(value)
    return {"seconds": total, "cells": cells, "failures": failures, "glued": glued}


def run_chapter_isolated(path: pathlib.Path, profile: str, timeout: int) -> dict:
    """:func:`execute_chapter` in a fresh Python process, so one chapter's kernel (a crash, a
    socket left behind) cannot break the next one: on the H100 run, chapter 2 failed to start its
    kernel right after chapter 1 in the same process."""
    import subprocess

    proc = subprocess.run([sys.executable, str(pathlib.Path(__file__).resolve()), "--run-chapter", str(path),
                           "--profile", profile, "--cell-timeout", str(timeout)],
                          capture_output=True, text=True)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("GPU_CHECK_RESULT "):
            res = json.loads(line[len("GPU_CHECK_RESULT "):])
            res["cells"] = [tuple(c) for c in res["cells"]]
            res["failures"] = [tuple(f) for f in res["failures"]]
            return res
    raise RuntimeError(f"the chapter process exited with {proc.returncode}: {proc.stderr.strip()[-600:]}")


def _tiny_notebook(folder: pathlib.Path) -> pathlib.Path:
    import nbformat
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("from segbook.runtime import setup\nfrom segbook.notebook import glue, claim\n"
                                  "rt = setup(seed=0)\nglue('profile', rt.profile.name)"),
        nbformat.v4.new_code_cell("claim(1 + 1 == 2, 'arithmetic')"),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / "tiny.ipynb"
    nbformat.write(nb, path)
    return path


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes, a generated notebook")
    parser.add_argument("--out", type=pathlib.Path, default=None, help="report file (Markdown)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--chapters", nargs="*", type=pathlib.Path, default=None,
                        help="chapters to execute (default: all)")
    parser.add_argument("--chapter-profile", choices=("quick", "full"), default="quick",
                        help="profile the chapters run in (default quick: what a GPU reader gets)")
    parser.add_argument("--skip-chapters", action="store_true")
    parser.add_argument("--cell-timeout", type=int, default=600)
    parser.add_argument("--run-chapter", type=pathlib.Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--profile", default="full", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_chapter is not None:  # the child process of run_chapter_isolated
        print("GPU_CHECK_RESULT " + json.dumps(execute_chapter(args.run_chapter, args.profile, args.cell_timeout)))
        return 0

    dry = args.dry_run
    device = torch.device("cpu") if dry else torch.device("cuda")
    if not dry and not torch.cuda.is_available():
        print("no CUDA device: run with --dry-run on a CPU", file=sys.stderr)
        return 2
    lines: list[str] = ["# GPU check report", ""]
    ok = True
    out = args.out or (pathlib.Path(os.environ["OUT"]) / "gpu_report.md" if os.environ.get("OUT") else None)
    if out is not None:  # written line by line, so a run cut short by a time limit still leaves its report
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("# GPU check report\n\n")

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)
        if out is not None:
            with out.open("a") as f:
                f.write(text + "\n")

    say(f"- date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    say(f"- torch {torch.__version__}, CUDA {torch.version.cuda}, Python {platform.python_version()}")
    if device.type == "cuda":
        cap = torch.cuda.get_device_capability(device)
        say(f"- device: {torch.cuda.get_device_name(device)}, compute capability {cap[0]}.{cap[1]}")
        say(f"- is_bf16_supported() (counts emulation): {torch.cuda.is_bf16_supported()}")
    else:
        say("- device: CPU (dry run; CPU autocast in bf16 stands in for the GPU dtypes)")
    chosen = resolve_execution(device=device, amp=True, channels_last=True)
    say(f"- AMP dtype chosen by segbook.execution: {chosen.amp_dtype} (GradScaler: {chosen.grad_scaler}); "
        f"amp_dtype_for={amp_dtype_for(device)}")
    say("")

    say("## Training steps at full-profile sizes")
    say("")
    say("| model | batch | params | chosen dtype ms/step | fp16+GradScaler ms/step | loss first -> last | finite |")
    say("|---|---|---:|---:|---:|---|---|")
    steps = 3 if dry else args.steps
    fp16 = Execution(device, True, torch.bfloat16 if dry else torch.float16, True)
    for case in model_cases(dry):
        try:
            params = sum(p.numel() for p in case.build().parameters())
            a = time_training(case, chosen, steps)
            b = time_training(case, fp16, steps)
            finite = a["finite"] and b["finite"]
            ok &= finite
            say(f"| {case.name} | {'x'.join(map(str, case.shape))} | {params:,} | {a['ms']:.1f} | {b['ms']:.1f} | "
                f"{a['loss0']:.3f} -> {a['loss_last']:.3f} | {finite} |")
        except Exception as err:  # noqa: BLE001
            ok = False
            say(f"| {case.name} | {case.shape} | - | FAILED | {type(err).__name__}: {str(err)[:120]} | | |")
            traceback.print_exc()
    say("")

    say("## Analysis helpers on a model on the device, fed CPU tensors")
    say("")
    for name, result in check_analysis(device, dry):
        ok &= result.startswith("ok")
        say(f"- {name}: {result}")
    say("")

    if not args.skip_chapters:
        say(f"## Chapters executed as a GPU reader gets them (copies; profile {args.chapter_profile}, "
            "default seeds, strict claims)")
        say("")
        with tempfile.TemporaryDirectory() as tmp:
            paths = [_tiny_notebook(pathlib.Path(tmp))] if dry else (
                args.chapters or sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb")))
            for path in paths:
                profile = "quick" if dry else args.chapter_profile
                try:
                    res = run_chapter_isolated(path, profile, args.cell_timeout)
                except Exception as err:  # noqa: BLE001
                    ok = False
                    say(f"### {path.name}: could not run ({type(err).__name__}: {err})")
                    continue
                ok &= not res["failures"]
                say(f"### {path.name}: {res['seconds']:.0f} s, {len(res['failures'])} failing cell(s)")
                for i, msg in res["failures"]:
                    say(f"- cell {i} FAILED: {msg}")
                slow = sorted((c for c in res["cells"] if c[1] is not None), key=lambda c: -c[1])[:5]
                say("- slowest cells: " + "; ".join(f"#{i} {s:.1f} s `{src}`" for i, s, src in slow))
                if res["glued"]:
                    say("- glued: " + ", ".join(f"{k}={v}" for k, v in res["glued"].items()))
                say("")
    say(f"**Overall: {'all checks passed' if ok else 'some checks FAILED'}**")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
