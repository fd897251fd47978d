"""Pause and resume under the async driver (asyncio and trio) and across the bridges: an async
streaming node asks through `yield Ask(...)` (the driver `asend`s the answer), a parallel
batch holds several pending interrupts at once, each answerable on its own, by id."""

from __future__ import annotations

import json
import threading
from collections import Counter
from typing import Any, List

import pytest

from pocketflow_stream import (
    STOPPED,
    Ask,
    AsyncFlow,
    AsyncNode,
    AsyncParallelBatchNode,
    AsyncStreamNode,
    Chunk,
    FlowError,
    Interrupt,
    Node,
    Paused,
    Progress,
    Return,
    StopSignal,
    StreamNode,
    ask,
    resume_stream_in_thread,
    resume_stream_sync,
    run_stream_in_thread,
    run_stream_sync,
)
from pocketflow_stream.async_driver import FlowStream

pytestmark = pytest.mark.anyio

runs: Counter = Counter()
closed: List[str] = []


@pytest.fixture(autouse=True)
def fresh_counts():
    runs.clear()
    closed.clear()


async def pull(stream: FlowStream) -> List[Any]:
    async with stream:
        return [item async for item in stream]


def data(items) -> List[Any]:
    return [item.data for item in items if type(item) is Chunk]


class Draft(AsyncStreamNode):
    async def prep_async(self, shared):
        runs["prep"] += 1
        return shared["topic"]

    async def exec_stream_async(self, topic):
        runs["exec"] += 1
        try:
            yield f"{topic}:1"
            verdict = yield Ask({"approve": topic})
            yield f"verdict {verdict}"
            yield Return(verdict)
        finally:
            closed.append("Draft")

    async def post_async(self, shared, prep_res, verdict):
        runs["post"] += 1
        shared["verdict"] = verdict


class Finish(Node):
    def post(self, shared, prep_res, exec_res):
        runs["Finish"] += 1
        shared["finished"] = True


def draft_flow() -> AsyncFlow:
    draft = Draft()
    draft >> Finish()
    return AsyncFlow(start=AsyncFlow(start=draft, name="Inner"))


async def test_an_async_stream_node_in_a_nested_flow_pauses_and_goes_on_with_asend():
    shared = {"topic": "t"}
    stream = draft_flow().run_stream_async(shared)
    items = await pull(stream)
    assert data(items) == ["t:1"] and isinstance(items[-1], Interrupt)
    paused = stream.paused
    assert isinstance(paused, Paused) and stream.action is None and stream.finished
    assert items[-1].handle is paused and items[-1].path == ("Inner", "Draft")
    assert closed == []  # suspended at the ask, not closed
    resumed = paused.resume_async({items[-1].id: "yes"})
    rest = await pull(resumed)
    assert data(rest) == ["verdict yes"] and resumed.paused is None and resumed.finished
    assert shared == {"topic": "t", "verdict": "yes", "finished": True}
    assert runs == Counter({"prep": 1, "exec": 1, "post": 1, "Finish": 1})
    assert closed == ["Draft"]


async def test_run_async_returns_the_handle_and_paused_run_async_goes_on():
    shared = {"topic": "p"}
    chunks: List[Any] = []
    paused = await draft_flow().run_async(shared, on_chunk=chunks.append)
    assert isinstance(paused, Paused)
    assert await paused.run_async({paused.interrupts[0].id: "ok"}, on_chunk=chunks.append) is None
    assert data(chunks) == ["p:1", "verdict ok"] and shared["verdict"] == "ok"
    assert runs["exec"] == 1


async def test_ask_in_exec_async_runs_that_exec_again_with_the_answer():
    class Confirm(AsyncNode):
        async def prep_async(self, shared):
            runs["prep"] += 1
            return 3

        async def exec_async(self, amount):
            runs["exec"] += 1
            return ask({"confirm": amount})

        async def post_async(self, shared, prep_res, answer):
            shared["answer"] = answer

    shared: dict = {}
    paused = await AsyncFlow(start=Confirm()).run_async(shared)
    assert paused.interrupts[0].payload == {"confirm": 3}
    await paused.run_async({paused.interrupts[0].id: "yes"})
    assert shared == {"answer": "yes"} and (runs["prep"], runs["exec"]) == (1, 2)


