"""Model clients: message and tool conversion, the requests they send, `default_model`, and
LiteLLM through a stand-in module (the one mock: the real litellm cannot be installed next to
the openai SDK this suite tests; see test_real_sdks.py for the real-litellm test)."""

from __future__ import annotations

import sys
import types

import anthropic
import openai
import pytest

from pocketflow_stream.llm.accumulator import INVALID_ARGUMENTS_KEY, Accumulator
from pocketflow_stream.llm.deltas import (
    ProviderError,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
)
from pocketflow_stream.llm.models import (
    DEFAULT_ANTHROPIC_MODEL,
    DEFAULT_OPENAI_MODEL,
    AnthropicModel,
    AsyncAnthropicModel,
    AsyncChatModel,
    AsyncOpenAIChatModel,
    ChatModel,
    LiteLLMModel,
    OpenAIChatModel,
    OpenAIResponsesModel,
    default_model,
    to_anthropic_messages,
    to_anthropic_tools,
    to_responses_input,
    to_responses_tools,
)
from pocketflow_stream.llm.replay_server import event_replay, openai_chat_replay

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}

AGENT_HISTORY = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Weather in Paris and Rome?"},
    {
        "role": "assistant",
        "content": "Checking.",
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            },
            {
                "id": "call_2",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
            },
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
    {"role": "tool", "tool_call_id": "call_2", "content": "24C"},
    {"role": "user", "content": "Thanks"},
]


# --- Anthropic conversion ------------------------------------------------------------------


def test_anthropic_conversion_extracts_the_system_prompt_and_groups_tool_results():
    system, messages = to_anthropic_messages(
        [{"role": "developer", "content": "Use tools."}] + AGENT_HISTORY
    )

    assert system == "Use tools.\n\nBe brief."
    assert messages == [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {
                    "type": "tool_use",
                    "id": "call_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {
                    "type": "tool_use",
                    "id": "call_2",
                    "name": "get_weather",
                    "input": {"city": "Rome"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
                {"type": "tool_result", "tool_use_id": "call_2", "content": "24C"},
            ],
        },
        {"role": "user", "content": "Thanks"},
    ]


def test_anthropic_conversion_drops_empty_text_beside_tool_calls():
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": ""}}
    _, messages = to_anthropic_messages(
        [{"role": "assistant", "content": None, "tool_calls": [call]}]
    )

    assert messages == [
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "c", "name": "f", "input": {}}],
        }
    ]


def test_anthropic_blocks_in_the_history_pass_through_unchanged():
    blocks = [
        {"type": "thinking", "thinking": "Paris first.", "signature": "sig=="},
        {"type": "redacted_thinking", "data": "opaque"},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
    ]
    system, messages = to_anthropic_messages([{"role": "assistant", "content": blocks}])

    assert system is None
    assert messages == [{"role": "assistant", "content": blocks}]


def test_anthropic_conversion_turns_image_urls_into_image_blocks():
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]
    _, messages = to_anthropic_messages([{"role": "user", "content": content}])

    assert messages[0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


def test_anthropic_conversion_marks_arguments_that_are_not_a_json_object():
    call = {"id": "c9", "type": "function", "function": {"name": "f", "arguments": '{"a": '}}
    history = [{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [call]}]

    _, messages = to_anthropic_messages(history)

    tool_use = messages[1]["content"][0]
    assert tool_use["input"] == {INVALID_ARGUMENTS_KEY: '{"a": '}


def test_anthropic_conversion_of_an_accumulated_message_matches_its_own_rendering():
    accumulator = Accumulator()
    accumulator.extend(
        [
            TextDelta("Checking."),
            ToolCallStart(0, "call_1", "get_weather"),
            ToolCallDelta(0, '{"city": "Paris"}'),
            ToolCallStart(1, "call_2", "get_weather"),
            ToolCallDelta(1, '{"city": '),  # cut short: invalid
        ]
    )
    message = accumulator.message

    _, messages = to_anthropic_messages([message.to_openai()])

    assert messages == [message.to_anthropic()]


def test_anthropic_conversion_rejects_an_unknown_role():
    with pytest.raises(ValueError, match=r"messages\[0\] has role 'robot'"):
        to_anthropic_messages([{"role": "robot", "content": "beep"}])


def test_anthropic_tools_take_the_function_schema_as_input_schema():
    native = {"type": "web_search_20250305", "name": "web_search"}
    bare = {"type": "function", "function": {"name": "now"}}

    assert to_anthropic_tools([WEATHER_TOOL, native, bare]) == [
        {
            "name": "get_weather",
            "description": "Current weather in a city",
            "input_schema": WEATHER_TOOL["function"]["parameters"],
        },
        native,
        {"name": "now", "input_schema": {"type": "object", "properties": {}}},
    ]


# --- Responses conversion ------------------------------------------------------------------


def test_responses_conversion_turns_tool_calls_and_results_into_items():
    items = to_responses_input(AGENT_HISTORY)

    assert items == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": "Checking."},
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": '{"city": "Paris"}',
        },
        {
            "type": "function_call",
            "call_id": "call_2",
            "name": "get_weather",
            "arguments": '{"city": "Rome"}',
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "18C"},
        {"type": "function_call_output", "call_id": "call_2", "output": "24C"},
        {"role": "user", "content": "Thanks"},
    ]


