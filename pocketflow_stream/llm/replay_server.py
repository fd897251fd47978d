"""A tiny loopback HTTP server that replays recorded server-sent-event streams, so the official
`openai` and `anthropic` clients (or any HTTP client) can be tested offline, on real bytes.

It speaks HTTP/1.1 and SSE framing only: it knows no delta, no adapter and nothing of the
engine. Standard library only, so users can drive their own apps against it too:

    with ReplayServer() as server:
        chunk = {"choices": [{"index": 0, "delta": {"content": "hi"}}]}
        server.enqueue(openai_chat_replay([chunk]))
        client = openai.OpenAI(base_url=server.openai_base_url, api_key="test", max_retries=0)
"""

from __future__ import annotations

import json
import socket
import sys
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Deque, Dict, Iterable, List, Optional, Tuple, Union

from .._compat import frozen_slots

__all__ = [
    "OUTCOMES",
    "Replay",
    "RecordedRequest",
    "ReplayServer",
    "sse_frame",
    "openai_chat_replay",
    "event_replay",
    "error_replay",
]

#: How the server finished a response: the whole replay was sent ("completed"), the server
#: hung up on purpose ("dropped"), the client hung up first ("client_closed"), or the client
#: kept the connection open past the server's timeout while the server waited ("timed_out").
OUTCOMES = ("completed", "dropped", "client_closed", "timed_out")


@frozen_slots
class Replay:
    """One recorded response.

    `frames` are the body's SSE frames, each a complete `...\\n\\n` block. `write_size` splits
    the body into writes of that many bytes (flushed one by one, cutting through frames and
    UTF-8 characters) to exercise the client's SSE decoder. `drop_after=n` hangs up after n
    frames without ending the body. `hold_after=n` stops after n frames and waits for the client
    to hang up (to test that a consumer who stops reading closes the HTTP stream).
    """

    frames: Tuple[bytes, ...]
    status: int = 200
    content_type: str = "text/event-stream; charset=utf-8"
    write_size: Optional[int] = None
    drop_after: Optional[int] = None
    hold_after: Optional[int] = None


@frozen_slots
class RecordedRequest:
    """A request the server answered: its method, path, headers, JSON body (None when the body
    is not JSON) and how the response ended (one of OUTCOMES)."""

    method: str
    path: str
    headers: Dict[str, str]
    body: Any
    outcome: str


def sse_frame(data: Union[Dict[str, Any], str], event: Optional[str] = None) -> bytes:
    """One server-sent event: an optional `event:` line and a `data:` line (a dict is sent as
    compact JSON in raw UTF-8, as the providers send it), ended by a blank line."""
    if isinstance(data, str):
        payload = data
    else:
        payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    lines = [] if event is None else [f"event: {event}"]
    lines += [f"data: {line}" for line in payload.split("\n")]
    return ("\n".join(lines) + "\n\n").encode("utf-8")


def openai_chat_replay(
    chunks: Iterable[Union[Dict[str, Any], str]],
    *,
    done: bool = True,
    write_size: Optional[int] = None,
    drop_after: Optional[int] = None,
    hold_after: Optional[int] = None,
) -> Replay:
    """A Chat Completions stream: one `data: {chunk}` frame per chunk, then `data: [DONE]`
    unless `done` is False. A chunk given as a string is sent verbatim as the data line."""
    frames = [sse_frame(chunk) for chunk in chunks]
    if done:
        frames.append(sse_frame("[DONE]"))
    return Replay(
        tuple(frames), write_size=write_size, drop_after=drop_after, hold_after=hold_after
    )


def event_replay(
    events: Iterable[Dict[str, Any]],
    *,
    write_size: Optional[int] = None,
    drop_after: Optional[int] = None,
    hold_after: Optional[int] = None,
) -> Replay:
    """A typed event stream (Anthropic Messages, OpenAI Responses): each event is sent as
    `event: <its "type">` followed by `data: {event}`."""
    frames = tuple(sse_frame(event, event=event["type"]) for event in events)
    return Replay(frames, write_size=write_size, drop_after=drop_after, hold_after=hold_after)


def error_replay(status: int, body: Dict[str, Any]) -> Replay:
    """A plain JSON error response (the request was rejected before any streaming)."""
    return Replay(
        (json.dumps(body).encode("utf-8"),), status=status, content_type="application/json"
    )