async def test_a_blocking_stream_node_in_a_worker_thread_asks_and_goes_on():
    class Blocking(StreamNode):
        def exec_stream(self, prep_res):
            runs["exec"] += 1
            yield "before"
            answer = yield Ask("in a thread")
            yield answer
            return answer

        def post(self, shared, prep_res, exec_res):
            shared["answer"] = exec_res

    shared: dict = {}
    stream = AsyncFlow(start=Blocking(in_thread=True)).run_stream_async(shared)
    items = await pull(stream)
    assert data(items) == ["before"]
    rest = await pull(stream.paused.resume_async({items[-1].id: "done"}))
    assert data(rest) == ["done"] and shared == {"answer": "done"} and runs["exec"] == 1


class Items(AsyncParallelBatchNode):
    """Four items at once; items 1 and 3 ask."""

    async def prep_async(self, shared):
        return [0, 1, 2, 3]

    async def exec_stream_async(self, item):
        runs[item] += 1
        yield f"start {item}"
        if item % 2:
            answer = yield Ask({"item": item})
            yield f"answer {item} {answer}"
            yield Return(f"{item}:{answer}")
        else:
            yield Return(item)

    async def post_async(self, shared, prep_res, results):
        shared["results"] = results


async def test_a_parallel_batch_holds_several_pending_interrupts_each_answered_on_its_own():
    shared: dict = {}
    stream = AsyncFlow(start=Items()).run_stream_async(shared, progress=True)
    items = await pull(stream)
    paused = stream.paused
    pending = {interrupt.item: interrupt for interrupt in paused.interrupts}
    assert sorted(pending) == [1, 3] and len({i.id for i in paused.interrupts}) == 2
    assert sorted(data(items)) == ["start 0", "start 1", "start 2", "start 3"]
    assert sorted(p.done for p in items if isinstance(p, Progress)) == [1, 2]

    # answer item 3 only: it goes on, item 1 stays pending under the same id
    second = await pull(paused.resume_async({pending[3].id: "b"}))
    assert data(second) == ["answer 3 b"]
    again = second[-1].handle
    assert [i.id for i in again.interrupts] == [pending[1].id] and "results" not in shared

    third = await pull(again.resume_async({pending[1].id: "a"}))
    assert data(third) == ["answer 1 a"]
    assert shared["results"] == [0, "1:a", 2, "3:b"]  # input order
    assert runs == Counter({0: 1, 1: 1, 2: 1, 3: 1})  # nothing ran twice


async def test_a_parallel_pause_refuses_an_id_that_is_not_pending():
    stream = AsyncFlow(start=Items()).run_stream_async({})
    await pull(stream)
    with pytest.raises(FlowError):
        stream.paused.resume_async({"Items[7]#0": 1})
    with pytest.raises(FlowError) as caught:  # a sync resume of an async run says what to use
        stream.paused.resume({stream.paused.interrupts[0].id: 1})
    assert "resume_async" in str(caught.value)
    await stream.paused.aclose()


async def test_the_checkpoint_is_called_in_a_worker_thread_with_a_json_ready_position():
    loop_thread = threading.get_ident()
    seen: List[Any] = []

    def save(position):
        seen.append((threading.get_ident(), json.loads(json.dumps(position))["status"]))

    stream = FlowStream(draft_flow(), {"topic": "t"}, checkpoint=save)
    items = await pull(stream)
    assert [item.id for item in items if type(item) is Chunk] == [0]
    assert seen[-1][1] == "paused" and all(thread != loop_thread for thread, _ in seen)


async def test_a_stop_ends_an_async_stream_at_once():
    stop = StopSignal()

    class Endless(AsyncStreamNode):
        async def exec_stream_async(self, prep_res):
            try:
                count = 0
                while True:
                    yield count
                    count += 1
            finally:
                closed.append("Endless")

    stream = AsyncFlow(start=Endless()).run_stream_async({}, stop=stop)
    got: List[Any] = []
    async with stream:
        async for item in stream:
            got.append(item.data)
            if item.data == 2:
                stop.set()
    assert got == [0, 1, 2] and stream.action is STOPPED and closed == ["Endless"]


# --- bridges --------------------------------------------------------------------------------


