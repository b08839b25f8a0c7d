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