class ReplayServer:
    """A loopback server that answers each POST with the next queued Replay.

    Start it with `start()` or a `with` block; it serves from a daemon thread on 127.0.0.1 and a
    free port. Queue replays with `enqueue`; answered requests are appended to `requests`.
    A request that finds the queue empty gets HTTP 500 with an explanation. Every socket
    operation is bounded by `timeout` seconds, so a stuck client cannot hang the server.
    """

    def __init__(self, *, timeout: float = 5.0) -> None:
        self.timeout = timeout
        self.requests: List[RecordedRequest] = []
        self._queue: Deque[Replay] = deque()
        self._answered = threading.Condition()
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    def start(self) -> ReplayServer:
        """Bind 127.0.0.1 on a free port and serve in a daemon thread. Returns self."""
        if self._server is not None:
            raise RuntimeError("ReplayServer.start(): the server is already running")
        server = _QuietServer(("127.0.0.1", 0), _handler_for(self))
        self._server = server
        self._thread = threading.Thread(
            # a short poll keeps stop() quick: shutdown waits for the loop's next poll
            target=server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="ReplayServer",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port. Safe to call twice."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(self.timeout)

    def __enter__(self) -> ReplayServer:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("ReplayServer is not running; call start() first")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:<port>`: the Anthropic client's `base_url`."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """`http://127.0.0.1:<port>/v1`: the OpenAI client's `base_url`."""
        return self.base_url + "/v1"

    def enqueue(self, *replays: Replay) -> None:
        """Queue replays; each following request gets the oldest one."""
        with self._answered:
            self._queue.extend(replays)

    def wait_for_requests(
        self, count: int, timeout: Optional[float] = None
    ) -> List[RecordedRequest]:
        """Block until `count` requests have been answered (their outcome is then final) and
        return them. Raises TimeoutError after `timeout` seconds (default: the server's)."""
        with self._answered:
            if not self._answered.wait_for(
                lambda: len(self.requests) >= count, self.timeout if timeout is None else timeout
            ):
                raise TimeoutError(
                    f"ReplayServer: expected {count} answered request(s), got "
                    f"{len(self.requests)}; did the client send its request to {self.base_url}?"
                )
            return list(self.requests[:count])

    def _take(self) -> Optional[Replay]:
        with self._answered:
            return self._queue.popleft() if self._queue else None

    def _record(self, request: RecordedRequest) -> None:
        with self._answered:
            self.requests.append(request)
            self._answered.notify_all()


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client hanging up between requests is normal for the tests this server serves.
        if not isinstance(sys.exc_info()[1], (ConnectionError, socket.timeout)):
            super().handle_error(request, client_address)


def _handler_for(owner: ReplayServer) -> type:
    class Handler(_ReplayHandler):
        server_owner = owner
        timeout = owner.timeout

    return Handler


class _ReplayHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # chunked bodies and keep-alive, like the real APIs
    server_owner: ReplayServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests read `requests`, not stderr

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        replay = self.server_owner._take()
        if replay is None:
            replay = error_replay(
                500,
                {
                    "error": {
                        "type": "replay_server_error",
                        "message": f"ReplayServer has no replay queued for POST {self.path}; "
                        "call server.enqueue(...) before sending the request",
                    }
                },
            )
        outcome = self._send(replay)
        self.server_owner._record(
            RecordedRequest("POST", self.path, dict(self.headers.items()), body, outcome)
        )

    def _send(self, replay: Replay) -> str:
        if replay.status != 200 or not replay.content_type.startswith("text/event-stream"):
            payload = b"".join(replay.frames)
            self.send_response(replay.status)
            self.send_header("Content-Type", replay.content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return "completed"

        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.send_response(200)
        self.send_header("Content-Type", replay.content_type)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        stop_after = replay.drop_after if replay.drop_after is not None else replay.hold_after
        frames = replay.frames if stop_after is None else replay.frames[:stop_after]
        try:
            self._write_chunked(b"".join(frames), replay.write_size)
            if replay.drop_after is not None:
                self.close_connection = True
                return "dropped"
            if replay.hold_after is not None:
                self.close_connection = True
                return self._wait_for_hangup()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            return "client_closed"
        return "completed"

    def _write_chunked(self, payload: bytes, write_size: Optional[int]) -> None:
        size = write_size or len(payload) or 1
        for start in range(0, len(payload), size):
            piece = payload[start : start + size]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.flush()

    def _wait_for_hangup(self) -> str:
        # The client sends nothing more on this connection, so the next read returns only
        # when it closes the socket (EOF or reset) or when the bounded timeout expires.
        try:
            data = self.connection.recv(1)
        except socket.timeout:
            return "timed_out"
        except (ConnectionResetError, BrokenPipeError):
            return "client_closed"
        return "client_closed" if not data else "timed_out"