def pull_sync(stream):
    items = []
    while True:
        try:
            items.append(next(stream))
        except StopIteration as stop:
            return items, stop.value


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_run_stream_sync_pauses_and_resume_stream_sync_goes_on_without_a_chunk_twice(backend):
    shared = {"topic": "s"}
    items, paused = pull_sync(run_stream_sync(draft_flow(), shared, backend=backend))
    assert data(items) == ["s:1"] and isinstance(paused, Paused)
    rest, action = pull_sync(
        resume_stream_sync(paused, {paused.interrupts[0].id: "y"}, backend=backend)
    )
    assert data(rest) == ["verdict y"] and action is None
    assert shared == {"topic": "s", "verdict": "y", "finished": True}
    assert (runs["prep"], runs["post"]) == (1, 1)  # (its exec ran again: its loop had ended)
    assert threading.active_count() == 1 or all(
        not thread.name.startswith("AnyIO") for thread in threading.enumerate()
    )


async def test_run_stream_in_thread_pauses_and_resume_stream_in_thread_goes_on():
    class Sync(StreamNode):
        def exec_stream(self, prep_res):
            runs["exec"] += 1
            yield 1
            answer = yield Ask("sync in a thread")
            yield answer
            return answer

        def post(self, shared, prep_res, answer):
            shared["answer"] = answer

    from pocketflow_stream import Flow

    shared: dict = {}
    async with run_stream_in_thread(Flow(start=Sync()), shared) as stream:
        items = [item async for item in stream]
    assert data(items) == [1] and isinstance(stream.paused, Paused)
    async with resume_stream_in_thread(stream.paused, {items[-1].id: 2}) as rest:
        more = [item async for item in rest]
    assert data(more) == [2] and shared == {"answer": 2} and runs["exec"] == 1


async def test_a_parallel_batch_flow_pauses_per_param_set_and_each_goes_on_by_id():
    from pocketflow_stream import AsyncParallelBatchFlow

    class Ask1(StreamNode):
        def exec_stream(self, prep_res):
            runs[self.params["n"]] += 1
            answer = yield Ask({"n": self.params["n"]})
            return answer

        def post(self, shared, prep_res, answer):
            shared.setdefault("answers", {})[self.params["n"]] = answer

    class Each(AsyncParallelBatchFlow):
        async def prep_async(self, shared):
            return [{"n": 0}, {"n": 1}]

    shared: dict = {}
    stream = Each(start=Ask1()).run_stream_async(shared)
    items = await pull(stream)
    paused = stream.paused
    by_set = {interrupt.batch["n"]: interrupt for interrupt in paused.interrupts}
    assert sorted(by_set) == [0, 1] and items == list(paused.interrupts)
    more = await pull(paused.resume_async({by_set[1].id: "one"}))
    again = more[-1].handle
    assert [i.id for i in again.interrupts] == [by_set[0].id]
    final = again.resume_async({by_set[0].id: "zero"})
    assert await pull(final) == [] and final.finished and final.paused is None
    assert shared == {"answers": {1: "one", 0: "zero"}}
    assert runs == Counter({0: 1, 1: 1})


async def test_an_interrupt_inside_a_sequential_batch_flow_names_its_param_set():
    from pocketflow_stream import AsyncBatchFlow

    class Ask2(AsyncStreamNode):
        async def exec_stream_async(self, prep_res):
            answer = yield Ask(self.params["n"])
            yield Return(answer)

        async def post_async(self, shared, prep_res, answer):
            shared.setdefault("seen", []).append(answer)

    class Each(AsyncBatchFlow):
        async def prep_async(self, shared):
            return [{"n": 0}, {"n": 1}]

    shared: dict = {}
    stream = Each(start=Ask2()).run_stream_async(shared)
    await pull(stream)
    first = stream.paused.interrupts[0]
    assert first.batch == {"n": 0} and first.payload == 0
    second = (await pull(stream.paused.resume_async({first.id: "a"})))[-1]
    assert second.batch == {"n": 1} and second.id != first.id
    await pull(second.handle.resume_async({second.id: "b"}))
    assert shared == {"seen": ["a", "b"]}


