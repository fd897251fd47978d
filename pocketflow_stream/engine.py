"""The engine: one iterative walk over an explicit stack of frames.

Everything that decides what runs next lives in this file. Rules it keeps:

- No recursion. A sub-flow is a `FlowFrame` pushed on the stack, not a nested call; a loop of
  a million turns reuses one frame; nothing is kept per step. Flows nested ten thousand deep
  use ten thousand small frames and constant Python stack.
- A frame is plain data: which flow, which node it is at, which params, which batch
  iteration; which item, which attempt.
- `walk` is a generator and the only engine. `run` drains it, `run_stream` hands it out, the
  push driver calls back from it: they cannot disagree.
- It knows node classes only by class attributes: `_kind` (NODE, STREAM or FLOW), `_batch`,
  `_async` (hooks are coroutines), `_parallel` (batch items run concurrently) and `in_thread`.
  It knows nothing of LLMs, UIs, storage or event loops.
- It does no I/O and never awaits. Where a run needs what only an async driver can do (await
  an async hook, iterate an async generator, sleep, call a blocking node in a worker thread,
  run batch items concurrently), the walk yields a `Request` (a closed set, at the end of this
  file) and the driver puts the outcome in it before resuming the walk. Sync drivers never
  see one: without `driver=True`, an async node raises RuntimeError("Use run_async.").

Frame kinds, both handled in `walk`'s loop:
- `FlowFrame`: a Flow (or a BatchFlow with its list of param sets) and the node it is at.
- `NodeFrame`: a node between prep and post — the item and attempt being run, one attempt per
  pass of the loop, so retries, fallbacks and batch items need no nested calls. A StreamNode's
  generator is passed straight through, each value tagged in C by `map(Chunk, zip(...))`.
The hot path: a plain Node with one attempt and no events to report runs inline
(`_run_plain`), with no frame and no generator.

A parallel batch is one `Parallel` request whose branches are walks of their own: one
`NodeFrame` per item, or one `FlowFrame` per param set, each ending where its item ends.
"""

from __future__ import annotations

import copy
import inspect
import time
import warnings
from collections import deque
from collections.abc import Generator as GeneratorABC
from itertools import repeat as _repeat
from types import GeneratorType
from typing import Any, Callable, Dict, Generator, List, Mapping, Optional, Tuple

from .errors import FlowError, MaxStepsExceeded, attach_node_path, describe_path
from .events import (
    Chunk,
    FlowFinished,
    NodeFinished,
    NodeStarted,
    Origin,
    Retry,
    freeze_params,
)

__all__ = [
    "NODE",
    "STREAM",
    "FLOW",
    "walk",
    "drain",
    "next_node",
    "node_name",
    "FlowFrame",
    "NodeFrame",
    "Request",
    "Await",
    "InThread",
    "Sleep",
    "Stream",
    "Parallel",
]

NODE = "node"  # prep -> exec -> post (Node, BatchNode)
STREAM = "stream"  # prep -> exec_stream (a generator) -> post (StreamNode, StreamBatchNode)
FLOW = "flow"  # a graph of nodes (Flow, StreamFlow, BatchFlow)

_tag = map  # map(Chunk, pairs): chunks made in C, with no Python frame per chunk
_perf_counter = time.perf_counter


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
        self.recent: Optional[deque] = None
        self.selected = selected
        self.started = 0.0
        self.custom_routing = type(flow).get_next_node is not next_node
        self.driven = flow._async
        self.branch = False


class _Options:
    __slots__ = ("chunks", "events", "nodes", "max_steps", "driver", "started")

    def __init__(
        self, chunks: bool, events: bool, nodes: Any, max_steps: Optional[int], driver: bool
    ) -> None:
        self.chunks = chunks
        self.events = events
        self.driver = driver
        if isinstance(nodes, str):  # one name, not a set of characters
            nodes = (nodes,)
        self.nodes = None if nodes is None else frozenset(nodes)
        self.max_steps = max_steps
        self.started: Optional[float] = None  # a node run on its own: when it started


