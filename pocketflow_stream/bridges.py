"""Bridges between sync and async code, for apps (Gradio, web frameworks) that call both kinds
of handler.

- `run_stream_sync`: iterate an async flow's stream from sync code. The flow runs on an event
  loop of its own in a worker thread (an anyio blocking portal); each item crosses over.
- `run_stream_in_thread`: iterate a sync flow's stream from async code without blocking the
  event loop: each step of the sync walk runs in a worker thread.

Both stop the run when the loop over them stops early (close the generator, or leave the
`async with`), and leave no thread running.
"""

from __future__ import annotations

from types import TracebackType
from typing import (
    Any,
    AsyncGenerator,
    Collection,
    Generator,
    Mapping,
    Optional,
    Tuple,
    Type,
)

from anyio import CancelScope, Event
from anyio.from_thread import start_blocking_portal

from .async_driver import DEFAULT_BUFFER, Ended, FlowStream, RunEnd, iterate_in_thread
from .async_nodes import AsyncNode
from .engine import Paused
from .events import StreamItem
from .nodes import BaseNode

__all__ = [
    "run_stream_sync",
    "resume_stream_sync",
    "run_stream_in_thread",
    "resume_stream_in_thread",
    "SyncFlowStream",
]


def run_stream_sync(
    flow: AsyncNode,
    shared: Any,
    *,
    backend: str = "asyncio",
    events: bool = False,
    nodes: Optional[Collection[str]] = None,
    max_steps: Optional[int] = None,
    buffer: int = DEFAULT_BUFFER,
    **options: Any,
) -> Generator[StreamItem, None, Any]:
    """Stream an async flow (anything with `run_stream_async`) from sync code: a generator of
    its chunks (and events) that returns the final action, like the sync `run_stream`::

        def respond(message):                     # a sync Gradio handler
            for chunk in run_stream_sync(agent, {"question": message}):
                yield chunk.data

    The flow runs on an event loop (`backend`: "asyncio" or "trio") in a worker thread that
    lives as long as the generator. Closing the generator stops the run there and then.
    A run that pauses returns its Paused handle (go on with `resume_stream_sync`); `options`
    are run_stream_async's (`progress`, `pause_before`, `stop`).
    """
    stream = flow.run_stream_async(
        shared, events=events, nodes=nodes, max_steps=max_steps, buffer=buffer, **options
    )
    return (yield from _iterate_on_a_portal(stream, backend))


def resume_stream_sync(
    paused: Paused,
    answers: Optional[Mapping[str, Any]] = None,
    *,
    backend: str = "asyncio",
    buffer: int = DEFAULT_BUFFER,
) -> Generator[StreamItem, None, Any]:
    """Go on with a run that `run_stream_sync` left paused (its Paused handle, from the
    generator's return value or `interrupt.handle`), from sync code, like `paused.resume`.

    The event loop the run paused on has ended, and with it any async generator that waited
    for an answer: such a node's exec_stream_async runs again from its start, its earlier
    asks answered from the record and its chunks up to the pause not shown again."""
    return (yield from _iterate_on_a_portal(paused.resume_async(answers, buffer=buffer), backend))


def _iterate_on_a_portal(stream: FlowStream, backend: str) -> Generator[StreamItem, None, Any]:
    on_the_loop = _OnTheLoop(stream)
    with start_blocking_portal(backend) as portal:
        # An exception out of the loop below (KeyboardInterrupt while the caller waits for an
        # item, GeneratorExit from close()) leaves through this block: its exit runs
        # _OnTheLoop.__aexit__ on the loop, which cancels the pull in progress and waits for
        # it before it closes the run, and the exception goes on as it was.
        with portal.wrap_async_context_manager(on_the_loop):
            while True:
                try:
                    item = portal.call(on_the_loop.next)
                except StopAsyncIteration:
                    break
                yield item
        return stream.paused if stream.paused is not None else stream.action


class _OnTheLoop:
    """The portal side of `_iterate_on_a_portal`: owns the FlowStream on the event loop and
    pulls its items one at a time. Everything here runs in the loop's thread.

    The sync caller can leave while a pull is still running there: a KeyboardInterrupt ends
    its wait for `portal.call`, not the call. Closing the stream then would close an async
    generator in the middle of `__anext__` ("aclose(): asynchronous generator is already
    running"), so `__aexit__` cancels that pull and waits until it has ended first (a node's
    await is cancelled, its `finally` runs), and only then closes the run."""

    def __init__(self, stream: FlowStream) -> None:
        self._stream = stream
        self._items: Optional[AsyncGenerator[StreamItem, None]] = None
        self._pulling: Optional[Tuple[CancelScope, Event]] = None
        self._closing = False

    async def __aenter__(self) -> _OnTheLoop:
        await self._stream.__aenter__()
        self._items = self._stream.__aiter__()
        return self

    async def next(self) -> Any:
        if self._closing or self._items is None:  # a pull that starts after the caller left
            raise StopAsyncIteration
        ended = Event()
        with CancelScope() as scope:
            self._pulling = (scope, ended)
            try:
                return await self._items.__anext__()
            finally:
                self._pulling = None
                ended.set()
        raise StopAsyncIteration  # cancelled by __aexit__: nobody waits for this pull now

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        self._closing = True
        pulling = self._pulling
        if pulling is not None:
            scope, ended = pulling
            scope.cancel()
            with CancelScope(shield=True):
                await ended.wait()
        await self._stream.__aexit__(exc_type, exc, traceback)


def run_stream_in_thread(
    flow: BaseNode,
    shared: Any,
    *,
    events: bool = False,
    nodes: Optional[Collection[str]] = None,
    max_steps: Optional[int] = None,
    **options: Any,
) -> SyncFlowStream:
    """Stream a sync flow from async code without blocking the event loop::

        async with run_stream_in_thread(flow, shared) as stream:
            async for chunk in stream:
                await websocket.send_json(chunk.to_dict())
        action = stream.action

    Each step of the sync run (a node's prep, exec, each chunk, post) runs in a worker thread.
    """
    return SyncFlowStream(
        flow.run_stream(shared, events=events, nodes=nodes, max_steps=max_steps, **options)
    )


def resume_stream_in_thread(
    paused: Paused, answers: Optional[Mapping[str, Any]] = None
) -> SyncFlowStream:
    """Go on with a sync run that `run_stream_in_thread` left paused (`stream.paused`), from
    async code, without blocking the loop: `async with resume_stream_in_thread(paused,
    {interrupt.id: answer}) as stream: ...`. Nothing runs again."""
    return SyncFlowStream(paused.resume(answers))


class SyncFlowStream(Ended):
    """A sync flow's stream, iterated from async code (see `run_stream_in_thread`). `action`
    is the final action once the stream is exhausted (`finished` says so)."""

    def __init__(self, steps: Generator[StreamItem, None, Optional[str]]) -> None:
        self._ending = RunEnd()
        self._items: AsyncGenerator[StreamItem, None] = iterate_in_thread(steps, self._ending)

    async def __aenter__(self) -> SyncFlowStream:
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> AsyncGenerator[StreamItem, None]:
        return self._items

    async def __anext__(self) -> StreamItem:
        return await self._items.__anext__()

    async def aclose(self) -> None:
        """Stop the run: the sync generator is closed (in a worker thread)."""
        await self._items.aclose()
