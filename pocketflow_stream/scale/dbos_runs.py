"""Durable runs distributed over worker processes by DBOS Transact (the optional extra `scale`).

    runs = DistributedRuns(flow, PostgresStore(url), url, executor_id="worker-1")
    runs.launch()                                  # in a worker process (DBOS.launch)
    run_id = runs.start({"question": "..."})       # from any process: enqueued, not run here
    state = runs.wait(run_id)                      # "paused", with state.interrupts
    runs.resume(run_id, {ask_id: "yes"})           # the next segment, on whichever worker

What the store says and what DBOS guarantees, kept apart:
- The store (PostgresStore, or SQLiteStore for one process) says *where* a run continues:
  its last checkpoint, taken after every node, at a pause and at the end, under a lease with
  a compare-and-set on the seq. Nothing here changes that.
- DBOS says *that* it continues: each run segment (a start, or a resume, up to the next pause
  or the end) is one durable DBOS workflow on a DBOS queue (per-worker concurrency limit).
  Never one per node or per chunk: a DBOS step costs ~10 ms, a checkpoint far less. The
  workflow has no steps: it resumes the run from the store's last checkpoint and runs it on
  this worker. When its worker dies, DBOS runs the same workflow again (on the restarted
  worker with the same executor id): it waits for the dead owner's store lease to expire
  (`ttl`), claims it, and resumes from the last checkpoint — what runs again is the store's
  promise (the node in flight, as a new attempt), not DBOS's step replay.
- Workflow ids are `f"{run_id}:{seq}"`, seq of the checkpoint the segment starts from (0 for
  a start), enqueued with DBOS's "reject" reuse policy: the same start or resume twice (a
  double-clicked button) enqueues one workflow and tells the second caller it was a repeat.
- Serialisation is DBOS's portable JSON (`DBOSPortableJSON`), never pickle, and what we hand
  DBOS is JSON already (run id, seq, answers strictly encoded with the run's codecs; results
  are small dicts). DBOS 3.4 still unpickles a row whose `serialization` column says
  "py_pickle": whoever can write DBOS's tables can run code in a worker. Guard those tables
  as you guard the code.
- The application version is pinned (`app_version`, enqueued with it), so a deploy of the
  same version recovers the previous processes' pending segments; executor ids are stable
  (`executor_id`), so a supervisor that restarts a worker under its id gets that worker's
  in-flight segments back (DBOS recovers a dead executor's workflows only there).

Fan-out of a parallel batch node's items (`fan_out=True`, or a collection of node names):
- Each item of the batch is one durable DBOS workflow of its own (`ITEM_WORKFLOW`, registered
  beside the segment's), on a queue of its own (`items_queue`, `item_concurrency` per worker),
  so segments waiting for their items never take the slots the items need. The segment's
  async driver hands the section to a hook (async_driver's `fan_out`): the engine still
  decides everything up to the section and after it; the hook only carries the items away.
- An item's workflow id is `f"{run_id}:{seq}:{node path}:{index}:{digest}"`: `seq` is the
  store's checkpoint the section started after (the same when a recovered segment comes
  back to the section, another when a loop visits the node again), `digest` 12 hex digits
  of the item's SHA-256 over its canonical JSON (a re-run prep that made other items makes
  other workflows). Enqueued through DBOSClient (nothing in the segment workflow's own log)
  with the same id again, DBOS returns the workflow it has: a finished item's stored result
  is used, it never runs again.
- On any worker, the item's workflow finds the node in the flow it launched (by its path of
  node ids), copies it, sets the params the section had, and walks that one item with the
  engine's own branch walk (`engine.walk_item`: retries, waits, fallback as in a local
  section). DBOS counts each dispatch in `recovery_attempts`: more than one means the item
  was in flight on a worker that died; it runs again as a new attempt (its chunks numbered
  from the next attempt, a Retry with the interrupted reason first, as for a node resumed
  after a crash). With `events`, its chunks go to the run's Redis stream from that worker,
  tagged with the node's path and the item's index as in a local run.
- The segment waits for the items (one DBOS query for all of the section's unfinished items
  every `polling_interval`, from a worker thread, never blocking its event loop; a handle's
  get_result would poll once per item) and hands the results to the engine in input order.
  The queue's per-worker limit bounds the items, not the node's max_concurrency. The first
  failed item fails the section, as a local item does: FanOutItemFailed, marked with the
  node's path and `batch_item` (the app's exception type does not cross processes: its name
  and message do). The other items' workflows that have not started are cancelled; those running
  finish on their workers and their results are not used. A resumed failed run has a new
  seq: all its items run again.
- Inputs and outputs are JSON only: run id, seq, node path, index, and the item, the params
  and the result strictly encoded with the run's codecs (tuples carried as in checkpoints). A
  non-JSON item stops the run with NotJSONError naming the node and the item.
- Not fanned out (they run in the segment's process, as in a plain run): a parallel batch
  flow's param sets, a parallel batch node inside a parallel branch (its ids would not tell
  the branches apart), and the rest of a section resumed after a pause. A fanned-out item
  cannot pause: an item that asks fails with FlowError; leave such nodes out of `fan_out`.
- Like segments, items in flight on a dead worker are recovered only when a worker with its
  executor id launches again; side effects of an item that runs again happen again.
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
import time
from typing import (
    Any,
    AsyncIterator,
    Collection,
    Dict,
    List,
    Mapping,
    Optional,
    Sequence,
    Union,
)

import anyio
import anyio.to_thread

from .. import async_driver
from ..engine import FLOW, Parallel, fingerprint, graph_nodes, node_name, walk_item
from ..errors import FlowError, add_note, attach_node_path, describe_path
from ..events import Origin, freeze_params
from ..nodes import BaseNode
from ..persist.runs import DurableRuns, RunFinished, RunState, UnknownInterrupt, new_run_id
from ..persist.store import RunBusy, RunNotFound, Store
from ..persist.strict_json import CheckpointError, Codecs, NotJSONError, decode, encode

__all__ = [
    "DistributedRuns",
    "Submission",
    "FanOutItemFailed",
    "SEGMENT_WORKFLOW",
    "ITEM_WORKFLOW",
]

SEGMENT_WORKFLOW = "pocketflow_stream.segment"
ITEM_WORKFLOW = "pocketflow_stream.item"
_ENDED = ("SUCCESS", "ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED")

# The DistributedRuns a worker process launched: the workflows below find their flow here.
# One per process (DBOS is one app per process).
_launched: Dict[str, DistributedRuns] = {}
_registered = threading.Lock()
_workflows: Dict[str, Any] = {}


class FanOutItemFailed(RuntimeError):
    """A fanned-out item of a parallel batch failed on its worker, after its retries and
    fallback there. `batch_item`: its index; `workflow_id`: its DBOS workflow; `error_type`:
    the class name of what it raised (the class itself does not cross processes: DBOS keeps
    an error as JSON, a name and a message); `node_path`: the node's path."""

    def __init__(
        self,
        message: str,
        batch_item: Optional[int] = None,
        workflow_id: Optional[str] = None,
        error_type: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.batch_item = batch_item
        self.workflow_id = workflow_id
        self.error_type = error_type
        # what DBOS keeps of it beside the message (its portable JSON takes `data`)
        self.data = {"item": batch_item, "type": error_type}


class Submission:
    """What `start` / `resume` did: `workflow_id` of the segment, `new` (False when the same
    start or resume had been submitted before: nothing was enqueued), `run_id`."""

    __slots__ = ("run_id", "workflow_id", "new")

    def __init__(self, run_id: str, workflow_id: str, new: bool) -> None:
        self.run_id = run_id
        self.workflow_id = workflow_id
        self.new = new

    def __repr__(self) -> str:
        return f"Submission(workflow_id={self.workflow_id!r}, new={self.new!r})"


def _dbos() -> Any:
    try:
        import dbos
    except ImportError as exc:  # pragma: no cover - the extra is missing
        raise ImportError(
            "pocketflow_stream.scale.dbos_runs needs DBOS Transact: pip install "
            "'pocketflow-stream[scale]' (or pip install 'dbos>=3.4')"
        ) from exc
    return dbos


def _register_workflows() -> Dict[str, Any]:
    """DBOS's registry is per process and by name: the workflow functions are registered
    once, and find their DistributedRuns by the app name they were launched under."""
    with _registered:
        if _workflows:
            return _workflows
        dbos = _dbos()
        from dbos._serialization import WorkflowSerializationFormat

        portable = WorkflowSerializationFormat.PORTABLE

        @dbos.DBOS.workflow(name=SEGMENT_WORKFLOW, serialization_type=portable)  # type: ignore[untyped-decorator]
        def segment(app: str, run_id: str, seq: int, answers: Dict[str, Any]) -> Dict[str, Any]:
            return _worker(app)._run_segment(run_id, seq, answers)

        @dbos.DBOS.workflow(name=ITEM_WORKFLOW, serialization_type=portable)  # type: ignore[untyped-decorator]
        def item(
            app: str, run_id: str, seq: int, path: List[str], index: int, given: Dict[str, Any]
        ) -> Dict[str, Any]:
            return _worker(app)._run_item(run_id, seq, path, index, given)

        _workflows["segment"] = segment
        _workflows["item"] = item
        return _workflows


def _worker(app: str) -> DistributedRuns:
    runs = _launched.get(app)
    if runs is None:
        raise RuntimeError(
            f"a pocketflow_stream segment of app {app!r} reached a process that did not "
            f"launch it: call DistributedRuns(..., name={app!r}).launch() in the worker"
        )
    return runs


class DistributedRuns:
    """Durable runs of one flow whose segments run on DBOS workers (see the module doc).

    - `store`: PostgresStore for several workers (any worker resumes any run), SQLiteStore
      for one process. `system_database_url`: DBOS's system database (the same Postgres, or
      "sqlite:///dbos.sqlite" for one process); `system_schema`: its schema (Postgres).
    - `events`: a Redis URL; every segment's items then go to the run's Redis stream
      (scale.redis_events.RunEvents), read by any web worker.
    - `queue`, `worker_concurrency`: the DBOS queue and how many segments one worker runs at
      once. DBOS keeps one setting per queue in its database, written by each worker's
      launch and read by every worker: the last worker launched decides for all, so launch
      every worker with the same value. `polling_interval`: how often a worker looks at the
      queue, in seconds.
    - `app_version`: the pinned DBOS application version (default `f"{name}-1"`: a version
      string belongs to one app in a DBOS system database, so two apps sharing one cannot
      both be "1"); `executor_id`: this worker's stable id (a supervisor restarts a worker
      under the same id); `name`: the DBOS app name.
    - `codecs`, `ttl`, `run_options`: as DurableRuns (`ttl` is the store lease a recovered
      segment waits out before it takes a dead worker's run over).
    - `fan_out`: False (the default: a parallel batch node's items run in the segment's
      process), True (every parallel batch node of the run's own walk fans its items out,
      one DBOS workflow each; see the module doc), or the names (ids) of the nodes that do.
      `items_queue`, `item_concurrency`: the DBOS queue of the items and how many items one
      worker runs at once (the node's `max_concurrency` does not apply to fanned-out items).
      Give every worker the same settings: only a worker launched with `fan_out` takes
      items off their queue.
    """

    def __init__(
        self,
        flow: BaseNode,
        store: Store,
        system_database_url: str,
        *,
        events: Optional[str] = None,
        queue: str = "pocketflow_stream",
        worker_concurrency: int = 2,
        app_version: Optional[str] = None,
        executor_id: Optional[str] = None,
        name: str = "pocketflow_stream",
        system_schema: Optional[str] = None,
        polling_interval: float = 1.0,
        codecs: Optional[Codecs] = None,
        ttl: float = 30.0,
        fan_out: Union[bool, Collection[str]] = False,
        items_queue: str = "pocketflow_stream.items",
        item_concurrency: int = 4,
        **run_options: Any,
    ) -> None:
        self.runs = DurableRuns(flow, store, codecs=codecs, ttl=ttl, **run_options)
        if isinstance(fan_out, str):  # one name, not a set of characters
            fan_out = (fan_out,)
        self.fan_out: Union[bool, frozenset[str]] = (
            fan_out if isinstance(fan_out, bool) else frozenset(fan_out)
        )
        self.items_queue = items_queue
        self.item_concurrency = item_concurrency
        fingerprint(flow)  # gives every node its id: items find their node by its path
        self.flow = flow
        self.store = store
        self.system_database_url = system_database_url
        self.events = events
        self.queue = queue
        self.worker_concurrency = worker_concurrency
        self.app_version = app_version if app_version is not None else f"{name}-1"
        self.executor_id = executor_id
        self.name = name
        self.system_schema = system_schema
        self.polling_interval = polling_interval
        self.codecs = codecs
        self.is_async = _has_async(flow)
        self._client: Any = None
        self._redis: Any = None  # the events' client, made at the first segment's use
        self._redis_lock = threading.Lock()
        self._client_lock = threading.Lock()
        self._launched = False
        _register_workflows()

    # -- the worker ---------------------------------------------------------------------

    def launch(self) -> None:
        """Make this process a worker: DBOS.launch with JSON serialisation, the pinned
        version and executor id, and the queue; recovers this executor's pending segments."""
        dbos = _dbos()
        from dbos._serialization import DBOSPortableJSON

        if _launched and self.name not in _launched:
            raise RuntimeError(
                f"this process launched DBOS app {next(iter(_launched))!r} already: one "
                f"DistributedRuns launches per process"
            )
        config: Dict[str, Any] = {
            "name": self.name,
            "system_database_url": self.system_database_url,
            "application_version": self.app_version,
            "serializer": DBOSPortableJSON,
        }
        if self.executor_id is not None:
            config["executor_id"] = self.executor_id
        if self.system_schema is not None:
            config["dbos_system_schema"] = self.system_schema
        _launched[self.name] = self
        dbos.DBOS(config=config)
        dbos.DBOS.launch()
        dbos.DBOS.register_queue(  # (it writes its configuration to the system database)
            self.queue,
            worker_concurrency=self.worker_concurrency,
            polling_interval_sec=self.polling_interval,
        )
        if self.fan_out:
            dbos.DBOS.register_queue(
                self.items_queue,
                worker_concurrency=self.item_concurrency,
                polling_interval_sec=self.polling_interval,
            )
        self._launched = True

    def shutdown(self) -> None:
        """Close the client; in a worker, DBOS.destroy (in-flight segments stay pending and
        are recovered when a worker with this executor id launches again)."""
        if self._client is not None:
            self._client.destroy()
            self._client = None
        if self._redis is not None:
            self._redis.close()
            self._redis = None
        if self._launched:
            _dbos().DBOS.destroy(destroy_registry=False)
            self._launched = False
            _launched.pop(self.name, None)

    # -- submitting ---------------------------------------------------------------------

    def start(self, shared: Any, run_id: Optional[str] = None) -> str:
        """Save a new run (its first checkpoint) and enqueue its first segment; returns the
        run id. Starting the same `run_id` twice starts it once (the second call changes
        nothing)."""
        run_id = run_id or new_run_id()
        record = self.store.load(run_id)
        if record is None:
            try:
                seq = self.runs.create(shared, run_id)
            except CheckpointError:  # created meanwhile (RunBusy: being created or run)
                seq = 0
        else:
            seq = record.seq
        self._enqueue(run_id, 0, seq, {})
        return run_id

    def resume(self, run_id: str, answers: Optional[Mapping[str, Any]] = None) -> Submission:
        """Enqueue the segment that goes on from the run's last checkpoint with `answers`
        (interrupt id -> answer). The ids are checked first: UnknownInterrupt (nothing
        changed) for one not pending; RunFinished for a done run; RunNotFound. The same
        pause resumed twice enqueues one segment: the second Submission has new=False."""
        answers = dict(answers or {})
        record = self.store.load(run_id)
        if record is None:
            raise RunNotFound(f"no run {run_id!r} in this store")
        if record.status == "done":
            raise RunFinished(f"run {run_id!r} is done: nothing to resume")
        pending = [ask.get("id") for ask in record.interrupts]
        for answer_id in answers:
            if answer_id not in pending:
                raise UnknownInterrupt(
                    f"run {run_id!r} is not waiting for an answer to {answer_id!r} (pending: "
                    f"{', '.join(map(repr, pending)) or 'none'}); nothing was changed"
                )
        encoded = encode(answers, self.codecs, root="answers")
        return self._enqueue(run_id, record.seq, record.seq, encoded)

    def _enqueue(self, run_id: str, key: int, seq: int, answers: Dict[str, Any]) -> Submission:
        _dbos()
        from dbos._error import DBOSWorkflowIDInUseError

        workflow_id = f"{run_id}:{key}"
        options: Any = {
            "queue_name": self.queue,
            "workflow_name": SEGMENT_WORKFLOW,
            "workflow_id": workflow_id,
            "workflow_id_reuse_policy": "reject",
            "app_version": self.app_version,
        }
        try:
            self._dbos_client().enqueue(options, self.name, run_id, seq, answers)
        except DBOSWorkflowIDInUseError:
            return Submission(run_id, workflow_id, False)
        return Submission(run_id, workflow_id, True)

    def _dbos_client(self) -> Any:
        with self._client_lock:  # (segments and items call it from their threads)
            return self._make_client()

    def _make_client(self) -> Any:
        if self._client is None:
            dbos = _dbos()
            from dbos._serialization import DBOSPortableJSON

            kwargs: Dict[str, Any] = {}
            if self.system_schema is not None:
                kwargs["dbos_system_schema"] = self.system_schema
            self._client = dbos.DBOSClient(
                system_database_url=self.system_database_url,
                serializer=DBOSPortableJSON,
                application_name=self.name,
                **kwargs,
            )
        return self._client

    # -- looking at runs ----------------------------------------------------------------

    def inspect(self, run_id: str) -> RunState:
        """Where the run stands in the store (persist.runs.RunState)."""
        return self.runs.inspect(run_id)

    def segments(self, run_id: str) -> List[Any]:
        """The run's segment workflows (DBOS WorkflowStatus), oldest first."""
        found: List[Any] = self._dbos_client().list_workflows(
            workflow_id_prefix=f"{run_id}:", name=SEGMENT_WORKFLOW, load_input=False
        )
        return sorted(found, key=lambda status: status.created_at or 0)

    def items(self, run_id: str) -> List[Any]:
        """The run's fanned-out item workflows (DBOS WorkflowStatus; `recovery_attempts`
        counts their dispatches), oldest first."""
        found: List[Any] = self._dbos_client().list_workflows(
            workflow_id_prefix=f"{run_id}:", name=ITEM_WORKFLOW, load_input=False
        )
        return sorted(found, key=lambda status: (status.created_at or 0, status.workflow_id))

    def wait(self, run_id: str, timeout: Optional[float] = None, poll: float = 0.05) -> RunState:
        """Wait until the run's latest segment has ended (paused, done, failed, stopped),
        then inspect it. TimeoutError after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            found = self.segments(run_id)
            if found and found[-1].status not in ("ENQUEUED", "PENDING", "DELAYED"):
                return self.inspect(run_id)
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(
                    f"run {run_id!r}: its segment {found[-1].workflow_id if found else '?'} "
                    f"has not ended after {timeout} s (is a worker launched on queue "
                    f"{self.queue!r} with app version {self.app_version!r}?)"
                )
            time.sleep(poll)

    # -- what a worker does -------------------------------------------------------------

    def _run_segment(self, run_id: str, seq: int, answers: Dict[str, Any]) -> Dict[str, Any]:
        """The segment workflow's body: resume the run from the store's last checkpoint and
        run it here to its next pause or end. Run again by DBOS after a crash: if the store
        moved past `seq` the answers were taken already; a pause or an end there means the
        segment had finished. The dead worker's lease is waited out, then claimed."""
        while True:
            record = self.store.load(run_id)
            if record is None:
                raise RunNotFound(f"no run {run_id!r} in this store")
            given = answers
            if record.seq != seq:
                if record.status != "running":  # it reached its pause or end before
                    return _summary(record.status, record.seq, record.error)
                given = {}  # recovered mid-segment: go on from the last checkpoint
            try:
                if self.is_async:
                    anyio.run(self._drive_async, run_id, decode(given, self.codecs))
                else:
                    self._drive(self.runs.resume(run_id, decode(given, self.codecs)))
            except RunBusy as busy:  # the dead worker's lease: wait it out, then claim
                left = (busy.expires_at or time.time()) - time.time()
                time.sleep(min(max(left, 0.0) + 0.02, self.runs.ttl))
                continue
            except RunFinished:
                pass
            except Exception as exc:  # the run failed (saved as "failed", resumable)
                found = self.store.load(run_id)
                return _summary(
                    "failed", found.seq if found else seq, f"{type(exc).__name__}: {exc}"
                )
            break
        record = self.store.load(run_id)
        assert record is not None
        return _summary(record.status, record.seq, record.error)

    def _drive(self, run: Any) -> None:
        if self.events is None:
            for _ in run:
                pass
            return
        for _ in self._publisher(run.run_id).publish(run):
            pass

    async def _drive_async(self, run_id: str, answers: Dict[str, Any]) -> None:
        run = self.runs.resume_async(run_id, answers)
        if self.fan_out:  # the segment's walk gets the fan-out hook
            run.run_options["fan_out"] = self._fan_out_hook(run)
        if self.events is None:
            async with run:
                async for _ in run:
                    pass
            return
        async for _ in self._publisher(run_id).publish_async(run):
            pass

    def _publisher(self, run_id: str) -> Any:
        """An appender to the run's Redis stream, on this worker's one Redis client (its
        connection pool is shared by every segment and item the worker runs)."""
        from .redis_events import RunEvents

        return RunEvents(self._redis_client(), run_id)

    def _redis_client(self) -> Any:
        with self._redis_lock:
            if self._redis is None:
                import redis

                assert self.events is not None
                self._redis = redis.Redis.from_url(self.events)
            return self._redis

    # -- fan-out: the segment's side --------------------------------------------------------

    def _fan_out_hook(self, run: Any) -> async_driver.FanOut:
        """The async driver's hook for the segment `run`: the sections of the nodes that fan
        out go to `_items_away`, with the run's seq (its last checkpoint) at the section's
        start."""

        def fan_out(request: Parallel) -> Optional[AsyncIterator[Any]]:
            origin = request.origin
            assert origin is not None and request.items is not None  # a node's items
            names = self.fan_out
            if isinstance(names, frozenset) and origin.name not in names:
                return None  # not one of the nodes named: its items run here
            return self._items_away(request, run.run_id, run.seq)

        return fan_out

    async def _items_away(self, request: Parallel, run_id: str, seq: int) -> AsyncIterator[Any]:
        """Enqueue one item workflow per item (the same ids as before, when a recovered
        segment comes back here), wait for them, put their results in `request.result` in
        input order (Progress after each one when the run wants it)."""
        assert request.origin is not None and request.items is not None
        path = list(request.origin.path)
        where = describe_path(path)
        codecs = self.runs.position_codecs
        common: Dict[str, Any] = {
            "params": encode(dict(request.node.params), codecs, root="params", writer=where),
            "batch": None,
        }
        if request.origin.batch is not None:
            batch = dict(request.origin.batch)
            common["batch"] = encode(batch, codecs, root="batch params", writer=where)
        ids: List[str] = []
        inputs: List[Dict[str, Any]] = []
        for index, item in enumerate(request.items):
            try:
                encoded = encode(item, codecs, root=f"item {index}", writer=where)
            except NotJSONError as exc:
                raise NotJSONError(
                    f"node {where!r} fans its items out to DBOS workers, which take JSON only, "
                    f"and its prep made one that is not ({exc}). Make its items JSON (or "
                    f"register a codec for their type), or leave the node out of "
                    f"DistributedRuns(fan_out=...): its items then run in the segment's process.",
                    exc.path,
                    exc.writer,
                ) from None
            canonical = json.dumps(encoded, sort_keys=True, separators=(",", ":"))
            digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]
            ids.append(f"{run_id}:{seq}:{'/'.join(path)}:{index}:{digest}")
            inputs.append({**common, "item": encoded})
        await anyio.to_thread.run_sync(self._enqueue_items, run_id, seq, path, ids, inputs)
        results: List[Any] = [None] * len(ids)
        waiting = dict(enumerate(ids))
        done = 0
        while waiting:
            statuses = await anyio.to_thread.run_sync(self._item_statuses, list(waiting.values()))
            for index, workflow_id in list(waiting.items()):
                status = statuses.get(workflow_id)
                if status is None or status.status not in _ENDED:
                    continue
                if status.status != "SUCCESS":
                    del waiting[index]
                    left = list(waiting.values())
                    await anyio.to_thread.run_sync(self._cancel_items, left)
                    raise _item_failure(status, index, path)
                results[index] = decode(status.output["result"], codecs)
                del waiting[index]
                done += 1
                if request.progress is not None:
                    yield request.progress(done)
            if waiting:
                await anyio.sleep(self.polling_interval)
        request.result = results

    def _enqueue_items(
        self,
        run_id: str,
        seq: int,
        path: List[str],
        ids: Sequence[str],
        inputs: Sequence[Dict[str, Any]],
    ) -> None:
        client = self._dbos_client()
        for index, (workflow_id, given) in enumerate(zip(ids, inputs)):
            options: Any = {
                "queue_name": self.items_queue,
                "workflow_name": ITEM_WORKFLOW,
                "workflow_id": workflow_id,  # there already: DBOS keeps the one it has
                "app_version": self.app_version,
            }
            client.enqueue(options, self.name, run_id, seq, path, index, given)

    def _item_statuses(self, ids: List[str]) -> Dict[str, Any]:
        found = self._dbos_client().list_workflows(workflow_ids=ids, load_input=False)
        return {status.workflow_id: status for status in found}

    def _cancel_items(self, ids: List[str]) -> None:
        if ids:  # (DBOS leaves a finished workflow as it is)
            self._dbos_client().cancel_workflows(ids)

    # -- fan-out: the item's side -----------------------------------------------------------

    def _run_item(
        self, run_id: str, seq: int, path: List[str], index: int, given: Dict[str, Any]
    ) -> Dict[str, Any]:
        """The item workflow's body: walk one item of the node at `path` (a copy, with the
        section's params) on this worker; a second dispatch of the workflow (its worker
        died with the item in flight) runs it as a new attempt."""
        dbos = _dbos()
        workflow_id = dbos.DBOS.workflow_id
        found = self._dbos_client().list_workflows(  # through the client: not a step
            workflow_ids=[workflow_id], load_input=False, load_output=False
        )
        dispatches = (found[0].recovery_attempts or 1) if found else 1
        shift = max(dispatches - 1, 0)
        codecs = self.runs.position_codecs
        where = describe_path(path)
        try:
            node = copy.copy(self._node_at(path))  # as a flow copies the nodes it runs
            node.set_params(decode(given["params"], codecs))
            origin: Optional[Origin] = None
            for name in path[:-1]:
                origin = Origin(name, origin)
            batch = given.get("batch")
            frozen = None if batch is None else freeze_params(decode(batch, codecs))
            origin = Origin(path[-1], origin, frozen)
            item = decode(given["item"], codecs)
            result = anyio.run(self._walk_item, run_id, node, item, index, origin, shift)
            encoded = encode(result, codecs, root=f"the result of item {index}", writer=where)
        except Exception as exc:
            raise FanOutItemFailed(
                f"{type(exc).__name__}: {exc}", index, workflow_id, type(exc).__name__
            ) from exc
        return {"result": encoded, "attempt": shift, "executor": self.executor_id}

    async def _walk_item(
        self, run_id: str, node: Any, item: Any, index: int, origin: Origin, shift: int
    ) -> Any:
        publisher = None
        if self.events is not None:
            publisher = self._publisher(run_id)
            publisher.inline = False  # sent from its linger thread, never on the event loop
        emit = None if publisher is None else publisher.add
        # published: its chunks, and its Retry events (a relay drops a superseded attempt's
        # chunks by them: the dead worker's, or a failed try's)
        published = emit is not None
        steps = walk_item(
            node, item, index, origin, chunks=published, events=published, shift=shift
        )
        try:
            return await async_driver.run(node, None, on_chunk=emit, on_event=emit, steps=steps)
        finally:
            if publisher is not None:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(publisher.flush)  # its last chunks

    def _node_at(self, path: Sequence[str]) -> Any:
        """The node at `path` (node ids from the flow run down to it) in this worker's flow."""
        if self.flow._kind is not FLOW:
            if list(path) == [node_name(self.flow)]:
                return self.flow
            raise _no_node(path, self.flow)
        flow: Any = self.flow
        node: Any = None
        for depth, name in enumerate(path):
            if depth:
                if node._kind is not FLOW:
                    raise _no_node(path, self.flow)
                flow = node
            node = next((each for each in graph_nodes(flow) if node_name(each) == name), None)
            if node is None:
                raise _no_node(path, self.flow)
        return node


