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

Frame kinds, both handled in `_walk`'s loop, each kind's step a named function:
- `FlowFrame`: a Flow (or a BatchFlow with its list of param sets) and the node it is at.
- `NodeFrame`: a node between prep and post — the item and attempt being run, one attempt per
  pass of the loop, so retries, fallbacks and batch items need no nested calls. A StreamNode's
  generator is passed straight through, each value tagged in C by `map(Chunk, zip(...))`.
The hot path: a plain Node with one attempt and no events to report runs inline
(`_run_plain`), with no frame and no generator.

A parallel batch is one `Parallel` request whose branches are walks of their own: one
`NodeFrame` per item, or one `FlowFrame` per param set, each ending where its item ends.

Pausing (README, "Pause and resume"): a node asks (`yield Ask(...)` in exec_stream, `ask()` in
exec, an AskNode) or the flow reaches a node in `pause_before`; the step raises `_Pause`,
`_walk` yields an Interrupt per pending question and returns a `Paused` handle holding the
stack (suspended generators stay in their frames). Resuming is `_walk` on that stack with the
answers in the frames. A generator that may ask streams on `_stream_checked` (send()-capable);
every other keeps the C path. For the persistence layer: `walk(checkpoint=...)` hands the
run's position (`position_of`: the stack as JSON-ready data) to the callable after every node
run, batch item, pause and at the end, and `walk(resume_from=position, answers=...)` rebuilds
the stack (`_restore`) to go on from it.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import time
import warnings
from collections import deque
from collections.abc import Generator as GeneratorABC
from contextvars import ContextVar
from itertools import repeat as _repeat
from types import GeneratorType
from typing import (
    Any,
    Callable,
    Deque,
    Dict,
    FrozenSet,
    Generator,
    Iterator,
    List,
    Mapping,
    Optional,
    Tuple,
)

