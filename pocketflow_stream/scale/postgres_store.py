"""`PostgresStore`: runs checkpointed in PostgreSQL (psycopg 3), so any worker resumes any run.

    store = PostgresStore("postgresql://app@db.internal/app")           # head only
    store = PostgresStore(url, schema="runs", history=20, prepare_threshold=None)

The same interface and rules as `SQLiteStore` (the one contract suite checks both):
- The compare-and-set of `save` is one `UPDATE ... WHERE run_id = %s AND seq = %s AND token =
  %s` (with `history=N`, the history rows are written by the same statement): a stale owner's
  save changes no row and is told so. `claim` is one `INSERT ... ON CONFLICT DO UPDATE ...
  WHERE` the lease is free or expired. No advisory locks, no transaction held open between
  calls: each call is one statement in autocommit, so it works the same behind a
  transaction-mode connection pooler (PgBouncer), where session state does not survive.
- Values reach SQL only as bound parameters; the only composed part is the schema name, quoted
  as an identifier (psycopg.sql.Identifier).
- `prepare_threshold=None` turns server-side prepared statements off, for poolers that cannot
  hold them; the default (psycopg's: prepare a statement after 5 uses) is faster on a direct
  connection.
- The schema and its two tables are created if missing (`CREATE ... IF NOT EXISTS`).
- A lost connection (a server restart, a failover, a pooler recycling it) is re-opened and the
  call retried for up to `retry_for` seconds. A write whose commit was cut off is checked, not
  repeated blindly: a retried `save` finds its own text already at the new sequence number, a
  retried `claim` finds its own token, and counts as done.
- Lease times are this process's clock (`time.time`): workers on several machines need clocks
  kept in step (NTP) to well within a lease's ttl.
- The record is kept as text, byte for byte what the durable run layer encoded (not jsonb,
  which would reorder the keys of `shared`); `status` and `updated_at` beside it serve `list`.

Thread-safe (one connection, one lock); from async code use `AsyncPostgresStore`, whose calls
run in a worker thread so the event loop never waits on the network.
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar

from ..persist.async_store import AsyncStore
from ..persist.sqlite_store import _info  # the same summary row, read the same way
from ..persist.store import (
    Lease,
    Record,
    RunBusy,
    RunInfo,
    Store,
    _conflict,
    _lost,
    _no_seq,
)
from ..persist.strict_json import CheckpointError

try:
    import psycopg
    from psycopg import sql
except ImportError as error:  # pragma: no cover - the optional extra is missing
    raise ImportError(
        "PostgresStore needs psycopg 3: pip install 'pocketflow-stream[scale]' "
        "(or pip install 'psycopg[binary]')"
    ) from error

__all__ = ["PostgresStore", "AsyncPostgresStore", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1
T = TypeVar("T")

_SCHEMA = (
    "CREATE SCHEMA IF NOT EXISTS {schema}",
    """CREATE TABLE IF NOT EXISTS {schema}.pfs_runs (
        run_id TEXT PRIMARY KEY,
        seq BIGINT NOT NULL,
        owner TEXT,
        token TEXT,
        expires DOUBLE PRECISION,
        status TEXT,
        updated_at DOUBLE PRECISION,
        record TEXT
    )""",
    """CREATE TABLE IF NOT EXISTS {schema}.pfs_history (
        run_id TEXT NOT NULL,
        seq BIGINT NOT NULL,
        record TEXT NOT NULL,
        PRIMARY KEY (run_id, seq)
    )""",
    """CREATE TABLE IF NOT EXISTS {schema}.pfs_meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )""",
    """INSERT INTO {schema}.pfs_meta (key, value) VALUES ('schema_version', %(version)s)
        ON CONFLICT (key) DO NOTHING""",
)
_VERSION = "SELECT value FROM {schema}.pfs_meta WHERE key = 'schema_version'"

_CLAIM = """INSERT INTO {schema}.pfs_runs AS r (run_id, seq, owner, token, expires)
        VALUES (%(run_id)s, 0, %(owner)s, %(token)s, %(expires)s)
    ON CONFLICT (run_id) DO UPDATE SET owner = excluded.owner, token = excluded.token,
        expires = excluded.expires
    WHERE r.token IS NULL OR r.expires < %(now)s"""
_SAVE = """UPDATE {schema}.pfs_runs SET seq = %(seq)s, record = %(record)s,
        status = %(status)s, updated_at = %(updated_at)s, expires = %(expires)s
    WHERE run_id = %(run_id)s AND seq = %(seq_expected)s AND token = %(token)s"""
# With history=N: the head, the kept copy and the forgetting in one statement (one round trip,
# one implicit transaction). The DELETE sees the table as it was before the statement, so it
# never removes the row the INSERT adds.
_SAVE_KEPT = """WITH moved AS (
        UPDATE {schema}.pfs_runs SET seq = %(seq)s, record = %(record)s,
            status = %(status)s, updated_at = %(updated_at)s, expires = %(expires)s
        WHERE run_id = %(run_id)s AND seq = %(seq_expected)s AND token = %(token)s
        RETURNING run_id, seq, record
    ), kept AS (
        INSERT INTO {schema}.pfs_history (run_id, seq, record)
            SELECT run_id, seq, record FROM moved
        ON CONFLICT (run_id, seq) DO UPDATE SET record = excluded.record
    ), forgotten AS (
        DELETE FROM {schema}.pfs_history
        WHERE run_id = %(run_id)s AND seq <= %(cut)s AND EXISTS (SELECT 1 FROM moved)
    )
    SELECT count(*) FROM moved"""
_RENEW = """UPDATE {schema}.pfs_runs SET expires = %(expires)s
    WHERE run_id = %(run_id)s AND token = %(token)s"""
_RELEASE = """UPDATE {schema}.pfs_runs SET owner = NULL, token = NULL, expires = NULL
    WHERE run_id = %(run_id)s AND token = %(token)s"""
_HOLDER = "SELECT seq, owner, token, expires, record FROM {schema}.pfs_runs WHERE run_id = %s"
_HEAD = "SELECT seq, record FROM {schema}.pfs_runs WHERE run_id = %s"
_OLD = "SELECT record FROM {schema}.pfs_history WHERE run_id = %s AND seq = %s"
_SEQS = "SELECT seq FROM {schema}.pfs_history WHERE run_id = %s ORDER BY seq"
_LIST = """SELECT run_id, seq, status, (record::json)->>'at', updated_at,
        ((record::json)->'interrupts')::text, (record::json)->>'fingerprint',
        (record::json)->>'error', owner, expires
    FROM {schema}.pfs_runs
    WHERE record IS NOT NULL AND (%(status)s::text IS NULL OR status = %(status)s::text)
    ORDER BY updated_at DESC
    LIMIT %(limit)s"""
_DELETE = """WITH gone AS (DELETE FROM {schema}.pfs_history WHERE run_id = %(run_id)s)
    DELETE FROM {schema}.pfs_runs WHERE run_id = %(run_id)s"""


class PostgresStore(Store):
    """Runs checkpointed in PostgreSQL at `conninfo` (a URL or a libpq "key=value" string).

    - `schema`: where the tables live (created if missing; default "pocketflow_stream").
    - `history`: keep the last N checkpoints of each run besides the head (0: head only).
    - `prepare_threshold`: psycopg's; None never prepares statements (for PgBouncer in
      transaction mode and other poolers that cannot hold them).
    - `retry_for`: how long (seconds) a call re-opens a lost connection and tries again
      before raising CheckpointError.
    - `connect_timeout`: seconds to wait for the server when (re)connecting.
    """

    blocking = True

    def __init__(
        self,
        conninfo: str,
        *,
        schema: str = "pocketflow_stream",
        history: int = 0,
        prepare_threshold: Optional[int] = 5,
        retry_for: float = 30.0,
        connect_timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if history < 0:
            raise ValueError(f"history must be >= 0, not {history!r}")
        if not schema:
            raise ValueError("schema must be a non-empty name")
        self.conninfo = conninfo
        self.schema = schema
        self.history = history
        self.prepare_threshold = prepare_threshold
        self.retry_for = retry_for
        self.connect_timeout = connect_timeout
        self._clock = clock
        self._lock = threading.RLock()
        self._connection: Optional[psycopg.Connection[Any]] = None
        self._closed = False
        name = sql.Identifier(schema)
        self._sql: Dict[str, sql.Composed] = {
            key: sql.SQL(text).format(schema=name)  # type: ignore[arg-type, unused-ignore]
            for key, text in {
                "claim": _CLAIM,
                "save": _SAVE,
                "save_kept": _SAVE_KEPT,
                "renew": _RENEW,
                "release": _RELEASE,
                "holder": _HOLDER,
                "head": _HEAD,
                "old": _OLD,
                "seqs": _SEQS,
                "list": _LIST,
                "delete": _DELETE,
                "version": _VERSION,
            }.items()
        }
        self._schema_sql = [
            sql.SQL(text).format(schema=name)  # type: ignore[arg-type, unused-ignore]
            for text in _SCHEMA
        ]
        self._call(self._setup)

    def __repr__(self) -> str:
        return f"PostgresStore(schema={self.schema!r}, history={self.history})"

    # -- the connection ---------------------------------------------------------------------

    def _connect(self) -> psycopg.Connection[Any]:
        connection = psycopg.connect(
            self.conninfo,
            autocommit=True,
            prepare_threshold=self.prepare_threshold,
            connect_timeout=max(1, int(round(self.connect_timeout))),
        )
        return connection

    def _call(self, operation: Callable[[psycopg.Connection[Any], bool], T]) -> T:
        """Run `operation(connection, retried)` under the lock, re-opening a lost connection
        and trying again (with `retried=True`) until `retry_for` has passed."""
        with self._lock:
            if self._closed:
                raise CheckpointError(f"{self!r} is closed")
            deadline = time.monotonic() + self.retry_for
            retried = False
            delay = 0.05
            while True:
                try:
                    if self._connection is None or self._connection.closed:
                        self._connection = self._connect()
                    return operation(self._connection, retried)
                except psycopg.OperationalError as error:
                    connection = self._connection
                    if connection is not None and not (connection.broken or connection.closed):
                        raise  # the server answered (a timeout, a lock): not a lost connection
                    self._drop()
                    if time.monotonic() + delay > deadline:
                        raise CheckpointError(
                            f"{self!r}: the PostgreSQL server could not be reached for "
                            f"{self.retry_for:g} s ({str(error).strip() or type(error).__name__})"
                            f"; check that it runs and that the URL is right, or raise "
                            f"retry_for="
                        ) from error
                    time.sleep(delay)
                    delay = min(delay * 2, 1.0)
                    retried = True

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except Exception:  # noqa: BLE001 - it is broken already
                pass

    def _setup(self, db: psycopg.Connection[Any], retried: bool) -> None:
        for attempt in range(3):
            try:
                with db.transaction():
                    for statement in self._schema_sql:
                        db.execute(statement, {"version": str(SCHEMA_VERSION)})
                    row = db.execute(self._sql["version"]).fetchone()
                break
            except psycopg.errors.UniqueViolation:  # another process created it meanwhile
                if attempt == 2:
                    raise
        found = int(row[0]) if row else SCHEMA_VERSION
        if found > SCHEMA_VERSION:
            raise CheckpointError(
                f"schema {self.schema!r} was written by a newer pocketflow_stream (schema "
                f"{found}, this one reads {SCHEMA_VERSION}); upgrade to use it."
            )

    def _holder(self, db: psycopg.Connection[Any], run_id: str) -> Optional[Tuple[Any, ...]]:
        return db.execute(self._sql["holder"], (run_id,)).fetchone()

    # -- writing ------------------------------------------------------------------------------

    def claim(self, run_id: str, owner: str, ttl: float = 30.0) -> Lease:
        token = secrets.token_hex(16)

        def claim(db: psycopg.Connection[Any], retried: bool) -> float:
            now = self._clock()
            expires = now + ttl
            values = {
                "run_id": run_id,
                "owner": owner,
                "token": token,
                "expires": expires,
                "now": now,
            }
            if db.execute(self._sql["claim"], values).rowcount == 1:
                return expires
            holder = self._holder(db, run_id)
            if holder is not None and holder[2] == token:  # a retry: the first one committed
                return float(holder[3])
            raise RunBusy(run_id, holder[1] if holder else None, holder[3] if holder else None)

        expires = self._call(claim)
        return Lease(run_id, owner, token, ttl, expires)

    def renew(self, lease: Lease) -> Lease:
        def renew(db: psycopg.Connection[Any], retried: bool) -> float:
            expires = self._clock() + lease.ttl
            values = {"expires": expires, "run_id": lease.run_id, "token": lease.token}
            if db.execute(self._sql["renew"], values).rowcount != 1:
                holder = self._holder(db, lease.run_id)
                raise _lost(lease, holder[1] if holder else None)
            return expires

        expires = self._call(renew)
        return Lease(lease.run_id, lease.owner, lease.token, lease.ttl, expires)

    def release(self, lease: Lease) -> None:
        def release(db: psycopg.Connection[Any], retried: bool) -> None:
            db.execute(self._sql["release"], {"run_id": lease.run_id, "token": lease.token})

        self._call(release)

    def save(self, lease: Lease, seq_expected: int, record: Record) -> int:
        seq = seq_expected + 1
        now = self._clock()
        text = record.to_json(seq, now)
        values = {
            "seq": seq,
            "record": text,
            "status": record.status,
            "updated_at": now,
            "expires": now + lease.ttl,
            "run_id": lease.run_id,
            "seq_expected": seq_expected,
            "token": lease.token,
            "cut": seq - self.history,
        }

        def save(db: psycopg.Connection[Any], retried: bool) -> int:
            if self.history:
                row = db.execute(self._sql["save_kept"], values).fetchone()
                changed = int(row[0]) if row else 0
            else:
                changed = db.execute(self._sql["save"], values).rowcount
            if changed == 1:
                return seq
            holder = self._holder(db, lease.run_id)
            if holder is None or holder[2] != lease.token:
                raise _lost(lease, holder[1] if holder else None)
            if retried and holder[0] == seq and holder[4] == text:
                return seq  # the first attempt committed before the connection was lost
            raise _conflict(lease.run_id, seq_expected, int(holder[0]))

        return self._call(save)

    def delete(self, run_id: str) -> bool:
        def delete(db: psycopg.Connection[Any], retried: bool) -> bool:
            return bool(db.execute(self._sql["delete"], {"run_id": run_id}).rowcount > 0)

        return self._call(delete)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._drop()

    # -- reading ------------------------------------------------------------------------------

    def load(self, run_id: str, seq: Optional[int] = None) -> Optional[Record]:
        def load(db: psycopg.Connection[Any], retried: bool) -> Optional[str]:
            head = db.execute(self._sql["head"], (run_id,)).fetchone()
            if head is None or head[1] is None:
                if seq is not None:
                    raise _no_seq(run_id, seq, [])
                return None
            if seq is None or seq == head[0]:
                return str(head[1])
            old = db.execute(self._sql["old"], (run_id, seq)).fetchone()
            if old is None:
                raise _no_seq(run_id, seq, self._seqs(db, run_id, int(head[0])))
            return str(old[0])

        text = self._call(load)
        return None if text is None else Record.from_json(text)

    def list(self, status: Optional[str] = None, limit: Optional[int] = None) -> List[RunInfo]:
        def list_(db: psycopg.Connection[Any], retried: bool) -> List[Tuple[Any, ...]]:
            return db.execute(self._sql["list"], {"status": status, "limit": limit}).fetchall()

        return [_info(*row) for row in self._call(list_)]

    def seqs(self, run_id: str) -> List[int]:
        def seqs(db: psycopg.Connection[Any], retried: bool) -> List[int]:
            head = db.execute(self._sql["head"], (run_id,)).fetchone()
            if head is None or head[1] is None:
                return []
            return self._seqs(db, run_id, int(head[0]))

        return self._call(seqs)

    def _seqs(self, db: psycopg.Connection[Any], run_id: str, head: int) -> List[int]:
        kept = [int(row[0]) for row in db.execute(self._sql["seqs"], (run_id,))]
        return kept if head in kept else [head]  # the schema may hold another store's history

    def drop_schema(self) -> None:
        """Drop the store's schema and everything in it (for tests and throwaway setups)."""

        def drop(db: psycopg.Connection[Any], retried: bool) -> None:
            db.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self.schema))
            )

        self._call(drop)


