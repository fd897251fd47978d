"""Fold unified deltas into the final assistant message, and render it for the next turn.

`Accumulator` takes deltas from any adapter and keeps the message so far; `message` is a frozen
`AssistantMessage` snapshot usable at any time. The result depends only on the deltas' content,
never on how the provider split the stream, so the same answer from OpenAI, Anthropic, the
Responses API, LiteLLM or a local server folds into the same message.

Rules:
- Tool calls are keyed by `index`, never by arrival order, so parallel calls whose fragments
  interleave stay apart. A `ToolCallStart` for an index that exists is not a new call: it fills
  in the id if there was none and replaces the name (adapters send the whole name each time).
  A `ToolCallDelta` for an index never started opens a call with no id and no name.
- A call without an id gets `call_<index>`; an id already used by another call of the same
  message gets `_<index>` appended. Both depend on the deltas only, never on how they were split.
- Arguments are parsed strictly (`json.loads`) from the raw text. Empty text means `{}` (tools
  without parameters; many servers send ""). Text that does not parse, or parses to something
  other than an object, leaves `arguments=None`, `valid=False`, the raw text in `raw_arguments`
  and the reason in `error` — never a repaired or salvaged value.
- Usage figures are running totals: a later `Usage` replaces the earlier figures (a figure it
  leaves out keeps its earlier value); they are never summed.
- The last `Finish` wins; "stop" with tool calls present reads "tool_calls". The first
  `ProviderError` is kept (later ones are usually consequences).
- Reasoning blocks: reasoning text opens a block, a signature closes it (signature fragments
  are joined), a redacted block stands alone. Their order is kept for the history.

This module knows the delta vocabulary and the two history formats it renders; it knows no
wire format and nothing of the engine.
"""

from __future__ import annotations

import json
import re
from dataclasses import fields
from typing import Any, Dict, Iterable, List, Optional, Tuple

from .._compat import frozen_slots
from .deltas import (
    Delta,
    Finish,
    ProviderError,
    ReasoningDelta,
    RedactedReasoning,
    RefusalDelta,
    SignatureDelta,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
)

__all__ = [
    "Accumulator",
    "AssistantMessage",
    "ToolCall",
    "ReasoningBlock",
    "INVALID_ARGUMENTS_KEY",
    "accumulate",
]

_LEADING_SPACE = re.compile(r"\s*")

#: In `AssistantMessage.to_anthropic()`, the `input` of a call whose arguments are invalid is
#: `{INVALID_ARGUMENTS_KEY: raw_text}`: Anthropic requires an object there, and the next turn's
#: `tool_result` needs the `tool_use` to answer, but the raw text must not pass for arguments.
INVALID_ARGUMENTS_KEY = "_invalid_arguments"


@frozen_slots
class ToolCall:
    """One tool call of the final message.

    `arguments` is the parsed JSON object, or None when `valid` is False; `raw_arguments` is the
    text exactly as streamed; `error` says why the arguments are invalid.
    """

    index: int
    id: str
    name: str
    arguments: Optional[Dict[str, Any]]
    raw_arguments: str
    valid: bool
    error: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        return {
            "index": self.index,
            "id": self.id,
            "name": self.name,
            "arguments": self.arguments,
            "raw_arguments": self.raw_arguments,
            "valid": self.valid,
            "error": self.error,
        }


@frozen_slots
class ReasoningBlock:
    """A block of reasoning kept for history: thinking `text` with its `signature`, or an
    opaque `redacted_data` block (then `text` is empty)."""

    text: str = ""
    signature: Optional[str] = None
    redacted_data: Optional[str] = None

    @property
    def redacted(self) -> bool:
        return self.redacted_data is not None

    def to_dict(self) -> Dict[str, Any]:
        return {"text": self.text, "signature": self.signature, "redacted_data": self.redacted_data}


