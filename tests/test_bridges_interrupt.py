"""Ctrl-C through the bridges: a KeyboardInterrupt reaches the consumer while it waits.

`run_stream_sync` / `resume_stream_sync`: the sync caller (the main thread) blocks in the portal
call while the node awaits on the event loop's thread; SIGINT ends that wait. The pull still
running on the loop must be cancelled and waited for before the run is closed, and the
KeyboardInterrupt must come out as itself: not a RuntimeError ("aclose(): asynchronous generator
is already running") with the interrupt as its context.

`run_stream_in_thread` / `resume_stream_in_thread`: the async consumer (the main task) waits
while a worker thread is inside a step of the sync generator; SIGINT reaches the event loop.
The step must end before the generator is closed (its `finally` runs in a thread, once).

Signals go to the main thread only, so each case runs in a child process (this file, run as a
script), which repeats it RUNS times: a helper thread sends SIGINT at the moment the node says
(a threading.Event) it is inside its wait, and every run prints one JSON line of what it saw.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from typing import Any, Callable, Dict, List, Tuple

import anyio
import pytest
from sigint_helpers import TIMEOUT, BlocksInAStep, chain, interrupter, once

from pocketflow_stream import (
    Ask,
    AsyncFlow,
    AsyncStreamNode,
    Flow,
    resume_stream_in_thread,
    resume_stream_sync,
    run_stream_in_thread,
    run_stream_sync,
)

RUNS = 30  # per case: the race this guards against showed up about 1 run in 3
CHILD_TIMEOUT = 240.0


# --- the child process ---------------------------------------------------------------------


class WaitsOnTheLoop(AsyncStreamNode):
    """Yields a chunk, then awaits until cancelled (saying when it got there)."""

    def __init__(self, inside: threading.Event, log: List[str], ask: bool) -> None:
        super().__init__()
        self.inside, self.log, self.ask = inside, log, ask

    async def exec_stream_async(self, prep_res):
        try:
            if self.ask:  # paused first, then resumed with resume_stream_sync
                yield (yield Ask({"question": "go on?"}))
            yield "first"
            self.inside.set()
            with anyio.move_on_after(TIMEOUT):
                await anyio.sleep_forever()
            self.log.append("not interrupted")
            yield "second"
        finally:
            self.log.append("finally")


def _other_threads() -> List[str]:
    return sorted(
        thread.name
        for thread in threading.enumerate()
        if thread is not threading.main_thread() and thread.name != "interrupter"
    )


def _through_the_portal(backend: str, ask: bool) -> Dict[str, Any]:
    log: List[str] = []
    inside = threading.Event()
    handled = threading.Event()
    flow = AsyncFlow(start=WaitsOnTheLoop(inside, log, ask))
    signal.signal(signal.SIGINT, once(handled, signal.default_int_handler))
    helper = interrupter(inside, handled)
    seen: Dict[str, Any] = {"raised": ["nothing"]}
    try:
        if ask:
            stream = run_stream_sync(flow, {}, backend=backend)
            while True:
                try:
                    next(stream)
                except StopIteration as stop:
                    paused = stop.value
                    break
            answers = {paused.interrupts[0].id: "yes"}
            for _ in resume_stream_sync(paused, answers, backend=backend):
                pass
        else:
            for _ in run_stream_sync(flow, {}, backend=backend):
                pass
    except BaseException as error:  # what reached the caller, as it was
        seen = {"raised": chain(error), "log": list(log), "threads": _other_threads()}
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    helper.join()
    return seen


def _from_a_thread(backend: str, ask: bool) -> Dict[str, Any]:
    log: List[str] = []
    inside, release, handled = threading.Event(), threading.Event(), threading.Event()
    flow = Flow(start=BlocksInAStep(inside, release, log, ask))

    async def consume() -> None:
        loops_handler = signal.getsignal(signal.SIGINT)  # asyncio's or trio's, installed now
        assert callable(loops_handler)
        signal.signal(signal.SIGINT, once(handled, loops_handler))
        if ask:
            async with run_stream_in_thread(flow, {}) as first:
                async for _ in first:
                    pass
            assert first.paused is not None
            answers = {first.paused.interrupts[0].id: "yes"}
            stream = resume_stream_in_thread(first.paused, answers)
        else:
            stream = run_stream_in_thread(flow, {})
        async with stream:
            async for _ in stream:
                pass

    helper = interrupter(inside, handled, release)
    seen: Dict[str, Any] = {"raised": ["nothing"]}
    try:
        anyio.run(consume, backend=backend)
    except BaseException as error:
        seen = {"raised": chain(error), "log": list(log)}
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    helper.join()
    return seen


CASES: Dict[str, Callable[[str, bool], Dict[str, Any]]] = {
    "portal": _through_the_portal,
    "thread": _from_a_thread,
}


def _child(argv: List[str]) -> None:
    case, backend, ask, runs = argv[0], argv[1], argv[2] == "resume", int(argv[3])
    for _ in range(runs):
        print(json.dumps(CASES[case](backend, ask)), flush=True)


# --- the tests -----------------------------------------------------------------------------


def _runs(case: str, backend: str, mode: str) -> List[Dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, __file__, case, backend, mode, str(RUNS)],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # nothing went wrong on the way out either
    runs = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(runs) == RUNS
    return runs


def _tally(runs: List[Dict[str, Any]]) -> List[Tuple[str, int]]:
    counted: Dict[str, int] = {}
    for run in runs:
        counted[json.dumps(run)] = counted.get(json.dumps(run), 0) + 1
    return sorted(counted.items())


BACKENDS = ["asyncio", "trio"]
MODES = ["run", "resume"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_ctrl_c_while_run_stream_sync_waits_raises_keyboard_interrupt_itself(backend, mode):
    runs = _runs("portal", backend, mode)

    # The interrupt came out as itself, with no context; the node's await was cancelled and
    # its finally ran (in the resumed case: once for the pause, once now); the event loop's
    # thread had ended when the exception reached the caller.
    finallies = ["finally"] * (2 if mode == "resume" else 1)
    expected = {"raised": ["KeyboardInterrupt"], "log": finallies, "threads": []}
    assert _tally(runs) == [(json.dumps(expected), RUNS)]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_ctrl_c_while_run_stream_in_thread_steps_waits_for_the_step_then_closes(backend, mode):
    runs = _runs("thread", backend, mode)

    # The step in progress finished, then the generator was closed (its finally ran, in a
    # thread the loop waited for) before anyio.run raised; a resumed run the same (a pause
    # closes nothing). asyncio.run raises the KeyboardInterrupt while handling its main task's
    # cancellation (that is how asyncio turns Ctrl-C into a cancellation); trio raises it plain.
    # (Idle worker threads of anyio's / trio's pools may outlive the run: not checked here.)
    raised = ["KeyboardInterrupt"] + (["CancelledError"] if backend == "asyncio" else [])
    expected = {"raised": raised, "log": ["step finished", "finally"]}
    assert _tally(runs) == [(json.dumps(expected), RUNS)]


if __name__ == "__main__":
    _child(sys.argv[1:])
