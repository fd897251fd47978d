"""The engine: one iterative walk over an explicit stack of frames.

Everything that decides what runs next lives in this file. Rules it keeps:

- No recursion. A sub-flow is a `FlowFrame` pushed on the stack, not a nested call; a loop of
  a million turns reuses one frame; nothing is kept per step. Flows nested ten thousand deep
  use ten thousand small frames and constant Python stack.
- A frame is plain data (frames.py): which flow, which node it is at, which params, which
  batch iteration; which item, which attempt.
- `walk` is a generator and the only engine. `run` drains it, `run_stream` hands it out, the
  push driver calls back from it: they cannot disagree.
- It knows node classes only by class attributes: `_kind` (NODE, STREAM or FLOW), `_batch`,
  `_async` (hooks are coroutines), `_parallel` (batch items run concurrently) and `in_thread`.
  It knows nothing of LLMs, UIs, storage or event loops.
- It does no I/O and never awaits. Where a run needs what only an async driver can do (await
  an async hook, iterate an async generator, sleep, call a blocking node in a worker thread,
  run batch items concurrently), the walk yields a `Request` (a closed set, requests.py) and
  the driver puts the outcome in it before resuming the walk. Sync drivers never see one:
  without `driver=True`, an async node raises RuntimeError("Use run_async.").

Frame kinds, both handled in `_walk`'s loop, each kind's step a named function here:
- `FlowFrame`: a Flow (or a BatchFlow with its list of param sets) and the node it is at.
  Steps: `_enter_child`, `_next_batch`, `_leave_flow`.
- `NodeFrame`: a node between prep and post — the item and attempt being run, one attempt per
  pass of the loop, so retries, fallbacks and batch items need no nested calls. Steps:
  `_start_attempt`, `_settle_attempt`, `_finish_node`. A StreamNode's generator is passed
  straight through, each value tagged in C by `map(Chunk, zip(...))`.
The hot path: a plain Node with one attempt and no events to report runs inline
(`_run_plain`), with no frame and no generator.

A parallel batch is one `Parallel` request whose branches are walks of their own: one
`NodeFrame` per item, or one `FlowFrame` per param set, each ending where its item ends. A
node's section also carries the node, its items and its origin, so a driver may run the items
in other processes instead (scale.dbos_runs fans them out), each walked there by `walk_item`:
the same branch walk, one item, no second engine.

Pausing (README, "Pause and resume"; interrupts.py): a node asks (`yield Ask(...)` in
exec_stream, `ask()` in exec, an AskNode) or the flow reaches a node in `pause_before`; the
step raises `_Pause`, `_walk` yields an Interrupt per pending question and returns a `Paused`
handle holding the stack (suspended generators stay in their frames). Resuming is `_walk` on
that stack with the answers in the frames. A generator that may ask streams on
`_stream_checked` (send()-capable); every other keeps the C path. For the persistence layer
(positions.py): `walk(checkpoint=...)` hands the run's position (`position_of`: the stack as
JSON-ready data) to the callable after every node run, batch item, pause and at the end, and
`walk(resume_from=position, answers=...)` rebuilds the stack (`_restore`) to go on from it.

Layers below this file, each importing only those before it: graph.py (node ids, copies),
frames.py, interrupts.py, requests.py, positions.py. Their public names are re-exported here.
"""

from __future__ import annotations

import inspect
import time
import warnings
from collections.abc import Generator as GeneratorABC
from itertools import repeat as _repeat
from types import GeneratorType
from typing import Any, Callable, Dict, Generator, List, Mapping, Optional, Tuple

from . import graph, interrupts
from .errors import (
    FlowError,
    MaxStepsExceeded,
    _ask_outside_exec,
    _bad_action,
    _describe,
    _not_a_generator,
    _not_awaitable,
    attach_node_path,
    describe_path,
)
from .events import (
    Ask,
    Chunk,
    FlowFinished,
    NodeFinished,
    NodeStarted,
    Origin,
    Progress,
    Retry,
)
from .frames import (
    FlowFrame,
    NodeFrame,
    _batch_params,
    _child_path,
    _flow_label,
    _guard,
    _is_selected,
    _Options,
    _own_path,
    _start_next_batch,
    _take,
)
from .graph import (
    FLOW,
    NODE,
    STREAM,
    _assign_ids,
    _check_names,
    _choose_copier,
    _copy,
    graph_nodes,
    next_node,
    node_name,
)
from .interrupts import (
    _GO_ON,
    STOPPED,
    Paused,
    StopSignal,
    _answering,
    _Answers,
    _AskSignal,
    _BranchPaused,
    _close_suspended,
    _is_answered,
    _is_suspended,
    _may_ask,
    _Pause,
    _Stop,
    ask,
)
from .positions import POSITION_VERSION, _restore, fingerprint, position_of
from .requests import NO_SEND, Await, InThread, Parallel, Request, Sleep, Stream

