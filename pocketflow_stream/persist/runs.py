"""Durable runs: a flow run checkpointed to a store, resumable by its id from any process.

    runs = DurableRuns(flow, SQLiteStore("runs.db"))
    run = runs.start({"question": "..."})          # a new run id, unguessable
    for item in run:                               # chunks and interrupts, each with .id
        ...
    run.status, run.interrupts                     # "paused", what it waits for
    run = runs.resume(run.run_id, {ask_id: "yes"}) # later, in this process or another

Rules it keeps:
- The run holds its store lease while it advances; a second process resuming the same run
  gets RunBusy. Every checkpoint is a compare-and-set save: a stale owner stops at its next
  checkpoint with LeaseLost, never writes.
- A checkpoint is taken wherever the engine calls its `checkpoint` hook (after every node
  run, at every pause, at the end): `shared` is strictly encoded (strict_json), its size
  checked, then saved with the engine's position. A value JSON would change stops the run
  there with NotJSONError naming the key path and the node that wrote it.
- A run stopped (a stop request, or the consumer leaving the loop) or failed is saved as
  "stopped" / "failed" at its last checkpoint and stays resumable; a "done" run is not.
- What runs again on resume is the engine's promise (README "Durable runs"); side effects
  inside a node that runs again happen again.

The engine-facing calls are the two `_walk` functions at the end of this file. It knows
nothing of SQL, LLMs or UIs.
"""

from __future__ import annotations

import dataclasses
import secrets
from typing import Any, AsyncIterator, Dict, Iterator, List, Mapping, Optional

import anyio.to_thread

from .. import engine
from ..async_driver import FlowStream
from ..nodes import BaseNode
from ..positions import begun_position
from .store import FORMAT_VERSION, Lease, Record, RunInfo, RunNotFound, Store, new_owner
from .strict_json import (
    DEFAULT_MAX_BYTES,
    CheckpointError,
    Codecs,
    check_size,
    decode,
    dumps,
    dumps_checked,
    dumps_str,
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
]


class RunFinished(CheckpointError):
    """The run is done: there is nothing to resume."""


class UnknownInterrupt(CheckpointError, KeyError):
    """An answer for an interrupt id the run is not waiting for; nothing was changed."""

    def __str__(self) -> str:
        return str(self.args[0])


def new_run_id() -> str:
    """An unguessable run id (128 random bits, URL-safe)."""
    return secrets.token_urlsafe(16)


class RunState:
    """Where a run stands, as `DurableRuns.inspect` gives it: `status`, `at` (the node path),
    `interrupts` (pending, each a dict with `id` and `payload`), `updated_at` (when it last
    moved), `seq`, `error`, and `shared` decoded with the app's codecs."""

    __slots__ = ("run_id", "status", "at", "interrupts", "updated_at", "seq", "error", "shared")

    def __init__(self, record: Record, shared: Any) -> None:
        self.run_id = record.run_id
        self.status = record.status
        self.at = record.at
        self.interrupts = record.interrupts
        self.updated_at = record.updated_at
        self.seq = record.seq
        self.error = record.error
        self.shared = shared

    def __repr__(self) -> str:
        return (
            f"RunState(run_id={self.run_id!r}, status={self.status!r}, at={self.at!r}, "
            f"interrupts={[ask.get('id') for ask in self.interrupts]!r}, seq={self.seq!r})"
        )


