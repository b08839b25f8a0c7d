"""tools/gpu_check.py --dry-run: the GPU check's code paths at tiny sizes on the CPU."""
from __future__ import annotations

import importlib.util
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "tools" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


def test_gpu_check_dry_run_passes_and_reports(tmp_path):
    mod = _load()
    out = tmp_path / "report.md"
    assert mod.main(["--dry-run", "--skip-chapters", "--out", str(out)]) == 0
    text = out.read_text()
    assert "AMP dtype chosen" in text and "all checks passed" in text
    assert "| FCN-8s |" in text and "residual_ratios (CPU batch, CUDA model): ok" in text
    assert "FAILED" not in text


def test_gpu_check_refuses_without_cuda_unless_dry(monkeypatch):
    mod = _load()
    monkeypatch.setattr(mod.torch.cuda, "is_available", lambda: False)
    assert mod.main(["--skip-chapters"]) == 2


def test_gpu_check_uses_the_packages_execution_decision():
    import segbook.execution

    mod = _load()
    assert mod.Execution is segbook.execution.Execution and mod.resolve_execution is segbook.execution.resolve_execution


def test_timed_batches_records_one_time_per_step_including_the_last():
    mod = _load()
    times = []
    x, y = mod.torch.zeros(2, 3, 4, 4), mod.torch.zeros(2, dtype=mod.torch.long)
    seen = sum(1 for _ in mod._timed_batches(x, y, 5, mod.torch.device("cpu"), times))
    assert seen == 5 and len(times) == 5 and all(t >= 0 for t in times)


def test_time_training_runs_the_packages_training_step_on_the_case():
    """The first recorded loss is the case's initial cross-entropy; the weights then move."""
    import torch
    import torch.nn.functional as F

    from segbook.execution import resolve_execution
    from segbook.models import cifar_resnet

    mod = _load()
    case = mod.ModelCase("ResNet-8", lambda: cifar_resnet(depth=8, width=4), (4, 3, 8, 8), "classification", 10)
    result = mod.time_training(case, resolve_execution(device="cpu"), 6)
    torch.manual_seed(0)
    model = case.build().train()
    x = torch.rand(4, 3, 8, 8)
    y = torch.randint(0, 10, (4,))
    assert abs(result["loss0"] - float(F.cross_entropy(model(x), y).detach())) < 1e-5
    assert result["finite"] and result["loss_last"] < result["loss0"] and result["ms"] > 0