from .errors import FlowError, MaxStepsExceeded, attach_node_path, describe_path
from .events import (
    Ask,
    Chunk,
    FlowFinished,
    Interrupt,
    NodeFinished,
    NodeStarted,
    Origin,
    Progress,
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
    "NO_SEND",
    "ask",
    "StopSignal",
    "STOPPED",
    "Paused",
    "push",
    "position_of",
    "fingerprint",
    "POSITION_VERSION",
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
        stop: Optional[StopSignal] = None,
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


def walk(
    root: Any,
    shared: Any,
    *,
    chunks: bool = True,
    events: bool = False,
    nodes: Optional[Any] = None,
    max_steps: Optional[int] = None,
    driver: bool = False,
    progress: bool = False,
    pause_before: Optional[Any] = None,
    stop: Optional[StopSignal] = None,
    checkpoint: Optional[Callable[[Dict[str, Any]], Any]] = None,
    resume_from: Optional[Mapping[str, Any]] = None,
    answers: Optional[Mapping[str, Any]] = None,
) -> Generator[Any, None, Any]:
    """Run `root` (a flow or a single node) on `shared`, yielding what it streams.

    Yields Chunks (unless `chunks` is False; only those from nodes named in `nodes`, or inside
    flows named in it, when `nodes` is given), with `events=True` lifecycle events, with
    `progress=True` (or events) Progress after each batch item, and an Interrupt for each
    pending question when the run pauses (always). With `driver=True` it also yields
    Requests, for an async driver to carry out.

    Returns the final action; a `Paused` handle when the run paused (a node asked, or it
    reached a node in `pause_before`); `STOPPED` when `stop` (a StopSignal) was set.

    For the persistence layer (PERSIST): `checkpoint(position)` is called after every
    completed node run, after each finished batch item, at every pause (status "paused") and
    at the end (status "done"), with a JSON-ready position (`shared` is not in it; see
    `position_of`). The position shares objects with the running run (params, prep_res,
    results, answers): encode it (with `shared`) inside the callback, before returning.
    Under the async driver the call is made in a worker thread while the walk waits. Items of a
    checkpointed run carry `.id` (chunks, events; `.seq` on an Interrupt): run-unique,
    increasing. To go on from a saved position in a new process, build the same graph and
    call `walk(root, shared, checkpoint=..., resume_from=position, answers={id: answer})`
    with the `shared` saved beside it: what runs again is README's "Pause and resume" table;
    re-made chunks carry `replay=True` and their original ids. A position naming a node the
    graph no longer has raises FlowError naming it.
    """
    options = _Options(
        chunks, events, nodes, max_steps, driver, progress, pause_before, stop, checkpoint
    )
    stack: List[Any] = []
    if resume_from is not None:
        stack = _restore(root, resume_from, answers or {}, options)
    elif answers:
        raise FlowError(
            "answers= goes with resume_from= (a saved position); in-process, "
            "answer the Paused handle: paused.resume({interrupt_id: answer})."
        )
    return _walk(root, shared, options, stack)


def _walk(root: Any, shared: Any, options: _Options, stack: List[Any]) -> Generator[Any, None, Any]:
    """The walk itself: the one loop, one pass per step of the frame on top of `stack`.

    `stack` is empty for a run of `root`; it holds the frames to go on with for a resumed
    run, or the one frame of a parallel branch, whose walk returns its item's result (or its
    graph's last action). Each frame kind's step is a function below; only the per-chunk
    path is written out here, where it costs nothing. A pause or a stop anywhere in a step
    raises `_Pause` / `_Stop`, caught once, here.
    """
    if options.sections == 0:  # the run's own walk, not a parallel branch's
        options.root = root
        options.stack = stack
    try:
        if not stack:
            stack.append((yield from _enter_root(root, shared, options)))
        inline = options.inline
        stop = options.stop
        checkpoint = options.checkpoint

        while True:
            frame = stack[-1]

            if type(frame) is NodeFrame:  # a node between prep and post, one attempt per pass
                if frame.index < frame.count:
                    if frame.parallel:  # every item at once, each a branch of its own
                        yield from _run_items_in_parallel(frame, shared, options)
                        continue
                    made = yield from _start_attempt(frame, options)
                    if made is None:
                        pass  # the outcome is in the frame already
                    elif frame.asking or options.careful or frame.asks:  # answers go in
                        yield from _stream_checked(frame, made, options)
                    else:  # the per-chunk path
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
                                    if made.gi_frame is not None:  # still suspended: the
                                        raise  # consumer threw it in, so the run stops here
                                    frame.error = exc
                                except _AskSignal as signal:  # ask() in an exec it calls
                                    _asked(frame, signal)
                            else:
                                origin = frame.attempt_origin()
                                yield from _tag(Chunk, zip(_repeat(origin), _capture(made, frame)))
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
                    if stop is not None and stop.is_set():
                        raise _Stop()
                    frame.steps += 1
                    if frame.max_steps is not None:
                        _count_step(frame, node)
                    node.set_params(frame.params)
                    if (
                        inline
                        and node._kind is NODE
                        and node.max_retries <= 1
                        and not node._async
                        and not node.in_thread
                    ):
                        _run_plain(frame, node, shared)  # the hot path: no frame, no yield
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
                if checkpoint is not None:
                    yield from _save(options, "done", action)
                return action
            parent = stack[-1]
            parent.action = action
            parent.node = _successor(parent, parent.node, action)
            if checkpoint is not None and not options.sections:
                yield from _save(options, "running")
    except _Pause as pause:
        if pause.frame is not None:  # a plain node asked on the hot path: it gets its frame
            stack.append(pause.frame)
        return (yield from _pause(root, shared, options, stack))
    except _Stop:  # (in a parallel branch, its section sees STOPPED and stops the run)
        _close_suspended(stack)
        return STOPPED


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
    order = _graph(flow)
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
    while flows:
        flow = flows.pop()
        _assign_ids(flow)
        for node in _graph(flow):
            names.append(node_name(node))
            if node._kind is FLOW:
                flows.append(node)
    return names


def _check_names(root: Any, names: FrozenSet[str], option: str) -> None:
    """`nodes=` or `pause_before=` names no node or flow of the graph: say which names there
    are (checked once per run, before it starts; a flow that routes with its own
    get_next_node is not checked, as its graph is not known in advance)."""
    known = _known_names(root)
    missing = sorted(names.difference(known))
    if missing and not _routes_itself(root):
        there = ", ".join(map(repr, dict.fromkeys(known)))
        raise FlowError(
            f"{option}={sorted(names)!r}: no node or flow is named "
            f"{', '.join(map(repr, missing))} in {node_name(root)}; the names there are "
            f"{there}. Pass the names (ids) chunks carry in chunk.node."
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
        _check_names(root, options.nodes, "nodes")
    if options.pause_before is not None:
        _check_names(root, options.pause_before, "pause_before")
    if root._kind is FLOW:
        return (yield from _enter_flow(root, shared, None, options))
    origin = Origin(node_name(root))
    if options.events:
        options.started = _perf_counter()
        yield NodeStarted(origin.name, origin.path, origin.batch, _take(options))
    return (yield from _enter_node(root, shared, origin, _is_selected(origin, options), options))


def _enter_child(
    frame: FlowFrame, node: Any, shared: Any, options: _Options
) -> Generator[Any, None, Any]:
    """The frame for the flow's current node (a node or a sub-flow), after its prep. Pauses
    first when the node is one to pause before (and the pause was not answered yet)."""
    name = node_name(node)
    if options.pause_before is not None and name in options.pause_before:
        if not frame.answered:
            frame.steps -= 1  # the step is taken when the run goes on
            frame.pending = {"before": name}
            raise _Pause()
        frame.answered = False
    origin = Origin(name, frame.origin, frame.batch)
    if options.events:
        yield NodeStarted(origin.name, origin.path, origin.batch, _take(options))
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
    once, each a branch of its own: a FlowFrame that runs its graph for that one param set."""
    flow = frame.flow
    if not flow._parallel:
        _start_next_batch(frame)
        return
    batches: List[Mapping[str, Any]] = frame.batches  # type: ignore[assignment]

    def start(index: int) -> List[Any]:
        twin = FlowFrame(flow, frame.origin, None, frame.selected)
        twin.branch = True
        twin.batches = batches
        twin.batch_index = index - 1
        _start_next_batch(twin)  # the one param set this branch runs
        _guard(twin, frame.max_steps)
        return [twin]

    def label(index: int) -> str:
        return f"param set {index} {dict(batches[index])!r}"

    first = frame.batch_index + 1
    yield from _run_branches(frame, shared, options, len(batches), start, label, None, first)
    frame.done = None
    frame.batch_index = len(batches) - 1


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
            duration = _perf_counter() - frame.started
            yield FlowFinished(path[0], (), action, duration, _take(options))
        else:
            duration = _perf_counter() - frame.started
            yield NodeFinished(
                origin.name, origin.path, action, duration, origin.batch, _take(options)
            )
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
    if options.resumed:  # it may have been running when the process ended: a new attempt
        options.resumed = False
        frame.shift = 1
        if options.events:
            yield Retry(
                origin.name, origin.path, None, 0, _INTERRUPTED, origin.batch, _take(options)
            )
    return frame


def _run_items_in_parallel(
    frame: NodeFrame, shared: Any, options: _Options
) -> Generator[Any, None, None]:
    """A parallel batch node's items, each its own branch of the walk: a NodeFrame that runs
    that one item (retries and fallback included) and ends with its result. Resumed after a
    pause, only the paused items that got an answer go on."""
    node = frame.node

    def start(index: int) -> List[Any]:
        twin = NodeFrame(node, frame.origin, frame.prep_res, frame.emit, frame.items)
        twin.index = index
        twin.count = index + 1
        twin.driven = frame.driven
        twin.branch = True
        return [twin]

    progress = None
    if options.progress:
        origin = frame.origin

        def progress(done: int) -> Progress:
            finished = done + len(frame.done or ())
            return Progress(
                origin.name, origin.path, finished, frame.count, origin.batch, _take(options)
            )

    def label(index: int) -> str:
        return f"item {index}"

    yield from _run_branches(frame, shared, options, frame.count, start, label, progress)
    if frame.done is not None:  # every item finished
        frame.results = [frame.done[index] for index in range(frame.count)]
        frame.done = None
        frame.index = frame.count


def _run_branches(
    frame: Any,
    shared: Any,
    options: _Options,
    count: int,
    start: Callable[[int], List[Any]],
    label: Callable[[int], str],
    progress: Optional[Callable[[int], Any]] = None,
    first: int = 0,
) -> Generator[Any, None, None]:
    """Run branches `first`..`count-1` at once (one Parallel request), or — resumed after a
    pause — the paused branches that got an answer. Finished branches' results go to
    `frame.done`; when some are still paused, `frame.branches` keeps their stacks and the run
    pauses (every pending interrupt is listed, each answerable on its own)."""
    paused = frame.branches or {}
    if frame.branches is None:
        runs = list(range(first, count))
        stacks: Dict[int, List[Any]] = {}
        done: Dict[int, Any] = {}
    else:
        runs = [index for index, stack in paused.items() if _is_answered(stack)]
        stacks = paused
        done = frame.done or {}

    def branch(k: int) -> Generator[Any, None, Any]:
        index = runs[k]
        stack = stacks.get(index) or start(index)
        return _walk(None, shared, options, stack)

    def name(k: int) -> str:
        return label(runs[k])

    path = frame.origin.path if type(frame) is NodeFrame else _own_path(frame)
    limit = frame.node.max_concurrency if type(frame) is NodeFrame else frame.flow.max_concurrency
    request = Parallel(len(runs), branch, name, path, limit, progress, runs)
    options.sections += 1
    try:
        yield request
    finally:
        options.sections -= 1
    results = request.outcome()
    if any(result is STOPPED for result in results):
        raise _Stop()
    still = {index: stack for index, stack in paused.items() if index not in runs}
    for k, result in enumerate(results):
        if type(result) is _BranchPaused:
            still[runs[k]] = result.stack
        else:
            done[runs[k]] = result
    frame.done = done
    if still:
        frame.branches = dict(sorted(still.items()))
        raise _Pause()
    frame.branches = None


def _start_attempt(frame: NodeFrame, options: _Options) -> Generator[Any, None, Any]:
    """Make one attempt (or the fallback) on the current item.

    Returns a sync generator for the walk to stream, or None when the attempt's outcome is
    already in the frame (`result`, `error`, or `pending`: it asked). A driven node's attempt
    is carried out by the async driver (a generator only for that). A programming error
    (exec_stream giving no generator) raises at once, never retried; so does a failing
    exec_fallback. Resumed with an answer, a suspended generator goes on (the walk sends the
    answer in) and an `exec` that asked runs again, its asks answered in order.
    """
    node = frame.node
    if frame.answered:  # resumed: the answer to the pending question
        frame.asks.append(frame.answer)
        frame.answered = False
        frame.pending = None
        frame.replay_until = len(frame.asks)  # if it runs again: the chunks up to here
        if frame.gen is not None:  # suspended at `yield Ask(...)`: it goes on from there
            made, frame.gen = frame.gen, None
            if _is_suspended(made):
                if frame.driven:
                    yield from _attempt_driven(frame, options, None, None, made)
                    return None
                return made
            # closed meanwhile (the event loop it waited on ended: run_stream_sync): it
            # runs again from its start, its asks answered, its chunks up to here not shown
            frame.hush = True
    item = frame.items[frame.index]
    failed = frame.failed
    frame.result = frame.error = None
    frame.ask_index = 0
    if options.next_id is not None:
        if not frame.replay_until:  # (a restored frame keeps the first id it had)
            frame.first_id = options.next_id
        frame.replay_id = frame.first_id or 0
    if failed is None:  # during exec_fallback cur_retry stays at the last attempt, as in PocketFlow
        node.cur_retry = frame.attempt
    if frame.driven:
        yield from _attempt_driven(frame, options, item, failed, None)
        return None
    token = _answers.set(_Answers(frame.asks)) if frame.asks else None
    try:
        if failed is not None:
            made = node.exec_fallback(item, failed)
        elif frame.stream:
            made = node.exec_stream(item)
        else:
            made = node.exec(item)
    except _AskSignal as signal:  # ask() in exec: pause; exec runs again on resume
        _asked(frame, signal)
        return None
    except Exception as exc:
        frame.error = exc
        return None
    finally:
        if token is not None:
            _answers.reset(token)
    if frame.stream:
        if type(made) is GeneratorType or isinstance(made, GeneratorABC):
            frame.asking = _may_ask(node, made)
            return made
        if failed is None:  # exec_stream must stream; exec_fallback may return a plain value
            raise _not_a_generator(node, made, frame.origin.path)
    frame.result = made
    return None


def _asked(frame: NodeFrame, signal: _AskSignal) -> None:
    """`ask()` stopped the attempt: it pauses, and runs again on resume with the answer."""
    frame.pending = signal.payload
    frame.ask_index = signal.index + 1


def _stream_checked(frame: NodeFrame, made: Any, options: _Options) -> Generator[Any, None, None]:
    """Stream a node's generator one value at a time: the path for a generator that may ask
    (an `Ask` it yields pauses the run, and the answer is sent back in), for a checkpointed
    run (each chunk takes the next id; chunks re-made on the way back to a pause carry
    `replay=True` and their original ids) and for a run with a stop signal (checked per chunk).
    The outcome goes to the frame; the generator is closed unless it waits for an answer."""
    stop = options.stop
    emit = frame.emit
    counted = options.next_id is not None
    replaying = frame.ask_index < frame.replay_until
    hush = frame.hush
    origin = frame.attempt_origin(replaying)
    send = made.send
    value_in = frame.asks[-1] if frame.ask_index and frame.ask_index == len(frame.asks) else None
    keep = False
    answers = _Answers(frame.asks) if frame.asks and not frame.asking else None
    try:
        while True:
            token = None if answers is None else _answers.set(answers)
            try:
                value = send(value_in)
            except StopIteration as end:
                frame.result = end.value
                return
            except Exception as exc:
                frame.error = exc
                return
            except _AskSignal as signal:  # ask() in an exec it calls (StreamNode's default)
                _asked(frame, signal)
                return
            finally:
                if token is not None:
                    _answers.reset(token)
            if stop is not None and stop.is_set():  # set while the node ran: drop its value
                raise _Stop()
            value_in = None
            if type(value) is Ask:
                index = frame.ask_index
                frame.ask_index = index + 1
                if index < len(frame.asks):  # asked before (a re-run): the recorded answer
                    value_in = frame.asks[index]
                    if replaying and frame.ask_index >= frame.replay_until:
                        replaying = False  # past the pause: what comes now is new
                        origin = frame.attempt_origin()
                    continue
                frame.pending = value.payload
                frame.gen = made
                keep = True
                return
            if not emit or (hush and replaying):
                continue
            if not counted:
                yield Chunk((origin, value))
            elif replaying:
                frame.replay_id += 1
                yield Chunk((origin, value, frame.replay_id - 1))
            else:
                yield Chunk((origin, value, _take(options)))
    finally:
        if not keep:
            made.close()


def _attempt_driven(
    frame: NodeFrame, options: _Options, item: Any, failed: Any, suspended: Any
) -> Generator[Any, None, None]:
    """One attempt (or the fallback) of a driven node, carried out by the async driver; its
    outcome goes to the frame. An async node's hook gives a coroutine (awaited) or an async
    generator (streamed: the value it yields wrapped in `Return` is its result; an `Ask` it
    yields comes back here, and the driver `asend`s the answer when there is one); a sync node
    marked in_thread has its exec called, or its exec_stream generator stepped, in a worker
    thread. `suspended`: a generator that waited for an answer, to go on with."""
    node = frame.node
    try:
        request: Request
        if suspended is not None:
            request = _stream_request(frame, options, suspended, frame.asks[-1])
        elif node._async:
            args: Tuple[Any, ...]
            if failed is not None:
                hook, args = "exec_fallback_async", (item, failed)
            else:
                hook, args = ("exec_stream_async" if frame.stream else "exec_async"), (item,)
            made = getattr(node, hook)(*args)
            if hasattr(made, "__anext__"):
                request = _stream_request(frame, options, made, NO_SEND)
            elif inspect.isawaitable(made):
                request = Await(_answering(made, frame.asks) if frame.asks else made)
            else:
                raise _not_awaitable(node, hook, made, frame.origin.path)
        elif frame.stream and failed is None:  # a blocking node's generator, stepped in a thread
            made = node.exec_stream(item)
            if not isinstance(made, GeneratorABC):
                raise _not_a_generator(node, made, frame.origin.path)
            request = _stream_request(frame, options, made, NO_SEND)
        else:
            function: Callable[..., Any] = node.exec if failed is None else node.exec_fallback
            args = (item,) if failed is None else (item, failed)
            if frame.asks:
                function, args = _Answers(frame.asks).call, (function, *args)
            request = InThread(function, args)
    except FlowError:
        raise
    except Exception as exc:
        frame.error = exc
        return
    yield request
    if request.error is None and frame.stream and type(request) is not Stream:
        made = request.result  # a fallback may itself stream
        if hasattr(made, "__anext__") or isinstance(made, GeneratorABC):
            request = _stream_request(frame, options, made, NO_SEND)
            yield request
    if options.stop is not None and options.stop.is_set():
        raise _Stop()  # the driver ended the stream there, the run stops
    while type(request) is Stream and request.asked is not None:  # it yielded Ask
        index = frame.ask_index
        frame.ask_index = index + 1
        if index >= len(frame.asks):  # a new question: the run pauses, the generator waits
            frame.pending = request.asked.payload
            frame.gen = request.source
            return
        request = _stream_request(frame, options, request.source, frame.asks[index])
        yield request  # asked before (a re-run from a checkpoint): the recorded answer
    error = request.error
    if isinstance(error, _AskSignal):  # ask() in an exec_async or an in-thread exec
        frame.pending, frame.ask_index = error.payload, error.index + 1
        return
    frame.result = request.result
    frame.error = error


def _stream_request(frame: NodeFrame, options: _Options, source: Any, send: Any) -> Stream:
    """The request to stream `source` (first sending `send` in, when it waited for an
    answer); replayed chunks, ids of a checkpointed run, as on the sync path."""
    replaying = frame.ask_index < frame.replay_until
    ids: Any = None
    if options.next_id is not None:
        ids = _ReplayIds(frame) if replaying else options
    emit = frame.emit and not (frame.hush and replaying)
    request = Stream(source, frame.attempt_origin(replaying), emit, send, ids, options.stop)
    if frame.asks and not _may_ask(frame.node, source):  # ask() in an exec_async it awaits
        request.answers = _Answers(frame.asks)
    return request


def _settle_attempt(frame: NodeFrame, options: _Options) -> Generator[Any, None, None]:
    """Act on the attempt just made: keep its result and go to the next item, or (it failed)
    tell the consumer with Retry, wait, and set up the next attempt or the fallback; raise when
    nothing is left to try."""
    if frame.pending is not None:  # it asked: the run pauses here
        raise _Pause()
    error = frame.error
    if error is None:
        frame.results.append(frame.result)
        frame.index += 1
        frame.attempt = 0
        frame.failed = None
        frame.asks = []
        frame.ask_index = 0
        frame.replay_until = 0
        frame.hush = False
        if frame.node._batch and not frame.branch:
            if options.progress:
                origin = frame.origin
                yield Progress(
                    origin.name,
                    origin.path,
                    frame.index,
                    frame.count,
                    origin.batch,
                    _take(options),
                )
            if options.checkpoint is not None and frame.index < frame.count:
                yield from _save(options, "running")
        return
    node = frame.node
    last = frame.attempt + 1 >= node.max_retries
    if frame.failed is not None or (last and not hasattr(node, "exec_fallback")):
        _mark(error, frame.origin.path)  # the fallback failed too, or there is none
        raise error
    if options.events:  # the failed attempt's chunks are to be dropped
        origin = frame.attempt_origin()
        yield Retry(
            origin.name,
            origin.path,
            origin.item,
            origin.attempt,
            _describe(error),
            origin.batch,
            _take(options),
        )
    if last:  # the next pass runs exec_fallback, as attempt max_retries
        frame.failed = error
        frame.asks = []
        frame.ask_index = 0
        frame.replay_until = 0
    elif node.wait > 0:
        if options.driver:  # the event loop goes on serving other runs
            yield Sleep(node.wait)
        else:
            time.sleep(node.wait)
    frame.attempt += 1
    frame.asks = []
    frame.ask_index = 0
    frame.replay_until = 0


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
        yield NodeFinished(origin.name, origin.path, action, duration, origin.batch, _take(options))
        if origin.parent is None and options.started is not None:  # a node run on its own
            duration = _perf_counter() - options.started
            yield FlowFinished(origin.name, (), action, duration, _take(options))
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

    returned: object = drain(delegate())
    return returned == "returned"


def _capture(made: Any, frame: NodeFrame) -> Generator[Any, None, None]:
    """Pass a generator's values through; put its return value (or its exception) in the
    frame, so the walk tells the node's failure from what the consumer throws in."""
    try:
        frame.result = yield from made
    except Exception as exc:
        frame.error = exc
    except _AskSignal as signal:  # ask() in an exec it calls
        _asked(frame, signal)


_RETURN_PASSES_MAP = _return_passes_map()


def _run_plain(frame: FlowFrame, node: Any, shared: Any) -> None:
    """The hot path: a Node with nothing to yield and no events to tell runs right here —
    prep, exec (per item), post — and the flow moves on to its successor. An exec that asks
    (`ask()`) gets a NodeFrame for the pause, so it runs again as any node does on resume."""
    prep_res: Any = _UNSET
    results: List[Any] = []
    try:
        prep_res = node.prep(shared)
        if node._batch:
            for item in prep_res or ():
                results.append(_exec_plain(node, item))
            exec_res: Any = results
        else:
            exec_res = _exec_plain(node, prep_res)
        action = node.post(shared, prep_res, exec_res)
        if action is not None and not isinstance(action, str):
            raise _bad_action(action, _child_path(frame, node))
    except _AskSignal as signal:
        raise _Pause(_asked_on_the_hot_path(frame, node, prep_res, results, signal)) from None
    except Exception as exc:
        _mark(exc, _child_path(frame, node))
        raise
    frame.action = action
    frame.node = _successor(frame, node, action)


def _asked_on_the_hot_path(
    frame: FlowFrame, node: Any, prep_res: Any, results: List[Any], signal: _AskSignal
) -> NodeFrame:
    if prep_res is _UNSET or len(results) == (len(prep_res or ()) if node._batch else 1):
        raise _ask_outside_exec(_child_path(frame, node))
    paused = NodeFrame(node, Origin(node_name(node), frame.origin, frame.batch), prep_res, False)
    paused.index = len(results)
    paused.results = results
    paused.pending = signal.payload
    paused.ask_index = signal.index + 1
    return paused


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


# --- asking, pausing, stopping --------------------------------------------------------------


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


class _Pause(BaseException):
    """Raised inside a step when the run must pause; caught once, in `_walk`. `frame`: a
    frame to push first (a plain node that asked on the hot path has none yet)."""

    def __init__(self, frame: Optional[NodeFrame] = None) -> None:
        super().__init__()
        self.frame = frame


class _Stop(BaseException):
    """Raised inside a step when the run's StopSignal is set; caught once, in `_walk`."""


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


class _BranchPaused:
    """What a parallel branch's walk returns when it paused: its stack, to go on with."""

    __slots__ = ("stack",)

    def __init__(self, stack: List[Any]) -> None:
        self.stack = stack


class _ReplayIds:
    """Ids for chunks re-made on the way back to a pause: their original ones."""

    __slots__ = ("frame",)

    def __init__(self, frame: NodeFrame) -> None:
        self.frame = frame

    def take(self) -> int:
        self.frame.replay_id += 1
        return self.frame.replay_id - 1


def _take(options: _Options) -> Optional[int]:
    """The next item id of a checkpointed run (None when items carry no ids)."""
    number = options.next_id
    if number is not None:
        options.next_id = number + 1
    return number


def _pause(
    root: Any, shared: Any, options: _Options, stack: List[Any]
) -> Generator[Any, None, Any]:
    """Yield an Interrupt for every pending question, checkpoint, return the Paused handle.
    A parallel branch returns its stack instead: its section lists its interrupts."""
    if stack[0].branch:
        return _BranchPaused(stack)
    handle = Paused(root, shared, options, stack)
    yield from handle.interrupts
    if options.checkpoint is not None:
        yield from _save(options, "paused", interrupts=handle.interrupts)
    return handle


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


def _is_suspended(generator: Any) -> bool:
    """Whether a generator (sync or async) still waits at a yield, able to go on."""
    if hasattr(generator, "ag_frame"):
        return generator.ag_frame is not None
    return getattr(generator, "gi_frame", True) is not None


def _is_answered(stack: List[Any]) -> bool:
    return any(frame.answered for _, frame, _ in _spots(stack, []))


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
        return _walk(self._root, self._shared, self._options, self._stack)

    def run(
        self,
        answers: Optional[Mapping[str, Any]] = None,
        *,
        on_chunk: Optional[Callable[[Any], Any]] = None,
        on_event: Optional[Callable[[Any], Any]] = None,
    ) -> Any:
        """Go on (sync push): call back with each item; return as `node.run` does."""
        return push(self.resume(answers), on_chunk, on_event)

    def resume_async(self, answers: Optional[Mapping[str, Any]] = None, **options: Any) -> Any:
        """Go on under the async driver: a FlowStream, used like `run_stream_async`'s."""
        return _ASYNC_RESUME["stream"](self, answers, **options)

    async def run_async(self, answers: Optional[Mapping[str, Any]] = None, **options: Any) -> Any:
        """Go on under the async driver, to the end (or the next pause); as `run_async`."""
        return await _ASYNC_RESUME["run"](self, answers, **options)

    def position(self) -> Dict[str, Any]:
        """The paused run's JSON-ready position (see `position_of`)."""
        return position_of(self._options, "paused", interrupts=self.interrupts)

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


_ASYNC_RESUME: Dict[str, Callable[..., Any]] = {}  # set by async_driver (a layer above)


def _close_suspended(stack: List[Any]) -> None:
    for _, frame, _ in _spots(stack, []):
        gen = getattr(frame, "gen", None)
        if gen is not None and hasattr(gen, "close"):
            gen.close()
            frame.gen = None


def push(
    stream: Generator[Any, None, Any],
    on_chunk: Optional[Callable[[Any], Any]],
    on_event: Optional[Callable[[Any], Any]],
) -> Any:
    """The push driver: call `on_chunk` with each Chunk and `on_event` with every other item
    (events, interrupts); return the walk's return value."""
    step = stream.__next__
    try:
        while True:
            item = step()
            if type(item) is Chunk:
                if on_chunk is not None:
                    on_chunk(item)
            elif on_event is not None:
                on_event(item)
    except StopIteration as stop:
        return stop.value
    finally:
        stream.close()


def _ask_outside_exec(path: Tuple[str, ...]) -> FlowError:
    error = FlowError(
        f"node {describe_path(path)}: ask() was called outside exec (in prep or post). Ask in "
        "exec (or exec_stream with `yield Ask(...)`), or use an AskNode, whose question comes "
        "from its prep."
    )
    _mark(error, path)
    return error


_UNSET = object()
_INTERRUPTED = "the run ended before this node finished; it runs again as a new attempt"


# --- checkpoints: a run's position as JSON-ready data ---------------------------------------

POSITION_VERSION = 1


def _save(
    options: _Options, status: str, action: Any = None, interrupts: Tuple[Any, ...] = ()
) -> Generator[Any, None, None]:
    """Hand the run's position to the checkpoint callable: called here for a sync run, in a
    worker thread (an InThread request) under the async driver, so the loop never blocks."""
    position = position_of(options, status, action, interrupts)
    checkpoint = options.checkpoint
    assert checkpoint is not None
    if not options.driver:
        checkpoint(position)
        return
    request = InThread(checkpoint, (position,))
    yield request
    request.outcome()


def position_of(
    options: _Options, status: str, action: Any = None, interrupts: Tuple[Any, ...] = ()
) -> Dict[str, Any]:
    """A run's position: plain data (JSON-ready when the app's values are), never `shared`.

    Keys: `version` (POSITION_VERSION), `fingerprint` (see `fingerprint`), `status`
    ("running" | "paused" | "done"), `root` (the id of what is run), `next_id` (the next item
    id), `frames` (the stack, outermost first: a flow frame holds its current node's id,
    params, prep_res, batch_index, steps, last action, and a pause before its node; a node
    frame its id, prep_res, item index, finished results, attempt, the asks answered so far
    and the pending question; a paused parallel section, the stacks of its paused branches
    and its finished results), `interrupts` (the pending ones, as `to_dict()`), `action`
    (when done). Store it with `shared`; go on from it with `walk(..., resume_from=...)`.
    """
    if options.fingerprint is None:
        options.fingerprint = fingerprint(options.root)
    return {
        "version": POSITION_VERSION,
        "fingerprint": options.fingerprint,
        "status": status,
        "root": node_name(options.root),
        "next_id": options.next_id,
        "frames": [_frame_state(frame) for frame in options.stack],
        "interrupts": [interrupt.to_dict() for interrupt in interrupts],
        "action": action,
    }


def _frame_state(frame: Any) -> Dict[str, Any]:
    state: Dict[str, Any]
    if type(frame) is FlowFrame:
        state = {
            "kind": "flow",
            "node": None if frame.node is None else node_name(frame.node),
            "params": frame.params,
            "prep_res": frame.prep_res,
            "batch_index": frame.batch_index,
            "steps": frame.steps,
            "action": frame.action,
            "before": frame.pending is not None,
        }
    else:
        state = {
            "kind": "node",
            "node": frame.origin.name,
            "prep_res": frame.prep_res,
            "index": frame.index,
            "results": frame.results,
            "attempt": frame.attempt,
            "asks": frame.asks,
            "pending": frame.pending,
            "ask_index": frame.ask_index,
            "first_id": frame.first_id,
        }
    if frame.branches is not None:
        state["branches"] = {
            str(index): [_frame_state(inner) for inner in stack]
            for index, stack in frame.branches.items()
        }
        state["done"] = {str(index): result for index, result in (frame.done or {}).items()}
    return state


def fingerprint(root: Any) -> str:
    """A short hash of the graph's shape: every flow's node ids, their classes and their
    transitions, sub-flows included. The same graph built twice gives the same fingerprint."""
    shape: List[Any] = []
    flows = [root] if root._kind is FLOW else []
    shape.append([node_name(root), type(root).__qualname__])
    while flows:
        flow = flows.pop(0)
        _assign_ids(flow)
        for node in _graph(flow):
            successors = {action: node_name(next_) for action, next_ in node.successors.items()}
            shape.append([node_name(flow), node_name(node), type(node).__qualname__, successors])
            if node._kind is FLOW:
                flows.append(node)
    text = json.dumps(shape, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _graph(flow: Any) -> List[Any]:
    """The flow's nodes (the originals), breadth-first from its start in wiring order."""
    order: List[Any] = []
    seen = set()
    queue = deque([flow.start_node] if flow.start_node is not None else [])
    while queue:
        node = queue.popleft()
        if id(node) in seen:
            continue
        seen.add(id(node))
        order.append(node)
        queue.extend(node.successors.values())
    return order


def _restore(
    root: Any, position: Mapping[str, Any], answers: Mapping[str, Any], options: _Options
) -> List[Any]:
    """The stack to go on with from a saved position, with `answers` for its pending
    questions. Nothing runs here: the walk goes on from this stack."""
    if position.get("version") != POSITION_VERSION:
        raise FlowError(
            f"cannot resume from a position of version {position.get('version')!r}: this "
            f"version of pocketflow_stream reads version {POSITION_VERSION}."
        )
    if position.get("status") == "done":
        raise FlowError("the run of this position has finished: there is nothing to resume.")
    options.root = root
    options.next_id = position.get("next_id")
    options.fingerprint = fingerprint(root)
    stack: List[Any] = []
    for depth, state in enumerate(position["frames"]):
        stack.append(_restore_frame(root, stack, state, options, depth == 0))
    pending = {key: frame for key, frame, _ in _spots(stack, [])}
    unknown = [key for key in answers if key not in pending]
    if unknown:
        raise FlowError(
            f"no pending interrupt of this position has the id {', '.join(map(repr, unknown))};"
            f" the pending ones are {', '.join(map(repr, pending)) or 'none'}."
        )
    for key, frame in pending.items():
        if type(frame) is FlowFrame:
            frame.answered = True
        elif key in answers:  # it runs again from its start (see _start_attempt)
            frame.answer, frame.answered = answers[key], True
    if pending and not answers and not all(type(f) is FlowFrame for f in pending.values()):
        raise FlowError(
            f"resume needs an answer for {', '.join(map(repr, pending))} (the run waits for "
            "one): pass answers={interrupt_id: answer}."
        )
    if position.get("status") == "running" and stack:
        top = stack[-1]
        if type(top) is FlowFrame:
            options.resumed = True  # the next node may have been in flight: a new attempt
        else:
            top.shift = 1
    return stack


def _restore_frame(
    root: Any, stack: List[Any], state: Mapping[str, Any], options: _Options, outermost: bool
) -> Any:
    parent: Optional[FlowFrame] = stack[-1] if stack else None
    if parent is None:
        target, origin = root, None
    else:
        target = parent.node
        origin = Origin(node_name(target), parent.origin, parent.batch)
        target.set_params(parent.params)
    if state["kind"] == "flow":
        if parent is None:
            frame = FlowFrame(
                target, None, None, options.nodes is not None and node_name(root) in options.nodes
            )
        else:
            selected = parent.selected or _is_selected(origin, options)  # type: ignore[arg-type]
            frame = FlowFrame(target, origin, parent.batch, selected)
        _assign_ids(target)
        _guard(frame, target.max_steps if target.max_steps is not None else options.max_steps)
        if options.events:
            frame.started = _perf_counter()
        frame.prep_res = state["prep_res"]
        frame.params = dict(state["params"])
        frame.steps = state["steps"]
        frame.action = state["action"]
        if target._batch:
            frame.batches = _batch_params(frame.prep_res)
            frame.batch_index = state["batch_index"]
            if frame.batch_index >= 0:
                frame.batch = freeze_params(frame.batches[frame.batch_index])
        if state["node"] is not None:
            frame.node = _copy(_node_by_id(target, state["node"], frame))
        if state.get("before"):
            frame.pending = {"before": state["node"]}
        if state.get("branches"):
            _restore_branches(root, frame, state, options)
        return frame
    if origin is None:
        origin = Origin(node_name(target))
    selected = (parent.selected if parent else False) or _is_selected(origin, options)
    node_frame = NodeFrame(target, origin, state["prep_res"], options.chunks and selected)
    _restore_node_frame(node_frame, state, options)
    return node_frame


def _restore_node_frame(frame: NodeFrame, state: Mapping[str, Any], options: _Options) -> None:
    target = frame.node
    frame.driven = target._async or (options.driver and target.in_thread)
    frame.parallel = target._parallel and frame.count > 0 and not frame.branch
    frame.index = state["index"]
    frame.results = list(state["results"])
    frame.attempt = state["attempt"]
    frame.asks = list(state["asks"])
    frame.pending = state["pending"]
    frame.ask_index = state["ask_index"]
    frame.first_id = state["first_id"]
    if options.events:
        frame.started = _perf_counter()
    if state.get("branches"):
        _restore_branches(None, frame, state, options)


def _restore_branches(root: Any, frame: Any, state: Mapping[str, Any], options: _Options) -> None:
    """A paused parallel section: the stacks of its paused branches and its finished results.
    Their chunks up to the pause are not shown again (concurrent branches' ids interleave)."""
    frame.done = {int(index): result for index, result in state["done"].items()}
    frame.branches = {}
    for index, states in state["branches"].items():
        first, rest = states[0], states[1:]
        if type(frame) is NodeFrame:
            twin: Any = NodeFrame(frame.node, frame.origin, frame.prep_res, frame.emit, frame.items)
            twin.branch = True
            twin.count = int(index) + 1
            _restore_node_frame(twin, first, options)
            twin.hush = True
        else:
            twin = FlowFrame(frame.flow, frame.origin, None, frame.selected)
            twin.branch = True
            twin.batches = frame.batches
            twin.batch_index = first["batch_index"] - 1
            _start_next_batch(twin)
            _guard(twin, frame.max_steps)
            twin.params = dict(first["params"])
            twin.steps = first["steps"]
            twin.action = first["action"]
            twin.node = None
            if first["node"] is not None:
                twin.node = _copy(_node_by_id(frame.flow, first["node"], twin))
            if first.get("before"):
                twin.pending = {"before": first["node"]}
        stack = [twin]
        for inner in rest:
            stack.append(_restore_frame(root, stack, inner, options, False))
        for spot in _spots(stack, []):
            if type(spot[1]) is NodeFrame:
                spot[1].hush = True
        frame.branches[int(index)] = stack


def _node_by_id(flow: Any, node_id: str, frame: FlowFrame) -> Any:
    for node in _graph(flow):
        if node_name(node) == node_id:
            return node
    known = ", ".join(repr(node_name(node)) for node in _graph(flow))
    raise FlowError(
        f"cannot resume: {_flow_label(frame)} has no node {node_id!r} any more (its nodes are "
        f"{known}). The saved run stopped there; resume it with the graph it ran on."
    )


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


def _checked(action: Any, path: Tuple[str, ...]) -> Optional[str]:
    """The action a post returned, once it is known to be one: a str, or None for 'default'."""
    if action is not None and not isinstance(action, str):
        raise _bad_action(action, path)
    return action


def _bad_action(action: Any, path: Tuple[str, ...]) -> FlowError:
    return FlowError(
        f"node {describe_path(path)}: post returned {action!r} ({type(action).__name__}) as its "
        "action; an action must be a str naming the transition to take (or None for 'default')."
    )


def _mark(exc: BaseException, path: Tuple[str, ...]) -> None:
    """The one place an error gets its node's path, where the walk catches it on its way out
    (the innermost mark counts, so a re-raise from an outer frame changes nothing)."""
    attach_node_path(exc, path)


def _not_a_generator(node: Any, made: Any, path: Tuple[str, ...]) -> FlowError:
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


def _not_awaitable(node: Any, hook: str, made: Any, path: Tuple[str, ...]) -> FlowError:
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


NO_SEND = object()  # Stream.send when there is no answer to send in first


class Stream(Request):
    """Iterate `source` and pass each value on as `Chunk((origin, value))` (only when `emit`;
    `Chunk((origin, value, ids.take()))` when `ids` is given, in a checkpointed run).

    `source` is an async generator (result: the value it yields wrapped in `Return`, after which
    it is closed; None if it yields none), or a sync generator of a node marked in_thread,
    stepped in a worker thread (result: its return value). When it yields an `Ask`, the driver
    puts it in `asked` and stops there WITHOUT closing it (the walk pauses, or answers it with
    a new Stream whose `send` is the answer: the driver sends that in first, with `asend` /
    `send`). `stop`: a StopSignal checked before each value. Otherwise the driver closes the
    source however the iteration ends.
    """

    __slots__ = ("source", "origin", "emit", "send", "ids", "stop", "asked", "answers")

    def __init__(
        self,
        source: Any,
        origin: Origin,
        emit: bool,
        send: Any = NO_SEND,
        ids: Any = None,
        stop: Optional[StopSignal] = None,
    ) -> None:
        super().__init__()
        self.source = source
        self.origin = origin
        self.emit = emit
        self.send = send
        self.ids = ids
        self.stop = stop
        self.asked: Optional[Ask] = None
        self.answers: Optional[_Answers] = None  # for ask() inside, set while it runs


class Parallel(Request):
    """Run `count` branches concurrently, at most `limit` at a time (None: all at once).

    `branch(index)` makes branch `index`: a walk generator to be driven like any other, whose
    return value is that branch's result. Result: the list of results, in index order. When a
    branch fails, the driver cancels the others and records that branch's exception, marked
    with `label(index)`, `path` and its item number `indexes[index]`. `progress(done)`, when
    given, makes an item for the consumer after each branch that finished.
    """

    __slots__ = ("count", "branch", "label", "path", "limit", "progress", "indexes")

    def __init__(
        self,
        count: int,
        branch: Callable[[int], Generator[Any, None, Any]],
        label: Callable[[int], str],
        path: Tuple[str, ...],
        limit: Optional[int],
        progress: Optional[Callable[[int], Any]] = None,
        indexes: Optional[List[int]] = None,
    ) -> None:
        super().__init__()
        self.count = count
        self.branch = branch
        self.label = label
        self.path = path
        self.limit = limit
        self.progress = progress
        self.indexes = list(range(count)) if indexes is None else indexes
