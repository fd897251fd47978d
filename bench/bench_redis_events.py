"""Events over Redis: one run relayed as SSE by one web worker against two, same run.

    POCKETFLOW_STREAM_REDIS_URL=redis://127.0.0.1:6379/0 python bench/bench_redis_events.py
    python bench/bench_redis_events.py [--quick]   # starts (and stops) a throwaway redis-server

A producer process runs a durable flow (SQLiteStore) whose node streams chunks stamped with the
wall-clock time they were made; `RunEvents` appends them to the run's Redis stream. `clients`
SSE clients (httpx, in this process) read the run through uvicorn web workers on 127.0.0.1 —
all through one worker, or split over two — and stamp each chunk when it arrives.

1. p99 chunk delay (made -> received by an SSE client), a paced run (one chunk per ms, as a
   fast model streams), two workers against one.
2. items/s delivered to all clients together, an unpaced run (as fast as the producer makes
   them), two workers against one.

Rounds alternate one and two workers; each figure is the median of its rounds. On 2 cores
shared with the producer, the clients and Redis, a second worker helps only where the one
worker's relaying was the bottleneck.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Tuple

ROOT = Path(__file__).resolve().parent.parent
PREFIX = f"pfs-bench-{uuid.uuid4().hex[:8]}:"
RELAY_APP = "pocketflow_stream.scale.redis_events:relay_app"  # the web workers

PRODUCER = """
import os, sys, time

import redis

from pocketflow_stream import Flow, StreamNode
from pocketflow_stream.persist import DurableRuns, SQLiteStore
from pocketflow_stream.scale.redis_events import RunEvents

url, prefix, db, run_id, gate, count, pace = sys.argv[1:]
count, pace = int(count), float(pace)


class Stamped(StreamNode):
    def exec_stream(self, _):
        deadline = time.monotonic() + 60
        while not os.path.exists(gate):  # the bench opens it once every client is connected
            if time.monotonic() > deadline:
                raise TimeoutError("gate never opened")
            time.sleep(0.002)
        next_at = time.perf_counter()
        for i in range(count):
            if pace:
                next_at += pace
                time.sleep(max(0.0, next_at - time.perf_counter()))
            yield {"i": i, "t": time.time()}


runs = DurableRuns(Flow(start=Stamped()), SQLiteStore(db))
events = RunEvents(redis.Redis.from_url(url), run_id, prefix=prefix)
for _ in events.publish(runs.start({}, run_id=run_id)):
    pass
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_ready(base: str, proc: Any) -> None:
    import httpx

    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"web worker {base} exited ({proc.returncode})")
        try:
            httpx.get(base + "/ready", timeout=2).raise_for_status()
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise SystemExit(f"web worker {base} never answered") from None
            time.sleep(0.05)


async def read_run(client: Any, base: str, run_id: str, connected: Any) -> List[float]:
    """Delays in ms of each chunk of the run, read through `base`."""
    delays: List[float] = []
    url = f"{base}/runs/{run_id}/events"
    async with client.stream("GET", url) as response:
        connected()
        event = ""
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "chunk":
                stamp = json.loads(line[6:])["data"]["t"]
                delays.append((time.time() - stamp) * 1000.0)
            elif line.startswith("data: ") and event == "end":
                break
    return delays


