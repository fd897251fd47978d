"""Durable runs of async flows, on asyncio and on trio: the same promises as the sync ones,
and the store is never touched from the event loop's thread."""

from __future__ import annotations

import threading

import anyio
import pytest

from pocketflow_stream import (
    Ask,
    AsyncFlow,
    AsyncNode,
    AsyncParallelBatchNode,
    AsyncStreamNode,
    FlowError,
    Return,
)
from pocketflow_stream.persist import DurableRuns, RunBusy, SQLiteStore

pytestmark = pytest.mark.anyio


LOG: list = []  # what ran, in order (not in params: params are part of a run's position)


class Step(AsyncNode):
    async def exec_async(self, _):
        LOG.append(self.name)

    async def post_async(self, shared, prep_res, exec_res):
        shared["trail"].append(self.name)


class Draft(AsyncStreamNode):
    async def exec_stream_async(self, _):
        LOG.append(self.name)
        for word in ("one", "two"):
            await anyio.sleep(0)
            yield word
        answer = yield Ask({"question": "go on?"})
        yield f"got {answer}"
        yield Return(answer)

    async def post_async(self, shared, prep_res, answer):
        shared["trail"].append(self.name)
        shared["answer"] = answer


def build() -> AsyncFlow:
    first = Step(name="First")
    first >> Draft(name="Draft") >> Step(name="Last")
    return AsyncFlow(start=first, name="Agent")


class ThreadRecordingStore(SQLiteStore):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.save_threads: set = set()

    def save(self, lease, seq_expected, record):
        self.save_threads.add(threading.get_ident())
        return super().save(lease, seq_expected, record)


async def uninterrupted(answer: str) -> dict:
    shared = {"trail": []}
    async with build().run_stream_async(shared) as stream:
        async for _ in stream:
            pass
    (interrupt,) = stream.paused.interrupts
    async with stream.paused.resume_async({interrupt.id: answer}) as stream:
        async for _ in stream:
            pass
    return shared


async def test_pause_then_resume_with_a_fresh_store_gives_the_uninterrupted_result(tmp_path):
    LOG.clear()
    store = ThreadRecordingStore(tmp_path / "runs.db")
    runs = DurableRuns(build(), store)
    async with runs.start_async({"trail": []}) as run:
        first = [item async for item in run]
    assert run.status == "paused" and store.save_threads
    assert threading.get_ident() not in store.save_threads  # never on the loop's thread
    (ask,) = run.interrupts
    assert ask["payload"] == {"question": "go on?"} and first[-1].id == ask["id"]

    later = DurableRuns(build(), SQLiteStore(tmp_path / "runs.db"))  # as a new process
    async with later.resume_async(run.run_id, {ask["id"]: "yes"}) as resumed:
        second = [item async for item in resumed]
    assert resumed.status == "done"
    assert LOG == ["First", "Draft", "Draft", "Last"]
    assert resumed.shared == await uninterrupted("yes")  # only the asking node again
    replayed = [item.data for item in second if getattr(item, "replay", False)]
    fresh = [item.data for item in second if type(item).__name__ == "Chunk" and not item.replay]
    assert replayed == ["one", "two"] and fresh == ["got yes"]
    first_ids = [item.id for item in first if type(item).__name__ == "Chunk"]
    assert [item.id for item in second if getattr(item, "replay", False)] == first_ids
    state = await later.inspect_async(run.run_id)
    assert state.status == "done" and (await later.list_async())[0].run_id == run.run_id


async def test_a_second_async_resumer_gets_run_is_busy(tmp_path):
    runs = DurableRuns(build(), SQLiteStore(tmp_path / "runs.db"))
    async with runs.start_async({"trail": []}) as run:
        async for _ in run:
            pass
    answer = {run.interrupts[0]["id"]: "yes"}
    other = DurableRuns(build(), SQLiteStore(tmp_path / "runs.db"))
    async with runs.resume_async(run.run_id, answer) as first:
        with pytest.raises(RunBusy):
            async with other.resume_async(run.run_id, answer):
                pass
        async for _ in first:
            pass
    assert first.status == "done"


async def test_an_async_stop_keeps_the_run_resumable(tmp_path):
    runs = DurableRuns(build(), SQLiteStore(tmp_path / "runs.db"))
    async with runs.start_async({"trail": []}) as run:
        async for item in run:
            if getattr(item, "data", None) == "one":
                run.stop()
    assert run.status == "stopped"
    assert (await runs.inspect_async(run.run_id)).status == "stopped"
    async with runs.resume_async(run.run_id) as again:
        async for _ in again:
            pass
    assert again.status == "paused"
    async with runs.resume_async(run.run_id, {again.interrupts[0]["id"]: "yes"}) as done:
        async for _ in done:
            pass
    assert done.shared == await uninterrupted("yes")


async def test_leaving_the_block_early_stops_and_lets_the_lease_go(tmp_path):
    runs = DurableRuns(build(), SQLiteStore(tmp_path / "runs.db"))
    async with runs.start_async({"trail": []}) as run:
        async for _ in run:
            break
    assert (await runs.inspect_async(run.run_id)).status == "stopped"
    async with runs.resume_async(run.run_id) as again:  # not busy
        async for _ in again:
            pass
    assert again.status == "paused"


class Items(AsyncParallelBatchNode):
    """Three items at once; items 0 and 2 ask."""

    async def prep_async(self, shared):
        return [0, 1, 2]

    async def exec_stream_async(self, item):
        yield f"item {item}"
        if item != 1:
            answer = yield Ask({"item": item})
            yield Return(answer)
        yield Return(item)

    async def post_async(self, shared, items, results):
        shared["results"] = results


async def test_a_parallel_batch_pauses_with_every_pending_item_listed(tmp_path):
    runs = DurableRuns(AsyncFlow(start=Items(), name="Batch"), SQLiteStore(tmp_path / "runs.db"))
    async with runs.start_async({}) as run:
        async for _ in run:
            pass
    assert run.status == "paused"
    state = await runs.inspect_async(run.run_id)
    assert sorted(ask["payload"]["item"] for ask in state.interrupts) == [0, 2]
    # Going on from the saved checkpoint in another process is not supported for a paused
    # parallel batch yet (the engine says so); the saved run is left as it was.
    answers = {ask["id"]: "ok" for ask in state.interrupts}
    with pytest.raises(FlowError, match="parallel batch"):
        async with runs.resume_async(run.run_id, answers) as again:
            async for _ in again:
                pass
    after = await runs.inspect_async(run.run_id)
    assert (after.status, after.seq) == ("paused", state.seq)
