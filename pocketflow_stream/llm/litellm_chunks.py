"""LiteLLM streamed chunks -> unified deltas.

LiteLLM's `ModelResponseStream` objects (and its proxy's SSE chunks) are OpenAI-shaped, so this
is the OpenAI chat adapter plus one idea: LiteLLM carries Anthropic's thinking metadata in
`delta.thinking_blocks` — the block signature and redacted blocks, which the next turn's history
needs. The reasoning text itself comes in `reasoning_content` (the blocks repeat it, so it is
taken from the blocks only when `reasoning_content` is absent).

Also survived here, through the OpenAI adapter: the tool call `id` repeated on every chunk and
a trailing chunk restating the whole arguments (https://github.com/BerriAI/litellm/issues/20480),
and a chunk carrying several whole calls plus `finish_reason`
(https://github.com/google/adk-python/issues/7004).

This module imports nothing from litellm and knows nothing of the engine.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, List

from ._wire import field as _field
from .deltas import Delta, ReasoningDelta, RedactedReasoning, SignatureDelta
from .openai_chat import OpenAIChatAdapter

__all__ = ["LiteLLMAdapter", "litellm_deltas"]


class LiteLLMAdapter(OpenAIChatAdapter):
    """Stateful converter of one LiteLLM stream (`litellm.completion(..., stream=True)`).

    Accepts `ModelResponseStream` objects or their dict form; options as `OpenAIChatAdapter`.
    """

    def _reasoning(self, delta: Any) -> List[Delta]:
        out = list(super()._reasoning(delta))  # the base may return a shared empty list
        text_in_fields = bool(out)
        blocks = _field(delta, "thinking_blocks")
        if blocks is None:
            blocks = _field(_field(delta, "provider_specific_fields"), "thinking_blocks", ())
        for block in blocks:
            kind = _field(block, "type", "thinking")
            if kind == "redacted_thinking":
                data = _field(block, "data")
                if data:
                    out.append(RedactedReasoning(str(data)))
                continue
            text = _field(block, "thinking")
            if not text_in_fields and isinstance(text, str) and text:
                out.append(ReasoningDelta(text))
            signature = _field(block, "signature")
            if isinstance(signature, str) and signature:
                out.append(SignatureDelta(signature))
        return out


def litellm_deltas(chunks: Iterable[Any], **options: Any) -> Iterator[Delta]:
    """Yield the deltas of a whole LiteLLM stream (feeds every chunk, then closes)."""
    adapter = LiteLLMAdapter(**options)
    for chunk in chunks:
        yield from adapter.feed(chunk)
    yield from adapter.close()
