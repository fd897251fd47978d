"""The official `openai` and `anthropic` clients parse real bytes from a loopback server that
replays each provider's wire format; the model clients turn what they parse into deltas.

Each scenario is a recorded stream (the event shapes of the providers' streaming references).
A test replays it through the real SDK and checks the accumulated message, and checks that the
SDK path yields exactly the deltas the adapter yields for the same events decoded by hand — so
SDK objects and wire dicts can never disagree. Bodies are also sent in small writes that cut
through SSE frames and UTF-8 characters, to exercise the SDKs' SSE decoders.
"""

from __future__ import annotations

from typing import Any, Dict, List

import anthropic
import openai
import pytest
from helpers import rotate_item_ids
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pocketflow_stream import AsyncParallelBatchFlow, AsyncStreamFlow, StreamFlow
from pocketflow_stream.llm import AsyncLLMNode, LLMNode
from pocketflow_stream.llm.accumulator import Accumulator
from pocketflow_stream.llm.anthropic_messages import anthropic_deltas
from pocketflow_stream.llm.deltas import (
    Finish,
    ProviderError,
    ReasoningDelta,
    RedactedReasoning,
    SignatureDelta,
    TextDelta,
    Usage,
)
from pocketflow_stream.llm.models import (
    AnthropicModel,
    AsyncAnthropicModel,
    AsyncOpenAIChatModel,
    AsyncOpenAIResponsesModel,
    LiteLLMModel,
    OpenAIChatModel,
    OpenAIResponsesModel,
)
from pocketflow_stream.llm.openai_chat import openai_chat_deltas
from pocketflow_stream.llm.openai_responses import openai_responses_deltas
from pocketflow_stream.llm.replay_server import (
    Replay,
    error_replay,
    event_replay,
    openai_chat_replay,
    sse_frame,
)

