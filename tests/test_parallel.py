"""Tests for segbook.parallel: fit_many trains independent models, in forked processes on a multi-core CPU."""
from __future__ import annotations

import pytest
import torch

from segbook.data import make_loader
from segbook.parallel import fit_many, parallel_workers
from segbook.train import fit


def _seg_data(n=32, size=32, k=3):
    g = torch.Generator().manual_seed(0)
    return torch.utils.data.TensorDataset(torch.rand(n, 3, size, size, generator=g),
                                          torch.randint(0, k, (n, size, size), generator=g))


def _two_models(k=3):
    from segbook.models import fcn8s, unet
    torch.manual_seed(1)
    return {"fcn": fcn8s(num_classes=k, width=4), "unet": unet(num_classes=k, depth=2, width=4)}


FIT_ARGS = dict(task="segmentation", num_classes=3, epochs=2, lr=0.01, seed=5, channels_last=True)


@pytest.mark.skipif(parallel_workers(2, "cpu") < 2, reason="needs Linux and two usable cores")
def test_fit_many_in_processes_equals_fit_one_model_after_another():
    ds = _seg_data()
    make = lambda: make_loader(ds, 8, shuffle=True, seed=3, drop_last=True)  # noqa: E731
    parallel, sequential = _two_models(), _two_models()
    before = {k: v.clone() for k, v in parallel["unet"].state_dict().items()}
    threads = torch.get_num_threads()
    hist = fit_many(parallel, make, workers=2, **FIT_ARGS)
    assert torch.get_num_threads() == threads  # the parent's setting is untouched
    torch.set_num_threads(max(1, threads // 2))  # what each child used
    try:
        ref = {n: fit(m, make(), progress=False, log=False, desc=n, **FIT_ARGS) for n, m in sequential.items()}
    finally:
        torch.set_num_threads(threads)
    assert list(hist) == ["fcn", "unet"]
    for name in parallel:
        got, want = parallel[name].state_dict(), sequential[name].state_dict()
        assert all(torch.equal(got[k], want[k]) for k in want), name  # bitwise: same ops, same thread count
        assert hist[name].step_loss == ref[name].step_loss and len(hist[name].step_loss) == 8
        assert not parallel[name].training
    assert not all(torch.equal(before[k], parallel["unet"].state_dict()[k]) for k in before)  # it did train


def test_fit_many_with_one_worker_is_fit_in_order():
    ds = _seg_data()
    make = lambda: make_loader(ds, 8, shuffle=True, seed=3, drop_last=True)  # noqa: E731
    a, b = _two_models(), _two_models()
    hist = fit_many(a, make, workers=1, progress=False, log=False, **FIT_ARGS)
    for name in a:
        ref = fit(b[name], make(), progress=False, log=False, **FIT_ARGS)
        assert hist[name].step_loss == ref.step_loss
        assert all(torch.equal(a[name].state_dict()[k], v) for k, v in b[name].state_dict().items())


@pytest.mark.skipif(parallel_workers(2, "cpu") < 2, reason="needs Linux and two usable cores")
def test_fit_many_reports_a_failure_in_a_child_with_its_name_and_cause():
    bad, good = _seg_data(k=5), _seg_data()  # labels up to 4 for 3-class models: only fcn gets them
    makers = {"fcn": lambda: make_loader(bad, 8), "unet": lambda: make_loader(good, 8)}
    with pytest.raises(RuntimeError, match=r"training 'fcn' failed in a child process: ValueError: .*label"):
        fit_many(_two_models(), makers, workers=2, **FIT_ARGS)


def test_fit_many_gives_each_model_its_own_loader_when_given_a_mapping():
    # one factory per model (chapter 4's augmentation ablation): each model trains on its own data,
    # with the numbers fit gives it on that data, in processes or not
    ds_a, ds_b = _seg_data(), torch.utils.data.TensorDataset(*(t.flip(-1) for t in _seg_data().tensors))
    makers = {"fcn": lambda: make_loader(ds_a, 8, shuffle=True, seed=3, drop_last=True),
              "unet": lambda: make_loader(ds_b, 8, shuffle=True, seed=3, drop_last=True)}
    threads = torch.get_num_threads()
    for workers in (1, 2):
        got, ref = _two_models(), _two_models()
        hist = fit_many(got, makers, workers=workers, **FIT_ARGS)
        used = max(1, threads // min(workers, parallel_workers(2, "cpu")))
        torch.set_num_threads(used)
        try:
            want = {n: fit(m, makers[n](), progress=False, log=False, desc=n, **FIT_ARGS) for n, m in ref.items()}
        finally:
            torch.set_num_threads(threads)
        for name in got:
            assert hist[name].step_loss == want[name].step_loss, (workers, name)
    # the same model on the other loader would have seen other batches: the mapping is honoured
    swapped = _two_models()
    other = fit(swapped["unet"], makers["fcn"](), progress=False, log=False, **FIT_ARGS)
    assert other.step_loss != hist["unet"].step_loss
    with pytest.raises(ValueError, match=r"loaders for \['fcn'\] but the models are \['fcn', 'unet'\]"):
        fit_many(_two_models(), {"fcn": makers["fcn"]}, **FIT_ARGS)
    with pytest.raises(TypeError, match="callable that returns a fresh training loader"):
        fit_many(_two_models(), {"fcn": makers["fcn"], "unet": make_loader(ds_b, 8)}, **FIT_ARGS)


def test_fit_many_costs_change_the_start_order_not_the_numbers_and_val_loaders_may_differ():
    ds = _seg_data()
    make = lambda: make_loader(ds, 8, shuffle=True, seed=3, drop_last=True)  # noqa: E731
    vals = {"fcn": make_loader(_seg_data(n=8), 8), "unet": make_loader(_seg_data(n=8, size=16), 8)}
    for workers in (1, 2):
        plain, ordered = _two_models(), _two_models()
        want = fit_many(plain, make, workers=workers, val_loader=vals, **FIT_ARGS)
        got = fit_many(ordered, make, workers=workers, val_loader=vals, costs={"fcn": 1, "unet": 3.5}, **FIT_ARGS)
        assert list(got) == ["fcn", "unet"]                                  # returned in the order of models
        for name in plain:
            assert got[name].step_loss == want[name].step_loss, (workers, name)
            assert got[name].final == want[name].final
        assert got["fcn"].final != got["unet"].final                         # each scored on its own loader
    with pytest.raises(ValueError, match=r"costs must map every model name"):
        fit_many(_two_models(), make, costs={"fcn": 1}, **FIT_ARGS)
    with pytest.raises(ValueError, match=r"costs\['unet'\] must be a positive number"):
        fit_many(_two_models(), make, costs={"fcn": 1, "unet": 0}, **FIT_ARGS)
    with pytest.raises(ValueError, match=r"val_loader has loaders for \['fcn'\]"):
        fit_many(_two_models(), make, val_loader={"fcn": vals["fcn"]}, **FIT_ARGS)


def test_fit_many_rejects_bad_arguments():
    ds = _seg_data()
    loader = make_loader(ds, 8)
    with pytest.raises(TypeError, match="callable that returns a fresh training loader"):
        fit_many(_two_models(), loader, **FIT_ARGS)
    with pytest.raises(TypeError, match="do not pass desc="):
        fit_many(_two_models(), lambda: loader, desc="x", **FIT_ARGS)
    with pytest.raises(TypeError, match="non-empty mapping"):
        fit_many({}, lambda: loader, **FIT_ARGS)
    with pytest.raises(TypeError, match=r"models\['a'\] must be an nn.Module"):
        fit_many({"a": "resnet"}, lambda: loader, **FIT_ARGS)


def test_parallel_workers_uses_one_process_off_the_cpu_and_at_most_one_per_job():
    assert parallel_workers(5, "cuda") == 1 and parallel_workers(5, torch.device("cuda", 0)) == 1
    assert 1 <= parallel_workers(5, "cpu") <= 5 and parallel_workers(1, "cpu") == 1
    with pytest.raises(ValueError):
        parallel_workers(0)
