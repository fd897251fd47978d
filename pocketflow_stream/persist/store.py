"""The store interface: where a run's checkpoints live, and who may advance the run.

A store keeps, per run id, the head checkpoint (a `Record`: plain JSON), a sequence number that
every save increments, and a lease. Rules every store keeps (the contract suite in
tests/test_store_contract.py checks them, for every store):

- `claim` gives a `Lease` with a fresh token, or raises `RunBusy` while another lease on the
  run is unexpired. A lease is a token, not a lock: a process that dies simply stops renewing.
- `save(lease, seq_expected, record)` writes only if the run's sequence number is still
  `seq_expected` *and* the lease's token is still the run's, in one compare-and-set, so a stale
  owner (whose lease expired and was claimed by another) can never write. It returns the new
  sequence number and extends the lease.
- `load` gives the head (or, with `history=N`, one of the last N by sequence number), `list`
  gives summaries without the shared state, `delete` removes a run and its history.

Nothing here knows SQL: `MemoryStore` implements the interface with a dict, `SQLiteStore` with
one file, a Postgres store with a server. Values are JSON-ready; the durable run layer checks
them (strict_json) before they reach a store.
"""

from __future__ import annotations

import secrets
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

from .strict_json import CheckpointError, dumps, loads

__all__ = [
    "FORMAT_VERSION",
    "STATUSES",
    "Record",
    "RunInfo",
    "Lease",
    "Store",
    "MemoryStore",
    "RunBusy",
    "LeaseLost",
    "SequenceConflict",
    "RunNotFound",
    "new_owner",
]

FORMAT_VERSION = 1
STATUSES = ("running", "paused", "done", "failed", "stopped")


class RunBusy(CheckpointError):
    """Another process holds the run's lease: it is running or resuming it right now."""

    def __init__(self, run_id: str, owner: Optional[str], expires_at: Optional[float]) -> None:
        left = ""
        if expires_at is not None:
            left = f" for up to {max(0.0, expires_at - time.time()):.1f} s"
        super().__init__(
            f"run {run_id!r} is busy: {owner or 'another process'} holds its lease{left} (it is "
            f"running or resuming the run). Wait until it pauses, ends or its lease expires, "
            f"then resume again."
        )
        self.run_id = run_id
        self.owner = owner
        self.expires_at = expires_at


class LeaseLost(CheckpointError):
    """The lease's token is no longer the run's (another process claimed it after it expired,
    or the run was deleted): this owner is stale and must stop advancing the run."""


class SequenceConflict(CheckpointError):
    """`save` was given a sequence number that is not the run's current one."""


class RunNotFound(CheckpointError, KeyError):
    """No run with this id (or no checkpoint with this sequence number) in the store."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0])


def new_owner() -> str:
    """A readable, unique owner name for leases: host, pid and a random suffix."""
    import os
    import socket

    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass
class Record:
    """One checkpoint of a run, as plain JSON-ready values.

    - `status`: "running" (between nodes), "paused" (waiting for answers), "done", "failed",
      "stopped" (a stop request; resumable from here).
    - `position`: the engine's JSON-ready position (frame stack, batch progress, paused node
      state); None before the first node ran.
    - `shared`: the run's shared state, strictly encoded (strict_json.encode).
    - `interrupts`: the pending interrupts, each a dict with at least `id` and `payload`.
    - `fingerprint`: the graph's fingerprint, to refuse a resume on a changed graph.
    - `at`: where the run stands, readable (e.g. "Agent > Approve"); `error`: why it failed.
    - `seq`, `updated_at`: filled in by the store (the sequence number and the time of the save).
    """

    run_id: str
    status: str
    position: Optional[Dict[str, Any]] = None
    shared: Any = None
    interrupts: List[Dict[str, Any]] = field(default_factory=list)
    fingerprint: Optional[str] = None
    at: Optional[str] = None
    error: Optional[str] = None
    meta: Dict[str, Any] = field(default_factory=dict)
    seq: int = 0
    updated_at: float = 0.0
    version: int = FORMAT_VERSION

    _body: Optional[str] = field(default=None, init=False, repr=False, compare=False)

    def body(self) -> str:
        """The record's JSON text without `seq` and `updated_at` (which the store adds when it
        saves), encoded once and kept: the durable run layer checks its size before the store
        writes it. Change a record with `dataclasses.replace`, not in place, once encoded."""
        if self._body is None:
            self._body = self._encode()
        return self._body

    def _encode(self) -> str:
        return dumps(
            {
                "version": self.version,
                "run_id": self.run_id,
                "status": self.status,
                "at": self.at,
                "fingerprint": self.fingerprint,
                "interrupts": self.interrupts,
                "error": self.error,
                "meta": self.meta,
                "position": self.position,
                "shared": self.shared,
            }
        )

    def to_json(self, seq: int, updated_at: float) -> str:
        """The record as compact JSON text, with the store's `seq` and `updated_at`."""
        text = self.body()
        return f'{{"seq":{int(seq)},"updated_at":{float(updated_at)!r},{text[1:]}'

    @classmethod
    def from_json(cls, text: str) -> Record:
        data = loads(text)
        version = data.get("version")
        if version != FORMAT_VERSION:
            raise CheckpointError(
                f"checkpoint of run {data.get('run_id')!r} has format version {version!r}; "
                f"this pocketflow_stream reads version {FORMAT_VERSION}. Resume it with the "
                f"version that wrote it."
            )
        return cls(
            run_id=data["run_id"],
            status=data["status"],
            position=data.get("position"),
            shared=data.get("shared"),
            interrupts=data.get("interrupts") or [],
            fingerprint=data.get("fingerprint"),
            at=data.get("at"),
            error=data.get("error"),
            meta=data.get("meta") or {},
            seq=data["seq"],
            updated_at=data["updated_at"],
            version=version,
        )

    def info(
        self, lease_owner: Optional[str] = None, lease_expires: Optional[float] = None
    ) -> RunInfo:
        return RunInfo(
            run_id=self.run_id,
            seq=self.seq,
            status=self.status,
            at=self.at,
            updated_at=self.updated_at,
            interrupts=self.interrupts,
            fingerprint=self.fingerprint,
            error=self.error,
            lease_owner=lease_owner,
            lease_expires=lease_expires,
        )


