"""A run's items on a Redis stream, relayed to browsers as server-sent events by any web worker.

Worker side (the process that runs the flow):

    run = runs.start(shared)                          # or runs.resume(run_id, answers)
    events = RunEvents(redis.Redis.from_url(url), run.run_id)
    for item in events.publish(run):                  # the items, as the run gives them
        ...
    # async flows: `async for item in events.publish_async(runs.start_async(shared))`

Web side (any number of web workers, FastAPI or Starlette):

    client = redis.asyncio.Redis.from_url(url)

    @app.get("/runs/{run_id}/events")
    async def run_events(run_id: str, request: Request) -> Response:
        return await sse_response(request, client, run_id)

    # or a ready app: uvicorn --factory pocketflow_stream.scale.redis_events:relay_app

One stream per run (key `prefix + run_id`). Each entry holds one item's `to_dict()` as JSON
(field `data`) and its `type` (field `type`); the entry id (`1733112000000-0`) is the SSE
event id. Entry ids only grow, so a client that reconnects, to this worker or another, with
`Last-Event-ID` gets exactly the entries after it: nothing missed, nothing twice. A client
without one gets the run from its start, also after the run ended (until the key expires).

What the appender does:
- Items are sent in pipelined batches (one round trip per batch): a batch goes out when it
  holds `batch` items, at every checkpoint the engine takes (after each node, at a pause, at
  the end), at an interrupt, and at the latest `linger` seconds after its first item (the
  appender's one linger thread), so a chunk waits at most `linger` even while the node is
  quiet. A send of the linger thread's that fails is raised at the next flush on the run's
  thread (a checkpoint's): the run stops there, at its last checkpoint, resumable.
- Chunks with `replay=True` (re-made on the way back to a pause when a run resumes) were
  delivered by the segment that first made them: they are not appended again.
- `XADD ... MAXLEN ~ maxlen` bounds the stream (make `maxlen` hold a whole run: a client
  whose `Last-Event-ID` was trimmed away gets what is left, the gap unseen).
- A segment's last entry is a marker item: `{"type": "paused", "status": "paused"}` when the
  run paused (the relay goes on: the resumed segment appends after it), else `{"type":
  "end", "status": "done" | "failed" | "stopped", ...}`, which ends the relay. With the
  marker the key gets `EXPIRE expire` (a day by default); a resumed segment's first batch
  removes it again (PERSIST), so a long-paused run's items live `expire` after the pause.

A worker killed mid-run writes no end marker: its resumed segment appends after what was
sent (chunks of a node that runs again as a new attempt are sent again, with their attempt
number). Not imported by `pocketflow_stream`: redis-py is the optional extra `scale`.
"""

from __future__ import annotations

import json
import re
import threading
import time
from typing import Any, AsyncIterator, Dict, FrozenSet, Iterator, List, Mapping, Optional, Tuple

__all__ = [
    "RunEvents",
    "read_run",
    "read_batches",
    "relay_app",
    "sse_response",
    "sse_frames",
    "check_entry_id",
    "DEFAULT_PREFIX",
    "FINAL_STATUSES",
]

DEFAULT_PREFIX = "pocketflow_stream:run:"
#: end statuses that end a relay; a "paused" marker does not (the run goes on when resumed)
FINAL_STATUSES = frozenset({"done", "failed", "stopped"})
_ENTRY_ID = re.compile(r"^\d{1,20}-\d{1,20}$")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _plain(item: Any) -> Dict[str, Any]:
    if isinstance(item, Mapping):
        return dict(item)
    to_dict = getattr(item, "to_dict", None)
    if to_dict is None:
        raise TypeError(
            f"RunEvents.add: {type(item).__name__} is not a run item (a Chunk, an event, an "
            f"Interrupt) nor a dict: pass the items a run yields, or their to_dict()"
        )
    plain: Dict[str, Any] = to_dict()
    return plain


