"""The scripted model plays turns from a script, offline and deterministically."""

from __future__ import annotations

import json

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pocketflow_stream.llm import scripted
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
from pocketflow_stream.llm.models import AsyncChatModel, ChatModel
from pocketflow_stream.llm.scripted import ScriptedModel, ScriptExhausted, ToolCallSpec, Turn

HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param


def kinds(deltas):
    return [delta.type for delta in deltas]


def joined(deltas, cls):
    return "".join(delta.text for delta in deltas if isinstance(delta, cls))


def test_a_string_turn_streams_text_in_chunk_size_pieces_then_usage_and_finish():
    deltas = list(ScriptedModel(["Hello, world!"], chunk_size=5).stream(HELLO))

    assert [delta.text for delta in deltas[:-2]] == ["Hello", ", wor", "ld!"]
    assert isinstance(deltas[-2], Usage)
    assert deltas[-1] == Finish("stop", "stop")


def test_a_turn_streams_reasoning_then_text_then_refusal_then_tool_calls():
    turn = Turn(
        reasoning="think",
        text="say",
        refusal="no",
        tool_calls=[ToolCallSpec("search", {"q": "x"})],
    )
    deltas = list(ScriptedModel([turn], chunk_size=100).stream(HELLO))

    assert kinds(deltas) == [
        "reasoning",
        "text",
        "refusal",
        "tool_call_start",
        "tool_call_delta",
        "tool_call_end",
        "usage",
        "finish",
    ]
    assert deltas[-1].reason == "tool_calls"


def test_tool_call_arguments_stream_as_json_fragments_with_deterministic_ids():
    arguments = {"city": "Zürich", "days": 3}
    turn = Turn(tool_calls=[ToolCallSpec("weather", arguments), ToolCallSpec("time", {}, id="x")])
    model = ScriptedModel(["first", turn], chunk_size=3)
    list(model.stream(HELLO))
    deltas = list(model.stream(HELLO))  # the second turn: ids are numbered by turn

    starts = [delta for delta in deltas if isinstance(delta, ToolCallStart)]
    assert starts == [ToolCallStart(0, "call_2_0", "weather"), ToolCallStart(1, "x", "time")]
    fragments = [delta.arguments for delta in deltas if isinstance(delta, ToolCallDelta)]
    assert all(0 < len(fragment) <= 3 for fragment in fragments)
    first_call = "".join(
        delta.arguments for delta in deltas if isinstance(delta, ToolCallDelta) and not delta.index
    )
    assert json.loads(first_call) == arguments
    assert [delta.index for delta in deltas if isinstance(delta, ToolCallEnd)] == [0, 1]


def test_string_arguments_are_sent_verbatim_even_when_broken():
    turn = {"tool_calls": [{"name": "f", "arguments": '{"a": 1,'}]}
    deltas = list(ScriptedModel([turn], chunk_size=2).stream(HELLO))

    sent = "".join(delta.arguments for delta in deltas if isinstance(delta, ToolCallDelta))
    assert sent == '{"a": 1,'


@given(
    text=st.text(max_size=60),
    reasoning=st.text(max_size=60),
    arguments=st.dictionaries(st.text(max_size=5), st.integers(), max_size=4),
    chunk_size=st.integers(min_value=1, max_value=12),
)
def test_every_chunk_size_reassembles_the_turn_exactly(text, reasoning, arguments, chunk_size):
    turn = Turn(text=text, reasoning=reasoning, tool_calls=[ToolCallSpec("f", arguments)])
    deltas = list(ScriptedModel([turn], chunk_size=chunk_size).stream(HELLO))

    assert joined(deltas, TextDelta) == text
    assert joined(deltas, ReasoningDelta) == reasoning
    sent = "".join(delta.arguments for delta in deltas if isinstance(delta, ToolCallDelta))
    assert json.loads(sent) == arguments
    pieces = [getattr(delta, "text", None) or getattr(delta, "arguments", "") for delta in deltas]
    assert all(len(piece) <= chunk_size for piece in pieces)


def test_the_same_script_always_streams_the_same_deltas():
    script = ["a", Turn(reasoning="r", tool_calls=[ToolCallSpec("f", {"x": [1, 2]})])]

    def play():
        model = ScriptedModel(script, chunk_size=2)
        return [list(model.stream(HELLO)) for _ in script]

    assert play() == play()


