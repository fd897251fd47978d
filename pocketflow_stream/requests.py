"""Requests: what the walk asks of an async driver (a closed set), yielded only with
`walk(driver=True)`.

Each is plain data the driver fills in (`result` or `error`) before resuming the walk. This
file knows nothing of frames or the walk, and the walk nothing of event loops.
"""

from __future__ import annotations

from typing import Any, Callable, Generator, List, Optional, Sequence, Tuple

from .events import Ask, Origin
from .interrupts import StopSignal, _Answers

__all__ = ["Request", "Await", "InThread", "Sleep", "Stream", "Parallel", "NO_SEND"]


class Request:
    """What the walk asks of an async driver, yielded only to a driver (walk(driver=True)).

    The driver carries it out, puts what came of it in `result`, or the exception in `error`,
    and resumes the walk, which reads the outcome. A driver must not let an app's exception
    escape into the walk's consumer unrecorded: the walk decides about retries and paths.
    """

    __slots__ = ("result", "error")

    def __init__(self) -> None:
        self.result: Any = None
        self.error: Optional[BaseException] = None

    def outcome(self) -> Any:
        """The result, or raise the recorded exception."""
        if self.error is not None:
            raise self.error
        return self.result


class Await(Request):
    """Await `awaitable` (an async hook's coroutine); result: what it returns."""

    __slots__ = ("awaitable",)

    def __init__(self, awaitable: Any) -> None:
        super().__init__()
        self.awaitable = awaitable


class InThread(Request):
    """Call `function(*args)` in a worker thread (a hook of a node marked in_thread)."""

    __slots__ = ("function", "args")

    def __init__(self, function: Callable[..., Any], args: Tuple[Any, ...]) -> None:
        super().__init__()
        self.function = function
        self.args = args


class Sleep(Request):
    """Sleep `seconds` without blocking the event loop (the wait between retries)."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds


NO_SEND = object()  # Stream.send when there is no answer to send in first


class Stream(Request):
    """Iterate `source` and pass each value on as `Chunk((origin, value))` (only when `emit`;
    `Chunk((origin, value, ids.take()))` when `ids` is given, in a checkpointed run).

    `source` is an async generator (result: the value it yields wrapped in `Return`, after which
    it is closed; None if it yields none), or a sync generator of a node marked in_thread,
    stepped in a worker thread (result: its return value). When it yields an `Ask`, the driver
    puts it in `asked` and stops there WITHOUT closing it (the walk pauses, or answers it with
    a new Stream whose `send` is the answer: the driver sends that in first, with `asend` /
    `send`). `stop`: a StopSignal checked before each value. Otherwise the driver closes the
    source however the iteration ends.
    """

    __slots__ = ("source", "origin", "emit", "send", "ids", "stop", "asked", "answers")

    def __init__(
        self,
        source: Any,
        origin: Origin,
        emit: bool,
        send: Any = NO_SEND,
        ids: Any = None,
        stop: Optional[StopSignal] = None,
    ) -> None:
        super().__init__()
        self.source = source
        self.origin = origin
        self.emit = emit
        self.send = send
        self.ids = ids
        self.stop = stop
        self.asked: Optional[Ask] = None
        self.answers: Optional[_Answers] = None  # for ask() inside, set while it runs


class Parallel(Request):
    """Run `count` branches concurrently, at most `limit` at a time (None: all at once).

    `branch(index)` makes branch `index`: a walk generator to be driven like any other, whose
    return value is that branch's result. Result: the list of results, in index order. When a
    branch fails, the driver cancels the others and records that branch's exception, marked
    with `label(index)`, `path` and its item number `indexes[index]`. `progress(done)`, when
    given, makes an item for the consumer after each branch that finished.

    `node`, `items`, `origin`: set when the branches are a parallel batch node's items, all
    of them, none run yet (None for a batch flow's param sets and for a section resumed after
    a pause): the node (a copy, its params set), its items and its Origin. They are what a
    driver needs to run the items elsewhere (the async driver's `fan_out` hook hands them to
    other processes, which walk each item with `engine.walk_item`); a driver that runs the
    branches here never reads them.
    """

    __slots__ = (
        "count",
        "branch",
        "label",
        "path",
        "limit",
        "progress",
        "indexes",
        "node",
        "items",
        "origin",
    )

    def __init__(
        self,
        count: int,
        branch: Callable[[int], Generator[Any, None, Any]],
        label: Callable[[int], str],
        path: Tuple[str, ...],
        limit: Optional[int],
        progress: Optional[Callable[[int], Any]] = None,
        indexes: Optional[List[int]] = None,
        node: Any = None,
        items: Optional[Sequence[Any]] = None,
        origin: Optional[Origin] = None,
    ) -> None:
        super().__init__()
        self.count = count
        self.branch = branch
        self.label = label
        self.path = path
        self.limit = limit
        self.progress = progress
        self.indexes = list(range(count)) if indexes is None else indexes
        self.node = node
        self.items = items
        self.origin = origin
