"""SQLiteStore beyond the contract: WAL, BEGIN IMMEDIATE, durability modes, the file itself."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap

import pytest

from pocketflow_stream.persist import CheckpointError, LeaseLost, Record, SQLiteStore


def record(status="running", **fields):
    fields.setdefault("shared", {"n": 1})
    return Record("r1", status, **fields)


def test_the_file_is_in_wal_mode_with_the_durabilitys_synchronous_level(tmp_path):
    levels = {}
    for durability in ("node", "power", "pause"):
        with SQLiteStore(tmp_path / f"{durability}.db", durability=durability) as store:
            levels[durability] = store._connection.execute("PRAGMA synchronous").fetchone()[0]
        raw = sqlite3.connect(tmp_path / f"{durability}.db")
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        raw.close()
    assert levels == {"node": 1, "power": 2, "pause": 1}  # NORMAL, FULL, NORMAL


def test_every_write_takes_the_write_lock_up_front_and_binds_its_values(tmp_path):
    with SQLiteStore(tmp_path / "runs.db") as store:
        statements: list = []
        store._connection.set_trace_callback(statements.append)
        lease = store.claim("r1", "me")
        store.save(lease, 0, record(shared={"secret": "s3cr3t"}))
        store.release(lease)
    writes = [s.split()[0] for s in statements]
    assert writes == ["BEGIN", "INSERT", "COMMIT"] * 1 + ["BEGIN", "UPDATE", "COMMIT"] * 2
    assert all(s == "BEGIN IMMEDIATE" for s in statements if s.startswith("BEGIN"))


def test_a_write_lock_held_past_the_busy_timeout_is_a_clear_error(tmp_path):
    path = tmp_path / "runs.db"
    with SQLiteStore(path, busy_timeout=0.05) as store:
        lease = store.claim("r1", "me")
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(CheckpointError, match="held its write lock past the busy timeout"):
            store.save(lease, 0, record())
        other.execute("ROLLBACK")
        other.close()
        assert store.save(lease, 0, record()) == 1  # nothing was half-written


def test_a_file_from_a_newer_version_is_refused(tmp_path):
    path = tmp_path / "runs.db"
    SQLiteStore(path).close()
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA user_version=99")
    raw.close()
    with pytest.raises(CheckpointError, match="written by a newer pocketflow_stream"):
        SQLiteStore(path)


def test_integrity_check(tmp_path):
    with SQLiteStore(tmp_path / "runs.db", history=3) as store:
        lease = store.claim("r1", "me")
        for seq in range(10):
            store.save(lease, seq, record(shared={"n": seq}))
        assert store.integrity_check() == "ok"


def run_child(path, body: str) -> None:
    script = textwrap.dedent(
        f"""
        import os
        from pocketflow_stream.persist import Record, SQLiteStore
        store = SQLiteStore({str(path)!r}, durability="pause")
        lease = store.claim("r1", "child", ttl=0.0)
        """
    ) + textwrap.dedent(body)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)


def test_pause_durability_commits_only_at_a_pause_and_a_crash_goes_back_to_it(tmp_path):
    path = tmp_path / "runs.db"
    run_child(
        path,
        """
        seq = store.save(lease, 0, Record("r1", "running", shared={"n": 0}))
        seq = store.save(lease, seq, Record("r1", "paused", shared={"n": 1}))
        seq = store.save(lease, seq, Record("r1", "running", shared={"n": 2}))
        seq = store.save(lease, seq, Record("r1", "running", shared={"n": 3}))
        assert store.load("r1").shared == {"n": 3}   # this process sees what it holds
        os._exit(0)                                  # a crash: no close, no release
        """,
    )
    with SQLiteStore(path) as store:
        head = store.load("r1")
        assert (head.seq, head.status, head.shared) == (2, "paused", {"n": 1})
        lease = store.claim("r1", "next")  # the dead process's lease had ttl 0
        assert store.save(lease, 2, record(shared={"n": 2})) == 3


def test_pause_durability_writes_what_it_holds_at_the_end_or_on_release(tmp_path):
    path = tmp_path / "runs.db"
    run_child(
        path,
        """
        seq = store.save(lease, 0, Record("r1", "running", shared={"n": 0}))
        seq = store.save(lease, seq, Record("r1", "running", shared={"n": 1}))
        store.release(lease)
        lease = store.claim("r2", "child")
        seq = store.save(lease, 0, Record("r2", "running", shared={"n": 0}))
        seq = store.save(lease, seq, Record("r2", "done", shared={"n": 9}))
        os._exit(0)
        """,
    )
    with SQLiteStore(path) as store:
        assert (store.load("r1").seq, store.load("r1").shared) == (2, {"n": 1})
        assert (store.load("r2").seq, store.load("r2").status) == (2, "done")
        assert store.list()[0].lease_owner in (None, "child")


def test_pause_durability_still_refuses_a_stale_owner(tmp_path):
    path = tmp_path / "runs.db"
    clock = [0.0]
    with SQLiteStore(path, durability="pause", clock=lambda: clock[0]) as store:
        old = store.claim("r1", "a", ttl=5)
        store.save(old, 0, record(shared={"n": 1}))  # held in memory
        clock[0] += 10
        with SQLiteStore(path, clock=lambda: clock[0]) as other:
            new = other.claim("r1", "b")
            other.save(new, 0, record(shared={"n": "b"}))
        with pytest.raises(LeaseLost):
            store.save(old, 1, record("paused", shared={"n": "stale"}))
    with SQLiteStore(path) as store:
        assert store.load("r1").shared == {"n": "b"}
