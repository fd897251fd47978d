"""`SQLiteStore`: runs checkpointed in one SQLite file (stdlib `sqlite3`, no server).

Rules it keeps:
- WAL journal; every write is `BEGIN IMMEDIATE` ... `COMMIT` (the write lock is taken up front,
  so two processes never deadlock upgrading a read lock), with a busy timeout.
- The compare-and-set of `save` is one `UPDATE ... WHERE run_id = ? AND seq = ? AND token = ?`:
  a stale owner's save changes no row, and it is told so. `claim` is one upsert whose update
  applies only when the lease is free or expired.
- Values reach SQL only as bound parameters; SQL text is constant.
- Durability (measured in bench/bench_checkpoint.py): "node" (the default) commits every save
  with synchronous=NORMAL — a kill -9 loses nothing committed, a power loss may roll back the
  last commits but never corrupts the file; "power" commits with synchronous=FULL; "pause"
  keeps saves of a running run in memory (still compare-and-set against what it holds) and
  commits only when the run pauses, ends, fails, stops, or its lease is released — a crash goes
  back to the last of those.
- WAL needs a local filesystem (not NFS). The file can be shared by processes on one machine.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from .store import (
    Lease,
    Record,
    RunBusy,
    RunInfo,
    Store,
    _conflict,
    _lost,
    _no_seq,
)
from .strict_json import CheckpointError, loads

__all__ = ["SQLiteStore", "DURABILITY"]

DURABILITY = ("node", "power", "pause")
SCHEMA_VERSION = 1

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS pfs_runs (
        run_id TEXT PRIMARY KEY,
        seq INTEGER NOT NULL,
        owner TEXT,
        token TEXT,
        expires REAL,
        record TEXT
    )""",
    """CREATE TABLE IF NOT EXISTS pfs_history (
        run_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        record TEXT NOT NULL,
        PRIMARY KEY (run_id, seq)
    )""",
)

_CLAIM = """INSERT INTO pfs_runs (run_id, seq, owner, token, expires) VALUES (?, 0, ?, ?, ?)
    ON CONFLICT (run_id) DO UPDATE SET owner = excluded.owner, token = excluded.token,
        expires = excluded.expires
    WHERE pfs_runs.token IS NULL OR pfs_runs.expires < ?"""
_SAVE = """UPDATE pfs_runs SET seq = ?, record = ?, expires = COALESCE(?, expires)
    WHERE run_id = ? AND seq = ? AND token = ?"""
_RENEW = "UPDATE pfs_runs SET expires = ? WHERE run_id = ? AND token = ?"
_RELEASE = """UPDATE pfs_runs SET owner = NULL, token = NULL, expires = NULL
    WHERE run_id = ? AND token = ?"""
_HOLDER = "SELECT seq, owner, token, expires FROM pfs_runs WHERE run_id = ?"
_KEEP = "INSERT OR REPLACE INTO pfs_history (run_id, seq, record) VALUES (?, ?, ?)"
_FORGET = "DELETE FROM pfs_history WHERE run_id = ? AND seq <= ?"
_HEAD = "SELECT seq, record FROM pfs_runs WHERE run_id = ?"
_OLD = "SELECT record FROM pfs_history WHERE run_id = ? AND seq = ?"
_SEQS = "SELECT seq FROM pfs_history WHERE run_id = ? ORDER BY seq"
# The summary is read out of the record itself (SQLite's JSON functions), so a save writes
# the record and nothing beside it: listing is rare, saving is every node.
_LIST = """SELECT run_id, seq, json_extract(record, '$.status'),
        json_extract(record, '$.at'), json_extract(record, '$.updated_at'),
        json_extract(record, '$.interrupts'), json_extract(record, '$.fingerprint'),
        json_extract(record, '$.error'), owner, expires
    FROM pfs_runs
    WHERE record IS NOT NULL AND (? IS NULL OR json_extract(record, '$.status') = ?)
    ORDER BY json_extract(record, '$.updated_at') DESC LIMIT ?"""
