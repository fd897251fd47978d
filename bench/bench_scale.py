"""DBOS-distributed runs (issue 11): one run worker against two, same sitting.

    eval "$(scripts/servers.sh start /tmp/pfs-servers)"   # or point at your own servers:
    POCKETFLOW_STREAM_POSTGRES_URL=postgresql://... POCKETFLOW_STREAM_REDIS_URL=redis://... \\
        python bench/bench_scale.py [--quick]
    python bench/bench_scale.py [--quick]   # URLs unset: throwaway servers (scripts/servers.sh)

Every run is a `DistributedRuns` run on real servers: PostgresStore checkpoints and DBOS's
system database on Postgres (a fresh schema for each, dropped at the end), and its items on a
Redis stream (`events=`). Its flow has three nodes: `prompt`, `model` (a StreamNode that
streams `chunks` chunks `pace` seconds apart, each stamped with the wall-clock time it was
made: the sleep stands for an I/O-bound model's latency, during which another run can go on)
and `answer`. The bench process starts runs with `DistributedRuns.start` (enqueued through
DBOS's client, never run here) and waits for them with `wait`; the run workers are separate
processes of this file that `launch()` under stable executor ids and run the segments.
Three set-ups, each with its own DBOS app and queue, its workers launched afresh each round:

- one: 1 worker, worker_concurrency C
- two: 2 workers, worker_concurrency C each
- wide: 1 worker, worker_concurrency 2C (the control: as many slots as "two", one process)

1. runs/s: N runs started at once, wall time from the first start to the last wait; two
   against one (scale-out: twice the slots), and two against wide (the same slots: what the
   second process itself adds).
2. p50 and p99 chunk delay, made -> received by an SSE client: 2C runs at once (the same load
   for both), each read by its own httpx SSE client through one uvicorn web worker serving
   `relay_app` (connected before the run starts); two workers (C runs each) against one
   (wide: all 2C runs in one process). The client stamps each chunk on arrival; the SSE
   event id is the Redis entry id, whose first part is Redis's clock when the XADD ran, so
   the p99 of made -> in Redis (the workers' side: the engine, RunEvents' batching) is
   printed beside it, and so are the workers' garbage collections of over 5 ms while this
   was measured (a gc.callbacks hook in the worker: a collection stops all its streams).

Rounds alternate the set-ups' order (one, two, wide, then the reverse); each figure is the
median of its rounds, with the rounds' range. Before a set-up is measured, short warm-up runs
go until each of its workers has run one (a worker's queue thread may start polling up to a
second after launch). `--concurrency C` (default 4); `--quick`: 2 rounds instead of 5, fewer
runs and chunks. Line 1 also shows where a run's time goes in its worker, from DBOS's
timestamps and the flow's own: DBOS dequeued -> first node ran | the flow | last node -> DBOS
completed (the rest of a slot's cycle is the wait for the next poll of the queue), and the CPU
the workers spent per run (Linux /proc; idle polling included); the bench also prints what an
idle worker's polling costs, and what one `start` costs this process.

What a 2-core machine can and cannot show: the run workers, Postgres, Redis, the uvicorn relay,
the SSE clients and this process share the two cores, with whatever else runs on the machine
(the load average is printed). The runs mostly sleep (model I/O), so 1 shows what DBOS's queue
does with more slots, whether they come from a second worker or from a wider one ("wide"),
beside the runs/s the sleeps alone would allow (the gap: dispatch, closing and the wait for
the next poll, shown per run). Two against wide is what the second process adds for the same
slots: relief for one GIL busy with its segments' own CPU (the CPU column: DBOS, checkpoints,
publishing, polling), which it gets only from a core to spare, and here the cores also run
Postgres, Redis and the relay. So neither ratio says what more cores or machines would give,
and CPU-bound nodes would only make the workers take turns. In 2 the delay is floored by
RunEvents' `linger` (5 ms: at one chunk per 10 ms each chunk waits the whole linger); its tail
is set by stalls: a worker's garbage collection (DBOS and SQLAlchemy make a large heap; a full
collection took ~100-200 ms here) holds up every stream of that worker, and a core taken by
other work holds up whatever it was running. Whether one falls into the second or so that a
round measures is luck: the p99 of a few hundred delays moves a lot between rounds (see the
range), and a p99 ratio in one sitting is weak evidence either way.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # measure this checkout (the workers run this file too)

RELAY_APP = "pocketflow_stream.scale.redis_events:relay_app"  # the web worker
POLL = 0.05  # DBOS queue polling interval of the workers, seconds
WAIT_POLL = 0.02  # how often `wait` looks at a run's segment, seconds


# -- the flow (the same in the bench process and in the workers) -------------------------------


def make_flow() -> Any:
    from pocketflow_stream import Flow, Node, StreamNode

    class Prompt(Node):
        def post(self, shared: Any, prep_res: Any, exec_res: Any) -> None:
            shared["prompt"] = f"question {shared['n']}"
            shared["began"] = time.time()  # the flow's first node ran (in the worker)

    class Model(StreamNode):
        def prep(self, shared: Any) -> Any:
            return shared["chunks"], shared["pace"]

        def exec_stream(self, prep_res: Any) -> Any:
            chunks, pace = prep_res
            next_at = time.perf_counter()
            for i in range(chunks):
                next_at += pace
                time.sleep(max(0.0, next_at - time.perf_counter()))
                yield {"i": i, "text": " token", "t": time.time()}
            return chunks

        def post(self, shared: Any, prep_res: Any, exec_res: Any) -> None:
            shared["streamed"] = exec_res

    class Answer(Node):
        def post(self, shared: Any, prep_res: Any, exec_res: Any) -> None:
            shared["answer"] = f"{shared['streamed']} chunks"
            shared["ended"] = time.time()  # its last node ran

    prompt, model, answer = Prompt(name="prompt"), Model(name="model"), Answer(name="answer")
    prompt >> model >> answer
    return Flow(start=prompt)


def make_runs(
    app: str,
    store: Any,
    postgres: str,
    dbos_schema: str,
    *,
    concurrency: int = 1,
    executor_id: Optional[str] = None,
    events: Optional[str] = None,
) -> Any:
    """The DistributedRuns of set-up `app` (its own DBOS app name and queue)."""
    from pocketflow_stream.scale.dbos_runs import DistributedRuns

    return DistributedRuns(
        make_flow(),
        store,
        postgres,
        events=events,
        queue=app,
        worker_concurrency=concurrency,
        executor_id=executor_id,
        name=app,
        app_version=app,  # DBOS: a version belongs to one app of a system database
        system_schema=dbos_schema,
        polling_interval=POLL,
        ttl=10.0,
    )


def worker(options: Any) -> int:
    """A run worker: launch, write the ready file, run segments until SIGTERM."""
    from pocketflow_stream.scale import PostgresStore

    postgres = os.environ["POCKETFLOW_STREAM_POSTGRES_URL"]
    runs = make_runs(
        options.worker,
        PostgresStore(postgres, schema=options.store_schema),
        postgres,
        options.dbos_schema,
        concurrency=options.concurrency,
        executor_id=options.executor_id,
        events=os.environ["POCKETFLOW_STREAM_REDIS_URL"],
    )
    stop: List[int] = []
    signal.signal(signal.SIGTERM, lambda number, frame: stop.append(number))
    runs.launch()
    gc.callbacks.append(gc_logger(options.ready + ".gc"))
    Path(options.ready).write_text(str(os.getpid()), encoding="utf-8")
    try:
        while not stop:
            time.sleep(0.05)
    finally:
        runs.shutdown()
        runs.store.close()
    return 0


def gc_logger(path: str) -> Any:
    """A gc callback appending each collection of over 5 ms to `path` ("wall-clock start,
    ms" lines): a collection stops every thread of the worker, every stream it makes."""
    began = [0.0, 0.0]

    def log(phase: str, info: Dict[str, Any]) -> None:
        if phase == "start":
            began[:] = [time.time(), time.perf_counter()]
            return
        took = (time.perf_counter() - began[1]) * 1000.0
        if took > 5.0:
            with open(path, "a", encoding="ascii") as out:
                out.write(f"{began[0]:.4f} {took:.1f}\n")

    return log


# -- processes and servers ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_servers(folder: str) -> Dict[str, str]:
    """Throwaway Postgres and Redis (scripts/servers.sh start): their URLs."""
    script = ROOT / "scripts" / "servers.sh"
    subprocess.run(["bash", str(script), "start", folder], check=True, stdout=subprocess.DEVNULL)
    found: Dict[str, str] = {}
    for line in (Path(folder) / "env").read_text(encoding="utf-8").splitlines():
        if line.startswith("export ") and "=" in line:
            name, _, value = line[len("export ") :].partition("=")
            found[name] = value.strip().strip("'\"")
    return found


def stop_process(proc: Any, timeout: float = 15) -> None:
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Setup:
    """One set-up: `workers` processes at worker_concurrency `concurrency`, its own DBOS app
    and queue; `runs` is the bench process's DistributedRuns for it (starts, waits)."""

    def __init__(self, key: str, workers: int, concurrency: int, bench: Bench) -> None:
        self.key = key
        self.workers = workers
        self.concurrency = concurrency
        self.app = f"{bench.tag}_{key}"
        self.bench = bench
        self.runs = make_runs(self.app, bench.store, bench.postgres, bench.dbos_schema)
        self.procs: List[Any] = []
        self.readies: List[Path] = []
        self.executors = [f"{self.app}-worker-{n}" for n in range(1, workers + 1)]

    @property
    def slots(self) -> int:
        return self.workers * self.concurrency

    def up(self) -> None:
        """Launch the workers (at once), wait until each has written its ready file, then
        warm up until each has run a segment (its queue thread is polling)."""
        folder = self.bench.folder
        self.readies = readies = []
        for executor in self.executors:
            ready = folder / f"ready-{executor}-{secrets.token_hex(3)}"
            readies.append(ready)
            log = open(folder / f"{executor}.log", "ab")
            command = [sys.executable, str(Path(__file__).resolve()), "--worker", self.app]
            command += ["--executor-id", executor, "--concurrency", str(self.concurrency)]
            command += ["--store-schema", self.bench.store_schema]
            command += ["--dbos-schema", self.bench.dbos_schema, "--ready", str(ready)]
            self.procs.append(
                subprocess.Popen(command, env=self.bench.env, stdout=log, stderr=log, cwd=ROOT)
            )
            log.close()
        deadline = time.monotonic() + 120
        for ready, proc, executor in zip(readies, self.procs, self.executors):
            while not ready.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    self.fail(executor, "did not come up")
                time.sleep(0.02)
        seen: set = set()
        while len(seen) < self.workers:
            if time.monotonic() > deadline:
                self.fail(", ".join(sorted(set(self.executors) - seen)), "ran no warm-up run")
            ids = [self.start(2, 0.01) for _ in range(self.slots)]
            for run_id in ids:
                self.finish(run_id, 2)
                seen.add(self.runs.segments(run_id)[-1].executor_id)

    def gc_pauses(self, since: float, until: float) -> List[float]:
        """The workers' garbage collections of over 5 ms that began in [since, until], ms."""
        found = []
        for ready in self.readies:
            log = Path(f"{ready}.gc")
            if log.exists():
                for line in log.read_text(encoding="ascii").splitlines():
                    at, took = map(float, line.split())
                    if since <= at <= until:
                        found.append(took)
        return found

    def down(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            stop_process(proc)
        self.procs = []

    def fail(self, executor: str, what: str) -> None:
        logs = "".join(
            (self.bench.folder / f"{name}.log").read_text(errors="replace")[-3000:]
            for name in self.executors
            if (self.bench.folder / f"{name}.log").exists()
        )
        raise SystemExit(f"bench_scale: worker {executor} {what}; its log:\n{logs}")

    def start(self, chunks: int, pace: float, run_id: Optional[str] = None) -> str:
        shared = {"n": self.bench.started, "chunks": chunks, "pace": pace}
        self.bench.started += 1
        run_id = run_id or self.bench.new_run_id()
        return str(self.runs.start(shared, run_id=run_id))

    def finish(self, run_id: str, chunks: int) -> Any:
        state = self.runs.wait(run_id, timeout=120, poll=WAIT_POLL)
        if state.status != "done" or state.shared.get("streamed") != chunks:
            raise SystemExit(f"bench_scale: run {run_id} ended {state!r}, {state.shared!r}")
        return state


class Bench:
    """What the set-ups share: the servers' URLs, the fresh schemas, the relay, a folder."""

    def __init__(self, postgres: str, redis_url: str, folder: Path) -> None:
        from pocketflow_stream.scale import PostgresStore

        self.tag = f"pfs_bench_{secrets.token_hex(4)}"
        self.postgres = postgres
        self.redis_url = redis_url
        self.folder = folder
        self.store_schema = self.tag
        self.dbos_schema = f"{self.tag}_dbos"
        self.store = PostgresStore(postgres, schema=self.store_schema)
        self.started = 0
        self.env = {
            **os.environ,
            "POCKETFLOW_STREAM_POSTGRES_URL": postgres,
            "POCKETFLOW_STREAM_REDIS_URL": redis_url,
            "PYTHONPATH": os.pathsep.join(
                [str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH", "")] if p]
            ),
        }
        self.env.pop("POCKETFLOW_STREAM_REDIS_PREFIX", None)  # the workers use the default
        self.relay: Any = None
        self.relay_base = ""

    def new_run_id(self) -> str:
        return f"{self.tag}-{secrets.token_hex(8)}"

    def start_relay(self) -> None:
        import httpx

        port = free_port()
        command = [sys.executable, "-m", "uvicorn", "--factory", RELAY_APP, "--host"]
        command += ["127.0.0.1", "--port", str(port), "--log-level", "warning"]
        self.relay = subprocess.Popen(command, env=self.env, cwd=ROOT)
        self.relay_base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            if self.relay.poll() is not None:
                raise SystemExit(f"bench_scale: the relay exited ({self.relay.returncode})")
            try:
                httpx.get(self.relay_base + "/ready", timeout=2).raise_for_status()
                return
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise SystemExit("bench_scale: the relay never answered") from None
                time.sleep(0.05)

    def clean(self, setups: List[Setup]) -> None:
        import psycopg
        import redis
        from psycopg import sql

        from pocketflow_stream.scale.redis_events import DEFAULT_PREFIX

        for setup in setups:
            setup.down()
            setup.runs.shutdown()
        if self.relay is not None:
            stop_process(self.relay)
        try:
            client = redis.Redis.from_url(self.redis_url)
            keys = list(client.scan_iter(match=f"{DEFAULT_PREFIX}{self.tag}-*", count=1000))
            for at in range(0, len(keys), 500):
                client.delete(*keys[at : at + 500])
            client.close()
        except redis.RedisError:
            pass
        try:
            self.store.drop_schema()
            self.store.close()
            with psycopg.connect(self.postgres, autocommit=True) as db:
                db.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                        sql.Identifier(self.dbos_schema)
                    )
                )
        except Exception as exc:  # noqa: BLE001 - leave the servers as they are
            print(f"bench_scale: could not drop the schemas: {exc}", file=sys.stderr)


# -- the measures --------------------------------------------------------------------------------


def runs_per_second(setup: Setup, runs: int, chunks: int, pace: float) -> Tuple[float, List[float]]:
    """`runs` runs started at once: runs/s from the first start to the last wait, and where
    a run's time went (medians, ms): queued (DBOS created -> dequeued), dispatch (dequeued
    -> the first node ran), flow (first node -> last node), close (-> DBOS completed); then,
    per run, the bench process's `start` (the first checkpoint, the enqueue) and the CPU
    time the workers used."""
    pids = [proc.pid for proc in setup.procs]
    cpu = cpu_seconds(pids)
    started = time.perf_counter()
    ids = [setup.start(chunks, pace) for _ in range(runs)]
    enqueued = time.perf_counter()
    states = [setup.finish(run_id, chunks) for run_id in ids]
    elapsed = time.perf_counter() - started
    cpu_after = cpu_seconds(pids)
    per_run = float("nan") if cpu is None or cpu_after is None else cpu_after - cpu
    parts = []
    for state in states:  # (after the clock stopped)
        status = setup.runs.segments(state.run_id)[-1]
        ended = status.completed_at or status.updated_at
        began, done = state.shared["began"] * 1000.0, state.shared["ended"] * 1000.0
        parts.append(
            (
                status.dequeued_at - status.created_at,
                began - status.dequeued_at,
                done - began,
                ended - done,
            )
        )
    found = [statistics.median(part) for part in zip(*parts)]
    return runs / elapsed, found + [(enqueued - started) * 1000.0 / runs, per_run * 1000 / runs]


def cpu_seconds(pids: List[int]) -> Optional[float]:
    """User + system CPU seconds the processes used so far (Linux /proc; None elsewhere)."""
    total = 0.0
    try:
        tick = os.sysconf("SC_CLK_TCK")
        for pid in pids:
            with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
                fields = stat.read().rpartition(")")[2].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    except (OSError, ValueError, IndexError):
        return None
    return total


async def read_run(
    client: Any, base: str, run_id: str, connected: Any
) -> List[Tuple[float, float]]:
    """Each chunk of the run, read through `base`: (made -> received here, made -> appended
    to Redis), in ms. The second is the worker's side: the event id is the entry id, whose
    first part is Redis's clock (ms) when the XADD ran (one machine: one clock)."""
    delays: List[Tuple[float, float]] = []
    async with client.stream("GET", f"{base}/runs/{run_id}/events") as response:
        response.raise_for_status()
        connected()
        event = entry = ""
        async for line in response.aiter_lines():
            if line.startswith("id: "):
                entry = line[4:]
            elif line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "chunk":
                stamp = json.loads(line[6:])["data"]["t"] * 1000.0
                appended = float(entry.partition("-")[0])
                delays.append((time.time() * 1000.0 - stamp, appended - stamp))
            elif line.startswith("data: ") and event == "end":
                break
    return delays


async def chunk_delays(
    setup: Setup, runs: int, chunks: int, pace: float
) -> List[Tuple[float, float]]:
    """`runs` runs at once, each read by its own SSE client connected before it starts."""
    import httpx

    ids = [setup.bench.new_run_id() for _ in range(runs)]
    ready = 0
    all_connected = asyncio.Event()

    def connected() -> None:
        nonlocal ready
        ready += 1
        if ready == runs:
            all_connected.set()

    limits = httpx.Limits(max_connections=runs + 4)
    base = setup.bench.relay_base
    async with httpx.AsyncClient(timeout=httpx.Timeout(120), limits=limits) as client:
        tasks = [asyncio.create_task(read_run(client, base, run_id, connected)) for run_id in ids]
        await asyncio.wait_for(all_connected.wait(), 60)

        def start_all() -> None:
            for run_id in ids:
                setup.start(chunks, pace, run_id)

        await asyncio.to_thread(start_all)
        results = await asyncio.gather(*tasks)
    for run_id in ids:
        setup.finish(run_id, chunks)
    delays = [d for result in results for d in result]
    if len(delays) != runs * chunks:
        raise SystemExit(f"bench_scale: got {len(delays)} chunks, expected {runs * chunks}")
    return delays


def quantile(values: List[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q * len(ordered))) - 1))]


