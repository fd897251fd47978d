"""A run's stream folded into a transcript: one renderer-neutral tree that every view draws.

`Transcript.add(item)` takes what a run yields — chunks (whose data are the llm layer's deltas,
plain text, `ToolResult`s or anything else), lifecycle events, batch progress, interrupts — or
their `to_dict()` form from the other side of a process boundary, and folds it into `Step`s:
one per node run, nested as the flows are nested, each holding the node's thinking, answer
text, tool calls (arguments healed while they stream, parsed strictly once complete) and their
results, retries, errors, the interrupt it paused on and its batch progress. `add` returns the
steps it changed, so a view redraws only those.

Rules:
- A step is one run of a node at one path (and for one BatchFlow iteration, `batch`). A batch
  node's items are child steps of the node's step (`item` set), so parallel items never mix.
- With lifecycle events, `NodeStarted` opens a step and `NodeFinished` closes it. Without them,
  a chunk for a node opens its step, and the step closes when the next node of the same flow
  (and the same batch iteration) starts, or when the run ends (`FlowFinished` or `finish()`).
  Enclosing flows get steps of their own even when only their inner nodes' chunks are seen.
- A retried attempt's partial output is replaced, not appended: a `Retry` event (or a chunk of
  a later attempt) clears the step's text, thinking, tool calls and values, and `attempt` says
  which try is shown. A chunk of an earlier attempt than the one shown is dropped.
- A tool call is `valid` only once it ended (`ToolCallEnd`) and its arguments parse strictly
  as a JSON object (empty arguments count as `{}`); until then `arguments` is the healed
  partial value, for showing, never for running.
- Items carrying an integer `id` (checkpointed runs) are folded once: an item whose id is not
  above the last one seen is a replay and is dropped.

This module knows the core's items and the llm layer's deltas; it knows no provider format,
no terminal and no Gradio.
"""

from __future__ import annotations

import json
import time
from dataclasses import fields as dataclass_fields
from typing import Any, ClassVar, Dict, Iterable, List, Mapping, Optional, Tuple

from .._compat import frozen_slots
from ..errors import node_path_of
from ..events import (
    Chunk,
    FlowFinished,
    Interrupt,
    NodeFinished,
    NodeStarted,
    Origin,
    Progress,
    Retry,
    freeze_params,
    json_ready,
)
from ..llm.deltas import (
    Finish,
    ProviderError,
    ReasoningDelta,
    RefusalDelta,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
    delta_from_dict,
)
from ..llm.partial_json import PartialJSON, PartialJSONError

__all__ = [
    "Transcript",
    "Step",
    "ToolCallView",
    "ToolResult",
    "load_item",
    "from_dict",
]

RUNNING, DONE, FAILED, PAUSED = "running", "done", "failed", "paused"


@frozen_slots
class ToolResult:
    """What a tool returned, yielded by the node that ran it (an agent's `Act`), so views can
    show the result under the call that asked for it. `call_id` is the tool call's id."""

    type: ClassVar[str] = "tool_result"
    call_id: str
    content: Any
    name: Optional[str] = None
    is_error: bool = False

    def to_dict(self) -> Dict[str, Any]:
        return {
            "type": self.type,
            "call_id": self.call_id,
            "content": json_ready(self.content),
            "name": self.name,
            "is_error": self.is_error,
        }


class _Text:
    """Text that grows by appending: `value` joins lazily; `since(n)` gives what came after
    the first n characters at a cost proportional to the new text (a live view's read)."""

    __slots__ = ("parts", "length")

    def __init__(self) -> None:
        self.parts: List[str] = []
        self.length = 0

    def append(self, text: str) -> None:
        if text:
            self.parts.append(text)
            self.length += len(text)

    @property
    def value(self) -> str:
        parts = self.parts
        if len(parts) > 1:
            parts[:] = ["".join(parts)]
        return parts[0] if parts else ""

    def since(self, start: int) -> str:
        wanted = self.length - start
        if wanted <= 0:
            return ""
        parts = self.parts
        taken, index = 0, len(parts)
        while taken < wanted:
            index -= 1
            taken += len(parts[index])
        tail = "".join(parts[index:])
        return tail[len(tail) - wanted :]


