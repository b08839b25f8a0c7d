"""Where and how a chapter runs: seeds, device, profile, Colab detection.

Every chapter starts with::

    from segbook.runtime import setup
    rt = setup(seed=0)          # seeds everything, picks the device and the profile
    print(rt)                   # "segbook profile=quick device=cpu torch=... threads=2"

and then sizes its experiments with ``rt.profile.choose(quick=..., full=...)``.

Profiles
--------
``quick``
    The default everywhere, CPU and GPU alike, and the profile every claim of the book was checked
    in (seeds 0-2, several CPUs): small images, few samples, few epochs; a chapter finishes in
    under three minutes on a 2-core CPU with one seed.
``full``
    Opt-in only (``SEGBOOK_PROFILE=full``): larger images and longer training for a GPU. It has
    not been verified end to end, so its claims only report (:func:`segbook.notebook.claim`
    never raises there).

The environment variable ``SEGBOOK_PROFILE=quick|full`` overrides the choice.

Data
----
``shapes`` (the procedural datasets, no files, no download) is the default everywhere.
``$SEGBOOK_DATA=cifar10|pets|voc`` (or ``setup(data=...)``) asks a chapter to train on a real
dataset instead (see :func:`segbook.data.chapter_datasets`), read from ``$SEGBOOK_DATA_ROOT``
(default ``~/.cache/segbook``) and downloaded there only when ``download`` is on: by default in
Colab, never elsewhere (``$SEGBOOK_DOWNLOAD=1|0`` or ``setup(download=...)`` overrides).

Seeds
-----
A chapter derives every seed it uses from ``rt.seed`` (``rt.seed``, ``rt.seed + 1``, ...), never
from a literal. ``$SEGBOOK_SEED_OFFSET=N`` (set by ``tools/execute_chapters.py --seed N``) shifts
``rt.seed`` by ``N``, so the whole chapter re-runs on other data, initial weights and batch order;
every trained claim must hold for offsets 0, 1 and 2.

``rt.seeds`` are the seeds a chapter repeats its compared trainings over, to show their spread:
``rt.seed + i`` for ``i < n``, so the committed run's three seeds are exactly the seeds 0, 1 and 2
that every trained claim must hold for (an experiment of seed ``s`` derives all its draws from
``s``, as a run with ``$SEGBOOK_SEED_OFFSET=s`` would). ``n`` is 1 on a CPU (a chapter stays within its time budget),
3 on a GPU, and ``$SEGBOOK_SEEDS=n`` (or ``setup(seeds=n)``) overrides it; the committed book is
executed with 3 (``tools/execute_chapters.py``).
"""
from __future__ import annotations

import os
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, TypeVar, Union

import numpy as np
import torch

from .checks import positive_int

__all__ = [
    "PROFILES",
    "PROFILE_ENV",
    "SEED_OFFSET_ENV",
    "SEEDS_ENV",
    "SEED_STRIDE",
    "get_n_seeds",
    "DATA_CHOICES",
    "DATA_ENV",
    "DATA_ROOT_ENV",
    "DOWNLOAD_ENV",
    "DEFAULT_DATA_ROOT",
    "get_data",
    "get_data_root",
    "get_download",
    "seed_offset",
    "Profile",
    "Runtime",
    "seed_everything",
    "pick_device",
    "get_profile",
    "in_colab",
    "setup",
]

PROFILES = ("quick", "full")
PROFILE_ENV = "SEGBOOK_PROFILE"
SEED_OFFSET_ENV = "SEGBOOK_SEED_OFFSET"
SEEDS_ENV = "SEGBOOK_SEEDS"
SEED_STRIDE = 1  # rt.seeds are rt.seed + SEED_STRIDE * i: seeds 0, 1, 2 for the committed run
DATA_CHOICES = ("shapes", "cifar10", "pets", "voc")
DATA_ENV = "SEGBOOK_DATA"
DATA_ROOT_ENV = "SEGBOOK_DATA_ROOT"
DOWNLOAD_ENV = "SEGBOOK_DOWNLOAD"
DEFAULT_DATA_ROOT = "~/.cache/segbook"

T = TypeVar("T")


def seed_everything(seed: int = 0, *, deterministic: bool = True) -> int:
    """Seed Python's ``random``, NumPy and torch (CPU and all CUDA devices).

    With ``deterministic=True`` cuDNN autotuning is switched off and cuDNN picks deterministic
    kernels, so the same seed on the same machine gives the same numbers. (Some CUDA kernels stay
    non-deterministic; we do not call ``torch.use_deterministic_algorithms`` because it makes a few
    ops used in the book raise instead of running.)

    Args:
        seed: a non-negative integer.
        deterministic: also make cuDNN deterministic.

    Returns:
        The seed, for logging.
    """
    seed = positive_int(seed, "seed", minimum=0)
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    return seed


