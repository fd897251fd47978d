"""Shared fixtures."""

from __future__ import annotations

import warnings

import pocketflow
import pytest

import pocketflow_stream
from pocketflow_stream.llm.replay_server import ReplayServer


@pytest.fixture
def replay_server(monkeypatch):
    """A started loopback SSE replay server, stopped after the test."""
    # A proxy configured in the environment must not intercept loopback requests.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    with ReplayServer() as server:
        yield server


@pytest.fixture(params=[pocketflow, pocketflow_stream], ids=["pocketflow", "ours"])
def module(request):
    """Runs a test against PocketFlow 0.0.3 and against pocketflow_stream: same app, same
    observable behaviour demanded."""
    return request.param


def _caught_warnings(run):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run()
    return result, [str(warning.message) for warning in caught]


@pytest.fixture
def caught_warnings():
    """`caught_warnings(run)`: run `run()`, return (its result, every warning's message)."""
    return _caught_warnings


@pytest.fixture
def differential():
    """`differential(build_and_run)`: run `build_and_run(module)` on both modules; return each
    one's (result, warnings), PocketFlow's first."""

    def run_on_both(build_and_run):
        return [
            _caught_warnings(lambda module=module: build_and_run(module))
            for module in (pocketflow, pocketflow_stream)
        ]

    return run_on_both


@pytest.fixture(params=["direct", "wrapped"])
def pass_through(request, monkeypatch):
    """The walk passes a node's generator straight to `yield from map(...)` where the Python
    lets its return value through (checked at import), else wraps it in `_capture`: every
    streaming rule must hold both ways."""
    from pocketflow_stream import engine

    if request.param == "wrapped":
        monkeypatch.setattr(engine, "_RETURN_PASSES_MAP", False)
    return request.param


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    """Every `@pytest.mark.anyio` test runs on asyncio and on trio (anyio's pytest plugin)."""
    return request.param
