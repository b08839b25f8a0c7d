"""Tests for benchmarks/harness.py (timing, medians, ratios) with a fake clock: nothing here is timed."""
import importlib.util
import pathlib
import sys

import pytest

BENCHMARKS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name):
    # benchmarks/ is not a package; load its modules by path under names that cannot clash
    sys.path.insert(0, str(BENCHMARKS))  # run.py imports its sibling harness.py
    try:
        spec = importlib.util.spec_from_file_location(f"segbook_benchmarks_{name}", BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCHMARKS))


harness = _load("harness")
Timing, markdown_table, paired_ratio, ratio = harness.Timing, harness.markdown_table, harness.paired_ratio, harness.ratio
time_call, time_interleaved = harness.time_call, harness.time_interleaved


class FakeClock:
    """A clock that only moves when a fake workload advances it."""

    def __init__(self):
        self.now = 100.0
        self.reads = 0

    def __call__(self):
        self.reads += 1
        return self.now


def workload(clock, durations, log=None, name=None):
    """A callable that advances ``clock`` by the next of ``durations`` on each call."""
    it = iter(durations)

    def call():
        if log is not None:
            log.append(name)
        clock.now += next(it)
    return call


def test_time_call_drops_warmup_and_takes_the_median():
    clock = FakeClock()
    # two warm-up calls (slow: 9 s, 7 s), then five timed ones
    fn = workload(clock, [9.0, 7.0, 1.0, 3.0, 2.0, 50.0, 2.5])
    t = time_call(fn, warmup=2, repeats=5, clock=clock, name="f")
    assert t.samples == [1.0, 3.0, 2.0, 50.0, 2.5]
    assert t.median == 2.5  # the 50 s outlier does not move the median
    assert t.spread == pytest.approx((50.0 - 1.0) / 2.5)
    assert clock.reads == 10  # two reads per timed call, none for warm-up


def test_time_call_syncs_around_every_read():
    clock, events = FakeClock(), []
    fn = workload(clock, [1.0] * 3)
    time_call(lambda: (events.append("call"), fn()), warmup=1, repeats=2, clock=clock,
              sync=lambda: events.append("sync"))
    assert events == ["call", "sync", "call", "sync", "sync", "call", "sync"]


def test_time_interleaved_alternates_the_order_and_pairs_rounds():
    clock, log = FakeClock(), []
    a = workload(clock, [5.0, 5.0, 2.0, 4.0, 6.0], log, "a")
    b = workload(clock, [5.0, 5.0, 1.0, 2.0, 3.0], log, "b")
    t = time_interleaved({"a": a, "b": b}, warmup=2, repeats=3, clock=clock)
    assert log == ["a", "b", "b", "a",  # warm-up rounds, the second reversed
                   "a", "b", "b", "a", "a", "b"]
    assert t["a"].samples == [2.0, 4.0, 6.0] and t["b"].samples == [1.0, 2.0, 3.0]
    assert ratio(t["a"], t["b"]) == pytest.approx(4.0 / 2.0)
    assert paired_ratio(t["a"], t["b"]) == pytest.approx(2.0)


def test_paired_ratio_cancels_load_that_drifts_between_rounds():
    # a is always 10% slower than b, but the machine gets 3x slower halfway through the rounds
    load = [1, 1, 3, 3, 3]
    a = Timing("a", [1.1 * f for f in load])
    b = Timing("b", [1.0 * f for f in [1, 1, 1, 3, 3]])  # b's third round ran before the slowdown
    assert paired_ratio(a, b) == pytest.approx(1.1)
    assert ratio(a, b) == pytest.approx(3.3 / 1.0)  # the ratio of medians is fooled


def test_ratio_and_paired_ratio_reject_bad_input():
    with pytest.raises(ValueError, match="not positive"):
        ratio(Timing("a", [1.0]), Timing("b", [0.0]))
    with pytest.raises(ValueError, match="same"):
        paired_ratio(Timing("a", [1.0, 2.0]), Timing("b", [1.0]))
    with pytest.raises(ValueError, match="positive"):
        paired_ratio(Timing("a", [1.0]), Timing("b", [0.0]))
    with pytest.raises(ValueError, match="no timed samples"):
        Timing("empty").median