class RunEvents:
    """The worker side: appends one run's items to its Redis stream (see the module doc).

    - `client`: a sync `redis.Redis` (thread-safe; the linger thread flushes from its own).
    - `maxlen`: the stream's approximate bound; `expire`: seconds the key lives after the
      run's end (or a pause); `batch`: items per pipelined round trip at most; `linger`:
      the longest an item waits in a batch, in seconds. `inline=False`: `add` never
      sends on the caller's thread (an event loop's), the linger thread does.
    """

    def __init__(
        self,
        client: Any,
        run_id: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        maxlen: int = 100_000,
        expire: float = 86_400,
        batch: int = 64,
        linger: float = 0.005,
        inline: bool = True,
    ) -> None:
        if maxlen < 1 or batch < 1 or expire <= 0 or linger < 0:
            raise ValueError(
                f"RunEvents({run_id!r}): maxlen and batch must be >= 1, expire > 0 and "
                f"linger >= 0 (got maxlen={maxlen}, batch={batch}, expire={expire}, "
                f"linger={linger})"
            )
        self.client = client
        self.run_id = run_id
        self.key = prefix + run_id
        self.maxlen = maxlen
        self.expire = expire
        self.batch = batch
        self.linger = linger
        self.sent = 0  # items appended by this appender
        self.skipped = 0  # replayed chunks not appended
        self._pending: List[Tuple[str, str]] = []
        self.inline = inline
        self._lock = threading.Lock()  # the queue
        self._wake = threading.Condition(self._lock)  # the linger thread's: a batch is due
        self._sending = threading.Lock()  # one batch on the wire at a time, in order
        self._linger_thread: Optional[threading.Thread] = None
        self._due: Optional[float] = None  # when the queued items must go (None: none queued)
        self._ended = False  # the linger thread leaves
        self._failed: Optional[BaseException] = None  # a send of the linger thread's
        self._persist = True  # the segment's first batch removes a pause's expiry

    # -- appending -------------------------------------------------------------------------

    def add(self, item: Any) -> None:
        """Queue one item (a run's item or its dict) for the stream; replayed chunks are
        dropped. Sends the batch when it is full or the item is an interrupt (from the
        linger thread instead, never on the caller's thread, when made with `inline=False`,
        as `publish_async` does)."""
        if getattr(item, "replay", False) is True or (
            isinstance(item, Mapping) and item.get("replay") is True
        ):
            self.skipped += 1
            return
        plain = _plain(item)
        kind = str(plain.get("type", "item"))
        text = json.dumps(plain, separators=(",", ":"), ensure_ascii=False)
        with self._lock:
            self._pending.append((kind, text))
            full = len(self._pending) >= self.batch or kind == "interrupt"
            if full and not self.inline:
                self._schedule(0.0)
            elif not full:
                self._schedule(self.linger)
        if full and self.inline:
            self.flush()

    def _schedule(self, delay: float) -> None:
        # under self._lock: a flush `delay` seconds from now, unless one is due sooner. One
        # linger thread per appender, woken when a batch becomes due (not a timer per batch)
        due = time.monotonic() + delay
        if self._due is not None and self._due <= due:
            return
        self._due = due
        self._ended = False
        if self._linger_thread is None:
            self._linger_thread = threading.Thread(
                target=self._linger, name=f"RunEvents {self.run_id}", daemon=True
            )
            self._linger_thread.start()
        else:
            self._wake.notify()

    def _linger(self) -> None:
        """The linger thread: sends each batch when it is due, until the segment's end. A
        send that fails is raised on the caller's thread at its next flush (a checkpoint's,
        the end's), so the run stops there instead of losing items unseen."""
        with self._lock:
            while not self._ended:
                if self._due is None:  # nothing queued: wait, and leave after an idle second
                    if not self._wake.wait(1.0) and self._due is None:
                        break
                    continue
                left = self._due - time.monotonic()
                if left > 0:
                    self._wake.wait(left)
                    continue
                self._lock.release()
                try:
                    self._send()
                except BaseException as exc:  # kept for the caller; the thread goes on
                    self._failed = exc
                finally:
                    self._lock.acquire()
            self._linger_thread = None  # (under the lock: a later item starts a new one)

    def flush(self, *, expire: bool = False) -> None:
        """Send what is queued in one pipelined round trip (`expire`: then set the key's
        expiry, as the end does). Batches go out in the order they were queued. Raises what
        made a send of the linger thread's fail (its items are lost: the run stops here)."""
        failed, self._failed = self._failed, None
        if failed is not None:
            raise failed
        self._send(expire)

    def _send(self, expire: bool = False) -> None:
        with self._sending:
            with self._lock:
                self._due = None
                pending, self._pending = self._pending, []
            if not pending and not expire:
                return
            pipe = self.client.pipeline(transaction=False)
            for kind, text in pending:
                pipe.xadd(
                    self.key,
                    {"type": kind, "data": text},
                    maxlen=self.maxlen,
                    approximate=True,
                )
            if expire:
                pipe.expire(self.key, max(1, int(self.expire)))
                self._persist = True
            elif self._persist:
                pipe.persist(self.key)
                self._persist = False
            pipe.execute()
            self.sent += len(pending)

    def end(self, status: str = "done", **info: Any) -> None:
        """Append the segment's marker (`paused` for status "paused", else `end`), send
        everything and set the key's expiry."""
        kind = "paused" if status == "paused" else "end"
        marker = {"type": kind, "status": status, "run_id": self.run_id, **info}
        text = json.dumps(marker, separators=(",", ":"), ensure_ascii=False, default=str)
        with self._lock:
            self._pending.append((kind, text))
            self._ended = True  # the linger thread leaves (a later item starts it again)
            self._wake.notify()
        self.flush(expire=True)

    def checkpointed(self, hook: Any) -> Any:
        """`hook` (a run's checkpoint callable) wrapped to send the queued items after it."""

        def checkpoint(position: Dict[str, Any]) -> None:
            try:
                hook(position)
            finally:
                self.flush()

        return checkpoint

    def publish(self, run: Any) -> Iterator[Any]:
        """Iterate a DurableRun (`runs.start(...)` / `runs.resume(...)`, not yet iterated),
        appending each item, then the segment's marker with the run's status (a paused
        run's marker lists its pending `interrupts`). Yields the items as the run gives
        them (replayed chunks included: the caller sees them)."""
        run.checkpoint = self.checkpointed(run.checkpoint)  # the walk takes it at its start
        error: Optional[BaseException] = None
        try:
            for item in run:
                self.add(item)
                yield item
        except BaseException as exc:
            error = exc
            raise
        finally:
            run.close()
            self._end_of(run, error)

    async def publish_async(self, run: Any) -> AsyncIterator[Any]:
        """`publish` for an AsyncDurableRun (`runs.start_async(...)` / `resume_async`, not
        yet entered): enters it, appends each item (sending from the linger thread, never on
        the event loop), leaves it, then sends the marker from a worker thread."""
        import anyio.to_thread

        self.inline = False
        run.checkpoint = self.checkpointed(run.checkpoint)  # called in a worker thread
        error: Optional[BaseException] = None
        try:
            async with run:
                async for item in run:
                    self.add(item)
                    yield item
        except BaseException as exc:
            error = exc
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._end_of, run, error)

    def _end_of(self, run: Any, error: Optional[BaseException]) -> None:
        status = str(getattr(run, "status", "done") or "done")
        if status == "running":  # the engine's last checkpoint was its end
            status = "done"
        info: Dict[str, Any] = {}
        if error is not None and not isinstance(error, (GeneratorExit, KeyboardInterrupt)):
            if status not in ("failed", "stopped"):
                status = "failed"
            info["error"] = f"{type(error).__name__}: {error}"
        elif getattr(run, "error", None):
            info["error"] = run.error
        if status == "paused":
            info["interrupts"] = list(getattr(run, "interrupts", None) or [])
        self.end(status, **info)

    def close(self) -> None:
        """Send what is queued (no marker)."""
        self.flush()


