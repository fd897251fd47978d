"""Checkpoint positions: a run's stack as JSON-ready data (`position_of`), the graph's
`fingerprint`, and the stack rebuilt from a saved position (`_restore`).

This is what the persistence layer stores beside `shared` (never inside it). Nothing here
runs a node or knows a store: restoring only builds the frames the walk goes on from.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any, Dict, List, Mapping, Optional, Tuple

from .errors import FlowError
from .events import Origin, freeze_params
from .frames import (
    FlowFrame,
    NodeFrame,
    _batch_params,
    _flow_label,
    _guard,
    _is_selected,
    _Options,
    _start_next_batch,
)
from .graph import FLOW, _assign_ids, _copy, graph_nodes, node_name
from .interrupts import _spots

__all__ = ["position_of", "begun_position", "fingerprint", "POSITION_VERSION"]

_perf_counter = time.perf_counter


POSITION_VERSION = 1


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


def begun_position(root: Any) -> Dict[str, Any]:
    """The position of a run that has begun and finished no node yet: no frames. Resumed
    from it, the run starts from its start, its first node as a new attempt (it may have
    been in flight when the process ended), as from any running position."""
    return {
        "version": POSITION_VERSION,
        "fingerprint": fingerprint(root),
        "status": "running",
        "root": node_name(root),
        "next_id": 0,
        "frames": [],
        "interrupts": [],
        "action": None,
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
        for node in graph_nodes(flow):
            successors = {action: node_name(next_) for action, next_ in node.successors.items()}
            shape.append([node_name(flow), node_name(node), type(node).__qualname__, successors])
            if node._kind is FLOW:
                flows.append(node)
    text = json.dumps(shape, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


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
    if position.get("status") == "running":
        top = stack[-1] if stack else None
        if type(top) is NodeFrame:
            top.shift = 1
        else:  # the next node (the first, with no frames) may have been in flight
            options.resumed = True
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
    for node in graph_nodes(flow):
        if node_name(node) == node_id:
            return node
    known = ", ".join(repr(node_name(node)) for node in graph_nodes(flow))
    raise FlowError(
        f"cannot resume: {_flow_label(frame)} has no node {node_id!r} any more (its nodes are "
        f"{known}). The saved run stopped there; resume it with the graph it ran on."
    )