async def one_run(
    url: str, bases: List[str], clients: int, count: int, pace: float, folder: Path
) -> Tuple[float, float]:
    """(p99 delay ms, items/s to all clients) of one run, clients spread over `bases`."""
    import httpx

    run_id = uuid.uuid4().hex
    gate = folder / f"gate-{run_id}"
    script = folder / "producer.py"
    args = [url, PREFIX, str(folder / f"{run_id}.db"), run_id, str(gate), str(count), str(pace)]
    producer = subprocess.Popen([sys.executable, str(script), *args], cwd=ROOT)
    ready = 0
    all_connected = asyncio.Event()

    def connected() -> None:
        nonlocal ready
        ready += 1
        if ready == clients:
            all_connected.set()

    limits = httpx.Limits(max_connections=clients + 4)
    async with httpx.AsyncClient(timeout=httpx.Timeout(60), limits=limits) as client:
        tasks = [
            asyncio.create_task(read_run(client, bases[i % len(bases)], run_id, connected))
            for i in range(clients)
        ]
        await asyncio.wait_for(all_connected.wait(), 60)
        started = time.perf_counter()
        gate.touch()
        results = await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
    if producer.wait(60) != 0:
        raise SystemExit("the producer failed")
    delays = sorted(d for result in results for d in result)
    if len(delays) != clients * count:
        raise SystemExit(f"got {len(delays)} chunks, expected {clients * count}")
    p99 = delays[int(len(delays) * 0.99) - 1]
    return p99, len(delays) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, shorter runs")
    parser.add_argument("--clients", type=int, default=4)
    options = parser.parse_args()
    rounds = 2 if options.quick else 5
    paced, unpaced = (500, 2000) if options.quick else (1500, 5000)

    import redis

    folder = Path(tempfile.mkdtemp(prefix="pfs-bench-redis-"))
    started_redis = None
    url = os.environ.get("POCKETFLOW_STREAM_REDIS_URL", "")
    workers: List[Any] = []
    try:
        if not url:
            if shutil.which("redis-server") is None:
                raise SystemExit(
                    "set POCKETFLOW_STREAM_REDIS_URL, or install redis-server "
                    "(apt-get install -y redis-server) for a throwaway one"
                )
            port = free_port()
            pidfile = folder / "redis.pid"
            subprocess.run(
                ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", ""]
                + ["--appendonly", "no", "--daemonize", "yes", "--pidfile", str(pidfile)]
                + ["--dir", str(folder)],
                check=True,
            )
            url = f"redis://127.0.0.1:{port}/0"
            started_redis = pidfile
            deadline = time.monotonic() + 30
            while True:
                try:
                    redis.Redis.from_url(url).ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        (folder / "producer.py").write_text(PRODUCER)
        env = {
            **os.environ,
            "POCKETFLOW_STREAM_REDIS_URL": url,
            "POCKETFLOW_STREAM_REDIS_PREFIX": PREFIX,
        }
        bases = []
        for _ in range(2):
            port = free_port()
            command = [sys.executable, "-m", "uvicorn", "--factory", RELAY_APP]
            command += ["--host", "127.0.0.1", "--port", str(port)]
            workers.append(subprocess.Popen(command + ["--log-level", "warning"], env=env))
            bases.append(f"http://127.0.0.1:{port}")
        for base, proc in zip(bases, workers):
            wait_ready(base, proc)

        figures: Dict[str, List[float]] = {k: [] for k in ("p99_1", "p99_2", "ips_1", "ips_2")}
        for _ in range(rounds):
            for n in (1, 2):
                p99, _ips = asyncio.run(
                    one_run(url, bases[:n], options.clients, paced, 0.001, folder)
                )
                _p99, ips = asyncio.run(
                    one_run(url, bases[:n], options.clients, unpaced, 0.0, folder)
                )
                figures[f"p99_{n}"].append(p99)
                figures[f"ips_{n}"].append(ips)
        med = {k: statistics.median(v) for k, v in figures.items()}
        print(f"{options.clients} SSE clients, one run each round, {rounds} rounds (medians)")
        print(
            f"p99 chunk delay, paced run ({paced} chunks, 1 per ms): one worker "
            f"{med['p99_1']:.2f} ms, two workers {med['p99_2']:.2f} ms "
            f"(two/one {med['p99_2'] / med['p99_1']:.2f}x)"
        )
        print(
            f"items/s to all clients, unpaced run ({unpaced} chunks): one worker "
            f"{med['ips_1']:,.0f}, two workers {med['ips_2']:,.0f} "
            f"(two/one {med['ips_2'] / med['ips_1']:.2f}x)"
        )
    finally:
        for proc in workers:
            proc.terminate()
        for proc in workers:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        if url:
            try:
                c = redis.Redis.from_url(url)
                keys = list(c.scan_iter(match=PREFIX + "*"))
                if keys:
                    c.delete(*keys)
            except redis.ConnectionError:
                pass
        if started_redis is not None and started_redis.exists():
            pid = int(started_redis.read_text())
            os.kill(pid, 15)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