class AsyncPostgresStore(AsyncStore):
    """`PostgresStore`, awaited: every call runs in a worker thread (anyio.to_thread, on
    asyncio and trio), so the event loop never waits on the network; a cancellation waits for
    the statement in flight instead of tearing it. Same arguments as `PostgresStore`; `.store`
    is the sync store underneath (both can be used)."""

    def __init__(self, conninfo: str, **options: Any) -> None:
        self.store = PostgresStore(conninfo, **options)
        self._twin = AsyncStore.wrap(self.store)

    async def claim(self, run_id: str, owner: str, ttl: float = 30.0) -> Lease:
        return await self._twin.claim(run_id, owner, ttl)

    async def renew(self, lease: Lease) -> Lease:
        return await self._twin.renew(lease)

    async def release(self, lease: Lease) -> None:
        await self._twin.release(lease)

    async def save(self, lease: Lease, seq_expected: int, record: Record) -> int:
        return await self._twin.save(lease, seq_expected, record)

    async def load(self, run_id: str, seq: Optional[int] = None) -> Optional[Record]:
        return await self._twin.load(run_id, seq)

    async def list(
        self, status: Optional[str] = None, limit: Optional[int] = None
    ) -> List[RunInfo]:
        return await self._twin.list(status, limit)

    async def seqs(self, run_id: str) -> List[int]:
        return await self._twin.seqs(run_id)

    async def delete(self, run_id: str) -> bool:
        return await self._twin.delete(run_id)

    async def aclose(self) -> None:
        await self._twin.aclose()
