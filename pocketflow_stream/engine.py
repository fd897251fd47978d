"""The engine: one iterative walk over an explicit stack of frames.

Everything that decides what runs next lives in this file. Rules it keeps:

- No recursion. A sub-flow is a `FlowFrame` pushed on the stack, not a nested call; a loop of
  a million turns reuses one frame; nothing is kept per step. Flows nested ten thousand deep
  use ten thousand small frames and constant Python stack.
- A frame is plain data: which flow, which node it is at, which params, which batch
  iteration; which item, which attempt.
- `walk` is a generator and the only engine. `run` drains it, `run_stream` hands it out, the
  push driver calls back from it: they cannot disagree.
- It knows node classes only by two class attributes: `_kind` (NODE, STREAM, FLOW or ASYNC)
  and `_batch`. It knows nothing of LLMs, UIs or storage.

Frame kinds, both handled in `walk`'s loop:
- `FlowFrame`: a Flow (or a BatchFlow with its list of param sets) and the node it is at.
- `NodeFrame`: a node between prep and post — the item and attempt being run, one attempt per
  pass of the loop, so retries, fallbacks and batch items need no nested calls. A StreamNode's
  generator is passed straight through, each value tagged in C by `map(Chunk, zip(...))`.
The hot path: a plain Node with one attempt and no events to report runs inline
(`_run_plain`), with no frame and no generator.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections import deque
from collections.abc import Generator as GeneratorABC
from itertools import repeat as _repeat
from types import GeneratorType
from typing import Any, Callable, Dict, Generator, List, Mapping, Optional

from .errors import FlowError, MaxStepsExceeded, attach_node_path, describe_path
from .events import (
    Chunk,
    FlowFinished,
    NodeFinished,
    NodeStarted,
    Origin,
    Retry,
    StreamItem,
    freeze_params,
)

__all__ = [
    "NODE",
    "STREAM",
    "FLOW",
    "ASYNC",
    "walk",
    "drain",
    "next_node",
    "node_name",
    "FlowFrame",
    "NodeFrame",
]

NODE = "node"  # prep -> exec -> post (Node, BatchNode)
STREAM = "stream"  # prep -> exec_stream (a generator) -> post (StreamNode, StreamBatchNode)
FLOW = "flow"  # a graph of nodes (Flow, StreamFlow, BatchFlow)
ASYNC = "async"  # needs an async driver

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


class _Options:
    __slots__ = ("chunks", "events", "nodes", "max_steps")

    def __init__(self, chunks: bool, events: bool, nodes: Any, max_steps: Optional[int]) -> None:
        self.chunks = chunks
        self.events = events
        if isinstance(nodes, str):  # one name, not a set of characters
            nodes = (nodes,)
        self.nodes = None if nodes is None else frozenset(nodes)
        self.max_steps = max_steps


def walk(
    root: Any,
    shared: Any,
    *,
    chunks: bool = True,
    events: bool = False,
    nodes: Optional[Any] = None,
    max_steps: Optional[int] = None,
) -> Generator[StreamItem, None, Optional[str]]:
    """Run `root` (a flow or a single node) on `shared`, yielding what it streams.

    Yields Chunks (unless `chunks` is False; only those from nodes named in `nodes`, or inside
    flows named in it, when `nodes` is given) and, with `events=True`, lifecycle events.
    Returns the final action.
    """
    options = _Options(chunks, events, nodes, max_steps)
    started = _perf_counter() if events else 0.0
    stack: List[Any] = []
    if root._kind is FLOW:
        stack.append(_enter_flow(root, shared, None, options))
    else:
        origin = Origin(node_name(root))
        if events:
            yield NodeStarted(origin.name, origin.path, origin.batch)
        stack.append(_enter_node(root, shared, origin, _is_selected(origin, options), options))

    while True:
        frame = stack[-1]

        if type(frame) is NodeFrame:  # a node between prep and post, one attempt per pass
            node = frame.node
            if frame.index < frame.count:
                error = None
                made = _attempt(frame)
                if made is _FAILED:
                    error = frame.error
                elif made is not _DONE:  # a generator to stream
                    outcome: List[Any] = [None, None]  # [return value, exception]
                    try:
                        if not frame.emit:
                            drain(_capture(made, outcome))
                        elif _RETURN_PASSES_MAP and type(made) is GeneratorType:
                            # the fast path: no Python frame of ours between the node's
                            # generator and the walk; its return value reaches `yield from`
                            tagged = zip(_repeat(frame.attempt_origin()), made)
                            try:
                                outcome[0] = yield from _tag(Chunk, tagged)
                            except Exception as exc:
                                if made.gi_frame is not None:  # still suspended: the consumer
                                    raise  # threw it in, so the run stops here
                                outcome[1] = exc
                        else:
                            tagged = zip(_repeat(frame.attempt_origin()), _capture(made, outcome))
                            yield from _tag(Chunk, tagged)
                    finally:  # a stop (close(), throw(), a dropped stream) closes the node's too
                        made.close()
                    frame.result, error = outcome
                if error is not None:
                    last = frame.attempt + 1 >= node.max_retries
                    if frame.failed is not None or (last and not hasattr(node, "exec_fallback")):
                        attach_node_path(error, frame.origin.path)
                        raise error
                    if events:  # the failed attempt's chunks are to be dropped
                        origin = frame.attempt_origin()
                        yield Retry(
                            origin.name,
                            origin.path,
                            origin.item,
                            frame.attempt,
                            _describe(error),
                            origin.batch,
                        )
                    if last:  # the next pass runs exec_fallback, as attempt max_retries
                        frame.failed = error
                    elif node.wait > 0:
                        time.sleep(node.wait)
                    frame.attempt += 1
                    continue
                frame.record()
                continue
            action = _post(frame, shared)
            if events:
                origin = frame.origin
                duration = _perf_counter() - frame.started
                yield NodeFinished(origin.name, origin.path, action, duration, origin.batch)

        else:  # a FlowFrame
            node = frame.node
            if node is not None:
                frame.steps += 1
                if frame.max_steps is not None:
                    _count_step(frame, node)
                node.set_params(frame.params)
                kind = node._kind
                if kind is NODE and not events and node.max_retries <= 1:
                    # the hot path: a node with nothing to yield runs right here, no frame
                    try:
                        action = _run_plain(node, shared)
                    except Exception as exc:
                        attach_node_path(exc, _child_path(frame, node))
                        raise
                    if action is not None and not isinstance(action, str):
                        raise _bad_action(action, _child_path(frame, node))
                    frame.action = action
                    frame.node = _successor(frame, node, action)
                    continue
                origin = Origin(node_name(node), frame.origin, frame.batch)
                if events:
                    yield NodeStarted(origin.name, origin.path, origin.batch)
                if kind is FLOW:
                    stack.append(_enter_flow(node, shared, frame, options, origin))
                else:
                    selected = frame.selected or _is_selected(origin, options)
                    stack.append(_enter_node(node, shared, origin, selected, options))
                continue
            if frame.batches is not None and frame.batch_index + 1 < len(frame.batches):
                _start_next_batch(frame)
                continue
            action = _leave_flow(frame, shared)
            if events:
                origin = frame.origin
                if origin is None:
                    yield FlowFinished(node_name(root), (), action, _perf_counter() - started)
                else:
                    duration = _perf_counter() - frame.started
                    yield NodeFinished(origin.name, origin.path, action, duration, origin.batch)

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
    return node.name or type(node).__name__


# --- flows -------------------------------------------------------------------------------


def _enter_flow(
    flow: Any,
    shared: Any,
    parent: Optional[FlowFrame],
    options: _Options,
    origin: Optional[Origin] = None,
):
    """Push-ready frame for `flow`; `origin` is the flow's place in its parent (None for the
    flow being run)."""
    if parent is None:  # naming the flow being run in `nodes` selects all of it
        batch = None
        selected = options.nodes is not None and node_name(flow) in options.nodes
    else:
        assert origin is not None  # a sub-flow always comes with its place
        batch = parent.batch
        selected = parent.selected or _is_selected(origin, options)
    frame = FlowFrame(flow, origin, batch, selected)
    if options.events:
        frame.started = _perf_counter()
    frame.max_steps = flow.max_steps if flow.max_steps is not None else options.max_steps
    if frame.max_steps is not None:  # only a guarded flow pays for remembering its steps
        frame.recent = deque(maxlen=6)
    try:
        if flow.start_node is None:
            raise FlowError(
                f"{_flow_label(frame)} has no start node: "
                "give it one with Flow(start=node) or flow.start(node)."
            )
        prep_res = flow.prep(shared)
        if flow._batch:  # the walk starts the first batch when it sees frame.node is None
            prep_res = prep_res or []  # what a BatchFlow's post gets, as in PocketFlow
            frame.batches = _batch_params(prep_res)
        else:
            frame.params = {**flow.params}
            frame.node = _copy(flow.start_node)
        frame.prep_res = prep_res
    except Exception as exc:
        attach_node_path(exc, _own_path(frame))
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


def _start_next_batch(frame: FlowFrame) -> None:
    flow = frame.flow
    frame.batch_index += 1
    params = frame.batches[frame.batch_index]  # type: ignore[index]
    frame.params = {**flow.params, **params}
    frame.batch = freeze_params(params)
    frame.node = _copy(flow.start_node)
    frame.steps = 0  # max_steps guards one run of the graph, not the whole batch


def _leave_flow(frame: FlowFrame, shared: Any) -> Optional[str]:
    exec_res = None if frame.batches is not None else frame.action
    try:
        action = frame.flow.post(shared, frame.prep_res, exec_res)
        if action is not None and not isinstance(action, str):
            raise _bad_action(action, _own_path(frame))
    except Exception as exc:
        attach_node_path(exc, _own_path(frame))
        raise
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
        attach_node_path(error, _own_path(frame))
        raise error


# --- node steps --------------------------------------------------------------------------


class NodeFrame:
    """A node between its prep and its post: which item, which attempt, what results so far."""

    __slots__ = (
        "node",  # the node (a copy) being run
        "origin",  # where its chunks come from
        "prep_res",
        "items",  # what exec runs on: [prep_res] for a plain node, prep's list for a batch
        "count",  # len(items)
        "index",  # the item being run
        "attempt",  # its attempt (0-based)
        "failed",  # the last attempt's exception once exec_fallback is due, else None
        "error",  # the exception of the attempt just made
        "result",  # the item's exec_res, once made
        "results",  # BatchNode: the exec_res list so far
        "stream",  # whether exec is exec_stream
        "emit",  # whether chunks are wanted
        "started",
    )

    def __init__(self, node: Any, origin: Origin, prep_res: Any, emit: bool) -> None:
        self.node = node
        self.origin = origin
        self.prep_res = prep_res
        self.items = list(prep_res or ()) if node._batch else [prep_res]
        self.count = len(self.items)
        self.index = 0
        self.attempt = 0
        self.failed: Optional[Exception] = None
        self.error: Optional[Exception] = None
        self.result: Any = None
        self.results: List[Any] = []
        self.stream = node._kind is STREAM
        self.emit = emit
        self.started = 0.0

    def attempt_origin(self) -> Origin:
        origin = self.origin
        if not self.node._batch and self.attempt == 0:
            return origin
        item = self.index if self.node._batch else None
        return Origin(origin.name, origin.parent, origin.batch, item, self.attempt)

    def record(self) -> None:
        """The current item is done: keep its result and move to the next item."""
        self.results.append(self.result)
        self.index += 1
        self.attempt = 0
        self.failed = None


_FAILED = object()  # _attempt: the attempt raised (the exception is in frame.error)
_DONE = object()  # _attempt: the attempt gave its result (in frame.result)


def _enter_node(node: Any, shared: Any, origin: Origin, selected: bool, options: _Options):
    try:
        if node._kind is ASYNC:
            raise RuntimeError("Use run_async.")
        prep_res = node.prep(shared)
    except Exception as exc:
        attach_node_path(exc, origin.path)
        raise
    frame = NodeFrame(node, origin, prep_res, options.chunks and selected)
    if options.events:
        frame.started = _perf_counter()
    return frame


def _attempt(frame: NodeFrame) -> Any:
    """Start one attempt (or the fallback) on the current item.

    Returns a generator to stream, or _DONE with frame.result set, or _FAILED with frame.error
    set. A programming error (exec_stream giving no generator) raises at once, never retried.
    """
    node = frame.node
    item = frame.items[frame.index]
    failed = frame.failed
    if failed is None:  # during exec_fallback cur_retry stays at the last attempt, as in PocketFlow
        node.cur_retry = frame.attempt
    try:
        if failed is not None:
            made = node.exec_fallback(item, failed)
        elif frame.stream:
            made = node.exec_stream(item)
        else:
            made = node.exec(item)
    except Exception as exc:
        if failed is not None:  # the fallback itself failed: nothing more to try
            attach_node_path(exc, frame.origin.path)
            raise
        frame.error = exc
        return _FAILED
    if frame.stream:
        if type(made) is GeneratorType or isinstance(made, GeneratorABC):
            return made
        if failed is None:  # exec_stream must stream; exec_fallback may return a plain value
            raise _not_a_generator(node, made, frame.origin.path)
    frame.result = made
    return _DONE


def _post(frame: NodeFrame, shared: Any) -> Optional[str]:
    node = frame.node
    exec_res = frame.results if node._batch else frame.results[0]
    try:
        action = node.post(shared, frame.prep_res, exec_res)
        if action is not None and not isinstance(action, str):
            raise _bad_action(action, frame.origin.path)
    except Exception as exc:
        attach_node_path(exc, frame.origin.path)
        raise
    return action


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


def _capture(made: Any, outcome: List[Any]) -> Generator[Any, None, None]:
    """Pass a generator's values through; put its return value (or its exception) in
    `outcome`, so the walk tells the node's failure from what the consumer throws in."""
    try:
        outcome[0] = yield from made
    except Exception as exc:
        outcome[1] = exc


_RETURN_PASSES_MAP = _return_passes_map()


def _run_plain(node: Any, shared: Any) -> Any:
    """A Node with nothing to yield and no events to tell: prep, exec (per item), post."""
    prep_res = node.prep(shared)
    if node._batch:
        exec_res = [_exec_plain(node, item) for item in (prep_res or ())]
    else:
        exec_res = _exec_plain(node, prep_res)
    return node.post(shared, prep_res, exec_res)


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
        name = frame.flow.name
        return type(frame.flow).__name__ + ("" if name is None else f" {name!r}")
    return f"{type(frame.flow).__name__} {describe_path(frame.origin.path)}"


def _child_path(frame: FlowFrame, node: Any) -> tuple:
    return _flow_path(frame) + (node_name(node),)


def _bad_action(action: Any, path: tuple) -> FlowError:
    error = FlowError(
        f"node {describe_path(path)}: post returned {action!r} ({type(action).__name__}) as its "
        "action; an action must be a str naming the transition to take (or None for 'default')."
    )
    attach_node_path(error, path)
    return error


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


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"
