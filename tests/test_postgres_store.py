"""PostgresStore beyond the contract suite (tests/test_store_contract.py runs that on Postgres
too): prepared statements off for poolers, a lost connection, a commit cut off, and durable
runs across processes — kill -9 of the worker, a Postgres restart mid-run, two workers
resuming one run at once.

Needs a server: `eval "$(scripts/servers.sh start DIR)"` sets POCKETFLOW_STREAM_POSTGRES_URL
(and POCKETFLOW_STREAM_SERVERS_DIR, which the restart test uses); without it these tests skip.
More kill trials: POCKETFLOW_STREAM_PG_CRASH_TRIALS=50 python -m pytest tests/test_postgres_store.py
"""

from __future__ import annotations

import json
import os
import random
import secrets
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

import anyio
import pytest

URL = os.environ.get("POCKETFLOW_STREAM_POSTGRES_URL", "")
SERVERS_DIR = os.environ.get("POCKETFLOW_STREAM_SERVERS_DIR", "")
SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "servers.sh"
TRIALS = int(os.environ.get("POCKETFLOW_STREAM_PG_CRASH_TRIALS", "12"))

pytestmark = pytest.mark.skipif(
    not URL,
    reason="POCKETFLOW_STREAM_POSTGRES_URL is not set: start a throwaway server with "
    'eval "$(scripts/servers.sh start DIR)" to run the Postgres tests',
)

if URL:
    import psycopg
    import psycopg.sql

    from pocketflow_stream.persist import Record, SequenceConflict
    from pocketflow_stream.scale import AsyncPostgresStore, PostgresStore


@pytest.fixture
def schema():
    name = f"pfs_test_{secrets.token_hex(6)}"
    yield name
    with psycopg.connect(URL, autocommit=True) as db:
        db.execute(
            psycopg.sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(psycopg.sql.Identifier(name))
        )


def record(status="running", **fields):
    fields.setdefault("shared", {"n": 1})
    return Record("r1", status, **fields)


def server_prepared(store) -> int:
    """How many prepared statements the store's own server session holds."""
    db = store._connection
    return db.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()[0]


def test_prepared_statements_can_be_turned_off_for_poolers(schema):
    with PostgresStore(URL, schema=schema) as direct:
        lease = direct.claim("r1", "a")
        for seq in range(8):
            direct.save(lease, seq, record(shared={"n": seq}))
        assert server_prepared(direct) > 0  # psycopg prepares a statement after 5 uses
    with PostgresStore(URL, schema=schema, prepare_threshold=None) as pooled:
        lease = pooled.claim("r2", "a")
        for seq in range(8):
            pooled.save(lease, seq, record(shared={"n": seq}))
        assert server_prepared(pooled) == 0
        assert pooled.load("r2").shared == {"n": 7}


def test_the_schema_is_created_once_and_tables_live_in_it(schema):
    PostgresStore(URL, schema=schema).close()
    PostgresStore(URL, schema=schema).close()  # a second opening finds it
    with psycopg.connect(URL) as db:
        tables = db.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
            "ORDER BY table_name",
            (schema,),
        ).fetchall()
    assert [name for (name,) in tables] == ["pfs_history", "pfs_meta", "pfs_runs"]


def test_a_schema_from_a_newer_version_is_refused(schema):
    PostgresStore(URL, schema=schema).close()
    with psycopg.connect(URL, autocommit=True) as db:
        db.execute(f'UPDATE "{schema}".pfs_meta SET value = %s', ("99",))
    with pytest.raises(Exception, match="written by a newer pocketflow_stream"):
        PostgresStore(URL, schema=schema)


def test_an_error_the_server_answers_is_raised_not_retried(schema):
    with PostgresStore(URL, schema=schema, retry_for=2) as store:
        store._connection.execute("SET statement_timeout = 1")
        pid = store._connection.info.backend_pid
        with pytest.raises(psycopg.errors.QueryCanceled):  # not retried into CheckpointError
            store._call(lambda db, retried: db.execute("SELECT pg_sleep(5)"))
        assert store._connection.info.backend_pid == pid  # the connection was kept


