"""Durable runs: checkpointed to a real SQLite file, resumed by id — in this process, and in a
fresh one — with the final state of an uninterrupted run, no completed node run again and no
chunk id delivered twice.

Every node of the apps below appends a line to a side log when its exec (or exec_stream)
starts, so a test counts what ran, across processes.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from pathlib import Path

import pytest

from pocketflow_stream import FlowError
from pocketflow_stream.persist import (
    CheckpointError,
    CheckpointTooLarge,
    Codecs,
    DurableRuns,
    LeaseLost,
    NotJSONError,
    RunBusy,
    RunFinished,
    RunNotFound,
    SQLiteStore,
    UnknownCodecError,
    UnknownInterrupt,
)

APP = textwrap.dedent(
    '''
    """Apps for the durable-run tests; each node logs its exec to $DURABLE_LOG."""
    import json, os, sys
    from pocketflow_stream import Ask, AskNode, BatchNode, Flow, Node, StreamBatchNode, StreamNode

    def log(line):
        with open(os.environ["DURABLE_LOG"], "a") as f:
            f.write(line + "\\n")

    class Count(Node):
        def exec(self, _):
            log(self.name)
        def post(self, shared, prep_res, exec_res):
            shared["trail"].append(self.name)

    class Draft(StreamNode):
        """Streams three chunks, asks, streams two more with the answer."""
        def exec_stream(self, _):
            log(self.name)
            for word in ("one", "two", "three"):
                yield word
            answer = yield Ask({"question": "go on?", "after": "three"})
            for word in ("four", answer):
                yield word
            return answer
        def post(self, shared, prep_res, answer):
            shared["trail"].append(self.name)
            shared["answer"] = answer

    class Approve(AskNode):
        def prep(self, shared):
            log(self.name + " prep")
            return {"approve": shared["trail"][-1]}
        def post(self, shared, payload, answer):
            shared["trail"].append(self.name)
            shared["approved"] = answer

    class Items(StreamBatchNode):
        """Four items; item 2 asks after one chunk."""
        def prep(self, shared):
            return [0, 1, 2, 3]
        def exec_stream(self, item):
            log(f"{self.name}[{item}]")
            yield f"item {item}"
            if item == 2:
                answer = yield Ask({"item": item})
                yield f"answer {answer}"
                return answer
            return item * 10
        def post(self, shared, items, results):
            shared["trail"].append(self.name)
            shared["results"] = results

    def build(kind):
        if kind == "nested":
            inner = Flow(start=Count(name="Setup"), name="Inner")
            inner.start_node >> Draft(name="Draft") >> Count(name="Check")
            first = Count(name="First")
            first >> inner >> Count(name="Last")
            return Flow(start=first, name="Outer")
        if kind == "between":
            inner = Flow(start=Count(name="Plan"), name="Inner")
            inner.start_node >> Approve(name="Approve") >> Count(name="Act")
            first = Count(name="First")
            first >> inner >> Count(name="Last")
            return Flow(start=first, name="Outer")
        if kind == "batch":
            first = Count(name="First")
            first >> Items(name="Items") >> Count(name="Last")
            return Flow(start=first, name="Batch")
        if kind == "changed":  # "nested" without its Draft node
            inner = Flow(start=Count(name="Setup"), name="Inner")
            inner.start_node >> Count(name="Check")
            first = Count(name="First")
            first >> inner >> Count(name="Last")
            return Flow(start=first, name="Outer")
        raise ValueError(kind)

    def initial():
        return {"trail": []}

    if __name__ == "__main__":
        from pocketflow_stream.persist import DurableRuns, SQLiteStore
        command, kind, db = sys.argv[1:4]
        runs = DurableRuns(build(kind), SQLiteStore(db))
        if command == "start":
            run = runs.start(initial(), run_id=sys.argv[4] if len(sys.argv) > 4 else None)
        else:
            run = runs.resume(sys.argv[4], json.loads(sys.argv[5]))
        items = [item.to_dict() for item in run]
        print(json.dumps({"run_id": run.run_id, "status": run.status, "items": items,
                          "interrupts": run.interrupts, "shared": run.shared}))
    '''
)


@pytest.fixture
def app(tmp_path, monkeypatch):
    (tmp_path / "durable_app.py").write_text(APP)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("DURABLE_LOG", str(tmp_path / "side.log"))
    sys.modules.pop("durable_app", None)
    import durable_app

    yield durable_app
    sys.modules.pop("durable_app", None)


def ran(tmp_path) -> Counter:
    path = tmp_path / "side.log"
    return Counter(path.read_text().splitlines()) if path.exists() else Counter()


def in_a_fresh_process(tmp_path, *args):
    done = subprocess.run(
        [sys.executable, str(tmp_path / "durable_app.py"), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, DURABLE_LOG=str(tmp_path / "side.log")),
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def uninterrupted(app, kind, answers_by_order):
    """The same flow run in one process with the engine's in-process resume, no store."""
    shared = app.initial()
    stream = app.build(kind).run_stream(shared)
    result = yield_all(stream)
    for answer in answers_by_order:
        (interrupt,) = result.interrupts
        result = yield_all(result.resume({interrupt.id: answer}))
    return shared


