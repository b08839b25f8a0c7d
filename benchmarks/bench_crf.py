"""Dense CRF backends side by side: time per image and label agreement.

    python benchmarks/bench_crf.py                        # 64, 128, 256 px; 21 classes; 10 iterations
    python benchmarks/bench_crf.py --threads 1            # torch on one thread, like pydensecrf
    python benchmarks/bench_crf.py --sizes 256 512 --exact-max 0 --images 2

Inputs: synthetic 21-class scenes (``random_scene``, noisy probabilities from ``noisy_probs``; both
live in tests/crf_fixtures.py, which the tests share) and, with ``--shapes``, ShapesSegmentation masks
made noisy the same way (6 classes). Every backend refines the same inputs in the same process, one image at a time,
after one warm-up call per size; the time is the median over images and repeats. Agreement is the
share of pixels whose refined label equals pydensecrf's (and the exact backend's, where it runs;
it is O(N^2), so only up to ``--exact-max`` pixels a side). CUDA rows appear when a GPU is present.
A benchmark, not a test: the numbers depend on the machine and its load, and nothing asserts on them.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))  # for crf_fixtures
from crf_fixtures import noisy_probs, random_scene  # noqa: E402

from segbook.crf import dense_crf, pydensecrf_available  # noqa: E402


def make_inputs(kind: str, size: int, count: int, classes: int, seed: int):
    # errors come in blobs and boundaries are soft on the same scale at every size (1.5 and 2 px at 64 px)
    scale = size / 64
    noise = dict(noise=1.5, confidence=2.5, noise_sigma=1.5 * scale, edge_sigma=2.0 * scale)
    if kind == "scenes":
        out = []
        for i in range(count):
            image, labels = random_scene(size, classes, seed=seed + i)
            out.append((image, labels, noisy_probs(labels, classes, seed=seed + i, **noise)))
        return out
    from segbook.data import ShapesSegmentation
    images, masks = ShapesSegmentation(count, size=size, seed=seed).tensors()
    out = []
    for i in range(count):
        image = (images[i].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
        mask = masks[i].numpy()
        out.append((image, mask, noisy_probs(mask, 6, seed=seed + i, **noise)))
    return out


def run_backend(backend: str, device: str, inputs, repeats: int, iterations: int):
    """(median seconds per image, refined label maps)."""
    def call(image, probs):
        if device == "cpu":
            return dense_crf(image, probs, backend=backend, iterations=iterations)
        out = dense_crf(torch.from_numpy(image).to(device), torch.from_numpy(probs).to(device),
                        backend=backend, iterations=iterations)
        torch.cuda.synchronize()
        return out

    call(*inputs[0][::2])  # warm-up (lattice/kernels, BLAS, CUDA context)
    times, labels = [], []
    for image, _, probs in inputs:
        for r in range(repeats):
            t0 = time.perf_counter()
            out = call(image, probs)
            times.append(time.perf_counter() - t0)
        labels.append(np.asarray(out.cpu() if isinstance(out, torch.Tensor) else out).argmax(0))
    return statistics.median(times), labels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--classes", type=int, default=21)
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--images", type=int, default=3, help="scenes per size")
    ap.add_argument("--repeats", type=int, default=2, help="timed calls per image")
    ap.add_argument("--exact-max", type=int, default=64, help="largest side for the O(N^2) exact backend")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--shapes", action="store_true", help="also ShapesSegmentation inputs (6 classes)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}, cuda: {torch.cuda.get_device_name() if cuda else 'none'}; "
          f"{args.iterations} iterations; pydensecrf runs on one CPU thread")
    print()
    print("| inputs | size | backend | device | s / image | x pydensecrf | agrees with pydensecrf | agrees with exact | "
          "pixel accuracy (input -> refined) |")
    print("|---|---|---|---|---|---|---|---|---|")
    kinds = ["scenes"] + (["shapes"] if args.shapes else [])
    for kind in kinds:
        for size in args.sizes:
            inputs = make_inputs(kind, size, args.images, args.classes, args.seed)
            runs = []
            if pydensecrf_available():
                runs.append(("pydensecrf", "cpu"))
            if size <= args.exact_max:
                runs.append(("exact", "cpu"))
            runs.append(("lattice", "cpu"))
            if cuda:
                runs.append(("lattice", "cuda"))
                if size <= 2 * args.exact_max:
                    runs.append(("exact", "cuda"))
            results = {}
            for backend, device in runs:
                results[(backend, device)] = run_backend(backend, device, inputs, args.repeats, args.iterations)
            ref = results.get(("pydensecrf", "cpu"))
            exact = results.get(("exact", "cpu")) or results.get(("exact", "cuda"))
            truth = [lab for _, lab, _ in inputs]
            before = np.mean([(p.argmax(0) == lab).mean() for _, lab, p in inputs])

            def agree(a, b):
                return np.mean([(x == y).mean() for x, y in zip(a, b)])

            for (backend, device), (seconds, labels) in results.items():
                ratio = f"{seconds / ref[0]:.2f}" if ref else "-"
                vs_ref = f"{100 * agree(labels, ref[1]):.2f}%" if ref else "-"
                vs_exact = f"{100 * agree(labels, exact[1]):.2f}%" if exact else "-"
                acc = f"{before:.3f} -> {agree(labels, truth):.3f}"
                print(f"| {kind} | {size}x{size} | {backend} | {device} | {seconds:.4f} | {ratio} | {vs_ref} | "
                      f"{vs_exact} | {acc} |", flush=True)


if __name__ == "__main__":
    main()
