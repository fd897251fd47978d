"""DistributedRuns fan-out of a parallel batch node's items, one DBOS workflow per item.

SQLite mode (one process that is its own worker; the node inside a sub-flow, a batch flow
with params): the results are a plain run's, in input order; a node visited twice gets each
visit's own results (the ids tell the visits apart); one item workflow per item, JSON in
DBOS's tables; retries and fallback on the item's worker; only the nodes named fan out; a
non-JSON item, a failing item and an asking item fail the run with errors that name the
node. On real Postgres (two worker processes, the one with the segment killed mid-item and
restarted): every item's result, in order; finished items ran once; only the items in flight
ran again, as new attempts."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import anyio
import pytest

pytest.importorskip("dbos")

from pocketflow_stream import (  # noqa: E402
    AsyncBatchFlow,
    AsyncFlow,
    AsyncNode,
    AsyncParallelBatchNode,
    ask,
)
from pocketflow_stream.persist import SQLiteStore  # noqa: E402
from pocketflow_stream.scale.dbos_runs import ITEM_WORKFLOW, DistributedRuns  # noqa: E402

APPS = Path(__file__).parent / "dbos_apps"


class Square(AsyncParallelBatchNode):
    """Squares its items, each item tagged with the visit's params (so a wrong visit's
    result would show)."""

    async def prep_async(self, shared):
        if CHOICE["sets"]:
            return [{item} for item in shared["items"]]
        return shared["items"]

    async def exec_async(self, item):
        await anyio.sleep(0.001 * (item % 3))  # they finish out of order
        if item in (CHOICE["failing"], CHOICE["hopeless"]) or (
            item == CHOICE["flaky"] and self.cur_retry == 0
        ):
            raise ValueError(f"no square for {item}")
        if item == CHOICE["asking"]:
            return ask({"question": f"square {item}?"})
        return {"item": item, "square": item * item, "label": self.params.get("label")}

    async def exec_fallback_async(self, item, exc):
        if item != CHOICE["hopeless"]:
            raise exc
        return {"item": item, "square": None, "label": "fallback"}

    async def post_async(self, shared, prep_res, results):
        shared["results"].append(results)


# set by the tests below (the worker is this process): an item that fails (each of its two
# attempts), one that fails its first attempt only, one whose fallback answers, one that
# asks; set items from prep
CHOICE = {"failing": None, "flaky": None, "hopeless": None, "asking": None, "sets": False}


@contextlib.contextmanager
def choosing(**changes: Any) -> Iterator[None]:
    """CHOICE changed for the block (the runs started in it), then as it was."""
    before = {name: CHOICE[name] for name in changes}
    CHOICE.update(changes)
    try:
        yield
    finally:
        CHOICE.update(before)


class Again(AsyncNode):
    """After the first visit, the next visit squares other items."""

    async def post_async(self, shared, prep_res, exec_res):
        shared["visits"] += 1
        if shared["visits"] < 2:
            shared["items"] = [item + 100 for item in shared["items"]]
            return "again"
        return "done"


class End(AsyncNode):
    pass


class Visits(AsyncBatchFlow):
    """One param set: the node runs inside a sub-flow, with batch params (what an item's
    worker must find again: the node by its path, the params the section had)."""

    async def prep_async(self, shared):
        return [{"label": "x"}]


def make_flow():
    square, again = Square(name="square", max_retries=2), Again(name="again")
    square >> again
    again - "again" >> square
    again - "done" >> End(name="end")
    return AsyncFlow(start=Visits(start=square, name="visits"))


def start_shared(items):
    return {"items": list(items), "results": [], "visits": 0}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dbos_fanout")
    runs = DistributedRuns(
        make_flow(),
        SQLiteStore(str(folder / "runs.db")),
        f"sqlite:///{folder / 'dbos.sqlite'}",
        fan_out=True,
        name="fanout_sqlite",
        polling_interval=0.02,
        ttl=1.0,
    )
    runs.launch()
    runs.sqlite_path = folder / "dbos.sqlite"
    try:
        yield runs
    finally:
        runs.shutdown()


def plain_run(items):
    shared = start_shared(items)
    anyio.run(make_flow().run_async, shared)
    return shared


def test_twenty_items_fanned_out_give_a_plain_runs_results_in_input_order(runs):
    items = list(range(20))
    run_id = runs.start(start_shared(items))
    state = runs.wait(run_id, timeout=60)
    assert state.status == "done", state.error
    assert state.shared == plain_run(items)
    first, second = state.shared["results"]
    assert [result["item"] for result in first] == items
    assert [result["item"] for result in second] == [item + 100 for item in items]
    assert all(result["label"] == "x" for result in first + second)  # the section's params


def test_each_visit_of_the_node_has_its_own_item_workflows(runs):
    items = list(range(20))
    run_id = runs.start(start_shared(items))
    state = runs.wait(run_id, timeout=60)
    assert state.status == "done", state.error
    found = runs.items(run_id)
    assert len(found) == 40  # one per item per visit, none shared between the visits
    assert all(status.status == "SUCCESS" for status in found)
    seqs = {status.workflow_id.split(":")[1] for status in found}
    assert len(seqs) == 2  # the checkpoint each visit's section started after
    indexes = sorted(int(status.workflow_id.split(":")[3]) for status in found)
    assert indexes == sorted(list(range(20)) * 2)
    assert all(status.recovery_attempts == 1 for status in found)  # each ran once


def test_only_the_nodes_named_fan_out(runs):
    runs.fan_out = frozenset({"another"})  # (the worker is this object: it reads it)
    try:
        run_id = runs.start(start_shared(range(5)))
        state = runs.wait(run_id, timeout=60)
    finally:
        runs.fan_out = True
    assert state.status == "done", state.error
    assert state.shared == plain_run(range(5))
    assert runs.items(run_id) == []  # square's items ran in the segment's process
    runs.fan_out = frozenset({"square"})
    try:
        run_id = runs.start(start_shared(range(5)))
        state = runs.wait(run_id, timeout=60)
    finally:
        runs.fan_out = True
    assert state.shared == plain_run(range(5))
    assert len(runs.items(run_id)) == 10


def test_dbos_stores_the_items_as_json(runs):
    run_id = runs.start(start_shared([3, 4]))
    state = runs.wait(run_id, timeout=60)
    assert state.status == "done", state.error
    db = sqlite3.connect(str(runs.sqlite_path))
    try:
        rows = db.execute(
            "SELECT s.workflow_uuid, s.serialization, i.inputs, o.output FROM workflow_status s"
            " JOIN workflow_input i USING (workflow_uuid)"
            " LEFT JOIN workflow_output o USING (workflow_uuid) WHERE s.name = ?",
            (ITEM_WORKFLOW,),
        ).fetchall()
    finally:
        db.close()
    mine = sorted(row for row in rows if row[0].startswith(run_id + ":"))
    assert len(mine) == 4
    for workflow_id, serialization, inputs, output in mine:
        assert serialization == "portable_json"
        app, given_run, seq, path, index, given = json.loads(inputs)["positionalArgs"]
        assert (app, given_run, path) == ("fanout_sqlite", run_id, ["visits", "square"])
        assert workflow_id.startswith(f"{run_id}:{seq}:visits/square:{index}:")
        assert given["item"] in (3, 4, 103, 104) and given["params"] == {"label": "x"}
        assert given["batch"] == {"label": "x"}
        result = json.loads(output)["result"]
        assert result == {"item": given["item"], "square": given["item"] ** 2, "label": "x"}


def test_a_non_json_item_fails_the_run_naming_the_node(runs):
    with choosing(sets=True):  # prep makes set items: JSON has no sets
        run_id = runs.start(start_shared([1, 2]))
        state = runs.wait(run_id, timeout=60)
    assert state.status == "failed"
    assert "node 'visits > square' fans its items out" in state.error and "JSON only" in state.error
    assert "item 0" in state.error and "fan_out" in state.error  # what to do
    assert runs.items(run_id) == []  # nothing was enqueued


def test_a_failing_item_fails_the_section_marked_with_its_path(runs):
    with choosing(failing=7):
        run_id = runs.start(start_shared(range(10)))
        state = runs.wait(run_id, timeout=60)
    assert state.status == "failed"
    assert state.error.startswith(
        "FanOutItemFailed: item 7 of the parallel batch 'visits > square'"
    )
    assert "ValueError: no square for 7" in state.error


def test_an_item_is_retried_and_falls_back_on_its_worker_as_in_its_section(runs):
    with choosing(flaky=3, hopeless=4):
        run_id = runs.start(start_shared(range(6)))
        state = runs.wait(run_id, timeout=60)
        plain = plain_run(range(6))
    assert state.status == "done", state.error
    assert state.shared == plain
    first = state.shared["results"][0]
    assert first[3]["square"] == 9 and first[4]["label"] == "fallback"


def test_an_item_that_asks_cannot_pause_away_from_its_run(runs):
    with choosing(asking=2):
        run_id = runs.start(start_shared([1, 2]))
        state = runs.wait(run_id, timeout=60)
    assert state.status == "failed"
    assert "asked for input" in state.error and "cannot pause" in state.error


# -- two workers on real Postgres -----------------------------------------------------------

POSTGRES = os.environ.get("POCKETFLOW_STREAM_POSTGRES_URL")


@pytest.mark.skipif(not POSTGRES, reason="POCKETFLOW_STREAM_POSTGRES_URL is not set")
def test_a_worker_killed_mid_item_and_restarted_loses_no_item_and_reruns_only_those_in_flight(
    tmp_path,
):
    """Two workers, two items at a time each (items 0-9 finish at once, 10-19 wait for
    `go`); worker-1, which runs the segment too (it was the only worker when the run
    started), is killed with SIGKILL once two items it runs have started and wait, then
    restarted under its executor id. Every result comes back, in input order; the segment
    went on; each item that had finished ran once; the ones worker-1 had in flight ran again
    (a second start row), on a second dispatch of their workflow, as attempt 1."""
    schema = f"fanout_{uuid.uuid4().hex[:10]}"
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).parent.parent),
        "FANOUT_FOLDER": str(tmp_path),
        "FANOUT_SCHEMA": schema,
    }
    app = APPS / "fanout_worker.py"

    def worker(executor_id):
        process = subprocess.Popen(
            [sys.executable, str(app), executor_id],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        assert process.stdout.readline().strip() == b"launched"
        return process

    def rows():
        path = tmp_path / "rows"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line]

    def wait_until(test, what, timeout=90.0):
        deadline = time.monotonic() + timeout
        while not test():
            assert time.monotonic() < deadline, f"{what} never happened"
            time.sleep(0.02)

    sys.path.insert(0, str(APPS))
    try:
        from fanout_worker import make_runs
    finally:
        sys.path.remove(str(APPS))
    processes = {}
    client = None
    try:
        processes["worker-1"] = worker("worker-1")
        pid = processes["worker-1"].pid
        client = make_runs("client", schema)  # not launched: enqueues through DBOSClient
        run_id = client.start({"items": list(range(20)), "results": []})
        wait_until(lambda: rows(), "the first item's start")  # the segment is worker-1's
        processes["worker-2"] = worker("worker-2")

        def worker_1_waits_in_both_slots():  # (then nothing else is mid-flight there)
            waiting = {
                row["item"]
                for row in rows()
                if row["pid"] == pid and row["event"] == "start" and row["item"] >= 10
            }
            return len(waiting) == 2

        wait_until(worker_1_waits_in_both_slots, "two items of worker-1 waiting")
        os.killpg(pid, signal.SIGKILL)
        processes["worker-1"].wait()
        before = rows()
        finished = {row["item"] for row in before if row["event"] == "end"}
        in_flight = {
            row["item"] for row in before if row["event"] == "start" and row["pid"] == pid
        } - finished
        assert len(in_flight) == 2 and finished
        processes["worker-1"] = worker("worker-1")  # the same executor id: DBOS recovers
        (tmp_path / "go").write_text("")
        state = client.wait(run_id, timeout=120)
        assert state.status == "done", state.error
        assert state.shared["results"] == [[item * item for item in range(20)]]
        # the one segment workflow, dispatched again once worker-1's restart re-enqueued it
        # (DBOS recovers by re-enqueueing: either worker may take it then)
        (segment,) = client.segments(run_id)
        assert (segment.status, segment.recovery_attempts) == ("SUCCESS", 2)
        after = rows()
        starts = {
            item: [r for r in after if r["event"] == "start" and r["item"] == item]
            for item in range(20)
        }
        for item in range(20):
            expected = 2 if item in in_flight else 1
            assert len(starts[item]) == expected, (item, starts[item])
        # the re-runs were new attempts, on a new dispatch of the same workflow
        items = {int(s.workflow_id.split(":")[3]): s for s in client.items(run_id)}
        assert len(items) == 20
        for item, status in items.items():
            assert status.recovery_attempts == (2 if item in in_flight else 1), item
            assert status.output["attempt"] == (1 if item in in_flight else 0), item
        if os.environ.get("POCKETFLOW_STREAM_REDIS_URL"):
            import redis

            from pocketflow_stream.scale.redis_events import DEFAULT_PREFIX

            relay = redis.Redis.from_url(os.environ["POCKETFLOW_STREAM_REDIS_URL"])
            entries = relay.xrange(DEFAULT_PREFIX + run_id)
            relay.delete(DEFAULT_PREFIX + run_id)
            relay.close()
            told = [json.loads(fields[b"data"]) for _, fields in entries]
            for item in range(20):
                chunks = [t for t in told if t["type"] == "chunk" and t["item"] == item]
                retries = [t for t in told if t["type"] == "retry" and t["item"] == item]
                assert all(t["path"] == ["square"] for t in chunks)
                if item in in_flight:  # the new attempt's chunk, after the Retry that says so
                    assert [t["attempt"] for t in chunks][-1] == 1
                    assert [(t["attempt"], "new attempt" in t["error"]) for t in retries] == [
                        (0, True)
                    ]
                else:
                    assert [t["attempt"] for t in chunks] == [0] and retries == []
    finally:
        for process in processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if client is not None:
            client.shutdown()
            client.store.drop_schema()
            client.store.close()
        import psycopg
        from psycopg import sql

        with psycopg.connect(POSTGRES, autocommit=True) as db:
            drop = sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE")
            db.execute(drop.format(sql.Identifier(f"{schema}_dbos")))
