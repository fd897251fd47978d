"""Nodes: the units a flow runs. Each class adds one idea to the one above it.

- BaseNode: prep -> exec -> post, params, successors and the `>>` / `- "action" >>` wiring.
- Node: retries (max_retries, wait, cur_retry) and exec_fallback.
- BatchNode: exec once per item of what prep returned.
- StreamNode: exec_stream, a generator whose yields stream out and whose return value is exec_res.
- StreamBatchNode: exec_stream once per item; chunks carry the item's index.
- AskNode: a node whose exec asks the question its prep made (a pause between nodes).

Running is not done here: every `run` / `run_stream` hands the node to the engine.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Collection, Dict, Generator, Optional

from . import engine, graph
from .events import Chunk, Event, StreamItem

__all__ = ["BaseNode", "Node", "BatchNode", "StreamNode", "StreamBatchNode", "AskNode"]


class BaseNode:
    """A node: `prep(shared)` -> `exec(prep_res)` -> `post(shared, prep_res, exec_res)`.

    `post` returns the action that picks the next node in a flow (None means "default").
    """

    _kind = engine.NODE
    _batch = False
    _async = False  # its hooks are coroutines (AsyncNode, AsyncFlow)
    _parallel = False  # its batch items run concurrently (AsyncParallelBatch*)
    _name: Optional[str] = None  # the name given with name=, if any
    _node_id: Optional[str] = None  # its id in its flow, set by the engine when it first runs
    max_retries = 1
    wait: float = 0
    #: Under the async driver, run this sync node's hooks in a worker thread (see Node).
    in_thread = False
    #: For a parallel batch: how many items run at once; None means all of them.
    max_concurrency: Optional[int] = None

    def __init__(self, *, name: Optional[str] = None) -> None:
        self.params: Dict[str, Any] = {}
        self.successors: Dict[str, BaseNode] = {}
        if name is not None:
            self._name = name

    @property
    def name(self) -> str:
        """The node's visible name: the `name` it was given, else its class name. Chunks,
        paths and `nodes=` use it too, except for a second unnamed node of one class in one
        flow, which the engine tells apart as `<class>#2` (see README, "Node ids")."""
        return self._name or type(self).__name__

    @name.setter
    def name(self, name: Optional[str]) -> None:
        self._name = name

    def set_params(self, params: Dict[str, Any]) -> None:
        self.params = params

    def next(self, node: BaseNode, action: str = "default") -> BaseNode:
        """Make `node` follow this one after `action`; returns `node` so wiring chains."""
        if action in self.successors:
            warnings.warn(f"Overwriting successor for action '{action}'", stacklevel=2)
        self.successors[action] = node
        return node

    def prep(self, shared: Any) -> Any:
        return None

    def exec(self, prep_res: Any) -> Any:
        return None

    def post(self, shared: Any, prep_res: Any, exec_res: Any) -> Any:
        return None

    def run(
        self,
        shared: Any,
        *,
        on_chunk: Optional[Callable[[Chunk], Any]] = None,
        on_event: Optional[Callable[[Event], Any]] = None,
        nodes: Optional[Collection[str]] = None,
        max_steps: Optional[int] = None,
        progress: bool = False,
        pause_before: Optional[Collection[str]] = None,
        stop: Optional[engine.StopSignal] = None,
    ) -> Any:
        """Run to the end and return the final action (a `Paused` handle if the run paused,
        `STOPPED` if `stop` was set).

        The push driver: `on_chunk` is called with every Chunk as it is made (only those from
        the nodes or flows named in `nodes`, when given), `on_event` with every lifecycle event
        and every Interrupt. Without callbacks, chunks are not even made.
        """
        if self.successors:
            warnings.warn("Node won't run successors. Use Flow.", stacklevel=2)
        stream = engine.walk(
            self,
            shared,
            chunks=on_chunk is not None,
            events=on_event is not None,
            nodes=nodes,
            max_steps=max_steps,
            progress=progress,
            pause_before=pause_before,
            stop=stop,
        )
        if on_chunk is None and on_event is None:
            return engine.drain(stream)
        return engine.push(stream, on_chunk, on_event)

    def run_stream(
        self,
        shared: Any,
        *,
        events: bool = False,
        nodes: Optional[Collection[str]] = None,
        max_steps: Optional[int] = None,
        progress: bool = False,
        pause_before: Optional[Collection[str]] = None,
        stop: Optional[engine.StopSignal] = None,
    ) -> Generator[StreamItem, None, Any]:
        """Run, yielding every Chunk as it is made; the generator returns the final action.

        `events=True` adds lifecycle events (NodeStarted, NodeFinished, Retry, Progress,
        FlowFinished); `progress=True` adds only Progress (after each batch item).
        `nodes` keeps only the chunks of the nodes (or of the flows) with those names.
        A run that pauses (a node asks, or `pause_before` names the next node) yields an
        Interrupt and returns a `Paused` handle (see README, "Pause and resume"); `stop` (a
        StopSignal) stops it from another thread, returning `STOPPED`.
        Closing the generator stops the run: the running exec_stream is closed, nothing after
        it runs. Example::

            for chunk in flow.run_stream(shared):
                print(chunk.node, chunk.data)
            action = yield from flow.run_stream(shared)   # inside another generator
        """
        if self.successors:
            warnings.warn("Node won't run successors. Use Flow.", stacklevel=2)
        return engine.walk(
            self,
            shared,
            events=events,
            nodes=nodes,
            max_steps=max_steps,
            progress=progress,
            pause_before=pause_before,
            stop=stop,
        )

    def _run(self, shared: Any) -> Optional[str]:  # PocketFlow's name, for apps that call it
        return engine.drain(engine.walk(self, shared, chunks=False))  # type: ignore[no-any-return]

    def __rshift__(self, other: BaseNode) -> BaseNode:
        return self.next(other)

    def __sub__(self, action: str) -> _ConditionalTransition:
        if isinstance(action, str):
            return _ConditionalTransition(self, action)
        raise TypeError("Action must be a string")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {engine.node_name(self)!r}>"


graph._NAME_PROPERTY = BaseNode.name


class _ConditionalTransition:
    """What `node - "action"` makes, waiting for `>> next_node`."""

    __slots__ = ("source", "action")

    def __init__(self, source: BaseNode, action: str) -> None:
        self.source = source
        self.action = action

    def __rshift__(self, target: BaseNode) -> BaseNode:
        return self.source.next(target, self.action)


class Node(BaseNode):
    """A node whose exec is tried up to `max_retries` times, `wait` seconds apart.

    `cur_retry` holds the 0-based attempt. After the last failure `exec_fallback(prep_res, exc)`
    gives exec_res instead; by default it re-raises.

    `in_thread=True` marks a node that blocks (a sync SDK call, file or CPU work): run by the
    async driver, its prep, exec (or each step of exec_stream) and post run in a worker thread,
    so the event loop goes on serving other flows. Sync drivers ignore it.
    """

    def __init__(
        self,
        max_retries: int = 1,
        wait: float = 0,
        *,
        name: Optional[str] = None,
        in_thread: bool = False,
    ):
        super().__init__(name=name)
        self.max_retries = max_retries
        self.wait = wait
        self.cur_retry = 0
        if in_thread:
            if self._async:
                raise TypeError(
                    f"{type(self).__name__}: in_thread is for sync nodes that block; an async "
                    "node's hooks already run on the event loop without blocking it."
                )
            self.in_thread = True

    def exec_fallback(self, prep_res: Any, exc: Exception) -> Any:
        raise exc


class BatchNode(Node):
    """prep returns a list of items (None counts as empty); exec runs once per item (with the
    retry rules per item); exec_res is the list of results."""

    _batch = True


class StreamNode(Node):
    """A node whose `exec_stream(prep_res)` is a generator: every yielded value reaches the
    caller at once as a Chunk, and the generator's return value is exec_res for `post`.

    Retries restart exec_stream (chunks of a failed attempt carry its `attempt` number);
    `exec_fallback` may itself be a generator that streams. A StreamNode that only defines
    `exec` works like a Node.
    """

    _kind = engine.STREAM

    def exec_stream(self, prep_res: Any) -> Generator[Any, None, Any]:
        return self.exec(prep_res)
        yield  # pragma: no cover - makes this a generator function


class AskNode(Node):
    """A ready-made node that pauses the run to ask a question between nodes.

    Its `prep(shared)` returns the JSON-ready payload (the question, the tool call to
    approve); the run pauses with an Interrupt carrying it; the answer becomes exec_res, for
    `post(shared, payload, answer)`. On resume nothing runs again (prep's payload is kept)::

        class Approve(AskNode):
            def prep(self, shared):
                return {"approve": shared["tool_call"]}
            def post(self, shared, payload, answer):
                return "run_tool" if answer == "yes" else "skip"
    """

    def exec(self, payload: Any) -> Any:
        return engine.ask(payload)


class StreamBatchNode(StreamNode):
    """exec_stream runs once per item of prep's list; chunks carry the item's index in
    `chunk.item`; exec_res is the list of the generators' return values."""

    _batch = True