@dataclass(frozen=True)
class RunInfo:
    """A run's summary, as `Store.list` gives it: no `shared`, no position."""

    run_id: str
    seq: int
    status: str
    at: Optional[str]
    updated_at: float
    interrupts: List[Dict[str, Any]]
    fingerprint: Optional[str] = None
    error: Optional[str] = None
    lease_owner: Optional[str] = None
    lease_expires: Optional[float] = None

    def to_dict(self) -> Dict[str, Any]:
        return {
            "run_id": self.run_id,
            "seq": self.seq,
            "status": self.status,
            "at": self.at,
            "updated_at": self.updated_at,
            "interrupts": self.interrupts,
            "fingerprint": self.fingerprint,
            "error": self.error,
            "lease_owner": self.lease_owner,
            "lease_expires": self.lease_expires,
        }


@dataclass(frozen=True)
class Lease:
    """The right to advance one run, until `expires_at` unless renewed (every save renews it).
    `token` is what the compare-and-set checks; `owner` is only for people reading `list`."""

    run_id: str
    owner: str
    token: str
    ttl: float
    expires_at: float


class Store(ABC):
    """Where runs are checkpointed. Thread-safe. See the module docstring for the rules."""

    #: whether calls may block (disk, network); the async twin runs those in a worker thread
    blocking: bool = True

    @abstractmethod
    def claim(self, run_id: str, owner: str, ttl: float = 30.0) -> Lease:
        """Take the run's lease for `ttl` seconds (creating the run if it does not exist; a new
        run's sequence number is 0). Raises RunBusy while another unexpired lease holds it."""

    @abstractmethod
    def renew(self, lease: Lease) -> Lease:
        """Extend the lease by its ttl from now. Raises LeaseLost if it is no longer held."""

    @abstractmethod
    def release(self, lease: Lease) -> None:
        """Give the lease up (after writing anything the store still buffers); a lease that
        was lost meanwhile is ignored."""

    @abstractmethod
    def save(self, lease: Lease, seq_expected: int, record: Record) -> int:
        """Write `record` as the run's head if its sequence number is `seq_expected` and
        `lease` still holds it — one compare-and-set. Returns the new sequence number and
        renews the lease. Raises LeaseLost (stale owner) or SequenceConflict; writes nothing
        then."""

    @abstractmethod
    def load(self, run_id: str, seq: Optional[int] = None) -> Optional[Record]:
        """The run's head checkpoint (or the one numbered `seq`, kept with `history=N`);
        None if the run does not exist or was never saved. Raises RunNotFound for a `seq` no
        longer kept."""

    @abstractmethod
    def list(self, status: Optional[str] = None, limit: Optional[int] = None) -> List[RunInfo]:
        """Summaries of the saved runs (most recently moved first), optionally only those with
        `status`."""

    @abstractmethod
    def seqs(self, run_id: str) -> List[int]:
        """The sequence numbers this store still keeps for the run (oldest first): the head
        only, or the last N with `history=N`."""

    @abstractmethod
    def delete(self, run_id: str) -> bool:
        """Remove the run and its history; False if there was none. A process still advancing
        it gets LeaseLost at its next save."""

    def close(self) -> None:  # noqa: B027 - most stores hold nothing to let go of
        """Write anything buffered and let go of resources."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


class _Row:
    __slots__ = ("seq", "owner", "token", "expires", "text", "record", "history")

    def __init__(self) -> None:
        self.seq = 0
        self.owner: Optional[str] = None
        self.token: Optional[str] = None
        self.expires: Optional[float] = None
        self.text: Optional[str] = None
        self.record: Optional[Record] = None  # the summary fields, parsed once
        self.history: Deque[Tuple[int, str]] = deque()


class MemoryStore(Store):
    """A store in this process's memory: for tests and for runs that need pause/resume only
    within one process. Records are kept as JSON text, exactly as a durable store keeps them,
    so a later change to `shared` never reaches a saved checkpoint."""

    blocking = False

    def __init__(self, history: int = 0, clock: Callable[[], float] = time.time) -> None:
        if history < 0:
            raise ValueError(f"history must be >= 0, not {history!r}")
        self.history = history
        self._clock = clock
        self._rows: Dict[str, _Row] = {}
        self._lock = threading.Lock()

    def claim(self, run_id: str, owner: str, ttl: float = 30.0) -> Lease:
        with self._lock:
            now = self._clock()
            row = self._rows.get(run_id)
            if row is None:
                row = self._rows[run_id] = _Row()
            elif row.token is not None and row.expires is not None and row.expires >= now:
                raise RunBusy(run_id, row.owner, row.expires)
            row.owner, row.token, row.expires = owner, secrets.token_hex(16), now + ttl
            return Lease(run_id, owner, row.token, ttl, row.expires)

    def renew(self, lease: Lease) -> Lease:
        with self._lock:
            row = self._held(lease)
            row.expires = self._clock() + lease.ttl
            return Lease(lease.run_id, lease.owner, lease.token, lease.ttl, row.expires)

    def release(self, lease: Lease) -> None:
        with self._lock:
            row = self._rows.get(lease.run_id)
            if row is not None and row.token == lease.token:
                row.owner = row.token = row.expires = None

    def save(self, lease: Lease, seq_expected: int, record: Record) -> int:
        with self._lock:
            row = self._held(lease)
            if row.seq != seq_expected:
                raise _conflict(lease.run_id, seq_expected, row.seq)
            now = self._clock()
            text = record.to_json(seq_expected + 1, now)
            row.seq = seq_expected + 1
            row.text = text
            row.record = None  # parsed when listed
            row.expires = now + lease.ttl
            if self.history:
                row.history.append((row.seq, text))
                while len(row.history) > self.history:
                    row.history.popleft()
            return row.seq

    def load(self, run_id: str, seq: Optional[int] = None) -> Optional[Record]:
        with self._lock:
            row = self._rows.get(run_id)
            if row is None or row.text is None:
                if seq is not None:
                    raise _no_seq(run_id, seq, [])
                return None
            if seq is None or seq == row.seq:
                return Record.from_json(row.text)
            for kept, text in row.history:
                if kept == seq:
                    return Record.from_json(text)
            raise _no_seq(run_id, seq, [kept for kept, _ in row.history] or [row.seq])

    def list(self, status: Optional[str] = None, limit: Optional[int] = None) -> List[RunInfo]:
        with self._lock:
            infos = []
            for row in self._rows.values():
                if row.text is None:
                    continue
                if row.record is None:
                    row.record = Record.from_json(row.text)
                if status is None or row.record.status == status:
                    infos.append(row.record.info(row.owner, row.expires))
        infos.sort(key=lambda info: -info.updated_at)
        return infos if limit is None else infos[:limit]

    def seqs(self, run_id: str) -> List[int]:
        with self._lock:
            row = self._rows.get(run_id)
            if row is None or row.text is None:
                return []
            return [kept for kept, _ in row.history] if self.history else [row.seq]

    def delete(self, run_id: str) -> bool:
        with self._lock:
            return self._rows.pop(run_id, None) is not None

    def _held(self, lease: Lease) -> _Row:
        row = self._rows.get(lease.run_id)
        if row is None or row.token != lease.token:
            raise _lost(lease, None if row is None else row.owner)
        return row


def _lost(lease: Lease, holder: Optional[str]) -> LeaseLost:
    now_held = "it was deleted" if holder is None else f"{holder} holds it now"
    return LeaseLost(
        f"run {lease.run_id!r}: the lease of {lease.owner} is no longer valid ({now_held}); "
        f"this process must stop advancing the run — resume it again to continue from the "
        f"latest checkpoint."
    )


def _conflict(run_id: str, expected: int, actual: int) -> SequenceConflict:
    return SequenceConflict(
        f"run {run_id!r}: save expected sequence number {expected} but the run is at {actual}; "
        f"another save happened in between. Load the run again before saving."
    )


def _no_seq(run_id: str, seq: int, kept: List[int]) -> RunNotFound:
    return RunNotFound(
        f"run {run_id!r} has no checkpoint {seq} in this store (kept: {kept or 'none'}); "
        f"open the store with history=N to keep the last N checkpoints."
    )