# -- the reader side ----------------------------------------------------------------------


def check_entry_id(value: Optional[str]) -> str:
    """A `Last-Event-ID` checked to be a stream entry id ("0-0" for none)."""
    if value is None or value.strip() == "":
        return "0-0"
    value = value.strip()
    if not _ENTRY_ID.match(value):
        raise ValueError(
            f"Last-Event-ID {value[:40]!r} is not an event id of this stream (they look like "
            f"1733112000000-0): reconnect without it to read the run from its start"
        )
    return value


async def _last_entry(client: Any, key: str) -> Optional[Tuple[str, str, str]]:
    entries = await client.xrevrange(key, "+", "-", count=1)
    if not entries:
        return None
    entry_id, fields = entries[0]
    fields = {_text(k): _text(v) for k, v in fields.items()}
    return _text(entry_id), fields.get("type", ""), fields.get("data", "")


def _is_final(kind: str, data: str, stop_on: FrozenSet[str]) -> bool:
    if kind != "end" and kind != "paused":
        return False
    try:
        status = json.loads(data).get("status")
    except (ValueError, AttributeError):
        return kind == "end"
    return status in stop_on


def _xread_block(client: Any, block: float) -> float:
    """How long one XREAD may block: under the client's socket timeout, or the read times out
    before Redis answers (redis-py 8 reads for at most 5 s unless told otherwise)."""
    pool = getattr(client, "connection_pool", None)
    options = getattr(pool, "connection_kwargs", None) or {}
    timeout = options.get("socket_timeout", 5.0)
    if timeout is None:
        return block
    return max(0.001, min(block, float(timeout) * 0.8))


