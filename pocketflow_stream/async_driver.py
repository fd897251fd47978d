"""The async driver: runs the engine's walk on an anyio event loop (asyncio or trio).

The walk decides everything (what runs next, retries, paths, events); this file only carries
out the Requests it yields (await a hook, stream an async generator, sleep, call a blocking
node in a worker thread, run a parallel batch's branches) and hands on what it yields. It knows
nothing of providers or UIs.

Structured concurrency, as trio and anyio teach it:
- `_pull` is the one driving loop: an async generator run in the consumer's own task. It opens
  no cancel scope and no task group across a `yield`.
- Tasks exist only for parallel batches. They live in a task group owned by the consumer's
  `async with` (FlowStream) or by a coroutine (`run`); a parallel section's tasks sit in a
  nested group of their own, so one failing item cancels its siblings and nothing else.
- Chunks from concurrent branches reach the consumer through a bounded memory stream: a slow
  consumer makes producers wait, it never makes memory grow.
- Stopping (break then aclose, leaving `async with`, a cancel scope, a timeout) closes the
  running node generators, cancels the section's tasks and waits for them, all before the
  stream's `aclose()` or `async with` returns. Worker threads cannot be interrupted: a stop
  waits for the call in progress, then closes the generator in a thread too.
"""

from __future__ import annotations

import inspect
import threading
from types import TracebackType
from typing import (
    Any,
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Generator,
    List,
    Optional,
    Tuple,
    Type,
)

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup

from . import engine
from .engine import NO_SEND, Await, InThread, Parallel, Paused, Request, Sleep, Stream, walk
from .errors import FlowError, add_note, attach_node_path, describe_path
from .events import Ask, Chunk, StreamItem
from .interrupts import _GO_ON, _AskSignal, _BranchPaused
from .nodes import BaseNode

__all__ = [
    "Return",
    "RunEnd",
    "Ended",
    "FlowStream",
    "run",
    "iterate_in_thread",
    "DEFAULT_BUFFER",
    "FanOut",
]

#: How many chunks of a parallel section may wait for a slow consumer before producers wait.
DEFAULT_BUFFER = 64

#: The hook that may run a parallel batch node's items elsewhere (see FlowStream).
FanOut = Callable[[Parallel], Optional[AsyncIterator[StreamItem]]]


class Return:
    """The result of an async `exec_stream_async`, for `post_async`.

    An async generator cannot `return` a value, so it yields its result wrapped in `Return`;
    the driver takes it as exec_res and closes the generator there (its `finally` runs, code
    after the yield does not), as `return` ends a sync exec_stream::

        async def exec_stream_async(self, history):
            text = ""
            async for delta in model.astream(history):
                text += delta
                yield delta
            yield Return(text)

    A generator that ends without yielding a Return gives None.
    """

    __slots__ = ("value",)

    def __init__(self, value: Any = None) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"Return({self.value!r})"


class RunEnd:
    """How a driven run ended, once `finished`: `action` is the final action, or `paused`
    the Paused handle of a run that waits for input (`action` is then None), or `action` is
    STOPPED for a run its StopSignal stopped."""

    __slots__ = ("action", "finished", "paused")

    def __init__(self) -> None:
        self.action: Any = None
        self.finished = False
        self.paused: Optional[Paused] = None

    def end(self, returned: Any) -> None:
        if type(returned) is Paused:
            self.paused = returned
        else:
            self.action = returned
        self.finished = True


async def _pull(
    steps: Generator[Any, None, Any],
    group: Optional[TaskGroup],
    ending: RunEnd,
    buffer: int,
    fan_out: Optional[FanOut] = None,
) -> AsyncGenerator[StreamItem, None]:
    """Drive the walk `steps`: yield its chunks and events, carry out its requests (each
    kind by its handler below). The walk's return value goes to `ending`. `group` hosts
    parallel sections (None: refuse them). `fan_out`: see FlowStream."""
    step = steps.__next__
    try:
        while True:
            try:
                item = step()
            except StopIteration as stop:
                ending.end(stop.value)
                return
            if type(item) is Chunk or not isinstance(item, Request):  # a chunk or an event
                yield item
            elif (
                type(item) is Stream
                and item.ids is None
                and item.stop is None
                and item.send is NO_SEND
                and item.answers is None
                and hasattr(item.source, "__anext__")
            ):
                # an async node's stream, the per-chunk path: written out here, where a
                # handler of its own would cost an async generator per chunk
                source = item.source
                origin = item.origin
                emit = item.emit
                next_value = source.__anext__
                try:
                    while True:
                        try:
                            value = await next_value()
                        except StopAsyncIteration:
                            break
                        except (Exception, _AskSignal) as exc:  # it failed or asked
                            item.error = exc
                            break
                        if type(value) is Return:
                            item.result = value.value
                            break
                        if type(value) is Ask:  # it waits for an answer: kept open
                            item.asked = value
                            break
                        if emit:
                            yield Chunk((origin, value))
                finally:  # however the iteration ended, the node's generator is closed
                    if item.asked is None:
                        await source.aclose()
            elif isinstance(item, (Stream, Parallel)):  # a careful stream, a parallel section
                if isinstance(item, Stream):
                    values = _stream_careful(item)
                else:
                    away = None
                    if fan_out is not None and item.node is not None:  # a node's items
                        away = fan_out(item)  # None: they run here after all
                    if away is None:
                        values = _run_section(item, group, buffer)
                    else:
                        values = _fanned_out(item, away)
                try:
                    async for value in values:
                        yield value
                finally:
                    await values.aclose()
            else:
                await _carry_out(item)
    finally:
        steps.close()


