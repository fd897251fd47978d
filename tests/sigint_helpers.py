"""Ctrl-C helpers shared by the tests that interrupt a consumer while a node waits
(tests/test_bridges_interrupt.py, tests/test_in_thread_interrupt.py): a node that blocks its
worker thread inside a step, a thread that sends SIGINT to the main thread at the moment the
node says it is inside its wait, a handler that acts on the first signal only, and an
exception's chain by name."""

from __future__ import annotations

import signal
import threading
import time
from typing import Any, Callable, List, Optional

from pocketflow_stream import Ask, StreamNode

TIMEOUT = 10.0  # seconds any wait here gives up after (a broken bridge fails, never hangs)


class BlocksInAStep(StreamNode):
    """Yields a chunk, then blocks its worker thread until released (saying when it got
    there)."""

    def __init__(
        self, inside: threading.Event, release: threading.Event, log: List[str], ask: bool
    ) -> None:
        super().__init__()
        self.inside, self.release, self.log, self.ask = inside, release, log, ask

    def exec_stream(self, prep_res):
        try:
            if self.ask:  # paused first, then resumed with resume_stream_in_thread
                yield (yield Ask({"question": "go on?"}))
            yield "first"
            self.inside.set()
            self.release.wait(TIMEOUT)
            self.log.append("step finished")
            yield "second"
            yield "never consumed"
        finally:
            self.log.append("finally")


def interrupter(
    inside: threading.Event, handled: threading.Event, release: Optional[threading.Event] = None
) -> threading.Thread:
    """Once the node is inside its wait: SIGINT to the main thread, until its handler has run
    (a signal that lands just before the main thread blocks in a lock's wait is only seen
    when the wait ends: CPython's own race, so it is sent again until `handled`, and the
    handlers act on the first one only); then (a blocking node) release the node."""
    main = threading.main_thread().ident
    assert main is not None

    def interrupt() -> None:
        if not inside.wait(TIMEOUT):
            return
        deadline = time.monotonic() + TIMEOUT
        while not handled.is_set() and time.monotonic() < deadline:
            signal.pthread_kill(main, signal.SIGINT)
            handled.wait(0.05)  # a bounded poll for the handler, then a nudge again
        if release is not None:
            release.set()

    thread = threading.Thread(target=interrupt, name="interrupter")
    thread.start()
    return thread


def once(handled: threading.Event, handler: Callable[[int, Any], Any]) -> Callable[..., Any]:
    """A SIGINT handler: `handler` for the first signal (and a note that it ran), nothing for
    the nudges after it."""

    def first_only(signum: int, frame: Any) -> Any:
        if handled.is_set():
            return None
        handled.set()
        return handler(signum, frame)

    return first_only


def chain(error: BaseException) -> List[str]:
    """The exception and its contexts/causes, outermost first."""
    chain = []
    seen: Optional[BaseException] = error
    while seen is not None:
        chain.append(type(seen).__name__)
        seen = seen.__cause__ or seen.__context__
    return chain