def yield_all(stream):
    while True:
        try:
            next(stream)
        except StopIteration as end:
            return end.value


def chunk_ids_are_never_delivered_twice(*segments):
    """Across segments, every item id comes once, increasing — except chunks marked
    `replay`, which carry the id they were first delivered with (a relay drops them)."""
    delivered = []
    for items in segments:
        for item in items:
            if item.get("replay"):
                assert item["id"] in delivered
                continue
            number = item["id"] if item["type"] != "interrupt" else item["seq"]
            assert not delivered or number > delivered[-1], (number, delivered)
            delivered.append(number)
    return delivered


SCENARIOS = {
    # kind: (answers in order, what runs twice — only the node that asked inside its stream)
    "nested": (["yes"], {"Draft": 2}),
    "between": (["approved"], {"Approve prep": 1}),
    "batch": (["42"], {"Items[2]": 2}),
}


@pytest.mark.parametrize("kind", sorted(SCENARIOS))
def test_resume_in_a_fresh_process_gives_the_uninterrupted_result(app, tmp_path, kind):
    answers, twice = SCENARIOS[kind]
    expected = uninterrupted(app, kind, answers)
    (tmp_path / "side.log").unlink()
    db = tmp_path / "runs.db"

    first = in_a_fresh_process(tmp_path, "start", kind, db)
    assert first["status"] == "paused"
    (interrupt,) = first["interrupts"]
    assert first["items"][-1]["type"] == "interrupt" and first["items"][-1]["id"] == interrupt["id"]
    second = in_a_fresh_process(
        tmp_path, "resume", kind, db, first["run_id"], json.dumps({interrupt["id"]: answers[0]})
    )
    assert second["status"] == "done"
    assert second["shared"] == expected
    runs = ran(tmp_path)
    assert all(count == twice.get(node, 1) for node, count in runs.items()), runs
    chunk_ids_are_never_delivered_twice(first["items"], second["items"])


def test_chunks_remade_on_the_way_back_to_a_pause_are_marked_with_their_first_ids(app, tmp_path):
    db = tmp_path / "runs.db"
    first = in_a_fresh_process(tmp_path, "start", "nested", db)
    second = in_a_fresh_process(
        tmp_path,
        "resume",
        "nested",
        db,
        first["run_id"],
        json.dumps({first["interrupts"][0]["id"]: "yes"}),
    )
    made_first = [(i["data"], i["id"]) for i in first["items"] if i["type"] == "chunk"]
    replayed = [(i["data"], i["id"]) for i in second["items"] if i.get("replay")]
    fresh = [i["data"] for i in second["items"] if i["type"] == "chunk" and not i.get("replay")]
    assert (
        replayed
        == made_first
        == [("one", made_first[0][1]), ("two", made_first[1][1]), ("three", made_first[2][1])]
    )
    assert fresh == ["four", "yes"]


def open_runs(app, tmp_path, kind="nested", **options):
    return DurableRuns(app.build(kind), SQLiteStore(tmp_path / "runs.db"), **options)


def test_a_run_id_is_unguessable_unless_given(app, tmp_path):
    runs = open_runs(app, tmp_path)
    started = [runs.start(app.initial()) for _ in range(3)]
    ids = {run.run_id for run in started}
    assert len(ids) == 3 and all(len(run_id) >= 22 for run_id in ids)
    with runs.start(app.initial(), run_id="mine") as run:
        assert run.run_id == "mine"
        with pytest.raises(RunBusy):  # holds its lease until iterated or closed
            runs.start(app.initial(), run_id="mine")
    with pytest.raises(CheckpointError, match="run 'mine' exists already"):
        runs.start(app.initial(), run_id="mine")
    for run in started:
        run.close()
    assert all(runs.inspect(run_id).status == "stopped" for run_id in ids)


