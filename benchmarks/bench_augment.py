"""What batching the augmentation buys: chapter 4's five augmentation settings, pair by pair or batched.

    python benchmarks/bench_augment.py            # one thread, as chapter 4's fit_many workers run
    python benchmarks/bench_augment.py --threads 2

For each setting of chapter 4's ablation (none, flips, elastic, colour jitter, all) the same
``AugmentedPairs`` of 16 scenes at 32x32 is read through a loader of batch 8 for 600 steps, in two
ways, timed in turns (round-robin, so drifts in machine load hit both alike):

* ``pair by pair``: the loader calls ``dataset[i]`` for each pair (``SegmentationAugment`` on one
  pair, i.e. a batch of one), as a dataset without ``__getitems__`` is read;
* ``batched``: the loader calls ``dataset.__getitems__(indices)`` once per batch, which hands the
  whole batch to ``SegmentationAugment.batch``.

Prints the median seconds per 600 steps and the ratio batched / pair by pair. A benchmark, not a
test: numbers depend on the machine and its load, so nothing asserts on them.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from segbook.data import SegmentationAugment, make_loader
from segbook.experiments.unet import AugmentedPairs
from segbook.viz import results_table

ALL = dict(hflip=True, vflip=True, rotate=0, elastic=(3, 1.0), scale=None, color_jitter=(0.3, 0.3, 0.3, 0.5))
OFF = dict(hflip=False, vflip=False, rotate=0, elastic=None, scale=None, color_jitter=None)
SETTINGS = {"none": None, "flips": dict(OFF, hflip=True, vflip=True), "elastic": dict(OFF, elastic=ALL["elastic"]),
            "colour jitter": dict(OFF, color_jitter=ALL["color_jitter"]), "all": ALL}


class PairByPair(torch.utils.data.Dataset):
    """The same dataset without ``__getitems__``: the loader fetches one pair at a time."""

    def __init__(self, pairs: AugmentedPairs) -> None:
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int):
        return self.pairs[i]


def seconds(dataset, steps: int, batch: int) -> float:
    t0 = time.perf_counter()
    for k, _ in enumerate(make_loader(dataset, batch, shuffle=True, seed=0, drop_last=True)):
        if k + 1 == steps:
            break
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    images, masks = torch.rand(16, 3, 32, 32), torch.randint(0, 6, (16, 32, 32))
    rows = []
    for name, kw in SETTINGS.items():
        batch = 8
        repeats = args.steps * batch // images.shape[0]
        batched = AugmentedPairs(images, masks, repeats=repeats, transform=kw and SegmentationAugment(32, **kw))
        single = PairByPair(batched)
        seconds(batched, 20, batch), seconds(single, 20, batch)  # warm-up
        times = {"pair by pair": [], "batched": []}
        for _ in range(args.rounds):
            times["pair by pair"].append(seconds(single, args.steps, batch))
            times["batched"].append(seconds(batched, args.steps, batch))
        a, b = statistics.median(times["pair by pair"]), statistics.median(times["batched"])
        rows.append({"setting": name, "pair by pair (s)": a, "batched (s)": b, "batched / pair by pair": b / a})
    print(results_table(rows, floatfmt=".2f",
                        title=f"{args.steps} steps of batch 8, 32x32, {args.threads} thread(s): median of {args.rounds}"))


if __name__ == "__main__":
    main()
