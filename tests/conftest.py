"""Shared fixtures."""

from __future__ import annotations

import pytest

from pocketflow_stream.llm.replay_server import ReplayServer


@pytest.fixture
def replay_server(monkeypatch):
    """A started loopback SSE replay server, stopped after the test."""
    # A proxy configured in the environment must not intercept loopback requests.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    with ReplayServer() as server:
        yield server