def test_inspect_list_and_delete(app, tmp_path):
    runs = open_runs(app, tmp_path)
    run = runs.start(app.initial())
    list(run)
    state = runs.inspect(run.run_id)
    assert (state.status, state.at) == ("paused", "Outer > Inner > Draft")
    assert state.interrupts[0]["payload"] == {"question": "go on?", "after": "three"}
    assert state.shared == {"trail": ["First", "Setup"]}
    assert state.updated_at > 0
    assert [info.run_id for info in runs.list(status="paused")] == [run.run_id]
    assert runs.delete(run.run_id)
    with pytest.raises(RunNotFound):
        runs.inspect(run.run_id)


def test_an_answer_for_an_id_that_is_not_pending_changes_nothing(app, tmp_path):
    runs = open_runs(app, tmp_path)
    run = runs.start(app.initial())
    list(run)
    before = runs.store.load(run.run_id)
    with pytest.raises(UnknownInterrupt, match=r"not waiting for an answer to 'nope'"):
        runs.resume(run.run_id, {"nope": "yes"})
    after = runs.store.load(run.run_id)
    assert (after.seq, after.status) == (before.seq, "paused")
    resumed = runs.resume(run.run_id, {run.interrupts[0]["id"]: "yes"})  # not left busy
    list(resumed)
    assert resumed.status == "done"


def test_a_done_run_is_not_resumed(app, tmp_path):
    runs = open_runs(app, tmp_path, kind="between")
    run = runs.start(app.initial())
    list(run)
    list(runs.resume(run.run_id, {run.interrupts[0]["id"]: "ok"}))
    with pytest.raises(RunFinished, match="is done"):
        runs.resume(run.run_id)


def test_a_second_resumer_gets_run_is_busy_and_the_first_finishes(app, tmp_path):
    runs = open_runs(app, tmp_path)
    run = runs.start(app.initial())
    list(run)
    answer = {run.interrupts[0]["id"]: "yes"}
    first = runs.resume(run.run_id, answer)
    items = iter(first)
    next(items)  # it holds the lease while it advances
    other = open_runs(app, tmp_path)
    with pytest.raises(RunBusy, match=f"run '{run.run_id}' is busy"):
        other.resume(run.run_id, answer)
    list(items)
    assert first.status == "done"
    assert first.shared == uninterrupted(app, "nested", ["yes"])


def test_two_processes_resuming_at_once_exactly_one_advances(app, tmp_path):
    runs = open_runs(app, tmp_path, kind="between")
    run = runs.start(app.initial())
    list(run)
    answer = json.dumps({run.interrupts[0]["id"]: "ok"})
    script = textwrap.dedent(
        f"""
        import json, os, sys, time
        sys.path.insert(0, {str(tmp_path)!r})
        from durable_app import build
        from pocketflow_stream.persist import DurableRuns, RunBusy, SQLiteStore
        runs = DurableRuns(build("between"), SQLiteStore({str(tmp_path / "runs.db")!r}))
        open(sys.argv[1], "w").close()
        deadline = time.monotonic() + 30
        while not os.path.exists({str(tmp_path / "go")!r}):  # both start together
            assert time.monotonic() < deadline
            time.sleep(0.001)
        try:
            run = runs.resume({run.run_id!r}, json.loads(sys.argv[2]))
        except RunBusy as busy:
            print("busy:", busy)
            open({str(tmp_path / "tried")!r}, "w").close()
        else:
            while not os.path.exists({str(tmp_path / "tried")!r}):  # holds the lease until
                assert time.monotonic() < deadline  # the other one has tried
                time.sleep(0.001)
            for item in run:
                pass
            print("advanced:", run.status)
        """
    )
    env = dict(os.environ, DURABLE_LOG=str(tmp_path / "side.log"))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path / f"ready{n}"), answer],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for n in range(2)
    ]
    wait_for(lambda: all((tmp_path / f"ready{n}").exists() for n in range(2)))
    (tmp_path / "go").touch()
    outs = [proc.communicate(timeout=60) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), outs
    lines = sorted(out for out, _ in outs)
    assert lines[0].startswith("advanced: done") and lines[1].startswith("busy: run ")
    assert "is busy" in lines[1]
    assert runs.inspect(run.run_id).shared == uninterrupted(app, "between", ["ok"])


