"""pocketflow_stream.llm — provider-neutral LLM streaming: deltas, adapters, partial JSON,
the accumulator, model clients and the scripted model. Built on the core; the core never
imports this package."""

from .deltas import (
    FINISH_REASONS,
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
    delta_from_dict,
)

__all__ = [
    "FINISH_REASONS",
    "Delta",
    "Finish",
    "ProviderError",
    "ReasoningDelta",
    "RedactedReasoning",
    "RefusalDelta",
    "SignatureDelta",
    "TextDelta",
    "ToolCallDelta",
    "ToolCallEnd",
    "ToolCallStart",
    "Usage",
    "delta_from_dict",
]
