"""Anthropic Messages stream events -> unified deltas.

Reads the events of `client.messages.create(..., stream=True)` as SDK objects, or as dicts
decoded from the SSE `data:` lines: `message_start`, `content_block_start` (text, tool_use,
thinking, redacted_thinking), `content_block_delta` (text_delta, input_json_delta,
thinking_delta, signature_delta), `content_block_stop`, `message_delta`, `message_stop`,
`ping` and `error`. Unknown events and blocks (server tools, citations, …) are skipped.

- tool_use blocks become tool calls indexed 0, 1, … in order of appearance (the wire's block
  index counts text and thinking blocks too).
- `input_json_delta` with an empty `partial_json` is skipped (sent for tools without
  parameters, https://github.com/anthropics/anthropic-sdk-java/pull/295). A tool_use block whose
  `input` is already filled at `content_block_start` and that gets no `input_json_delta` (proxies
  that synthesise complete blocks) sends that input as its arguments at `content_block_stop`.
- thinking text becomes `ReasoningDelta`, its signature `SignatureDelta` (a signature that a
  proxy put in `content_block_start` is sent at the block's end), `redacted_thinking` becomes
  `RedactedReasoning`: enough for the accumulator to rebuild blocks Anthropic accepts back.
- usage: `message_start` brings the input figures, `message_delta` the cumulative output (and,
  in newer API versions, input) figures. Each `Usage` sent is the whole picture so far.
  `input_tokens` counts cached input too (Anthropic reports it apart), so the figure means the
  same as OpenAI's `prompt_tokens`; `cached_tokens` is the cache read.
- stop reasons: end_turn / stop_sequence -> "stop", max_tokens and
  model_context_window_exceeded -> "length", tool_use -> "tool_calls", refusal ->
  "content_filter", pause_turn -> "length" (the turn was cut short and can be continued by
  sending it back; `Finish.raw` keeps "pause_turn" for callers that want to do so).

The SDK raises on an `error` event rather than yielding it; the dict form (SSE decoded by hand)
yields it as a ProviderError.

This module knows the Messages wire format and nothing of the engine.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional

from ._wire import _VIEWS, EventDispatch
from ._wire import field as _field
from ._wire import view as _view
from .deltas import (
    Delta,
    Finish,
    ProviderError,
    ReasoningDelta,
    RedactedReasoning,
    SignatureDelta,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
)

__all__ = ["AnthropicAdapter", "anthropic_deltas"]

_STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "pause_turn": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

_USAGE_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
)

# The kind of content block a delta type belongs to, for deltas whose block never started.
_BLOCK_OF_DELTA = {
    "text_delta": "text",
    "input_json_delta": "tool_use",
    "thinking_delta": "thinking",
    "signature_delta": "thinking",
}


class _Block:
    __slots__ = ("kind", "tool_index", "streamed", "held", "ended")

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.tool_index = -1
        self.streamed = False  # input_json_delta / signature_delta seen for this block
        self.held: Optional[str] = None  # input or signature given whole at block start
        self.ended = False


class AnthropicAdapter(EventDispatch):
    """Stateful converter of one Anthropic Messages event stream into deltas.

    >>> adapter = AnthropicAdapter()
    >>> adapter.feed({"type": "content_block_delta", "index": 0,
    ...               "delta": {"type": "text_delta", "text": "Hi"}})
    [TextDelta(text='Hi')]
    """

    def __init__(self) -> None:
        self._blocks: Dict[int, _Block] = {}
        self._latest: Optional[int] = None  # the index of the block started last
        self._tool_count = 0
        self._usage_figures: Dict[str, int] = {}
        self._usage_sent: Optional[Usage] = None
        self._handlers: Dict[str, Callable[[Any, List[Delta]], None]] = {
            "message_start": self._message_start,
            "content_block_start": self._block_start,
            "content_block_delta": self._block_delta,
            "content_block_stop": self._block_stop,
            "message_delta": self._message_delta,
            "message_stop": self._message_stop,
            "error": self._error,
        }

    def close(self) -> List[Delta]:
        """End of stream: finish every block still open (a stream cut before message_stop)."""
        out: List[Delta] = []
        self._message_stop(None, out)
        return out

    def _message_start(self, event: Any, out: List[Delta]) -> None:
        self._add_usage(_field(_field(event, "message"), "usage"), out)

    def _block_start(self, event: Any, out: List[Delta]) -> None:
        block = _field(event, "content_block")
        kind = _field(block, "type", "")
        state = self._open_block(self._index_of(event), kind, out)
        if kind == "text":
            self._text(_field(block, "text"), out)
        elif kind == "tool_use":
            out.append(
                ToolCallStart(state.tool_index, _field(block, "id"), _field(block, "name", ""))
            )
            given = _field(block, "input")
            if given:  # normally `{}` here, with the input streamed as input_json_delta
                state.held = (
                    given if isinstance(given, str) else json.dumps(given, ensure_ascii=False)
                )
        elif kind == "thinking":
            self._reasoning(_field(block, "thinking"), out)
            state.held = _field(block, "signature") or None
        elif kind == "redacted_thinking":
            data = _field(block, "data")
            if data:
                out.append(RedactedReasoning(str(data)))

    def _block_delta(self, event: Mapping[str, Any], out: List[Delta]) -> None:
        delta = event.get("delta")
        if type(delta) is not dict:
            make = _VIEWS.get(type(delta))
            delta = _view(delta) if make is None else make(delta)
        kind = delta.get("type") or ""
        index = event.get("index")
        if type(index) is not int:
            index = self._index_of(event)
        state = self._blocks.get(index)
        if state is None:  # a delta for a block that never started (seen behind proxies)
            block_kind = _BLOCK_OF_DELTA.get(kind)
            if block_kind is None:
                return
            state = self._open_block(index, block_kind, out)
            if block_kind == "tool_use":
                out.append(ToolCallStart(state.tool_index, None, ""))
        block_kind = state.kind
        if kind == "text_delta":
            if block_kind == "text":
                text = delta.get("text")
                if text and isinstance(text, str):
                    out.append(TextDelta(text))
        elif kind == "input_json_delta":
            if block_kind == "tool_use":
                partial = delta.get("partial_json")
                if partial:
                    state.streamed = True
                    out.append(ToolCallDelta(state.tool_index, partial))
        elif kind == "thinking_delta" and block_kind == "thinking":
            self._reasoning(delta.get("thinking"), out)
        elif kind == "signature_delta" and block_kind == "thinking":
            signature = delta.get("signature")
            if signature:
                state.streamed = True
                out.append(SignatureDelta(signature))

    def _block_stop(self, event: Mapping[str, Any], out: List[Delta]) -> None:
        state = self._blocks.get(self._index_of(event))
        if state is not None:
            self._end_block(state, out)

    def _index_of(self, event: Mapping[str, Any]) -> int:
        """The block an event is about: its `index`; without one (proxies that drop it), the
        block started last, not block 0."""
        index = event.get("index")
        if isinstance(index, int):
            return index
        return self._latest if self._latest is not None else 0

    def _message_delta(self, event: Any, out: List[Delta]) -> None:
        self._add_usage(_field(event, "usage"), out)
        stop_reason = _field(_field(event, "delta"), "stop_reason")
        if stop_reason is not None:
            out.append(Finish(_STOP_REASONS.get(stop_reason, "stop"), stop_reason))

    def _message_stop(self, event: Any, out: List[Delta]) -> None:
        for state in self._blocks.values():
            self._end_block(state, out)

    def _error(self, event: Any, out: List[Delta]) -> None:
        error = _field(event, "error")
        message = _field(error, "message", "the provider reported an error without a message")
        out.append(ProviderError(str(message), _field(error, "type")))

    # -- helpers -----------------------------------------------------------------------------

    def _open_block(self, index: int, kind: str, out: List[Delta]) -> _Block:
        previous = self._blocks.get(index)
        if previous is not None:  # a block index reused without a stop: close the old one
            self._end_block(previous, out)
        state = _Block(kind)
        self._latest = index
        if kind == "tool_use":
            state.tool_index = self._tool_count
            self._tool_count += 1
        self._blocks[index] = state
        return state

    def _end_block(self, state: _Block, out: List[Delta]) -> None:
        if state.ended:
            return
        state.ended = True
        if state.kind == "tool_use":
            if state.held and not state.streamed:
                out.append(ToolCallDelta(state.tool_index, state.held))
            out.append(ToolCallEnd(state.tool_index))
        elif state.kind == "thinking" and state.held and not state.streamed:
            out.append(SignatureDelta(state.held))

    @staticmethod
    def _text(text: Any, out: List[Delta]) -> None:
        if isinstance(text, str) and text:
            out.append(TextDelta(text))

    @staticmethod
    def _reasoning(text: Any, out: List[Delta]) -> None:
        if isinstance(text, str) and text:
            out.append(ReasoningDelta(text))

    def _add_usage(self, raw: Any, out: List[Delta]) -> None:
        if raw is None:
            return
        for name in _USAGE_FIELDS:
            value = _field(raw, name)
            if value is not None:
                self._usage_figures[name] = value
        thinking = _field(_field(raw, "output_tokens_details"), "thinking_tokens")
        if thinking is not None:
            self._usage_figures["thinking_tokens"] = thinking
        figures = self._usage_figures
        if "input_tokens" not in figures and "output_tokens" not in figures:
            return
        cache_read = figures.get("cache_read_input_tokens")
        input_tokens = None
        if "input_tokens" in figures:
            input_tokens = figures["input_tokens"] + (cache_read or 0)
            input_tokens += figures.get("cache_creation_input_tokens") or 0
        output_tokens = figures.get("output_tokens")
        total_tokens = None
        if input_tokens is not None and output_tokens is not None:
            total_tokens = input_tokens + output_tokens
        usage = Usage(
            input_tokens, output_tokens, total_tokens, figures.get("thinking_tokens"), cache_read
        )
        if usage != self._usage_sent:
            self._usage_sent = usage
            out.append(usage)


def anthropic_deltas(events: Iterable[Any]) -> Iterator[Delta]:
    """Yield the deltas of a whole Anthropic Messages stream (feeds every event, then closes)."""
    adapter = AnthropicAdapter()
    for event in events:
        yield from adapter.feed(event)
    yield from adapter.close()