def wait_for(condition, timeout=30.0):
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_a_stale_owner_stops_at_its_next_checkpoint_and_never_writes(app, tmp_path):
    now = [1_000.0]
    store_a = SQLiteStore(tmp_path / "runs.db", clock=lambda: now[0])
    store_b = SQLiteStore(tmp_path / "runs.db", clock=lambda: now[0])
    runs_a = DurableRuns(app.build("nested"), store_a, ttl=10)
    runs_b = DurableRuns(app.build("nested"), store_b, ttl=10)
    run = runs_a.start(app.initial())
    items = iter(run)
    next(items)  # "one": First and Setup done, Draft streaming, A holds the lease
    now[0] += 11  # A's lease expires (A hangs, or its machine is partitioned)
    taken = runs_b.resume(run.run_id)
    assert [item.data for item in taken if hasattr(item, "data")][:1] == ["one"]
    assert taken.status == "paused"
    with pytest.raises(LeaseLost, match="no longer valid"):
        list(items)  # A's next checkpoint is refused
    record = store_b.load(run.run_id)
    assert record.status == "paused" and record.seq == taken.seq


def test_a_value_json_would_change_stops_the_run_naming_the_node_that_wrote_it(app, tmp_path):
    from pocketflow_stream import Flow, Node

    class Good(Node):
        def post(self, shared, prep_res, exec_res):
            shared["ok"] = [1]

    class Bad(Node):
        def post(self, shared, prep_res, exec_res):
            shared["pair"] = (1, 2)

    good = Good()
    good >> Bad() >> Good(name="After")
    runs = DurableRuns(Flow(start=good, name="F"), SQLiteStore(tmp_path / "runs.db"))
    run = runs.start({})
    with pytest.raises(NotJSONError) as caught:
        list(run)
    assert str(caught.value).startswith(
        "cannot checkpoint shared['pair'] (written by node F > Bad): it is a tuple; JSON would "
        "turn it into a list."
    )
    state = runs.inspect(run.run_id)
    assert state.status == "failed" and state.shared == {"ok": [1]}  # the last good checkpoint
    assert "NotJSONError" in state.error


def test_the_size_guard_names_the_biggest_keys(app, tmp_path):
    from pocketflow_stream import Flow, Node

    class Load(Node):
        def post(self, shared, prep_res, exec_res):
            shared["document"] = "x" * 5000

    runs = DurableRuns(Flow(start=Load()), SQLiteStore(tmp_path / "runs.db"), max_bytes=1000)
    with pytest.raises(CheckpointTooLarge, match=r"shared\['document'\] 5,002 bytes"):
        list(runs.start({"small": 1}))


def test_codecs_carry_other_types_and_an_unknown_tag_is_an_error(app, tmp_path):
    codecs = Codecs().register(
        "date", datetime.date, datetime.date.isoformat, datetime.date.fromisoformat
    )
    runs = open_runs(app, tmp_path, codecs=codecs)
    shared = {"trail": [], "due": datetime.date(2030, 1, 2)}
    run = runs.start(shared)
    list(run)
    assert runs.inspect(run.run_id).shared["due"] == datetime.date(2030, 1, 2)
    resumed = runs.resume(run.run_id, {run.interrupts[0]["id"]: "yes"})
    list(resumed)
    assert resumed.shared["due"] == datetime.date(2030, 1, 2)
    with pytest.raises(UnknownCodecError, match="codec 'date'"):
        open_runs(app, tmp_path).inspect(run.run_id)


def test_a_changed_graph_is_refused_naming_the_missing_node(app, tmp_path):
    run = open_runs(app, tmp_path).start(app.initial())
    list(run)
    before = SQLiteStore(tmp_path / "runs.db").load(run.run_id)
    changed = open_runs(app, tmp_path, kind="changed")
    with pytest.raises(FlowError, match="Draft"):
        list(changed.resume(run.run_id, {run.interrupts[0]["id"]: "yes"}))
    after = changed.store.load(run.run_id)
    assert after.position == before.position and after.shared == before.shared
    again = open_runs(app, tmp_path).resume(run.run_id, {run.interrupts[0]["id"]: "yes"})
    list(again)  # the lease was let go, the position kept: the right graph finishes it
    assert again.status == "done"


