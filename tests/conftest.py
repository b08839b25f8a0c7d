"""Fixtures shared by the unit tests."""
from __future__ import annotations

import socket

import pytest
import torch


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