def walk(
    root: Any,
    shared: Any,
    *,
    chunks: bool = True,
    events: bool = False,
    nodes: Optional[Any] = None,
    max_steps: Optional[int] = None,
    driver: bool = False,
) -> Generator[Any, None, Optional[str]]:
    """Run `root` (a flow or a single node) on `shared`, yielding what it streams.

    Yields Chunks (unless `chunks` is False; only those from nodes named in `nodes`, or inside
    flows named in it, when `nodes` is given) and, with `events=True`, lifecycle events.
    With `driver=True` it also yields Requests, for an async driver to carry out.
    Returns the final action.
    """
    return _walk(root, shared, _Options(chunks, events, nodes, max_steps, driver), [])


def _walk(root: Any, shared: Any, options: _Options, stack: List[Any]) -> Generator[Any, None, Any]:
    """The walk itself: the one loop, one pass per step of the frame on top of `stack`.

    `stack` is empty for a run of `root`, or holds the one frame of a parallel branch, whose
    walk returns its item's result (or its graph's last action). Each frame kind's step is a
    function below; only the per-chunk path is written out here, where it costs nothing.
    """
    if not stack:
        stack.append((yield from _enter_root(root, shared, options)))
    events = options.events

    while True:
        frame = stack[-1]

        if type(frame) is NodeFrame:  # a node between prep and post, one attempt per pass
            if frame.index < frame.count:
                if frame.parallel:  # every item at once, each a branch of its own
                    yield from _run_items_in_parallel(frame, shared, options)
                    continue
                made = yield from _start_attempt(frame, options)
                if made is not None:  # a generator to stream: the per-chunk path
                    try:
                        if not frame.emit:
                            drain(_capture(made, frame))
                        elif _RETURN_PASSES_MAP and type(made) is GeneratorType:
                            # the fast path: no Python frame of ours between the node's
                            # generator and the walk; its return value reaches `yield from`
                            tagged = zip(_repeat(frame.attempt_origin()), made)
                            try:
                                frame.result = yield from _tag(Chunk, tagged)
                            except Exception as exc:
                                if made.gi_frame is not None:  # still suspended: the consumer
                                    raise  # threw it in, so the run stops here
                                frame.error = exc
                        else:
                            tagged = zip(_repeat(frame.attempt_origin()), _capture(made, frame))
                            yield from _tag(Chunk, tagged)
                    finally:  # a stop (close(), throw(), dropping the stream) closes it too
                        made.close()
                yield from _settle_attempt(frame, options)
                continue
            if frame.branch:  # one item of a parallel batch: its result is all it gives
                return frame.result
            action = yield from _finish_node(frame, shared, options)

        else:  # a FlowFrame
            node = frame.node
            if node is not None:
                frame.steps += 1
                if frame.max_steps is not None:
                    _count_step(frame, node)
                node.set_params(frame.params)
                if (
                    node._kind is NODE
                    and not events
                    and node.max_retries <= 1
                    and not node._async
                    and not node.in_thread
                ):
                    _run_plain(frame, node, shared)  # the hot path: no frame, nothing to yield
                else:
                    stack.append((yield from _enter_child(frame, node, shared, options)))
                continue
            if frame.branch:  # one param set of a parallel batch flow: its graph has ended
                return frame.action
            if frame.batches is not None and frame.batch_index + 1 < len(frame.batches):
                yield from _next_batch(frame, shared, options)
                continue
            action = yield from _leave_flow(frame, shared, options)

        stack.pop()  # the frame's node or flow finished with `action`
        if not stack:
            return action
        parent = stack[-1]
        parent.action = action
        parent.node = _successor(parent, parent.node, action)


def drain(stream: Generator[Any, None, Any]) -> Any:
    """Run a generator to its end, discarding what it yields; return its return value."""
    step = stream.__next__
    try:
        while True:
            step()
    except StopIteration as stop:
        return stop.value


def next_node(flow: Any, node: Any, action: Optional[str]) -> Any:
    """The node that follows `node` after `action` (not yet copied), or None if the flow ends.

    Warns, as PocketFlow does, when the node has successors but none for this action.
    """
    successors = node.successors
    following = successors.get(action or "default")
    if following is None and successors:
        warnings.warn(f"Flow ends: '{action}' not found in {list(successors)}", stacklevel=2)
    return following


def node_name(node: Any) -> str:
    """The node's id in its flow, what chunks, paths, events and `nodes=` use: its given name,
    else its class name, or for a second unnamed node of one class in one flow a distinct id
    (`Talk#2`) given by `_assign_ids` when the flow first runs."""
    return node._node_id or node.name  # type: ignore[no-any-return]


