"""The unified delta vocabulary: what every provider adapter produces and the accumulator folds.

A closed set of small, frozen, slotted classes. Each has a `type` tag and a JSON-ready
`to_dict()`, so deltas cross process boundaries (SSE, websockets, queues) unchanged, exactly
like the engine's chunks. This module knows no provider format and nothing of the engine.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Callable, ClassVar, Dict, Optional, Union

from .._compat import frozen_slots

__all__ = [
    "TextDelta",
    "ReasoningDelta",
    "SignatureDelta",
    "RedactedReasoning",
    "ToolCallStart",
    "ToolCallDelta",
    "ToolCallEnd",
    "Usage",
    "Finish",
    "RefusalDelta",
    "ProviderError",
    "Delta",
    "FINISH_REASONS",
    "delta_from_dict",
]

#: The normalised finish reasons. Adapters map provider words onto these and keep the
#: provider's own word in `Finish.raw`.
FINISH_REASONS = ("stop", "length", "tool_calls", "content_filter")


class _DeltaBase:
    __slots__ = ()
    type: ClassVar[str]

    def to_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"type": self.type}
        for field in fields(self):  # type: ignore[arg-type]
            out[field.name] = getattr(self, field.name)
        return out


@frozen_slots
class TextDelta(_DeltaBase):
    """A piece of the answer text."""

    type: ClassVar[str] = "text"
    text: str


@frozen_slots
class ReasoningDelta(_DeltaBase):
    """A piece of the model's reasoning (Anthropic thinking, `reasoning_content`, `<think>`,
    Responses reasoning summaries). Kept apart from the answer."""

    type: ClassVar[str] = "reasoning"
    text: str


@frozen_slots
class SignatureDelta(_DeltaBase):
    """The signature that closes a reasoning block (Anthropic `signature_delta`). Must be sent
    back with the reasoning in the next turn's history."""

    type: ClassVar[str] = "signature"
    signature: str


@frozen_slots
class RedactedReasoning(_DeltaBase):
    """An opaque, encrypted reasoning block (Anthropic `redacted_thinking`), kept for history."""

    type: ClassVar[str] = "redacted_reasoning"
    data: str


@frozen_slots
class ToolCallStart(_DeltaBase):
    """A tool call begins. `index` tells parallel calls apart; `id` may be None when the
    provider sends none (some local servers) — the accumulator then makes one up."""

    type: ClassVar[str] = "tool_call_start"
    index: int
    id: Optional[str]
    name: str


@frozen_slots
class ToolCallDelta(_DeltaBase):
    """A fragment of a tool call's JSON arguments, exactly as it arrived."""

    type: ClassVar[str] = "tool_call_delta"
    index: int
    arguments: str


@frozen_slots
class ToolCallEnd(_DeltaBase):
    """The tool call at `index` has received all its arguments."""

    type: ClassVar[str] = "tool_call_end"
    index: int


@frozen_slots
class Usage(_DeltaBase):
    """Token usage so far. Figures are running totals: a later Usage replaces an earlier one."""

    type: ClassVar[str] = "usage"
    input_tokens: Optional[int] = None
    output_tokens: Optional[int] = None
    total_tokens: Optional[int] = None
    reasoning_tokens: Optional[int] = None
    cached_tokens: Optional[int] = None


@frozen_slots
class Finish(_DeltaBase):
    """The model stopped. `reason` is one of FINISH_REASONS; `raw` is the provider's word."""

    type: ClassVar[str] = "finish"
    reason: str
    raw: Optional[str] = None


@frozen_slots
class RefusalDelta(_DeltaBase):
    """A piece of a refusal message (OpenAI `refusal`)."""

    type: ClassVar[str] = "refusal"
    text: str


@frozen_slots
class ProviderError(_DeltaBase):
    """The provider reported an error inside the stream (an `error` event)."""

    type: ClassVar[str] = "error"
    message: str
    code: Optional[str] = None


Delta = Union[
    TextDelta,
    ReasoningDelta,
    SignatureDelta,
    RedactedReasoning,
    ToolCallStart,
    ToolCallDelta,
    ToolCallEnd,
    Usage,
    Finish,
    RefusalDelta,
    ProviderError,
]

_BY_TYPE: Dict[str, Callable[..., Delta]] = {
    cls.type: cls
    for cls in (
        TextDelta,
        ReasoningDelta,
        SignatureDelta,
        RedactedReasoning,
        ToolCallStart,
        ToolCallDelta,
        ToolCallEnd,
        Usage,
        Finish,
        RefusalDelta,
        ProviderError,
    )
}


def delta_from_dict(data: Dict[str, Any]) -> Delta:
    """Rebuild a delta from its `to_dict()` form (for example on the far side of a websocket).

    Raises ValueError for an unknown `type`.
    """
    fields = dict(data)
    kind = fields.pop("type", None)
    cls = _BY_TYPE.get(kind)
    if cls is None:
        raise ValueError(f"unknown delta type {kind!r}; expected one of {sorted(_BY_TYPE)}")
    return cls(**fields)