class DurableRuns:
    """Checkpointed runs of one flow in one store.

    - `codecs`: the app's codecs for types JSON cannot hold (strict_json.Codecs).
    - `max_bytes`: the largest checkpoint accepted (CheckpointTooLarge names the biggest keys).
    - `ttl`: the lease's time to live in seconds, renewed by every checkpoint; a process that
      dies holds a run for at most this long. `owner`: shown to others as the lease holder.
    - `run_options`: passed to every run (`events=True`, `nodes=...`, `max_steps=...`).
    """

    def __init__(
        self,
        flow: BaseNode,
        store: Store,
        *,
        codecs: Optional[Codecs] = None,
        max_bytes: Optional[int] = DEFAULT_MAX_BYTES,
        ttl: float = 30.0,
        owner: Optional[str] = None,
        **run_options: Any,
    ) -> None:
        self.flow = flow
        self.store = store
        self.codecs = codecs
        # the engine's position holds prep_res, params and results as the app made them:
        # checked like `shared`, with tuples carried exactly (PocketFlow preps return them)
        self.position_codecs = (codecs or Codecs()).with_tuples()
        self.max_bytes = max_bytes
        self.ttl = ttl
        self.owner = owner or new_owner()
        self.run_options = run_options

    # -- starting and resuming -----------------------------------------------------------

    def start(self, shared: Any, run_id: Optional[str] = None) -> DurableRun:
        """Start a run of the flow on `shared` (checkpointed once before its first node, so
        the id is resumable at once). Returns the run to iterate; RunBusy if `run_id` is
        being run elsewhere, CheckpointError if a run with that id exists already."""
        run = DurableRun(self, run_id or new_run_id(), shared, None)
        run._begin_new()
        return run

    def resume(self, run_id: str, answers: Optional[Mapping[str, Any]] = None) -> DurableRun:
        """Resume run `run_id` from its last checkpoint, with `answers` (interrupt id ->
        answer) for pending interrupts. Raises RunBusy, RunNotFound, RunFinished, or
        UnknownInterrupt for an id not pending (then nothing changed)."""
        run = DurableRun(self, run_id, None, dict(answers or {}))
        run._begin_resume()
        return run

    def create(self, shared: Any, run_id: Optional[str] = None) -> int:
        """Save a new run's first checkpoint (before its first node) and let its lease go,
        without running it: `resume(run_id)` runs it, in this process or another (how
        scale.dbos_runs hands a run to a worker). Returns that checkpoint's seq; RunBusy or
        CheckpointError as `start`."""
        run = DurableRun(self, run_id or new_run_id(), shared, None)
        run._begin_new(begun=False)
        assert run.lease is not None
        self.store.release(run.lease)
        run.lease = None
        return run.seq

    def start_async(self, shared: Any, run_id: Optional[str] = None) -> AsyncDurableRun:
        """`start` for async flows: `async with runs.start_async(shared) as run: async for
        item in run: ...`. Store calls run in a worker thread; the loop never blocks."""
        return AsyncDurableRun(self, run_id or new_run_id(), shared, None)

    def resume_async(
        self, run_id: str, answers: Optional[Mapping[str, Any]] = None
    ) -> AsyncDurableRun:
        """`resume` for async flows, used like `start_async`."""
        return AsyncDurableRun(self, run_id, None, dict(answers or {}))

    # -- looking at runs -----------------------------------------------------------------

    def inspect(self, run_id: str) -> RunState:
        """Where run `run_id` stands; RunNotFound if there is none."""
        record = self.store.load(run_id)
        if record is None:
            raise _not_found(run_id)
        return RunState(record, decode(record.shared, self.codecs))

    def list(self, status: Optional[str] = None, limit: Optional[int] = None) -> List[RunInfo]:
        return self.store.list(status=status, limit=limit)

    def delete(self, run_id: str) -> bool:
        return self.store.delete(run_id)

    def fork(self, run_id: str, seq: Optional[int] = None, new_id: Optional[str] = None) -> str:
        """Copy checkpoint `seq` of a run (the head if None; older ones need `history=N`) into
        a new run, resumable on its own; returns the new run's id."""
        record = self.store.load(run_id, seq)
        if record is None:
            raise _not_found(run_id)
        record.run_id = new_id or new_run_id()
        if self.store.load(record.run_id) is not None:
            raise CheckpointError(f"run {record.run_id!r} exists already: fork to a new id")
        lease = self.store.claim(record.run_id, self.owner, self.ttl)
        try:
            self.store.save(lease, 0, record)
        finally:
            self.store.release(lease)
        return record.run_id

    async def inspect_async(self, run_id: str) -> RunState:
        return await anyio.to_thread.run_sync(self.inspect, run_id)

    async def list_async(
        self, status: Optional[str] = None, limit: Optional[int] = None
    ) -> List[RunInfo]:
        return await anyio.to_thread.run_sync(self.list, status, limit)

    async def delete_async(self, run_id: str) -> bool:
        return await anyio.to_thread.run_sync(self.delete, run_id)