async def read_batches(
    client: Any,
    run_id: str,
    after: Optional[str] = None,
    *,
    prefix: str = DEFAULT_PREFIX,
    block: float = 15.0,
    count: int = 256,
    stop_on: FrozenSet[str] = FINAL_STATUSES,
) -> AsyncIterator[List[Tuple[str, str, str]]]:
    """`read_run`, an XREAD's entries at a time (a list; empty after `block` quiet seconds)."""
    key = prefix + run_id
    last = check_entry_id(after)
    if last != "0-0":
        tail = await _last_entry(client, key)
        if tail is not None and tail[0] == last and _is_final(tail[1], tail[2], stop_on):
            return
    from redis.exceptions import TimeoutError as ReadTimedOut

    step_ms = max(1, int(_xread_block(client, block) * 1000))
    quiet_since = time.monotonic()
    while True:
        try:
            answer = await client.xread({key: last}, count=count, block=step_ms)
        except ReadTimedOut:  # the client's socket timeout came before the server's answer
            answer = None
        if not answer:
            if time.monotonic() - quiet_since >= block:
                quiet_since = time.monotonic()
                yield []
            continue
        quiet_since = time.monotonic()
        batch: List[Tuple[str, str, str]] = []
        final = False
        for _stream, entries in answer:
            for entry_id, fields in entries:
                fields = {_text(k): _text(v) for k, v in fields.items()}
                last = _text(entry_id)
                kind, data = fields.get("type", "item"), fields.get("data", "null")
                batch.append((last, kind, data))
                if _is_final(kind, data, stop_on):
                    final = True
                    break
        yield batch
        if final:
            return


async def read_run(
    client: Any,
    run_id: str,
    after: Optional[str] = None,
    *,
    prefix: str = DEFAULT_PREFIX,
    block: float = 15.0,
    count: int = 256,
    stop_on: FrozenSet[str] = FINAL_STATUSES,
) -> AsyncIterator[Optional[Tuple[str, str, str]]]:
    """A run's entries after entry id `after` (from the start if None), as `(entry_id, type,
    data_json)`, then each new one as it comes (XREAD BLOCK), until the end marker whose
    status is in `stop_on` (yielded last). Yields None after `block` seconds with nothing
    new (a relay's cue for a keep-alive). `client`: a `redis.asyncio.Redis`. A run whose
    end is the entry `after` itself (and nothing after it) ends at once."""
    batches = read_batches(
        client, run_id, after, prefix=prefix, block=block, count=count, stop_on=stop_on
    )
    async for batch in batches:
        if not batch:
            yield None
        for entry in batch:
            yield entry