def test_responses_conversion_converts_parts_and_passes_items_through():
    reasoning_item = {"type": "reasoning", "id": "rs_1", "summary": []}
    content = [
        {"type": "text", "text": "Describe"},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
    ]
    items = to_responses_input([{"role": "user", "content": content}, reasoning_item])

    assert items == [
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "Describe"},
                {"type": "input_image", "image_url": "https://example.com/a.png"},
            ],
        },
        reasoning_item,
    ]


def test_responses_tools_are_flattened():
    native = {"type": "web_search"}

    assert to_responses_tools([WEATHER_TOOL, native]) == [
        {"type": "function", **WEATHER_TOOL["function"]},
        native,
    ]


# --- choosing and building models ----------------------------------------------------------


@pytest.fixture
def no_keys(monkeypatch):
    for name in (
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "POCKETFLOW_STREAM_OPENAI_MODEL",
        "POCKETFLOW_STREAM_ANTHROPIC_MODEL",
    ):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_default_model_is_none_without_keys(no_keys):
    assert default_model() is None


def test_default_model_prefers_openai_and_reads_the_model_name(no_keys):
    no_keys.setenv("OPENAI_API_KEY", "sk-test")
    no_keys.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    assert isinstance(default_model(), OpenAIChatModel)
    assert default_model().model == DEFAULT_OPENAI_MODEL == "gpt-4o-mini"

    no_keys.setenv("POCKETFLOW_STREAM_OPENAI_MODEL", "my-local-model")
    assert default_model().model == "my-local-model"


def test_default_model_falls_back_to_anthropic(no_keys):
    no_keys.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    assert isinstance(default_model(), AnthropicModel)
    assert default_model().model == DEFAULT_ANTHROPIC_MODEL

    no_keys.setenv("POCKETFLOW_STREAM_ANTHROPIC_MODEL", "claude-haiku-4-5")
    assert default_model().model == "claude-haiku-4-5"


def test_models_need_no_key_until_their_client_is_used(no_keys):
    model = OpenAIChatModel("gpt-4o-mini")
    with pytest.raises(openai.OpenAIError):
        model.client  # noqa: B018 - the lazy client reads the key now

    no_keys.setenv("OPENAI_API_KEY", "sk-test")
    no_keys.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    assert isinstance(model.client, openai.OpenAI)
    assert isinstance(AsyncOpenAIChatModel("m").client, openai.AsyncOpenAI)
    assert isinstance(AnthropicModel("m").client, anthropic.Anthropic)
    assert isinstance(AsyncAnthropicModel("m").client, anthropic.AsyncAnthropic)


def test_models_satisfy_the_protocol_of_their_kind():
    for model in (OpenAIChatModel("m"), OpenAIResponsesModel("m"), AnthropicModel("m")):
        assert isinstance(model, ChatModel)
        assert not isinstance(model, AsyncChatModel)
    for model in (AsyncOpenAIChatModel("m"), AsyncAnthropicModel("m")):
        assert isinstance(model, AsyncChatModel)
        assert not isinstance(model, ChatModel)
    assert isinstance(LiteLLMModel("m"), ChatModel)