def test_a_stop_request_keeps_the_run_resumable_from_its_last_checkpoint(app, tmp_path):
    runs = open_runs(app, tmp_path, kind="batch")
    run = runs.start(app.initial())
    seen = []
    for item in run:
        seen.append(item)
        if getattr(item, "data", None) == "item 1":
            stopper = threading.Thread(target=run.stop)  # what a UI's Stop button does
            stopper.start()
            stopper.join()
    assert run.status == "stopped"
    assert all(getattr(item, "data", None) != "item 2" for item in seen)
    state = runs.inspect(run.run_id)
    assert state.status == "stopped"
    resumed = runs.resume(run.run_id)
    list(resumed)
    assert resumed.status == "paused"  # item 2 asks, as it would have
    done = runs.resume(run.run_id, {resumed.interrupts[0]["id"]: "42"})
    list(done)
    assert done.shared == uninterrupted(app, "batch", ["42"])


def test_leaving_the_loop_early_is_a_stop(app, tmp_path):
    runs = open_runs(app, tmp_path)
    with runs.start(app.initial()) as run:
        for item in run:
            assert item.data == "one"
            break
    state = runs.inspect(run.run_id)
    assert (state.status, state.at) == ("stopped", "Outer > Inner > Draft")
    resumed = runs.resume(run.run_id)  # the lease was let go
    list(resumed)
    assert resumed.status == "paused"


def test_fork_an_older_checkpoint_into_a_new_run(app, tmp_path):
    store = SQLiteStore(tmp_path / "runs.db", history=20)
    runs = DurableRuns(app.build("between"), store)
    run = runs.start(app.initial())
    list(run)
    list(runs.resume(run.run_id, {run.interrupts[0]["id"]: "first answer"}))
    paused_seq = next(
        seq for seq in store.seqs(run.run_id) if store.load(run.run_id, seq).status == "paused"
    )
    fork = runs.fork(run.run_id, paused_seq)
    forked = runs.inspect(fork)
    assert forked.status == "paused" and fork != run.run_id
    again = runs.resume(fork, {forked.interrupts[0]["id"]: "second answer"})
    list(again)
    assert again.shared["approved"] == "second answer"
    assert runs.inspect(run.run_id).shared["approved"] == "first answer"


def test_the_paused_record_is_plain_versioned_json(app, tmp_path):
    run = open_runs(app, tmp_path).start(app.initial())
    list(run)
    import sqlite3

    raw = sqlite3.connect(tmp_path / "runs.db")
    (text,) = raw.execute("SELECT record FROM pfs_runs WHERE run_id = ?", (run.run_id,)).fetchone()
    record = json.loads(text)
    assert record["version"] == 1 and record["status"] == "paused"
    assert record["position"]["frames"] and record["fingerprint"]
    assert Path(tmp_path / "runs.db").exists()


def test_the_position_is_checked_too_and_carries_a_prep_tuple_exactly(app, tmp_path):
    from pocketflow_stream import Ask, Flow, StreamNode

    class Pair(StreamNode):
        def prep(self, shared):
            return ("a", 1)  # PocketFlow preps often return tuples

        def exec_stream(self, pair):
            answer = yield Ask({"pair": list(pair)})
            return [type(pair).__name__, answer]

        def post(self, shared, pair, result):
            shared["result"] = result

    def runs_of(node_class):
        return DurableRuns(Flow(start=node_class(), name="F"), SQLiteStore(tmp_path / "runs.db"))

    run = runs_of(Pair).start({})
    list(run)
    resumed = runs_of(Pair).resume(run.run_id, {run.interrupts[0]["id"]: "ok"})
    list(resumed)
    assert resumed.shared == {"result": ["tuple", "ok"]}  # not turned into a list

    class Odd(Pair):
        def prep(self, shared):
            return {1, 2}

    with pytest.raises(NotJSONError, match=r"cannot checkpoint position\['frames'\]\[1\]"):
        list(runs_of(Odd).start({}))


def test_every_checkpoint_text_is_what_its_record_encodes_to(app, tmp_path):
    """The run makes each checkpoint's text itself (one fast encoding per node): it must be
    exactly the text `Record.body()` makes from the record's fields, pauses and ends too."""
    import dataclasses

    checked = []

    class Checking(SQLiteStore):
        def save(self, lease, seq_expected, record):
            checked.append(record.status)
            assert record.body() == dataclasses.replace(record).body()
            return super().save(lease, seq_expected, record)

    def runs():
        return DurableRuns(app.build("nested"), Checking(tmp_path / "runs.db"))

    run = runs().start(app.initial())
    list(run)
    assert run.status == "paused" and run.interrupts
    resumed = runs().resume(run.run_id, {ask["id"]: "yes" for ask in run.interrupts})
    list(resumed)
    assert {"running", "paused"} <= set(checked) and len(checked) > 3


