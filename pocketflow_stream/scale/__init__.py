"""pocketflow_stream.scale: running past one machine, on engines that already do it well.

    from pocketflow_stream.scale import PostgresStore
    runs = DurableRuns(flow, PostgresStore("postgresql://app@db/app"))

`PostgresStore` (psycopg 3; the optional extra `scale`) keeps runs in PostgreSQL behind the
same store interface as `SQLiteStore`, so any worker resumes any run. Not imported by
`import pocketflow_stream` or `pocketflow_stream.persist`: an app that stays on one machine
needs none of it.
"""

from .postgres_store import SCHEMA_VERSION, AsyncPostgresStore, PostgresStore

__all__ = ["PostgresStore", "AsyncPostgresStore", "SCHEMA_VERSION"]