def given_name(node: Any) -> Optional[str]:
    """The name the app gave a node (`name=` or a class attribute `name`), or None."""
    if type(node).name is _NAME_PROPERTY:
        return node._name  # type: ignore[no-any-return]
    return node.name  # type: ignore[no-any-return]


_NAME_PROPERTY: Any = None  # nodes.py's BaseNode.name, set when nodes.py is imported


def _assign_ids(flow: Any) -> None:
    """Give every node of `flow`'s graph its id, once per graph (the start node keeps the mark;
    copies share it): the given name, else the class name, else `<class>#<n>` for the n-th
    unnamed node of one class met walking the graph breadth-first from the start in wiring
    order, so the same graph built twice gets the same ids. Two nodes given one name raise
    FlowError."""
    start = flow.start_node
    if start is None or getattr(start, "__dict__", {}).get("_ids_assigned"):
        return
    order: List[Any] = []
    seen = set()
    queue = deque([start])
    while queue:
        node = queue.popleft()
        if id(node) in seen:
            continue
        seen.add(id(node))
        order.append(node)
        queue.extend(node.successors.values())
    named: Dict[str, Any] = {}
    for node in order:
        name = given_name(node)
        if name is None:
            continue
        other = named.setdefault(name, node)
        if other is not node:
            flow_name = given_name(flow) or type(flow).__name__
            raise FlowError(
                f"flow {flow_name!r} has two nodes named {name!r} (a {type(other).__name__} "
                f"and a {type(node).__name__}): a node's name is its id in its flow (in chunk "
                "paths, events and checkpoints), so it must be unique there. Rename one."
            )
    taken = set(named)
    counts: Dict[str, int] = {}
    for node in order:
        name = given_name(node)
        if name is None:
            base = type(node).__name__
            count = counts.get(base, 0) + 1
            name = base if count == 1 else f"{base}#{count}"
            while name in taken:  # a given name took it
                count += 1
                name = f"{base}#{count}"
            counts[base] = count
            taken.add(name)
        try:
            node._node_id = name
        except AttributeError:  # a node class with __slots__ keeps its visible name
            pass
    try:
        start._ids_assigned = True
    except AttributeError:
        pass


def _known_names(root: Any) -> List[str]:
    """Every id in `root`'s graph and the graphs of its sub-flows (for `nodes=`)."""
    names = [node_name(root)]
    flows = [root] if root._kind is FLOW else []
    seen = set()
    while flows:
        flow = flows.pop()
        _assign_ids(flow)
        queue = deque([flow.start_node] if flow.start_node is not None else [])
        while queue:
            node = queue.popleft()
            if id(node) in seen:
                continue
            seen.add(id(node))
            names.append(node_name(node))
            if node._kind is FLOW:
                flows.append(node)
            queue.extend(node.successors.values())
    return names


def _check_selection(root: Any, nodes: frozenset) -> None:
    """`nodes=` names no node or flow of the graph: say which names there are (checked once
    per run, before it starts; a flow that routes with its own get_next_node is not checked,
    as its graph is not known in advance)."""
    known = _known_names(root)
    missing = sorted(nodes.difference(known))
    if missing and not _routes_itself(root):
        names = ", ".join(map(repr, dict.fromkeys(known)))
        raise FlowError(
            f"nodes={sorted(nodes)!r}: no node or flow is named {', '.join(map(repr, missing))} "
            f"in {node_name(root)}; the names there are {names}. Pass the names (ids) chunks "
            "carry in chunk.node."
        )


def _routes_itself(root: Any) -> bool:
    if root._kind is not FLOW:
        return False
    return type(root).get_next_node is not next_node


# --- entering: the root, a flow's next node ----------------------------------------------


def _enter_root(root: Any, shared: Any, options: _Options) -> Generator[Any, None, Any]:
    """The first frame: the flow being run, or a stand-alone node (which ends its stream with
    FlowFinished like a flow, when events are on)."""
    if options.nodes is not None:
        _check_selection(root, options.nodes)
    if root._kind is FLOW:
        return (yield from _enter_flow(root, shared, None, options))
    origin = Origin(node_name(root))
    if options.events:
        options.started = _perf_counter()
        yield NodeStarted(origin.name, origin.path, origin.batch)
    return (yield from _enter_node(root, shared, origin, _is_selected(origin, options), options))