@pytest.mark.parametrize("warmup, repeats", [(-1, 3), (0, 0), (1.5, 3), (True, 3)])
def test_counts_are_checked(warmup, repeats):
    with pytest.raises(ValueError):
        time_call(lambda: None, warmup=warmup, repeats=repeats, clock=FakeClock())
    with pytest.raises(ValueError):
        time_interleaved({"f": lambda: None}, warmup=warmup, repeats=repeats, clock=FakeClock())


def test_time_interleaved_needs_a_callable():
    with pytest.raises(ValueError, match="at least one"):
        time_interleaved({}, clock=FakeClock())


def test_markdown_table():
    text = markdown_table([{"model": "a", "ratio": "1.02"}, {"model": "b"}])
    assert text.splitlines() == ["| model | ratio |", "|---|---|", "| a | 1.02 |", "| b |  |"]
    assert markdown_table([]) == ""
    assert harness.__all__  # the module documents its API


def test_run_with_peak_rss_reports_status_and_memory():
    # run.py's chapter wrapper on a tiny child that allocates ~60 MiB: exit status and a peak above it
    # and that busies the CPU for 0.3 s and then sleeps 0.4 s: CPU time counts the first, wall time both
    run = _load("run")
    code = ("import sys, time; b = bytearray(60 * 2**20); b[::4096] = b'x' * len(b[::4096])\n"
            "t = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n"
            "time.sleep(0.4); sys.exit(3)")
    rc, seconds, mib, cpu = run.run_with_peak_rss([sys.executable, "-c", code])
    assert rc == 3 and mib > 60
    assert cpu >= 0.3                      # the child's CPU seconds (user + system), not the wrapper's
    assert seconds >= 0.7 and seconds >= cpu + 0.35  # wall time includes the sleep, which costs no CPU


def test_chapter_budgets_follow_the_issues():
    # chapter 5 (DeepLab + CRF) has 4 minutes, every other chapter 3; every listed notebook exists
    run = _load("run")
    assert run.chapter_budget_s("05_deeplab_crf.ipynb") == 240
    assert run.chapter_budget_s("01_backbones.ipynb") == run.chapter_budget_s("04_unet_sizes.ipynb") == 180
    chapters = pathlib.Path(__file__).resolve().parents[1] / "chapters"
    assert all((chapters / name).is_file() for name in run.CHAPTER_BUDGET_S)


# ----------------------------------------------------------------------------------------------
# benchmarks/models.py: segbook's ResNet backbone as torchvision's ImageNet classifier
# ----------------------------------------------------------------------------------------------
def _copy_state_in_order(source, target):
    src, dst = list(source.state_dict().values()), target.state_dict()
    assert len(src) == len(dst)
    assert [tuple(t.shape) for t in dst.values()] == [tuple(s.shape) for s in src]
    target.load_state_dict(dict(zip(dst.keys(), src)))


@pytest.mark.parametrize("depth", [18, 50])
def test_resnet_classifier_is_torchvisions_imagenet_resnet(depth):
    import torch
    import torchvision

    models = _load("models")
    reference = {18: torchvision.models.resnet18, 50: torchvision.models.resnet50}[depth]
    ours, theirs = models.resnet_classifier(depth=depth, num_classes=7), reference(num_classes=7)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
    _copy_state_in_order(theirs, ours)  # same tensors, same order, same shapes
    x = torch.rand(2, 3, 64, 80)
    with torch.inference_mode():
        out = ours.eval()(x)
        assert out.shape == (2, 7)
        torch.testing.assert_close(out, theirs.eval()(x), rtol=1e-4, atol=1e-5)


def test_resnet_classifier_checks_its_arguments():
    import torch

    from segbook.models.backbones import resnet_backbone

    models = _load("models")
    with pytest.raises(ValueError, match="output-stride-32"):
        models.ResNetClassifier(resnet_backbone(depth=10, width=4, output_stride=16))
    with pytest.raises(ValueError, match="num_classes"):
        models.resnet_classifier(depth=10, width=4, num_classes=0)
    with pytest.raises(TypeError, match="num_classes"):
        models.resnet_classifier(depth=10, width=4, num_classes=2.0)
    with pytest.raises(ValueError, match="3 input channels"):
        models.resnet_classifier(depth=10, width=4)(torch.rand(1, 1, 64, 64))


def test_run_asks_the_package_for_its_device(monkeypatch):
    """benchmarks/run.py has no device rule of its own: --device goes through segbook.runtime.pick_device,
    which refuses a CUDA device that is not there with a message saying what to pass instead."""
    import torch

    run = _load("run")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        run.main(["--device", "cuda", "--sections", "crf", "--quick"])