async def sse_frames(
    client: Any,
    run_id: str,
    after: Optional[str] = None,
    *,
    prefix: str = DEFAULT_PREFIX,
    ping_every: float = 15.0,
    stop_on: FrozenSet[str] = FINAL_STATUSES,
) -> AsyncIterator[str]:
    """`read_run` as server-sent event frames: `id:` the entry id, `event:` the item's type,
    `data:` its JSON; a `: ping` comment after `ping_every` quiet seconds. The frames of one
    XREAD come as one string (one write to the socket)."""
    batches = read_batches(client, run_id, after, prefix=prefix, block=ping_every, stop_on=stop_on)
    async for batch in batches:
        if not batch:
            yield ": ping\n\n"
        else:
            yield "".join(
                f"id: {entry_id}\nevent: {kind}\ndata: {data}\n\n" for entry_id, kind, data in batch
            )


async def sse_response(
    request: Any,
    client: Any,
    run_id: str,
    *,
    prefix: str = DEFAULT_PREFIX,
    ping_every: float = 15.0,
    stop_on: FrozenSet[str] = FINAL_STATUSES,
) -> Any:
    """A Starlette/FastAPI response relaying run `run_id` as `text/event-stream`, resuming
    after the request's `Last-Event-ID` header. 400 for a header that is no entry id of
    ours; 204 No Content when the client already has the run's end (a browser's
    EventSource stops reconnecting on it)."""
    from starlette.responses import PlainTextResponse, Response, StreamingResponse

    try:
        after = check_entry_id(request.headers.get("last-event-id"))
    except ValueError as exc:
        return PlainTextResponse(str(exc), status_code=400)
    if after != "0-0":
        tail = await _last_entry(client, prefix + run_id)
        if tail is not None and tail[0] == after and _is_final(tail[1], tail[2], stop_on):
            return Response(status_code=204)
    frames = sse_frames(
        client, run_id, after, prefix=prefix, ping_every=ping_every, stop_on=stop_on
    )
    return StreamingResponse(
        frames,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def relay_app(
    url: Optional[str] = None,
    *,
    prefix: Optional[str] = None,
    ping_every: Optional[float] = None,
) -> Any:
    """A ready Starlette app relaying runs: `GET /runs/{run_id}/events` (sse_response) and
    `GET /ready` (answers once Redis does). Unset arguments come from the environment
    (POCKETFLOW_STREAM_REDIS_URL, POCKETFLOW_STREAM_REDIS_PREFIX, POCKETFLOW_STREAM_SSE_PING),
    so a web worker can be just
    `uvicorn --factory pocketflow_stream.scale.redis_events:relay_app --port 8001`.
    Mount it in a FastAPI app (`app.mount("/", relay_app(url))`) beside your own routes,
    or take `sse_response` into an endpoint of yours that checks who may read the run."""
    import os

    import redis.asyncio
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    url = url or os.environ.get("POCKETFLOW_STREAM_REDIS_URL")
    if not url:
        raise ValueError(
            "relay_app: no Redis URL: pass one, or set POCKETFLOW_STREAM_REDIS_URL "
            "(e.g. redis://127.0.0.1:6379/0)"
        )
    key_prefix = prefix or os.environ.get("POCKETFLOW_STREAM_REDIS_PREFIX") or DEFAULT_PREFIX
    ping = ping_every or float(os.environ.get("POCKETFLOW_STREAM_SSE_PING") or 15.0)
    client = redis.asyncio.Redis.from_url(url)

    async def events(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        response: Response = await sse_response(
            request, client, run_id, prefix=key_prefix, ping_every=ping
        )
        return response

    async def ready(request: Request) -> Response:
        await client.ping()
        return JSONResponse({"ok": True, "pid": os.getpid()})

    routes = [Route("/runs/{run_id}/events", events), Route("/ready", ready)]
    return Starlette(routes=routes)
