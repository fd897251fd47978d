"""LiteLLMAdapter: LiteLLM's OpenAI-shaped streamed chunks -> deltas.

litellm itself is not a test dependency: `ModelResponseStream` is an attribute object whose
optional fields may be absent, which `SimpleNamespace` reproduces faithfully enough.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any, Dict, List, Optional

from pocketflow_stream.llm.accumulator import accumulate
from pocketflow_stream.llm.deltas import (
    Finish,
    ReasoningDelta,
    RedactedReasoning,
    SignatureDelta,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    Usage,
)
from pocketflow_stream.llm.litellm_chunks import LiteLLMAdapter, litellm_deltas
from pocketflow_stream.llm.openai_chat import OpenAIChatAdapter


def as_object(value: Any) -> Any:
    """Dicts to attribute objects, recursively (keys whose value is None are left out, as
    LiteLLM deletes unset optional fields)."""
    if isinstance(value, dict):
        return SimpleNamespace(**{k: as_object(v) for k, v in value.items() if v is not None})
    if isinstance(value, list):
        return [as_object(v) for v in value]
    return value


def chunk(
    delta: Optional[Dict[str, Any]] = None, finish: Optional[str] = None, **top: Any
) -> Dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "model": "anthropic/claude-test",
        "choices": [
            {"index": 0, "delta": {"role": "assistant", **(delta or {})}, "finish_reason": finish}
        ],
        **top,
    }


def tool(
    index: int, arguments: str, id: Optional[str] = None, name: Optional[str] = None
) -> Dict[str, Any]:
    return {
        "index": index,
        "id": id,
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }


# Anthropic thinking through LiteLLM: reasoning_content carries the text, thinking_blocks repeat
# it per delta and carry the signature at the end.
# https://docs.litellm.ai/docs/reasoning_content, https://github.com/BerriAI/litellm/issues/29428
THINKING_STREAM = [
    chunk(
        {
            "reasoning_content": "Step 1. ",
            "thinking_blocks": [{"type": "thinking", "thinking": "Step 1. ", "signature": ""}],
        }
    ),
    chunk(
        {
            "reasoning_content": "Done.",
            "thinking_blocks": [{"type": "thinking", "thinking": "Done.", "signature": ""}],
        }
    ),
    chunk({"thinking_blocks": [{"type": "thinking", "thinking": "", "signature": "EqoBCkgIARAB"}]}),
    chunk({"content": "Paris."}),
    chunk(finish="stop", usage={"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}),
]


def test_thinking_blocks_give_the_signature_once_and_the_text_once():
    expected = [
        ReasoningDelta("Step 1. "),
        ReasoningDelta("Done."),
        SignatureDelta("EqoBCkgIARAB"),
        TextDelta("Paris."),
        Finish("stop", "stop"),
        Usage(10, 5, 15),
    ]
    assert list(litellm_deltas(THINKING_STREAM)) == expected
    assert list(litellm_deltas(as_object(c) for c in THINKING_STREAM)) == expected
    message = accumulate(litellm_deltas(THINKING_STREAM))
    assert [(b.text, b.signature) for b in message.reasoning_blocks] == [
        ("Step 1. Done.", "EqoBCkgIARAB")
    ]
    assert message.to_anthropic()["content"][0] == {
        "type": "thinking",
        "thinking": "Step 1. Done.",
        "signature": "EqoBCkgIARAB",
    }


def test_plain_openai_adapter_ignores_thinking_blocks():
    deltas = list(OpenAIChatAdapter().feed(THINKING_STREAM[2]))
    assert deltas == []


def test_thinking_text_from_blocks_when_reasoning_content_is_absent():
    stream = [
        chunk({"thinking_blocks": [{"type": "thinking", "thinking": "hm", "signature": "s"}]})
    ]
    assert list(litellm_deltas(stream)) == [ReasoningDelta("hm"), SignatureDelta("s")]


def test_redacted_thinking_block():
    # https://github.com/BerriAI/litellm/issues/29428 (mentions #10328, redacted_thinking streamed)
    stream = [chunk({"thinking_blocks": [{"type": "redacted_thinking", "data": "EmwKAhgB"}]})]
    assert list(litellm_deltas(stream)) == [RedactedReasoning("EmwKAhgB")]


def test_thinking_blocks_under_provider_specific_fields():
    stream = [
        chunk(
            {
                "provider_specific_fields": {
                    "thinking_blocks": [{"type": "thinking", "signature": "s"}]
                }
            }
        )
    ]
    assert list(litellm_deltas(stream)) == [SignatureDelta("s")]


def test_id_on_every_chunk_and_a_trailing_summary_chunk():
    # https://github.com/BerriAI/litellm/issues/20480
    arguments = '{"query": "hello"}'
    stream = [
        chunk({"tool_calls": [tool(0, '{"qu', "call_abc", "search")]}),
        chunk({"tool_calls": [tool(0, 'ery":', "call_abc")]}),
        chunk({"tool_calls": [tool(0, ' "hello"}', "call_abc")]}),
        chunk({"tool_calls": [tool(0, json.dumps(arguments), "call_abc", "search")]}),
        chunk(finish="tool_calls"),
    ]
    for chunks in (stream, [as_object(c) for c in stream]):
        deltas = list(litellm_deltas(chunks))
        assert [d for d in deltas if isinstance(d, ToolCallStart)] == [
            ToolCallStart(0, "call_abc", "search")
        ]
        assert "".join(d.arguments for d in deltas if isinstance(d, ToolCallDelta)) == arguments
        (call,) = accumulate(deltas).tool_calls
        assert (call.id, call.name, call.arguments) == ("call_abc", "search", {"query": "hello"})


def test_whole_calls_and_finish_in_one_chunk():
    # https://github.com/google/adk-python/issues/7004
    calls = [tool(i, json.dumps({"n": i}), f"call_{i}", f"f{i}") for i in range(3)]
    stream = [chunk({"tool_calls": calls}, finish="tool_calls")]
    message = accumulate(litellm_deltas(as_object(c) for c in stream))
    assert [(c.id, c.name, c.arguments) for c in message.tool_calls] == [
        (f"call_{i}", f"f{i}", {"n": i}) for i in range(3)
    ]
    assert message.finish_reason == "tool_calls"


def test_options_reach_the_openai_adapter():
    stream: List[Dict[str, Any]] = [chunk({"content": "<think>a</think>b"})]
    assert list(litellm_deltas(stream, think_tags=True)) == [ReasoningDelta("a"), TextDelta("b")]
    assert isinstance(LiteLLMAdapter(), OpenAIChatAdapter)


def test_rotating_tool_call_ids_without_index_stay_one_call_on_objects_and_dicts():
    """LiteLLM shares the Chat Completions adapter's keying: a fresh `id` per fragment without
    an `index` continues the call under way (issue 10 §3), as objects and as dicts."""
    fragments = [
        {"id": "call_x1", "type": "function", "function": {"name": "f", "arguments": '{"q": '}},
        {"id": "call_x2", "type": "function", "function": {"arguments": '"paris"}'}},
    ]
    chunks = [chunk({"tool_calls": [fragment]}) for fragment in fragments]
    chunks.append(chunk(finish="tool_calls"))

    for stream in (chunks, [as_object(c) for c in chunks]):
        message = accumulate(litellm_deltas(stream))
        assert [(c.id, c.name, c.arguments) for c in message.tool_calls] == [
            ("call_x1", "f", {"q": "paris"})
        ]