def _no_node(path: Sequence[str], flow: Any) -> FlowError:
    return FlowError(
        f"this worker's flow {node_name(flow)!r} has no node at {describe_path(path)}, which a "
        f"fanned-out item names: every worker must launch the same graph (pin app_version "
        f"per graph, so that a deploy of another one does not take the old items)"
    )


def _item_failure(status: Any, index: int, path: List[str]) -> FanOutItemFailed:
    error = status.error
    data = getattr(error, "data", None)
    kind = data.get("type") if isinstance(data, dict) else None
    if status.status == "ERROR":
        told = str(error) if error is not None else "an error DBOS did not keep"
    elif status.status == "CANCELLED":
        told = "its workflow was cancelled"
    else:
        told = f"its workflow ended as {status.status}"
    failure = FanOutItemFailed(
        f"item {index} of the parallel batch {describe_path(path)!r} failed on worker "
        f"{status.executor_id!r} (DBOS workflow {status.workflow_id!r}): {told}",
        index,
        status.workflow_id,
        kind,
    )
    attach_node_path(failure, tuple(path))
    add_note(
        failure,
        "the section failed; its other items' workflows not started yet were cancelled, "
        "those running finish on their workers, their results unused",
    )
    return failure


def _summary(status: str, seq: int, error: Optional[str]) -> Dict[str, Any]:
    return {"status": status, "seq": seq, "error": error}


def _has_async(flow: Any) -> bool:
    """Whether the flow (or a flow nested in it) has async nodes: its segments then run
    under the async driver."""
    seen = set()
    todo = [flow]
    while todo:
        node = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if getattr(node, "_async", False):
            return True
        start = getattr(node, "start_node", None)
        if start is not None:
            todo.append(start)
        todo.extend(getattr(node, "successors", {}).values())
    return False
