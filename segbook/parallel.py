"""Train several independent models at once: one forked process per core on a multi-core CPU.

:func:`fit_many` trains each model with :func:`segbook.train.fit` on the same batches (or one
loader factory per model), in parallel child processes of one thread each on a Linux CPU, one
after another elsewhere; :func:`parallel_workers` says how many processes it uses. The numbers
are exactly those of sequential ``fit`` calls with the same thread count.
"""
from __future__ import annotations

import io
import math
import multiprocessing
import multiprocessing.connection
import os
import pickle
import sys
import traceback
import warnings
from typing import Callable, Iterable, Mapping, Optional, Union

import torch
import torch.nn as nn

from .checks import positive_int
from .devices import module_device
from .train import fit

__all__ = ["fit_many", "parallel_workers"]


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def parallel_workers(n_jobs: int, device: Optional[Union[str, torch.device]] = None) -> int:
    """How many processes :func:`fit_many` trains in at once: ``1`` (in this process) unless
    the device is the CPU, the platform can fork (Linux) and more than one core is usable;
    then one process per core, at most one per job."""
    n_jobs = positive_int(n_jobs, "n_jobs")
    if device is not None and torch.device(device).type != "cpu":
        return 1
    if not sys.platform.startswith("linux") or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    return max(1, min(n_jobs, _usable_cpus()))


def _fit_in_child(model: nn.Module, make_train_loader: Callable[[], Iterable], kwargs: dict, threads: int, conn) -> None:
    # A forked child of a (possibly Jupyter) process: it must not write to the parent's
    # streams, whose locks and sockets belong to threads that do not exist here.
    sys.stdout = sys.stderr = io.StringIO()
    try:
        torch.set_num_threads(threads)
        history = fit(model, make_train_loader(), **kwargs)
        state = io.BytesIO()
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, state)
        conn.send_bytes(pickle.dumps(("ok", history, state.getvalue(), sys.stdout.getvalue())))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises
        conn.send_bytes(pickle.dumps(("error", f"{type(exc).__name__}: {exc}", traceback.format_exc(),
                                      sys.stdout.getvalue())))
    finally:
        conn.close()