def pick_device(prefer: Optional[str] = None) -> torch.device:
    """Return the best available device: CUDA, then Apple MPS, then CPU.

    The one place the package chooses between CUDA, MPS and the CPU (the reader's device, once per
    chapter); how each model then runs there (autocast dtype, memory format) is
    :func:`segbook.execution.resolve_execution`'s decision.

    Args:
        prefer: force a device (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``). Asking for one
            that is not available raises a ``RuntimeError`` that says what is available.
    """
    if prefer is not None:
        dev = torch.device(prefer)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(
                f"device {prefer!r} was asked for but CUDA is not available here; "
                "use prefer='cpu' or None to pick automatically"
            )
        if dev.type == "mps" and not _mps_available():
            raise RuntimeError(
                f"device {prefer!r} was asked for but Apple MPS is not available here; "
                "use prefer='cpu' or None to pick automatically"
            )
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


@dataclass(frozen=True)
class Profile:
    """A named experiment size: ``quick`` (CPU/CI) or ``full`` (GPU)."""

    name: str

    def __post_init__(self) -> None:
        if self.name not in PROFILES:
            raise ValueError(
                f"unknown profile {self.name!r}; expected one of {PROFILES} "
                f"(set {PROFILE_ENV}=quick or {PROFILE_ENV}=full)"
            )

    @property
    def is_quick(self) -> bool:
        return self.name == "quick"

    @property
    def is_full(self) -> bool:
        return self.name == "full"

    def choose(self, *, quick: T, full: T) -> T:
        """Return ``quick`` or ``full`` depending on this profile.

        Example: ``epochs = rt.profile.choose(quick=3, full=30)``.
        """
        return quick if self.is_quick else full


def _named_choice(name: Optional[str], env_var: str, choices: tuple[str, ...], what: str, hint: str) -> Optional[str]:
    """``name``, else ``$env_var``, lower-cased and checked against ``choices``; ``None`` when neither is set.

    An unknown value raises ``ValueError`` naming where it came from (argument or variable), the
    valid choices, and ``hint`` (how to fall back to the default).
    """
    source = "argument"
    if name is None:
        env = os.environ.get(env_var, "").strip()
        if not env:
            return None
        name, source = env, f"${env_var}"
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a str (one of {choices}), got {type(name).__name__}")
    key = name.strip().lower()
    if key not in choices:
        raise ValueError(f"unknown {what} {name!r} (from the {source}); expected one of {choices}. {hint}")
    return key


def get_profile(name: Optional[str] = None, *, device: Optional[Union[str, torch.device]] = None) -> Profile:
    """Select the profile.

    Order of precedence: the ``name`` argument, then ``$SEGBOOK_PROFILE``, then ``quick`` on
    every device (``full`` is opt-in: it has not been verified end to end). Names are
    case-insensitive; an unknown name raises ``ValueError`` listing the valid ones. ``device`` is
    accepted for backward compatibility and no longer changes the choice.
    """
    key = _named_choice(name, PROFILE_ENV, PROFILES, "profile",
                        f"Unset {PROFILE_ENV} for the verified default, quick.")
    return Profile("quick" if key is None else key)


def get_n_seeds(n: Optional[int] = None, *, device: Optional[Union[str, torch.device]] = None) -> int:
    """How many seeds a chapter repeats its compared trainings over: the argument, then
    ``$SEGBOOK_SEEDS``, then 3 on CUDA and 1 elsewhere (a CPU chapter stays within its budget)."""
    if n is None:
        raw = os.environ.get(SEEDS_ENV, "").strip()
        if raw:
            try:
                n = int(raw)
            except ValueError:
                n = 0
            if n < 1:
                raise ValueError(f"${SEEDS_ENV} must be a positive integer (how many seeds), got {raw!r}; "
                                 "unset it for the default (1 on a CPU, 3 on a GPU)")
        else:
            dev = torch.device(device) if device is not None else pick_device()
            n = 3 if dev.type == "cuda" else 1
    return int(positive_int(n, "seeds"))


def seed_offset() -> int:
    """The shift ``$SEGBOOK_SEED_OFFSET`` adds to every chapter's seed (0 when unset).

    Raises ``ValueError`` for anything but a non-negative integer.
    """
    raw = os.environ.get(SEED_OFFSET_ENV, "").strip()
    if not raw:
        return 0
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"${SEED_OFFSET_ENV} must be a non-negative integer, got {raw!r}; unset it for the committed runs")
    return value


def in_colab() -> bool:
    """True when running inside Google Colab."""
    return "google.colab" in sys.modules


def get_data(name: Optional[str] = None) -> str:
    """The dataset a chapter trains on: one of :data:`DATA_CHOICES`.

    Order of precedence: the ``name`` argument, then ``$SEGBOOK_DATA``, then ``"shapes"`` (the
    procedural data). Case-insensitive; an unknown name raises ``ValueError`` listing the valid
    ones and saying where the bad value came from.
    """
    key = _named_choice(name, DATA_ENV, DATA_CHOICES, "data",
                        f"'shapes' is the procedural default; unset {DATA_ENV} to use it.")
    return "shapes" if key is None else key


