"""Where a newcomer trips, the library says so: a clear FlowError (naming the node or class,
what was wrong and what to do) instead of silence or a bare exception; and the value classes a
stream yields behave alike (hashable, with a repr that shows every field)."""

from __future__ import annotations

import pickle

import anyio
import pytest

from pocketflow_stream import (
    AsyncBatchNode,
    AsyncNode,
    AsyncParallelBatchNode,
    AsyncStreamFlow,
    AsyncStreamNode,
    BatchFlow,
    Chunk,
    Flow,
    FlowError,
    Node,
    NodeFinished,
    NodeStarted,
    Return,
    StreamFlow,
    StreamNode,
)

# --- the value classes ----------------------------------------------------------------------


class Each(BatchFlow):
    def prep(self, shared):
        return [{"city": "Lima"}, {"city": "Oslo"}]


class Say(StreamNode):
    def exec_stream(self, prep_res):
        yield self.params["city"]


def batch_stream():
    return list(StreamFlow(start=Each(start=Say())).run_stream({}, events=True))


def test_every_item_of_a_batch_flows_stream_hashes_like_one_without_a_batch():
    items = batch_stream()
    with_batch = [item for item in items if getattr(item, "batch", None) is not None]
    assert {type(item) for item in with_batch} == {NodeStarted, Chunk, NodeFinished}
    for item in items:
        hash(item)  # TypeError: unhashable type: 'mappingproxy' before
    started = [item for item in with_batch if isinstance(item, NodeStarted)]
    assert started[0] != started[1] and len({*started, *started}) == 2  # hashed by value
    again = [item for item in batch_stream() if isinstance(item, NodeStarted) and item.batch]
    assert again == started and {*again} == {*started}  # a second run's equal events


def test_an_events_batch_stays_read_only_equal_to_its_dict_and_picklable():
    event = next(item for item in batch_stream() if isinstance(item, NodeFinished))
    assert event.batch == {"city": "Lima"} and dict(event.batch) == {"city": "Lima"}
    with pytest.raises(TypeError):
        event.batch["city"] = "Quito"  # type: ignore[index]
    with pytest.raises(AttributeError):
        event.batch._params = {}  # type: ignore[union-attr]
    copy = pickle.loads(pickle.dumps(event))
    assert copy == event and hash(copy) == hash(event)


def test_a_chunks_repr_shows_its_item_attempt_and_batch():
    chunk = next(item for item in batch_stream() if isinstance(item, Chunk))
    text = repr(chunk)
    assert "node='Say'" in text and "data='Lima'" in text
    assert "item=None" in text and "attempt=0" in text and "batch={'city': 'Lima'}" in text

    class Flaky(StreamNode):
        def prep(self, shared):
            return ["a", "b"]

        def exec_stream(self, prep_res):
            yield self.cur_retry
            if self.cur_retry == 0:
                raise ValueError("again")

    retried = list(Flaky(max_retries=2).run_stream({}))[-1]
    assert "attempt=1" in repr(retried)


def test_a_checkpointed_chunks_repr_shows_its_id_and_replay():
    from pocketflow_stream.events import Origin

    assert repr(Chunk((Origin("Say"), "hi"))).endswith("batch=None)")  # no id: not shown
    assert repr(Chunk((Origin("Say"), "hi", 7))).endswith("batch=None, id=7)")
    replayed = Chunk((Origin("Say", replay=True), "hi", 7))
    assert repr(replayed).endswith("id=7, replay=True)")


# --- async names on the wrong family ----------------------------------------------------------


@pytest.mark.parametrize(
    "base", [AsyncNode, AsyncStreamNode, AsyncBatchNode, AsyncParallelBatchNode]
)
def test_an_async_node_with_an_async_exec_stream_is_told_to_name_it_exec_stream_async(base):
    with pytest.raises(FlowError) as caught:

        class Writer(base):
            async def exec_stream(self, prep_res):
                yield "never streamed"

    message = str(caught.value)
    assert "Writer" in message and "exec_stream_async" in message


def test_an_async_node_with_a_sync_generator_exec_stream_is_told_the_same():
    with pytest.raises(FlowError, match="exec_stream_async") as caught:

        class Writer(AsyncStreamNode):
            def exec_stream(self, prep_res):
                yield "never streamed"

    assert "StreamNode" in str(caught.value)  # the other way out: a sync streaming node


def test_an_async_node_with_exec_stream_async_still_streams():
    class Writer(AsyncStreamNode):
        async def exec_stream_async(self, prep_res):
            yield "hello"
            yield Return("done")

        async def post_async(self, shared, prep_res, exec_res):
            shared["result"] = exec_res

    async def main():
        shared = {}
        got = []
        await AsyncStreamFlow(start=Writer()).run_async(shared, on_chunk=got.append)
        return [chunk.data for chunk in got], shared["result"]

    assert anyio.run(main) == (["hello"], "done")