def _enter_child(
    frame: FlowFrame, node: Any, shared: Any, options: _Options
) -> Generator[Any, None, Any]:
    """The frame for the flow's current node (a node or a sub-flow), after its prep."""
    origin = Origin(node_name(node), frame.origin, frame.batch)
    if options.events:
        yield NodeStarted(origin.name, origin.path, origin.batch)
    if node._kind is FLOW:
        return (yield from _enter_flow(node, shared, frame, options, origin))
    selected = frame.selected or _is_selected(origin, options)
    return (yield from _enter_node(node, shared, origin, selected, options))


# --- flows -------------------------------------------------------------------------------


def _enter_flow(
    flow: Any,
    shared: Any,
    parent: Optional[FlowFrame],
    options: _Options,
    origin: Optional[Origin] = None,
) -> Generator[Any, None, FlowFrame]:
    """Push-ready frame for `flow`, after its prep; `origin` is the flow's place in its parent
    (None for the flow being run). A generator only to yield a driven prep's request."""
    if parent is None:  # naming the flow being run in `nodes` selects all of it
        batch = None
        selected = options.nodes is not None and node_name(flow) in options.nodes
    else:
        assert origin is not None  # a sub-flow always comes with its place
        batch = parent.batch
        selected = parent.selected or _is_selected(origin, options)
    _assign_ids(flow)
    frame = FlowFrame(flow, origin, batch, selected)
    if frame.driven and not options.driver:
        raise RuntimeError("Use run_async.")
    if options.events:
        frame.started = _perf_counter()
    _guard(frame, flow.max_steps if flow.max_steps is not None else options.max_steps)
    try:
        if flow.start_node is None:
            raise FlowError(
                f"{_flow_label(frame)} has no start node: "
                "give it one with Flow(start=node) or flow.start(node)."
            )
        prep_res = yield from _call(flow, "prep", (shared,), frame.driven, frame.origin)
        if flow._batch:  # the walk starts the first batch when it sees frame.node is None
            prep_res = prep_res or []  # what a BatchFlow's post gets, as in PocketFlow
            frame.batches = _batch_params(prep_res)
        else:
            frame.params = {**flow.params}
            frame.node = _copy(flow.start_node)
        frame.prep_res = prep_res
    except Exception as exc:
        _mark(exc, _own_path(frame))
        raise
    return frame


def _batch_params(prep_res: Any) -> List[Mapping[str, Any]]:
    batches = list(prep_res or ())
    for index, params in enumerate(batches):
        if not isinstance(params, Mapping):
            raise FlowError(
                f"BatchFlow prep must return a list of param dicts; item {index} is "
                f"{params!r} ({type(params).__name__}). Return e.g. [{{'file': 'a.txt'}}, ...]."
            )
    return batches


def _next_batch(frame: FlowFrame, shared: Any, options: _Options) -> Generator[Any, None, None]:
    """A batch flow's graph has ended: start its next param set, or (parallel) all the rest at
    once, each a branch of its own."""
    if not frame.flow._parallel:
        _start_next_batch(frame)
        return
    request = _parallel_batches(frame, shared, options)
    yield request
    request.outcome()
    frame.batch_index = len(frame.batches) - 1  # type: ignore[arg-type]


def _parallel_batches(frame: FlowFrame, shared: Any, options: _Options) -> Parallel:
    """The remaining param sets of a parallel batch flow, each its own branch of the walk."""
    flow = frame.flow
    batches: List[Mapping[str, Any]] = frame.batches  # type: ignore[assignment]
    first = frame.batch_index + 1

    def branch(index: int) -> Generator[Any, None, Any]:
        twin = FlowFrame(flow, frame.origin, None, frame.selected)
        twin.branch = True
        twin.batches = batches
        twin.batch_index = first + index - 1
        _start_next_batch(twin)  # the one param set this branch runs
        _guard(twin, frame.max_steps)
        return _walk(None, shared, options, [twin])

    def label(index: int) -> str:
        return f"param set {first + index} {dict(batches[first + index])!r}"

    return Parallel(len(batches) - first, branch, label, _own_path(frame), flow.max_concurrency)


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