HELLO = [{"role": "user", "content": "Hello"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


@pytest.fixture(params=[None, 7], ids=["one-write", "7-byte-writes"])
def write_size(request):
    return request.param


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def openai_client(replay_server):
    client = openai.OpenAI(
        base_url=replay_server.openai_base_url, api_key="test", max_retries=0, timeout=10
    )
    yield client
    client.close()


@pytest.fixture
def anthropic_client(replay_server):
    client = anthropic.Anthropic(
        base_url=replay_server.base_url, api_key="test", max_retries=0, timeout=10
    )
    yield client
    client.close()


def accumulate(deltas) -> Any:
    accumulator = Accumulator()
    accumulator.extend(deltas)
    return accumulator.message


def calls_of(message) -> List[tuple]:
    return [(call.index, call.id, call.name, call.arguments) for call in message.tool_calls]


# --- OpenAI Chat Completions wire format ---------------------------------------------------


def chat_chunk(delta=None, finish_reason=None, *, usage=None, choices=True) -> Dict[str, Any]:
    return {
        "id": "chatcmpl-A1b2C3",
        "object": "chat.completion.chunk",
        "created": 1727000000,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_replay",
        "choices": [
            {"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish_reason}
        ]
        if choices
        else [],
        "usage": usage,
    }


def chat_usage(prompt=12, completion=9, reasoning=0, cached=0) -> Dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": reasoning, "audio_tokens": 0},
    }


def tool_fragment(index, arguments, *, call_id=None, name=None) -> Dict[str, Any]:
    fragment: Dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if call_id is not None:
        fragment.update(id=call_id, type="function")
        fragment["function"]["name"] = name
    return fragment


def openai_chat_scenario(name: str) -> List[Any]:
    """The chunks of one recorded Chat Completions stream (before `data: [DONE]`)."""
    start = chat_chunk({"role": "assistant", "content": "", "refusal": None})
    if name == "text":
        return [
            start,
            chat_chunk({"content": "Bonjour, "}),
            chat_chunk({"content": "le café ☕ est prêt."}),
            chat_chunk({}, "stop"),
            chat_chunk(choices=False, usage=chat_usage(cached=4)),  # the usage-only last chunk
        ]
    if name == "reasoning":  # llama.cpp / DeepSeek / vLLM style
        return [
            chat_chunk({"role": "assistant", "content": None, "reasoning_content": "Two "}),
            chat_chunk({"reasoning_content": "plus two."}),
            chat_chunk({"content": "4"}),
            chat_chunk({}, "stop"),
            chat_chunk(choices=False, usage=chat_usage(reasoning=5)),
        ]
    if name == "tool_call":
        return [
            chat_chunk({"role": "assistant", "content": None, "tool_calls": [
                tool_fragment(0, "", call_id="call_Ab1", name="get_weather")]}),
            chat_chunk({"tool_calls": [tool_fragment(0, '{"ci')]}),
            chat_chunk({"tool_calls": [tool_fragment(0, 'ty": "Zür')]}),
            chat_chunk({"tool_calls": [tool_fragment(0, 'ich"}')]}),
            chat_chunk({}, "tool_calls"),
            chat_chunk(choices=False, usage=chat_usage()),
        ]  # fmt: skip
    if name == "parallel_tool_calls":
        return [
            chat_chunk({"role": "assistant", "content": None, "tool_calls": [
                tool_fragment(0, "", call_id="call_P1", name="get_weather")]}),
            chat_chunk({"tool_calls": [tool_fragment(0, '{"city": "Paris"}')]}),
            chat_chunk({"tool_calls": [
                tool_fragment(1, "", call_id="call_R2", name="get_weather")]}),
            chat_chunk({"tool_calls": [tool_fragment(1, '{"city": ')]}),
            chat_chunk({"tool_calls": [tool_fragment(1, '"Rome"}')]}),
            chat_chunk({}, "tool_calls"),
            chat_chunk(choices=False, usage=chat_usage()),
        ]  # fmt: skip
    if name == "truncated":
        return [
            start,
            chat_chunk({"content": "Once upon a"}),
            chat_chunk({}, "length"),
            chat_chunk(choices=False, usage=chat_usage(completion=3)),
        ]
    if name == "refusal":
        return [
            start,
            chat_chunk({"refusal": "I'm sorry, "}),
            chat_chunk({"refusal": "I can't help with that."}),
            chat_chunk({}, "stop"),
            chat_chunk(choices=False, usage=chat_usage()),
        ]
    if name == "error":  # how OpenAI-compatible servers report a failure mid-stream
        return [
            start,
            chat_chunk({"content": "Partial"}),
            {
                "error": {
                    "message": "The server is overloaded",
                    "type": "server_error",
                    "code": None,
                }
            },
        ]
    raise KeyError(name)


OPENAI_CHAT_SCENARIOS = [
    "text",
    "reasoning",
    "tool_call",
    "parallel_tool_calls",
    "truncated",
    "refusal",
    "error",
]


@pytest.mark.parametrize("scenario", OPENAI_CHAT_SCENARIOS)
def test_openai_chat_model_yields_what_the_adapter_reads_from_the_wire(
    scenario, write_size, replay_server, openai_client
):
    chunks = openai_chat_scenario(scenario)
    replay_server.enqueue(openai_chat_replay(chunks, write_size=write_size))

    deltas = list(OpenAIChatModel("gpt-4o-mini", client=openai_client).stream(HELLO))

    assert deltas == list(openai_chat_deltas(chunks))


def test_openai_chat_text_and_the_usage_only_last_chunk(replay_server, openai_client):
    replay_server.enqueue(openai_chat_replay(openai_chat_scenario("text"), write_size=3))

    deltas = list(OpenAIChatModel("gpt-4o-mini", client=openai_client).stream(HELLO))
    message = accumulate(deltas)

    assert message.content == "Bonjour, le café ☕ est prêt."
    assert message.finish_reason == "stop"
    assert deltas[-1] == Usage(12, 9, 21, 0, 4)  # usage arrives after the finish
    assert message.usage == Usage(12, 9, 21, 0, 4)


def test_openai_chat_reasoning_content_is_kept_apart(replay_server, openai_client):
    replay_server.enqueue(openai_chat_replay(openai_chat_scenario("reasoning")))

    message = accumulate(OpenAIChatModel("local", client=openai_client).stream(HELLO))

    assert (message.reasoning, message.content) == ("Two plus two.", "4")
    assert message.usage.reasoning_tokens == 5


def test_openai_chat_think_tags_split_inline_reasoning(replay_server, openai_client):
    chunks = [
        chat_chunk({"role": "assistant", "content": "<thi"}),
        chat_chunk({"content": "nk>Two plus two.</th"}),
        chat_chunk({"content": "ink>4"}),
        chat_chunk({}, "stop"),
    ]
    replay_server.enqueue(openai_chat_replay(chunks), openai_chat_replay(chunks))

    split = OpenAIChatModel("local", client=openai_client, think_tags=True)
    message = accumulate(split.stream(HELLO))
    plain = accumulate(OpenAIChatModel("local", client=openai_client).stream(HELLO))

    assert (message.reasoning, message.content) == ("Two plus two.", "4")
    assert plain.content == "<think>Two plus two.</think>4"
    assert "think_tags" not in replay_server.wait_for_requests(1)[0].body


def test_openai_chat_single_tool_call(replay_server, openai_client):
    replay_server.enqueue(openai_chat_replay(openai_chat_scenario("tool_call"), write_size=5))

    model = OpenAIChatModel("gpt-4o-mini", client=openai_client)
    message = accumulate(model.stream(HELLO, tools=[WEATHER_TOOL]))

    assert calls_of(message) == [(0, "call_Ab1", "get_weather", {"city": "Zürich"})]
    assert message.finish_reason == "tool_calls"


def test_openai_chat_parallel_tool_calls(replay_server, openai_client):
    replay_server.enqueue(openai_chat_replay(openai_chat_scenario("parallel_tool_calls")))

    message = accumulate(OpenAIChatModel("m", client=openai_client).stream(HELLO))

    assert calls_of(message) == [
        (0, "call_P1", "get_weather", {"city": "Paris"}),
        (1, "call_R2", "get_weather", {"city": "Rome"}),
    ]


def test_openai_chat_truncated_stream_finishes_with_length(replay_server, openai_client):
    replay_server.enqueue(openai_chat_replay(openai_chat_scenario("truncated")))

    message = accumulate(OpenAIChatModel("m", client=openai_client).stream(HELLO))

    assert (message.content, message.finish_reason) == ("Once upon a", "length")


def test_openai_chat_refusal(replay_server, openai_client):
    replay_server.enqueue(openai_chat_replay(openai_chat_scenario("refusal")))

    message = accumulate(OpenAIChatModel("m", client=openai_client).stream(HELLO))

    assert message.refusal == "I'm sorry, I can't help with that."
    assert message.content == ""


def test_openai_sdk_raises_on_an_error_chunk_and_the_model_reports_it(replay_server, openai_client):
    chunks = openai_chat_scenario("error")
    replay_server.enqueue(openai_chat_replay(chunks), openai_chat_replay(chunks))

    # The raw SDK raises APIError from the iterator...
    raw = openai_client.chat.completions.create(model="m", messages=HELLO, stream=True)
    with pytest.raises(openai.APIError, match="overloaded"):
        list(raw)
    # ...which the model client turns into a final ProviderError delta.
    deltas = list(OpenAIChatModel("m", client=openai_client).stream(HELLO))
    message = accumulate(deltas)

    assert deltas[-1] == ProviderError("The server is overloaded", "server_error")
    assert message.content == "Partial"
    assert message.error is not None


def test_raw_openai_sdk_chunks_feed_the_adapter_like_wire_dicts(replay_server, openai_client):
    chunks = openai_chat_scenario("parallel_tool_calls")
    replay_server.enqueue(openai_chat_replay(chunks, write_size=4))

    stream = openai_client.chat.completions.create(
        model="m", messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    with stream:
        assert list(openai_chat_deltas(stream)) == list(openai_chat_deltas(chunks))


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(write_size=st.integers(min_value=1, max_value=64))
def test_every_write_size_yields_the_same_deltas(write_size, replay_server, openai_client):
    chunks = openai_chat_scenario("parallel_tool_calls") + openai_chat_scenario("text")[1:]
    replay_server.enqueue(openai_chat_replay(chunks, write_size=write_size))

    deltas = list(OpenAIChatModel("m", client=openai_client).stream(HELLO))

    assert deltas == list(openai_chat_deltas(chunks))


def test_a_consumer_that_stops_closes_the_http_stream(replay_server, openai_client):
    chunks = openai_chat_scenario("text")
    replay_server.enqueue(openai_chat_replay(chunks, hold_after=2))

    deltas = OpenAIChatModel("m", client=openai_client).stream(HELLO)
    assert next(deltas) == TextDelta("Bonjour, ")
    deltas.close()

    (request,) = replay_server.wait_for_requests(1)
    assert request.outcome == "client_closed"


def test_a_dropped_connection_raises_after_the_deltas_that_arrived(replay_server, openai_client):
    replay_server.enqueue(openai_chat_replay(openai_chat_scenario("text"), drop_after=2))
    received = []

    # openai 3 raises APIConnectionError; openai 1 and 2 let the HTTP library's error through.
    with pytest.raises(Exception) as raised:
        for delta in OpenAIChatModel("m", client=openai_client).stream(HELLO):
            received.append(delta)

    assert type(raised.value).__name__ in ("APIConnectionError", "RemoteProtocolError")
    assert received == [TextDelta("Bonjour, ")]


def test_a_rejected_request_raises_the_sdk_error(replay_server, openai_client):
    body = {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit"}}
    replay_server.enqueue(error_replay(429, body))

    with pytest.raises(openai.RateLimitError, match="Rate limit reached"):
        list(OpenAIChatModel("m", client=openai_client).stream(HELLO))


# --- async OpenAI --------------------------------------------------------------------------


@pytest.fixture
async def async_openai_client(replay_server):
    client = openai.AsyncOpenAI(
        base_url=replay_server.openai_base_url, api_key="test", max_retries=0, timeout=10
    )
    yield client
    await client.close()


@pytest.mark.anyio
@pytest.mark.parametrize("scenario", OPENAI_CHAT_SCENARIOS)
async def test_async_openai_chat_model_matches_the_adapter(
    scenario, replay_server, async_openai_client
):
    chunks = openai_chat_scenario(scenario)
    replay_server.enqueue(openai_chat_replay(chunks, write_size=6))

    model = AsyncOpenAIChatModel("gpt-4o-mini", client=async_openai_client)
    deltas = [delta async for delta in model.astream(HELLO)]

    assert deltas == list(openai_chat_deltas(chunks))


@pytest.mark.anyio
async def test_async_consumer_that_stops_closes_the_http_stream(replay_server, async_openai_client):
    replay_server.enqueue(openai_chat_replay(openai_chat_scenario("text"), hold_after=2))

    deltas = AsyncOpenAIChatModel("m", client=async_openai_client).astream(HELLO)
    assert await deltas.__anext__() == TextDelta("Bonjour, ")
    await deltas.aclose()

    (request,) = replay_server.wait_for_requests(1)
    assert request.outcome == "client_closed"


@pytest.mark.anyio
async def test_async_llm_nodes_stream_two_conversations_at_once_through_the_real_client(
    replay_server, async_openai_client
):
    """Two AsyncLLMNode conversations, as a parallel batch in one streamed run: the real
    AsyncOpenAI client parses both replies from the wire while both stream."""
    chunks = openai_chat_scenario("text")
    replay_server.enqueue(openai_chat_replay(chunks, write_size=4), openai_chat_replay(chunks))
    model = AsyncOpenAIChatModel("gpt-4o-mini", client=async_openai_client)

    class Conversations(AsyncParallelBatchFlow):
        async def prep_async(self, shared):
            return [{"who": "ann"}, {"who": "bob"}]

    class Reply(AsyncLLMNode):
        async def prep_async(self, shared):
            return [*HELLO, {"role": "user", "content": self.params["who"]}]

        async def post_async(self, shared, messages, reply):
            shared[self.params["who"]] = reply.content

    shared: Dict[str, Any] = {}
    texts: Dict[str, str] = {"ann": "", "bob": ""}
    async with Conversations(start=Reply(model)).run_stream_async(shared) as stream:
        async for chunk in stream:
            if isinstance(chunk.data, TextDelta):
                texts[chunk.batch["who"]] += chunk.data.text

    expected = accumulate(openai_chat_deltas(chunks)).content
    assert shared == {"ann": expected, "bob": expected} and texts == shared
    bodies = [request.body for request in replay_server.wait_for_requests(2)]
    assert sorted(body["messages"][-1]["content"] for body in bodies) == ["ann", "bob"]


# --- Anthropic Messages wire format --------------------------------------------------------


def message_start(input_tokens=25, cache_read=0) -> Dict[str, Any]:
    return {
        "type": "message_start",
        "message": {
            "id": "msg_01XyZ",
            "type": "message",
            "role": "assistant",
            "model": "claude-haiku-4-5-20251001",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": input_tokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": cache_read,
                "output_tokens": 1,
            },
        },
    }


def block(index, content_block, *deltas) -> List[Dict[str, Any]]:
    events = [{"type": "content_block_start", "index": index, "content_block": content_block}]
    events += [{"type": "content_block_delta", "index": index, "delta": d} for d in deltas]
    return events + [{"type": "content_block_stop", "index": index}]


def text_block(index, *pieces) -> List[Dict[str, Any]]:
    return block(
        index,
        {"type": "text", "text": ""},
        *({"type": "text_delta", "text": piece} for piece in pieces),
    )


def tool_use_block(index, tool_id, *json_pieces) -> List[Dict[str, Any]]:
    start = {"type": "tool_use", "id": tool_id, "name": "get_weather", "input": {}}
    return block(
        index,
        start,
        *({"type": "input_json_delta", "partial_json": piece} for piece in json_pieces),
    )


def message_end(stop_reason, output_tokens=30) -> List[Dict[str, Any]]:
    return [
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": output_tokens},
        },
        {"type": "message_stop"},
    ]


def anthropic_scenario(name: str) -> List[Dict[str, Any]]:
    ping = {"type": "ping"}
    if name == "text":
        return [
            message_start(cache_read=5),
            ping,
            *text_block(0, "Bonjour, ", "le café ☕ est prêt."),
            *message_end("end_turn", output_tokens=12),
        ]
    if name == "reasoning":
        thinking = block(
            0,
            {"type": "thinking", "thinking": ""},
            {"type": "thinking_delta", "thinking": "Two "},
            {"type": "thinking_delta", "thinking": "plus two."},
            {"type": "signature_delta", "signature": "EqQBCkYIBhgCIkB0c2ln"},
        )
        redacted = block(1, {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3p"})
        return [
            message_start(),
            *thinking,
            *redacted,
            *text_block(2, "4"),
            *message_end("end_turn"),
        ]
    if name == "tool_call":
        return [
            message_start(),
            *text_block(0, "Let me check."),
            *tool_use_block(1, "toolu_01A", "", '{"ci', 'ty": "Zür', 'ich"}'),
            *message_end("tool_use"),
        ]
    if name == "parallel_tool_calls":
        return [
            message_start(),
            *text_block(0, "Checking both."),
            *tool_use_block(1, "toolu_01P", "", '{"city": "Paris"}'),
            *tool_use_block(2, "toolu_01R", "", '{"city": ', '"Rome"}'),
            *message_end("tool_use"),
        ]
    if name == "truncated":
        return [message_start(), *text_block(0, "Once upon a"), *message_end("max_tokens", 3)]
    if name == "refusal":
        return [message_start(), *text_block(0, "I can't"), *message_end("refusal", 3)]
    if name == "error":
        return [
            message_start(),
            *text_block(0, "Partial")[:-1],  # the block never stops: the stream fails in it
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
        ]
    raise KeyError(name)


ANTHROPIC_SCENARIOS = OPENAI_CHAT_SCENARIOS


@pytest.mark.parametrize("scenario", ANTHROPIC_SCENARIOS)
def test_anthropic_model_yields_what_the_adapter_reads_from_the_wire(
    scenario, write_size, replay_server, anthropic_client
):
    events = anthropic_scenario(scenario)
    replay_server.enqueue(event_replay(events, write_size=write_size))

    deltas = list(AnthropicModel("claude-haiku-4-5", client=anthropic_client).stream(HELLO))

    assert deltas == list(anthropic_deltas(events))


def anthropic_message(replay_server, anthropic_client, scenario, **stream_options):
    replay_server.enqueue(event_replay(anthropic_scenario(scenario), write_size=9))
    model = AnthropicModel("claude-haiku-4-5", client=anthropic_client)
    deltas = list(model.stream(HELLO, **stream_options))
    return deltas, accumulate(deltas)


def test_anthropic_text_with_usage_from_start_and_delta(replay_server, anthropic_client):
    deltas, message = anthropic_message(replay_server, anthropic_client, "text")

    assert message.content == "Bonjour, le café ☕ est prêt."
    assert message.finish_reason == "stop"
    assert message.usage == Usage(30, 12, 42, None, 5)  # input counts the cache read
    assert deltas[-2:] == [Usage(30, 12, 42, None, 5), Finish("stop", "end_turn")]


def test_anthropic_thinking_keeps_its_signature_and_redacted_blocks(
    replay_server, anthropic_client
):
    deltas, message = anthropic_message(replay_server, anthropic_client, "reasoning")

    assert [delta for delta in deltas if not isinstance(delta, (Usage, Finish))] == [
        ReasoningDelta("Two "),
        ReasoningDelta("plus two."),
        SignatureDelta("EqQBCkYIBhgCIkB0c2ln"),
        RedactedReasoning("EmwKAhgBEgy3va3p"),
        TextDelta("4"),
    ]
    assert (message.reasoning, message.content) == ("Two plus two.", "4")
    history = message.to_anthropic()["content"]
    assert history[0] == {
        "type": "thinking",
        "thinking": "Two plus two.",
        "signature": "EqQBCkYIBhgCIkB0c2ln",
    }
    assert history[1] == {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3p"}


def test_anthropic_single_tool_call(replay_server, anthropic_client):
    _, message = anthropic_message(replay_server, anthropic_client, "tool_call")

    assert message.content == "Let me check."
    assert calls_of(message) == [(0, "toolu_01A", "get_weather", {"city": "Zürich"})]
    assert message.finish_reason == "tool_calls"


def test_anthropic_parallel_tool_calls(replay_server, anthropic_client):
    _, message = anthropic_message(replay_server, anthropic_client, "parallel_tool_calls")

    assert calls_of(message) == [
        (0, "toolu_01P", "get_weather", {"city": "Paris"}),
        (1, "toolu_01R", "get_weather", {"city": "Rome"}),
    ]


def test_anthropic_max_tokens_finishes_with_length(replay_server, anthropic_client):
    deltas, message = anthropic_message(replay_server, anthropic_client, "truncated")

    assert (message.content, message.finish_reason) == ("Once upon a", "length")
    assert Finish("length", "max_tokens") in deltas


def test_anthropic_refusal_stop_reason(replay_server, anthropic_client):
    deltas, message = anthropic_message(replay_server, anthropic_client, "refusal")

    assert deltas[-1] == Finish("content_filter", "refusal")
    assert message.finish_reason == "content_filter"


def test_anthropic_sdk_raises_on_an_error_event_and_the_model_reports_it(
    replay_server, anthropic_client
):
    events = anthropic_scenario("error")
    replay_server.enqueue(event_replay(events), event_replay(events))

    raw = anthropic_client.messages.create(model="m", max_tokens=10, messages=HELLO, stream=True)
    with pytest.raises(anthropic.APIStatusError, match="overloaded_error"):
        list(raw)
    deltas = list(AnthropicModel("m", client=anthropic_client).stream(HELLO))
    message = accumulate(deltas)

    assert ProviderError("Overloaded", "overloaded_error") in deltas
    assert message.content == "Partial"
    assert message.error is not None


def test_anthropic_consumer_that_stops_closes_the_http_stream(replay_server, anthropic_client):
    replay_server.enqueue(event_replay(anthropic_scenario("text"), hold_after=4))

    deltas = AnthropicModel("m", client=anthropic_client).stream(HELLO)
    assert next(deltas) == Usage(30, 1, 31, None, 5)
    deltas.close()

    assert replay_server.wait_for_requests(1)[0].outcome == "client_closed"


def test_anthropic_dropped_connection_raises(replay_server, anthropic_client):
    replay_server.enqueue(event_replay(anthropic_scenario("text"), drop_after=4))
    received = []

    with pytest.raises(Exception) as raised:  # the transport's error: not a provider's word
        for delta in AnthropicModel("m", client=anthropic_client).stream(HELLO):
            received.append(delta)

    assert not isinstance(raised.value, anthropic.APIStatusError)
    assert TextDelta("Bonjour, ") in received


@pytest.fixture
async def async_anthropic_client(replay_server):
    client = anthropic.AsyncAnthropic(
        base_url=replay_server.base_url, api_key="test", max_retries=0, timeout=10
    )
    yield client
    await client.close()


@pytest.mark.anyio
@pytest.mark.parametrize("scenario", ["reasoning", "parallel_tool_calls", "error"])
async def test_async_anthropic_model_matches_the_adapter(
    scenario, replay_server, async_anthropic_client
):
    events = anthropic_scenario(scenario)
    replay_server.enqueue(event_replay(events, write_size=11))

    model = AsyncAnthropicModel("claude-haiku-4-5", client=async_anthropic_client)
    deltas = [delta async for delta in model.astream(HELLO)]

    assert deltas == list(anthropic_deltas(events))


# --- OpenAI Responses wire format ----------------------------------------------------------


def response_object(status, output, usage=None, **extra) -> Dict[str, Any]:
    return {
        "id": "resp_68a1",
        "object": "response",
        "created_at": 1727000000,
        "model": "gpt-5-mini-2025-08-07",
        "status": status,
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": usage,
        **extra,
    }


def responses_usage(input_tokens=20, output_tokens=10, reasoning=0, cached=0) -> Dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": input_tokens + output_tokens,
    }


def message_item_events(output_index, item_id, *pieces, refusal=False) -> List[Dict[str, Any]]:
    kind = "refusal" if refusal else "output_text"
    empty_part = (
        {"type": "refusal", "refusal": ""}
        if refusal
        else {"type": "output_text", "text": "", "annotations": []}
    )
    full = "".join(pieces)
    done_part = (
        {"type": "refusal", "refusal": full}
        if refusal
        else {"type": "output_text", "text": full, "annotations": []}
    )
    where = {"item_id": item_id, "output_index": output_index, "content_index": 0}
    item = {
        "id": item_id,
        "type": "message",
        "role": "assistant",
        "status": "in_progress",
        "content": [],
    }
    events: List[Dict[str, Any]] = [
        {"type": "response.output_item.added", "output_index": output_index, "item": item},
        {"type": "response.content_part.added", **where, "part": empty_part},
    ]
    delta_type = "response.refusal.delta" if refusal else "response.output_text.delta"
    for piece in pieces:
        extra = {} if refusal else {"logprobs": []}
        events.append({"type": delta_type, **where, "delta": piece, **extra})
    done_field = {"refusal": full} if refusal else {"text": full, "logprobs": []}
    events.append({"type": f"response.{kind}.done", **where, **done_field})
    events.append({"type": "response.content_part.done", **where, "part": done_part})
    events.append(
        {
            "type": "response.output_item.done",
            "output_index": output_index,
            "item": {**item, "status": "completed", "content": [done_part]},
        }
    )
    return events  # fmt: skip


def function_call_events(output_index, item_id, call_id, *pieces) -> List[Dict[str, Any]]:
    item = {
        "id": item_id,
        "type": "function_call",
        "status": "in_progress",
        "call_id": call_id,
        "name": "get_weather",
        "arguments": "",
    }
    where = {"item_id": item_id, "output_index": output_index}
    events: List[Dict[str, Any]] = [
        {"type": "response.output_item.added", "output_index": output_index, "item": item}
    ]
    events += [
        {"type": "response.function_call_arguments.delta", **where, "delta": piece}
        for piece in pieces
    ]
    full = "".join(pieces)
    events.append({"type": "response.function_call_arguments.done", **where, "arguments": full})
    events.append(
        {
            "type": "response.output_item.done",
            "output_index": output_index,
            "item": {**item, "status": "completed", "arguments": full},
        }
    )
    return events  # fmt: skip


def reasoning_item_events(output_index, item_id, *pieces) -> List[Dict[str, Any]]:
    item = {"id": item_id, "type": "reasoning", "summary": []}
    where = {"item_id": item_id, "output_index": output_index, "summary_index": 0}
    full = "".join(pieces)
    return [
        {"type": "response.output_item.added", "output_index": output_index, "item": item},
        {"type": "response.reasoning_summary_part.added", **where,
         "part": {"type": "summary_text", "text": ""}},
        *({"type": "response.reasoning_summary_text.delta", **where, "delta": piece}
          for piece in pieces),
        {"type": "response.reasoning_summary_text.done", **where, "text": full},
        {"type": "response.reasoning_summary_part.done", **where,
         "part": {"type": "summary_text", "text": full}},
        {"type": "response.output_item.done", "output_index": output_index,
         "item": {**item, "summary": [{"type": "summary_text", "text": full}]}},
    ]  # fmt: skip


def numbered(events) -> List[Dict[str, Any]]:
    return [{**event, "sequence_number": number} for number, event in enumerate(events)]


def responses_scenario(name: str) -> List[Dict[str, Any]]:
    opening = [
        {"type": "response.created", "response": response_object("in_progress", [])},
        {"type": "response.in_progress", "response": response_object("in_progress", [])},
    ]

    def completed(usage=None, status="completed", kind="response.completed", **extra):
        response = response_object(status, [], usage or responses_usage(), **extra)
        return [{"type": kind, "response": response}]

    if name == "text":
        body = message_item_events(0, "msg_1", "Bonjour, ", "le café ☕ est prêt.")
        return numbered(opening + body + completed(responses_usage(cached=8)))
    if name == "reasoning":
        summary = reasoning_item_events(0, "rs_1", "**Adding** ", "two and two.")
        body = summary + message_item_events(1, "msg_1", "4")
        return numbered(opening + body + completed(responses_usage(reasoning=64)))
    if name == "tool_call":
        body = function_call_events(0, "fc_1", "call_Ab1", '{"ci', 'ty": "Zür', 'ich"}')
        return numbered(opening + body + completed())
    if name == "parallel_tool_calls":
        body = function_call_events(0, "fc_1", "call_P1", '{"city": "Paris"}')
        body += function_call_events(1, "fc_2", "call_R2", '{"city": ', '"Rome"}')
        return numbered(opening + body + completed())
    if name == "truncated":
        body = message_item_events(0, "msg_1", "Once upon a")
        details = {"incomplete_details": {"reason": "max_output_tokens"}}
        return numbered(
            opening + body + completed(None, "incomplete", "response.incomplete", **details)
        )
    if name == "refusal":
        body = message_item_events(0, "msg_1", "I'm sorry, ", "I can't help.", refusal=True)
        return numbered(opening + body + completed())
    if name == "error":
        body = message_item_events(0, "msg_1", "Partial")[:3]
        error = {"type": "error", "code": "server_error", "message": "Overloaded", "param": None}
        return numbered(opening + body + [error])
    raise KeyError(name)


@pytest.mark.parametrize("scenario", OPENAI_CHAT_SCENARIOS)
def test_responses_model_yields_what_the_adapter_reads_from_the_wire(
    scenario, write_size, replay_server, openai_client
):
    events = responses_scenario(scenario)
    replay_server.enqueue(event_replay(events, write_size=write_size))

    deltas = list(OpenAIResponsesModel("gpt-5-mini", client=openai_client).stream(HELLO))

    assert deltas == list(openai_responses_deltas(events))


def responses_message(replay_server, openai_client, scenario):
    replay_server.enqueue(event_replay(responses_scenario(scenario), write_size=13))
    deltas = list(OpenAIResponsesModel("gpt-5-mini", client=openai_client).stream(HELLO))
    return deltas, accumulate(deltas)


def test_responses_text_and_usage(replay_server, openai_client):
    deltas, message = responses_message(replay_server, openai_client, "text")

    assert message.content == "Bonjour, le café ☕ est prêt."
    assert message.finish_reason == "stop"
    assert message.usage == Usage(20, 10, 30, 0, 8)


def test_responses_reasoning_summary(replay_server, openai_client):
    _, message = responses_message(replay_server, openai_client, "reasoning")

    assert (message.reasoning, message.content) == ("**Adding** two and two.", "4")
    assert message.usage.reasoning_tokens == 64


def test_responses_function_calls(replay_server, openai_client):
    _, single = responses_message(replay_server, openai_client, "tool_call")
    _, parallel = responses_message(replay_server, openai_client, "parallel_tool_calls")

    assert calls_of(single) == [(0, "call_Ab1", "get_weather", {"city": "Zürich"})]
    assert calls_of(parallel) == [
        (0, "call_P1", "get_weather", {"city": "Paris"}),
        (1, "call_R2", "get_weather", {"city": "Rome"}),
    ]
    assert single.finish_reason == parallel.finish_reason == "tool_calls"


def test_responses_incomplete_refusal_and_error(replay_server, openai_client):
    _, truncated = responses_message(replay_server, openai_client, "truncated")
    _, refused = responses_message(replay_server, openai_client, "refusal")
    deltas, failed = responses_message(replay_server, openai_client, "error")

    assert (truncated.content, truncated.finish_reason) == ("Once upon a", "length")
    assert refused.refusal == "I'm sorry, I can't help."
    assert deltas[-1] == ProviderError("Overloaded", "server_error")
    assert failed.content == "Partial"


def test_responses_consumer_that_stops_closes_the_http_stream(replay_server, openai_client):
    replay_server.enqueue(event_replay(responses_scenario("text"), hold_after=6))

    deltas = OpenAIResponsesModel("m", client=openai_client).stream(HELLO)
    assert next(deltas) == TextDelta("Bonjour, ")
    deltas.close()

    assert replay_server.wait_for_requests(1)[0].outcome == "client_closed"


# --- the raw path: the SDK sends the request, we decode the body's SSE --------------------
#
# By default the model clients ask the SDK for the unread HTTP response
# (`with_streaming_response`) and decode its server-sent events themselves; `raw_stream=False`
# iterates the SDK's own stream objects. Both must give the deltas the adapter reads from the
# decoded dicts, end alike on errors, and close the connection when the consumer stops.

PROVIDERS = ["chat", "responses", "anthropic"]
PATHS = ["raw", "sdk"]


def provider_replay(provider: str, scenario: str, **options: Any):
    """(the replay of a recorded scenario, the adapter's deltas for its decoded events)."""
    if provider == "chat":
        chunks = openai_chat_scenario(scenario)
        return openai_chat_replay(chunks, **options), list(openai_chat_deltas(chunks))
    if provider == "responses":
        events = responses_scenario(scenario)
        return event_replay(events, **options), list(openai_responses_deltas(events))
    events = anthropic_scenario(scenario)
    return event_replay(events, **options), list(anthropic_deltas(events))


def provider_model(provider: str, client: Any, path: str, asynchronous: bool = False):
    raw = path == "raw"
    if provider == "chat":
        kind: Any = AsyncOpenAIChatModel if asynchronous else OpenAIChatModel
    elif provider == "responses":
        kind = AsyncOpenAIResponsesModel if asynchronous else OpenAIResponsesModel
    else:
        kind = AsyncAnthropicModel if asynchronous else AnthropicModel
    return kind("m", client=client, raw_stream=raw)


@pytest.fixture
def clients(openai_client, anthropic_client):
    return {"chat": openai_client, "responses": openai_client, "anthropic": anthropic_client}


@pytest.fixture
async def async_clients(async_openai_client, async_anthropic_client):
    return {
        "chat": async_openai_client,
        "responses": async_openai_client,
        "anthropic": async_anthropic_client,
    }


def read_raw(request) -> bool:
    """Whether a request was sent for the raw path (the SDK marks it in a header)."""
    headers = {name.lower(): value for name, value in request.headers.items()}
    return headers.get("x-stainless-raw-response") == "stream"


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("scenario", OPENAI_CHAT_SCENARIOS)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_both_paths_yield_what_the_adapter_reads_from_the_wire_in_7_byte_writes(
    provider, scenario, path, replay_server, clients
):
    replay, expected = provider_replay(provider, scenario, write_size=7)
    replay_server.enqueue(replay)

    deltas = list(provider_model(provider, clients[provider], path).stream(HELLO))

    assert deltas == expected
    assert read_raw(replay_server.wait_for_requests(1)[0]) == (path == "raw")


@pytest.mark.anyio
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("scenario", ["text", "parallel_tool_calls", "error"])
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_both_async_paths_yield_what_the_adapter_reads(
    provider, scenario, path, replay_server, async_clients
):
    replay, expected = provider_replay(provider, scenario, write_size=7)
    replay_server.enqueue(replay)

    model = provider_model(provider, async_clients[provider], path, asynchronous=True)
    deltas = [delta async for delta in model.astream(HELLO)]

    assert deltas == expected
    assert read_raw(replay_server.wait_for_requests(1)[0]) == (path == "raw")


def with_events_after_the_error(provider: str):
    """The error scenario with more output after the error: neither path reads past it."""
    replay, expected = provider_replay(provider, "error")
    if provider == "chat":
        more = sse_frame(chat_chunk({"content": " and more"}))
    elif provider == "responses":
        more = sse_frame({"type": "response.output_text.delta", "item_id": "msg_1",
                          "output_index": 0, "content_index": 0, "delta": " and more"},
                         event="response.output_text.delta")  # fmt: skip
    else:
        more = sse_frame({"type": "content_block_delta", "index": 0,
                          "delta": {"type": "text_delta", "text": " and more"}},
                         event="content_block_delta")  # fmt: skip
    frames = replay.frames
    if provider == "chat":  # keep `data: [DONE]` last
        frames = frames[:-1] + (more,) + frames[-1:]
    else:
        frames = frames + (more,)
    return Replay(frames, write_size=7), expected


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_error_event_is_the_last_word_on_both_paths(provider, path, replay_server, clients):
    replay, expected = with_events_after_the_error(provider)
    replay_server.enqueue(replay)

    deltas = list(provider_model(provider, clients[provider], path).stream(HELLO))

    assert isinstance(deltas[-1], ProviderError) or isinstance(deltas[-2], ProviderError)
    assert TextDelta(" and more") not in deltas
    assert accumulate(deltas).content == "Partial"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_raw_path_consumer_that_stops_closes_the_http_stream(provider, replay_server, clients):
    replay, _ = provider_replay(provider, "text", hold_after=8)
    replay_server.enqueue(replay)

    deltas = provider_model(provider, clients[provider], "raw").stream(HELLO)
    next(deltas)
    deltas.close()

    (request,) = replay_server.wait_for_requests(1)
    assert read_raw(request) and request.outcome == "client_closed"


@pytest.mark.anyio
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_raw_path_async_consumer_that_stops_closes_the_http_stream(
    provider, replay_server, async_clients
):
    replay, _ = provider_replay(provider, "text", hold_after=8)
    replay_server.enqueue(replay)

    deltas = provider_model(provider, async_clients[provider], "raw", True).astream(HELLO)
    await deltas.__anext__()
    await deltas.aclose()

    (request,) = replay_server.wait_for_requests(1)
    assert read_raw(request) and request.outcome == "client_closed"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_stopping_an_llm_node_run_stream_closes_the_http_stream(provider, replay_server, clients):
    replay, _ = provider_replay(provider, "text", hold_after=8)
    replay_server.enqueue(replay)
    flow = StreamFlow(start=LLMNode(provider_model(provider, clients[provider], "raw")))

    stream = flow.run_stream({"messages": list(HELLO)})
    for chunk in stream:
        if isinstance(chunk.data, TextDelta):
            break
    stream.close()

    assert replay_server.wait_for_requests(1)[0].outcome == "client_closed"


@pytest.mark.anyio
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_stopping_an_async_llm_node_run_stream_closes_the_http_stream(
    provider, replay_server, async_clients
):
    replay, _ = provider_replay(provider, "text", hold_after=8)
    replay_server.enqueue(replay)
    model = provider_model(provider, async_clients[provider], "raw", asynchronous=True)
    flow = AsyncStreamFlow(start=AsyncLLMNode(model))

    async with flow.run_stream_async({"messages": list(HELLO)}) as stream:
        async for chunk in stream:
            if isinstance(chunk.data, TextDelta):
                break

    assert replay_server.wait_for_requests(1)[0].outcome == "client_closed"


REJECTIONS = {
    "chat": (openai.RateLimitError, {"error": {"message": "Slow down", "type": "requests"}}),
    "responses": (openai.RateLimitError, {"error": {"message": "Slow down", "type": "requests"}}),
    "anthropic": (
        anthropic.RateLimitError,
        {"type": "error", "error": {"type": "rate_limit_error", "message": "Slow down"}},
    ),
}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_raw_path_rejected_request_raises_the_sdk_error(provider, replay_server, clients):
    error, body = REJECTIONS[provider]
    replay_server.enqueue(error_replay(429, body))

    with pytest.raises(error, match="Slow down"):
        list(provider_model(provider, clients[provider], "raw").stream(HELLO))


@pytest.mark.anyio
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_raw_path_async_rejected_request_raises_the_sdk_error(
    provider, replay_server, async_clients
):
    error, body = REJECTIONS[provider]
    replay_server.enqueue(error_replay(429, body))

    model = provider_model(provider, async_clients[provider], "raw", asynchronous=True)
    with pytest.raises(error, match="Slow down"):
        [delta async for delta in model.astream(HELLO)]


def test_raw_path_dropped_connection_raises_the_openai_connection_error(
    replay_server, openai_client
):
    replay, _ = provider_replay("responses", "text", drop_after=5)
    replay_server.enqueue(replay)
    received = []

    with pytest.raises(openai.APIConnectionError):
        for delta in provider_model("responses", openai_client, "raw").stream(HELLO):
            received.append(delta)

    assert received == [TextDelta("Bonjour, ")]


@pytest.mark.anyio
async def test_raw_path_async_dropped_connection_raises(replay_server, async_openai_client):
    replay_server.enqueue(openai_chat_replay(openai_chat_scenario("text"), drop_after=2))
    received = []

    with pytest.raises(openai.APIConnectionError):
        async for delta in AsyncOpenAIChatModel("m", client=async_openai_client).astream(HELLO):
            received.append(delta)

    assert received == [TextDelta("Bonjour, ")]


def test_a_client_without_a_streaming_response_api_uses_its_stream_objects():
    """Stand-in clients (test doubles, wrappers) that only have `create` keep working."""

    class Completions:
        def create(self, **request):
            return iter([chat_chunk({"content": "hi"}), chat_chunk({}, "stop")])

    client = type("Client", (), {"chat": type("Chat", (), {"completions": Completions()})()})()

    assert accumulate(OpenAIChatModel("m", client=client).stream(HELLO)).content == "hi"


# --- item ids a server rotates, through the real SDK (issue 10 §3) -------------------------


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("scenario", ["reasoning", "refusal"])
def test_responses_item_ids_rotating_on_every_event_fold_once(
    scenario, path, replay_server, openai_client
):
    events = rotate_item_ids(responses_scenario(scenario))
    replay_server.enqueue(event_replay(events, write_size=7))

    deltas = list(provider_model("responses", openai_client, path).stream(HELLO))
    message = accumulate(deltas)

    if scenario == "reasoning":
        assert (message.reasoning, message.content) == ("**Adding** two and two.", "4")
    else:
        assert message.refusal == "I'm sorry, I can't help."
    assert deltas == list(openai_responses_deltas(events))


# --- LiteLLM -------------------------------------------------------------------------------


@pytest.mark.litellm
def test_real_litellm_against_the_replay_server(replay_server, monkeypatch):
    """Marked `litellm`: litellm pins openai<3, so it cannot share an environment with the
    openai SDK tested above; .ci/run runs these in an environment of their own
    (`pytest -m litellm`). (No `tools` here: litellm then imports its MCP handler, which
    needs the separate `mcp` package.)"""
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    chunks = openai_chat_scenario("parallel_tool_calls")
    replay_server.enqueue(openai_chat_replay(chunks, write_size=7))

    model = LiteLLMModel(
        "openai/gpt-4o-mini", api_base=replay_server.openai_base_url, api_key="test"
    )
    deltas = list(model.stream(HELLO))

    assert deltas == list(openai_chat_deltas(chunks))
    assert replay_server.wait_for_requests(1)[0].body["stream"] is True


@pytest.mark.litellm
def test_real_litellm_stream_is_closed_when_the_consumer_stops(replay_server, monkeypatch):
    """Marked `litellm` (see above)."""
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    replay_server.enqueue(openai_chat_replay(openai_chat_scenario("text"), hold_after=2))

    model = LiteLLMModel("openai/m", api_base=replay_server.openai_base_url, api_key="test")
    deltas = model.stream(HELLO)
    assert next(deltas) == TextDelta("Bonjour, ")
    deltas.close()

    assert replay_server.wait_for_requests(1)[0].outcome == "client_closed"


# --- the replay server itself --------------------------------------------------------------


def test_a_request_with_nothing_queued_gets_an_error_saying_what_to_do(
    replay_server, openai_client
):
    with pytest.raises(openai.InternalServerError, match=r"call server\.enqueue"):
        list(OpenAIChatModel("m", client=openai_client).stream(HELLO))

    assert replay_server.wait_for_requests(1)[0].outcome == "completed"


def test_waiting_for_a_request_that_never_comes_times_out_with_a_hint(replay_server):
    with pytest.raises(TimeoutError, match="expected 1 answered request"):
        replay_server.wait_for_requests(1, timeout=0.01)