@frozen_slots
class AssistantMessage:
    """The assistant's message as folded so far (or in full once the stream has ended)."""

    content: str = ""
    reasoning: str = ""
    reasoning_blocks: Tuple[ReasoningBlock, ...] = ()
    tool_calls: Tuple[ToolCall, ...] = ()
    usage: Optional[Usage] = None
    finish_reason: Optional[str] = None
    refusal: Optional[str] = None
    error: Optional[ProviderError] = None

    def to_openai(self, *, include_reasoning: bool = False) -> Dict[str, Any]:
        """The message as a Chat Completions assistant message for the next request.

        `content` is None when there is no text but there are tool calls (as the API expects).
        Tool call arguments are the raw text as streamed — `"{}"` for a call without any — so
        an invalid call shows the model exactly what it sent. `include_reasoning=True` adds
        `reasoning_content` for local servers that want it back (DeepSeek's API rejects it).
        """
        message: Dict[str, Any] = {
            "role": "assistant",
            "content": self.content if self.content or not self.tool_calls else None,
        }
        if self.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {
                        "name": call.name,
                        "arguments": call.raw_arguments if call.raw_arguments.strip() else "{}",
                    },
                }
                for call in self.tool_calls
            ]
        if self.refusal is not None:
            message["refusal"] = self.refusal
        if include_reasoning and self.reasoning:
            message["reasoning_content"] = self.reasoning
        return message

    def to_anthropic(self) -> Dict[str, Any]:
        """The message as an Anthropic assistant message with content blocks.

        Blocks, in order: the reasoning blocks that carry a signature (`thinking`) or are
        redacted (`redacted_thinking`) — reasoning without a signature (other providers,
        `<think>` tags) is left out because Anthropic rejects unsigned thinking — then the text,
        then one `tool_use` per call. An invalid call's `input` is
        `{INVALID_ARGUMENTS_KEY: raw_text}` so the call can still be answered.
        """
        content: List[Dict[str, Any]] = []
        for block in self.reasoning_blocks:
            if block.redacted_data is not None:
                content.append({"type": "redacted_thinking", "data": block.redacted_data})
            elif block.signature:
                content.append(
                    {"type": "thinking", "thinking": block.text, "signature": block.signature}
                )
        if self.content:
            content.append({"type": "text", "text": self.content})
        for call in self.tool_calls:
            tool_input = (
                call.arguments if call.valid else {INVALID_ARGUMENTS_KEY: call.raw_arguments}
            )
            content.append(
                {"type": "tool_use", "id": call.id, "name": call.name, "input": tool_input}
            )
        return {"role": "assistant", "content": content}

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-ready dict of every field."""
        return {
            "content": self.content,
            "reasoning": self.reasoning,
            "reasoning_blocks": [block.to_dict() for block in self.reasoning_blocks],
            "tool_calls": [call.to_dict() for call in self.tool_calls],
            "usage": None if self.usage is None else self.usage.to_dict(),
            "finish_reason": self.finish_reason,
            "refusal": self.refusal,
            "error": None if self.error is None else self.error.to_dict(),
        }


class _CallParts:
    __slots__ = ("id", "name", "parts", "ended")

    def __init__(self) -> None:
        self.id: Optional[str] = None
        self.name = ""
        self.parts: List[str] = []
        self.ended = False


class _BlockParts:
    __slots__ = ("text", "signature", "redacted_data")

    def __init__(self, redacted_data: Optional[str] = None) -> None:
        self.text: List[str] = []
        self.signature: List[str] = []
        self.redacted_data = redacted_data


class Accumulator:
    """Folds deltas into an `AssistantMessage`.

    >>> accumulator = Accumulator()
    >>> accumulator.extend([TextDelta("Hel"), TextDelta("lo"), Finish("stop")])
    >>> accumulator.message.content, accumulator.message.finish_reason
    ('Hello', 'stop')
    """

    def __init__(self) -> None:
        self._content: List[str] = []
        self._reasoning: List[str] = []
        self._refusal: List[str] = []
        self._blocks: List[_BlockParts] = []
        self._calls: Dict[int, _CallParts] = {}
        self._usage: Optional[Usage] = None
        self._finish: Optional[Finish] = None
        self._error: Optional[ProviderError] = None
        self._snapshot: Optional[AssistantMessage] = None
        # Parsing is the costly part of a snapshot; a call's parse is kept while its text holds.
        self._parsed: Dict[int, Tuple[str, ToolCall]] = {}

    def add(self, delta: Delta) -> None:
        """Fold one delta in. Raises TypeError for an object that is not a delta."""
        self._snapshot = None
        kind = type(delta)
        if kind is TextDelta:
            self._content.append(delta.text)  # type: ignore[union-attr]
        elif kind is ReasoningDelta:
            self._add_reasoning(delta.text)  # type: ignore[union-attr]
        elif kind is ToolCallDelta:
            self._call(delta.index).parts.append(delta.arguments)  # type: ignore[union-attr]
        elif kind is ToolCallStart:
            self._start_call(delta)  # type: ignore[arg-type]
        elif kind is ToolCallEnd:
            if delta.index in self._calls:  # type: ignore[union-attr]
                self._calls[delta.index].ended = True  # type: ignore[union-attr]
        elif kind is SignatureDelta:
            self._add_signature(delta.signature)  # type: ignore[union-attr]
        elif kind is RedactedReasoning:
            self._blocks.append(_BlockParts(redacted_data=delta.data))  # type: ignore[union-attr]
        elif kind is Usage:
            self._usage = _merged_usage(self._usage, delta)  # type: ignore[arg-type]
        elif kind is Finish:
            self._finish = delta  # type: ignore[assignment]
        elif kind is RefusalDelta:
            self._refusal.append(delta.text)  # type: ignore[union-attr]
        elif kind is ProviderError:
            if self._error is None:
                self._error = delta  # type: ignore[assignment]
        else:
            raise TypeError(
                f"Accumulator.add expects a delta from pocketflow_stream.llm.deltas, "
                f"got {type(delta).__name__}; convert provider events with an adapter first"
            )

    def extend(self, deltas: Iterable[Delta]) -> None:
        """Fold every delta in, in order."""
        for delta in deltas:
            self.add(delta)

    @property
    def message(self) -> AssistantMessage:
        """A frozen snapshot of the message so far (cached until the next delta)."""
        if self._snapshot is None:
            self._snapshot = self._build()
        return self._snapshot

    # -- folding -----------------------------------------------------------------------------

    def _call(self, index: int) -> _CallParts:
        call = self._calls.get(index)
        if call is None:
            call = self._calls[index] = _CallParts()
        return call

    def _start_call(self, start: ToolCallStart) -> None:
        call = self._call(start.index)
        if start.id and call.id is None:
            call.id = start.id
        if start.name:
            call.name = start.name

    def _add_reasoning(self, text: str) -> None:
        self._reasoning.append(text)
        current = self._blocks[-1] if self._blocks else None
        if current is None or current.signature or current.redacted_data is not None:
            current = _BlockParts()
            self._blocks.append(current)
        current.text.append(text)

    def _add_signature(self, signature: str) -> None:
        current = self._blocks[-1] if self._blocks else None
        if current is None or current.redacted_data is not None:
            current = _BlockParts()  # a signed block whose thinking text was empty
            self._blocks.append(current)
        current.signature.append(signature)

    # -- the snapshot ------------------------------------------------------------------------

    def _build(self) -> AssistantMessage:
        tool_calls = self._tool_calls()
        finish_reason = None if self._finish is None else self._finish.reason
        if finish_reason == "stop" and tool_calls:
            finish_reason = "tool_calls"
        return AssistantMessage(
            content=_joined(self._content),
            reasoning=_joined(self._reasoning),
            reasoning_blocks=tuple(
                ReasoningBlock(
                    _joined(block.text),
                    _joined(block.signature) or None,
                    block.redacted_data,
                )
                for block in self._blocks
            ),
            tool_calls=tool_calls,
            usage=self._usage,
            finish_reason=finish_reason,
            refusal=_joined(self._refusal) if self._refusal else None,
            error=self._error,
        )

    def _tool_calls(self) -> Tuple[ToolCall, ...]:
        used_ids = set()
        calls = []
        for index in sorted(self._calls):
            parts = self._calls[index]
            raw = _joined(parts.parts)
            call_id = parts.id or f"call_{index}"
            if call_id in used_ids:
                call_id = f"{call_id}_{index}"
            used_ids.add(call_id)
            cached = self._parsed.get(index)
            if cached is not None and cached[0] == raw:
                arguments, valid, error = cached[1].arguments, cached[1].valid, cached[1].error
            else:
                arguments, valid, error = _parse_arguments(raw)
            call = ToolCall(index, call_id, parts.name, arguments, raw, valid, error)
            self._parsed[index] = (raw, call)
            calls.append(call)
        return tuple(calls)


def _joined(parts: List[str]) -> str:
    """Join `parts` and keep the result as the only part, so the next snapshot of a long
    stream joins two strings instead of every fragment again."""
    if len(parts) > 1:
        parts[:] = ["".join(parts)]
    return parts[0] if parts else ""


def _parse_arguments(raw: str) -> Tuple[Optional[Dict[str, Any]], bool, Optional[str]]:
    if not raw.strip():
        return {}, True, None
    first = raw[_LEADING_SPACE.match(raw).end()]  # type: ignore[union-attr]
    if first == "{" and not raw.rstrip().endswith("}"):
        # Saves parsing a call that is still streaming each time a snapshot is taken.
        return None, False, "arguments are not valid JSON: the object is not closed"
    try:
        value = json.loads(raw)
    except ValueError as exc:
        return None, False, f"arguments are not valid JSON: {exc}"
    if not isinstance(value, dict):
        return None, False, f"arguments must be a JSON object, got {type(value).__name__}"
    return value, True, None


def _merged_usage(earlier: Optional[Usage], later: Usage) -> Usage:
    if earlier is None:
        return later
    return Usage(
        *(
            getattr(earlier, field.name)
            if getattr(later, field.name) is None
            else getattr(later, field.name)
            for field in fields(Usage)
        )
    )


def accumulate(deltas: Iterable[Delta]) -> AssistantMessage:
    """Fold a whole delta stream and return the final message."""
    accumulator = Accumulator()
    accumulator.extend(deltas)
    return accumulator.message
