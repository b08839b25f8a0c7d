"""tests/conftest.py's autouse fixtures: one torch thread, no network but loopback, slow tests on request."""
from __future__ import annotations

import socket
import threading

import pytest
import torch

from conftest import SLOW_SKIP_REASON, slow_selected


def test_every_test_runs_with_one_torch_thread():
    assert torch.get_num_threads() == 1


@pytest.mark.default_threads
def test_default_threads_opts_out(_torch_threads_of_the_process):
    assert torch.get_num_threads() == _torch_threads_of_the_process  # torch's own count (1 under OMP_NUM_THREADS=1)


def test_a_thread_count_a_test_sets_is_undone_after_it_part_1():
    torch.set_num_threads(2)


def test_a_thread_count_a_test_sets_is_undone_after_it_part_2():
    assert torch.get_num_threads() == 1


@pytest.mark.parametrize("reach", [
    lambda: socket.create_connection(("example.org", 80), timeout=1),
    lambda: socket.getaddrinfo("example.org", 443),
    lambda: socket.socket().connect(("93.184.215.14", 80)),
    lambda: socket.socket().connect_ex(("93.184.215.14", 80)),
], ids=["create_connection", "getaddrinfo", "connect", "connect_ex"])
def test_the_network_is_off(reach):
    with pytest.raises(RuntimeError, match="network access in a test"):
        reach()


def test_loopback_stays_open():
    # the book check talks to a server on 127.0.0.1 and to ChromeDriver
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        accepted = threading.Thread(target=lambda: server.accept()[0].close(), daemon=True)
        accepted.start()
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        accepted.join(5)
    assert socket.getaddrinfo("localhost", port)


def test_slow_tests_run_only_when_asked(monkeypatch, pytestconfig):
    monkeypatch.delenv("SEGBOOK_SLOW", raising=False)
    monkeypatch.setattr(pytestconfig.option, "markexpr", "")
    assert not slow_selected(pytestconfig)
    monkeypatch.setattr(pytestconfig.option, "markexpr", "slow")
    assert slow_selected(pytestconfig)
    monkeypatch.setattr(pytestconfig.option, "markexpr", "")
    monkeypatch.setenv("SEGBOOK_SLOW", "1")
    assert slow_selected(pytestconfig)
    assert "-m slow" in SLOW_SKIP_REASON


def test_no_test_file_opts_in_to_what_is_autouse():
    """one_thread and offline apply to every test: a per-file opt-in would only suggest otherwise."""
    from pathlib import Path

    redundant = [p.name for p in sorted(Path(__file__).parent.glob("test_*.py"))
                 if p.name != Path(__file__).name
                 and any(f'usefixtures("{name}")' in p.read_text() for name in ("one_thread", "offline"))]
    assert not redundant, f"remove the usefixtures('one_thread'/'offline') lines from {redundant} (autouse in conftest.py)"
