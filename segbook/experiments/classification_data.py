"""Chapter 1 (classification backbones): the data of each seed of a comparison.

Every comparison of the chapter trains its nets once per seed of ``rt.seeds``, all nets of a seed
on the same images, and each seed on *new* images of the same task: :func:`seed_data` draws them
with :func:`segbook.data.chapter_datasets` (procedural shapes by default, ``$SEGBOOK_DATA``
otherwise), training set and validation loader, one pair per seed.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from ..checks import positive_int
from ..data import chapter_datasets, make_loader
from ..seeds import SeededRun, fit_over_seeds

__all__ = ["seed_data", "train_over_seeds"]


def seed_data(
    rt: Any,
    seeds: Sequence[int],
    *,
    size: int,
    n_train: int,
    n_val: int,
    val_batch_size: int = 500,
) -> dict[int, tuple[Dataset, DataLoader]]:
    """The classification data of each seed: ``{seed: (training set, validation loader)}``.

    For each seed ``s`` in order, :func:`~segbook.data.chapter_datasets` with ``seed=s`` (the
    training images use ``s``, the validation images ``s + 1``): ``n_train`` training items and a
    loader of ``n_val`` validation items in batches of ``val_batch_size`` (unshuffled). Items are
    ``(image float32 [3, size, size], label int64 scalar)``. The training set is returned as a set,
    not a loader, so that every net of a seed gets its own loader over the same batches
    (``make_loader(train_set, batch, shuffle=True, seed=s)``).

    Args:
        rt: the :class:`~segbook.runtime.Runtime` from ``setup`` (its ``data``, ``data_root``,
            ``download``).
        seeds: e.g. ``rt.seeds``; at least one.
        size: image side in pixels.
        n_train, n_val: items per seed.
        val_batch_size: batch size of the validation loaders.
    """
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds is empty: pass rt.seeds (at least one seed)")
    positive_int(size, "size")
    positive_int(n_train, "n_train")
    positive_int(n_val, "n_val")
    positive_int(val_batch_size, "val_batch_size")
    data = {}
    for s in seeds:
        train_set, val_set, _ = chapter_datasets(rt, task="classification", size=size, n_train=n_train,
                                                 n_val=n_val, seed=s)
        data[s] = (train_set, make_loader(val_set, val_batch_size))
    return data


def train_over_seeds(builders: Mapping[str, Callable[[], nn.Module]],
                     data: Mapping[int, tuple[Dataset, DataLoader]], *, batch_size: int,
                     **fit_kwargs) -> dict[str, list[SeededRun]]:
    """Train each builder's net once per seed of ``data``, all nets of a seed on the same batches.

    ``data`` is what :func:`seed_data` returns, ``{seed: (training set, validation loader)}``; its
    seeds are taken in order. Seed ``s`` trains on ``make_loader(training set, batch_size,
    shuffle=True, seed=s)`` (so every net of the seed sees the same batch order) and is validated
    on its own loader; the weights of each net are drawn with seed ``s`` too
    (:func:`segbook.seeds.fit_over_seeds`, which on a multi-core CPU trains two processes at a time,
    one thread each). ``fit_kwargs`` go to :func:`segbook.train.fit` (``task``, ``epochs``, ``lr``,
    ``aux_weight``, ...). Returns ``{name: [one SeededRun per seed]}``.
    """
    if not data:
        raise ValueError("data is empty: pass seed_data(rt, rt.seeds, ...) (at least one seed)")
    positive_int(batch_size, "batch_size")

    def train_loader(s: int) -> DataLoader:
        return make_loader(data[s][0], batch_size, shuffle=True, seed=s)

    return fit_over_seeds(builders, train_loader, list(data), val_loader=lambda s: data[s][1], **fit_kwargs)
