"""pocketflow_stream.persist: checkpoints, durable runs and the stores that keep them.

    from pocketflow_stream.persist import DurableRuns, SQLiteStore

A layer above the core and the async drivers, below llm and ui. It turns the engine's JSON
position plus `shared` into versioned plain JSON (strict_json: never pickle), keeps it in a
store (store: the interface and MemoryStore; sqlite_store: SQLiteStore; async_store: the
async twins), runs flows durably on it (runs: start, resume by id from any process, inspect)
and lists, shows and deletes runs from the command line (cli). It knows nothing of LLMs or
UIs. Not imported by `import pocketflow_stream`: an app that never checkpoints pays nothing.
"""

from .async_store import AsyncMemoryStore, AsyncSQLiteStore, AsyncStore
from .runs import (
    AsyncDurableRun,
    DurableRun,
    DurableRuns,
    RunFinished,
    RunState,
    UnknownInterrupt,
    new_run_id,
)
from .sqlite_store import DURABILITY, SQLiteStore
from .store import (
    FORMAT_VERSION,
    Lease,
    LeaseLost,
    MemoryStore,
    Record,
    RunBusy,
    RunInfo,
    RunNotFound,
    SequenceConflict,
    Store,
    new_owner,
)
from .strict_json import (
    CheckpointError,
    CheckpointTooLarge,
    Codecs,
    NotJSONError,
    UnknownCodecError,
    decode,
    encode,
)

__all__ = [
    "DurableRuns",
    "DurableRun",
    "AsyncDurableRun",
    "RunState",
    "RunFinished",
    "UnknownInterrupt",
    "new_run_id",
    "Store",
    "AsyncStore",
    "MemoryStore",
    "AsyncMemoryStore",
    "SQLiteStore",
    "AsyncSQLiteStore",
    "DURABILITY",
    "Record",
    "RunInfo",
    "Lease",
    "FORMAT_VERSION",
    "new_owner",
    "Codecs",
    "encode",
    "decode",
    "CheckpointError",
    "NotJSONError",
    "UnknownCodecError",
    "CheckpointTooLarge",
    "RunBusy",
    "LeaseLost",
    "SequenceConflict",
    "RunNotFound",
]