class _Segment:
    """What a run does between its lease being claimed and released: the shared parts of the
    sync and async runs."""

    def __init__(
        self,
        runs: DurableRuns,
        run_id: str,
        shared: Any,
        answers: Optional[Dict[str, Any]],
    ) -> None:
        self.runs = runs
        self.run_id = run_id
        self.shared = shared
        self.answers = answers
        self.position: Optional[Dict[str, Any]] = None
        self.lease: Optional[Lease] = None
        self.seq = 0
        self.status = "running"
        self.interrupts: List[Dict[str, Any]] = []
        self.error: Optional[str] = None
        self.result: Any = None
        self.stop_signal = engine.StopSignal()
        # the walk's options for this segment: the runs' own, which a caller may add to
        # before iterating (scale.dbos_runs gives a segment its fan-out hook here)
        self.run_options: Dict[str, Any] = dict(runs.run_options)
        self._writer: Optional[str] = None  # the node that runs before the next checkpoint
        self._last: Optional[Record] = None
        # the start of every checkpoint's text (Record.body()), made once
        self._head = f'{{"version":{FORMAT_VERSION:d},"run_id":{dumps(run_id)},'

    # the steps, each blocking (the async run calls them in a worker thread)

    def _begin_new(self, begun: bool = True) -> None:
        """Claim a new run and save its first checkpoint: the begun position when it runs
        now (resumed from it, the first node is a new attempt: it may have been in flight),
        no position when it is only created (`create`: not begun, nothing was in flight)."""
        store = self.runs.store
        self.lease = store.claim(self.run_id, self.runs.owner, self.runs.ttl)
        try:
            if store.load(self.run_id) is not None:
                raise CheckpointError(
                    f"run {self.run_id!r} exists already: resume it, or start with a new id"
                )
            position = begun_position(self.runs.flow) if begun else None
            self._save(self._record("running", position, [], None))
        except BaseException:
            store.release(self.lease)
            raise

    def _begin_resume(self) -> None:
        store = self.runs.store
        self.lease = store.claim(self.run_id, self.runs.owner, self.runs.ttl)
        try:
            record = store.load(self.run_id)
            if record is None:
                raise _not_found(self.run_id)
            if record.status == "done":
                raise RunFinished(
                    f"run {self.run_id!r} is done (at {record.at or 'its end'}): nothing to "
                    f"resume. Fork an earlier checkpoint to run it again."
                )
            pending = [ask.get("id") for ask in record.interrupts]
            for answer_id in self.answers or {}:
                if answer_id not in pending:
                    raise UnknownInterrupt(
                        f"run {self.run_id!r} is not waiting for an answer to {answer_id!r} "
                        f"(pending: {', '.join(map(repr, pending)) or 'none'}); nothing was "
                        f"changed. Answer by the ids in run.interrupts or `runs show`."
                    )
            self.seq = record.seq
            self.interrupts = record.interrupts
            self.position = decode(record.position, self.runs.position_codecs)
            self.shared = decode(record.shared, self.runs.codecs)
            self._last = record
            self._writer = record.at
            if self.position is None:  # created, never begun: it begins here
                begun = begun_position(self.runs.flow)
                self._save(self._record("running", begun, [], None))
        except BaseException:
            store.release(self.lease)
            raise

    def checkpoint(self, position: Dict[str, Any]) -> None:
        """The engine's hook: save `shared` at `position`."""
        at = _at(position)
        writer, self._writer = self._writer, at
        self.position = position
        self.interrupts = position.get("interrupts") or []
        status = position.get("status", "running")
        self._save(self._record(status, position, self.interrupts, writer, at))

    def _record(
        self,
        status: str,
        position: Optional[Dict[str, Any]],
        interrupts: List[Dict[str, Any]],
        writer: Optional[str],
        at: Optional[str] = None,
    ) -> Record:
        """The checkpoint: `shared` and `position` strictly checked (encode), then the record's
        text made once, here (the same text as `Record.body()` gives), its size checked."""
        shared = encode(self.shared, self.runs.codecs, writer=writer)
        fingerprint = None
        if position is not None:
            codecs = self.runs.position_codecs
            position = encode(position, codecs, root="position", writer=writer)
            fingerprint = position.get("fingerprint")
        record = Record(
            self.run_id,
            status,
            position=position,
            shared=shared,
            interrupts=interrupts,
            fingerprint=fingerprint,
            at=at,
        )
        # position and shared passed the walks above (acyclic, exact JSON types): the fast
        # encoder; the same keys in the same order as Record.body()
        body = (
            f'{self._head}"status":{_text(status)},"at":{_text(at)},'
            f'"fingerprint":{_text(fingerprint)},'
            f'"interrupts":{dumps(interrupts) if interrupts else "[]"},"error":null,"meta":{{}},'
            f'"position":{dumps_checked(position)},"shared":{dumps_checked(shared)}}}'
        )
        record._body = body
        check_size(body, shared, self.runs.max_bytes, writer)
        return record

    def _save(self, record: Record) -> None:
        assert self.lease is not None
        self.seq = self.runs.store.save(self.lease, self.seq, record)
        self.status = record.status
        self._last = record

    def _end(self, status: str, error: Optional[BaseException] = None) -> None:
        """Mark the last checkpoint stopped / failed (when the engine's last word was not a
        pause or the end) and release the lease."""
        store = self.runs.store
        try:
            last = self._last
            if last is not None and last.status == "running" and status != "running":
                self.error = None if error is None else f"{type(error).__name__}: {error}"
                try:
                    # from the text it was saved as: `shared` may have changed since
                    saved = Record.from_json(last.to_json(self.seq, 0.0))
                    self._save(dataclasses.replace(saved, status=status, error=self.error))
                except CheckpointError:
                    pass  # lost the lease meanwhile: the new owner's word stands
            else:
                self.status = last.status if last is not None else status
        finally:
            if self.lease is not None:
                store.release(self.lease)
                self.lease = None

    def stop(self) -> None:
        """Ask the run to stop (from any thread): the running node's generator is closed at
        once, the run is saved as "stopped" at its last checkpoint and stays resumable."""
        self.stop_signal.set()