__all__ = [
    "NODE",
    "STREAM",
    "FLOW",
    "walk",
    "walk_item",
    "drain",
    "next_node",
    "node_name",
    "graph_nodes",
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

_tag = map  # map(Chunk, pairs): chunks made in C, with no Python frame per chunk
_perf_counter = time.perf_counter

# Shared with graph.py and interrupts.py, bound here by assignment, not by import: CPython
# 3.11+ compiles a method call on a name bound by `from ... import` as an attribute load (it
# expects a module), which would add a bound-method allocation to the per-step `.get`.
_copiers = graph._copiers  # node class -> how to copy it
_answers = interrupts._answers  # the answers ask() hands out, set while an exec runs


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


def walk_item(
    node: Any,
    item: Any,
    index: int,
    origin: Origin,
    *,
    chunks: bool = True,
    events: bool = False,
    shift: int = 0,
) -> Generator[Any, None, Any]:
    """One item of a parallel batch node, walked on its own as its section's branch is
    (retries, waits, fallback included), under an async driver (it yields Requests). Returns
    the item's result; raises what the item raised after its last attempt, marked with the
    node's path. For a driver hook that runs a section's items in other processes (async
    driver, `fan_out`): `node` is a copy with its params set, `origin` the node's Origin
    (chunks carry it and `index`, as in the section).

    `shift` > 0: the item may have been running when its process died; it runs as a new
    attempt (attempts numbered from `shift`), and with `events` a Retry for attempt shift-1
    with the interrupted reason comes first, as for a node resumed after a crash. An item
    that asks cannot pause on its own: FlowError.
    """
    options = _Options(chunks, events, None, None, True)
    options.sections = 1  # a branch's walk: it never saves and is not the run's own walk
    items: Any = _OneItem(index, item)  # (a frame only measures its items and indexes them)
    twin = NodeFrame(node, origin, None, chunks, items)
    twin.index = index
    twin.driven = bool(node._async or node.in_thread)
    twin.branch = True
    twin.shift = shift
    return _walk_one_item(twin, options)


def _walk_one_item(twin: NodeFrame, options: _Options) -> Generator[Any, None, Any]:
    if twin.shift and options.events:
        origin = twin.origin
        yield Retry(
            origin.name, origin.path, twin.index, twin.shift - 1, _INTERRUPTED, origin.batch, None
        )
    result = yield from _walk(None, None, options, [twin])
    if type(result) is _BranchPaused:
        _close_suspended(result.stack)
        error = FlowError(
            f"item {twin.index} of the parallel batch {describe_path(twin.origin.path)} asked "
            f"for input ({twin.pending!r}), but it runs on its own, away from its run, and "
            "cannot pause there. Run this node's items in the run's own process."
        )
        _mark(error, twin.origin.path)
        raise error
    return result


class _OneItem:
    """The items of a branch walked on its own: only its own, at its index."""

    __slots__ = ("index", "item")

    def __init__(self, index: int, item: Any) -> None:
        self.index = index
        self.item = item

    def __len__(self) -> int:
        return self.index + 1

    def __getitem__(self, index: int) -> Any:
        return self.item


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

    if type(frame) is NodeFrame:
        path, limit = frame.origin.path, frame.node.max_concurrency
        request = Parallel(len(runs), branch, name, path, limit, progress, runs)
        if frame.branches is None:  # every item, none run yet: what a fan-out hands on
            request.node, request.items, request.origin = frame.node, frame.items, frame.origin
    else:
        path, limit = _own_path(frame), frame.flow.max_concurrency
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


class _ReplayIds:
    """Ids for chunks re-made on the way back to a pause: their original ones."""

    __slots__ = ("frame",)

    def __init__(self, frame: NodeFrame) -> None:
        self.frame = frame

    def take(self) -> int:
        self.frame.replay_id += 1
        return self.frame.replay_id - 1


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


# --- pausing, checkpoints, the push driver; the one action check and error mark ---------


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


_UNSET = object()
_INTERRUPTED = "the run ended before this node finished; it runs again as a new attempt"


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


def _checked(action: Any, path: Tuple[str, ...]) -> Optional[str]:
    """The action a post returned, once it is known to be one: a str, or None for 'default'."""
    if action is not None and not isinstance(action, str):
        raise _bad_action(action, path)
    return action


def _mark(exc: BaseException, path: Tuple[str, ...]) -> None:
    """The one place an error gets its node's path, where the walk catches it on its way out
    (the innermost mark counts, so a re-raise from an outer frame changes nothing)."""
    attach_node_path(exc, path)


# What a Paused handle (interrupts.py, a layer below) goes on with: the walk itself.
_GO_ON.update(walk=_walk, push=push, position=position_of)
