"""Tests for segbook.runtime: seeding, device choice, profiles, Colab detection, setup()."""
from __future__ import annotations

import random
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from segbook import runtime
from segbook.runtime import (
    PROFILE_ENV,
    SEED_STRIDE,
    SEEDS_ENV,
    get_n_seeds,
    PROFILES,
    Profile,
    Runtime,
    get_profile,
    in_colab,
    pick_device,
    seed_everything,
    setup,
)


@pytest.fixture(autouse=True)
def _no_profile_env(monkeypatch):
    """Tests start without $SEGBOOK_PROFILE or the data variables (CI may set them); each test sets what it needs."""
    monkeypatch.delenv(PROFILE_ENV, raising=False)
    for name in (runtime.DATA_ENV, runtime.DATA_ROOT_ENV, runtime.DOWNLOAD_ENV):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def no_accelerator(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(runtime, "_mps_available", lambda: False)


def _draws():
    return (
        random.random(),
        random.randint(0, 10**9),
        np.random.rand(4).tolist(),
        torch.rand(5).tolist(),
        torch.randint(0, 10**6, (3,)).tolist(),
    )


# ---------------------------------------------------------------------------------------------
# seed_everything
# ---------------------------------------------------------------------------------------------
def test_seed_everything_same_seed_same_draws():
    assert seed_everything(123) == 123
    first = _draws()
    seed_everything(123)
    assert _draws() == first


def test_seed_everything_different_seed_different_draws():
    seed_everything(1)
    a = _draws()
    seed_everything(2)
    b = _draws()
    for x, y in zip(a, b):
        assert x != y


def test_seed_everything_seeds_each_library_like_its_own_seed_function():
    seed_everything(7)
    got = _draws()
    random.seed(7)
    np.random.seed(7)
    torch.manual_seed(7)
    assert _draws() == got


def test_seed_everything_accepts_numpy_int_and_large_seed():
    assert seed_everything(np.int64(5)) == 5
    assert type(seed_everything(np.int64(5))) is int
    a = np.random.rand()
    seed_everything(5)
    assert np.random.rand() == a
    # numpy only takes 32-bit seeds: larger ones are reduced, not rejected
    big = 2**32 + 5
    assert seed_everything(big) == big
    assert np.random.rand() == a


def test_seed_everything_deterministic_flags():
    old = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    try:
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.deterministic = False
        seed_everything(0, deterministic=False)
        assert torch.backends.cudnn.benchmark is True
        assert torch.backends.cudnn.deterministic is False
        seed_everything(0)
        assert torch.backends.cudnn.benchmark is False
        assert torch.backends.cudnn.deterministic is True
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = old


@pytest.mark.parametrize("bad, error", [(-1, ValueError), (1.5, TypeError), ("0", TypeError), (None, TypeError),
                                        (True, TypeError), (False, TypeError), ([0], TypeError)])
def test_seed_everything_rejects_bad_seeds(bad, error):
    with pytest.raises(error, match="seed must be a non-negative int"):
        seed_everything(bad)


# ---------------------------------------------------------------------------------------------
# pick_device
# ---------------------------------------------------------------------------------------------
def test_pick_device_is_cpu_here():
    if torch.cuda.is_available():  # pragma: no cover - the test machine is CPU-only
        pytest.skip("CUDA machine")
    dev = pick_device()
    assert isinstance(dev, torch.device)
    assert dev.type in ("cpu", "mps")


def test_pick_device_falls_back_to_cpu(no_accelerator):
    assert pick_device() == torch.device("cpu")


def test_pick_device_prefers_cuda_then_mps(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(runtime, "_mps_available", lambda: True)
    assert pick_device() == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device() == torch.device("mps")


def test_pick_device_explicit_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # an explicit choice wins
    assert pick_device("cpu") == torch.device("cpu")


def test_pick_device_explicit_cuda_when_available(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device("cuda:1") == torch.device("cuda", 1)


@pytest.mark.parametrize("asked", ["cuda", "cuda:0", "cuda:1"])
def test_pick_device_cuda_unavailable_raises_helpful_error(no_accelerator, asked):
    with pytest.raises(RuntimeError) as err:
        pick_device(asked)
    msg = str(err.value)
    assert repr(asked) in msg
    assert "CUDA is not available" in msg
    assert "prefer='cpu'" in msg


def test_pick_device_mps_unavailable_raises(no_accelerator):
    with pytest.raises(RuntimeError, match="Apple MPS is not available"):
        pick_device("mps")


def test_pick_device_nonsense_name_raises():
    with pytest.raises(RuntimeError):
        pick_device("tpu-banana")


# ---------------------------------------------------------------------------------------------
# Profile and get_profile
# ---------------------------------------------------------------------------------------------
def test_every_profile_is_chosen_by_name_and_by_the_environment(monkeypatch):
    for name in PROFILES:
        assert get_profile(name) == Profile(name)
        monkeypatch.setenv(PROFILE_ENV, f" {name.upper()} ")
        assert get_profile() == Profile(name)
    monkeypatch.setenv(PROFILE_ENV, "medium")
    with pytest.raises(ValueError, match=re.escape(f"unknown profile 'medium' (from the ${PROFILE_ENV}); expected one of {PROFILES}")):
        get_profile()


def test_profile_choose_and_flags():
    q, f = Profile("quick"), Profile("full")
    assert q.is_quick and not q.is_full
    assert f.is_full and not f.is_quick
    assert q.choose(quick=3, full=30) == 3
    assert f.choose(quick=3, full=30) == 30
    sentinel_q, sentinel_f = object(), object()
    assert q.choose(quick=sentinel_q, full=sentinel_f) is sentinel_q
    assert f.choose(quick=sentinel_q, full=sentinel_f) is sentinel_f


def test_profile_choose_is_keyword_only():
    with pytest.raises(TypeError):
        Profile("quick").choose(3, 30)


def test_profile_rejects_unknown_name_and_is_frozen():
    with pytest.raises(ValueError, match="unknown profile 'medium'"):
        Profile("medium")
    with pytest.raises(ValueError):  # Profile itself is exact; get_profile normalises case
        Profile("Quick")
    p = Profile("quick")
    with pytest.raises(Exception):
        p.name = "full"  # type: ignore[misc]
    assert Profile("full") == Profile("full")


def test_get_profile_default_quick_on_cpu(no_accelerator):
    assert get_profile() == Profile("quick")
    assert get_profile(device="cpu") == Profile("quick")
    assert get_profile(device=torch.device("cpu")).name == "quick"


def test_get_profile_quick_on_cuda_too():
    # the verified default: full is opt-in only (not verified end to end)
    assert get_profile(device="cuda") == Profile("quick")
    assert get_profile(device=torch.device("cuda", 0)) == Profile("quick")


def test_get_profile_default_is_quick_with_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert get_profile() == Profile("quick")


@pytest.mark.parametrize("value,expected", [
    ("full", "full"), ("quick", "quick"), ("FULL", "full"), ("Quick", "quick"), ("  full \n", "full"),
])
def test_get_profile_env_override_case_insensitive(monkeypatch, value, expected):
    monkeypatch.setenv(PROFILE_ENV, value)
    assert get_profile(device="cpu").name == expected


def test_get_profile_env_beats_device(monkeypatch):
    monkeypatch.setenv(PROFILE_ENV, "quick")
    assert get_profile(device="cuda").name == "quick"
    monkeypatch.setenv(PROFILE_ENV, "full")
    assert get_profile(device="cpu").name == "full"


def test_get_profile_blank_env_means_automatic(monkeypatch, no_accelerator):
    monkeypatch.setenv(PROFILE_ENV, "   ")
    assert get_profile().name == "quick"
    assert get_profile(device="cuda").name == "quick"


def test_get_profile_argument_beats_env(monkeypatch):
    monkeypatch.setenv(PROFILE_ENV, "full")
    assert get_profile("quick").name == "quick"
    monkeypatch.setenv(PROFILE_ENV, "quick")
    assert get_profile("FULL", device="cpu").name == "full"
    # a broken env var does not matter when the argument decides
    monkeypatch.setenv(PROFILE_ENV, "garbage")
    assert get_profile("quick").name == "quick"


def test_get_profile_unknown_env_value_names_valid_profiles(monkeypatch):
    monkeypatch.setenv(PROFILE_ENV, "turbo")
    with pytest.raises(ValueError) as err:
        get_profile()
    msg = str(err.value)
    assert "'turbo'" in msg
    assert "quick" in msg and "full" in msg
    assert f"${PROFILE_ENV}" in msg  # says where the bad value came from


def test_get_profile_unknown_argument_names_valid_profiles():
    with pytest.raises(ValueError) as err:
        get_profile("fast")
    msg = str(err.value)
    assert "'fast'" in msg and "argument" in msg
    assert "('quick', 'full')" in msg


def test_get_profile_empty_argument_is_an_error():
    with pytest.raises(ValueError, match="unknown profile"):
        get_profile("")


def test_get_profile_non_string_argument():
    with pytest.raises(TypeError, match="must be a str"):
        get_profile(1)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# in_colab, Runtime, setup
# ---------------------------------------------------------------------------------------------
def test_in_colab(monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    assert in_colab() is False
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    assert in_colab() is True


def test_setup_on_cpu(no_accelerator):
    rt = setup(seed=3)
    assert isinstance(rt, Runtime)
    assert rt.seed == 3
    assert rt.device == torch.device("cpu")
    assert rt.profile == Profile("quick")
    assert rt.amp is False
    assert rt.profile.choose(quick="q", full="f") == "q"


def test_setup_seeds_everything():
    setup(seed=11)
    a = _draws()
    setup(seed=11)
    assert _draws() == a
    setup(seed=12)
    assert _draws() != a


def test_setup_profile_argument_and_env(monkeypatch, no_accelerator):
    assert setup(profile="full").profile.name == "full"
    monkeypatch.setenv(PROFILE_ENV, "Full")
    assert setup().profile.name == "full"
    assert setup(profile="quick").profile.name == "quick"


def test_setup_forced_cuda_unavailable_raises(no_accelerator):
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        setup(device="cuda")


def test_setup_bad_seed_and_profile():
    with pytest.raises(ValueError, match="seed"):
        setup(seed=-3)
    with pytest.raises(ValueError, match="unknown profile"):
        setup(profile="slow", device="cpu")


def test_runtime_amp_only_on_cuda():
    assert Runtime(0, torch.device("cuda"), Profile("full")).amp is True
    assert Runtime(0, torch.device("cpu"), Profile("full")).amp is False


def test_runtime_str(monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    rt = Runtime(seed=0, device=torch.device("cpu"), profile=Profile("quick"))
    expected = (f"segbook profile=quick device=cpu seed=0 seeds=1 torch={torch.__version__} "
                f"threads={torch.get_num_threads()} colab=False data=shapes")
    assert str(rt) == expected
    assert "\n" not in str(rt)
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    rt2 = Runtime(seed=0, device=torch.device("cuda", 0), profile=Profile("full"))
    s = str(rt2)
    assert s.startswith("segbook profile=full device=cuda:0 seed=0 seeds=1 torch=")
    assert s.endswith("colab=True data=shapes")


# ---------------------------------------------------------------------------------------------
# seed offset ($SEGBOOK_SEED_OFFSET, set by tools/execute_chapters.py --seed N)
# ---------------------------------------------------------------------------------------------
def test_setup_adds_seed_offset(monkeypatch, no_accelerator):
    monkeypatch.delenv(runtime.SEED_OFFSET_ENV, raising=False)
    assert setup(seed=3).seed == 3
    monkeypatch.setenv(runtime.SEED_OFFSET_ENV, "2")
    rt = setup(seed=3)
    assert rt.seed == 5 and "seed=5" in str(rt)
    a = torch.rand(3)
    seed_everything(5)
    assert torch.equal(torch.rand(3), a)


@pytest.mark.parametrize("raw", ["-1", "x", "1.5"])
def test_seed_offset_rejects_bad_values(monkeypatch, raw):
    monkeypatch.setenv(runtime.SEED_OFFSET_ENV, raw)
    with pytest.raises(ValueError, match="SEGBOOK_SEED_OFFSET"):
        runtime.seed_offset()


# ---------------------------------------------------------------------------------------------
# data choice ($SEGBOOK_DATA, $SEGBOOK_DATA_ROOT, $SEGBOOK_DOWNLOAD)
# ---------------------------------------------------------------------------------------------
def test_data_defaults_to_shapes(no_accelerator, monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    rt = setup()
    assert rt.data == "shapes" and rt.download is False
    assert rt.data_root == Path("~/.cache/segbook").expanduser()
    assert str(rt).endswith(" data=shapes")
    assert Runtime(0, torch.device("cpu"), Profile("quick")).data == "shapes"


@pytest.mark.parametrize("name", runtime.DATA_CHOICES)
def test_data_from_env_and_argument(no_accelerator, monkeypatch, name):
    monkeypatch.setenv(runtime.DATA_ENV, name.upper())
    assert setup().data == name
    assert setup(data="shapes").data == "shapes"  # the argument wins over the environment


def test_real_data_is_printed_with_root_and_download(no_accelerator, monkeypatch, tmp_path):
    monkeypatch.setenv(runtime.DATA_ROOT_ENV, str(tmp_path))
    rt = setup(data="pets")
    assert rt.data_root == tmp_path
    assert str(rt).endswith(f" data=pets(root={tmp_path}, download=False)")


@pytest.mark.parametrize("bad", ["imagenet", "", "shape"])
def test_unknown_data_is_a_clear_error(no_accelerator, monkeypatch, bad):
    with pytest.raises(ValueError, match=r"unknown data .*expected one of \('shapes', 'cifar10', 'pets', 'voc'\)"):
        setup(data=bad)
    if bad:
        monkeypatch.setenv(runtime.DATA_ENV, bad)
        with pytest.raises(ValueError, match=r"from the \$SEGBOOK_DATA"):
            setup()
    with pytest.raises(TypeError, match="data must be a str"):
        setup(data=3)
    with pytest.raises(ValueError, match="data must be one of"):
        Runtime(0, torch.device("cpu"), Profile("quick"), data="mnist")


def test_download_on_in_colab_only(no_accelerator, monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    assert setup(data="pets").download is False
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    assert setup(data="pets").download is True
    assert setup(data="pets", download=False).download is False
    monkeypatch.setenv(runtime.DOWNLOAD_ENV, "0")
    assert setup(data="pets").download is False
    monkeypatch.delitem(sys.modules, "google.colab")
    monkeypatch.setenv(runtime.DOWNLOAD_ENV, "yes")
    assert setup(data="pets").download is True
    monkeypatch.setenv(runtime.DOWNLOAD_ENV, "maybe")
    with pytest.raises(ValueError, match="SEGBOOK_DOWNLOAD"):
        setup()
    with pytest.raises(TypeError, match="download must be"):
        runtime.get_download("yes")


def test_data_root_expands_user(monkeypatch):
    monkeypatch.setenv("HOME", "/home/learner")
    assert runtime.get_data_root("~/d") == Path("/home/learner/d")
    monkeypatch.setenv(runtime.DATA_ROOT_ENV, "~/data")
    assert runtime.get_data_root() == Path("/home/learner/data")


def test_data_choice_keeps_seed_semantics(no_accelerator, monkeypatch):
    monkeypatch.setenv(runtime.SEED_OFFSET_ENV, "2")
    assert setup(seed=1, data="voc").seed == 3


# ---------------------------------------------------------------------------------------------
# seeds ($SEGBOOK_SEEDS): how many seeds compared trainings repeat over
# ---------------------------------------------------------------------------------------------

def test_n_seeds_default_one_on_cpu_three_on_cuda(monkeypatch):
    monkeypatch.delenv(SEEDS_ENV, raising=False)
    assert get_n_seeds(device="cpu") == 1
    assert get_n_seeds(device="cuda") == 3


def test_n_seeds_env_and_argument(monkeypatch):
    monkeypatch.setenv(SEEDS_ENV, "3")
    assert get_n_seeds(device="cpu") == 3
    assert get_n_seeds(2, device="cpu") == 2
    for bad in ("0", "-1", "three"):
        monkeypatch.setenv(SEEDS_ENV, bad)
        with pytest.raises(ValueError, match="SEGBOOK_SEEDS must be a positive integer"):
            get_n_seeds(device="cpu")


def test_runtime_seeds_follow_the_offset(monkeypatch):
    monkeypatch.setenv(SEEDS_ENV, "3")
    monkeypatch.setenv("SEGBOOK_SEED_OFFSET", "1")
    rt = setup(seed=0, device="cpu")
    assert rt.seed == 1 and rt.n_seeds == 3
    assert rt.seeds == (1, 1 + SEED_STRIDE, 1 + 2 * SEED_STRIDE)
    assert setup(seed=0, device="cpu", seeds=1).seeds == (1,)
    with pytest.raises(ValueError, match="seeds"):
        Runtime(0, torch.device("cpu"), Profile("quick"), n_seeds=0)