def test_a_missing_sdk_says_which_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "litellm", None)  # makes `import litellm` fail

    with pytest.raises(ImportError, match=r"pip install 'pocketflow-stream\[litellm\]'"):
        next(LiteLLMModel("openai/x").stream([{"role": "user", "content": "hi"}]))


# --- the requests the clients send ---------------------------------------------------------


def chat_chunk(delta, finish_reason=None):
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def test_openai_chat_model_streams_with_usage_and_merges_defaults_and_options(replay_server):
    replay_server.enqueue(
        openai_chat_replay([chat_chunk({"content": "ok"}), chat_chunk({}, "stop")])
    )
    client = openai.OpenAI(base_url=replay_server.openai_base_url, api_key="test", max_retries=0)
    model = OpenAIChatModel("gpt-4o-mini", client=client, temperature=0.5, seed=7)

    deltas = list(model.stream(AGENT_HISTORY[:2], tools=[WEATHER_TOOL], temperature=0))

    assert TextDelta("ok") in deltas
    (request,) = replay_server.wait_for_requests(1)
    assert request.path == "/v1/chat/completions"
    assert request.body == {
        "model": "gpt-4o-mini",
        "messages": AGENT_HISTORY[:2],
        "stream": True,
        "stream_options": {"include_usage": True},
        "tools": [WEATHER_TOOL],
        "temperature": 0,
        "seed": 7,
    }


def test_stream_options_none_leaves_the_field_out(replay_server):
    replay_server.enqueue(openai_chat_replay([chat_chunk({}, "stop")]))
    client = openai.OpenAI(base_url=replay_server.openai_base_url, api_key="test", max_retries=0)

    list(OpenAIChatModel("local", client=client, stream_options=None).stream(AGENT_HISTORY[:2]))

    assert "stream_options" not in replay_server.wait_for_requests(1)[0].body


def test_nothing_is_sent_until_iteration_starts(replay_server):
    client = openai.OpenAI(base_url=replay_server.openai_base_url, api_key="test", max_retries=0)
    deltas = OpenAIChatModel("m", client=client).stream(AGENT_HISTORY[:2])
    replay_server.enqueue(openai_chat_replay([chat_chunk({}, "stop")]))

    assert replay_server.requests == []
    list(deltas)
    assert len(replay_server.wait_for_requests(1)) == 1


def test_anthropic_model_sends_the_converted_conversation(replay_server):
    replay_server.enqueue(
        event_replay(
            [
                {
                    "type": "message_start",
                    "message": {
                        "id": "msg_1",
                        "type": "message",
                        "role": "assistant",
                        "model": "claude-haiku-4-5",
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": {"input_tokens": 3, "output_tokens": 1},
                    },
                },
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": 1},
                },
                {"type": "message_stop"},
            ]
        )
    )
    client = anthropic.Anthropic(base_url=replay_server.base_url, api_key="test", max_retries=0)
    model = AnthropicModel("claude-haiku-4-5", client=client, max_tokens=512)
    thinking = {"type": "enabled", "budget_tokens": 1024}

    list(model.stream(AGENT_HISTORY, tools=[WEATHER_TOOL], thinking=thinking))

    (request,) = replay_server.wait_for_requests(1)
    system, messages = to_anthropic_messages(AGENT_HISTORY)
    assert request.path == "/v1/messages"
    assert request.body == {
        "model": "claude-haiku-4-5",
        "max_tokens": 512,
        "system": system,
        "messages": messages,
        "tools": to_anthropic_tools([WEATHER_TOOL]),
        "thinking": thinking,
        "stream": True,
    }


def test_responses_model_sends_input_items_and_flat_tools(replay_server):
    replay_server.enqueue(
        event_replay(
            [
                {
                    "type": "response.completed",
                    "sequence_number": 0,
                    "response": {
                        "id": "resp_1",
                        "object": "response",
                        "created_at": 1,
                        "model": "gpt-5-mini",
                        "status": "completed",
                        "output": [],
                    },
                }
            ]
        )
    )
    client = openai.OpenAI(base_url=replay_server.openai_base_url, api_key="test", max_retries=0)
    model = OpenAIResponsesModel("gpt-5-mini", client=client, reasoning={"summary": "auto"})

    list(model.stream(AGENT_HISTORY, tools=[WEATHER_TOOL]))

    (request,) = replay_server.wait_for_requests(1)
    assert request.path == "/v1/responses"
    assert request.body == {
        "model": "gpt-5-mini",
        "input": to_responses_input(AGENT_HISTORY),
        "tools": to_responses_tools([WEATHER_TOOL]),
        "reasoning": {"summary": "auto"},
        "stream": True,
    }