@pytest.mark.parametrize("kind", [Flow, StreamFlow, BatchFlow])
@pytest.mark.parametrize("method", ["run_async", "run_stream_async"])
def test_a_sync_flows_async_run_is_a_flow_error_naming_the_async_flow(kind, method):
    flow = kind(start=Node(), name="Agent")
    with pytest.raises(FlowError) as caught:
        getattr(flow, method)({})
    message = str(caught.value)
    assert "Agent" in message and kind.__name__ in message and method in message
    assert "AsyncStreamFlow" in message and "run_stream_in_thread" in message
    assert isinstance(caught.value, AttributeError)  # hasattr and getattr(..., default) work
    assert not hasattr(flow, method) and getattr(flow, method, None) is None


def test_await_stream_flow_run_async_raises_before_anything_runs():
    ran = []

    class Step(Node):
        def exec(self, prep_res):
            ran.append("exec")

    async def main():
        await StreamFlow(start=Step()).run_async({})  # type: ignore[attr-defined]

    with pytest.raises(FlowError, match="AsyncStreamFlow"):
        anyio.run(main)
    assert ran == []


def test_an_async_flow_still_runs_async_and_other_missing_attributes_stay_plain():
    class Step(Node):
        def post(self, shared, prep_res, exec_res):
            shared["ran"] = True
            return "end"

    shared = {}
    assert anyio.run(AsyncStreamFlow(start=Step()).run_async, shared) == "end"
    assert shared == {"ran": True}
    with pytest.raises(AttributeError) as caught:
        StreamFlow().no_such_thing  # type: ignore[attr-defined]  # noqa: B018
    assert not isinstance(caught.value, FlowError) and "no_such_thing" in str(caught.value)


# --- LLMNode without shared["messages"] -------------------------------------------------------


def run_llm_node(shared, asynchronous=False):
    from pocketflow_stream.llm import AsyncLLMNode, LLMNode, ScriptedModel

    if asynchronous:
        flow = AsyncStreamFlow(start=AsyncLLMNode(ScriptedModel(["hi"]), name="Writer"))
        return anyio.run(flow.run_async, shared)
    return StreamFlow(start=LLMNode(ScriptedModel(["hi"]), name="Writer"), name="Agent").run(shared)


@pytest.mark.parametrize("asynchronous", [False, True])
@pytest.mark.parametrize("shared", [{}, {"history": []}, None])
def test_an_llm_node_without_shared_messages_says_which_key_node_and_what_to_do(
    shared, asynchronous
):
    with pytest.raises(FlowError) as caught:
        run_llm_node(shared, asynchronous)
    message = str(caught.value)
    assert 'shared["messages"]' in message and "Writer" in message
    assert '{"messages": [{"role": "user"' in message  # how to provide it
    assert ("prep_async(self, shared)" if asynchronous else "prep(self, shared)") in message
    assert caught.value.node_path == ("Writer",)  # the engine's path mark, as for any error
    assert isinstance(caught.value, KeyError)  # apps that caught the bare KeyError still do


@pytest.mark.parametrize("asynchronous", [False, True])
@pytest.mark.parametrize("messages", [None, "Hello", {"role": "user", "content": "Hello"}])
def test_an_llm_node_whose_shared_messages_is_no_list_says_so(messages, asynchronous):
    with pytest.raises(FlowError) as caught:
        run_llm_node({"messages": messages}, asynchronous)
    message = str(caught.value)
    assert f"is {type(messages).__name__}, not a list" in message and "Writer" in message


def test_an_llm_node_with_messages_runs_as_before():
    shared = {"messages": [{"role": "user", "content": "Hello"}]}
    assert run_llm_node(shared) is None
    assert shared["messages"][-1]["content"] == "hi"
    shared = {"messages": ({"role": "user", "content": "Hello"},)}  # any sequence will do
    with pytest.raises(AttributeError):  # the default post appends: a tuple cannot
        run_llm_node(shared)


def test_an_llm_node_given_a_model_of_the_other_kind_says_which_node_to_use():
    from pocketflow_stream.llm import AsyncLLMNode, LLMNode

    class OnlyAsync:
        async def astream(self, messages, **options):
            yield "never asked"

    class OnlySync:
        def stream(self, messages, **options):
            yield "never asked"

    shared = {"messages": [{"role": "user", "content": "Hello"}]}
    with pytest.raises(TypeError) as caught:
        StreamFlow(start=LLMNode(OnlyAsync())).run(shared)  # type: ignore[arg-type]
    message = str(caught.value)
    assert "OnlyAsync" in message and "stream()" in message and "AsyncLLMNode" in message

    flow = AsyncStreamFlow(start=AsyncLLMNode(OnlySync()))  # type: ignore[arg-type]
    with pytest.raises(TypeError) as caught:
        anyio.run(flow.run_async, shared)
    message = str(caught.value)
    assert "OnlySync" in message and "astream()" in message and "LLMNode" in message