def _leave_flow(frame: FlowFrame, shared: Any, options: _Options) -> Generator[Any, None, Any]:
    """The flow's graph has ended: its post, then NodeFinished (FlowFinished for the flow being
    run). Returns the flow's action."""
    exec_res = None if frame.batches is not None else frame.action
    path = _own_path(frame)
    try:
        args = (shared, frame.prep_res, exec_res)
        action = _checked(
            (yield from _call(frame.flow, "post", args, frame.driven, frame.origin)), path
        )
    except Exception as exc:
        _mark(exc, path)
        raise
    if options.events:
        origin = frame.origin
        if origin is None:
            yield FlowFinished(path[0], (), action, _perf_counter() - frame.started)
        else:
            duration = _perf_counter() - frame.started
            yield NodeFinished(origin.name, origin.path, action, duration, origin.batch)
    return action


def _successor(frame: FlowFrame, node: Any, action: Optional[str]) -> Any:
    """A copy of the node that follows `node` after `action` in the frame's flow, or None."""
    if frame.custom_routing:
        following = frame.flow.get_next_node(node, action)
    else:  # next_node, inlined: this runs on every step
        successors = node.successors
        following = successors.get(action or "default")
        if following is None and successors:
            warnings.warn(f"Flow ends: '{action}' not found in {list(successors)}", stacklevel=3)
    if following is None:
        return None
    copier = _copiers.get(type(following))
    if copier is None:
        copier = _copiers[type(following)] = _choose_copier(type(following))
    return copier(following)


def _count_step(frame: FlowFrame, node: Any) -> None:
    recent = frame.recent
    assert recent is not None  # made with max_steps, in _enter_flow
    recent.append(node_name(node))
    if frame.steps > frame.max_steps:  # type: ignore[operator]
        error = MaxStepsExceeded(
            f"{_flow_label(frame)} exceeded max_steps={frame.max_steps}: "
            f"it is still looping through {' -> '.join(recent)}. If the loop is meant "
            "to run longer, raise max_steps; otherwise check the actions its nodes return."
        )
        _mark(error, _own_path(frame))
        raise error


# --- node steps --------------------------------------------------------------------------


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

    def attempt_origin(self) -> Origin:
        origin = self.origin
        if not self.node._batch and self.attempt == 0:
            return origin
        item = self.index if self.node._batch else None
        return Origin(origin.name, origin.parent, origin.batch, item, self.attempt)


def _enter_node(
    node: Any, shared: Any, origin: Origin, selected: bool, options: _Options
) -> Generator[Any, None, NodeFrame]:
    """Push-ready frame for `node`, after its prep (a generator only for a driven prep)."""
    try:
        driven = node._async or (options.driver and node.in_thread)
        if node._async and not options.driver:
            raise RuntimeError("Use run_async.")
        prep_res = yield from _call(node, "prep", (shared,), driven, origin)
    except Exception as exc:
        _mark(exc, origin.path)
        raise
    frame = NodeFrame(node, origin, prep_res, options.chunks and selected)
    frame.driven = driven
    frame.parallel = node._parallel and frame.count > 0
    if options.events:
        frame.started = _perf_counter()
    return frame


def _run_items_in_parallel(
    frame: NodeFrame, shared: Any, options: _Options
) -> Generator[Any, None, None]:
    """A parallel batch node's items, each its own branch of the walk: a NodeFrame that runs
    that one item (retries and fallback included) and ends with its result."""
    node = frame.node

    def branch(index: int) -> Generator[Any, None, Any]:
        twin = NodeFrame(node, frame.origin, frame.prep_res, frame.emit, frame.items)
        twin.index = index
        twin.count = index + 1
        twin.driven = frame.driven
        twin.branch = True
        return _walk(None, shared, options, [twin])

    def label(index: int) -> str:
        return f"item {index}"

    request = Parallel(frame.count, branch, label, frame.origin.path, node.max_concurrency)
    yield request
    frame.results = request.outcome()
    frame.index = frame.count