def test_a_dict_turn_reads_like_a_turn():
    as_dict = {
        "text": "hi",
        "tool_calls": [{"name": "f", "arguments": {"a": 1}, "id": "c1"}],
        "usage": {"input_tokens": 7, "output_tokens": 3},
        "finish": "length",
    }
    as_turn = Turn(
        text="hi",
        tool_calls=[ToolCallSpec("f", {"a": 1}, id="c1")],
        usage=Usage(input_tokens=7, output_tokens=3),
        finish="length",
    )

    assert list(ScriptedModel([as_dict]).stream(HELLO)) == list(
        ScriptedModel([as_turn]).stream(HELLO)
    )


def test_given_usage_and_finish_are_streamed_as_given():
    usage = Usage(input_tokens=10, output_tokens=2, total_tokens=12)
    deltas = list(ScriptedModel([Turn(text="cut", usage=usage, finish="length")]).stream(HELLO))

    assert deltas[-2:] == [usage, Finish("length", "length")]


def test_default_usage_is_an_estimate_of_four_characters_per_token():
    turn = Turn(reasoning="12345678", text="1234")
    deltas = list(ScriptedModel([turn]).stream([{"role": "user", "content": "abcdefgh"}]))

    usage = deltas[-2]
    assert (usage.input_tokens, usage.output_tokens, usage.reasoning_tokens) == (2, 3, 2)
    assert usage.total_tokens == 5


def test_an_error_turn_ends_with_a_provider_error_and_no_finish():
    deltas = list(ScriptedModel([Turn(text="partial", error="overloaded")]).stream(HELLO))

    assert joined(deltas, TextDelta) == "partial"
    assert deltas[-1] == ProviderError("overloaded", "scripted_error")
    assert not any(isinstance(delta, (Finish, Usage)) for delta in deltas)


def test_a_refusal_turn_streams_refusal_deltas():
    deltas = list(ScriptedModel([Turn(refusal="I can't help with that.")]).stream(HELLO))

    assert joined(deltas, RefusalDelta) == "I can't help with that."
    assert deltas[-1].reason == "stop"


def test_a_script_function_answers_the_conversation():
    def answer(messages, tools):
        if messages[-1]["role"] == "tool":
            return f"The result is {messages[-1]['content']}."
        return Turn(tool_calls=[ToolCallSpec(tools[0]["function"]["name"], {"a": 2, "b": 3})])

    tools = [{"type": "function", "function": {"name": "add", "parameters": {}}}]
    model = ScriptedModel(answer, chunk_size=50)
    first = list(model.stream(HELLO, tools=tools))
    history = HELLO + [{"role": "tool", "tool_call_id": "call_1_0", "content": "5"}]
    second = list(model.stream(history, tools=tools))

    assert first[0] == ToolCallStart(0, "call_1_0", "add")
    assert joined(second, TextDelta) == "The result is 5."
    assert [call["messages"] for call in model.calls] == [HELLO, history]
    assert model.calls[0]["tools"] == tools


def test_running_out_of_script_says_how_many_turns_there_were():
    model = ScriptedModel(["one", "two"])
    list(model.stream(HELLO))
    list(model.stream(HELLO))

    with pytest.raises(ScriptExhausted, match=r"called 3 times .* 2 turn"):
        model.stream(HELLO)


def test_a_script_function_returning_none_is_an_error():
    with pytest.raises(ScriptExhausted, match="returned None"):
        ScriptedModel(lambda messages, tools: None).stream(HELLO)


def test_options_are_recorded_with_each_call():
    model = ScriptedModel(["x"])
    list(model.stream(HELLO, temperature=0))

    assert model.calls == [{"messages": HELLO, "tools": None, "options": {"temperature": 0}}]


def test_deltas_are_made_as_they_are_read(monkeypatch):
    made = []

    def counted_text(text):
        made.append(text)
        return TextDelta(text)

    monkeypatch.setattr(scripted, "TextDelta", counted_text)
    deltas = ScriptedModel(["x" * 1_000_000], chunk_size=1).stream(HELLO)

    assert made == []  # nothing made at the call
    assert next(deltas) == TextDelta("x")
    assert made == ["x"]  # the first delta did not wait for the other 999,999


