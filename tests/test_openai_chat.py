"""OpenAIChatAdapter: Chat Completions chunks (SDK objects or wire dicts) -> deltas.

The "server bends the format" cases each cite the public thread that shows the behaviour.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletionChunk

from pocketflow_stream.llm.accumulator import accumulate
from pocketflow_stream.llm.deltas import (
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
from pocketflow_stream.llm.openai_chat import OpenAIChatAdapter, openai_chat_deltas
from pocketflow_stream.llm.think_tags import ThinkTagSplitter


def chunk(
    delta: Optional[Dict[str, Any]] = None,
    finish: Optional[str] = None,
    usage: Optional[Dict[str, Any]] = None,
    *,
    choices: bool = True,
) -> Dict[str, Any]:
    """A `chat.completion.chunk` as decoded from the wire."""
    body: Dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gpt-test",
        "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}] if choices else [],
    }
    if usage is not None:
        body["usage"] = usage
    return body


def call(index=None, id=None, name=None, arguments=None, **extra) -> Dict[str, Any]:
    """One `tool_calls` entry; keys left None are left out, as servers do."""
    fragment: Dict[str, Any] = {key: value for key, value in extra.items()}
    if index is not None:
        fragment["index"] = index
    if id is not None:
        fragment["id"] = id
        fragment["type"] = "function"
    function = {}
    if name is not None:
        function["name"] = name
    if arguments is not None:
        function["arguments"] = arguments
    fragment["function"] = function
    return fragment


def tools(*fragments) -> Dict[str, Any]:
    return chunk({"tool_calls": list(fragments)})


def calls_of(chunks, **options):
    """(id, name, parsed arguments, valid) of each tool call of the folded message."""
    message = accumulate(openai_chat_deltas(chunks, **options))
    return [(c.id, c.name, c.arguments, c.valid) for c in message.tool_calls]


USAGE = {
    "prompt_tokens": 12,
    "completion_tokens": 30,
    "total_tokens": 42,
    "prompt_tokens_details": {"cached_tokens": 4},
    "completion_tokens_details": {"reasoning_tokens": 10},
}

# A realistic OpenAI stream: role chunk, text, two parallel tool calls, finish, usage-only chunk.
OPENAI_STREAM = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"content": "Checking"}),
    chunk({"content": " both."}),
    tools(call(0, "call_a", "get_weather", "")),
    tools(call(0, arguments='{"city": ')),
    tools(call(0, arguments='"Paris"}')),
    tools(call(1, "call_b", "get_time", "")),
    tools(call(1, arguments='{"tz": "CET"}')),
    chunk(finish="tool_calls"),
    chunk(usage=USAGE, choices=False),
]


def test_realistic_stream():
    deltas = list(openai_chat_deltas(OPENAI_STREAM))
    assert deltas == [
        TextDelta("Checking"),
        TextDelta(" both."),
        ToolCallStart(0, "call_a", "get_weather"),
        ToolCallDelta(0, '{"city": '),
        ToolCallDelta(0, '"Paris"}'),
        ToolCallStart(1, "call_b", "get_time"),
        ToolCallDelta(1, '{"tz": "CET"}'),
        ToolCallEnd(0),
        ToolCallEnd(1),
        Finish("tool_calls", "tool_calls"),
        Usage(12, 30, 42, 10, 4),
    ]


def test_sdk_objects_give_the_same_deltas_as_wire_dicts():
    objects = [ChatCompletionChunk.model_validate(c) for c in OPENAI_STREAM]
    assert list(openai_chat_deltas(objects)) == list(openai_chat_deltas(OPENAI_STREAM))


def test_sse_data_lines_and_done_marker():
    lines = [f"data: {json.dumps(c)}" for c in OPENAI_STREAM] + ["data: [DONE]"]
    assert list(openai_chat_deltas(lines)) == list(openai_chat_deltas(OPENAI_STREAM))
    encoded = [json.dumps(c).encode() for c in OPENAI_STREAM]
    assert list(openai_chat_deltas(encoded)) == list(openai_chat_deltas(OPENAI_STREAM))


def test_refusal():
    stream = [chunk({"refusal": "I can't"}), chunk({"refusal": " help."}), chunk(finish="stop")]
    assert list(openai_chat_deltas(stream)) == [
        RefusalDelta("I can't"),
        RefusalDelta(" help."),
        Finish("stop", "stop"),
    ]


def test_reasoning_content_as_llama_cpp_sends_it():
    stream = [
        chunk({"reasoning_content": "Think"}),
        chunk({"reasoning_content": "ing.", "content": None}),
        chunk({"content": "Answer"}),
        chunk(finish="stop"),
    ]
    message = accumulate(openai_chat_deltas(stream))
    assert (message.reasoning, message.content) == ("Thinking.", "Answer")


def test_reasoning_field_as_newer_vllm_sends_it_and_both_fields_count_once():
    # vLLM renamed reasoning_content to reasoning and, for a while, sent both with the same text:
    # https://github.com/vllm-project/vllm/pull/34030, https://github.com/ModelTC/LightLLM/pull/1345
    stream = [
        chunk({"reasoning": "a"}),
        chunk({"reasoning": "b", "reasoning_content": "b"}),
        chunk({"reasoning_content": "c", "content": "x"}),  # reasoning and text in one chunk
    ]
    assert list(openai_chat_deltas(stream)) == [
        ReasoningDelta("a"),
        ReasoningDelta("b"),
        ReasoningDelta("c"),
        TextDelta("x"),
    ]


def test_magistral_content_parts_with_thinking():
    # https://github.com/BerriAI/litellm/issues/16272 (Mistral streams content as a list)
    stream = [
        chunk({"content": [{"type": "thinking", "thinking": [{"type": "text", "text": "hmm"}]}]}),
        chunk({"content": [{"type": "text", "text": "Hello"}]}),
    ]
    assert list(openai_chat_deltas(stream)) == [ReasoningDelta("hmm"), TextDelta("Hello")]


def test_think_tags_option_splits_inline_reasoning():
    stream = [
        chunk({"content": "<th"}),
        chunk({"content": "ink>why</think>"}),
        chunk({"content": "4"}),
    ]
    message = accumulate(openai_chat_deltas(stream, think_tags=True))
    assert (message.reasoning, message.content) == ("why", "4")
    opened = ThinkTagSplitter(start_in_reasoning=True)
    message = accumulate(
        openai_chat_deltas([chunk({"content": "why</think>4"})], think_tags=opened)
    )
    assert (message.reasoning, message.content) == ("why", "4")
    plain = accumulate(openai_chat_deltas(stream))
    assert plain.content == "<think>why</think>4"


def test_held_back_tag_text_is_released_before_the_finish():
    deltas = list(
        openai_chat_deltas([chunk({"content": "5 <"}), chunk(finish="stop")], think_tags=True)
    )
    assert deltas == [TextDelta("5 "), TextDelta("<"), Finish("stop", "stop")]


def test_usage_null_and_usage_on_every_chunk():
    # Some servers attach the running usage to every chunk (lmdeploy, togetherai, groq):
    # https://github.com/InternLM/lmdeploy/issues/3832, https://github.com/camel-ai/camel/issues/4217
    first = {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}
    second = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    stream = [
        chunk({"content": "a"}, usage=None),
        chunk({"content": "b"}, usage=first),
        chunk({"content": "c"}, usage=first),
        chunk(finish="stop", usage=second),
    ]
    stream[0]["usage"] = None
    deltas = list(openai_chat_deltas(stream))
    assert [d for d in deltas if isinstance(d, Usage)] == [Usage(5, 1, 6), Usage(5, 2, 7)]
    assert accumulate(deltas).usage == Usage(5, 2, 7)


def test_usage_inside_the_choice_as_moonshot_sends_it():
    # https://github.com/northes/go-moonshot/issues/17
    final = chunk(finish="stop")
    final["choices"][0]["usage"] = {
        "prompt_tokens": 19,
        "completion_tokens": 13,
        "total_tokens": 32,
    }
    assert list(openai_chat_deltas([final])) == [Finish("stop", "stop"), Usage(19, 13, 32)]


def test_degenerate_chunks_are_harmless():
    stream = [
        {"choices": None},
        {"choices": [{"index": 0}]},  # no delta at all
        {"choices": [{"index": 0, "delta": None, "finish_reason": None}]},
        chunk({"content": None, "tool_calls": None, "refusal": None}),
        chunk({"content": ""}),
        chunk({"tool_calls": []}),
        {"object": "chat.completion.chunk"},
        chunk({"content": "ok"}),
    ]
    assert list(openai_chat_deltas(stream)) == [TextDelta("ok")]


def test_only_the_chosen_choice_is_followed():
    both = {
        "choices": [
            {"index": 1, "delta": {"content": "B"}},
            {"index": 0, "delta": {"content": "A"}},
        ]
    }
    assert list(openai_chat_deltas([both])) == [TextDelta("A")]
    assert list(openai_chat_deltas([both], choice_index=1)) == [TextDelta("B")]


def test_a_full_message_instead_of_a_delta_is_read():
    # servers that ignore stream=True answer one chunk with `message`
    whole = {"choices": [{"index": 0, "message": {"content": "Hi"}, "finish_reason": "stop"}]}
    assert list(openai_chat_deltas([whole])) == [TextDelta("Hi"), Finish("stop", "stop")]


# -- finish reason ---------------------------------------------------------------------------


def test_finish_on_a_chunk_that_also_carries_content():
    stream = [chunk({"content": "Bye"}, finish="stop")]
    assert list(openai_chat_deltas(stream)) == [TextDelta("Bye"), Finish("stop", "stop")]


def test_finish_repeated_is_sent_once():
    # OpenRouter sends finish_reason twice (once more with the usage):
    # https://github.com/skye-harris/hass_local_openai_llm/pull/92
    stream = [
        tools(call(0, "call_1", "f", "{}")),
        chunk(finish="tool_calls"),
        chunk(finish="tool_calls", usage={"prompt_tokens": 1, "completion_tokens": 1}),
    ]
    deltas = list(openai_chat_deltas(stream))
    assert [d for d in deltas if isinstance(d, Finish)] == [Finish("tool_calls", "tool_calls")]
    assert [d for d in deltas if isinstance(d, ToolCallEnd)] == [ToolCallEnd(0)]


def test_stop_reported_after_tool_calls_means_tool_calls():
    # https://github.com/BerriAI/litellm/issues/12862, https://github.com/BerriAI/litellm/issues/35663,
    # https://github.com/Blaizzy/mlx-vlm/pull/990
    stream = [tools(call(0, "call_1", "f", '{"a": 1}')), chunk(finish="stop")]
    assert list(openai_chat_deltas(stream))[-1] == Finish("tool_calls", "stop")


@pytest.mark.parametrize(
    "raw, reason",
    [
        ("length", "length"),
        ("content_filter", "content_filter"),
        ("function_call", "tool_calls"),
        ("end_turn", "stop"),
        ("max_tokens", "length"),
        ("something_new", "stop"),
    ],
)
def test_finish_reasons_are_normalised_and_the_raw_word_kept(raw, reason):
    assert list(openai_chat_deltas([chunk(finish=raw)])) == [Finish(reason, raw)]


def test_mid_stream_error_chunk():
    # OpenRouter reports a failure after HTTP 200 as a chunk with a top-level error and
    # finish_reason "error": https://github.com/damianvtran/local-operator/pull/223,
    # https://github.com/open-octo/octo-agent/pull/910
    failed = chunk(finish="error")
    failed["error"] = {"code": 502, "message": "Provider disconnected"}
    deltas = list(openai_chat_deltas([chunk({"content": "Par"}), failed]))
    assert deltas == [TextDelta("Par"), ProviderError("Provider disconnected", "502")]
    assert list(openai_chat_deltas([chunk(finish="error")])) == [
        ProviderError("the server ended the stream with finish_reason 'error'")
    ]
    assert list(openai_chat_deltas([{"error": {"message": "boom", "type": "server_error"}}])) == [
        ProviderError("boom", "server_error")
    ]


# -- tool calls ------------------------------------------------------------------------------


def test_interleaved_parallel_calls_stay_apart():
    stream = [
        tools(call(0, "call_a", "f", ""), call(1, "call_b", "g", "")),
        tools(call(1, arguments='{"y":')),
        tools(call(0, arguments='{"x":')),
        tools(call(0, arguments=" 1}"), call(1, arguments=" 2}")),
        chunk(finish="tool_calls"),
    ]
    assert calls_of(stream) == [("call_a", "f", {"x": 1}, True), ("call_b", "g", {"y": 2}, True)]


def test_call_without_arguments_gets_an_empty_object():
    stream = [tools(call(0, "call_1", "now", "")), chunk(finish="tool_calls")]
    deltas = list(openai_chat_deltas(stream))
    assert deltas[:2] == [ToolCallStart(0, "call_1", "now"), ToolCallEnd(0)]
    assert calls_of(stream) == [("call_1", "now", {}, True)]


def test_missing_index_single_call():
    # https://github.com/chatanywhere/GPT_API_free/issues/254,
    # https://github.com/openai/openai-python/issues/2806 (Gemini's OpenAI endpoint),
    # https://github.com/ollama/ollama/issues/7881
    stream = [
        tools(call(None, "call_1", "squareRoot", "")),
        tools(call(None, arguments='{"n": ')),
        tools(call(None, arguments="16}")),
        chunk(finish="tool_calls"),
    ]
    assert calls_of(stream) == [("call_1", "squareRoot", {"n": 16}, True)]


def test_missing_index_several_calls_told_apart_by_id():
    # https://github.com/aaif-goose/goose/pull/10023, https://github.com/SamSaffron/term-llm/pull/314
    stream = [
        tools(call(None, "call_1", "f", '{"a": 1}'), call(None, "call_2", "g", "")),
        tools(call(None, "call_2", arguments='{"b": 2}')),
        tools(call(None, "call_3", "h", "{}")),
    ]
    assert calls_of(stream) == [
        ("call_1", "f", {"a": 1}, True),
        ("call_2", "g", {"b": 2}, True),
        ("call_3", "h", {}, True),
    ]


def test_index_null_explicitly():
    stream = [
        tools(
            {
                "index": None,
                "id": "c1",
                "type": "function",
                "function": {"name": "f", "arguments": ""},
            }
        ),
        tools({"index": None, "function": {"arguments": "{}"}}),
    ]
    assert calls_of(stream) == [("c1", "f", {}, True)]


def test_id_type_and_name_repeated_on_every_fragment():
    # Fireworks, DeepSeek, Qwen, LiteLLM: https://github.com/BerriAI/litellm/issues/8990,
    # https://github.com/SillyTavern/SillyTavern/pull/5948, https://github.com/BerriAI/litellm/issues/20480,
    # https://github.com/NousResearch/hermes-agent/issues/8259 (name repeated: "read_fileread_file")
    stream = [
        tools(call(0, "chatcmpl-tool-aa62", "read_file", "")),
        tools(call(0, "chatcmpl-tool-aa62", "read_file", '{"path":')),
        tools(call(0, "chatcmpl-tool-aa62", "read_file", ' "a.py"}')),
        tools(call(0, "chatcmpl-tool-aa62", "read_file", "")),
        chunk(finish="tool_calls"),
    ]
    deltas = list(openai_chat_deltas(stream))
    assert [d for d in deltas if isinstance(d, ToolCallStart)] == [
        ToolCallStart(0, "chatcmpl-tool-aa62", "read_file")
    ]
    assert calls_of(stream) == [("chatcmpl-tool-aa62", "read_file", {"path": "a.py"}, True)]


def test_type_missing_and_extra_fields_are_ignored():
    stream = [
        tools({"index": 0, "id": "c", "function": {"name": "f", "arguments": "{}"}, "name": None})
    ]
    assert calls_of(stream) == [("c", "f", {}, True)]


def test_name_sent_in_pieces_is_joined():
    # Gemini streams "edit_ex" + "isting_file": https://github.com/continuedev/continue/pull/5849,
    # https://github.com/ankit373/hydra/pull/958
    stream = [
        tools(call(0, "call_1", "edit_ex")),
        tools(call(0, name="isting_file")),
        tools(call(0, arguments='{"path": "x"}')),
    ]
    deltas = list(openai_chat_deltas(stream))
    assert deltas[0] == ToolCallStart(0, "call_1", "edit_existing_file")
    assert calls_of(stream) == [("call_1", "edit_existing_file", {"path": "x"}, True)]


def test_id_and_name_arriving_after_an_id_only_head():
    # a first fragment with only index, id and type: https://github.com/archestra-ai/archestra/pull/866
    stream = [
        tools({"index": 0, "id": "call_1", "type": "function"}),
        tools(call(0, name="search", arguments="")),
        tools(call(0, arguments='{"q": "x"}')),
    ]
    assert calls_of(stream) == [("call_1", "search", {"q": "x"}, True)]


def test_whole_arguments_with_the_head_and_then_repeated():
    # Mistral sends the whole call in one chunk; a client that also appends the next chunk's
    # copy gets '{...}{...}': https://github.com/64bit/async-openai/pull/329
    whole = '{ "city": "Berlin" }'
    stream = [tools(call(0, "call_1", "weather", whole)), tools(call(0, arguments=whole))]
    assert calls_of(stream) == [("call_1", "weather", {"city": "Berlin"}, True)]
    assert accumulate(openai_chat_deltas(stream)).tool_calls[0].raw_arguments == whole


def test_trailing_summary_chunk_restating_the_arguments():
    # LiteLLM appends a chunk with the complete (sometimes double-encoded) arguments:
    # https://github.com/BerriAI/litellm/issues/20480
    arguments = '{"query": "hello"}'
    streamed = [
        tools(call(0, "call_abc", "search", '{"qu')),
        tools(call(0, "call_abc", arguments='ery":')),
        tools(call(0, "call_abc", arguments=' "hello"}')),
    ]
    for summary in (arguments, json.dumps(arguments)):
        stream = streamed + [
            tools(call(0, "call_abc", "search", summary)),
            chunk(finish="tool_calls"),
        ]
        message = accumulate(openai_chat_deltas(stream))
        assert [(c.name, c.arguments, c.raw_arguments) for c in message.tool_calls] == [
            ("search", {"query": "hello"}, arguments)
        ]


def test_final_flush_that_restates_the_streamed_prefix():
    # vLLM's last chunk repeated the whole arguments after part of them had streamed:
    # https://github.com/vllm-project/vllm/issues/42167
    full = '{"date": "2025-03-26", "amount": 300}'
    stream = [
        tools(call(0, "call_1", "record", "")),
        tools(call(0, arguments='{"date": "2025-')),
        tools(call(0, arguments='03-26", "amou')),
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {"tool_calls": [call(0, arguments=full)]},
                    "finish_reason": "tool_calls",
                }
            ]
        },
    ]
    message = accumulate(openai_chat_deltas(stream))
    assert message.tool_calls[0].arguments == {"date": "2025-03-26", "amount": 300}
    assert message.tool_calls[0].raw_arguments == full
    assert message.finish_reason == "tool_calls"


def test_arguments_already_parsed():
    # Ollama-style arguments as an object: https://github.com/BerriAI/litellm/pull/24095
    stream = [
        tools(call(None, None, "get_weather", {"location": "Paris"})),
        tools(call(None, None, "get_weather", {"location": "London"})),
    ]
    message = accumulate(openai_chat_deltas(stream))
    assert [(c.id, c.arguments) for c in message.tool_calls] == [
        ("call_0", {"location": "Paris"}),
        ("call_1", {"location": "London"}),
    ]
    assert json.loads(message.tool_calls[0].raw_arguments) == {"location": "Paris"}
    # the same object restated is not a second call
    restated = [tools(call(0, "c", "f", '{"a": 1}')), tools(call(0, "c", "f", {"a": 1}))]
    assert calls_of(restated) == [("c", "f", {"a": 1}, True)]


def test_index_reused_by_the_next_call():
    # every call streamed under the same index: https://github.com/microsoft/foundry-local/issues/372
    stream = [
        tools(call(1, "call_a", "f", '{"x": 1}')),
        tools(call(1, "call_b", "g", "")),
        tools(call(1, arguments='{"y": 2}')),
    ]
    assert calls_of(stream) == [("call_a", "f", {"x": 1}, True), ("call_b", "g", {"y": 2}, True)]


def test_head_and_tail_of_a_call_under_different_indexes():
    # deepseek through ollama.com: the second call's head came with index 0, its tail with index 1:
    # https://github.com/agno-agi/agno/issues/8879
    stream = [
        tools(call(0, "call_a", "kpi", '{"kpi": "A"}')),
        tools(call(0, "call_b", "chart", '{"chart": "B", ')),
        tools(call(1, arguments='"series": "s"}')),
    ]
    assert calls_of(stream) == [
        ("call_a", "kpi", {"kpi": "A"}, True),
        ("call_b", "chart", {"chart": "B", "series": "s"}, True),
    ]


def test_id_that_changes_mid_call_is_not_a_new_call():
    # Poolside sends a different id on the continuation chunks: https://github.com/poolsideai/pool/issues/9
    stream = [
        tools(call(0, "call_first", "f", "")),
        tools(call(0, "call_second", arguments='{"a":')),
        tools(call(0, "call_second", arguments=" 1}")),
    ]
    assert calls_of(stream) == [("call_first", "f", {"a": 1}, True)]


def test_several_whole_calls_and_the_finish_in_one_chunk():
    # https://github.com/google/adk-python/issues/7004
    fragments = [call(i, f"call_{i + 1}", f"f{i + 1}", json.dumps({"n": i})) for i in range(3)]
    stream = [
        {
            "choices": [
                {"index": 0, "delta": {"tool_calls": fragments}, "finish_reason": "tool_calls"}
            ]
        }
    ]
    assert calls_of(stream) == [(f"call_{i + 1}", f"f{i + 1}", {"n": i}, True) for i in range(3)]


def test_legacy_function_call_delta():
    stream = [
        chunk({"function_call": {"name": "lookup", "arguments": ""}}),
        chunk({"function_call": {"arguments": '{"q": 1}'}}),
        chunk(finish="function_call"),
    ]
    message = accumulate(openai_chat_deltas(stream))
    assert [(c.id, c.name, c.arguments) for c in message.tool_calls] == [
        ("call_0", "lookup", {"q": 1})
    ]
    assert message.finish_reason == "tool_calls"


def test_truncated_arguments_stay_invalid():
    stream = [tools(call(0, "call_1", "write", '{"text": "half')), chunk(finish="length")]
    message = accumulate(openai_chat_deltas(stream))
    (tool_call,) = message.tool_calls
    assert (tool_call.valid, tool_call.arguments, tool_call.raw_arguments) == (
        False,
        None,
        '{"text": "half',
    )
    assert message.finish_reason == "length"


def test_close_ends_calls_of_a_stream_cut_before_its_finish():
    adapter = OpenAIChatAdapter()
    assert adapter.feed(tools(call(0, "c", "f"))) == []  # the start waits for the arguments
    assert adapter.close() == [ToolCallStart(0, "c", "f"), ToolCallEnd(0)]
    assert adapter.close() == []


# -- any split of the same stream ------------------------------------------------------------


def _pieces(draw, text: str) -> List[str]:
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(text) - 1)), max_size=len(text))))
    cuts = [c for c in cuts if 0 < c < len(text)]
    return [text[a:b] for a, b in zip([0] + cuts, cuts + [len(text)])]


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_any_split_yields_the_same_message(data):
    reasoning = "Two cities: Paris, then Tokyo."
    content = "<think>inline</think>Here are both forecasts."
    arguments = ['{"city": "Paris", "days": [1, 2]}', '{"city": "Tōkyō", "note": "a \\"b\\""}']
    stream = [chunk({"reasoning_content": p}) for p in _pieces(data.draw, reasoning)]
    stream += [chunk({"content": p}) for p in _pieces(data.draw, content)]
    heads = [call(0, "call_p", "weather", ""), call(1, "call_t", "weather", "")]
    stream += [tools(*heads)]
    pieces = [
        [call(i, arguments=p) for p in _pieces(data.draw, text)] for i, text in enumerate(arguments)
    ]
    # interleave the two calls' fragments in an order hypothesis picks
    while pieces[0] or pieces[1]:
        side = data.draw(st.sampled_from([i for i in (0, 1) if pieces[i]]))
        stream.append(tools(pieces[side].pop(0)))
    stream += [chunk(finish="tool_calls"), chunk(usage=USAGE, choices=False)]

    message = accumulate(openai_chat_deltas(stream, think_tags=True))
    assert message.reasoning == reasoning + "inline"
    assert message.content == "Here are both forecasts."
    assert [(c.id, c.raw_arguments) for c in message.tool_calls] == [
        ("call_p", arguments[0]),
        ("call_t", arguments[1]),
    ]
    assert [c.arguments for c in message.tool_calls] == [json.loads(a) for a in arguments]
    assert message.usage == Usage(12, 30, 42, 10, 4)
    assert message.finish_reason == "tool_calls"


TRICKY = {"code": 'if (a) { b["}"] = "\\\\"; }', "nested": {"list": [1, {"z": "]}"}], "e": "é"}}


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_any_split_with_the_head_repeated_on_every_fragment(data):
    # Servers repeating id and name on every fragment (see above) must not make the adapter
    # think a call ended early, wherever braces, quotes and escapes inside strings fall.
    raw = json.dumps(TRICKY, ensure_ascii=False)
    stream = [tools(call(0, "call_1", "run", p)) for p in _pieces(data.draw, raw)]
    stream += [tools(call(1, "call_2", "run", p)) for p in _pieces(data.draw, raw)]
    stream.append(chunk(finish="tool_calls"))
    message = accumulate(openai_chat_deltas(stream))
    assert [(c.id, c.name, c.raw_arguments, c.arguments) for c in message.tool_calls] == [
        ("call_1", "run", raw, TRICKY),
        ("call_2", "run", raw, TRICKY),
    ]


# --- ids a server may rotate or omit (issue 10 §3) -----------------------------------------


def test_an_id_rotating_on_every_fragment_without_an_index_stays_one_call():
    """A proxy that drops `index` and sends a fresh `id` on every fragment of one call (the
    shape of the Responses item-id rotation, https://github.com/BerriAI/litellm/pull/30072,
    seen through a Chat Completions bridge): the id alone must not open a call per fragment."""
    chunks = [
        tools(call(id="call_r1", name="get_weather", arguments="")),
        tools(call(id="call_r2", arguments='{"city": ')),
        tools(call(id="call_r3", arguments='"Paris"}')),
        tools(call(id="call_r4", name="get_time", arguments='{"tz": "CET"}')),  # a new call
        chunk(finish="tool_calls"),
    ]

    assert calls_of(chunks) == [
        ("call_r1", "get_weather", {"city": "Paris"}, True),
        ("call_r4", "get_time", {"tz": "CET"}, True),
    ]


def test_an_id_omitted_on_later_fragments_and_the_index_omitted_too():
    chunks = [
        tools(call(id="call_1", name="f", arguments='{"a"')),
        tools(call(arguments=": 1}")),
        chunk(finish="tool_calls"),
    ]

    assert calls_of(chunks) == [("call_1", "f", {"a": 1}, True)]
