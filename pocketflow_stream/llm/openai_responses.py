"""OpenAI Responses API stream events -> unified deltas.

Reads the events of `client.responses.create(..., stream=True)` as SDK objects, or as dicts
decoded from the SSE `data:` lines. Handled: output text, refusal, reasoning summary and
reasoning text deltas; function calls (`response.output_item.added` / `.done`,
`response.function_call_arguments.delta` / `.done`); `response.completed`,
`response.incomplete` (`max_output_tokens` -> "length", `content_filter`), `response.failed`
and `error`. Every other event type is skipped.

Function calls get indexes 0, 1, … in order of appearance (the wire's `output_index` counts
every output item, messages and reasoning included). A call is found by its `item_id`, else by
its `output_index`, so a stream that skipped `output_item.added` still works.

The `.done` events and `response.output_item.done` repeat the whole text. Whatever part of it
the deltas did not already bring is sent then: some servers send a call's arguments only in
`function_call_arguments.done` (https://github.com/BerriAI/litellm/issues/27144), and vLLM
could hold back the last fragment (https://github.com/vllm-project/vllm/pull/44348).

Reasoning summary parts are joined with a blank line, so the summary reads as paragraphs.

This module knows the Responses wire format and nothing of the engine.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple

from ._wire import EventDispatch
from ._wire import arguments_text as _arguments_text
from ._wire import field as _field
from .deltas import (
    Delta,
    Finish,
    ProviderError,
    ReasoningDelta,
    RefusalDelta,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
)

__all__ = ["OpenAIResponsesAdapter", "openai_responses_deltas"]

_INCOMPLETE_REASONS = {"max_output_tokens": "length", "content_filter": "content_filter"}

# A streamed text is keyed by what it is and where it sits: (kind, output slot, part index).
# The slot is found from the item id or the output index, whichever the adapter has seen.
_TextKey = Tuple[str, int, int]

_TEXT_KINDS = {
    "response.output_text.delta": ("text", "content_index"),
    "response.output_text.done": ("text", "content_index"),
    "response.refusal.delta": ("refusal", "content_index"),
    "response.refusal.done": ("refusal", "content_index"),
    "response.reasoning_summary_text.delta": ("summary", "summary_index"),
    "response.reasoning_summary_text.done": ("summary", "summary_index"),
    "response.reasoning_text.delta": ("reasoning_text", "content_index"),
    "response.reasoning_text.done": ("reasoning_text", "content_index"),
}


class _FunctionCall:
    __slots__ = ("index", "id", "name", "arguments", "announced", "ended")

    def __init__(self, index: int) -> None:
        self.index = index
        self.id: Optional[str] = None
        self.name = ""
        self.arguments: List[str] = []
        self.announced = False
        self.ended = False


class OpenAIResponsesAdapter(EventDispatch):
    """Stateful converter of one Responses API event stream into deltas.

    >>> adapter = OpenAIResponsesAdapter()
    >>> adapter.feed({"type": "response.output_text.delta", "item_id": "msg_1",
    ...               "output_index": 0, "content_index": 0, "delta": "Hi"})
    [TextDelta(text='Hi')]
    """

    def __init__(self) -> None:
        self._calls: List[_FunctionCall] = []
        self._calls_by_item: Dict[str, _FunctionCall] = {}
        self._calls_by_output: Dict[int, _FunctionCall] = {}
        self._texts: Dict[_TextKey, List[str]] = {}
        self._reasoning_key: Optional[_TextKey] = None
        self._slots_by_item: Dict[str, int] = {}
        self._slots_by_output: Dict[int, int] = {}
        self._latest_slot: Optional[int] = None
        self._slot_count = 0
        self._handlers: Dict[str, Callable[[Any, List[Delta]], None]] = {
            "response.output_text.delta": self._text_delta,
            "response.output_text.done": self._text_done,
            "response.refusal.delta": self._text_delta,
            "response.refusal.done": self._text_done,
            "response.reasoning_summary_text.delta": self._text_delta,
            "response.reasoning_summary_text.done": self._text_done,
            "response.reasoning_text.delta": self._text_delta,
            "response.reasoning_text.done": self._text_done,
            "response.output_item.added": self._item_added,
            "response.output_item.done": self._item_done,
            "response.function_call_arguments.delta": self._arguments_delta,
            "response.function_call_arguments.done": self._arguments_done,
            "response.completed": self._completed,
            "response.incomplete": self._completed,
            "response.failed": self._failed,
            "error": self._error,
        }

    def close(self) -> List[Delta]:
        """End of stream: end every function call still open."""
        out: List[Delta] = []
        for call in self._calls:
            self._end(call, out)
        return out

    # -- text, refusal, reasoning ------------------------------------------------------------

    def _text_delta(self, event: Mapping[str, Any], out: List[Delta]) -> None:
        text = event.get("delta")
        if not text or type(text) is not str:
            return
        kind, part_field = _TEXT_KINDS[event["type"]]
        item_id = event.get("item_id")
        output_index = event.get("output_index")
        slot = self._slots_by_item.get(item_id) if item_id else None
        if slot is None or (
            type(output_index) is int and output_index not in self._slots_by_output
        ):
            slot = self._slot(item_id, output_index)
        else:
            self._latest_slot = slot  # the common event: a known item
        key = (kind, slot, event.get(part_field) or 0)
        if kind != "text":
            self._emit_text(key, text, out)
            return
        parts = self._texts.get(key)
        if parts is None:
            parts = self._texts[key] = []
        parts.append(text)
        out.append(TextDelta(text))

    def _text_done(self, event: Mapping[str, Any], out: List[Delta]) -> None:
        key = self._text_key(event)
        self._reconcile_text(key, event.get("refusal" if key[0] == "refusal" else "text"), out)

    def _text_key(self, event: Mapping[str, Any]) -> _TextKey:
        kind, part_field = _TEXT_KINDS[event.get("type")]  # type: ignore[index]
        slot = self._slot(event.get("item_id"), event.get("output_index"))
        return (kind, slot, event.get(part_field) or 0)

    def _slot(self, item_id: Any, output_index: Any) -> int:
        """The output item a text event belongs to. Found by its item id, else by its output
        index — servers (Copilot-style endpoints) may send a new item id on every event of
        one item while the output index stays — else, with neither, the item seen last."""
        slot = self._slots_by_item.get(item_id) if item_id else None
        has_index = type(output_index) is int
        if slot is not None and (not has_index or output_index in self._slots_by_output):
            self._latest_slot = slot  # the common event: a known item
            return slot
        if slot is None and has_index:
            slot = self._slots_by_output.get(output_index)
        if slot is None:
            if not item_id and not has_index and self._latest_slot is not None:
                slot = self._latest_slot
            else:
                self._slot_count += 1
                slot = self._slot_count
        if item_id:
            self._slots_by_item[item_id] = slot
        if has_index:
            self._slots_by_output[output_index] = slot
        self._latest_slot = slot
        return slot

    def _reconcile_text(self, key: _TextKey, final: Any, out: List[Delta]) -> None:
        if not isinstance(final, str):
            return
        seen = "".join(self._texts.get(key, ()))
        if final.startswith(seen):
            self._emit_text(key, final[len(seen) :], out)
        # A final text that contradicts what was streamed cannot be taken back; keep the stream.

    def _emit_text(self, key: _TextKey, text: Any, out: List[Delta]) -> None:
        if not isinstance(text, str) or not text:
            return
        self._texts.setdefault(key, []).append(text)
        kind = key[0]
        if kind == "text":
            out.append(TextDelta(text))
        elif kind == "refusal":
            out.append(RefusalDelta(text))
        else:
            if self._reasoning_key is not None and self._reasoning_key != key:
                text = "\n\n" + text
            self._reasoning_key = key
            out.append(ReasoningDelta(text))

    # -- output items and function calls -----------------------------------------------------

    def _item_added(self, event: Any, out: List[Delta]) -> None:
        item = _field(event, "item")
        if _field(item, "type") != "function_call":
            return
        call = self._call(_field(item, "id"), _field(event, "output_index"))
        self._name_call(call, _field(item, "call_id"), _field(item, "name"), out)
        self._reconcile_arguments(call, _field(item, "arguments"), out)

    def _item_done(self, event: Any, out: List[Delta]) -> None:
        item = _field(event, "item")
        kind = _field(item, "type")
        item_id = _field(item, "id", "")
        if kind == "function_call":
            call = self._call(_field(item, "id"), _field(event, "output_index"))
            self._name_call(call, _field(item, "call_id"), _field(item, "name"), out)
            self._reconcile_arguments(call, _field(item, "arguments"), out)
            self._end(call, out)
        elif kind == "message":
            slot = self._slot(item_id, _field(event, "output_index"))
            for position, part in enumerate(_field(item, "content", ())):
                part_kind = _field(part, "type")
                if part_kind == "output_text":
                    self._reconcile_text(("text", slot, position), _field(part, "text"), out)
                elif part_kind == "refusal":
                    key = ("refusal", slot, position)
                    self._reconcile_text(key, _field(part, "refusal"), out)
        elif kind == "reasoning":
            slot = self._slot(item_id, _field(event, "output_index"))
            for position, part in enumerate(_field(item, "summary", ())):
                key = ("summary", slot, position)
                self._reconcile_text(key, _field(part, "text"), out)
            for position, part in enumerate(_field(item, "content", ())):
                key = ("reasoning_text", slot, position)
                self._reconcile_text(key, _field(part, "text"), out)

    def _arguments_delta(self, event: Mapping[str, Any], out: List[Delta]) -> None:
        call = self._call(event.get("item_id"), event.get("output_index"), continues=True)
        if not call.announced:
            self._name_call(call, None, None, out)  # a call whose item was never added
        text = event.get("delta")
        if text:
            call.arguments.append(text)
            out.append(ToolCallDelta(call.index, text))

    def _arguments_done(self, event: Any, out: List[Delta]) -> None:
        call = self._call(_field(event, "item_id"), _field(event, "output_index"), continues=True)
        self._name_call(call, None, _field(event, "name"), out)
        self._reconcile_arguments(call, _field(event, "arguments"), out)
        self._end(call, out)

    def _call(
        self, item_id: Optional[str], output_index: Any, continues: bool = False
    ) -> _FunctionCall:
        """The call an event is about: by item id, else by output index (an id may change
        from event to event), else — for an arguments event carrying neither — the call
        still open."""
        call = self._calls_by_item.get(item_id) if item_id else None
        if call is None and isinstance(output_index, int):
            call = self._calls_by_output.get(output_index)
        if call is None and continues and not item_id and not isinstance(output_index, int):
            latest = self._calls[-1] if self._calls else None
            if latest is not None and not latest.ended:
                call = latest
        if call is None:
            call = _FunctionCall(len(self._calls))
            self._calls.append(call)
        if item_id:
            self._calls_by_item[item_id] = call
        if isinstance(output_index, int):
            self._calls_by_output[output_index] = call
        return call

    def _name_call(
        self, call: _FunctionCall, call_id: Optional[str], name: Optional[str], out: List[Delta]
    ) -> None:
        changed = not call.announced
        if call_id and call.id is None:
            call.id, changed = call_id, True
        if name and name != call.name:
            call.name, changed = name, True
        if changed:
            call.announced = True
            out.append(ToolCallStart(call.index, call.id, call.name))

    def _add_arguments(self, call: _FunctionCall, text: str, out: List[Delta]) -> None:
        if text:
            call.arguments.append(text)
            out.append(ToolCallDelta(call.index, text))

    def _reconcile_arguments(self, call: _FunctionCall, final: Any, out: List[Delta]) -> None:
        final_text = _arguments_text(final)
        seen = "".join(call.arguments)
        if final_text.startswith(seen):
            self._add_arguments(call, final_text[len(seen) :], out)

    def _end(self, call: _FunctionCall, out: List[Delta]) -> None:
        self._name_call(call, None, None, out)
        if not call.ended:
            call.ended = True
            out.append(ToolCallEnd(call.index))

    # -- the end of the response -------------------------------------------------------------

    def _completed(self, event: Any, out: List[Delta]) -> None:
        response = _field(event, "response")
        for call in self._calls:
            self._end(call, out)
        usage = _usage_from(_field(response, "usage"))
        if usage is not None:
            out.append(usage)
        status = _field(response, "status", "completed")
        if _field(event, "type") == "response.incomplete" or status == "incomplete":
            detail = _field(_field(response, "incomplete_details"), "reason", "max_output_tokens")
            out.append(Finish(_INCOMPLETE_REASONS.get(detail, "length"), detail))
        else:
            out.append(Finish("tool_calls" if self._calls else "stop", status))

    def _failed(self, event: Any, out: List[Delta]) -> None:
        response = _field(event, "response")
        usage = _usage_from(_field(response, "usage"))
        if usage is not None:
            out.append(usage)
        error = _field(response, "error")
        message = _field(error, "message", "the response failed without an error message")
        code = _field(error, "code")
        out.append(ProviderError(str(message), None if code is None else str(code)))

    def _error(self, event: Any, out: List[Delta]) -> None:
        error = _field(event, "error", event)  # some servers nest the error object
        message = _field(error, "message", "the provider reported an error without a message")
        code = _field(error, "code", _field(error, "type"))
        if code == "error":  # the event's own type, not an error code
            code = None
        out.append(ProviderError(str(message), None if code is None else str(code)))


def _usage_from(raw: Any) -> Optional[Usage]:
    if raw is None:
        return None
    input_tokens = _field(raw, "input_tokens")
    output_tokens = _field(raw, "output_tokens")
    total_tokens = _field(raw, "total_tokens")
    if total_tokens is None and input_tokens is not None and output_tokens is not None:
        total_tokens = input_tokens + output_tokens
    return Usage(
        input_tokens,
        output_tokens,
        total_tokens,
        _field(_field(raw, "output_tokens_details"), "reasoning_tokens"),
        _field(_field(raw, "input_tokens_details"), "cached_tokens"),
    )


def openai_responses_deltas(events: Iterable[Any]) -> Iterator[Delta]:
    """Yield the deltas of a whole Responses API stream (feeds every event, then closes)."""
    adapter = OpenAIResponsesAdapter()
    for event in events:
        yield from adapter.feed(event)
    yield from adapter.close()
