"""Fixtures shared by the unit tests, and their time limit."""
from __future__ import annotations

import socket

import pytest
import torch

UNIT_TEST_TIMEOUT_S = 120  # generous for a unit test; notebook cells get pyproject's 900 s
# Files whose tests run whole chapters, virtual environments or a browser in subprocesses (their
# module fixtures' set-up counts against the first test's limit).
SLOW_FILE_TIMEOUT_S = {"test_colab.py": 1800, "test_chapter_real_data.py": 1000, "test_book.py": 900,
                       "test_layout.py": 600}


def pytest_collection_modifyitems(config, items):
    """Unit tests without their own ``@pytest.mark.timeout`` get :data:`UNIT_TEST_TIMEOUT_S`
    (or their file's :data:`SLOW_FILE_TIMEOUT_S`)."""
    for item in items:
        path = str(item.fspath)
        if item.get_closest_marker("timeout") is None and path.endswith(".py"):
            name = path.rsplit("/", 1)[-1]
            item.add_marker(pytest.mark.timeout(SLOW_FILE_TIMEOUT_S.get(name, UNIT_TEST_TIMEOUT_S)))


@pytest.fixture
def one_thread():
    """Run a test with one intra-op thread: the tensors here are tiny, so one thread is faster, and
    far faster on a busy 2-core machine. Files opt in with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def offline(monkeypatch):
    """Any attempt to reach the network fails loudly (datasets must load from local files only).
    Files opt in with ``pytestmark = pytest.mark.usefixtures("offline")``."""

    def refuse(*args, **kwargs):
        raise RuntimeError("network access in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
