"""Async flows: PocketFlow's AsyncFlow family. A flow is a node, so they nest, in sync flows too.

- AsyncFlow: awaits async nodes, runs sync nodes directly; prep_async / post_async hooks.
- AsyncStreamFlow: an AsyncFlow, named for `run_stream_async`.
- AsyncBatchFlow: the graph once per param dict from prep_async, one after another.
- AsyncParallelBatchFlow: the graph once per param dict, all at once.

The walking is the engine's; the async driver carries out what it asks.
"""

from __future__ import annotations

from typing import Any, Optional

from .async_nodes import AsyncNode, limit_concurrency
from .flows import Flow
from .nodes import BaseNode

__all__ = ["AsyncFlow", "AsyncStreamFlow", "AsyncBatchFlow", "AsyncParallelBatchFlow"]


class AsyncFlow(Flow, AsyncNode):
    """A Flow run by the async driver: `await flow.run_async(shared)`, or stream it with
    `run_stream_async`. Its own hooks are `prep_async` and `post_async` (which by default
    returns the last action). Sync nodes, StreamNodes and sync flows run inside it as they are;
    a sync node that blocks can be made `in_thread`."""

    async def post_async(self, shared: Any, prep_res: Any, exec_res: Any) -> Any:
        return exec_res


class AsyncStreamFlow(AsyncFlow):
    """An AsyncFlow. Every flow streams; this name says that you mean to call
    `run_stream_async`::

        async with AsyncStreamFlow(start=plan).run_stream_async(shared) as stream:
            async for chunk in stream:
                print(chunk.node, chunk.data)
    """


class AsyncBatchFlow(AsyncFlow):
    """prep_async returns a list of param dicts; the graph runs once per dict, one after
    another, with `{**flow.params, **params}`; post_async gets `(shared, prep_res, None)`."""

    _batch = True


class AsyncParallelBatchFlow(AsyncBatchFlow):
    """Like AsyncBatchFlow, but the graph runs for every param dict at once (at most
    `max_concurrency` at a time). Chunks interleave as they come, each carrying its param dict
    in `chunk.batch`. One run failing cancels the others; its exception names the param set."""

    _parallel = True

    def __init__(
        self,
        start: Optional[BaseNode] = None,
        *,
        name: Optional[str] = None,
        max_steps: Optional[int] = None,
        max_concurrency: Optional[int] = None,
    ) -> None:
        super().__init__(start, name=name, max_steps=max_steps)
        limit_concurrency(self, max_concurrency)