class ToolCallView:
    """A tool call as it streams: `arguments_text` exactly as it arrived, `arguments` the healed
    partial value (for showing), `done` once it ended, `valid` once it ended and parsed strictly
    as a JSON object, `error` why not, `result` the `ToolResult` content once it came."""

    __slots__ = (
        "id",
        "index",
        "name",
        "done",
        "valid",
        "error",
        "result",
        "result_is_error",
        "has_result",
        "_parts",
        "_parser",
        "_healed",
        "_final",
    )

    def __init__(self, index: int, call_id: str, name: str) -> None:
        self.id = call_id
        self.index = index
        self.name = name
        self.done = False
        self.valid = False
        self.error: Optional[str] = None
        self.result: Any = None
        self.result_is_error = False
        self.has_result = False
        self._parts = _Text()
        self._parser = PartialJSON(empty_is_object=True)
        self._healed: Any = None
        self._final: Any = None

    @property
    def arguments_text(self) -> str:
        return self._parts.value

    @property
    def arguments_length(self) -> int:
        """len(arguments_text), without joining it."""
        return self._parts.length

    def arguments_since(self, start: int) -> str:
        """arguments_text[start:], at a cost proportional to the new text."""
        return self._parts.since(start)

    @property
    def arguments(self) -> Any:
        """The parsed arguments once valid, else the healed value of the text so far (None
        before anything can be shown)."""
        if self.valid:
            return self._final
        if self._healed is None:
            self._healed = self._parser.healed(None)
        return self._healed

    def _feed(self, text: str) -> None:
        if self.done:  # arguments after the end: keep the text, the call is not runnable
            self._parts.append(text)
            self.valid, self.error = False, "arguments arrived after the call ended"
            return
        self._parts.append(text)
        self._parser.feed(text)
        self._healed = None

    def _end(self) -> None:
        if self.done:
            return
        self.done = True
        try:
            value = self._parser.finish()
        except PartialJSONError as error:
            self.error = f"invalid JSON arguments: {error}"
            return
        if not isinstance(value, dict):
            self.error = f"arguments must be a JSON object, got {type(value).__name__}"
            return
        self.valid, self._final = True, value

    def to_dict(self) -> Dict[str, Any]:
        return {
            "id": self.id,
            "index": self.index,
            "name": self.name,
            "arguments_text": self.arguments_text,
            "arguments": json_ready(self.arguments),
            "done": self.done,
            "valid": self.valid,
            "error": self.error,
            "result": json_ready(self.result) if self.has_result else None,
            "has_result": self.has_result,
            "result_is_error": self.result_is_error,
        }

    def __repr__(self) -> str:
        return (
            f"ToolCallView(id={self.id!r}, name={self.name!r}, "
            f"arguments_text={self.arguments_text!r}, done={self.done}, valid={self.valid})"
        )


