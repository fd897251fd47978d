"""Async twins of the stores: the same interface with `await`, never blocking the event loop.

`AsyncStore` is the interface; `AsyncStore.wrap(store)` gives the twin of any sync `Store`:
a store whose calls may block (disk, network: `store.blocking`) runs each call in a worker
thread (`anyio.to_thread.run_sync`, so it works on asyncio and trio and a cancellation waits
for the write in progress instead of tearing it), a memory store is called directly. A store
with a native async client (a Postgres store on psycopg's async connection) implements
`AsyncStore` itself.
"""

from __future__ import annotations

import functools
import os
import time
from abc import ABC, abstractmethod
from typing import Any, Callable, List, Optional, TypeVar

import anyio.to_thread

from .sqlite_store import SQLiteStore
from .store import Lease, MemoryStore, Record, RunInfo, Store

__all__ = ["AsyncStore", "AsyncMemoryStore", "AsyncSQLiteStore"]

T = TypeVar("T")


class AsyncStore(ABC):
    """The async store interface: `Store`'s methods, awaited (see store.py for the rules)."""

    @abstractmethod
    async def claim(self, run_id: str, owner: str, ttl: float = 30.0) -> Lease: ...

    @abstractmethod
    async def renew(self, lease: Lease) -> Lease: ...

    @abstractmethod
    async def release(self, lease: Lease) -> None: ...

    @abstractmethod
    async def save(self, lease: Lease, seq_expected: int, record: Record) -> int: ...

    @abstractmethod
    async def load(self, run_id: str, seq: Optional[int] = None) -> Optional[Record]: ...

    @abstractmethod
    async def list(
        self, status: Optional[str] = None, limit: Optional[int] = None
    ) -> List[RunInfo]: ...

    @abstractmethod
    async def seqs(self, run_id: str) -> List[int]: ...

    @abstractmethod
    async def delete(self, run_id: str) -> bool: ...

    async def aclose(self) -> None:  # noqa: B027 - most stores hold nothing to let go of
        """Write anything buffered and let go of resources."""

    async def __aenter__(self) -> AsyncStore:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()

    @staticmethod
    def wrap(store: Store) -> AsyncStore:
        """The async twin of a sync store (the same store underneath: both can be used)."""
        return _Twin(store)


class _Twin(AsyncStore):
    def __init__(self, store: Store) -> None:
        self.store = store

    async def _call(self, method: Callable[..., T], *args: Any) -> T:
        if not self.store.blocking:
            return method(*args)
        return await anyio.to_thread.run_sync(functools.partial(method, *args))

    async def claim(self, run_id: str, owner: str, ttl: float = 30.0) -> Lease:
        return await self._call(self.store.claim, run_id, owner, ttl)

    async def renew(self, lease: Lease) -> Lease:
        return await self._call(self.store.renew, lease)

    async def release(self, lease: Lease) -> None:
        await self._call(self.store.release, lease)

    async def save(self, lease: Lease, seq_expected: int, record: Record) -> int:
        return await self._call(self.store.save, lease, seq_expected, record)

    async def load(self, run_id: str, seq: Optional[int] = None) -> Optional[Record]:
        return await self._call(self.store.load, run_id, seq)

    async def list(
        self, status: Optional[str] = None, limit: Optional[int] = None
    ) -> List[RunInfo]:
        return await self._call(self.store.list, status, limit)

    async def seqs(self, run_id: str) -> List[int]:
        return await self._call(self.store.seqs, run_id)

    async def delete(self, run_id: str) -> bool:
        return await self._call(self.store.delete, run_id)

    async def aclose(self) -> None:
        await self._call(self.store.close)


class AsyncMemoryStore(_Twin):
    """`MemoryStore`, awaited (called directly: it never blocks)."""

    def __init__(self, history: int = 0, clock: Callable[[], float] = time.time) -> None:
        super().__init__(MemoryStore(history=history, clock=clock))


class AsyncSQLiteStore(_Twin):
    """`SQLiteStore`, awaited: every call runs in a worker thread, so the loop never waits
    on the disk. Same arguments as `SQLiteStore`; `.store` is the sync store underneath."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        durability: str = "node",
        history: int = 0,
        busy_timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(SQLiteStore(path, durability, history, busy_timeout, clock))