def test_a_connection_the_server_dropped_is_opened_again(schema):
    with PostgresStore(URL, schema=schema) as store:
        lease = store.claim("r1", "a")
        store.save(lease, 0, record())
        pid = store._connection.info.backend_pid
        with psycopg.connect(URL, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        assert store.save(lease, 1, record(shared={"n": 2})) == 2
        assert store._connection.info.backend_pid != pid
        assert store.load("r1").shared == {"n": 2}


class CutOff:
    """A connection whose next statement matching `text` commits, then loses its answer
    (as when the network drops right after the server committed)."""

    def __init__(self, real, text: str) -> None:
        self.real = real
        self.text = text
        self.cut = 0

    def execute(self, statement, *args):
        cursor = self.real.execute(statement, *args)
        if not self.cut and self.text in statement.as_string(self.real):
            self.cut += 1
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return cursor

    @property
    def broken(self):
        return bool(self.cut) or self.real.broken

    def __getattr__(self, name):
        return getattr(self.real, name)


@pytest.mark.parametrize("history", [0, 2])
def test_a_save_whose_commit_was_cut_off_is_not_taken_for_a_conflict(schema, history):
    with PostgresStore(URL, schema=schema, history=history) as store:
        lease = store.claim("r1", "a")
        store.save(lease, 0, record())
        store._connection = cut = CutOff(store._connection, "UPDATE")
        assert store.save(lease, 1, record(shared={"n": 2})) == 2  # not SequenceConflict
        assert cut.cut == 1
        assert store.load("r1").shared == {"n": 2} and store.load("r1").seq == 2
        with pytest.raises(SequenceConflict):  # a real conflict is still one
            store.save(lease, 1, record(shared={"n": 3}))


def test_a_claim_whose_commit_was_cut_off_is_ours(schema):
    with PostgresStore(URL, schema=schema) as store:
        store._connection = cut = CutOff(store._connection, "INSERT")
        lease = store.claim("r1", "a")  # not RunBusy by its own first attempt
        assert cut.cut == 1
        assert store.save(lease, 0, record()) == 1


def test_the_async_store_runs_its_calls_off_the_event_loop(schema):
    threads = []

    async def main():
        store = AsyncPostgresStore(URL, schema=schema)
        real = store.store.save

        def save(*args):
            threads.append(threading.get_ident())
            return real(*args)

        store.store.save = save  # type: ignore[method-assign]
        async with store:
            lease = await store.claim("r1", "a")
            assert await store.save(lease, 0, record()) == 1
            assert (await store.load("r1")).shared == {"n": 1}
            assert [info.run_id for info in await store.list()] == ["r1"]
        return threading.get_ident()

    for backend in ("asyncio", "trio"):
        threads.clear()
        loop_thread = anyio.run(main, backend=backend)
        assert threads and loop_thread not in threads
        with PostgresStore(URL, schema=schema) as store:
            store.delete("r1")


# -- durable runs across processes --------------------------------------------------------

APP = textwrap.dedent(
    '''
    """A 30-node chain (node 15 streams 20 chunks), and an asking flow, on PostgresStore."""
    import json, os, sys, time
    from pocketflow_stream import AskNode, Flow, Node, StreamNode
    from pocketflow_stream.persist import DurableRuns, RunBusy, RunFinished, RunNotFound
    from pocketflow_stream.scale import PostgresStore

    URL, SCHEMA, LOG = os.environ["PG_URL"], os.environ["PG_SCHEMA"], os.environ["CRASH_LOG"]
    GATE = os.environ.get("GATE")  # node n10 (or Apply) waits for this file to exist

    def log(line):
        with open(LOG, "a") as f:
            f.write(line + "\\n")

    def wait_for_gate():
        if GATE:
            deadline = time.monotonic() + 60
            while not os.path.exists(GATE):
                if time.monotonic() > deadline:
                    raise SystemExit("the gate never opened")
                time.sleep(0.01)

    class Step(Node):
        def prep(self, shared):
            return shared["total"]
        def exec(self, total):
            log(f"exec {self.name}")
            if self.name == "n10":
                wait_for_gate()
            time.sleep(0.002)
            return total + int(self.name[1:])
        def post(self, shared, prep_res, total):
            shared["total"] = total
            shared["visited"].append(self.name)

    class Stream(StreamNode):
        def prep(self, shared):
            return shared["total"]
        def exec_stream(self, total):
            log(f"exec {self.name}")
            text = ""
            for index in range(20):
                time.sleep(0.001)
                text += str(index % 10)
                yield str(index % 10)
            return text
        def post(self, shared, prep_res, text):
            shared["text"] = text
            shared["visited"].append(self.name)

    def chain():
        nodes = [Stream(name=f"n{i}") if i == 15 else Step(name=f"n{i}") for i in range(30)]
        for a, b in zip(nodes, nodes[1:]):
            a >> b
        return Flow(start=nodes[0], name="Chain")

    class Approve(AskNode):
        def prep(self, shared):
            return {"question": "apply?"}
        def post(self, shared, payload, answer):
            shared["answers"].append(answer)

    class Apply(Node):
        def exec(self, prep_res):
            log("exec Apply")
            wait_for_gate()
        def post(self, shared, prep_res, exec_res):
            shared["applied"] += 1

    def asking():
        approve = Approve(name="Approve")
        approve >> Apply(name="Apply")
        return Flow(start=approve, name="Asking")

    def initial():
        return {"total": 0, "visited": [], "text": None}

    def runs(flow, ttl=0.3):
        return DurableRuns(flow, PostgresStore(URL, schema=SCHEMA), ttl=ttl)

    if __name__ == "__main__":
        mode, run_id = sys.argv[1:3]
        if mode == "start":
            print("started", flush=True)
            for item in runs(chain()).start(initial(), run_id=run_id):
                pass
            print(json.dumps({"status": "done"}), flush=True)
        elif mode == "resume":
            store_runs = runs(chain())
            deadline = time.monotonic() + 60
            while True:  # the killed worker's lease lasts its ttl
                try:
                    run = store_runs.resume(run_id)
                    break
                except RunNotFound:  # killed before its first checkpoint committed
                    run = store_runs.start(initial(), run_id=run_id)
                    break
                except RunBusy:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
                except RunFinished:  # killed after its last commit
                    state = store_runs.inspect(run_id)
                    print(json.dumps({"status": state.status, "shared": state.shared}))
                    sys.exit(0)
            attempts = [item.attempt for item in run if getattr(item, "node", None) == "n15"]
            print(json.dumps({"status": run.status, "shared": run.shared, "n15": attempts}))
        elif mode == "plain":
            shared = initial()
            chain().run(shared)
            print(json.dumps(shared))
        elif mode == "ask":  # start the asking flow: it pauses at Approve
            run = runs(asking()).start({"answers": [], "applied": 0}, run_id=run_id)
            for item in run:
                pass
            print(json.dumps({"status": run.status, "asks": [a["id"] for a in run.interrupts]}))
        elif mode == "answer":  # resume it with an answer, when the test says go
            ask_id = sys.argv[3]
            store_runs = runs(asking(), ttl=60)  # connected before the race starts
            print("ready", flush=True)
            sys.stdin.readline()
            try:
                run = store_runs.resume(run_id, {ask_id: "yes"})
            except RunBusy as busy:
                print(json.dumps({"busy": str(busy)}), flush=True)
                sys.exit(0)
            print(json.dumps({"advancing": True}), flush=True)
            for item in run:
                pass
            print(json.dumps({"status": run.status, "shared": run.shared}), flush=True)
    '''
)


@pytest.fixture
def app(tmp_path, schema):
    path = tmp_path / "pg_app.py"
    path.write_text(APP)
    return path


def child(app, schema, *args, log, gate=None, **kwargs):
    env = dict(os.environ, PG_URL=URL, PG_SCHEMA=schema, CRASH_LOG=str(log))
    if gate is not None:
        env["GATE"] = str(gate)
    return subprocess.Popen(
        [sys.executable, str(app), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.PIPE,
        text=True,
        env=env,
        **kwargs,
    )


def finish(process, timeout=120):
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err
    return json.loads(out.splitlines()[-1])


def node_runs(log: Path) -> Counter:
    return Counter(line.split()[1] for line in log.read_text().splitlines())


def check_trial(log, result, expected):
    assert result["status"] == "done"
    assert result["shared"] == expected
    runs = node_runs(log)
    assert set(runs) == {f"n{i}" for i in range(30)}
    twice = [node for node, count in runs.items() if count > 1]
    assert len(twice) <= 1 and all(runs[node] == 2 for node in twice), runs
    if twice == ["n15"]:  # killed while it streamed: its chunks come again as a new attempt
        assert result["n15"] and set(result["n15"]) == {1}, result["n15"]


def wait_for_line(log: Path, line: str, process, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not (log.exists() and line in log.read_text().splitlines()):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{line!r} never logged"
        time.sleep(0.01)


def test_kill_9_of_the_worker_at_random_moments_resumes_to_the_uninterrupted_state(
    app, schema, tmp_path
):
    expected = finish(child(app, schema, "plain", "-", log=tmp_path / "plain.log"))
    rng = random.Random(int(os.environ.get("POCKETFLOW_STREAM_CRASH_SEED", "11")))
    killed_mid_run = 0
    for trial in range(TRIALS):
        log, run_id = tmp_path / f"t{trial}.log", f"run-{trial}"
        runner = child(app, schema, "start", run_id, log=log)
        assert runner.stdout.readline() == "started\n"
        time.sleep(rng.uniform(0, 0.25))  # the random moment of the kill, not a wait
        runner.send_signal(signal.SIGKILL)
        runner.communicate(timeout=60)
        killed_mid_run += runner.returncode == -signal.SIGKILL and log.exists()
        result = finish(child(app, schema, "resume", run_id, log=log))
        check_trial(log, result, expected)
    assert killed_mid_run >= TRIALS // 2  # most kills landed while the run was running


@pytest.mark.skipif(
    not SERVERS_DIR,
    reason="POCKETFLOW_STREAM_SERVERS_DIR is not set: the Postgres restart test restarts the "
    'server scripts/servers.sh started (eval "$(scripts/servers.sh start DIR)")',
)
def test_a_postgres_restart_mid_run_loses_nothing(app, schema, tmp_path):
    expected = finish(child(app, schema, "plain", "-", log=tmp_path / "plain.log"))
    log, gate = tmp_path / "restart.log", tmp_path / "gate"
    runner = child(app, schema, "start", "run-r", log=log, gate=gate)
    wait_for_line(log, "exec n10", runner)  # n10 waits at the gate; n0-n9 are saved
    subprocess.run(["bash", str(SCRIPT), "restart-postgres", SERVERS_DIR], check=True)
    gate.touch()  # the worker's next save meets the restarted server
    assert finish(runner) == {"status": "done"}
    with PostgresStore(URL, schema=schema) as store:
        head = store.load("run-r")
    assert head.status == "done" and head.shared == expected
    assert set(node_runs(log).values()) == {1}  # the worker went on: nothing ran twice


def test_two_workers_resume_one_run_at_once_and_exactly_one_advances(app, schema, tmp_path):
    log, gate = tmp_path / "ask.log", tmp_path / "gate"
    paused = finish(child(app, schema, "ask", "run-a", log=log))
    assert paused["status"] == "paused"
    (ask_id,) = paused["asks"]
    workers = [child(app, schema, "answer", "run-a", ask_id, log=log, gate=gate) for _ in "ab"]
    for worker in workers:
        assert worker.stdout.readline() == "ready\n"
    for worker in workers:  # both resume as close together as two processes can
        worker.stdin.write("go\n")
        worker.stdin.flush()
    firsts = [json.loads(worker.stdout.readline()) for worker in workers]
    busy = [first["busy"] for first in firsts if "busy" in first]
    assert len(busy) == 1 and sum("advancing" in first for first in firsts) == 1
    assert "run 'run-a' is busy" in busy[0]
    gate.touch()  # the winner holds the lease until Apply passes the gate
    for worker, first in zip(workers, firsts):
        if "busy" in first:
            out, err = worker.communicate(timeout=60)
            assert worker.returncode == 0 and out == "", err  # it gave up at once
        else:
            done = finish(worker)
    assert done == {"status": "done", "shared": {"answers": ["yes"], "applied": 1}}
    assert node_runs(log) == Counter({"Apply": 1})
