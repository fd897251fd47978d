"""PostgresStore benchmarks: every figure is a ratio against a baseline measured in this run.

    eval "$(scripts/servers.sh start /tmp/pfs-servers)"   # or point at your own server:
    POCKETFLOW_STREAM_POSTGRES_URL=postgresql://... python bench/bench_postgres.py [--quick]
    scripts/servers.sh stop /tmp/pfs-servers

1. A checkpointed node step of a durable run on PostgresStore (a two-node loop, 1 KB `shared`):
   the engine's position, the strict JSON walk, the record, the compare-and-set UPDATE and its
   commit, after every node — against a bare autocommit `INSERT ... ON CONFLICT DO UPDATE` of
   the same bytes (one of the run's checkpoints) on the same server and the same kind of table.
2. The same step with prepared statements off (`prepare_threshold=None`, for poolers) against
   the default.
3. For scale: the same step on SQLiteStore (durability "node", a local file) against Postgres.

Each measure is the best of several rounds taken in turns, so a machine shared with other work
slows each alike. The server is a loopback one: a network round trip adds to both sides of 1.
"""

from __future__ import annotations

import argparse
import gc
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, List

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # measure this checkout

# the same loop, `shared` and rounds as bench_checkpoint.py's, so the figures compare
from bench_checkpoint import MESSAGES, interleaved, make_loop  # noqa: E402


def durable_step(store: Any, turns: int) -> float:
    """Seconds per checkpointed node step of a real durable run on `store`."""
    from pocketflow_stream.persist import DurableRuns

    runs = DurableRuns(make_loop(turns), store, ttl=600)
    shared = {"turn": 0, "messages": MESSAGES, "done": False}
    gc.collect()
    start = time.perf_counter()
    run = runs.start(shared)
    for _ in run:
        pass
    elapsed = time.perf_counter() - start
    assert run.status == "done" and shared["turn"] == turns
    runs.delete(run.run_id)
    return elapsed / (2 * turns)


def record_text(store: Any) -> str:
    """The bytes one checkpoint of that run commits (for the bare baseline)."""
    from pocketflow_stream.persist import DurableRuns

    runs = DurableRuns(make_loop(3), store)
    run = runs.start({"turn": 0, "messages": MESSAGES, "done": False})
    for _ in run:
        pass
    record = store.load(run.run_id)
    assert record is not None
    runs.delete(run.run_id)
    return str(record.to_json(record.seq, record.updated_at))


def bare_upsert(url: str, schema: str, steps: int, text: str) -> float:
    """The floor: the same bytes upserted and committed, one autocommit statement each."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(url, autocommit=True) as db:
        table = sql.SQL("{}.bare").format(sql.Identifier(schema))
        db.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (run_id TEXT PRIMARY KEY, seq BIGINT, record TEXT)"
            ).format(table)
        )
        upsert = sql.SQL(
            "INSERT INTO {} (run_id, seq, record) VALUES (%s, %s, %s) "
            "ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq, record = excluded.record"
        ).format(table)
        gc.collect()
        start = time.perf_counter()
        for seq in range(steps):
            db.execute(upsert, ("run", seq, text))
        elapsed = time.perf_counter() - start
    return elapsed / steps


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and rounds")
    parser.add_argument("--url", default=os.environ.get("POCKETFLOW_STREAM_POSTGRES_URL"))
    options = parser.parse_args(argv)
    if not options.url:
        print(
            "bench_postgres: set POCKETFLOW_STREAM_POSTGRES_URL (or --url); "
            'eval "$(scripts/servers.sh start DIR)" starts a throwaway server',
            file=sys.stderr,
        )
        return 2
    from pocketflow_stream.persist import SQLiteStore
    from pocketflow_stream.scale import PostgresStore

    turns, repeats = (100, 3) if options.quick else (400, 7)
    schema = f"pfs_bench_{secrets.token_hex(4)}"
    store = PostgresStore(options.url, schema=schema)
    pooled = PostgresStore(options.url, schema=schema, prepare_threshold=None)
    folder = tempfile.mkdtemp(prefix="pfs-bench-pg-")
    local = SQLiteStore(os.path.join(folder, "runs.db"))
    try:
        text = record_text(store)
        steps = 2 * turns
        step, bare, step_pooled, step_sqlite = interleaved(
            repeats,
            lambda: durable_step(store, turns),
            lambda: bare_upsert(options.url, schema, steps, text),
            lambda: durable_step(pooled, turns),
            lambda: durable_step(local, turns),
        )
    finally:
        store.drop_schema()
        for each in (store, pooled, local):
            each.close()
    print(f"checkpoint record: {len(text)} bytes; {steps} steps per round, best of {repeats}")
    print(
        f"1. checkpointed step on Postgres {step * 1e6:8.0f} us  vs bare upsert commit "
        f"{bare * 1e6:6.0f} us  ratio {step / bare:5.2f}x"
    )
    print(
        f"2. prepare_threshold=None        {step_pooled * 1e6:8.0f} us  vs default "
        f"{step * 1e6:15.0f} us  ratio {step_pooled / step:5.2f}x"
    )
    print(
        f"3. SQLiteStore (node) step       {step_sqlite * 1e6:8.0f} us  vs Postgres "
        f"{step * 1e6:14.0f} us  ratio {step_sqlite / step:5.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
