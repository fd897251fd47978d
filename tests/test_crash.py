"""kill -9 at any moment loses at most the node in flight: resumed from the SQLite file in a
fresh process, the run reaches the uninterrupted final state.

A child process runs a 30-node flow (one node streams) on a SQLite file and is killed with
SIGKILL — at a random wall-clock moment, or from inside SQLite itself (its progress handler
sends the signal, so the kill lands inside a statement or a commit). A fresh process resumes
the run by id until it is done. Then: the final `shared` is the uninterrupted one, `PRAGMA
integrity_check` is ok, and the side log (every node appends a line when its exec runs) shows
each node run once, except at most one node (the one in flight) run twice.

The default suite runs a handful of trials; the full run is one variable away:
    POCKETFLOW_STREAM_CRASH_TRIALS=50 python -m pytest tests/test_crash.py
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter

import pytest

TRIALS = int(os.environ.get("POCKETFLOW_STREAM_CRASH_TRIALS", "3"))

APP = textwrap.dedent(
    '''
    """The crash-test app: 30 nodes in a chain, node 15 streams 20 chunks."""
    import os, sys, time, json
    from pocketflow_stream import Node, StreamNode, Flow
    from pocketflow_stream.persist import (
        DurableRuns, SQLiteStore, RunNotFound, RunBusy, RunFinished,
    )

    LOG = os.environ["CRASH_LOG"]

    def log(line):
        with open(LOG, "a") as f:
            f.write(line + "\\n")

    class Step(Node):
        def prep(self, shared):
            return shared["total"]
        def exec(self, total):
            log(f"exec {self.name}")
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

    def build():
        nodes = [Stream(name=f"n{i}") if i == 15 else Step(name=f"n{i}") for i in range(30)]
        for a, b in zip(nodes, nodes[1:]):
            a >> b
        return Flow(start=nodes[0], name="Chain")

    def initial():
        return {"total": 0, "visited": [], "text": None}

    def runs(path, ttl=0.3):
        return DurableRuns(build(), SQLiteStore(path), ttl=ttl)

    if __name__ == "__main__":
        mode, path, run_id = sys.argv[1:4]
        if mode == "start":
            store_runs = runs(path)
            if len(sys.argv) > 4:  # kill from inside SQLite after this many progress calls
                import signal
                limit = int(sys.argv[4])
                calls = [0]
                def handler():
                    calls[0] += 1
                    if calls[0] == limit:  # 0: only count
                        os.kill(os.getpid(), signal.SIGKILL)
                    return 0
                store_runs.store._connection.set_progress_handler(handler, 1)
            print("started", flush=True)
            for item in store_runs.start(initial(), run_id=run_id):
                pass
            if len(sys.argv) > 4:
                print(f"calls {calls[0]}", flush=True)
        elif mode == "resume":
            store_runs = runs(path)
            deadline = time.monotonic() + 30
            while True:  # the killed process's lease lasts its ttl
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
            build().run(shared)
            print(json.dumps(shared))
    '''
)


@pytest.fixture
def app(tmp_path):
    path = tmp_path / "crash_app.py"
    path.write_text(APP)
    return path


def child(app, *args, log, **kwargs):
    env = dict(os.environ, CRASH_LOG=str(log))
    return subprocess.Popen(
        [sys.executable, str(app), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **kwargs,
    )


def uninterrupted(app, tmp_path):
    done = child(app, "plain", "-", "-", log=tmp_path / "plain.log")
    out, err = done.communicate(timeout=120)
    assert done.returncode == 0, err
    return json.loads(out)


def resume_to_the_end(app, db, run_id, log):
    resumer = child(app, "resume", db, run_id, log=log)
    out, err = resumer.communicate(timeout=120)
    assert resumer.returncode == 0, err
    result = json.loads(out)
    assert result["status"] == "done"
    return result


def check_trial(db, log, result, expected):
    assert result["shared"] == expected
    raw = sqlite3.connect(db)
    assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    raw.close()
    runs = Counter(line.split()[1] for line in log.read_text().splitlines())
    assert set(runs) == {f"n{i}" for i in range(30)}
    twice = [node for node, count in runs.items() if count > 1]
    assert len(twice) <= 1 and all(runs[node] == 2 for node in twice), runs
    if twice == ["n15"]:  # killed while it streamed: its chunks now come as a new attempt
        assert result["n15"] and set(result["n15"]) == {1}, result["n15"]
    return twice


def test_kill_at_random_moments(app, tmp_path):
    expected = uninterrupted(app, tmp_path)
    rng = random.Random(int(os.environ.get("POCKETFLOW_STREAM_CRASH_SEED", "8")))
    killed_mid_run = 0
    for trial in range(TRIALS):
        db, log, run_id = tmp_path / f"r{trial}.db", tmp_path / f"r{trial}.log", f"run-{trial}"
        runner = child(app, "start", db, run_id, log=log)
        assert runner.stdout.readline() == "started\n"
        time.sleep(rng.uniform(0, 0.1))  # the random moment of the kill, not a wait
        runner.send_signal(signal.SIGKILL)
        runner.communicate(timeout=60)
        killed_mid_run += runner.returncode == -signal.SIGKILL
        check_trial(db, log, resume_to_the_end(app, db, run_id, log), expected)
    assert killed_mid_run >= 1  # at least one kill landed before the run ended


def test_kill_inside_sqlite_statements_and_commits(app, tmp_path):
    expected = uninterrupted(app, tmp_path)
    rng = random.Random(int(os.environ.get("POCKETFLOW_STREAM_CRASH_SEED", "9")))
    counting = child(app, "start", tmp_path / "count.db", "count", 0, log=tmp_path / "count.log")
    out, _ = counting.communicate(timeout=60)
    calls = int(out.split()[-1])  # SQLite VM steps of a whole run, from its first statement
    for trial in range(max(2, TRIALS)):
        db, log, run_id = tmp_path / f"s{trial}.db", tmp_path / f"s{trial}.log", f"run-{trial}"
        runner = child(app, "start", db, run_id, rng.randint(1, calls), log=log)
        runner.communicate(timeout=60)
        assert runner.returncode == -signal.SIGKILL  # the kill landed inside SQLite
        check_trial(db, log, resume_to_the_end(app, db, run_id, log), expected)
