"""Accumulator: deltas -> the final assistant message, identical whatever the provider and
however the stream was split; rendered back as OpenAI and Anthropic history."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any, Callable, Dict, List

import pytest
from anthropic.types import (
    AssistantMessageParam,
    RedactedThinkingBlockParam,
    TextBlockParam,
    ThinkingBlockParam,
    ToolUseBlockParam,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.chat import (
    ChatCompletionAssistantMessageParam,
    ChatCompletionMessageFunctionToolCallParam,
)
from openai.types.chat.chat_completion_message_function_tool_call_param import Function
from pydantic import TypeAdapter

from pocketflow_stream.llm.accumulator import (
    INVALID_ARGUMENTS_KEY,
    Accumulator,
    AssistantMessage,
    ReasoningBlock,
    ToolCall,
    accumulate,
)
from pocketflow_stream.llm.anthropic_messages import anthropic_deltas
from pocketflow_stream.llm.deltas import (
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
from pocketflow_stream.llm.litellm_chunks import litellm_deltas
from pocketflow_stream.llm.openai_chat import openai_chat_deltas
from pocketflow_stream.llm.openai_responses import openai_responses_deltas

# -- one logical message, written in every provider's wire format ----------------------------

REASONING = "Compare the two cities."
CONTENT = "Checking both."
CALLS = [
    ("call_a", "get_weather", {"city": "Paris", "days": [1, 2]}),
    ("call_b", "get_time", {"tz": "Europe/Zürich", "quote": 'a "b" c'}),
]
RAW = [json.dumps(arguments, ensure_ascii=False) for _, _, arguments in CALLS]
EXPECTED_USAGE = Usage(
    input_tokens=12, output_tokens=30, total_tokens=42, reasoning_tokens=10, cached_tokens=4
)

Split = Callable[[str], List[str]]


def whole(text: str) -> List[str]:
    return [text]


def openai_chat_stream(
    split: Split, reasoning_field: str = "reasoning_content"
) -> List[Dict[str, Any]]:
    def chunk(delta=None, finish=None, **top):
        return {"choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}], **top}

    stream = [chunk({reasoning_field: p}) for p in split(REASONING)]
    stream += [chunk({"content": p}) for p in split(CONTENT)]
    for index, (call_id, name, _) in enumerate(CALLS):
        head = {
            "index": index,
            "id": call_id,
            "type": "function",
            "function": {"name": name, "arguments": ""},
        }
        stream.append(chunk({"tool_calls": [head]}))
        stream += [
            chunk({"tool_calls": [{"index": index, "function": {"arguments": p}}]})
            for p in split(RAW[index])
        ]
    stream.append(chunk(finish="tool_calls"))
    usage = {
        "prompt_tokens": 12,
        "completion_tokens": 30,
        "total_tokens": 42,
        "prompt_tokens_details": {"cached_tokens": 4},
        "completion_tokens_details": {"reasoning_tokens": 10},
    }
    stream.append({"choices": [], "usage": usage})
    return stream


def think_tag_stream(split: Split) -> List[Dict[str, Any]]:
    stream = openai_chat_stream(split)
    text = f"<think>\n{REASONING}\n</think>\n\n{CONTENT}"
    inline = [{"choices": [{"index": 0, "delta": {"content": p}}]} for p in split(text)]
    without_separate_text = [c for c in stream if not _carries_text(c)]
    return inline + without_separate_text


def _carries_text(chunk: Dict[str, Any]) -> bool:
    delta = chunk["choices"][0]["delta"] if chunk["choices"] else {}
    return "content" in delta or "reasoning_content" in delta


def responses_stream(split: Split) -> List[Dict[str, Any]]:
    stream: List[Dict[str, Any]] = [
        {
            "type": "response.reasoning_summary_text.delta",
            "item_id": "rs",
            "summary_index": 0,
            "delta": p,
        }
        for p in split(REASONING)
    ]
    stream += [
        {"type": "response.output_text.delta", "item_id": "msg", "content_index": 0, "delta": p}
        for p in split(CONTENT)
    ]
    for index, (call_id, name, _) in enumerate(CALLS):
        item = {
            "type": "function_call",
            "id": f"fc_{index}",
            "call_id": call_id,
            "name": name,
            "arguments": "",
        }
        stream.append(
            {"type": "response.output_item.added", "output_index": index + 2, "item": item}
        )
        stream += [
            {
                "type": "response.function_call_arguments.delta",
                "item_id": f"fc_{index}",
                "output_index": index + 2,
                "delta": p,
            }
            for p in split(RAW[index])
        ]
        done = dict(item, arguments=RAW[index], status="completed")
        stream.append(
            {"type": "response.output_item.done", "output_index": index + 2, "item": done}
        )
    usage = {
        "input_tokens": 12,
        "input_tokens_details": {"cached_tokens": 4},
        "output_tokens": 30,
        "output_tokens_details": {"reasoning_tokens": 10},
        "total_tokens": 42,
    }
    stream.append(
        {"type": "response.completed", "response": {"status": "completed", "usage": usage}}
    )
    return stream


def anthropic_stream(split: Split) -> List[Dict[str, Any]]:
    usage = {
        "input_tokens": 8,
        "cache_read_input_tokens": 4,
        "cache_creation_input_tokens": 0,
        "output_tokens": 1,
    }
    stream: List[Dict[str, Any]] = [{"type": "message_start", "message": {"usage": usage}}]
    stream.append(
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "thinking", "thinking": ""},
        }
    )
    stream += [
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "thinking_delta", "thinking": p},
        }
        for p in split(REASONING)
    ]
    stream += [
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "signature_delta", "signature": "sig=="},
        },
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
    ]
    stream += [
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": p}}
        for p in split(CONTENT)
    ]
    stream.append({"type": "content_block_stop", "index": 1})
    for index, (call_id, name, _) in enumerate(CALLS):
        block = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
        stream.append({"type": "content_block_start", "index": index + 2, "content_block": block})
        stream += [
            {
                "type": "content_block_delta",
                "index": index + 2,
                "delta": {"type": "input_json_delta", "partial_json": p},
            }
            for p in split(RAW[index])
        ]
        stream.append({"type": "content_block_stop", "index": index + 2})
    stream.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use"},
            "usage": {"output_tokens": 30, "output_tokens_details": {"thinking_tokens": 10}},
        }
    )
    stream.append({"type": "message_stop"})
    return stream


def _as_object(value: Any) -> Any:
    if isinstance(value, dict):
        return SimpleNamespace(**{k: _as_object(v) for k, v in value.items()})
    if isinstance(value, list):
        return [_as_object(v) for v in value]
    return value


PROVIDERS = {
    "openai_chat": lambda split: openai_chat_deltas(openai_chat_stream(split)),
    "openai_chat_vllm_reasoning": lambda split: openai_chat_deltas(
        openai_chat_stream(split, "reasoning")
    ),
    "think_tags": lambda split: openai_chat_deltas(think_tag_stream(split), think_tags=True),
    "litellm": lambda split: litellm_deltas(_as_object(c) for c in openai_chat_stream(split)),
    "openai_responses": lambda split: openai_responses_deltas(responses_stream(split)),
    "anthropic": lambda split: anthropic_deltas(anthropic_stream(split)),
}


def common_fields(message: AssistantMessage):
    """Everything a provider-neutral message has (reasoning blocks carry provider signatures)."""
    return (
        message.content,
        message.reasoning,
        message.tool_calls,
        message.usage,
        message.finish_reason,
        message.refusal,
        message.error,
    )


def test_every_provider_folds_into_the_same_message():
    messages = {name: accumulate(deltas(whole)) for name, deltas in PROVIDERS.items()}
    reference = messages["openai_chat"]
    assert reference.content == CONTENT
    assert reference.reasoning == REASONING
    assert [
        (c.id, c.name, c.arguments, c.raw_arguments, c.valid) for c in reference.tool_calls
    ] == [
        (call_id, name, arguments, RAW[i], True)
        for i, (call_id, name, arguments) in enumerate(CALLS)
    ]
    assert reference.usage == EXPECTED_USAGE
    assert reference.finish_reason == "tool_calls"
    for name, message in messages.items():
        assert common_fields(message) == common_fields(reference), name
    assert [(b.text, b.signature) for b in messages["anthropic"].reasoning_blocks] == [
        (REASONING, "sig==")
    ]


@st.composite
def splitter(draw) -> Split:
    """A way to cut any text into fragments, down to one character each."""
    one_char = draw(st.booleans())
    seed = draw(st.integers(0, 2**32 - 1))

    def split(text: str) -> List[str]:
        if one_char or len(text) < 2:
            return list(text)
        rng = __import__("random").Random(f"{seed}:{text}")
        cuts = sorted(rng.sample(range(1, len(text)), rng.randint(0, len(text) - 1)))
        return [text[a:b] for a, b in zip([0] + cuts, cuts + [len(text)])]

    return split


@settings(max_examples=60, deadline=None)
@given(splitter(), st.sampled_from(sorted(PROVIDERS)))
def test_any_split_of_any_provider_gives_the_same_message(split, provider):
    reference = accumulate(PROVIDERS["openai_chat"](whole))
    message = accumulate(PROVIDERS[provider](split))
    assert common_fields(message) == common_fields(reference)


# -- tool calls --------------------------------------------------------------------------------


def test_interleaved_parallel_calls_are_kept_apart():
    deltas = [
        ToolCallStart(1, "call_b", "g"),
        ToolCallStart(0, "call_a", "f"),
        ToolCallDelta(1, '{"y": '),
        ToolCallDelta(0, '{"x": '),
        ToolCallDelta(0, "1}"),
        ToolCallDelta(1, "2}"),
        ToolCallEnd(1),
        ToolCallEnd(0),
    ]
    calls = accumulate(deltas).tool_calls
    assert [(c.index, c.id, c.name, c.arguments) for c in calls] == [
        (0, "call_a", "f", {"x": 1}),
        (1, "call_b", "g", {"y": 2}),
    ]


@pytest.mark.parametrize(
    "raw, reason",
    [
        ('{"path": "a.py", "content": "trunc', "not valid JSON"),
        ('{"a": 1}{"a": 1}', "not valid JSON"),
        ("[1, 2]", "must be a JSON object, got list"),
        ('"just a string"', "must be a JSON object, got str"),
    ],
)
def test_invalid_arguments_are_kept_raw_and_marked(raw, reason):
    message = accumulate(
        [ToolCallStart(0, "call_1", "write"), ToolCallDelta(0, raw), ToolCallEnd(0)]
    )
    (call,) = message.tool_calls
    assert (call.valid, call.arguments, call.raw_arguments) == (False, None, raw)
    assert reason in call.error
    assert message.to_openai()["tool_calls"][0]["function"]["arguments"] == raw
    assert message.to_anthropic()["content"] == [
        {"type": "tool_use", "id": "call_1", "name": "write", "input": {INVALID_ARGUMENTS_KEY: raw}}
    ]


def test_empty_arguments_mean_no_parameters():
    for deltas in (
        [ToolCallStart(0, "c", "now")],
        [ToolCallStart(0, "c", "now"), ToolCallDelta(0, "  ")],
    ):
        message = accumulate(deltas)
        (call,) = message.tool_calls
        assert (call.arguments, call.valid, call.error) == ({}, True, None)
        assert message.to_openai()["tool_calls"][0]["function"]["arguments"] == "{}"
        assert message.to_anthropic()["content"][0]["input"] == {}


def test_repeated_start_is_not_a_new_call_and_completes_the_head():
    deltas = [
        ToolCallStart(0, None, ""),
        ToolCallDelta(0, '{"q": '),
        ToolCallStart(0, "call_1", "search"),
        ToolCallStart(0, "call_other", "search"),  # an id, once known, is kept
        ToolCallDelta(0, "1}"),
    ]
    (call,) = accumulate(deltas).tool_calls
    assert (call.id, call.name, call.arguments) == ("call_1", "search", {"q": 1})


def test_missing_and_duplicate_ids_get_stable_ids():
    deltas = [
        ToolCallDelta(0, "{}"),  # never started: no id, no name
        ToolCallStart(1, "dup", "f"),
        ToolCallStart(2, "dup", "g"),
        ToolCallStart(3, "call_0", "h"),
    ]
    accumulator = Accumulator()
    accumulator.extend(deltas[:1])
    assert accumulator.message.tool_calls[0].id == "call_0"
    accumulator.extend(deltas[1:])
    assert [c.id for c in accumulator.message.tool_calls] == ["call_0", "dup", "dup_2", "call_0_3"]


def test_stop_with_tool_calls_reads_tool_calls():
    message = accumulate([ToolCallStart(0, "c", "f"), Finish("stop", "stop")])
    assert message.finish_reason == "tool_calls"
    assert accumulate([TextDelta("x"), Finish("stop", "end_turn")]).finish_reason == "stop"


def test_the_last_finish_wins_and_the_first_error_is_kept():
    message = accumulate(
        [
            Finish("stop"),
            Finish("length"),
            ProviderError("first", "a"),
            ProviderError("second", "b"),
        ]
    )
    assert message.finish_reason == "length"
    assert message.error == ProviderError("first", "a")


# -- usage ------------------------------------------------------------------------------------


def test_usage_is_replaced_never_summed():
    message = accumulate([Usage(10, 1, 11), Usage(10, 5, 15), Usage(10, 9, 19)])
    assert message.usage == Usage(10, 9, 19)


def test_a_usage_that_leaves_a_figure_out_keeps_the_earlier_one():
    message = accumulate([Usage(input_tokens=10, cached_tokens=2), Usage(output_tokens=7)])
    assert message.usage == Usage(10, 7, None, None, 2)


# -- reasoning blocks -------------------------------------------------------------------------


def test_reasoning_blocks_keep_their_order_and_signatures():
    deltas = [
        ReasoningDelta("first "),
        ReasoningDelta("thought"),
        SignatureDelta("sig-"),
        SignatureDelta("one"),
        RedactedReasoning("opaque"),
        ReasoningDelta("second"),
        SignatureDelta("sig-two"),
        SignatureDelta(""),
        TextDelta("Answer"),
    ]
    message = accumulate(deltas)
    assert message.reasoning == "first thoughtsecond"
    assert message.reasoning_blocks == (
        ReasoningBlock("first thought", "sig-one"),
        ReasoningBlock(redacted_data="opaque"),
        ReasoningBlock("second", "sig-two"),
    )
    assert message.reasoning_blocks[1].redacted
    assert message.to_anthropic()["content"] == [
        {"type": "thinking", "thinking": "first thought", "signature": "sig-one"},
        {"type": "redacted_thinking", "data": "opaque"},
        {"type": "thinking", "thinking": "second", "signature": "sig-two"},
        {"type": "text", "text": "Answer"},
    ]


def test_signature_without_thinking_text_is_still_a_block():
    message = accumulate([SignatureDelta("s"), TextDelta("x")])
    assert message.reasoning_blocks == (ReasoningBlock("", "s"),)


def test_unsigned_reasoning_is_not_sent_to_anthropic():
    message = accumulate([ReasoningDelta("from <think> tags"), TextDelta("Answer")])
    assert message.to_anthropic()["content"] == [{"type": "text", "text": "Answer"}]


# -- rendering --------------------------------------------------------------------------------


def _check_keys(value: Dict[str, Any], typed_dict: Any) -> None:
    allowed = typed_dict.__required_keys__ | typed_dict.__optional_keys__
    assert set(value) <= allowed, f"{set(value) - allowed} not in {typed_dict.__name__}"
    assert typed_dict.__required_keys__ <= set(value)


FULL = accumulate(anthropic_deltas(anthropic_stream(whole)))


def test_to_openai_matches_the_sdk_param_type():
    message = FULL.to_openai()
    assert message == {
        "role": "assistant",
        "content": CONTENT,
        "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": RAW[i]}}
            for i, (call_id, name, _) in enumerate(CALLS)
        ],
    }
    validated = TypeAdapter(ChatCompletionAssistantMessageParam).validate_python(message)
    assert len(list(validated["tool_calls"])) == 2  # forces validation of each call
    _check_keys(message, ChatCompletionAssistantMessageParam)
    for call in message["tool_calls"]:
        _check_keys(call, ChatCompletionMessageFunctionToolCallParam)
        _check_keys(call["function"], Function)
    json.dumps(message)


def test_to_openai_without_text_refusal_and_reasoning():
    only_calls = accumulate([ToolCallStart(0, "c", "f"), ToolCallDelta(0, "{}")]).to_openai()
    assert only_calls["content"] is None
    refused = accumulate([RefusalDelta("I can't "), RefusalDelta("help.")]).to_openai()
    assert refused == {"role": "assistant", "content": "", "refusal": "I can't help."}
    _check_keys(refused, ChatCompletionAssistantMessageParam)
    with_reasoning = FULL.to_openai(include_reasoning=True)
    assert with_reasoning["reasoning_content"] == REASONING
    assert "reasoning_content" not in FULL.to_openai()


def test_to_anthropic_matches_the_sdk_param_type():
    message = FULL.to_anthropic()
    assert message == {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": REASONING, "signature": "sig=="},
            {"type": "text", "text": CONTENT},
        ]
        + [
            {"type": "tool_use", "id": call_id, "name": name, "input": arguments}
            for call_id, name, arguments in CALLS
        ],
    }
    _check_keys(message, AssistantMessageParam)  # MessageParam's assistant member
    kinds = {
        "thinking": ThinkingBlockParam,
        "redacted_thinking": RedactedThinkingBlockParam,
        "text": TextBlockParam,
        "tool_use": ToolUseBlockParam,
    }
    for block in message["content"]:
        # block by block: pydantic cannot validate the message's lazy Iterable of unions here
        assert TypeAdapter(kinds[block["type"]]).validate_python(block) == block
        _check_keys(block, kinds[block["type"]])
    json.dumps(message)


def test_to_dict_is_json_ready_and_complete():
    message = accumulate(
        list(anthropic_deltas(anthropic_stream(whole))) + [ProviderError("late", "x")]
    )
    data = json.loads(json.dumps(message.to_dict()))
    assert data["content"] == CONTENT
    assert data["tool_calls"][1]["arguments"] == CALLS[1][2]
    assert data["reasoning_blocks"] == [
        {"text": REASONING, "signature": "sig==", "redacted_data": None}
    ]
    assert data["usage"] == EXPECTED_USAGE.to_dict()
    assert data["error"] == {"type": "error", "message": "late", "code": "x"}
    assert data["finish_reason"] == "tool_calls"


# -- the accumulator itself -------------------------------------------------------------------


def test_snapshot_is_usable_mid_stream_and_frozen():
    accumulator = Accumulator()
    accumulator.add(TextDelta("Hel"))
    accumulator.add(ToolCallStart(0, "c", "f"))
    accumulator.add(ToolCallDelta(0, '{"a": '))
    early = accumulator.message
    assert early.content == "Hel"
    assert (early.tool_calls[0].valid, early.tool_calls[0].raw_arguments) == (False, '{"a": ')
    assert accumulator.message is early  # cached until the next delta
    accumulator.extend([TextDelta("lo"), ToolCallDelta(0, "1}")])
    later = accumulator.message
    assert (later.content, later.tool_calls[0].arguments) == ("Hello", {"a": 1})
    assert early.content == "Hel"
    with pytest.raises(AttributeError):
        later.content = "x"  # type: ignore[misc]


def test_deltas_rebuilt_from_dicts_fold_the_same():
    deltas = list(PROVIDERS["anthropic"](whole))
    rebuilt = [delta_from_dict(json.loads(json.dumps(d.to_dict()))) for d in deltas]
    assert accumulate(rebuilt) == accumulate(deltas)


def test_not_a_delta_is_refused_with_a_clear_message():
    with pytest.raises(TypeError, match="expects a delta.*adapter"):
        Accumulator().add({"type": "text", "text": "x"})  # type: ignore[arg-type]


def test_tool_call_to_dict():
    call = ToolCall(0, "c", "f", {"a": 1}, '{"a": 1}', True)
    assert call.to_dict() == {
        "index": 0,
        "id": "c",
        "name": "f",
        "arguments": {"a": 1},
        "raw_arguments": '{"a": 1}',
        "valid": True,
        "error": None,
    }
