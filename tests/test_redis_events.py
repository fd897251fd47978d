"""A run's items on a Redis stream, relayed as server-sent events by two uvicorn web workers.

Real parts: a Redis server on 127.0.0.1, two uvicorn processes on two loopback ports (stopped
by the fixture), a third process running the flow, httpx streaming as the browser.

Needs a server: `scripts/servers.sh start DIR && . DIR/env` sets POCKETFLOW_STREAM_REDIS_URL;
without it these tests skip.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

from pocketflow_stream import Ask, Flow, StreamNode
from pocketflow_stream.persist import DurableRuns, SQLiteStore

URL = os.environ.get("POCKETFLOW_STREAM_REDIS_URL", "")

pytestmark = pytest.mark.skipif(
    not URL,
    reason="POCKETFLOW_STREAM_REDIS_URL is not set: start a throwaway server with "
    "scripts/servers.sh start DIR && . DIR/env to run the Redis event-stream tests",
)

if URL:  # the clients come with the test extra; without a server nothing here runs
    import httpx
    import redis

    from pocketflow_stream.scale.redis_events import RunEvents

ROOT = Path(__file__).resolve().parent.parent
PREFIX = f"pfs-test-{uuid.uuid4().hex[:8]}:"
PING = 0.3  # the workers' keep-alive interval in these tests
RELAY_APP = "pocketflow_stream.scale.redis_events:relay_app"

PRODUCER = """
import os, sys, time

import redis

from pocketflow_stream import Flow, Node, StreamNode
from pocketflow_stream.persist import DurableRuns, SQLiteStore
from pocketflow_stream.scale.redis_events import RunEvents

url, prefix, db, run_id, gate, first, second = sys.argv[1:]


class Words(StreamNode):
    def exec_stream(self, _):
        for i in range(int(first)):
            yield f"w{i}"
        deadline = time.monotonic() + 60
        while not os.path.exists(gate):  # the test opens the gate once it switched worker
            if time.monotonic() > deadline:
                raise TimeoutError("the test never opened the gate")
            time.sleep(0.005)
        for i in range(int(first), int(first) + int(second)):
            yield f"w{i}"


class Tally(Node):
    def post(self, shared, prep_res, exec_res):
        shared["tallied"] = True


words = Words()
words >> Tally()
flow = Flow(start=words)
runs = DurableRuns(flow, SQLiteStore(db))
events = RunEvents(redis.Redis.from_url(url), run_id, prefix=prefix)
for _ in events.publish(runs.start({}, run_id=run_id)):
    pass
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    c = redis.Redis.from_url(URL)
    yield c
    keys = list(c.scan_iter(match=PREFIX + "*"))
    if keys:
        c.delete(*keys)
    c.close()


@pytest.fixture(scope="module")
def workers() -> Iterator[List[str]]:
    """Two uvicorn web workers (separate processes, two loopback ports), stopped at the end."""
    env = {
        **os.environ,
        "POCKETFLOW_STREAM_REDIS_PREFIX": PREFIX,
        "POCKETFLOW_STREAM_SSE_PING": str(PING),
    }
    procs: List[subprocess.Popen[bytes]] = []
    bases: List[str] = []
    try:
        for _ in range(2):
            port = free_port()
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "uvicorn", "--factory", RELAY_APP]
                    + ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
                    env=env,
                )
            )
            bases.append(f"http://127.0.0.1:{port}")
        pids = set()
        for proc, base in zip(procs, bases):
            deadline = time.monotonic() + 60
            while True:  # bounded poll until the worker answers
                assert proc.poll() is None, f"web worker {base} exited ({proc.returncode})"
                try:
                    pids.add(httpx.get(base + "/ready", timeout=2).json()["pid"])
                    break
                except httpx.HTTPError:
                    assert time.monotonic() < deadline, f"web worker {base} never answered"
                    time.sleep(0.05)
        assert len(pids) == 2  # two processes, not one answering twice
        yield bases
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


Event = Dict[str, Any]