FIRST_NODE_APP = textwrap.dedent(
    '''
    """A run whose first node streams a chunk, writes $MARKER, then waits for $GO."""
    import os, sys, time
    from pocketflow_stream import Flow, Node, StreamNode
    from pocketflow_stream.persist import DurableRuns, SQLiteStore

    class Stream(StreamNode):
        def exec_stream(self, _):
            yield "first"
            with open(os.environ["MARKER"], "a") as marker:
                marker.write("started\\n")
            while not os.path.exists(os.environ["GO"]):
                time.sleep(0.01)
            yield "second"

    class Last(Node):
        def post(self, shared, prep_res, exec_res):
            shared["trail"].append("Last")

    def build():
        stream = Stream(name="Stream")
        stream >> Last(name="Last")
        return Flow(start=stream, name="First")

    if __name__ == "__main__":
        runs = DurableRuns(build(), SQLiteStore(sys.argv[1]), ttl=0.5)
        for item in runs.start({"trail": []}, run_id="first-node"):
            pass
    '''
)


def resume_when_the_lease_is_free(runs, run_id):
    """Resume `run_id` once the dead owner's lease expired (RunBusy says when)."""
    import time

    while True:
        try:
            return runs.resume(run_id)
        except RunBusy as busy:
            time.sleep(max((busy.expires_at or 0) - time.time(), 0) + 0.01)


def test_a_run_killed_in_its_first_node_resumes_it_as_a_new_attempt(tmp_path, monkeypatch):
    """kill -9 while the first node runs (no node had finished: only the start's checkpoint
    was saved): resumed, that node runs again as attempt 1, announced by a Retry event, as a
    later node in flight would (was: attempt 0, as if it had never run)."""
    import signal
    import time

    app = tmp_path / "first_node_app.py"
    app.write_text(FIRST_NODE_APP)
    marker, go = tmp_path / "marker", tmp_path / "go"
    env = dict(os.environ, MARKER=str(marker), GO=str(go))
    child = subprocess.Popen([sys.executable, str(app), str(tmp_path / "runs.db")], env=env)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert child.poll() is None, "the run ended before its first node started"
            assert time.monotonic() < deadline, "the first node never started"
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
        child.wait()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    go.write_text("")
    monkeypatch.setenv("MARKER", str(marker))
    monkeypatch.setenv("GO", str(go))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("first_node_app", None)
    import first_node_app

    runs = DurableRuns(first_node_app.build(), SQLiteStore(str(tmp_path / "runs.db")), events=True)
    run = resume_when_the_lease_is_free(runs, "first-node")
    items = [item for item in run]
    sys.modules.pop("first_node_app", None)
    assert run.status == "done"
    assert run.shared == {"trail": ["Last"]}
    retries = [item for item in items if item.type == "retry"]
    assert [(r.node, r.attempt) for r in retries] == [("Stream", 0)]
    chunks = [(item.data, item.attempt) for item in items if item.type == "chunk"]
    assert chunks == [("first", 1), ("second", 1)]


def test_a_created_run_begins_with_its_first_attempt(tmp_path, monkeypatch):
    """`create` saves a run that has not begun (no position): its first resume is its start,
    attempt 0, no Retry; once begun, the saved position says so (no frames yet)."""
    (tmp_path / "created_app.py").write_text(FIRST_NODE_APP)
    (tmp_path / "go").write_text("")
    monkeypatch.setenv("MARKER", str(tmp_path / "marker"))
    monkeypatch.setenv("GO", str(tmp_path / "go"))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("created_app", None)
    import created_app

    store = SQLiteStore(str(tmp_path / "runs.db"))
    runs = DurableRuns(created_app.build(), store, events=True)
    runs.create({"trail": []}, "created")
    assert store.load("created").position is None
    with runs.resume("created") as run:
        items = iter(run)
        seen = [next(items)]
        while seen[-1].type != "chunk":
            seen.append(next(items))
        assert seen[-1].attempt == 0
        assert [item for item in seen if item.type == "retry"] == []
        begun = store.load("created")
        assert begun.status == "running" and begun.position["frames"] == []
    sys.modules.pop("created_app", None)