async def _carry_out(request: Request) -> None:
    """A request that yields nothing: its outcome goes to `request.result` / `request.error`."""
    try:
        if isinstance(request, Await):
            request.result = await request.awaitable
        elif isinstance(request, InThread):
            request.result = await _in_thread(request.function, request.args)
        elif isinstance(request, Sleep):
            await anyio.sleep(request.seconds)
        else:  # pragma: no cover - the engine's requests are a closed set
            raise TypeError(f"unknown request from the engine: {request!r}")
    except (Exception, _AskSignal) as exc:  # it failed, or asked: the walk decides
        request.error = exc


async def _stream_careful(request: Stream) -> AsyncGenerator[StreamItem, None]:
    """A node's stream one value at a time, for what the per-chunk path leaves out: a
    blocking node's sync generator (each step in a worker thread), an answer to send in
    first, chunk ids (a checkpointed run), a stop signal. Its return value (or exception)
    goes to the request; an `Ask` it yields to `request.asked`, and it is then kept open."""
    source = request.source
    threaded = not hasattr(source, "__anext__")
    send, ids, stop, origin = request.send, request.ids, request.stop, request.origin
    value_in = None if send is NO_SEND else send
    answers = request.answers
    # Held while a thread steps a blocking node's generator, and by its close: a native
    # cancellation (asyncio.run's Ctrl-C) gets past anyio's shield around the wait for the
    # thread, and the close must then wait for the step still running (see iterate_in_thread).
    stepping = threading.Lock()

    def step(value_in: Any) -> Tuple[bool, Any]:
        with stepping:
            return _step(source, value_in)

    def close() -> None:
        with stepping:
            source.close()

    try:
        while True:
            try:
                if threaded:
                    done, value = await anyio.to_thread.run_sync(step, value_in)
                    await anyio.lowlevel.checkpoint_if_cancelled()  # a stop during the step
                    if done:
                        request.result = value
                        return
                elif answers is None:
                    value = await source.asend(value_in)
                else:  # ask() inside gets its recorded answers (set per step: one context)
                    token = engine._answers.set(answers)
                    try:
                        value = await source.asend(value_in)
                    finally:
                        engine._answers.reset(token)
            except StopAsyncIteration:
                return
            except (Exception, _AskSignal) as exc:  # it failed or asked: the walk decides
                request.error = exc
                return
            if stop is not None and stop.is_set():  # set while the node ran: drop its value
                return  # the walk sees the signal and stops the run
            value_in = None
            if type(value) is Return and not threaded:
                request.result = value.value
                return
            if type(value) is Ask:  # it waits for an answer: kept open
                request.asked = value
                return
            if request.emit:
                yield Chunk((origin, value) if ids is None else (origin, value, ids.take()))
    finally:  # however the iteration ended (but for an Ask), the node's generator is closed
        if request.asked is None:
            with anyio.CancelScope(shield=True):
                if threaded:  # the thread may be mid-step: wait, then close
                    await anyio.to_thread.run_sync(close)
                else:
                    await source.aclose()


async def _fanned_out(
    request: Parallel, away: AsyncIterator[StreamItem]
) -> AsyncGenerator[StreamItem, None]:
    """A section whose items run elsewhere (the `fan_out` hook's iterator, which puts the
    results in `request.result`): what it yields is passed on; its failure goes to the
    request, marked with the node's path, for the walk to decide."""
    try:
        async for value in away:
            yield value
    except Exception as exc:
        attach_node_path(exc, request.path)
        request.error = exc
    finally:
        close = getattr(away, "aclose", None)
        if close is not None:
            await close()