@contextmanager
def sse(
    base: str, run_id: str, last_event_id: Optional[str] = None
) -> Iterator[Tuple[httpx.Response, Iterator[Event]]]:
    """Opens the run's event stream; yields (response, events), each event a dict with `id`,
    `event`, `data` (parsed), or `comment` for a keep-alive line."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    url = f"{base}/runs/{run_id}/events"
    with httpx.stream("GET", url, headers=headers, timeout=httpx.Timeout(30)) as response:

        def events() -> Iterator[Event]:
            frame: Event = {}
            for line in response.iter_lines():
                if line == "":
                    if frame:
                        yield frame
                    frame = {}
                elif line.startswith(":"):
                    yield {"comment": line[1:].strip()}
                else:
                    field, _, value = line.partition(": ")
                    frame[field] = json.loads(value) if field == "data" else value

        yield response, events()


def read_all(base: str, run_id: str, last_event_id: Optional[str] = None) -> List[Event]:
    with sse(base, run_id, last_event_id) as (response, events):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return [e for e in events if "comment" not in e]


def chunk_data(events: List[Event]) -> List[Any]:
    return [e["data"]["data"] for e in events if e.get("event") == "chunk"]


def start_producer(tmp_path: Path, run_id: str, gate: Path, first: int, second: int) -> Any:
    script = tmp_path / "producer.py"
    script.write_text(PRODUCER)
    db = str(tmp_path / "runs.db")
    args = [URL, PREFIX, db, run_id, str(gate), str(first), str(second)]
    return subprocess.Popen([sys.executable, str(script), *args], cwd=ROOT)


def test_switching_worker_mid_stream_misses_nothing_and_repeats_nothing(
    workers: List[str], client: Any, tmp_path: Path
) -> None:
    first, second = 40, 160
    run_id = uuid.uuid4().hex
    gate = tmp_path / "gate"
    producer = start_producer(tmp_path, run_id, gate, first, second)
    try:
        seen: List[Event] = []
        # worker A: read part of what the run made before its gate, then hang up
        with sse(workers[0], run_id) as (_response, events):
            for event in events:
                if "comment" not in event:
                    seen.append(event)
                if len(chunk_data(seen)) == 25:
                    break
        assert chunk_data(seen) == [f"w{i}" for i in range(25)]
        # worker B, after the last id seen: the rest of the first 40 (sent by the linger
        # timer: the node is waiting, no batch filled), a keep-alive while the run is quiet,
        # then, once the gate opens, the rest of the run and its end
        pinged = False
        with sse(workers[1], run_id, seen[-1]["id"]) as (response, events):
            assert response.status_code == 200
            for event in events:
                if "comment" in event:
                    if len(chunk_data(seen)) == first:
                        pinged = True
                        gate.touch()
                    continue
                seen.append(event)
        assert pinged
        assert producer.wait(60) == 0
    finally:
        if producer.poll() is None:
            producer.kill()
            producer.wait()
    assert chunk_data(seen) == [f"w{i}" for i in range(first + second)]  # no gap, no repeat
    ids = [e["id"] for e in seen]
    as_numbers = [tuple(map(int, i.split("-"))) for i in ids]
    assert as_numbers == sorted(as_numbers) and len(set(ids)) == len(ids)
    item_ids = [e["data"]["id"] for e in seen if e["event"] == "chunk"]
    assert item_ids == sorted(item_ids)  # the run's own item ids, in order
    assert seen[-1]["event"] == "end" and seen[-1]["data"]["status"] == "done"
    assert seen[-1]["data"]["run_id"] == run_id

    # a late client, from the start, on either worker: the whole run, the same ids
    assert read_all(workers[1], run_id) == seen
    assert read_all(workers[0], run_id) == seen
    # one that has the end already: 204, nothing to reconnect for
    assert (
        httpx.get(
            f"{workers[0]}/runs/{run_id}/events", headers={"Last-Event-ID": seen[-1]["id"]}
        ).status_code
        == 204
    )
    # and one that reconnects mid-way gets exactly the rest
    assert read_all(workers[0], run_id, seen[99]["id"]) == seen[100:]


class Draft(StreamNode):
    """Three chunks, a question, two more chunks with the answer."""

    def exec_stream(self, _: Any) -> Any:
        yield from ("one", "two", "three")
        answer = yield Ask({"question": "go on?"})
        yield "four"
        yield answer
        return answer


def test_resumed_run_sends_its_replayed_chunks_once(
    workers: List[str], client: Any, tmp_path: Path
) -> None:
    runs = DurableRuns(Flow(start=Draft()), SQLiteStore(str(tmp_path / "runs.db")))
    run = runs.start({})
    list(RunEvents(client, run.run_id, prefix=PREFIX).publish(run))
    assert run.status == "paused"
    key = PREFIX + run.run_id
    assert 0 < client.ttl(key) <= 86_400  # a paused run's items expire too

    # a browser connected while the run is paused: it waits (the relay goes past "paused")
    live: List[Event] = []
    paused = threading.Event()

    def browser() -> None:
        with sse(workers[0], run.run_id) as (_response, events):
            for event in events:
                if "comment" not in event:
                    live.append(event)
                    if event["event"] == "paused":
                        paused.set()

    reader = threading.Thread(target=browser)
    reader.start()
    try:
        assert paused.wait(30)
        events = RunEvents(client, run.run_id, prefix=PREFIX)
        resumed = runs.resume(run.run_id, {run.interrupts[0]["id"]: "yes"})
        made = list(events.publish(resumed))
    finally:
        reader.join(30)
    assert not reader.is_alive()
    # the engine did re-make the three chunks (marked replay): the stream has them once
    assert [c.data for c in made if c.replay] == ["one", "two", "three"]
    assert events.skipped == 3
    assert chunk_data(live) == ["one", "two", "three", "four", "yes"]
    kinds = [e["event"] for e in live]
    assert kinds == ["chunk"] * 3 + ["interrupt", "paused", "chunk", "chunk", "end"]
    assert all(not e["data"].get("replay") for e in live)
    # late, through the other worker: the same; after the pause marker: exactly the resumed part
    assert read_all(workers[1], run.run_id) == live
    assert read_all(workers[1], run.run_id, live[4]["id"]) == live[5:]


def test_stream_is_bounded_and_expires_after_the_end(client: Any, tmp_path: Path) -> None:
    class Many(StreamNode):
        def exec_stream(self, _: Any) -> Any:
            yield from range(2000)

    runs = DurableRuns(Flow(start=Many()), SQLiteStore(str(tmp_path / "runs.db")))
    run = runs.start({})
    events = RunEvents(client, run.run_id, prefix=PREFIX, maxlen=100, expire=120)
    key = events.key
    ttl_during = None
    for item in events.publish(run):
        if item.type == "chunk" and item.data == 1000:
            ttl_during = client.ttl(key)
    assert ttl_during == -1  # no expiry while the run goes on
    info = client.xinfo_stream(key)
    assert 100 <= info["length"] < 300  # MAXLEN ~ 100: trimmed (2000 were added)
    assert json.loads(info["last-entry"][1][b"data"])["type"] == "end"
    assert 0 < client.ttl(key) <= 120
    assert events.sent == 2001


def test_bad_last_event_id_is_a_clear_400(workers: List[str]) -> None:
    answer = httpx.get(
        f"{workers[0]}/runs/whatever/events", headers={"Last-Event-ID": "seven"}, timeout=10
    )
    assert answer.status_code == 400
    assert "is not an event id of this stream" in answer.text
    assert "reconnect without it" in answer.text


def test_items_wait_at_most_the_linger_while_a_node_is_quiet(client: Any) -> None:
    events = RunEvents(client, uuid.uuid4().hex, prefix=PREFIX, linger=0.01, batch=1000)
    events.add({"type": "chunk", "data": 1})
    deadline = time.monotonic() + 10
    while client.xlen(events.key) == 0:  # bounded poll: the timer thread sends it
        assert time.monotonic() < deadline, "a lone item was never sent"
        time.sleep(0.005)
    assert events.sent == 1
    events.add({"type": "chunk", "data": 2, "replay": True})
    events.end("done")
    assert client.xlen(events.key) == 2 and events.skipped == 1


def test_async_run_published_without_blocking_its_loop(client: Any, tmp_path: Path) -> None:
    import anyio

    from pocketflow_stream import AsyncStreamFlow, AsyncStreamNode

    class Words(AsyncStreamNode):
        async def exec_stream_async(self, _: Any) -> Any:
            for i in range(150):  # more than a batch: full batches go out from the timer
                yield i
            answer = yield Ask({"question": "more?"})
            yield answer

    runs = DurableRuns(AsyncStreamFlow(start=Words()), SQLiteStore(str(tmp_path / "runs.db")))
    loop_thread: List[int] = []
    sending_threads: List[int] = []

    class Watched(RunEvents):
        def flush(self, *, expire: bool = False) -> None:
            sending_threads.append(threading.get_ident())
            super().flush(expire=expire)

    async def main() -> Tuple[List[Any], List[Any], Any, Any]:
        loop_thread.append(threading.get_ident())
        run = runs.start_async({})
        first = [
            item async for item in Watched(client, run.run_id, prefix=PREFIX).publish_async(run)
        ]
        assert run.status == "paused"
        resumed = runs.resume_async(run.run_id, {run.interrupts[0]["id"]: "yes"})
        events = Watched(client, run.run_id, prefix=PREFIX)
        second = [item async for item in events.publish_async(resumed)]
        return first, second, run, events

    first, second, run, events = anyio.run(main)
    assert loop_thread[0] not in sending_threads  # no round trip on the event loop
    assert [c.data for c in second if c.replay] == list(range(150))
    assert events.skipped == 150
    entries = client.xrange(PREFIX + run.run_id)
    kinds = [e[1][b"type"].decode() for e in entries]
    data = [json.loads(e[1][b"data"]) for e in entries]
    assert [d["data"] for d in data if d["type"] == "chunk"] == list(range(150)) + ["yes"]
    assert kinds[150:] == ["interrupt", "paused", "chunk", "end"]
    assert data[151]["interrupts"][0]["payload"] == {"question": "more?"}
    assert data[-1]["status"] == "done"


def test_read_run_gives_the_entries_after_an_id_and_none_while_quiet(client: Any) -> None:
    import anyio
    import redis.asyncio

    from pocketflow_stream.scale.redis_events import read_run

    events = RunEvents(client, uuid.uuid4().hex, prefix=PREFIX)
    for i in range(5):
        events.add({"type": "chunk", "data": i})
    events.flush()
    ids = [e[0].decode() for e in client.xrange(events.key)]

    async def main() -> List[Any]:
        reader = redis.asyncio.Redis.from_url(URL)
        got: List[Any] = []
        try:
            async for entry in read_run(reader, events.run_id, ids[1], prefix=PREFIX, block=0.05):
                got.append(entry if entry is None else (entry[0], json.loads(entry[2]).get("data")))
                if entry is None:  # quiet: the run goes on, then ends
                    events.end("done")
        finally:
            await reader.aclose()
        return got

    got = anyio.run(main)
    assert got[:4] == [(ids[2], 2), (ids[3], 3), (ids[4], 4), None]
    assert len(got) == 5 and got[4][1] is None  # the end marker (no "data" field in it)


def test_a_run_quiet_for_longer_than_the_clients_socket_timeout_keeps_its_relay(
    client: Any,
) -> None:
    """redis-py 8 gives up reading after its socket timeout (5 s by default): an XREAD that
    blocks longer fails with TimeoutError, and a relay of a run waiting out a dead worker's
    lease broke. Here the reader's timeout is 0.2 s and the keep-alive 0.6 s: the relay says
    "quiet" after the keep-alive, not an error, and goes on to the run's end."""
    import anyio
    import redis.asyncio

    from pocketflow_stream.scale.redis_events import read_run

    events = RunEvents(client, uuid.uuid4().hex, prefix=PREFIX)

    async def main() -> List[Any]:
        reader = redis.asyncio.Redis.from_url(URL, socket_timeout=0.2)
        got: List[Any] = []
        started = time.monotonic()
        try:
            async for entry in read_run(reader, events.run_id, prefix=PREFIX, block=0.6):
                got.append(entry if entry is None else json.loads(entry[2]).get("type"))
                if entry is None:
                    got.append(time.monotonic() - started >= 0.6)
                    events.add({"type": "chunk", "data": 1})
                    events.end("done")
        finally:
            await reader.aclose()
        return got

    assert anyio.run(main) == [None, True, "chunk", "end"]


def test_a_send_that_failed_on_the_linger_thread_is_raised_at_the_next_flush() -> None:
    """The linger thread sends a quiet node's last items; when Redis refuses that send, the
    error is raised by the next flush on the run's thread (a checkpoint's: the run stops
    there), not printed by a thread and the items lost unseen."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    dead = redis.Redis(host="127.0.0.1", port=closed, socket_connect_timeout=1)
    events = RunEvents(dead, uuid.uuid4().hex, prefix=PREFIX, linger=0.001, inline=False)
    events.add({"type": "chunk", "data": 1})
    deadline = time.monotonic() + 30
    while events._failed is None:  # the linger thread's send has failed
        assert time.monotonic() < deadline, "the linger thread never tried to send"
        time.sleep(0.01)
    with pytest.raises(redis.ConnectionError):
        events.flush()
    events.flush()  # raised once; nothing is queued now


def test_relay_app_without_a_url_says_how_to_give_one(monkeypatch: Any) -> None:
    from pocketflow_stream.scale.redis_events import relay_app

    monkeypatch.delenv("POCKETFLOW_STREAM_REDIS_URL")
    with pytest.raises(ValueError, match="set POCKETFLOW_STREAM_REDIS_URL"):
        relay_app()
