"""Flows: graphs of nodes wired by actions. A flow is itself a node, so flows nest.

- Flow: a start node and transitions; runs a copy of each node it visits with its params.
- StreamFlow: a Flow, named for the way it is meant to be used (`run_stream`).
- BatchFlow: runs its graph once per param dict that prep returns.

The walking itself is the engine's (engine.py); a flow holds only the graph and its hooks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from . import engine
from .errors import FlowError
from .nodes import BaseNode

__all__ = ["Flow", "StreamFlow", "BatchFlow"]


class Flow(BaseNode):
    """Runs `start`, then whichever node the returned action leads to, until none does.

    The flow's prep runs first; its post gets the last action as exec_res and (by default)
    returns it, so a nested flow's last action drives the outer flow. `max_steps` stops a
    runaway loop with MaxStepsExceeded after that many node steps.
    """

    _kind = engine.FLOW
    max_steps: Optional[int] = None

    def __init__(
        self,
        start: Optional[BaseNode] = None,
        *,
        name: Optional[str] = None,
        max_steps: Optional[int] = None,
    ) -> None:
        super().__init__(name=name)
        self.start_node = start
        self.max_steps = max_steps

    def start(self, start: BaseNode) -> BaseNode:
        """Set the start node; returns it so wiring can go on from there."""
        self.start_node = start
        return start

    #: `get_next_node(node, action)`: the node after `node` for `action`, or None. Override to
    #: route differently; the engine copies what it returns.
    get_next_node = engine.next_node

    def post(self, shared: Any, prep_res: Any, exec_res: Any) -> Any:
        return exec_res

    if not TYPE_CHECKING:  # at run time only: a type checker already knows they are missing

        def __getattr__(self, name: str) -> Any:
            if name in _ASYNC_RUNS:  # say what to use instead of a bare AttributeError
                raise _NoAsyncRun(self, name)
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


_ASYNC_RUNS = ("run_async", "run_stream_async")


class _NoAsyncRun(FlowError, AttributeError):  # an AttributeError still: hasattr() says False
    def __init__(self, flow: Flow, method: str) -> None:
        kind = type(flow).__name__
        super().__init__(
            f"{flow.name or kind} is a {kind}, a sync flow: it has no {method}. Build it as "
            "an AsyncStreamFlow (or AsyncFlow) to run it with `await flow.run_async(shared)` "
            "or `flow.run_stream_async(shared)`; its sync nodes run inside as they are. To "
            "stream this sync flow from async code as it is, use "
            "`run_stream_in_thread(flow, shared)`."
        )


class StreamFlow(Flow):
    """A Flow. Every flow streams; this name says that you mean to call `run_stream`::

    flow = StreamFlow(start=plan)
    for chunk in flow.run_stream(shared):
        print(chunk.node, chunk.data)
    """


class BatchFlow(Flow):
    """prep returns a list of param dicts; the graph runs once per dict, with
    `{**flow.params, **params}`; post gets `(shared, prep_res, None)`. Chunks from inside carry
    the iteration's params in `chunk.batch`."""

    _batch = True