async def _run_section(
    request: Parallel, group: Optional[TaskGroup], buffer: int
) -> AsyncGenerator[StreamItem, None]:
    """A parallel section: its branches run in `group`'s tasks; what they yield comes through
    a bounded memory stream; its results (or first error) go to the request."""
    if group is None:
        raise _needs_a_task_group(request)
    section = _Section(request, buffer)
    send, receive = anyio.create_memory_object_stream(buffer)  # type: ignore[var-annotated]
    group.start_soon(section.run, send)
    take = receive.receive_nowait
    try:
        while True:  # take what is buffered without a trip round the event loop
            try:
                value = take()
            except anyio.WouldBlock:
                try:
                    value = await receive.receive()
                except anyio.EndOfStream:
                    break
            except anyio.EndOfStream:
                break
            yield value
    finally:  # a stop while the section runs: cancel it and wait for its tasks
        section.scope.cancel()
        with anyio.CancelScope(shield=True):
            await section.finished.wait()
        receive.close()
    request.result = section.results
    request.error = section.error


class _Section:
    """One parallel batch: its branches run in a task group of their own, at most
    `request.limit` at a time, sending what they yield to the consumer's memory stream."""

    def __init__(self, request: Parallel, buffer: int) -> None:
        self.request = request
        self.buffer = buffer
        self.results: List[Any] = [None] * request.count
        self.error: Optional[BaseException] = None
        self.next_index = 0
        self.done = 0
        self.scope = anyio.CancelScope()
        self.finished = anyio.Event()

    async def run(self, send: Any) -> None:
        request = self.request
        workers = request.count if request.limit is None else min(request.limit, request.count)
        try:
            with self.scope:
                async with send:  # closed when every branch is done: the consumer's loop ends
                    async with anyio.create_task_group() as branches:
                        for _ in range(max(workers, 1)):
                            branches.start_soon(self._work, send)
        finally:
            self.finished.set()

    async def _work(self, send: Any) -> None:
        request = self.request
        put = send.send_nowait

        def emit(item: StreamItem) -> Any:  # into the buffer at once if there is room
            try:
                return put(item)
            except anyio.WouldBlock:
                return send.send(item)  # a coroutine: _drive awaits it, waiting for room

        while self.next_index < request.count and self.error is None:
            index = self.next_index
            self.next_index += 1
            try:
                result = await _drive(request.branch(index), emit, self.buffer)
                self.results[index] = result
                if request.progress is not None and type(result) is not _BranchPaused:
                    self.done += 1
                    made = emit(request.progress(self.done))
                    if made is not None:
                        await made
            except Exception as exc:
                if self.error is None:  # the first failure wins; the others were cancelled
                    _attach_item(exc, request, index)
                    self.error = exc
                self.scope.cancel()
                return


async def _drive(
    steps: Generator[Any, None, Any],
    emit: Callable[[StreamItem], Any],
    buffer: int,
    fan_out: Optional[FanOut] = None,
) -> Any:
    """Drive a walk to its end in this task, calling `emit(item)` for each item (and awaiting
    what it returns, if awaitable); returns the walk's return value. Owns the task group for
    any parallel section inside (a section's branches are driven without `fan_out`: only
    the run's own sections fan out)."""
    ending = RunEnd()
    error: Optional[BaseException] = None
    async with anyio.create_task_group() as group:  # (a paused run's handle is its return)
        items = _pull(steps, group, ending, buffer, fan_out)
        try:
            async for item in items:
                result = emit(item)
                if result is not None and inspect.isawaitable(result):
                    await result
        except Exception as exc:  # raised after the group, not wrapped in an ExceptionGroup
            error = exc
        finally:
            await items.aclose()
    if error is not None:
        raise error
    return ending.paused if ending.paused is not None else ending.action