@pytest.mark.anyio
async def test_async_deltas_are_made_as_they_are_read(monkeypatch):
    made = []

    def counted_text(text):
        made.append(text)
        return TextDelta(text)

    monkeypatch.setattr(scripted, "TextDelta", counted_text)
    deltas = ScriptedModel(["x" * 1_000_000], chunk_size=1).astream(HELLO)

    assert await deltas.__anext__() == TextDelta("x")
    assert made == ["x"]
    await deltas.aclose()


def test_calls_keep_the_most_recent_hundred_by_default():
    model = ScriptedModel(lambda messages, tools: messages[-1]["content"])

    for number in range(250):
        list(model.stream([{"role": "user", "content": str(number)}]))

    assert model.call_count == 250
    assert len(model.calls) == 100
    assert [call["messages"][0]["content"] for call in model.calls] == [
        str(number) for number in range(150, 250)
    ]


def test_record_calls_sets_the_bound_none_keeps_all_zero_keeps_none():
    def play(record_calls):
        model = ScriptedModel(["a", "b", "c"], record_calls=record_calls)
        deltas = [list(model.stream(HELLO)) for _ in range(3)]
        return model, deltas

    two, _ = play(2)
    every, _ = play(None)
    none, deltas = play(0)

    assert len(two.calls) == 2 and len(every.calls) == 3 and none.calls == []
    assert none.call_count == 3 and joined(deltas[2], TextDelta) == "c"  # turns still advance
    with pytest.raises(ValueError, match="record_calls"):
        ScriptedModel([], record_calls=-1)


def test_tool_call_ids_keep_counting_turns_past_the_bound():
    model = ScriptedModel(lambda m, t: Turn(tool_calls=[ToolCallSpec("f")]), record_calls=1)
    for _ in range(3):
        deltas = list(model.stream(HELLO))

    assert deltas[0] == ToolCallStart(0, "call_3_0", "f")


@pytest.mark.parametrize(
    ("turn", "error", "message"),
    [
        ({"txt": "typo"}, TypeError, "keys are text, reasoning"),
        (42, TypeError, "got int"),
        (Turn(finish="done"), ValueError, "finish='done'"),
    ],
)
def test_a_malformed_turn_is_rejected_with_a_clear_message(turn, error, message):
    with pytest.raises(error, match=message):
        ScriptedModel([turn]).stream(HELLO)


def test_pace_settings_are_validated():
    with pytest.raises(ValueError, match="chunk_size"):
        ScriptedModel([], chunk_size=0)
    with pytest.raises(ValueError, match="delay"):
        ScriptedModel([], delay=-1)


def test_stream_sleeps_the_delay_between_deltas(monkeypatch):
    sleeps = []
    monkeypatch.setattr(scripted.time, "sleep", sleeps.append)
    deltas = list(ScriptedModel(["abcdef"], chunk_size=2, delay=0.25).stream(HELLO))

    assert sleeps == [0.25] * (len(deltas) - 1)


def test_the_scripted_model_satisfies_both_model_protocols():
    model = ScriptedModel([])

    assert isinstance(model, ChatModel)
    assert isinstance(model, AsyncChatModel)


@pytest.mark.anyio
async def test_astream_streams_the_same_deltas_as_stream():
    script = [Turn(reasoning="hmm", text="ok", tool_calls=[ToolCallSpec("f", {"a": 1})])]
    expected = list(ScriptedModel(script, chunk_size=2).stream(HELLO))

    received = [delta async for delta in ScriptedModel(script, chunk_size=2).astream(HELLO)]

    assert received == expected


@pytest.mark.anyio
async def test_astream_waits_with_anyio_so_other_tasks_run_between_deltas():
    order = []

    async def consume(name):
        async for _delta in ScriptedModel(["abcd"], chunk_size=1, delay=0.001).astream(HELLO):
            order.append(name)

    async with anyio.create_task_group() as group:
        group.start_soon(consume, "a")
        group.start_soon(consume, "b")

    # A blocking sleep would let one consumer finish before the other starts: one switch.
    switches = sum(1 for before, after in zip(order, order[1:]) if before != after)
    assert switches > 1


@pytest.mark.anyio
async def test_astream_can_be_cancelled_between_deltas():
    received = []
    with anyio.move_on_after(0.05):
        async for delta in ScriptedModel(["x" * 1000], chunk_size=1, delay=0.01).astream(HELLO):
            received.append(delta)

    assert 0 < len(received) < 1000