_DELETE_RUN = "DELETE FROM pfs_runs WHERE run_id = ?"
_DELETE_HISTORY = "DELETE FROM pfs_history WHERE run_id = ?"


class _Buffered:
    """A save held back by durability="pause": what the run's row will be at the next flush."""

    __slots__ = ("token", "db_seq", "seq", "record", "text", "updated_at", "expires")

    def __init__(self, token: str, db_seq: int) -> None:
        self.token = token
        self.db_seq = db_seq  # the row's seq in the file: the flush compares against it
        self.seq = db_seq
        self.record: Optional[Record] = None
        self.text = ""
        self.updated_at = 0.0
        self.expires = 0.0


class SQLiteStore(Store):
    """Runs checkpointed in the SQLite file at `path` (created if missing).

        store = SQLiteStore("runs.db")                      # durability="node", head only
        store = SQLiteStore("runs.db", durability="power", history=20)

    `busy_timeout` (seconds) is how long a write waits for another process's write to finish.
    Thread-safe (one connection, one lock); use `AsyncSQLiteStore` from async code."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        durability: str = "node",
        history: int = 0,
        busy_timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if durability not in DURABILITY:
            raise ValueError(
                f"durability must be one of {', '.join(map(repr, DURABILITY))}, not {durability!r}"
            )
        if history < 0:
            raise ValueError(f"history must be >= 0, not {history!r}")
        self.path = os.fspath(path)
        self.durability = durability
        self.history = history
        self._clock = clock
        self._lock = threading.RLock()
        self._buffered: Dict[str, _Buffered] = {}
        self._connection = sqlite3.connect(
            self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
        self._cursor = self._connection.cursor()  # for saves, under the lock
        self._setup()

    def _setup(self) -> None:
        db = self._connection
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise CheckpointError(
                f"SQLiteStore({self.path!r}): the file could not be put in WAL mode (got "
                f"{mode!r}); use a file on a local filesystem."
            )
        synchronous = "FULL" if self.durability == "power" else "NORMAL"
        db.execute(f"PRAGMA synchronous={synchronous}")
        with self._write():
            found = db.execute("PRAGMA user_version").fetchone()[0]
            if found > SCHEMA_VERSION:
                raise CheckpointError(
                    f"{self.path!r} was written by a newer pocketflow_stream (schema "
                    f"{found}, this one reads {SCHEMA_VERSION}); upgrade to use it."
                )
            for statement in _SCHEMA:
                db.execute(statement)
            if found < SCHEMA_VERSION:
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION:d}")

    # -- writing ------------------------------------------------------------------------------

    def _write(self) -> _Transaction:
        return _Transaction(self._connection, self._lock)

    def claim(self, run_id: str, owner: str, ttl: float = 30.0) -> Lease:
        token = secrets.token_hex(16)
        with self._write() as db:
            now = self._clock()
            expires = now + ttl
            if db.execute(_CLAIM, (run_id, owner, token, expires, now)).rowcount != 1:
                _, holder, _, until = db.execute(_HOLDER, (run_id,)).fetchone()
                raise RunBusy(run_id, holder, until)
        self._buffered.pop(run_id, None)  # a lease of this process that expired: forget it
        return Lease(run_id, owner, token, ttl, expires)

    def renew(self, lease: Lease) -> Lease:
        with self._write() as db:
            expires = self._clock() + lease.ttl
            if db.execute(_RENEW, (expires, lease.run_id, lease.token)).rowcount != 1:
                raise self._why_lost(db, lease)
        return Lease(lease.run_id, lease.owner, lease.token, lease.ttl, expires)

    def release(self, lease: Lease) -> None:
        with self._lock:
            try:
                self._flush(lease.run_id)
            except CheckpointError:
                pass  # lost meanwhile: nothing of ours to write or release
            with self._write() as db:
                db.execute(_RELEASE, (lease.run_id, lease.token))

    def save(self, lease: Lease, seq_expected: int, record: Record) -> int:
        if self.durability == "pause" and record.status == "running":
            return self._hold(lease, seq_expected, record)
        with self._lock:
            held = self._buffered.get(lease.run_id) if self._buffered else None
            if held is not None:  # durability="pause": this save replaces what was held
                if held.token != lease.token:
                    self._buffered.pop(lease.run_id)
                    raise _lost(lease, None)
                if held.seq != seq_expected:
                    raise _conflict(lease.run_id, seq_expected, held.seq)
                self._buffered.pop(lease.run_id)
                return self._write_row(lease, held.db_seq, seq_expected + 1, record)
            return self._write_row(lease, seq_expected, seq_expected + 1, record)

    def _write_row(self, lease: Lease, db_seq: int, seq: int, record: Record) -> int:
        """The save itself, the hot path of every checkpoint: one transaction of one
        compare-and-set UPDATE (which also renews the lease), on the store's one cursor."""
        now = self._clock()
        text = record.to_json(seq, now)
        cursor = self._cursor
        self._begin(cursor)
        try:
            cursor.execute(_SAVE, (seq, text, now + lease.ttl, lease.run_id, db_seq, lease.token))
            if cursor.rowcount != 1:
                raise self._why_stale(self._connection, lease, db_seq)
            if self.history:
                cursor.execute(_KEEP, (lease.run_id, seq, text))
                cursor.execute(_FORGET, (lease.run_id, seq - self.history))
        except BaseException:
            if self._connection.in_transaction:
                cursor.execute("ROLLBACK")
            raise
        cursor.execute("COMMIT")
        return seq

    def _begin(self, cursor: sqlite3.Cursor) -> None:
        try:
            cursor.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:
            raise _busy(error) from error

    def _hold(self, lease: Lease, seq_expected: int, record: Record) -> int:
        with self._lock:
            held = self._buffered.get(lease.run_id)
            if held is None:
                row = self._connection.execute(_HOLDER, (lease.run_id,)).fetchone()
                if row is None or row[2] != lease.token:
                    raise _lost(lease, None if row is None else row[1])
                held = _Buffered(lease.token, row[0])
            if held.token != lease.token:
                raise _lost(lease, None)
            if held.seq != seq_expected:
                raise _conflict(lease.run_id, seq_expected, held.seq)
            held.seq = seq_expected + 1
            held.record = record
            held.updated_at = self._clock()
            held.text = record.to_json(held.seq, held.updated_at)
            self._buffered[lease.run_id] = held
            return held.seq

    def _flush(self, run_id: str) -> None:
        held = self._buffered.pop(run_id, None)
        if held is None or held.record is None:
            return
        lease = Lease(run_id, "", held.token, 0.0, 0.0)
        with self._write() as db:
            values = _row_values(held.record, held.seq, held.updated_at, held.text, None)
            if db.execute(_SAVE, values + (run_id, held.db_seq, held.token)).rowcount != 1:
                raise self._why_stale(db, lease, held.db_seq)
            if self.history:
                db.execute(_KEEP, (run_id, held.seq, held.text))
                db.execute(_FORGET, (run_id, held.seq - self.history))

    def delete(self, run_id: str) -> bool:
        with self._lock:
            self._buffered.pop(run_id, None)
            with self._write() as db:
                deleted = db.execute(_DELETE_RUN, (run_id,)).rowcount
                db.execute(_DELETE_HISTORY, (run_id,))
        return deleted > 0

    def close(self) -> None:
        with self._lock:
            for run_id in list(self._buffered):
                try:
                    self._flush(run_id)
                except CheckpointError:
                    pass
            self._connection.close()

    def _why_stale(self, db: sqlite3.Connection, lease: Lease, seq_expected: int) -> Exception:
        row = db.execute(_HOLDER, (lease.run_id,)).fetchone()
        if row is None or row[2] != lease.token:
            return _lost(lease, None if row is None else row[1])
        return _conflict(lease.run_id, seq_expected, row[0])

    def _why_lost(self, db: sqlite3.Connection, lease: Lease) -> Exception:
        row = db.execute(_HOLDER, (lease.run_id,)).fetchone()
        return _lost(lease, None if row is None else row[1])

    # -- reading ------------------------------------------------------------------------------

    def load(self, run_id: str, seq: Optional[int] = None) -> Optional[Record]:
        with self._lock:
            held = self._buffered.get(run_id)
            if held is not None and held.record is not None and seq in (None, held.seq):
                return Record.from_json(held.text)
            db = self._connection
            head = db.execute(_HEAD, (run_id,)).fetchone()
            if head is None or head[1] is None:
                if seq is not None:
                    raise _no_seq(run_id, seq, [])
                return None
            if seq is None or seq == head[0]:
                return Record.from_json(head[1])
            old = db.execute(_OLD, (run_id, seq)).fetchone()
            if old is None:
                raise _no_seq(run_id, seq, self._seqs(run_id, head[0]))
            return Record.from_json(old[0])

    def list(self, status: Optional[str] = None, limit: Optional[int] = None) -> List[RunInfo]:
        with self._lock:
            rows = self._connection.execute(
                _LIST, (status, status, -1 if limit is None else limit)
            ).fetchall()
        return [_info(*row) for row in rows]

    def seqs(self, run_id: str) -> List[int]:
        with self._lock:
            head = self._connection.execute(_HEAD, (run_id,)).fetchone()
            if head is None or head[1] is None:
                return []
            return self._seqs(run_id, head[0])

    def _seqs(self, run_id: str, head: int) -> List[int]:
        kept = [row[0] for row in self._connection.execute(_SEQS, (run_id,))]
        return kept if head in kept else [head]  # the file may hold another store's history

    def integrity_check(self) -> str:
        """SQLite's `PRAGMA integrity_check` of the file: "ok" when it is sound."""
        with self._lock:
            return str(self._connection.execute("PRAGMA integrity_check").fetchone()[0])


