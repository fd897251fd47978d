"""The walk's plain data: the two frame kinds (`FlowFrame`, `NodeFrame`), a run's options,
and the small setters and paths the steps share.

A frame says where a run stands, nothing more: which flow and the node it is at, which
params and batch iteration; which item, which attempt, what an attempt gave. The steps that
move frames on live in engine.py; this file must not know the walk, requests or drivers.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Deque, Dict, List, Mapping, Optional, Tuple

from .errors import FlowError, describe_path
from .events import Origin, freeze_params
from .graph import STREAM, _copy, given_name, next_node, node_name

__all__ = ["FlowFrame", "NodeFrame"]


class FlowFrame:
    """A flow being walked."""

    __slots__ = (
        "flow",  # the flow object (a copy, for a sub-flow)
        "origin",  # the flow's own Origin (None for the flow being run): its nodes' parent
        "prep_res",  # what the flow's prep returned
        "batches",  # BatchFlow: the list of param dicts; None for a plain flow
        "batch_index",  # BatchFlow: which of them is running
        "batch",  # read-only params of the innermost batch iteration, for chunk tags
        "params",  # the params dict every node of this run of the graph gets
        "node",  # the node (a copy) being run or about to run; None when the graph ended
        "action",  # the last action a node of this flow returned
        "steps",  # node steps taken, for max_steps
        "max_steps",
        "recent",  # the last few node names, kept only when max_steps is set
        "selected",  # whether chunks from inside this flow are wanted
        "started",  # perf_counter() at entry, when events are on
        "custom_routing",  # the flow overrides get_next_node
        "driven",  # its prep and post are async (prep_async, post_async): the driver awaits them
        "branch",  # one param set of a parallel batch flow: ends without the flow's post
        "pending",  # paused before its node (pause_before): the interrupt's payload, else None
        "answered",  # the pause before its node was answered: the node runs when resumed
        "branches",  # a parallel batch flow paused: {index: the paused branch's stack}
        "done",  # ... and the results of its branches that finished
    )

    def __init__(self, flow: Any, origin: Optional[Origin], batch: Any, selected: bool) -> None:
        self.flow = flow
        self.origin = origin
        self.prep_res: Any = None
        self.batches: Optional[List[Mapping[str, Any]]] = None
        self.batch_index = -1
        self.batch = batch
        self.params: Dict[str, Any] = {}
        self.node: Any = None
        self.action: Optional[str] = None
        self.steps = 0
        self.max_steps: Optional[int] = None
        self.recent: Optional[Deque[str]] = None
        self.selected = selected
        self.started = 0.0
        self.custom_routing = type(flow).get_next_node is not next_node
        self.driven = flow._async
        self.branch = False
        self.pending: Any = None
        self.answered = False
        self.branches: Optional[Dict[int, List[Any]]] = None
        self.done: Optional[Dict[int, Any]] = None


class _Options:
    """How one run goes: what it yields, and the opt-in parts (each costs only when used)."""

    __slots__ = (
        "chunks",
        "events",
        "nodes",
        "max_steps",
        "driver",
        "started",
        "progress",  # yield Progress after each batch item
        "pause_before",  # node ids to pause before, or None
        "stop",  # a StopSignal, or None
        "checkpoint",  # called with the position after every node run, at pauses and the end
        "next_id",  # the next item id of a checkpointed run; None when items carry no ids
        "careful",  # chunks take the checked path (ids, stop): never the map/zip fast path
        "inline",  # plain nodes may run on the hot path (nothing to report per node run)
        "fingerprint",  # the graph's fingerprint, once computed
        "resumed",  # the first node entered after resuming a run that was not paused
        "root",  # what is being run, and the stack of its walk (for checkpoints)
        "stack",
        "sections",  # how many parallel sections are running (their branches never save)
    )

    def __init__(
        self,
        chunks: bool,
        events: bool,
        nodes: Any,
        max_steps: Optional[int],
        driver: bool,
        progress: bool = False,
        pause_before: Optional[Any] = None,
        stop: Optional[Any] = None,  # a StopSignal (interrupts.py, a layer above)
        checkpoint: Optional[Callable[[Dict[str, Any]], Any]] = None,
    ) -> None:
        self.chunks = chunks
        self.events = events
        self.driver = driver
        if isinstance(nodes, str):  # one name, not a set of characters
            nodes = (nodes,)
        self.nodes = None if nodes is None else frozenset(nodes)
        self.max_steps = max_steps
        self.started: Optional[float] = None  # a node run on its own: when it started
        self.progress = progress or events
        if isinstance(pause_before, str):
            pause_before = (pause_before,)
        self.pause_before = None if not pause_before else frozenset(pause_before)
        self.stop = stop
        self.checkpoint = checkpoint
        self.next_id: Optional[int] = None if checkpoint is None else 0
        self.careful = checkpoint is not None or stop is not None
        self.inline = (
            not self.progress and checkpoint is None and self.pause_before is None
        )  # (progress is on with events)
        self.fingerprint: Optional[str] = None
        self.resumed = False
        self.root: Any = None
        self.stack: List[Any] = []
        self.sections = 0

    def take(self) -> int:
        """The next item id of a checkpointed run (the async driver numbers chunks so)."""
        number: int = self.next_id  # type: ignore[assignment]
        self.next_id = number + 1
        return number


class NodeFrame:
    """A node between its prep and its post: which item, which attempt, what results so far.

    An attempt's outcome, however it was made (a call, a stream, the async driver), is always
    left in the frame: `result` when it gave one, or `error` when it raised.
    """

    __slots__ = (
        "node",  # the node (a copy) being run
        "origin",  # where its chunks come from
        "prep_res",
        "items",  # what exec runs on: [prep_res] for a plain node, prep's list for a batch
        "count",  # len(items)
        "index",  # the item being run
        "attempt",  # its attempt (0-based)
        "failed",  # the last attempt's exception once exec_fallback is due, else None
        "error",  # the exception of the attempt just made, else None
        "result",  # the attempt's exec_res, once made
        "results",  # BatchNode: the exec_res list so far
        "stream",  # whether exec is exec_stream
        "emit",  # whether chunks are wanted
        "started",
        "driven",  # its hooks go through the async driver (an async node, or one in_thread)
        "parallel",  # its items run concurrently, one branch each
        "branch",  # one item of a parallel batch: ends with the item's result, without post
        "asking",  # its generator may yield Ask: it streams on the send()-capable path
        "gen",  # a generator suspended at `yield Ask(...)`, kept for an in-process resume
        "pending",  # the payload of the question it waits on, else None
        "answer",  # the answer, once given
        "answered",
        "asks",  # the answers this attempt got so far, in order (replayed to a re-run exec)
        "ask_index",  # how many asks this attempt made so far
        "replay_until",  # resumed from a checkpoint: chunks before this many asks are replays
        "first_id",  # a checkpointed run: the id of this attempt's first item
        "replay_id",  # ... and of the next re-made chunk
        "shift",  # resumed after a crash: attempts are numbered from 1 (a new attempt)
        "hush",  # re-run in-process after its generator was lost: replays are not shown
        "branches",  # a parallel batch paused: {index: the paused branch's stack}
        "done",  # ... and the results of its items that finished
    )

    def __init__(
        self,
        node: Any,
        origin: Origin,
        prep_res: Any,
        emit: bool,
        items: Optional[List[Any]] = None,
    ) -> None:
        self.node = node
        self.origin = origin
        self.prep_res = prep_res
        if items is None:
            items = list(prep_res or ()) if node._batch else [prep_res]
        self.items = items
        self.count = len(self.items)
        self.index = 0
        self.attempt = 0
        self.failed: Optional[BaseException] = None
        self.error: Optional[BaseException] = None
        self.result: Any = None
        self.results: List[Any] = []
        self.stream = node._kind is STREAM
        self.emit = emit
        self.started = 0.0
        self.driven = False
        self.parallel = False
        self.branch = False
        self.asking = False
        self.gen: Any = None
        self.pending: Any = None
        self.answer: Any = None
        self.answered = False
        self.asks: List[Any] = []
        self.ask_index = 0
        self.replay_until = 0
        self.first_id: Optional[int] = None
        self.replay_id = 0
        self.shift = 0
        self.hush = False
        self.branches: Optional[Dict[int, List[Any]]] = None
        self.done: Optional[Dict[int, Any]] = None

    def attempt_origin(self, replay: bool = False) -> Origin:
        origin = self.origin
        attempt = self.attempt + self.shift
        if not self.node._batch and attempt == 0 and not replay:
            return origin
        item = self.index if self.node._batch else None
        return Origin(origin.name, origin.parent, origin.batch, item, attempt, replay)


def _take(options: _Options) -> Optional[int]:
    """The next item id of a checkpointed run (None when items carry no ids)."""
    number = options.next_id
    if number is not None:
        options.next_id = number + 1
    return number


def _batch_params(prep_res: Any) -> List[Mapping[str, Any]]:
    batches = list(prep_res or ())
    for index, params in enumerate(batches):
        if not isinstance(params, Mapping):
            raise FlowError(
                f"BatchFlow prep must return a list of param dicts; item {index} is "
                f"{params!r} ({type(params).__name__}). Return e.g. [{{'file': 'a.txt'}}, ...]."
            )
    return batches


def _guard(frame: FlowFrame, max_steps: Optional[int]) -> None:
    frame.max_steps = max_steps
    if max_steps is not None:  # only a guarded flow pays for remembering its steps
        frame.recent = deque(maxlen=6)


def _start_next_batch(frame: FlowFrame) -> None:
    flow = frame.flow
    frame.batch_index += 1
    params = frame.batches[frame.batch_index]  # type: ignore[index]
    frame.params = {**flow.params, **params}
    frame.batch = freeze_params(params)
    frame.node = _copy(flow.start_node)
    frame.steps = 0  # max_steps guards one run of the graph, not the whole batch


def _is_selected(origin: Origin, options: _Options) -> bool:
    return options.nodes is None or origin.name in options.nodes


def _flow_path(frame: FlowFrame) -> Tuple[str, ...]:
    return () if frame.origin is None else frame.origin.path


def _own_path(frame: FlowFrame) -> Tuple[str, ...]:
    """The flow's path for its own errors: its name alone for the flow being run."""
    return _flow_path(frame) or (node_name(frame.flow),)


def _flow_label(frame: FlowFrame) -> str:
    """'StreamFlow Agent > Inner' for a sub-flow, "Flow 'Agent'" for the flow being run."""
    if frame.origin is None:
        name = given_name(frame.flow)
        return type(frame.flow).__name__ + ("" if name is None else f" {name!r}")
    return f"{type(frame.flow).__name__} {describe_path(frame.origin.path)}"


def _child_path(frame: FlowFrame, node: Any) -> Tuple[str, ...]:
    return _flow_path(frame) + (node_name(node),)