def measure(options: Any, postgres: str, redis_url: str, folder: Path) -> None:
    c = options.concurrency
    rounds = 2 if options.quick else 5
    n_runs, chunks, pace = (24, 20, 0.01) if options.quick else (64, 20, 0.01)
    delay_chunks = 60 if options.quick else 200
    load_before = os.getloadavg()[0]
    bench = Bench(postgres, redis_url, folder)
    setups: List[Setup] = []
    try:
        bench.start_relay()
        one, two, wide = (
            Setup("one", 1, c, bench),
            Setup("two", 2, c, bench),
            Setup("wide", 1, 2 * c, bench),
        )
        setups = [one, two, wide]
        rps: Dict[str, List[float]] = {s.key: [] for s in setups}
        took: Dict[str, List[List[float]]] = {s.key: [] for s in setups}
        p50: Dict[str, List[float]] = {"wide": [], "two": []}
        p99: Dict[str, List[float]] = {"wide": [], "two": []}
        made: Dict[str, List[float]] = {"wide": [], "two": []}  # p99 made -> in Redis
        pauses: Dict[str, List[float]] = {"wide": [], "two": []}  # the workers' GC, ms
        idle: List[float] = []  # CPU seconds of an idle worker in one second
        for number in range(rounds):
            order = setups if number % 2 == 0 else setups[::-1]
            for setup in order:
                setup.up()
                try:
                    per_second, segment = runs_per_second(setup, n_runs, chunks, pace)
                    rps[setup.key].append(per_second)
                    took[setup.key].append(segment)
                    if setup.key == "one":  # what polling costs a worker with nothing to do
                        pids = [proc.pid for proc in setup.procs]
                        before = cpu_seconds(pids)
                        time.sleep(1.0)
                        after = cpu_seconds(pids)
                        if before is not None and after is not None:
                            idle.append(after - before)
                    if setup.key in p99:
                        since = time.time()
                        delays = asyncio.run(chunk_delays(setup, 2 * c, delay_chunks, pace))
                        pauses[setup.key] += setup.gc_pauses(since, time.time())
                        total = [whole for whole, _ in delays]
                        p50[setup.key].append(quantile(total, 0.50))
                        p99[setup.key].append(quantile(total, 0.99))
                        made[setup.key].append(quantile([part for _, part in delays], 0.99))
                finally:
                    setup.down()
        load_after = os.getloadavg()[0]
    finally:
        bench.clean(setups)

    med = {k: statistics.median(v) for k, v in rps.items()}
    m50 = {k: statistics.median(v) for k, v in p50.items()}
    m99 = {k: statistics.median(v) for k, v in p99.items()}
    model = chunks * pace
    print(
        f"DistributedRuns on Postgres (store, DBOS) and Redis (events), {os.cpu_count()} cores; "
        f"{rounds} rounds, set-ups in alternating order: medians (and the rounds' range)"
    )
    print(f"load average (1 min) before {load_before:.2f}, after {load_after:.2f}")
    print(
        f"a run: 3 nodes; its StreamNode streams {chunks} chunks {pace * 1000:g} ms apart "
        f"({model * 1000:.0f} ms of model I/O); workers poll DBOS's queue every {POLL:g} s"
    )
    if idle:
        print(
            f"an idle worker (polling, nothing to run) uses {statistics.median(idle):.0%} of a core"
        )
    start_ms = statistics.median(part[4] for key in took for part in took[key])
    print(
        f"1. runs/s, {n_runs} runs started at once ({start_ms:.1f} ms a `start`) [what the "
        f"sleeps alone would allow]; in the worker: DBOS dequeued -> first node | flow | "
        f"last node -> DBOS completed; the workers' CPU a run"
    )
    for setup in setups:
        parts = [statistics.median(part) for part in zip(*took[setup.key])]
        print(
            f"   {setup.key:<4} {setup.workers} worker{'s' if setup.workers > 1 else ' '} x "
            f"concurrency {setup.concurrency:<2} {med[setup.key]:6.1f} runs/s "
            f"({spread(rps[setup.key], '.1f')}) [{setup.slots / model:4.1f}]  "
            f"{parts[1]:3.0f} | {parts[2]:3.0f} | {parts[3]:3.0f} ms; CPU {parts[5]:4.1f} ms"
        )
    print(
        f"   two/one {med['two'] / med['one']:.2f}x (twice the slots); two/wide "
        f"{med['two'] / med['wide']:.2f}x (the same slots, in two processes)"
    )
    print(
        f"2. chunk delay made -> SSE client through one uvicorn relay, {2 * c} runs at once, "
        f"{delay_chunks} chunks each ({2 * c * delay_chunks} delays a round); of it, the p99 of "
        f"made -> in Redis (the workers' side)"
    )
    for key, label in (
        ("wide", f"one worker, concurrency {2 * c}"),
        ("two", f"two workers, {c} each"),
    ):
        print(
            f"   {label:<26} p50 {m50[key]:6.2f} ms ({spread(p50[key], '.2f')})  "
            f"p99 {m99[key]:6.2f} ms ({spread(p99[key], '.2f')}); in Redis "
            f"{statistics.median(made[key]):5.1f} ms"
        )
    print(f"   two/one p50 {m50['two'] / m50['wide']:.2f}x, p99 {m99['two'] / m99['wide']:.2f}x")
    for key, label in (("wide", "one worker"), ("two", "two workers")):
        found = sorted(pauses[key])
        print(
            f"   {label}: {len(found)} garbage collections of over 5 ms in the worker(s) while "
            f"measured, all rounds"
            + (f", the longest {found[-1]:.0f} ms, all {sum(found):.0f} ms" if found else "")
        )