# --- LiteLLM through a stand-in module -----------------------------------------------------


class FakeLiteLLMStream:
    """Plays chunks like litellm's stream wrapper; raises `error` after them if given."""

    def __init__(self, chunks, error=None):
        self.chunks = list(chunks)
        self.error = error
        self.closed = False

    def __iter__(self):
        yield from self.chunks
        if self.error is not None:
            raise self.error

    def close(self):
        self.closed = True


@pytest.fixture
def fake_litellm(monkeypatch):
    module = types.ModuleType("litellm")
    module.requests = []
    module.streams = []

    def completion(**request):
        module.requests.append(request)
        return module.streams.pop(0)

    module.completion = completion
    monkeypatch.setitem(sys.modules, "litellm", module)
    return module


def litellm_chunk(delta, finish_reason=None, usage=None):
    chunk = chat_chunk(delta, finish_reason)
    if usage is not None:
        chunk["usage"] = usage
    return chunk


def test_litellm_model_calls_completion_with_streaming_and_adapts_its_chunks(fake_litellm):
    call = {"index": 0, "id": "call_1", "type": "function"}
    fake_litellm.streams.append(
        FakeLiteLLMStream(
            [
                litellm_chunk({"role": "assistant", "content": "Let me check."}),
                litellm_chunk({"tool_calls": [{**call, "function": {"name": "get_weather"}}]}),
                litellm_chunk(
                    {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": "Rome"}'}}]}
                ),
                litellm_chunk(
                    {},
                    "tool_calls",
                    usage={"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13},
                ),
            ]
        )
    )
    model = LiteLLMModel("openai/gpt-4o-mini", api_base="http://localhost:1/v1")

    accumulator = Accumulator()
    accumulator.extend(model.stream(AGENT_HISTORY[:2], tools=[WEATHER_TOOL], temperature=0))
    message = accumulator.message

    assert fake_litellm.requests == [
        {
            "model": "openai/gpt-4o-mini",
            "messages": AGENT_HISTORY[:2],
            "stream": True,
            "stream_options": {"include_usage": True},
            "tools": [WEATHER_TOOL],
            "api_base": "http://localhost:1/v1",
            "temperature": 0,
        }
    ]
    assert message.content == "Let me check."
    assert [(call.id, call.name, call.arguments) for call in message.tool_calls] == [
        ("call_1", "get_weather", {"city": "Rome"})
    ]
    assert message.finish_reason == "tool_calls"
    assert message.usage.total_tokens == 13
    assert fake_litellm.streams == []


def test_litellm_stream_is_closed_when_the_consumer_stops(fake_litellm):
    stream = FakeLiteLLMStream([litellm_chunk({"content": f"{n} "}) for n in range(10)])
    fake_litellm.streams.append(stream)

    deltas = LiteLLMModel("openai/x").stream(AGENT_HISTORY[:2])
    next(deltas)
    deltas.close()

    assert stream.closed


def test_litellm_in_stream_error_becomes_a_provider_error(fake_litellm):
    error = openai.APIError("upstream overloaded", request=None, body={"code": "overloaded"})
    fake_litellm.streams.append(FakeLiteLLMStream([litellm_chunk({"content": "Par"})], error))

    deltas = list(LiteLLMModel("openai/x").stream(AGENT_HISTORY[:2]))

    assert deltas[0] == TextDelta("Par")
    assert deltas[-1] == ProviderError("upstream overloaded", "overloaded")


def test_litellm_connection_errors_raise(fake_litellm):
    error = openai.APIConnectionError(request=None)
    fake_litellm.streams.append(FakeLiteLLMStream([litellm_chunk({"content": "Par"})], error))

    with pytest.raises(openai.APIConnectionError):
        list(LiteLLMModel("openai/x").stream(AGENT_HISTORY[:2]))
