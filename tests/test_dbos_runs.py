"""DistributedRuns on DBOS Transact, SQLite mode (one process that is its own worker): a run
paused and resumed through DBOS segment workflows ends as a plain run does; the same start or
resume twice enqueues one segment; what DBOS stores is JSON."""

from __future__ import annotations

import json
import sqlite3

import pytest

pytest.importorskip("dbos")

from pocketflow_stream import Flow, Node, ask  # noqa: E402
from pocketflow_stream.persist import SQLiteStore  # noqa: E402
from pocketflow_stream.persist.runs import UnknownInterrupt  # noqa: E402
from pocketflow_stream.scale.dbos_runs import SEGMENT_WORKFLOW, DistributedRuns  # noqa: E402


class Count(Node):
    def prep(self, shared):
        return shared["n"]

    def post(self, shared, prep_res, exec_res):
        shared["n"] = prep_res + 1
        shared["log"].append(f"count {prep_res}")


class Approve(Node):
    def exec(self, prep_res):
        return ask({"question": "go on?"})

    def post(self, shared, prep_res, answer):
        shared["log"].append(f"answer {answer}")


def make_flow():
    first, approve, last = Count(name="first"), Approve(name="approve"), Count(name="last")
    first >> approve >> last
    return Flow(start=first)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dbos")
    runs = DistributedRuns(
        make_flow(),
        SQLiteStore(str(folder / "runs.db")),
        f"sqlite:///{folder / 'dbos.sqlite'}",
        polling_interval=0.05,
        ttl=1.0,
    )
    runs.launch()  # one launch for the module (~1 s)
    runs.sqlite_path = folder / "dbos.sqlite"
    try:
        yield runs
    finally:
        runs.shutdown()


def test_start_pause_resume_done_as_a_plain_run(runs):
    run_id = runs.start({"n": 0, "log": []})
    state = runs.wait(run_id, timeout=30)
    assert state.status == "paused"
    (interrupt,) = state.interrupts
    paused_at = state.seq
    assert interrupt["payload"] == {"question": "go on?"}
    runs.resume(run_id, {interrupt["id"]: "yes"})
    state = runs.wait(run_id, timeout=30)
    assert state.status == "done"

    plain = make_flow()
    shared = {"n": 0, "log": []}
    paused = plain.run_stream(shared)
    handle = None
    try:
        while True:
            next(paused)
    except StopIteration as stop:
        handle = stop.value
    for _ in handle.resume({handle.interrupts[0].id: "yes"}):
        pass
    assert state.shared == shared == {"n": 2, "log": ["count 0", "answer yes", "count 1"]}
    ids = [segment.workflow_id for segment in runs.segments(run_id)]
    assert ids == [f"{run_id}:0", f"{run_id}:{paused_at}"]  # one workflow per segment


def test_the_same_start_and_resume_twice_start_once(runs):
    run_id = runs.start({"n": 0, "log": []}, run_id="double-click")
    assert runs.start({"n": 0, "log": []}, run_id="double-click") == run_id
    state = runs.wait(run_id, timeout=30)
    answer = {state.interrupts[0]["id"]: "yes"}
    first = runs.resume(run_id, answer)
    second = runs.resume(run_id, answer)
    assert (first.new, second.new) == (True, False)
    assert first.workflow_id == second.workflow_id == f"{run_id}:{state.seq}"
    state = runs.wait(run_id, timeout=30)
    assert state.shared["log"] == ["count 0", "answer yes", "count 1"]  # each node once
    assert len(runs.segments(run_id)) == 2


def test_an_unknown_interrupt_changes_nothing(runs):
    run_id = runs.start({"n": 0, "log": []})
    state = runs.wait(run_id, timeout=30)
    with pytest.raises(UnknownInterrupt, match="not waiting for an answer to 'nope'"):
        runs.resume(run_id, {"nope": 1})
    assert len(runs.segments(run_id)) == 1
    assert runs.inspect(run_id).seq == state.seq


def test_dbos_stores_json_only(runs):
    run_id = runs.start({"n": 0, "log": []})
    state = runs.wait(run_id, timeout=30)
    runs.resume(run_id, {state.interrupts[0]["id"]: {"ok": True}})
    runs.wait(run_id, timeout=30)
    db = sqlite3.connect(str(runs.sqlite_path))
    try:
        rows = db.execute(
            "SELECT s.workflow_uuid, s.serialization, i.inputs, o.output FROM workflow_status s"
            " JOIN workflow_input i USING (workflow_uuid)"
            " LEFT JOIN workflow_output o USING (workflow_uuid) WHERE s.name = ?",
            (SEGMENT_WORKFLOW,),
        ).fetchall()
    finally:
        db.close()
    mine = [row for row in rows if row[0].startswith(run_id + ":")]
    assert len(mine) == 2
    for _, serialization, inputs, output in mine:
        assert serialization == "portable_json"
        args = json.loads(inputs)["positionalArgs"]
        assert args[1] == run_id
        if output is not None:
            assert json.loads(output)["status"] in ("paused", "done")
    answers = [json.loads(row[2])["positionalArgs"][3] for row in mine]
    assert {"ok": True} in [next(iter(a.values()), None) for a in answers]


def test_a_segment_killed_mid_node_is_recovered_by_its_restarted_worker(tmp_path):
    """kill -9 of the worker while `slow` runs; the worker restarted under the same executor
    id recovers the segment: it waits out the dead lease and resumes from the last
    checkpoint, so `first` ran once and `slow` runs again (a second start)."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    app = Path(__file__).parent / "dbos_apps" / "segment_worker.py"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}

    def worker():
        return subprocess.Popen(
            [sys.executable, str(app), str(tmp_path), "worker-1"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def wait_for(path, process, timeout=60.0):
        deadline = time.monotonic() + timeout
        while not path.exists():
            assert process.poll() is None, "the worker ended early"
            assert time.monotonic() < deadline, f"{path.name} never appeared"
            time.sleep(0.02)

    first = worker()
    second = None
    try:
        assert first.stdout.readline().strip() == b"launched"
        sys.path.insert(0, str(app.parent))
        try:
            from segment_worker import make_runs
        finally:
            sys.path.remove(str(app.parent))
        client = make_runs(str(tmp_path), "client")  # not launched: enqueues through DBOSClient
        run_id = client.start({"log": []})
        wait_for(tmp_path / "started-0", first)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        second = worker()
        wait_for(tmp_path / "started-1", second)
        (tmp_path / "go").write_text("")
        state = client.wait(run_id, timeout=60)
        assert state.status == "done"
        assert state.shared["log"] == ["count", "slow after 1 starts", "count"]
        assert [s.status for s in client.segments(run_id)] == ["SUCCESS"]
        client.shutdown()
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
