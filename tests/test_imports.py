"""Importing segbook must be cheap and offline: no network, no downloads, no dataset folders."""
import subprocess
import sys
import textwrap


def test_every_module_imports_without_network():
    code = textwrap.dedent(
        """
        import importlib, pkgutil, socket
        def refuse(*args, **kwargs):
            raise RuntimeError("network access at import time")
        socket.socket.connect = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse
        import segbook
        names = [m.name for m in pkgutil.walk_packages(segbook.__path__, "segbook.")]
        for name in names:
            importlib.import_module(name)
        print(len(names))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) >= 8  # runtime, data.*, nn.*, models.*, metrics, train, viz, ...


def test_models_package_exports_models_only():
    """``segbook.models`` lists its names in ``__all__`` and re-exports no chapter demo code."""
    import segbook.models as models

    assert models.__all__ and len(models.__all__) == len(set(models.__all__))
    for name in models.__all__:
        assert hasattr(models, name), name
    for demo in ("train_deformable_demo", "TinyConvNet", "blob_pair_batch", "efficientnet_scaling_table"):
        assert not hasattr(models, demo), f"segbook.models still exposes the chapter helper {demo}"


def test_models_do_not_import_analysis():
    """Model code does not depend on the measuring code (the chapter tables live in experiments/)."""
    import pathlib
    import re

    import segbook

    models_dir = pathlib.Path(segbook.__file__).parent / "models"
    for path in models_dir.glob("*.py"):
        imports = re.findall(r"^\s*(?:from|import)\s+(\S+)", path.read_text(), re.M)
        assert not [m for m in imports if "analysis" in m], f"{path.name} imports {imports}"
