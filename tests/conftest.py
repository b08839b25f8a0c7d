"""Fixtures and hooks shared by the unit tests: one torch thread, no network, slow tests on request,
and a time limit for every test.

* **One intra-op thread** for every test (:func:`one_thread`, autouse; set once for the whole
  process too, so module-scoped fixtures get it): the tensors here are tiny, so one thread is faster,
  far faster on a busy 2-core machine, and the numbers do not move with the machine's core count. A
  test that needs torch's default thread count (e.g. to see work split between worker processes)
  opts out with ``@pytest.mark.default_threads``.
* **No network** (:func:`offline`, autouse): a connection to anything but this machine (loopback,
  Unix sockets) raises, so a dataset that tried to download fails loudly. Subprocesses are not
  covered; tests that start a chapter or a script patch ``socket`` there themselves.
* **Slow tests** (``@pytest.mark.slow``: whole chapters, the simulated Colab) are skipped unless
  selected with ``pytest -m slow ...`` or ``SEGBOOK_SLOW=1``.
"""
from __future__ import annotations

import os
import socket

import pytest
import torch

UNIT_TEST_TIMEOUT_S = 120  # generous for a unit test; notebook cells get pyproject's 900 s
# Files whose tests run whole chapters, virtual environments or a browser in subprocesses (their
# module fixtures' set-up counts against the first test's limit).
SLOW_FILE_TIMEOUT_S = {"test_colab.py": 1800, "test_chapter_real_data.py": 1000, "test_book.py": 900,
                       "test_layout.py": 600}
SLOW_SKIP_REASON = "slow: run with `pytest -m slow ...` (or set SEGBOOK_SLOW=1)"


def slow_selected(config) -> bool:
    """Whether this run asked for slow tests: ``-m`` names ``slow`` or ``SEGBOOK_SLOW=1``."""
    return os.environ.get("SEGBOOK_SLOW") == "1" or "slow" in (config.getoption("markexpr") or "")


def pytest_collection_modifyitems(config, items):
    """Unit tests without their own ``@pytest.mark.timeout`` get :data:`UNIT_TEST_TIMEOUT_S`
    (or their file's :data:`SLOW_FILE_TIMEOUT_S`); ``slow`` tests are skipped unless selected."""
    run_slow = slow_selected(config)
    for item in items:
        path = str(item.fspath)
        if item.get_closest_marker("timeout") is None and path.endswith(".py"):
            name = path.rsplit("/", 1)[-1]
            item.add_marker(pytest.mark.timeout(SLOW_FILE_TIMEOUT_S.get(name, UNIT_TEST_TIMEOUT_S)))
        if not run_slow and item.get_closest_marker("slow") is not None:
            item.add_marker(pytest.mark.skip(reason=SLOW_SKIP_REASON))


@pytest.fixture(scope="session", autouse=True)
def _torch_threads_of_the_process():
    """One intra-op thread for the whole test process (module fixtures included); yields the
    count torch started with, which ``default_threads`` tests get back."""
    start = torch.get_num_threads()
    torch.set_num_threads(1)
    yield start
    torch.set_num_threads(start)


@pytest.fixture(autouse=True)
def one_thread(request, _torch_threads_of_the_process):
    """Every test runs with one intra-op thread (``@pytest.mark.default_threads``: torch's default
    count instead); whatever a test sets is undone after it."""
    old = torch.get_num_threads()
    keep_default = request.node.get_closest_marker("default_threads") is not None
    torch.set_num_threads(_torch_threads_of_the_process if keep_default else 1)
    yield
    torch.set_num_threads(old)


_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0", "::", "", None}


def _is_local_host(host) -> bool:
    """``host`` (a name or an address, as ``getaddrinfo`` takes it) is this machine."""
    if isinstance(host, bytes):
        host = host.decode()
    return host in _LOOPBACK_HOSTS or (isinstance(host, str) and host.startswith("127."))


def _is_local(address) -> bool:
    """``address`` (as ``connect`` takes it) is this machine: a loopback ``(host, port, ...)`` or a Unix socket path."""
    return isinstance(address, (str, bytes)) or (isinstance(address, tuple) and _is_local_host(address[0]))


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Any attempt to reach another machine fails loudly (datasets must load from local files only);
    loopback stays open (the book check talks to a local server and ChromeDriver)."""
    connect, connect_ex = socket.socket.connect, socket.socket.connect_ex
    create_connection, getaddrinfo = socket.create_connection, socket.getaddrinfo

    def refuse(what, address):
        raise RuntimeError(f"network access in a test: {what}({address!r}); tests must not reach the network "
                           f"(write the files the test needs, see tests/fakedata.py)")

    def guarded_connect(self, address):
        if self.family == getattr(socket, "AF_UNIX", None) or _is_local(address):
            return connect(self, address)
        refuse("socket.connect", address)

    def guarded_connect_ex(self, address):
        if self.family == getattr(socket, "AF_UNIX", None) or _is_local(address):
            return connect_ex(self, address)
        refuse("socket.connect_ex", address)

    def guarded_create_connection(address, *args, **kwargs):
        if _is_local(address):
            return create_connection(address, *args, **kwargs)
        refuse("socket.create_connection", address)

    def guarded_getaddrinfo(host, *args, **kwargs):
        if _is_local_host(host):
            return getaddrinfo(host, *args, **kwargs)
        refuse("socket.getaddrinfo", host)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_connect_ex)
    monkeypatch.setattr(socket, "create_connection", guarded_create_connection)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