def fit_many(
    models: Mapping[str, nn.Module],
    make_train_loader: Union[Callable[[], Iterable], Mapping[str, Callable[[], Iterable]]],
    *,
    workers: Optional[int] = None,
    costs: Optional[Mapping[str, float]] = None,
    **fit_kwargs,
) -> dict:
    """Train several independent models on the same batches; on a multi-core CPU, in parallel.

    Every model is trained by :func:`~segbook.train.fit` with the same keyword arguments (``task``, ``epochs``,
    ``lr``, ``seed``, ...; ``desc`` is the model's name) on a fresh loader from
    ``make_train_loader()`` (a callable, so that each model sees the same batches in the same
    order, e.g. ``lambda: make_loader(train_set, 16, shuffle=True, seed=rt.seed)``). The models
    are trained in place and left in eval mode, as :func:`~segbook.train.fit` leaves them.

    Why processes: the book's models are small, and one PyTorch process uses two cores for them
    at about 1.5 times the speed of one core (their convolutions are too small to split well).
    Two processes of one thread each, one model each, use both cores fully. On Linux the
    children are forked, so they share the parent's tensors (the dataset) without copying; each
    sends back its history and weights. Each child runs ``torch.set_num_threads(threads)`` with
    ``threads = max(1, torch.get_num_threads() // workers)``, so its numbers are exactly those of
    a run in one process with that many threads (tested bitwise against sequential ``fit``).

    Args:
        models: ``{name: model}``; the model's own device is used unless ``device=`` is given.
        make_train_loader: returns the training loader; called once per model. Or
            ``{name: () -> loader}``, one factory per model, for models that train on different
            data (e.g. one augmentation each); it must have the same keys as ``models``.
        workers: processes at once (default :func:`parallel_workers`: one per usable core on a
            Linux CPU, else ``1``). ``1`` trains one model after another in this process.
            CUDA and non-fork platforms always use ``1``.
        costs: ``{name: relative training time}`` (any positive unit, e.g. seconds of a trial
            run): the processes start longest first, which keeps every core busy to the end when
            the models differ in cost (longest-processing-time scheduling). Default: the order
            of ``models``. Only the start order changes, never the numbers.
        **fit_kwargs: passed to :func:`~segbook.train.fit` (``progress`` and ``log`` are off in child processes).
            ``val_loader`` may be ``{name: loader}``, one per model (models that take different
            input sizes), with the same keys as ``models``.

    Returns:
        ``{name: History}`` in the order of ``models``.
    """
    if not isinstance(models, Mapping) or not models:
        raise TypeError(f"models must be a non-empty mapping {{name: nn.Module}}, got {type(models).__name__}")
    for name, model in models.items():
        if not isinstance(model, nn.Module):
            raise TypeError(f"models[{name!r}] must be an nn.Module, got {type(model).__name__}")
    if isinstance(make_train_loader, Mapping):
        if set(make_train_loader) != set(models):
            raise ValueError(f"make_train_loader has loaders for {sorted(make_train_loader)} but the models are "
                             f"{sorted(models)}: give one loader factory per model, under the model's name")
        factories = dict(make_train_loader)
    else:
        factories = {name: make_train_loader for name in models}
    if not all(callable(f) for f in factories.values()):
        raise TypeError("make_train_loader must be a callable that returns a fresh training loader "
                        "(e.g. lambda: make_loader(train_set, 16, shuffle=True, seed=rt.seed)); "
                        "one loader object would give each model a different batch order")
    if "desc" in fit_kwargs:
        raise TypeError("fit_many names each run after its key in models; do not pass desc=")
    val = fit_kwargs.pop("val_loader", None)
    if isinstance(val, Mapping):
        if set(val) != set(models):
            raise ValueError(f"val_loader has loaders for {sorted(val)} but the models are {sorted(models)}: "
                             "give one validation loader per model, under the model's name")
        vals = dict(val)
    else:
        vals = {name: val for name in models}
    start = list(models)
    if costs is not None:
        if not isinstance(costs, Mapping) or set(costs) != set(models):
            raise ValueError(f"costs must map every model name to its relative training time, got keys "
                             f"{sorted(costs) if isinstance(costs, Mapping) else type(costs).__name__} "
                             f"for the models {sorted(models)}")
        for name, c in costs.items():
            if isinstance(c, bool) or not isinstance(c, (int, float)) or not math.isfinite(c) or c <= 0:
                raise ValueError(f"costs[{name!r}] must be a positive number (a relative training time), got {c!r}")
        start.sort(key=lambda n: -costs[n])  # stable: equal costs keep the order of models
    device = fit_kwargs.get("device")
    if device is None:
        devices = {module_device(m).type for m in models.values()}
        device = "cuda" if "cuda" in devices else "cpu"
    limit = parallel_workers(len(models), device)
    workers = limit if workers is None else max(1, min(positive_int(workers, "workers"), limit))
    if workers == 1:
        histories = {name: fit(models[name], factories[name](), desc=name, val_loader=vals[name], **fit_kwargs)
                     for name in start}
        return {name: histories[name] for name in models}

    threads = max(1, torch.get_num_threads() // workers)
    kwargs = {**fit_kwargs, "progress": False, "log": False}
    ctx = multiprocessing.get_context("fork")
    pending = [(name, models[name]) for name in start]
    running: dict = {}
    histories: dict = {}
    try:
        while pending or running:
            while pending and len(running) < workers:
                name, model = pending.pop(0)
                receive, send = ctx.Pipe(duplex=False)
                with warnings.catch_warnings():
                    # Python 3.12+ warns that forking a multi-threaded process may deadlock: the
                    # child touches none of the other threads' locks (see _fit_in_child).
                    warnings.simplefilter("ignore", DeprecationWarning)
                    proc = ctx.Process(target=_fit_in_child, args=(model, factories[name],
                                                                   {**kwargs, "desc": name,
                                                                    "val_loader": vals[name]},
                                                                   threads, send))
                    proc.start()
                send.close()
                running[name] = (proc, receive)
            done = multiprocessing.connection.wait([r for _, r in running.values()])
            for name in [n for n, (_, r) in running.items() if r in done]:
                proc, receive = running.pop(name)
                try:
                    message = pickle.loads(receive.recv_bytes())
                except EOFError:
                    proc.join()
                    raise RuntimeError(f"training {name!r} in a child process died (exit code {proc.exitcode}); "
                                       "out of memory? Try fit_many(..., workers=1)") from None
                finally:
                    receive.close()
                proc.join()
                if message[0] == "error":
                    raise RuntimeError(f"training {name!r} failed in a child process: {message[1]}\n"
                                       f"{message[2]}")
                _, history, state, _ = message
                models[name].load_state_dict(torch.load(io.BytesIO(state), weights_only=True))
                models[name].eval()
                histories[name] = history
    finally:
        for proc, receive in running.values():
            proc.kill()
            proc.join()
            receive.close()
    return {name: histories[name] for name in models}