async def test_resuming_an_async_run_from_a_saved_position_replays_its_chunks_with_their_ids():
    positions: List[Any] = []

    def save(position):
        positions.append(json.loads(json.dumps(position)))

    shared = {"topic": "a"}
    first = await pull(FlowStream(draft_flow(), shared, checkpoint=save))
    assert positions[-1]["status"] == "paused"
    runs.clear()
    saved = json.loads(json.dumps(shared))
    answers = {positions[-1]["interrupts"][0]["id"]: "late"}
    resumed = FlowStream(
        draft_flow(), saved, checkpoint=save, resume_from=positions[-1], answers=answers
    )
    items = await pull(resumed)
    replayed = [(c.data, c.id) for c in items if type(c) is Chunk and c.replay]
    assert replayed == [(c.data, c.id) for c in first if type(c) is Chunk]
    assert [c.data for c in items if type(c) is Chunk and not c.replay] == ["verdict late"]
    assert saved == {"topic": "a", "verdict": "late", "finished": True}
    assert runs == Counter({"exec": 1, "post": 1, "Finish": 1})  # prep did not run again


async def test_an_async_stream_node_that_only_defines_exec_async_may_ask_in_it():
    class Quiet(AsyncStreamNode):  # its exec_stream_async awaits exec_async
        async def exec_async(self, prep_res):
            runs["exec"] += 1
            return ask("from exec_async")

        async def post_async(self, shared, prep_res, answer):
            shared["answer"] = answer

    shared: dict = {}
    paused = await AsyncFlow(start=Quiet()).run_async(shared)
    assert paused.interrupts[0].payload == "from exec_async"
    assert await paused.run_async({paused.interrupts[0].id: 8}) is None
    assert shared == {"answer": 8} and runs["exec"] == 2


async def test_a_paused_parallel_batch_resumes_from_a_saved_position_one_answer_at_a_time():
    positions: List[Any] = []

    def save(position):
        positions.append(json.loads(json.dumps(position)))

    shared: dict = {}
    await pull(FlowStream(AsyncFlow(start=Items()), shared, checkpoint=save))
    position = positions[-1]
    ids = {interrupt["item"]: interrupt["id"] for interrupt in position["interrupts"]}
    assert sorted(ids) == [1, 3]
    runs.clear()

    saved = json.loads(json.dumps(shared))
    first = FlowStream(
        AsyncFlow(start=Items()),
        saved,
        checkpoint=save,
        resume_from=position,
        answers={ids[3]: "b"},
    )
    items = await pull(first)
    assert data(items) == ["answer 3 b"]  # its chunks up to the pause are not shown again
    assert [i.id for i in first.paused.interrupts] == [ids[1]] and runs == Counter({3: 1})

    second = FlowStream(
        AsyncFlow(start=Items()),
        saved,
        checkpoint=save,
        resume_from=positions[-1],
        answers={ids[1]: "a"},
    )
    assert data(await pull(second)) == ["answer 1 a"]
    assert saved == {"results": [0, "1:a", 2, "3:b"]}
    assert runs == Counter({3: 1, 1: 1})  # the finished items 0 and 2 never ran again


async def test_a_paused_parallel_batch_flow_resumes_from_a_saved_position():
    from pocketflow_stream import AsyncParallelBatchFlow

    class Ask3(StreamNode):
        def exec_stream(self, prep_res):
            runs[self.params["n"]] += 1
            answer = yield Ask(self.params["n"])
            return answer

        def post(self, shared, prep_res, answer):
            shared[str(self.params["n"])] = answer

    class Each(AsyncParallelBatchFlow):
        async def prep_async(self, shared):
            return [{"n": 0}, {"n": 1}]

    def build():
        after = Finish()
        each = Each(start=Ask3())
        each >> after
        return AsyncFlow(start=each)

    positions: List[Any] = []
    shared: dict = {}
    await pull(FlowStream(build(), shared, checkpoint=positions.append))
    ids = {i["batch"]["n"]: i["id"] for i in positions[-1]["interrupts"]}
    runs.clear()
    saved = json.loads(json.dumps(shared))
    both = {ids[0]: "zero", ids[1]: "one"}
    resumed = FlowStream(
        build(),
        saved,
        checkpoint=positions.append,
        resume_from=json.loads(json.dumps(positions[-1])),
        answers=both,
    )
    await pull(resumed)
    assert resumed.paused is None and saved == {"0": "zero", "1": "one", "finished": True}
    assert runs == Counter({0: 1, 1: 1, "Finish": 1})
