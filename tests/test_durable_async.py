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


async def test_a_parallel_batch_paused_on_two_items_resumes_from_sqlite_one_answer_at_a_time(
    tmp_path,
):
    runs = DurableRuns(AsyncFlow(start=Items(), name="Batch"), SQLiteStore(tmp_path / "runs.db"))
    async with runs.start_async({}) as run:
        first = [item async for item in run]
    assert run.status == "paused"
    state = await runs.inspect_async(run.run_id)
    by_item = {ask["payload"]["item"]: ask["id"] for ask in state.interrupts}
    assert sorted(by_item) == [0, 2]  # both pending at once, each with its payload

    later = DurableRuns(AsyncFlow(start=Items(), name="Batch"), SQLiteStore(tmp_path / "runs.db"))
    async with later.resume_async(run.run_id, {by_item[2]: "two"}) as partly:
        second = [item async for item in partly]
    assert partly.status == "paused"
    assert [ask["id"] for ask in partly.interrupts] == [by_item[0]]  # the other stays pending
    async with later.resume_async(run.run_id, {by_item[0]: "zero"}) as done:
        third = [item async for item in done]
    assert done.status == "done" and done.shared == {"results": ["zero", 1, "two"]}
    fresh = [
        item.id
        for item in first + second + third
        if type(item).__name__ == "Chunk" and not item.replay
    ]
    assert len(fresh) == len(set(fresh))  # no chunk id delivered twice


RESUMER = """
import json, sys
import anyio
sys.path.insert(0, {tests!r})
from test_durable_async import Items
from pocketflow_stream import AsyncFlow
from pocketflow_stream.persist import DurableRuns, SQLiteStore

async def main():
    runs = DurableRuns(AsyncFlow(start=Items(), name="Batch"), SQLiteStore(sys.argv[1]))
    async with runs.resume_async(sys.argv[2], json.loads(sys.argv[3])) as run:
        items = [item.to_dict() async for item in run]
    print(json.dumps({{"status": run.status, "shared": run.shared, "items": items}}))

anyio.run(main, backend=sys.argv[4])
"""


async def test_a_parallel_batch_item_resumes_in_a_fresh_process(tmp_path, anyio_backend):
    import json
    import subprocess
    import sys
    from pathlib import Path

    db = tmp_path / "runs.db"
    runs = DurableRuns(AsyncFlow(start=Items(), name="Batch"), SQLiteStore(db))
    async with runs.start_async({}) as run:
        first = [item async for item in run]
    answers = {ask["id"]: f"answer {ask['payload']['item']}" for ask in run.interrupts}
    script = RESUMER.format(tests=str(Path(__file__).resolve().parent))
    done = await anyio.to_thread.run_sync(
        lambda: subprocess.run(
            [sys.executable, "-c", script, str(db), run.run_id, json.dumps(answers), anyio_backend],
            capture_output=True,
            text=True,
            timeout=120,
        )
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "done"
    assert result["shared"] == {"results": ["answer 0", 1, "answer 2"]}
    ids = [item.id for item in first if type(item).__name__ == "Chunk"]
    ids += [
        item["id"] for item in result["items"] if item["type"] == "chunk" and not item.get("replay")
    ]
    assert len(ids) == len(set(ids))