class DurableRun(_Segment):
    """One segment of a durable run (start or resume, up to a pause, the end, a stop or an
    error), to iterate once. After the loop: `status`, `interrupts` (pending), `result` (the
    engine's return value: the final action, or its Paused handle), `shared`."""

    def __init__(
        self, runs: DurableRuns, run_id: str, shared: Any, answers: Optional[Dict[str, Any]]
    ) -> None:
        super().__init__(runs, run_id, shared, answers)
        self._iterator: Optional[Iterator[Any]] = None

    def __iter__(self) -> Iterator[Any]:
        if self._iterator is not None:
            raise CheckpointError(
                f"run {self.run_id!r}: a DurableRun is iterated once; resume the run again "
                f"(runs.resume) to go on"
            )
        self._iterator = self._items()
        return self._iterator

    def close(self) -> None:
        """Stop the run where it is (saved as "stopped" unless it paused or ended) and let
        its lease go; a run never iterated just lets its lease go."""
        if self._iterator is None:
            self._iterator = iter(())
            self._end("stopped")
        else:
            self._iterator.close()  # type: ignore[attr-defined]

    def __enter__(self) -> DurableRun:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def _items(self) -> Iterator[Any]:
        status: str = "stopped"  # the consumer left the loop: a stop
        error: Optional[BaseException] = None
        try:
            self.result = yield from _walk(self)
            status = "stopped" if self.result is engine.STOPPED else "running"
        except GeneratorExit:
            raise
        except BaseException as exc:
            status, error = "failed", exc
            raise
        finally:
            self._end(status, error)


class AsyncDurableRun(_Segment):
    """The async twin of DurableRun: `async with runs.start_async(shared) as run:` then
    `async for item in run`. Leaving the block stops the run (saved as "stopped")."""

    def __init__(
        self, runs: DurableRuns, run_id: str, shared: Any, answers: Optional[Dict[str, Any]]
    ) -> None:
        super().__init__(runs, run_id, shared, answers)
        self._resuming = answers is not None
        self._stream: Any = None

    async def __aenter__(self) -> AsyncDurableRun:
        begin = self._begin_resume if self._resuming else self._begin_new
        await anyio.to_thread.run_sync(begin)
        self._stream = _walk_async(self)
        try:
            await self._stream.__aenter__()
        except BaseException:
            await anyio.to_thread.run_sync(self._end, "stopped", None)
            raise
        return self

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._stream.__aiter__()  # type: ignore[no-any-return]

    async def __aexit__(self, kind: Any, error: Any, traceback: Any) -> None:
        stream = self._stream
        try:
            await stream.__aexit__(kind, error, traceback)
        finally:
            self.result = stream.paused if stream.paused is not None else stream.action
            if stream.finished and stream.action is not engine.STOPPED:
                status, failure = "running", None  # the engine's last checkpoint said it
            elif error is not None and not isinstance(error, anyio.get_cancelled_exc_class()):
                status, failure = "failed", error
            else:
                status, failure = "stopped", None
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._end, status, failure)


def _at(position: Optional[Dict[str, Any]]) -> Optional[str]:
    """Where a position stands, readable: the root's id, then each frame's node id."""
    if not position:
        return None
    parts = [str(position.get("root"))]
    for frame in position.get("frames") or []:
        node = frame.get("node")
        if node is not None and node != parts[-1]:  # a node frame repeats its flow's node
            parts.append(str(node))
    return " > ".join(parts)


def _text(value: Any) -> str:
    """A str (or None) as JSON text, as `dumps` writes it, without its Python layer."""
    if type(value) is str:
        return dumps_str(value)
    return "null" if value is None else dumps(value)


def _not_found(run_id: str) -> RunNotFound:
    return RunNotFound(f"no run {run_id!r} in this store (listed by `runs list`)")


# -- the engine-facing part ---------------------------------------------------------------


def _walk(run: _Segment) -> Any:
    """The engine's walk of the run's flow, checkpointed, from its saved position."""
    return engine.walk(run.runs.flow, run.shared, **_checkpointed(run))


def _walk_async(run: _Segment) -> Any:
    """The same walk under the async driver (checkpoints are saved in a worker thread)."""
    return FlowStream(run.runs.flow, run.shared, **_checkpointed(run))


def _checkpointed(run: _Segment) -> Dict[str, Any]:
    return {
        "checkpoint": run.checkpoint,
        "resume_from": run.position,
        "answers": run.answers if run.position is not None else None,
        "stop": run.stop_signal,
        **run.run_options,
    }