async def run(
    root: BaseNode,
    shared: Any,
    *,
    on_chunk: Optional[Callable[[Chunk], Any]] = None,
    on_event: Optional[Callable[[Any], Any]] = None,
    nodes: Optional[Any] = None,
    max_steps: Optional[int] = None,
    buffer: int = DEFAULT_BUFFER,
    steps: Optional[Generator[Any, None, Any]] = None,
    fan_out: Optional[FanOut] = None,
    **options: Any,
) -> Any:
    """Run `root` to its end on the running event loop; return the final action (a Paused
    handle if the run paused, STOPPED if its StopSignal was set).

    `on_chunk` / `on_event` are called (and awaited, if they return an awaitable) with every
    chunk and event (and interrupt) as it comes; without them, chunks are not even made.
    `options`: walk's `progress`, `pause_before`, `stop`, `checkpoint`, `resume_from`,
    `answers`. `steps`: a walk to drive instead (a resumed one). `fan_out`: see FlowStream.
    """
    if steps is None:
        steps = walk(
            root,
            shared,
            chunks=on_chunk is not None,
            events=on_event is not None,
            nodes=nodes,
            max_steps=max_steps,
            driver=True,
            **options,
        )

    def emit(item: StreamItem) -> Any:  # what a coroutine callback returns, _drive awaits
        callback: Optional[Callable[[Any], Any]] = on_chunk if type(item) is Chunk else on_event
        return None if callback is None else callback(item)

    ended = await _drive(steps, emit, buffer, fan_out)
    return ended


class Ended:
    """What a stream tells about its run's end (FlowStream, SyncFlowStream): `action`, the
    final action once the stream is exhausted (else None); `finished`; `paused`, the Paused
    handle when the run paused (it yielded an Interrupt), else None."""

    _ending: RunEnd

    @property
    def action(self) -> Optional[str]:
        return self._ending.action  # type: ignore[no-any-return]

    @property
    def finished(self) -> bool:
        return self._ending.finished

    @property
    def paused(self) -> Optional[Paused]:
        return self._ending.paused


class FlowStream(Ended):
    """A streamed async run, made by `run_stream_async`. Use it as::

        async with flow.run_stream_async(shared) as stream:
            async for chunk in stream:
                print(chunk.node, chunk.data)
        action = stream.action

    The `async with` owns the run: the tasks of parallel batches live in its task group, and
    leaving it (normally, by an exception, a break or a cancellation) closes the running node
    generators and cancels those tasks before it returns. A flow without parallel batches can
    also be iterated with a bare `async for`; stop such a loop early with `await stream.aclose()`.

    `action` is the final action once the stream is exhausted (`finished` says so), else None;
    `paused` is the Paused handle when the run paused (it yielded an Interrupt).

    `fan_out`, a hook for running a parallel batch node's items in other processes (what
    scale.dbos_runs gives it): called with each `Parallel` request of the run's own walk
    that holds a node's items (`request.node` set; never for a batch flow's param sets, nor
    for a section inside a parallel branch, nor one resumed after a pause). It returns None
    (the items run here, as without it) or an async iterator: its items reach the consumer,
    and by its end it has put the results, in input order, in `request.result`; an
    exception it raises fails the section, as a failing item's would.
    """

    def __init__(
        self,
        root: BaseNode,
        shared: Any,
        *,
        events: bool = False,
        nodes: Optional[Any] = None,
        max_steps: Optional[int] = None,
        buffer: int = DEFAULT_BUFFER,
        steps: Optional[Generator[Any, None, Any]] = None,
        fan_out: Optional[FanOut] = None,
        **options: Any,
    ) -> None:
        if buffer < 0:
            raise ValueError(f"buffer must be 0 or more, got {buffer}")
        if steps is None:
            steps = walk(
                root,
                shared,
                events=events,
                nodes=nodes,
                max_steps=max_steps,
                driver=True,
                **options,
            )
        self._steps = steps
        self._buffer = buffer
        self._fan_out = fan_out
        self._group: Optional[TaskGroup] = None
        self._items: Optional[AsyncGenerator[StreamItem, None]] = None
        self._ending = RunEnd()

    async def __aenter__(self) -> FlowStream:
        if self._items is not None or self._group is not None:
            raise RuntimeError(
                "enter `async with flow.run_stream_async(shared) as stream` before iterating, "
                "and only once"
            )
        group = anyio.create_task_group()
        await group.__aenter__()
        self._group = group
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        group = self._group
        assert group is not None
        try:
            await self.aclose()
        finally:
            group.cancel_scope.cancel()
            # The group only hosts sections, which never raise: the exception that ended the
            # block (if any) goes on as it was, not wrapped in an ExceptionGroup.
            await group.__aexit__(None, None, None)

    def __aiter__(self) -> AsyncGenerator[StreamItem, None]:
        if self._items is None:
            self._items = _pull(self._steps, self._group, self._ending, self._buffer, self._fan_out)
        return self._items

    async def __anext__(self) -> StreamItem:
        return await self.__aiter__().__anext__()

    async def aclose(self) -> None:
        """Stop the run: close the running node generators, cancel and await its tasks."""
        if self._items is not None:
            await self._items.aclose()
        else:
            self._steps.close()


