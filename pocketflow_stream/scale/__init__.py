"""pocketflow_stream.scale: running past one machine, on engines that already do it well.

    from pocketflow_stream.scale import PostgresStore
    runs = DurableRuns(flow, PostgresStore("postgresql://app@db/app"))

- `PostgresStore` (psycopg 3) keeps runs in PostgreSQL behind the same store interface as
  `SQLiteStore`, so any worker resumes any run.
- `scale.redis_events` puts a run's items on a Redis stream and relays them as server-sent
  events from any web worker (redis-py, imported there).
- `DistributedRuns` runs each run segment, and with `fan_out` each item of a parallel batch
  node, as a durable DBOS workflow on whichever worker takes it (DBOS is imported when one is
  made).

All of it is the optional extra `scale`. Not imported by `import pocketflow_stream` or
`pocketflow_stream.persist`: an app that stays on one machine needs none of it.
"""

from .dbos_runs import DistributedRuns, FanOutItemFailed, Submission
from .postgres_store import SCHEMA_VERSION, AsyncPostgresStore, PostgresStore

__all__ = [
    "PostgresStore",
    "AsyncPostgresStore",
    "SCHEMA_VERSION",
    "DistributedRuns",
    "FanOutItemFailed",
    "Submission",
]
