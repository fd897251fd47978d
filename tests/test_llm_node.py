"""LLMNode: a model's unified deltas stream out as chunks; post gets the accumulated message."""

from __future__ import annotations

import pytest

from pocketflow_stream import AsyncStreamFlow, Chunk, Retry, StreamFlow
from pocketflow_stream.llm import (
    AssistantMessage,
    AsyncLLMNode,
    LLMNode,
    ModelError,
    ScriptedModel,
    TextDelta,
    ToolCallDelta,
    ToolCallSpec,
    Turn,
)


def conversation():
    return {"messages": [{"role": "user", "content": "hi"}]}


def test_deltas_stream_as_chunks_and_post_gets_the_accumulated_message():
    model = ScriptedModel(
        [Turn(reasoning="hmm", text="Hello there", tool_calls=[ToolCallSpec("f", {"x": 1})])],
        chunk_size=2,
    )
    seen = {}

    class Plan(LLMNode):
        def post(self, shared, messages, reply):
            seen["reply"] = reply
            return super().post(shared, messages, reply)

    shared = conversation()
    stream = StreamFlow(start=Plan(model)).run_stream(shared)
    chunks = []
    try:
        while True:
            chunks.append(next(stream))
    except StopIteration as stop:
        action = stop.value

    assert all(type(chunk) is Chunk and chunk.node == "Plan" for chunk in chunks)
    text = "".join(c.data.text for c in chunks if isinstance(c.data, TextDelta))
    arguments = "".join(c.data.arguments for c in chunks if isinstance(c.data, ToolCallDelta))
    reply = seen["reply"]
    assert isinstance(reply, AssistantMessage)
    assert (text, reply.content, reply.reasoning) == ("Hello there", "Hello there", "hmm")
    assert reply.tool_calls[0].arguments == {"x": 1} and arguments == '{"x": 1}'
    assert action == "tool_calls"
    assert shared["messages"][-1] == reply.to_openai()
    assert model.calls[0]["messages"] == [{"role": "user", "content": "hi"}]


def test_a_text_only_reply_takes_the_default_action():
    shared = conversation()
    assert StreamFlow(start=LLMNode(ScriptedModel(["Hi!"]))).run(shared) is None
    assert shared["messages"][-1]["content"] == "Hi!"


def test_a_provider_error_mid_stream_is_retried_and_the_failed_attempt_is_marked():
    model = ScriptedModel([Turn(text="partial", error="overloaded"), Turn(text="fine")])
    shared = conversation()
    items = list(LLMNode(model, max_retries=2).run_stream(shared, events=True))

    retries = [item for item in items if isinstance(item, Retry)]
    assert len(retries) == 1 and "overloaded" in retries[0].error
    texts = [(c.attempt, c.data.text) for c in items if type(c) is Chunk and c.data.type == "text"]
    assert "".join(text for attempt, text in texts if attempt == 0) == "partial"
    assert "".join(text for attempt, text in texts if attempt == 1) == "fine"
    assert shared["messages"][-1]["content"] == "fine"


def test_a_provider_error_after_the_last_attempt_raises_model_error_with_the_node_path():
    model = ScriptedModel([Turn(text="x", error="overloaded")])
    with pytest.raises(ModelError, match="overloaded") as caught:
        StreamFlow(start=LLMNode(model, name="Writer"), name="Agent").run(conversation())
    assert caught.value.node_path == ("Writer",)


def test_stopping_the_stream_closes_the_model_stream():
    closed = []

    class Model:
        def stream(self, messages, *, tools=None, **options):
            try:
                for word in ["a", "b", "c"]:
                    yield TextDelta(word)
            finally:
                closed.append(True)

    stream = LLMNode(Model()).run_stream(conversation())
    assert next(stream).data == TextDelta("a")
    stream.close()
    assert closed == [True]


def test_a_node_without_a_model_says_how_to_give_one():
    with pytest.raises(TypeError, match="has no model"):
        LLMNode().run(conversation())


# --- AsyncLLMNode ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_async_llm_node_streams_the_same_chunks_and_message_as_the_sync_one():
    def script():
        return [Turn(reasoning="hmm", text="Hello there", tool_calls=[ToolCallSpec("f", {"x": 1})])]

    sync_shared = conversation()
    sync_chunks = list(StreamFlow(start=LLMNode(ScriptedModel(script()))).run_stream(sync_shared))

    shared = conversation()
    async with AsyncStreamFlow(start=AsyncLLMNode(ScriptedModel(script()))).run_stream_async(
        shared
    ) as stream:
        chunks = [chunk async for chunk in stream]

    assert [chunk.data for chunk in chunks] == [chunk.data for chunk in sync_chunks]
    assert {chunk.node for chunk in chunks} == {"AsyncLLMNode"}
    assert stream.action == "tool_calls"
    assert shared["messages"] == sync_shared["messages"]


@pytest.mark.anyio
async def test_async_llm_node_retries_a_provider_error_and_marks_the_failed_attempt():
    model = ScriptedModel([Turn(text="partial", error="overloaded"), Turn(text="fine")])
    shared = conversation()
    events = []
    await AsyncLLMNode(model, max_retries=2).run_async(shared, on_event=events.append)
    assert [type(event).__name__ for event in events].count("Retry") == 1
    assert shared["messages"][-1]["content"] == "fine"


@pytest.mark.anyio
async def test_async_llm_node_raises_model_error_after_the_last_attempt():
    model = ScriptedModel([Turn(text="x", error="overloaded")])
    flow = AsyncStreamFlow(start=AsyncLLMNode(model, name="Writer"))
    with pytest.raises(ModelError, match="overloaded") as caught:
        await flow.run_async(conversation())
    assert caught.value.node_path == ("Writer",)


@pytest.mark.anyio
async def test_stopping_an_async_llm_node_closes_the_model_stream():
    closed = []

    class Model:
        async def astream(self, messages, *, tools=None, **options):
            try:
                for word in ["a", "b", "c"]:
                    yield TextDelta(word)
            finally:
                closed.append(True)

    async with AsyncStreamFlow(start=AsyncLLMNode(Model())).run_stream_async(
        conversation()
    ) as stream:
        async for chunk in stream:
            assert chunk.data == TextDelta("a")
            break
    assert closed == [True]


@pytest.mark.anyio
async def test_an_async_llm_node_without_a_model_says_how_to_give_one():
    with pytest.raises(TypeError, match="AsyncLLMNode has no model"):
        await AsyncLLMNode().run_async(conversation())