def _start_attempt(frame: NodeFrame, options: _Options) -> Generator[Any, None, Any]:
    """Make one attempt (or the fallback) on the current item.

    Returns a sync generator for the walk to stream, or None when the attempt's outcome is
    already in the frame (`result` or `error`). A driven node's attempt is carried out by the
    async driver (a generator only for that). A programming error (exec_stream giving no
    generator) raises at once, never retried; so does a failing exec_fallback.
    """
    node = frame.node
    item = frame.items[frame.index]
    failed = frame.failed
    frame.result = frame.error = None
    if failed is None:  # during exec_fallback cur_retry stays at the last attempt, as in PocketFlow
        node.cur_retry = frame.attempt
    if frame.driven:
        yield from _attempt_driven(frame, node, item, failed)
        return None
    try:
        if failed is not None:
            made = node.exec_fallback(item, failed)
        elif frame.stream:
            made = node.exec_stream(item)
        else:
            made = node.exec(item)
    except Exception as exc:
        frame.error = exc
        return None
    if frame.stream:
        if type(made) is GeneratorType or isinstance(made, GeneratorABC):
            return made
        if failed is None:  # exec_stream must stream; exec_fallback may return a plain value
            raise _not_a_generator(node, made, frame.origin.path)
    frame.result = made
    return None


def _attempt_driven(
    frame: NodeFrame, node: Any, item: Any, failed: Any
) -> Generator[Any, None, None]:
    """One attempt (or the fallback) of a driven node, carried out by the async driver; its
    outcome goes to the frame. An async node's hook gives a coroutine (awaited) or an async
    generator (streamed: the value it yields wrapped in `Return` is its result); a sync node
    marked in_thread has its exec called, or its exec_stream generator stepped, in a worker
    thread."""
    try:
        request: Request
        if node._async:
            args: Tuple[Any, ...]
            if failed is not None:
                hook, args = "exec_fallback_async", (item, failed)
            else:
                hook, args = ("exec_stream_async" if frame.stream else "exec_async"), (item,)
            made = getattr(node, hook)(*args)
            if hasattr(made, "__anext__"):
                request = Stream(made, frame.attempt_origin(), frame.emit)
            elif inspect.isawaitable(made):
                request = Await(made)
            else:
                raise _not_awaitable(node, hook, made, frame.origin.path)
        elif frame.stream and failed is None:  # a blocking node's generator, stepped in a thread
            made = node.exec_stream(item)
            if not isinstance(made, GeneratorABC):
                raise _not_a_generator(node, made, frame.origin.path)
            request = Stream(made, frame.attempt_origin(), frame.emit)
        elif failed is not None:
            request = InThread(node.exec_fallback, (item, failed))
        else:
            request = InThread(node.exec, (item,))
    except FlowError:
        raise
    except Exception as exc:
        frame.error = exc
        return
    yield request
    if request.error is None and frame.stream and type(request) is not Stream:
        made = request.result  # a fallback may itself stream
        if hasattr(made, "__anext__") or isinstance(made, GeneratorABC):
            request = Stream(made, frame.attempt_origin(), frame.emit)
            yield request
    frame.result = request.result
    frame.error = request.error


def _settle_attempt(frame: NodeFrame, options: _Options) -> Generator[Any, None, None]:
    """Act on the attempt just made: keep its result and go to the next item, or (it failed)
    tell the consumer with Retry, wait, and set up the next attempt or the fallback; raise when
    nothing is left to try."""
    error = frame.error
    if error is None:
        frame.results.append(frame.result)
        frame.index += 1
        frame.attempt = 0
        frame.failed = None
        return
    node = frame.node
    last = frame.attempt + 1 >= node.max_retries
    if frame.failed is not None or (last and not hasattr(node, "exec_fallback")):
        _mark(error, frame.origin.path)  # the fallback failed too, or there is none
        raise error
    if options.events:  # the failed attempt's chunks are to be dropped
        origin = frame.attempt_origin()
        yield Retry(
            origin.name, origin.path, origin.item, frame.attempt, _describe(error), origin.batch
        )
    if last:  # the next pass runs exec_fallback, as attempt max_retries
        frame.failed = error
    elif node.wait > 0:
        if options.driver:  # the event loop goes on serving other runs
            yield Sleep(node.wait)
        else:
            time.sleep(node.wait)
    frame.attempt += 1


