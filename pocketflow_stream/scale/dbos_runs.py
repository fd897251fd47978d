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

Not here: fan-out of a parallel batch node's items to other workers (each a workflow of its
own) — the items of a segment's parallel batches run in the segment's process, as in a plain
run (README "Distributed runs (DBOS)" says what is and is not promised).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Dict, List, Mapping, Optional

import anyio

from ..nodes import BaseNode
from ..persist.runs import DurableRuns, RunFinished, RunState, UnknownInterrupt, new_run_id
from ..persist.store import RunBusy, RunNotFound, Store
from ..persist.strict_json import CheckpointError, Codecs, decode, encode

__all__ = ["DistributedRuns", "Submission", "SEGMENT_WORKFLOW"]

SEGMENT_WORKFLOW = "pocketflow_stream.segment"

# The DistributedRuns a worker process launched: the workflows below find their flow here.
# One per process (DBOS is one app per process).
_launched: Dict[str, DistributedRuns] = {}
_registered = threading.Lock()
_workflows: Dict[str, Any] = {}


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

        _workflows["segment"] = segment
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
      once. `polling_interval`: how often a worker looks at the queue, in seconds.
    - `app_version`: pinned DBOS application version; `executor_id`: this worker's stable id
      (a supervisor restarts a worker under the same id); `name`: the DBOS app name.
    - `codecs`, `ttl`, `run_options`: as DurableRuns (`ttl` is the store lease a recovered
      segment waits out before it takes a dead worker's run over).
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
        app_version: str = "1",
        executor_id: Optional[str] = None,
        name: str = "pocketflow_stream",
        system_schema: Optional[str] = None,
        polling_interval: float = 1.0,
        codecs: Optional[Codecs] = None,
        ttl: float = 30.0,
        **run_options: Any,
    ) -> None:
        self.runs = DurableRuns(flow, store, codecs=codecs, ttl=ttl, **run_options)
        self.flow = flow
        self.store = store
        self.system_database_url = system_database_url
        self.events = events
        self.queue = queue
        self.worker_concurrency = worker_concurrency
        self.app_version = app_version
        self.executor_id = executor_id
        self.name = name
        self.system_schema = system_schema
        self.polling_interval = polling_interval
        self.codecs = codecs
        self.is_async = _has_async(flow)
        self._client: Any = None
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
        self._launched = True

    def shutdown(self) -> None:
        """Close the client; in a worker, DBOS.destroy (in-flight segments stay pending and
        are recovered when a worker with this executor id launches again)."""
        if self._client is not None:
            self._client.destroy()
            self._client = None
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
        if self.events is None:
            async with run:
                async for _ in run:
                    pass
            return
        async for _ in self._publisher(run_id).publish_async(run):
            pass

    def _publisher(self, run_id: str) -> Any:
        import redis

        from .redis_events import RunEvents

        assert self.events is not None
        return RunEvents(redis.Redis.from_url(self.events), run_id)


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
