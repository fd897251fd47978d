"""The runs command line, on a real SQLite file."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from pocketflow_stream.persist import Record, SQLiteStore
from pocketflow_stream.persist.cli import main


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "runs.db"
    with SQLiteStore(path, history=3) as store:
        lease = store.claim("run-paused", "worker")
        store.save(lease, 0, Record("run-paused", "running", shared={"n": 0}, at="Agent > Plan"))
        asks = [
            {
                "id": "run-paused/Agent/Approve/0",
                "payload": {"tool": "delete_file", "arguments": {"path": "notes.txt"}},
                "node": "Approve",
                "path": ["Agent", "Approve"],
            }
        ]
        store.save(
            lease,
            1,
            Record("run-paused", "paused", shared={"n": 1}, interrupts=asks, at="Agent > Approve"),
        )
        store.release(lease)
        busy = store.claim("run-busy", "worker-7", ttl=3600)
        store.save(busy, 0, Record("run-busy", "running", shared={}, at="Agent > Act"))
    return str(path)


def run(*argv: str):
    out = io.StringIO()
    status = main(list(argv), out=out)
    return status, out.getvalue()


def test_list_shows_each_run_with_where_it_stands_and_what_it_waits_for(db):
    status, out = run("--db", db, "list")
    assert status == 0
    lines = out.splitlines()
    assert lines[0].split() == ["RUN", "STATUS", "SEQ", "MOVED", "AT", "WAITING", "FOR"]
    assert lines[1].split()[:4] == ["run-busy", "running", "(busy)", "1"]
    assert lines[2].split()[:3] == ["run-paused", "paused", "2"]
    assert lines[2].endswith("Agent > Approve  run-paused/Agent/Approve/0")


def test_list_filters_and_speaks_json(db):
    status, out = run("runs", "--db", db, "list", "--status", "paused", "--json")
    (line,) = out.splitlines()
    info = json.loads(line)
    assert status == 0 and info["run_id"] == "run-paused" and info["seq"] == 2
    assert info["interrupts"][0]["payload"]["tool"] == "delete_file"


def test_show_gives_the_pending_interrupts_with_their_payloads(db):
    status, out = run("--db", db, "show", "run-paused")
    assert status == 0
    assert "status:     paused\nat:         Agent > Approve\ncheckpoint: 2 (kept: 1, 2)" in out
    assert (
        "waiting for 1 answer(s):\n  run-paused/Agent/Approve/0  (asked by Agent > Approve)" in out
    )
    assert '"tool": "delete_file"' in out and "shared:" not in out
    status, out = run("--db", db, "show", "run-paused", "--shared")
    assert out.endswith('shared:\n{\n  "n": 1\n}\n')


def test_show_an_older_checkpoint_and_as_json(db):
    status, out = run("--db", db, "show", "run-paused", "--seq", "1", "--json")
    assert status == 0
    record = json.loads(out)
    assert (record["seq"], record["status"], record["shared"]) == (1, "running", {"n": 0})


def test_show_names_a_busy_runs_lease_holder(db):
    status, out = run("--db", db, "show", "run-busy")
    assert "lease:      held by worker-7 (running right now)" in out


def test_unknown_runs_and_files_are_clear_errors(db, tmp_path, capsys):
    assert run("--db", db, "show", "nope")[0] == 1
    assert "no run 'nope'" in capsys.readouterr().err
    assert run("--db", db, "show", "run-paused", "--seq", "9")[0] == 1
    assert "has no checkpoint 9" in capsys.readouterr().err
    missing = str(tmp_path / "missing.db")
    assert run("--db", missing, "list")[0] == 2
    assert "no runs database at" in capsys.readouterr().err
    assert not (tmp_path / "missing.db").exists()
    assert run("--db", db, "frobnicate")[0] == 2


def test_delete_removes_runs(db, capsys):
    status, out = run("--db", db, "delete", "run-paused", "nope")
    assert status == 1 and out == "deleted run-paused\n"
    assert "no run 'nope'" in capsys.readouterr().err
    assert [line.split()[0] for line in run("--db", db, "list")[1].splitlines()[1:]] == ["run-busy"]


def test_python_dash_m(db):
    done = subprocess.run(
        [sys.executable, "-m", "pocketflow_stream.persist", "--db", db, "list", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert [json.loads(line)["run_id"] for line in done.stdout.splitlines()] == [
        "run-busy",
        "run-paused",
    ]


def test_python_dash_m_pocketflow_stream_runs(db):
    done = subprocess.run(
        [sys.executable, "-m", "pocketflow_stream", "runs", "--db", db, "show", "run-paused"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "status:     paused" in done.stdout