async def iterate_in_thread(
    generator: Generator[Any, None, Any], ending: Optional[RunEnd] = None
) -> AsyncGenerator[Any, None]:
    """Yield what a sync generator yields, each step taken in a worker thread, so a blocking
    generator never blocks the event loop. Its return value goes to `ending`; its exception is
    raised. Closing this closes the generator, in a thread as well."""
    # Held while a thread steps the generator. anyio's wait for a thread holds against
    # anyio cancellation, but not against a native one (asyncio.run cancels its main task on
    # Ctrl-C): the close then waits here for the step still running, instead of failing
    # with "generator already executing" and leaving the generator unclosed.
    stepping = threading.Lock()

    def step() -> Tuple[bool, Any]:
        with stepping:
            return _step(generator)

    def close() -> None:
        with stepping:
            generator.close()

    try:
        while True:
            done, value = await anyio.to_thread.run_sync(step)
            await anyio.lowlevel.checkpoint_if_cancelled()  # a stop during the step: no yield
            if done:
                if ending is not None:
                    ending.end(value)
                return
            yield value
    finally:
        with anyio.CancelScope(shield=True):  # the thread may be mid-step: wait, then close
            await anyio.to_thread.run_sync(close)


async def _in_thread(function: Callable[..., Any], args: Tuple[Any, ...]) -> Any:
    """`function(*args)` in a worker thread (an InThread request). A native cancellation
    (asyncio.run's Ctrl-C) gets past anyio's shield around the wait for the thread: the
    cancelled task then waits (shielded) for the call in progress, and a call not begun yet
    never begins, so nothing of the run still runs once the cancellation goes on."""
    calling = threading.Lock()
    ended = False  # the call has run, or will not run

    def call() -> Any:
        nonlocal ended
        with calling:
            if ended:  # cancelled before it began
                return None
            try:
                return function(*args)
            finally:
                ended = True

    def wait() -> None:
        nonlocal ended
        with calling:
            ended = True

    try:
        return await anyio.to_thread.run_sync(call)
    except BaseException:
        if not ended:  # cancelled while the thread runs (or before it began)
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(wait)
        raise


def _step(generator: Generator[Any, None, Any], value_in: Any = None) -> Tuple[bool, Any]:
    """(False, the next value) or (True, the return value): one step, in a worker thread."""
    try:
        return False, generator.send(value_in)
    except StopIteration as stop:
        return True, stop.value


def _attach_item(exc: BaseException, request: Parallel, index: int) -> None:
    attach_node_path(exc, request.path)
    note = (
        f"in {request.label(index)} of the parallel batch {describe_path(request.path)} "
        "(the other items were cancelled)"
    )
    try:
        exc.batch_item = request.indexes[index]  # type: ignore[attr-defined]
    except AttributeError:
        pass
    add_note(exc, note)


def _needs_a_task_group(request: Parallel) -> FlowError:
    error = FlowError(
        f"node {describe_path(request.path)} runs {request.count} items concurrently, which "
        "needs a task group that a bare `async for` cannot own. Iterate inside "
        "`async with flow.run_stream_async(shared) as stream: async for chunk in stream`, "
        "or await flow.run_async(shared)."
    )
    attach_node_path(error, request.path)
    return error


def _resume_stream(
    paused: Paused,
    answers: Optional[Any] = None,
    *,
    buffer: int = DEFAULT_BUFFER,
    fan_out: Optional[FanOut] = None,
) -> FlowStream:
    paused._go_on(answers, driver=True)
    steps = engine._walk(paused._root, paused._shared, paused._options, paused._stack)
    return FlowStream(paused._root, paused._shared, buffer=buffer, steps=steps, fan_out=fan_out)


async def _resume_run(
    paused: Paused,
    answers: Optional[Any] = None,
    *,
    on_chunk: Optional[Callable[[Chunk], Any]] = None,
    on_event: Optional[Callable[[Any], Any]] = None,
    buffer: int = DEFAULT_BUFFER,
    fan_out: Optional[FanOut] = None,
) -> Any:
    paused._go_on(answers, driver=True)
    steps = engine._walk(paused._root, paused._shared, paused._options, paused._stack)
    return await run(
        paused._root,
        paused._shared,
        on_chunk=on_chunk,
        on_event=on_event,
        buffer=buffer,
        steps=steps,
        fan_out=fan_out,
    )


_GO_ON.update(stream=_resume_stream, run=_resume_run)  # how a Paused handle goes on here