def _finish_node(frame: NodeFrame, shared: Any, options: _Options) -> Generator[Any, None, Any]:
    """Every item is done: the node's post, then NodeFinished (FlowFinished for a node run on
    its own). Returns the node's action."""
    node = frame.node
    origin = frame.origin
    exec_res = frame.results if node._batch else frame.results[0]
    try:
        args = (shared, frame.prep_res, exec_res)
        action = _checked((yield from _call(node, "post", args, frame.driven, origin)), origin.path)
    except Exception as exc:
        _mark(exc, origin.path)
        raise
    if options.events:
        duration = _perf_counter() - frame.started
        yield NodeFinished(origin.name, origin.path, action, duration, origin.batch)
        if origin.parent is None and options.started is not None:  # a node run on its own
            yield FlowFinished(origin.name, (), action, _perf_counter() - options.started)
    return action


def _call(
    target: Any, hook: str, args: Tuple[Any, ...], driven: bool, origin: Optional[Origin]
) -> Generator[Request, None, Any]:
    """Call a node's or flow's `hook` (prep or post). When `driven`, the async driver does it:
    it awaits `<hook>_async` for an async node or flow, or calls `hook` in a worker thread for
    a node marked in_thread. A generator only for the driven case."""
    if not driven:
        return getattr(target, hook)(*args)
    request: Request
    if target._async:
        made = getattr(target, hook + "_async")(*args)
        if not inspect.isawaitable(made):
            path = origin.path if origin is not None else (node_name(target),)
            raise _not_awaitable(target, hook + "_async", made, path)
        request = Await(made)
    else:
        request = InThread(getattr(target, hook), args)
    yield request
    return request.outcome()


def _return_passes_map() -> bool:
    """Whether `yield from map(f, zip(repeat(x), generator))` returns the generator's return
    value. CPython's map and zip leave the generator's StopIteration(value) in place for the
    delegating generator to read (3.9 to 3.13 do); anywhere they do not, the walk wraps each
    node generator in `_capture` instead, one Python frame more per chunk."""

    def node() -> Generator[int, None, str]:
        yield 1
        return "returned"

    def delegate() -> Generator[Any, None, Any]:
        return (yield from map(tuple, zip(_repeat(0), node())))

    return drain(delegate()) == "returned"


def _capture(made: Any, frame: NodeFrame) -> Generator[Any, None, None]:
    """Pass a generator's values through; put its return value (or its exception) in the
    frame, so the walk tells the node's failure from what the consumer throws in."""
    try:
        frame.result = yield from made
    except Exception as exc:
        frame.error = exc


_RETURN_PASSES_MAP = _return_passes_map()


def _run_plain(frame: FlowFrame, node: Any, shared: Any) -> None:
    """The hot path: a Node with nothing to yield and no events to tell runs right here —
    prep, exec (per item), post — and the flow moves on to its successor."""
    try:
        prep_res = node.prep(shared)
        if node._batch:
            exec_res = [_exec_plain(node, item) for item in (prep_res or ())]
        else:
            exec_res = _exec_plain(node, prep_res)
        action = node.post(shared, prep_res, exec_res)
        if action is not None and not isinstance(action, str):
            raise _bad_action(action, _child_path(frame, node))
    except Exception as exc:
        _mark(exc, _child_path(frame, node))
        raise
    frame.action = action
    frame.node = _successor(frame, node, action)


def _exec_plain(node: Any, item: Any) -> Any:
    """One attempt (the hot path only takes nodes with max_retries <= 1), then the fallback."""
    node.cur_retry = 0
    try:
        return node.exec(item)
    except Exception as exc:
        fallback = getattr(node, "exec_fallback", None)
        if fallback is None:
            raise
        return fallback(item, exc)


def _is_selected(origin: Origin, options: _Options) -> bool:
    return options.nodes is None or origin.name in options.nodes


# --- copies, paths and error messages ----------------------------------------------------

_copiers: Dict[type, Callable[[Any], Any]] = {}
_SPECIAL_COPY = ("__copy__", "__reduce_ex__", "__reduce__", "__getstate__", "__setstate__")


def _copy(node: Any) -> Any:
    """`copy.copy(node)`, without copy.copy's generic machinery for plain node classes."""
    cls = type(node)
    copier = _copiers.get(cls)
    if copier is None:
        copier = _copiers[cls] = _choose_copier(cls)
    return copier(node)