def get_data_root(root: Optional[Union[str, os.PathLike]] = None) -> Path:
    """Folder real datasets are read from (and downloaded into): argument, ``$SEGBOOK_DATA_ROOT``,
    then :data:`DEFAULT_DATA_ROOT`; ``~`` is expanded, the folder is not created here."""
    if root is None:
        root = os.environ.get(DATA_ROOT_ENV, "").strip() or DEFAULT_DATA_ROOT
    return Path(root).expanduser()


def get_download(download: Optional[bool] = None) -> bool:
    """Whether real datasets may be downloaded: argument, ``$SEGBOOK_DOWNLOAD`` (``1/true/yes`` or
    ``0/false/no``), then :func:`in_colab` (on in Colab, off everywhere else)."""
    if download is not None:
        if not isinstance(download, bool):
            raise TypeError(f"download must be True, False or None, got {download!r}")
        return download
    raw = os.environ.get(DOWNLOAD_ENV, "").strip().lower()
    if not raw:
        return in_colab()
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"${DOWNLOAD_ENV} must be 1/true/yes or 0/false/no, got {raw!r}; unset it for the default")


@dataclass(frozen=True)
class Runtime:
    """What :func:`setup` chose; ``print(rt)`` gives a one-line summary for the chapter log.

    ``seed`` is the effective seed: the ``seed`` passed to :func:`setup` plus
    ``$SEGBOOK_SEED_OFFSET``. Chapters derive all their seeds from it.

    ``data`` is the dataset chapters train on (``"shapes"``, the procedural default, or
    ``"cifar10"``, ``"pets"``, ``"voc"``); ``data_root`` the folder real data lives in and
    ``download`` whether it may be fetched there (see :func:`segbook.data.chapter_datasets`).
    """

    seed: int
    device: torch.device
    profile: Profile
    data: str = "shapes"
    data_root: Path = Path(DEFAULT_DATA_ROOT).expanduser()
    download: bool = False
    n_seeds: int = 1

    def __post_init__(self) -> None:
        if self.data not in DATA_CHOICES:
            raise ValueError(f"data must be one of {DATA_CHOICES}, got {self.data!r}")
        positive_int(self.n_seeds, "n_seeds")

    @property
    def seeds(self) -> tuple[int, ...]:
        """The seeds compared trainings are repeated over: ``rt.seed + i``, ``i < n_seeds``."""
        return tuple(self.seed + SEED_STRIDE * i for i in range(self.n_seeds))

    @property
    def amp(self) -> bool:
        """Whether ``fit``/``evaluate`` autocast by default on this device (CUDA only; see
        :func:`segbook.execution.resolve_execution`)."""
        return self.device.type == "cuda"

    def __str__(self) -> str:
        return (
            f"segbook profile={self.profile.name} device={self.device} seed={self.seed} seeds={self.n_seeds} "
            f"torch={torch.__version__} threads={torch.get_num_threads()} "
            f"colab={in_colab()} data={self._data_summary()}"
        )

    def _data_summary(self) -> str:
        if self.data == "shapes":
            return "shapes"
        return f"{self.data}(root={self.data_root}, download={self.download})"


def setup(seed: int = 0, *, profile: Optional[str] = None, device: Optional[str] = None,
          data: Optional[str] = None, data_root: Optional[Union[str, os.PathLike]] = None,
          download: Optional[bool] = None, seeds: Optional[int] = None) -> Runtime:
    """Seed everything, pick the device, the profile and the data; the first call of every chapter.

    Args:
        seed: global seed (see :func:`seed_everything`); ``$SEGBOOK_SEED_OFFSET`` is added to it.
        profile: ``"quick"`` or ``"full"``; default from ``$SEGBOOK_PROFILE`` or the device.
        device: force a device; default :func:`pick_device`.
        data: ``"shapes"`` (default), ``"cifar10"``, ``"pets"`` or ``"voc"``; default from
            ``$SEGBOOK_DATA`` (see :func:`get_data`).
        data_root: folder of the real datasets; default ``$SEGBOOK_DATA_ROOT`` or ``~/.cache/segbook``.
        download: allow downloading real data; default ``$SEGBOOK_DOWNLOAD``, else on in Colab only.
        seeds: how many seeds compared trainings repeat over (:attr:`Runtime.seeds`); default
            ``$SEGBOOK_SEEDS``, else 3 on CUDA and 1 elsewhere.

    It also tells :mod:`segbook.notebook` what this run is (seed, device, profile, data), so a
    claim that fails can say what differs from the book's reference run.
    """
    seed = positive_int(seed, "seed", minimum=0)
    seed = int(seed) + seed_offset()
    seed_everything(seed)
    dev = pick_device(device)
    prof = get_profile(profile, device=dev)
    rt = Runtime(seed=seed, device=dev, profile=prof, data=get_data(data), data_root=get_data_root(data_root),
                 download=get_download(download), n_seeds=get_n_seeds(seeds, device=dev))
    from .notebook import set_run_context  # late: notebook.py must import without torch's runtime

    set_run_context(seed=rt.seed, device=rt.device.type, profile=rt.profile.name, data=rt.data)
    return rt

