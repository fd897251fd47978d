"""Async nodes: PocketFlow's AsyncNode family, streaming. Each class adds one idea.

- AsyncNode: prep_async -> exec_async -> post_async, retries with an async wait, run_async.
  An async node streams when its class defines `exec_stream_async`, an async generator
  (its result for post_async is the value it yields wrapped in `Return`).
- AsyncBatchNode: exec once per item, one item after another.
- AsyncParallelBatchNode: every item at once (at most `max_concurrency`), results in input
  order; streamed chunks interleave as they come, tagged with their item.
- AsyncStreamNode / AsyncStreamBatchNode: the streaming forms, named as in the sync family.

Running is the async driver's (async_driver.py), walking the engine's frames.
"""

from __future__ import annotations

import warnings
from typing import Any, AsyncGenerator, Callable, Collection, Optional

from . import engine
from .async_driver import DEFAULT_BUFFER, FlowStream, Return, run
from .engine import StopSignal
from .errors import FlowError
from .events import Chunk, Event
from .nodes import BaseNode, Node

__all__ = [
    "AsyncNode",
    "AsyncBatchNode",
    "AsyncParallelBatchNode",
    "AsyncStreamNode",
    "AsyncStreamBatchNode",
]


class AsyncNode(Node):
    """A node whose hooks are coroutines: `prep_async(shared)`, `exec_async(prep_res)`,
    `post_async(shared, prep_res, exec_res)`; `exec_fallback_async(prep_res, exc)` after the
    last failed attempt (default: re-raise). `wait` seconds pass between attempts without
    blocking the loop. The sync `run` raises RuntimeError("Use run_async."), as in PocketFlow.
    """

    _async = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls._kind is not engine.FLOW:  # a class that defines exec_stream_async streams
            cls._kind = engine.STREAM if hasattr(cls, "exec_stream_async") else engine.NODE
        if hasattr(cls, "exec_stream"):  # the sync family's name: an async node never calls it
            raise FlowError(
                f"{cls.__qualname__} (an async node) defines exec_stream, which async nodes "
                "never call, so it would stream nothing: name it exec_stream_async (an async "
                "generator; `yield Return(result)` hands result to post_async), or make "
                f"{cls.__qualname__} a StreamNode to stream from a sync generator"
            )

    async def prep_async(self, shared: Any) -> Any:
        return None

    async def exec_async(self, prep_res: Any) -> Any:
        return None

    async def exec_fallback_async(self, prep_res: Any, exc: Exception) -> Any:
        raise exc

    async def post_async(self, shared: Any, prep_res: Any, exec_res: Any) -> Any:
        return None

    async def run_async(
        self,
        shared: Any,
        *,
        on_chunk: Optional[Callable[[Chunk], Any]] = None,
        on_event: Optional[Callable[[Event], Any]] = None,
        nodes: Optional[Collection[str]] = None,
        max_steps: Optional[int] = None,
        progress: bool = False,
        pause_before: Optional[Collection[str]] = None,
        stop: Optional[StopSignal] = None,
    ) -> Any:
        """Run to the end on the running event loop (asyncio or trio); return the final action
        (a Paused handle if the run paused, STOPPED if `stop` was set).

        The push driver: `on_chunk` / `on_event` get every chunk / event (and interrupt) as it
        is made; they may be plain functions or coroutine functions (awaited before the run
        goes on).
        """
        if self.successors:
            warnings.warn("Node won't run successors. Use AsyncFlow.", stacklevel=2)
        return await run(
            self,
            shared,
            on_chunk=on_chunk,
            on_event=on_event,
            nodes=nodes,
            max_steps=max_steps,
            progress=progress,
            pause_before=pause_before,
            stop=stop,
        )

    def run_stream_async(
        self,
        shared: Any,
        *,
        events: bool = False,
        nodes: Optional[Collection[str]] = None,
        max_steps: Optional[int] = None,
        buffer: int = DEFAULT_BUFFER,
        progress: bool = False,
        pause_before: Optional[Collection[str]] = None,
        stop: Optional[StopSignal] = None,
    ) -> FlowStream:
        """Stream the run: the same Chunks and events as the sync `run_stream`. Use it as::

            async with flow.run_stream_async(shared) as stream:
                async for chunk in stream:
                    print(chunk.node, chunk.data)
            action = stream.action

        `buffer` bounds how many chunks of parallel items wait for a slow consumer.
        """
        if self.successors:
            warnings.warn("Node won't run successors. Use AsyncFlow.", stacklevel=2)
        return FlowStream(
            self,
            shared,
            events=events,
            nodes=nodes,
            max_steps=max_steps,
            buffer=buffer,
            progress=progress,
            pause_before=pause_before,
            stop=stop,
        )

    async def _run_async(self, shared: Any) -> Any:  # PocketFlow's name
        return await run(self, shared)


class AsyncBatchNode(AsyncNode):
    """prep_async returns a list of items; exec_async runs once per item, one after another
    (retries per item); exec_res is the list of results."""

    _batch = True


class AsyncParallelBatchNode(AsyncBatchNode):
    """Like AsyncBatchNode, but every item runs at once (at most `max_concurrency` at a time);
    exec_res keeps input order. With `exec_stream_async`, the items' chunks interleave as they
    come, each tagged with its item (`chunk.item`). One item failing cancels the others; its
    exception carries `batch_item` (the index) and a note naming it."""

    _parallel = True

    def __init__(
        self,
        max_retries: int = 1,
        wait: float = 0,
        *,
        name: Optional[str] = None,
        max_concurrency: Optional[int] = None,
    ) -> None:
        super().__init__(max_retries, wait, name=name)
        limit_concurrency(self, max_concurrency)


class AsyncStreamNode(AsyncNode):
    """An async node whose `exec_stream_async(prep_res)` is an async generator: each value it
    yields reaches the consumer at once; `yield Return(result)` hands `result` to post_async.

    One that only defines `exec_async` works like an AsyncNode.
    """

    async def exec_stream_async(self, prep_res: Any) -> AsyncGenerator[Any, None]:
        yield Return(await self.exec_async(prep_res))


class AsyncStreamBatchNode(AsyncStreamNode):
    """exec_stream_async runs once per item of prep_async's list, one after another; chunks
    carry the item's index in `chunk.item`."""

    _batch = True


def limit_concurrency(node: BaseNode, max_concurrency: Optional[int]) -> None:
    """Set a parallel batch's `max_concurrency` (None keeps the class's: all at once)."""
    if max_concurrency is None:
        return
    if max_concurrency < 1:
        raise ValueError(f"max_concurrency must be 1 or more, got {max_concurrency}")
    node.max_concurrency = max_concurrency
