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