def _choose_copier(cls: Any) -> Callable[[Any], Any]:
    customised = any(
        getattr(cls, name, None) is not getattr(object, name, None) for name in _SPECIAL_COPY
    )
    if customised or any("__slots__" in vars(base) for base in cls.__mro__[:-1]):
        return copy.copy

    def copy_dict(node: Any) -> Any:
        duplicate = cls.__new__(cls)
        duplicate.__dict__.update(node.__dict__)
        return duplicate

    return copy_dict


def _flow_path(frame: FlowFrame) -> tuple:
    return () if frame.origin is None else frame.origin.path


def _own_path(frame: FlowFrame) -> tuple:
    """The flow's path for its own errors: its name alone for the flow being run."""
    return _flow_path(frame) or (node_name(frame.flow),)


def _flow_label(frame: FlowFrame) -> str:
    """'StreamFlow Agent > Inner' for a sub-flow, "Flow 'Agent'" for the flow being run."""
    if frame.origin is None:
        name = given_name(frame.flow)
        return type(frame.flow).__name__ + ("" if name is None else f" {name!r}")
    return f"{type(frame.flow).__name__} {describe_path(frame.origin.path)}"


def _child_path(frame: FlowFrame, node: Any) -> tuple:
    return _flow_path(frame) + (node_name(node),)


def _checked(action: Any, path: tuple) -> Optional[str]:
    """The action a post returned, once it is known to be one: a str, or None for 'default'."""
    if action is not None and not isinstance(action, str):
        raise _bad_action(action, path)
    return action  # type: ignore[no-any-return]


def _bad_action(action: Any, path: tuple) -> FlowError:
    return FlowError(
        f"node {describe_path(path)}: post returned {action!r} ({type(action).__name__}) as its "
        "action; an action must be a str naming the transition to take (or None for 'default')."
    )


def _mark(exc: BaseException, path: tuple) -> None:
    """The one place an error gets its node's path, where the walk catches it on its way out
    (the innermost mark counts, so a re-raise from an outer frame changes nothing)."""
    attach_node_path(exc, path)


def _not_a_generator(node: Any, made: Any, path: tuple) -> FlowError:
    hint = (
        " It is an async generator: run_stream drives sync generators only (async nodes need"
        " the async driver)."
        if hasattr(made, "__anext__")
        else " Write exec_stream with `yield` (and `return` the result for post), or use"
        " Node.exec if the node does not stream."
    )
    error = FlowError(
        f"node {describe_path(path)}: {type(node).__name__}.exec_stream must return a "
        f"generator, got {type(made).__name__}.{hint}"
    )
    attach_node_path(error, path)
    return error


def _not_awaitable(node: Any, hook: str, made: Any, path: tuple) -> FlowError:
    error = FlowError(
        f"node {describe_path(path)}: {type(node).__name__}.{hook} must be an `async def` "
        f"method (or, for exec_stream_async, an async generator); it returned "
        f"{type(made).__name__}. Declare it with `async def`."
    )
    attach_node_path(error, path)
    return error


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


# --- requests to an async driver -------------------------------------------------------------


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


class Stream(Request):
    """Iterate `source` and pass each value on as `Chunk((origin, value))` (only when `emit`).

    `source` is an async generator (result: the value it yields wrapped in `Return`, after which
    it is closed; None if it yields none), or a sync generator of a node marked in_thread,
    stepped in a worker thread (result: its return value). The driver closes it however the
    iteration ends.
    """

    __slots__ = ("source", "origin", "emit")

    def __init__(self, source: Any, origin: Origin, emit: bool) -> None:
        super().__init__()
        self.source = source
        self.origin = origin
        self.emit = emit


class Parallel(Request):
    """Run `count` branches concurrently, at most `limit` at a time (None: all at once).

    `branch(index)` makes branch `index`: a walk generator to be driven like any other, whose
    return value is that branch's result. Result: the list of results, in index order. When a
    branch fails, the driver cancels the others and records that branch's exception, marked
    with `label(index)` and `path`.
    """

    __slots__ = ("count", "branch", "label", "path", "limit")

    def __init__(
        self,
        count: int,
        branch: Callable[[int], Generator[Any, None, Any]],
        label: Callable[[int], str],
        path: Tuple[str, ...],
        limit: Optional[int],
    ) -> None:
        super().__init__()
        self.count = count
        self.branch = branch
        self.label = label
        self.path = path
        self.limit = limit