def spread(values: List[float], spec: str) -> str:
    return f"{min(values):{spec}}-{max(values):{spec}}"


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, fewer runs")
    parser.add_argument(
        "--concurrency", type=int, default=4, help="worker_concurrency C of a worker (default 4)"
    )
    # the run worker role (this file, started by the bench)
    for hidden in ("--worker", "--executor-id", "--store-schema", "--dbos-schema", "--ready"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.worker:
        return worker(options)
    if options.concurrency < 1:
        parser.error("--concurrency must be at least 1")

    postgres = os.environ.get("POCKETFLOW_STREAM_POSTGRES_URL", "")
    redis_url = os.environ.get("POCKETFLOW_STREAM_REDIS_URL", "")
    folder = Path(tempfile.mkdtemp(prefix="pfs-bench-scale-"))
    servers: Optional[str] = None
    try:
        if not (postgres and redis_url):
            servers = tempfile.mkdtemp(prefix="pfs-bench-scale-servers-")
            print(f"starting throwaway Postgres and Redis in {servers}", flush=True)
            found = start_servers(servers)
            postgres = postgres or found["POCKETFLOW_STREAM_POSTGRES_URL"]
            redis_url = redis_url or found["POCKETFLOW_STREAM_REDIS_URL"]
        measure(options, postgres, redis_url, folder)
    finally:
        if servers is not None:
            script = ROOT / "scripts" / "servers.sh"
            subprocess.run(["bash", str(script), "stop", servers], stdout=subprocess.DEVNULL)
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
