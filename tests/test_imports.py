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


def _reaches(graph: dict, start: str, target: str) -> bool:
    seen, todo = {start}, [start]
    while todo:
        for module in graph.get(todo.pop(), {}):
            if module == target:
                return True
            if module not in seen:
                seen.add(module)
                todo.append(module)
    return False


def test_models_do_not_import_analysis(tmp_path):
    """Model code does not depend on the measuring code (the chapter tables live in experiments/):
    no module of segbook.models imports segbook.analysis, in any spelling, directly or through
    another module, at module level or inside a function (read from the source, see
    tests/test_import_graph.py)."""
    from test_import_graph import PACKAGE_DIR, import_graph

    graph = import_graph(PACKAGE_DIR)
    models = [m for m in graph if m == "segbook.models" or m.startswith("segbook.models.")]
    assert len(models) >= 5
    assert not [m for m in models if _reaches(graph, m, "segbook.analysis")]
    # the check sees the spellings a line-based search misses
    for source in ("from .. import analysis\n", "def f():\n    from ..analysis import count_params\n"):
        fake = tmp_path / source.split("\n")[0].replace(" ", "_").replace(".", "_") / "segbook"
        (fake / "models").mkdir(parents=True)
        for rel in ("__init__.py", "analysis.py", "models/__init__.py"):
            (fake / rel).write_text("")
        (fake / "models" / "unet.py").write_text(source)
        assert _reaches(import_graph(fake), "segbook.models.unet", "segbook.analysis"), source
