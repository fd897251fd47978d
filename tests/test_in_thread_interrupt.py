"""Ctrl-C while a node marked in_thread is inside its worker thread, under `run_stream_async`.

asyncio.run turns Ctrl-C into a cancellation of its main task, delivered natively: it gets past
anyio's shield around the wait for a worker thread, so the consumer's task goes on (and ends
the run) while the thread is still inside the node. The run must wait for the call in
progress: a blocking node's generator is closed only once its step has ended (its `finally`
runs, once: no "generator already executing"), and a blocking exec / prep has finished before
the interrupt reaches the caller (nothing of the run still running after it).

Signals go to the main thread only, so each case runs in a child process (this file, run as a
script) that repeats it RUNS times, with the helpers of tests/test_bridges_interrupt.py: SIGINT
once the node says (a threading.Event) it is inside its blocking wait, re-sent on a bounded poll
until the loop's handler has seen it; every run prints one JSON line of what it saw.
"""

from __future__ import annotations

import gc
import json
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Dict, List

import anyio
import pytest

from pocketflow_stream import AsyncFlow, Node

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script in the child
from sigint_helpers import TIMEOUT, BlocksInAStep, chain, interrupter, once  # noqa: E402

RUNS = 30  # per case: the race showed up in 2 of 60, then 6 of 30 runs
CHILD_TIMEOUT = 240.0


# --- the child process ---------------------------------------------------------------------


class BlocksInAHook(Node):
    """Blocks its worker thread in `hook` (prep or exec) until released, saying when it got
    there and when it is done."""

    def __init__(
        self, hook: str, inside: threading.Event, release: threading.Event, log: List[str]
    ) -> None:
        super().__init__(in_thread=True)
        self.hook, self.inside, self.release, self.log = hook, inside, release, log

    def _block(self, hook: str) -> None:
        if hook == self.hook:
            self.inside.set()
            self.release.wait(TIMEOUT)
            self.log.append(f"{hook} finished")

    def prep(self, shared):
        self._block("prep")

    def exec(self, prep_res):
        self._block("exec")
        return "made"

    def post(self, shared, prep_res, exec_res):
        self.log.append("post")


def _a_run(case: str, backend: str) -> Dict[str, Any]:
    log: List[str] = []
    inside, release, handled = threading.Event(), threading.Event(), threading.Event()
    node: Any
    if case == "stream":
        node = BlocksInAStep(inside, release, log, False)
        node.in_thread = True
    elif case == "stream-resumed":
        node = BlocksInAStep(inside, release, log, True)
        node.in_thread = True
    else:
        node = BlocksInAHook(case, inside, release, log)
    flow = AsyncFlow(start=node)

    async def consume() -> None:
        loops_handler = signal.getsignal(signal.SIGINT)  # asyncio's or trio's, installed now
        assert callable(loops_handler)
        signal.signal(signal.SIGINT, once(handled, loops_handler))
        async with flow.run_stream_async({}) as stream:
            async for _ in stream:
                pass
        if stream.paused is not None:  # the resumed case: paused on its Ask, answered here
            answers = {stream.paused.interrupts[0].id: "yes"}
            async with stream.paused.resume_async(answers) as resumed:
                async for _ in resumed:
                    pass

    helper = interrupter(inside, handled, release)
    seen: Dict[str, Any] = {"raised": ["nothing"]}
    try:
        anyio.run(consume, backend=backend)
    except BaseException as error:  # what reached the caller, as it was, and what had run
        seen = {"raised": chain(error), "log": list(log)}
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    helper.join()
    gc.collect()  # a generator left unclosed would run its finally now: seen in "later"
    seen["later"] = log[len(seen.get("log", [])) :]
    return seen


def _child(argv: List[str]) -> None:
    case, backend, runs = argv[0], argv[1], int(argv[2])
    for _ in range(runs):
        print(json.dumps(_a_run(case, backend)), flush=True)


# --- the tests -----------------------------------------------------------------------------


def _tally(case: str, backend: str) -> List[Any]:
    done = subprocess.run(
        [sys.executable, __file__, case, backend, str(RUNS)],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # nothing went wrong on the way out either
    runs = [line for line in done.stdout.splitlines()]
    assert len(runs) == RUNS
    counted: Dict[str, int] = {}
    for run in runs:
        counted[run] = counted.get(run, 0) + 1
    return sorted(counted.items())


def _expected(backend: str, log: List[str]) -> List[Any]:
    # asyncio.run raises the KeyboardInterrupt while handling its main task's cancellation
    # (that is how asyncio turns Ctrl-C into a cancellation); trio raises it plain.
    raised = ["KeyboardInterrupt"] + (["CancelledError"] if backend == "asyncio" else [])
    return [(json.dumps({"raised": raised, "log": log, "later": []}), RUNS)]


BACKENDS = ["asyncio", "trio"]


@pytest.mark.parametrize("case", ["stream", "stream-resumed"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_ctrl_c_during_a_threaded_step_closes_the_generator_after_the_step(backend, case):
    # The step in progress finished, then the generator was closed (its finally ran once, in
    # a thread the loop waited for) before anyio.run raised; nothing ran after. A resumed run
    # the same (its pause closed nothing).
    assert _tally(case, backend) == _expected(backend, ["step finished", "finally"])


@pytest.mark.parametrize("hook", ["prep", "exec"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_ctrl_c_during_a_threaded_hook_waits_for_it(backend, hook):
    # The blocking hook had finished before anyio.run raised (the run waited for its thread);
    # the run went no further: no post, nothing later.
    assert _tally(hook, backend) == _expected(backend, [f"{hook} finished"])


if __name__ == "__main__":
    _child(sys.argv[1:])