class Step:
    """One node run in the transcript (or one batch item of it, `item` set).

    `status` is "running", "done", "failed" or "paused"; `started` is `time.time()` when the
    step was first seen; `duration` seconds once done (from `NodeFinished` when events are on);
    `attempt` the try being shown; `retries` the errors of the failed tries; `thinking`, `text`,
    `refusal` the streamed text; `tool_calls` the `ToolCallView`s it made; `results` the
    `ToolResult`s it yielded; `values` any other data it yielded; `error` why it failed (or the
    provider's in-stream error); `interrupt` the interrupt it paused on; `progress` a
    `(done, total)` pair for a batch; `action` what its post returned.
    """

    __slots__ = (
        "id",
        "node",
        "path",
        "item",
        "batch",
        "parent",
        "children",
        "status",
        "started",
        "duration",
        "attempt",
        "retries",
        "refusal",
        "tool_calls",
        "results",
        "values",
        "error",
        "interrupt",
        "progress",
        "action",
        "usage",
        "finish_reason",
        "_thinking",
        "_text",
        "_calls_by_index",
    )

    def __init__(
        self,
        step_id: str,
        node: str,
        path: Tuple[str, ...],
        item: Optional[int],
        batch: Optional[Dict[str, Any]],
        parent: Optional[Step],
    ) -> None:
        self.id = step_id
        self.node = node
        self.path = path
        self.item = item
        self.batch = batch
        self.parent = parent
        self.children: List[Step] = []
        self.status = RUNNING
        self.started = time.time()
        self.duration: Optional[float] = None
        self.attempt = 0
        self.retries: List[str] = []
        self.error: Optional[str] = None
        self.interrupt: Any = None
        self.progress: Optional[Tuple[int, int]] = None
        self.action: Optional[str] = None
        self._reset_output()

    def _reset_output(self) -> None:
        self._thinking = _Text()
        self._text = _Text()
        self.refusal = ""
        self.tool_calls: List[ToolCallView] = []
        self._calls_by_index: Dict[int, ToolCallView] = {}
        self.results: List[ToolResult] = []
        self.values: List[Any] = []
        self.usage: Optional[Usage] = None
        self.finish_reason: Optional[str] = None

    @property
    def thinking(self) -> str:
        return self._thinking.value

    @property
    def text(self) -> str:
        return self._text.value

    @property
    def thinking_length(self) -> int:
        """len(thinking), without joining it."""
        return self._thinking.length

    @property
    def text_length(self) -> int:
        """len(text), without joining it."""
        return self._text.length

    def thinking_since(self, start: int) -> str:
        """thinking[start:], at a cost proportional to the new text (for live views)."""
        return self._thinking.since(start)

    def text_since(self, start: int) -> str:
        """text[start:], at a cost proportional to the new text (for live views)."""
        return self._text.since(start)

    @property
    def label(self) -> str:
        """`Agent > Plan`, with ` [item]` for a batch item."""
        label = " > ".join(self.path)
        return label if self.item is None else f"{label} [{self.item}]"

    def walk(self) -> Iterable[Step]:
        """This step and every step below it, depth first."""
        stack = [self]
        while stack:
            step = stack.pop()
            yield step
            stack.extend(reversed(step.children))

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready: every field, children nested (timings under `started`/`duration`)."""
        return {
            "id": self.id,
            "node": self.node,
            "path": list(self.path),
            "item": self.item,
            "batch": json_ready(self.batch),
            "status": self.status,
            "started": self.started,
            "duration": self.duration,
            "attempt": self.attempt,
            "retries": list(self.retries),
            "thinking": self.thinking,
            "text": self.text,
            "refusal": self.refusal,
            "tool_calls": [call.to_dict() for call in self.tool_calls],
            "results": [result.to_dict() for result in self.results],
            "values": json_ready(self.values),
            "error": self.error,
            "interrupt": json_ready(self.interrupt),
            "progress": None if self.progress is None else list(self.progress),
            "action": self.action,
            "usage": None if self.usage is None else self.usage.to_dict(),
            "finish_reason": self.finish_reason,
            "children": [child.to_dict() for child in self.children],
        }

    def __repr__(self) -> str:
        return f"Step(id={self.id!r}, path={self.path!r}, item={self.item!r}, {self.status})"


def _batch_key(batch: Optional[Mapping[str, Any]]) -> str:
    if batch is None:
        return ""
    return json.dumps(json_ready(dict(batch)), sort_keys=True, default=repr)


class Transcript:
    """The fold of one run's stream (or several runs' streams, one after the other).

        transcript = Transcript()
        for item in flow.run_stream(shared, events=True):
            for step in transcript.add(item):     # the steps this item changed
                redraw(step)

    `steps` are the top-level steps in order; `finished` and `action` are set by the run's
    `FlowFinished` (or `finish()`); `pending` lists the interrupts waiting for an answer.
    """

    def __init__(self) -> None:
        self.steps: List[Step] = []
        self.finished = False
        self.action: Optional[str] = None
        self.duration: Optional[float] = None
        self.error: Optional[str] = None
        self._count = 0
        self._open: Dict[Tuple[Tuple[str, ...], str], Step] = {}  # (path, batch) -> node step
        self._latest: Dict[Tuple[str, ...], Step] = {}  # path -> the open step opened last
        self._calls: Dict[str, ToolCallView] = {}
        self._call_owner: Dict[str, Step] = {}
        self._last_id: Optional[int] = None
        self._last_origin: Optional[Origin] = None  # consecutive chunks of one node run
        self._last_step: Optional[Step] = None

    # -- reading -------------------------------------------------------------------------

    def walk(self) -> Iterable[Step]:
        """Every step, depth first, in order."""
        for step in self.steps:
            yield from step.walk()

    @property
    def pending(self) -> List[Any]:
        """The interrupts of the steps paused now, in order."""
        return [step.interrupt for step in self.walk() if step.status == PAUSED]

    def to_dict(self) -> Dict[str, Any]:
        return {
            "steps": [step.to_dict() for step in self.steps],
            "finished": self.finished,
            "action": self.action,
            "error": self.error,
        }

    # -- folding -------------------------------------------------------------------------

    def add(self, item: Any) -> List[Step]:
        """Fold one stream item (or its `to_dict()` form) in; return the steps it changed (a
        new step's parent counts as changed: its children grew). Raises ValueError for a dict
        of an unknown type."""
        if isinstance(item, Mapping):
            item = load_item(item)
        item_id = getattr(item, "id", None)
        if type(item_id) is int:
            if self._last_id is not None and item_id <= self._last_id:
                return []
            self._last_id = item_id
        changed: List[Step] = []
        if type(item) is Chunk:
            self._chunk(item, changed)
            return changed
        kind = getattr(item, "type", None)
        if kind == "node_started":
            self._node_started(item, changed)
        elif kind == "node_finished":
            self._node_finished(item, changed)
        elif kind == "retry":
            step = self._step(tuple(item.path), item.item, item.batch, changed)
            step.retries.append(item.error)
            self._restart(step, item.attempt + 1)
            _mark(changed, step)
        elif kind == "flow_finished":
            self.finish(item.action, item.duration, changed)
        elif kind == "progress":
            step = self._step(tuple(item.path), None, item.batch, changed)
            step.progress = (item.done, item.total)
            _mark(changed, step)
        elif kind == "interrupt":
            step = self._step(tuple(item.path), item.item, item.batch, changed)
            step.status, step.interrupt = PAUSED, item
            _mark(changed, step)
        return changed

    def extend(self, items: Iterable[Any]) -> List[Step]:
        """Fold every item in; return the steps changed (each once, in order of first change)."""
        changed: List[Step] = []
        for item in items:
            for step in self.add(item):
                _mark(changed, step)
        return changed

    def finish(
        self,
        action: Optional[str] = None,
        duration: Optional[float] = None,
        changed: Optional[List[Step]] = None,
    ) -> List[Step]:
        """The run ended: every open step is done (a paused one stays paused)."""
        changed = [] if changed is None else changed
        self.finished, self.action, self.duration = True, action, duration
        now = time.time()
        for step in list(self.walk()):
            if step.status == RUNNING:
                self._close(step, now, changed)
        self._open.clear()
        self._latest.clear()
        return changed

    def fail(self, error: BaseException, path: Optional[Iterable[str]] = None) -> List[Step]:
        """The run raised `error` (the consumer caught it): the step at `path` (default: the
        node path the engine attached to the exception) and the steps around it that were
        still running are marked failed with the error's message."""
        changed: List[Step] = []
        message = f"{type(error).__name__}: {error}"
        self.error = message
        where = tuple(path) if path is not None else node_path_of(error)
        now = time.time()
        for step in list(self.walk()):
            if step.status != RUNNING:
                continue
            inside = where is not None and where[: len(step.path)] == step.path
            if inside or where is None:
                step.status, step.error = FAILED, message
                step.duration = now - step.started
                _mark(changed, step)
        self.finished = True
        self._open.clear()
        self._latest.clear()
        return changed

    # -- steps ---------------------------------------------------------------------------

    def _new_step(
        self,
        path: Tuple[str, ...],
        item: Optional[int],
        batch: Optional[Mapping[str, Any]],
        parent: Optional[Step],
        changed: List[Step],
    ) -> Step:
        self._count += 1
        batch_dict = None if batch is None else dict(batch)
        step = Step(f"s{self._count}", path[-1], path, item, batch_dict, parent)
        (self.steps if parent is None else parent.children).append(step)
        if parent is not None:
            _mark(changed, parent)
        _mark(changed, step)
        return step

    def _flow_step(
        self, path: Tuple[str, ...], batch: Optional[Mapping[str, Any]], changed: List[Step]
    ) -> Optional[Step]:
        """The open step of the flow at `path` (made if none is open), None for the top."""
        if not path:
            return None
        step = self._open.get((path, _batch_key(batch))) or self._latest.get(path)
        if step is None:
            step = self._open_node(path, None, changed)
        return step

    def _open_node(
        self, path: Tuple[str, ...], batch: Optional[Mapping[str, Any]], changed: List[Step]
    ) -> Step:
        """A new step for a node run at `path`: earlier runs at the same place are over. A
        step paused before its node ran (`pause_before`) is that run: it goes on."""
        key = _batch_key(batch)
        paused = self._open.get((path, key))
        if paused is not None and paused.status == PAUSED:
            paused.status = RUNNING
            _mark(changed, paused)
            return paused
        parent = self._flow_step(path[:-1], batch, changed)
        siblings = self.steps if parent is None else parent.children
        now = time.time()
        for sibling in reversed(siblings):  # the flow moved on: its running node is done
            if sibling.status == RUNNING and _batch_key(sibling.batch) == key:
                self._close(sibling, now, changed)
                break
        step = self._new_step(path, None, batch, parent, changed)
        self._open[(path, key)] = step
        self._latest[path] = step
        return step

    def _step(
        self,
        path: Tuple[str, ...],
        item: Optional[int],
        batch: Optional[Mapping[str, Any]],
        changed: List[Step],
    ) -> Step:
        """The step items at `path` (batch item `item`, iteration `batch`) fold into."""
        step = self._open.get((path, _batch_key(batch)))
        if step is None:
            step = self._open_node(path, batch, changed)
        if item is None:
            return step
        for child in reversed(step.children):
            if child.item == item:
                return child
        return self._new_step(path, item, batch, step, changed)

    def _close(self, step: Step, now: float, changed: List[Step]) -> None:
        for inner in step.walk():
            if inner.status == RUNNING:
                inner.status = DONE
                if inner.duration is None:
                    inner.duration = now - inner.started
                _mark(changed, inner)
        key = (step.path, _batch_key(step.batch))
        if self._open.get(key) is step:
            del self._open[key]
        if self._latest.get(step.path) is step:
            del self._latest[step.path]

    def _restart(self, step: Step, attempt: int) -> None:
        for call in step.tool_calls:
            self._calls.pop(call.id, None)
            self._call_owner.pop(call.id, None)
        step._reset_output()
        step.attempt = attempt
        step.error = None
        step.status = RUNNING

    # -- items ---------------------------------------------------------------------------

    def _node_started(self, event: Any, changed: List[Step]) -> None:
        self._open_node(tuple(event.path), event.batch, changed)

    def _node_finished(self, event: Any, changed: List[Step]) -> None:
        path = tuple(event.path)
        step = self._open.get((path, _batch_key(event.batch))) or self._latest.get(path)
        if step is None:
            step = self._open_node(path, event.batch, changed)
        step.action = event.action
        step.duration = event.duration
        self._close(step, time.time(), changed)
        _mark(changed, step)

    def _chunk(self, chunk: Chunk, changed: List[Step]) -> None:
        origin = chunk[0]
        step = self._last_step
        if origin is not self._last_origin or step is None or step.status != RUNNING:
            step = self._step(origin.path, origin.item, origin.batch, changed)
            self._last_origin, self._last_step = origin, step
        if origin.attempt != step.attempt:
            if origin.attempt < step.attempt:
                return  # a failed try's chunk arriving late: already replaced
            self._restart(step, origin.attempt)
        if step.status == PAUSED:
            step.status = RUNNING  # resumed
        data = chunk[1]
        kind = type(data)
        if kind is TextDelta or kind is str:
            step._text.append(data if kind is str else data.text)
        elif kind is ReasoningDelta:
            step._thinking.append(data.text)
        elif kind is ToolCallStart:
            self._tool_call(step, data.index, data.id, data.name)
        elif kind is ToolCallDelta:
            self._tool_call(step, data.index, None, None)._feed(data.arguments)
        elif kind is ToolCallEnd:
            self._tool_call(step, data.index, None, None)._end()
        elif kind is ToolResult:
            self._tool_result(step, data, changed)
        elif kind is Finish:
            step.finish_reason = data.reason
        elif kind is Usage:
            step.usage = data
        elif kind is RefusalDelta:
            step.refusal += data.text
        elif kind is ProviderError:
            if step.error is None:
                step.error = data.message
        elif getattr(data, "type", None) in _QUIET_DELTAS:
            return  # signatures, redacted blocks: for history, not for people
        else:
            step.values.append(data)
        _mark(changed, step)

    def _tool_call(
        self, step: Step, index: int, call_id: Optional[str], name: Optional[str]
    ) -> ToolCallView:
        call = step._calls_by_index.get(index)
        if call is None:
            made_id = call_id or f"call_{index}"
            if made_id in self._calls:
                made_id = f"{made_id}_{step.id}_{index}"
            call = ToolCallView(index, made_id, name or "")
            step._calls_by_index[index] = call
            step.tool_calls.append(call)
            self._calls[made_id] = call
            self._call_owner[made_id] = step
        elif name:
            call.name = name
        return call

    def _tool_result(self, step: Step, result: ToolResult, changed: List[Step]) -> None:
        step.results.append(result)
        _mark(changed, step)
        call = self._calls.get(result.call_id)
        if call is not None:
            call.result, call.result_is_error, call.has_result = (
                result.content,
                result.is_error,
                True,
            )
            _mark(changed, self._call_owner[result.call_id])


_QUIET_DELTAS = ("signature", "redacted_reasoning")


def _mark(changed: List[Step], step: Step) -> None:
    if not any(seen is step for seen in changed):
        changed.append(step)


# -- rebuilding items from their dict form ------------------------------------------------

_EVENTS: Dict[str, Any] = {
    cls.type: cls for cls in (NodeStarted, NodeFinished, Retry, FlowFinished, Progress, Interrupt)
}


def _origin(
    path: List[str],
    item: Optional[int],
    attempt: int,
    batch: Optional[Mapping[str, Any]],
    replay: bool,
) -> Origin:
    parent: Optional[Origin] = None
    frozen = None if batch is None else freeze_params(batch)
    for name in path[:-1]:
        parent = Origin(name, parent, frozen)
    return Origin(path[-1], parent, frozen, item, attempt, replay)


def load_data(value: Any) -> Any:
    """A chunk's data rebuilt from its JSON form: deltas and `ToolResult`s become themselves
    again; anything else (text, the app's own dicts) is returned as it is."""
    if isinstance(value, Mapping):
        kind = value.get("type")
        if kind == ToolResult.type:
            try:
                return ToolResult(**{k: v for k, v in value.items() if k != "type"})
            except TypeError:
                return value
        if isinstance(kind, str):
            try:
                return delta_from_dict(dict(value))
            except (ValueError, TypeError):
                return value
    return value


def load_item(data: Mapping[str, Any]) -> Any:
    """Rebuild a stream item (Chunk, event, Progress, Interrupt) from its `to_dict()` form.

    Raises ValueError for a dict without a known `type`."""
    kind = data.get("type")
    if kind == "chunk":
        path = list(data["path"])
        if not path:
            raise ValueError("a chunk dict needs a non-empty 'path'")
        origin = _origin(
            path,
            data.get("item"),
            data.get("attempt") or 0,
            data.get("batch"),
            bool(data.get("replay")),
        )
        if data.get("id") is not None:  # a checkpointed run's chunk keeps its number
            return Chunk((origin, load_data(data.get("data")), data["id"]))
        return Chunk((origin, load_data(data.get("data"))))
    cls = _EVENTS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ValueError(
            f"cannot rebuild a stream item of type {kind!r}: expected 'chunk', "
            f"{', '.join(repr(k) for k in sorted(_EVENTS))}, 'progress' or 'interrupt'"
        )
    values = {}
    for field in dataclass_fields(cls):
        if field.name in data and field.name != "handle":
            value = data[field.name]
            if field.name == "path":
                value = tuple(value)
            elif field.name == "batch" and value is not None:
                value = freeze_params(value)
            values[field.name] = value
    return cls(**values)


from_dict = load_item