def _info(
    run_id: str,
    seq: int,
    status: str,
    at: Optional[str],
    updated_at: float,
    interrupts: Optional[str],
    fingerprint: Optional[str],
    error: Optional[str],
    owner: Optional[str],
    expires: Optional[float],
) -> RunInfo:
    return RunInfo(
        run_id=run_id,
        seq=seq,
        status=status,
        at=at,
        updated_at=updated_at,
        interrupts=loads(interrupts) if interrupts else [],
        fingerprint=fingerprint,
        error=error,
        lease_owner=owner,
        lease_expires=expires,
    )


def _row_values(
    record: Record, seq: int, updated_at: float, text: str, expires: Optional[float]
) -> Tuple[Any, ...]:
    return (seq, text, expires)


def _busy(error: sqlite3.OperationalError) -> CheckpointError:
    return CheckpointError(
        f"could not start a write on the runs database ({error}): another process held its "
        f"write lock past the busy timeout. Raise busy_timeout=, or look for a process holding "
        f"a transaction open on the file."
    )


class _Transaction:
    """`with` block around `BEGIN IMMEDIATE` ... `COMMIT` (ROLLBACK on an exception), holding
    the store's lock."""

    __slots__ = ("connection", "lock")

    def __init__(self, connection: sqlite3.Connection, lock: Any) -> None:
        self.connection = connection
        self.lock = lock

    def __enter__(self) -> sqlite3.Connection:
        self.lock.acquire()
        try:
            self.connection.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:
            self.lock.release()
            raise _busy(error) from error
        except BaseException:
            self.lock.release()
            raise
        return self.connection

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> None:
        try:
            if kind is None:
                self.connection.execute("COMMIT")
            else:
                self.connection.execute("ROLLBACK")
        finally:
            self.lock.release()
