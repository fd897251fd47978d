"""Asking, pausing and stopping: `ask`, `StopSignal` / `STOPPED`, the private signals a step
raises to pause or stop the walk, the pending questions of a paused stack, and the `Paused`
handle a paused run returns.

The walk (engine.py) raises `_Pause` / `_Stop` and turns a pause into a `Paused`; this file
reads frames but never steps them. Going on from a pause is the walk again: `Paused` reaches
the layers above it only through `_GO_ON`, which they fill in when imported (engine.py: the
walk, the push driver, positions; async_driver.py: the async resume).
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any, Callable, Dict, Generator, Iterator, List, Mapping, Optional, Tuple

from .errors import FlowError
from .events import Interrupt
from .frames import FlowFrame, NodeFrame, _child_path, _Options, _take
from .graph import node_name

__all__ = ["StopSignal", "STOPPED", "ask", "Paused"]


# --- stopping --------------------------------------------------------------------------------


class StopSignal:
    """A stop request another thread or task can make (a UI's Stop button)::

        stop = StopSignal()
        for chunk in flow.run_stream(shared, stop=stop):   # stop.set() from elsewhere
            ...

    The run checks it between nodes and before each chunk: the running node's generator is
    closed there (its `finally` runs) and the walk ends, returning `STOPPED`. A checkpointed
    run stays resumable from its last checkpoint. A node blocked inside a call is not
    interrupted: the stop takes effect when it yields or returns.
    """

    __slots__ = ("_set",)

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set


class _Stopped:
    """What a stopped walk returns (`STOPPED`): not an action, and never equal to one."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "STOPPED"


STOPPED = _Stopped()


# --- the signals a step raises, caught once in the walk --------------------------------------


class _Pause(BaseException):
    """Raised inside a step when the run must pause; caught once, in `_walk`. `frame`: a
    frame to push first (a plain node that asked on the hot path has none yet)."""

    def __init__(self, frame: Optional[NodeFrame] = None) -> None:
        super().__init__()
        self.frame = frame


class _Stop(BaseException):
    """Raised inside a step when the run's StopSignal is set; caught once, in `_walk`."""


class _BranchPaused:
    """What a parallel branch's walk returns when it paused: its stack, to go on with."""

    __slots__ = ("stack",)

    def __init__(self, stack: List[Any]) -> None:
        self.stack = stack


class _AskSignal(BaseException):
    """`ask()` in an exec with no recorded answer: the exec stops here, the run pauses. A
    BaseException, so an app's `except Exception` around its own code does not swallow it."""

    def __init__(self, payload: Any, index: int) -> None:
        super().__init__(payload)
        self.payload = payload
        self.index = index


class _Answers:
    """The answers an exec's earlier asks got, handed out in order by `ask()`."""

    __slots__ = ("answers", "index")

    def __init__(self, answers: List[Any]) -> None:
        self.answers = answers
        self.index = 0

    def call(self, function: Callable[..., Any], *args: Any) -> Any:
        """`function(*args)` with these answers for its asks (an in-thread exec)."""
        token = _answers.set(self)
        try:
            return function(*args)
        finally:
            _answers.reset(token)


_answers: ContextVar[Optional[_Answers]] = ContextVar("pocketflow_stream_answers", default=None)


# --- asking: ask() in an exec, and which generators may yield Ask ----------------------------


def ask(payload: Any = None) -> Any:
    """Pause the run to ask for input, from a node's plain `exec` (or `exec_async`)::

        def exec(self, draft):
            verdict = ask({"approve": draft})    # pauses the run the first time
            return verdict

    The first time, the run pauses with an Interrupt carrying `payload`; when it is resumed
    with an answer, `exec` runs again from its start and this call returns the answer (each
    ask of that exec, in order, returns its own). Code before the ask therefore runs again:
    keep side effects after it. In `exec_stream`, `answer = yield Ask(payload)` asks without
    running anything again.
    """
    answers = _answers.get()
    if answers is not None and answers.index < len(answers.answers):
        answer = answers.answers[answers.index]
        answers.index += 1
        return answer
    raise _AskSignal(payload, 0 if answers is None else answers.index)


async def _answering(awaitable: Any, asks: List[Any]) -> Any:
    """Await an exec_async with its recorded answers for `ask()` (set in the awaiting task)."""
    token = _answers.set(_Answers(asks))
    try:
        return await awaitable
    finally:
        _answers.reset(token)


_may_ask_by_code: Dict[Any, bool] = {}


def _may_ask(node: Any, made: Any) -> bool:
    """Whether a node's generator may yield `Ask`, so it must stream on the send()-capable
    path: its code names `Ask` (looked at once per code object), or its class says `asks =
    True` (for an Ask yielded from a helper generator)."""
    if getattr(node, "asks", False):
        return True
    code = getattr(made, "gi_code", None) or getattr(made, "ag_code", None)
    if code is None:
        return True  # not a plain generator: take the careful path
    known = _may_ask_by_code.get(code)
    if known is None:
        known = _may_ask_by_code[code] = "Ask" in code.co_names
    return known


# --- a paused stack: its pending questions ---------------------------------------------------


def _is_suspended(generator: Any) -> bool:
    """Whether a generator (sync or async) still waits at a yield, able to go on."""
    if hasattr(generator, "ag_frame"):
        return generator.ag_frame is not None
    return getattr(generator, "gi_frame", True) is not None


def _spots(stack: List[Any], parts: List[str]) -> Iterator[Tuple[str, Any, Any]]:
    """(interrupt id, frame, parent flow frame) for each pending question in `stack`, in
    order. An id is deterministic: each flow level's node and step (and batch iteration),
    the batch item, the ask's number in the attempt ("#before" for pause_before)."""
    parts = list(parts)
    parent = None
    for depth, frame in enumerate(stack):
        if type(frame) is FlowFrame:
            if frame.batches is not None and frame.branches is None:
                parts.append(str(frame.batch_index))
            if frame.branches is not None:
                for branch in frame.branches.values():
                    yield from _spots(branch, parts)
                return
            if frame.node is not None:
                parts.append(f"{node_name(frame.node)}@{frame.steps + (frame.pending is not None)}")
            if frame.pending is not None and depth == len(stack) - 1:
                yield "/".join(parts) + "#before", frame, frame
            parent = frame
        else:
            if depth == 0 and not parts:  # a node run on its own
                parts.append(frame.origin.name)
            if frame.node._batch:
                parts.append(f"[{frame.index}]")
            if frame.branches is not None:
                for branch in frame.branches.values():
                    yield from _spots(branch, parts[:-1] if frame.node._batch else parts)
                return
            if frame.pending is not None:
                yield f"{'/'.join(parts)}#{frame.ask_index - 1}", frame, parent


def _interrupt(key: str, frame: Any, options: _Options, handle: Any) -> Interrupt:
    if type(frame) is FlowFrame:  # paused before its node
        path = _child_path(frame, frame.node)
        return Interrupt(
            key, frame.pending, path[-1], path, None, frame.batch, _take(options), handle
        )
    origin = frame.origin
    item = frame.index if frame.node._batch else None
    return Interrupt(
        key, frame.pending, origin.name, origin.path, item, origin.batch, _take(options), handle
    )


def _is_answered(stack: List[Any]) -> bool:
    return any(frame.answered for _, frame, _ in _spots(stack, []))


# --- the handle a paused run returns ---------------------------------------------------------


class Paused:
    """A paused run: what the walk returns (and `Interrupt.handle`) when the run waits for
    input. `interrupts` lists the pending questions; answer them by id and the run goes on
    from where it stopped, in this process — nothing runs again, no chunk comes twice::

        paused = interrupt.handle                    # or the stream's return value
        for item in paused.resume({interrupt.id: "yes"}):
            ...

    `resume` (pull), `run` (push), `resume_async` / `run_async` (async; a run started by the
    async driver resumes only there). A handle resumes once; a run that pauses again returns
    a new one. Answers name pending ids; any other id is refused with FlowError before
    anything changes. With several pending (parallel items), answer any of them: those go
    on, the others stay pending. `position()` is the run's JSON-ready position (for PERSIST).
    """

    def __init__(self, root: Any, shared: Any, options: _Options, stack: List[Any]) -> None:
        self._root = root
        self._shared = shared
        self._options = options
        self._stack = stack
        self._spent = False
        spots = list(_spots(stack, []))
        self._frames = {key: frame for key, frame, _ in spots}
        self.interrupts: Tuple[Interrupt, ...] = tuple(
            _interrupt(key, frame, options, self) for key, frame, _ in spots
        )

    def __repr__(self) -> str:
        return f"<Paused {[interrupt.id for interrupt in self.interrupts]!r}>"

    def answer(self, interrupt_id: str, value: Any) -> Paused:
        """Give the answer for one pending interrupt (before resuming); returns self."""
        self._check({interrupt_id: value})
        frame = self._frames[interrupt_id]
        frame.answer, frame.answered = value, True
        return self

    def resume(self, answers: Optional[Mapping[str, Any]] = None) -> Generator[Any, None, Any]:
        """Go on (sync pull): a generator of the run's next items, returning as `walk` does."""
        self._go_on(answers, driver=False)
        walk: Callable[..., Generator[Any, None, Any]] = _GO_ON["walk"]
        return walk(self._root, self._shared, self._options, self._stack)

    def run(
        self,
        answers: Optional[Mapping[str, Any]] = None,
        *,
        on_chunk: Optional[Callable[[Any], Any]] = None,
        on_event: Optional[Callable[[Any], Any]] = None,
    ) -> Any:
        """Go on (sync push): call back with each item; return as `node.run` does."""
        return _GO_ON["push"](self.resume(answers), on_chunk, on_event)

    def resume_async(self, answers: Optional[Mapping[str, Any]] = None, **options: Any) -> Any:
        """Go on under the async driver: a FlowStream, used like `run_stream_async`'s."""
        return _GO_ON["stream"](self, answers, **options)

    async def run_async(self, answers: Optional[Mapping[str, Any]] = None, **options: Any) -> Any:
        """Go on under the async driver, to the end (or the next pause); as `run_async`."""
        return await _GO_ON["run"](self, answers, **options)

    def position(self) -> Dict[str, Any]:
        """The paused run's JSON-ready position (see `position_of`)."""
        position: Callable[..., Dict[str, Any]] = _GO_ON["position"]
        return position(self._options, "paused", interrupts=self.interrupts)

    def close(self) -> None:
        """Give up the run: close the sync generators that wait for an answer (async ones
        are closed by `aclose()`)."""
        self._spent = True
        _close_suspended(self._stack)

    async def aclose(self) -> None:
        """Give up the run: close every generator that waits for an answer."""
        self._spent = True
        for _, frame, _ in _spots(self._stack, []):
            gen = getattr(frame, "gen", None)
            if gen is not None and hasattr(gen, "aclose"):
                await gen.aclose()
        _close_suspended(self._stack)

    def _check(self, answers: Mapping[str, Any]) -> None:
        if self._spent:
            raise FlowError(
                "this paused run was resumed already (or closed); a run that pauses again "
                "returns a new Paused handle: answer that one."
            )
        unknown = [key for key in answers if key not in self._frames]
        if unknown:
            pending = ", ".join(map(repr, self._frames)) or "none"
            raise FlowError(
                f"no pending interrupt has the id {', '.join(map(repr, unknown))}; the pending "
                f"ones are {pending}. Answer by the id an Interrupt carries (interrupt.id)."
            )

    def _go_on(self, answers: Optional[Mapping[str, Any]], driver: bool) -> None:
        answers = dict(answers or {})
        self._check(answers)
        if driver != self._options.driver:
            driven = self._options.driver
            way = "resume_async() or run_async()" if driven else "resume() or run()"
            kind = "async" if driven else "sync"
            raise FlowError(f"this run was paused under the {kind} driver: go on with {way}.")
        for key, value in answers.items():
            frame = self._frames[key]
            frame.answer, frame.answered = value, True
        for frame in self._frames.values():
            if type(frame) is FlowFrame:  # a pause before a node needs no answer
                frame.answered = True
        if not any(frame.answered for frame in self._frames.values()):
            raise FlowError(
                f"resume needs an answer: give one for {', '.join(map(repr, self._frames))} "
                "as paused.resume({interrupt_id: answer})."
            )
        self._spent = True


# How a paused run goes on: the walk (`walk`), the push driver (`push`) and the position
# (`position`), set by engine.py; the async resume (`stream`, `run`), set by async_driver.py.
# The only way this file reaches the layers above it.
_GO_ON: Dict[str, Callable[..., Any]] = {}


def _close_suspended(stack: List[Any]) -> None:
    for _, frame, _ in _spots(stack, []):
        gen = getattr(frame, "gen", None)
        if gen is not None and hasattr(gen, "close"):
            gen.close()
            frame.gen = None
