"""Recipe: a flow's run streamed over HTTP as server-sent events — every chunk and event with
an id, so a client that drops mid-run reconnects with `Last-Event-ID` and misses nothing.

    pip install -e ".[web]"             # fastapi and uvicorn
    python cookbook/fastapi-sse/main.py [port]     # serves on http://127.0.0.1:8000

`POST /runs` (JSON `{"question": "..."}`) starts a run in the background and answers at once
with its id; `GET /runs/{run_id}/events` streams it. The run does not live in a request: it
runs in the app's task group and writes every item into the run's buffer, numbered 1, 2, 3...
A GET sends what the buffer holds after the client's `Last-Event-ID` (from the start without
one), then each new item as it comes, then `event: end` (or `event: error`). So a client that
reconnects gets exactly what it missed, and one that comes after the end gets the whole run.
Neither FastAPI nor the browser keeps events: the endpoint reads the header and resumes.
A browser's `EventSource` sends `Last-Event-ID` by itself when it reconnects; close it on
`end` (a reconnect after the end gets `204 No Content`, which tells it to stop).

The buffers live in this process's memory until it stops; a real app drops finished runs after
a while, and past one process puts each run's items in a shared log (a Redis stream, whose
entry ids make good event ids). Offline with the scripted model; swap in
`AsyncOpenAIChatModel("gpt-4o-mini")` or any model with `astream(messages)`.
"""

from __future__ import annotations

import json
import sys
import uuid
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Dict, List, Optional

import anyio
from fastapi import FastAPI, Header, HTTPException, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from pocketflow_stream import AsyncStreamFlow
from pocketflow_stream.llm import AsyncLLMNode, ScriptedModel, Turn


def offline_model(delay: float) -> ScriptedModel:
    def reply(messages, tools):
        question = messages[-1]["content"]
        return Turn(
            reasoning=f"The user asks: {question} Keep it short.",
            text="Streaming shows the answer while it is written, so nobody stares at a "
            "blank page, and a dropped connection loses nothing when events have ids.",
        )

    return ScriptedModel(reply, chunk_size=4, delay=delay)


class Answer(AsyncLLMNode):
    async def post_async(self, shared, messages, reply):
        shared["answer"] = reply.content


def sse_frame(event_id: int, event: str, data: Any) -> str:
    """One server-sent event: `id`, `event` and one line of JSON `data`."""
    return f"id: {event_id}\nevent: {event}\ndata: {json.dumps(data)}\n\n"


class RunBuffer:
    """Everything one run has produced, as SSE frames with ids 1, 2, 3..., and a way to wait
    for more. One event loop writes and reads it, so it needs no lock."""

    def __init__(self) -> None:
        self.frames: List[str] = []
        self.finished = False
        self._changed = anyio.Event()

    def add(self, event: str, data: Any) -> None:
        self.frames.append(sse_frame(len(self.frames) + 1, event, data))
        self._wake_readers()

    def finish(self) -> None:
        self.finished = True
        self._wake_readers()

    def _wake_readers(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def frames_after(self, last_id: int, ping_every: float = 15) -> AsyncIterator[str]:
        """The frames after `last_id`, then each new one as it is added, until the run ends;
        a comment line when nothing came for `ping_every` seconds (so proxies keep the
        connection open while a run is quiet)."""
        sent = last_id
        while True:
            while sent < len(self.frames):
                sent += 1
                yield self.frames[sent - 1]
            if self.finished:
                return
            with anyio.move_on_after(ping_every) as quiet:
                await self._changed.wait()
            if quiet.cancelled_caught:
                yield ": ping\n\n"


async def produce(flow: AsyncStreamFlow, shared: Dict[str, Any], buffer: RunBuffer) -> None:
    """Runs the flow, writing every chunk and event (their `to_dict()`) into the buffer."""
    try:
        async with flow.run_stream_async(shared, events=True) as stream:
            async for item in stream:
                payload = item.to_dict()
                buffer.add(payload["type"], payload)
        buffer.add("end", {"action": stream.action, "answer": shared.get("answer")})
    except Exception as exc:  # the run failed: tell the clients, keep the server up
        buffer.add("error", {"error": f"{type(exc).__name__}: {exc}"})
    finally:
        buffer.finish()


class RunRequest(BaseModel):
    question: str


def create_app(model: Any = None, *, delay: float = 0.05, ping_every: float = 15) -> FastAPI:
    """The app: `POST /runs`, `GET /runs/{run_id}/events`. `model`: any model with
    `astream(messages)` (default: the scripted one, `delay` seconds between deltas);
    `ping_every`: seconds of quiet before a keep-alive comment."""
    model = model or offline_model(delay)
    runs: Dict[str, RunBuffer] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with anyio.create_task_group() as runs_group:
            app.state.runs_group = runs_group
            yield
            runs_group.cancel_scope.cancel()  # the server stops: so do the runs still going

    app = FastAPI(lifespan=lifespan)

    @app.post("/runs", status_code=201)
    async def start_run(request: RunRequest) -> Dict[str, str]:
        run_id = uuid.uuid4().hex
        runs[run_id] = buffer = RunBuffer()
        flow = AsyncStreamFlow(start=Answer(model))
        shared = {"messages": [{"role": "user", "content": request.question}]}
        app.state.runs_group.start_soon(produce, flow, shared, buffer)
        return {"run_id": run_id, "events": f"/runs/{run_id}/events"}

    @app.get("/runs/{run_id}/events")
    async def run_events(
        run_id: str, last_event_id: Optional[str] = Header(default=None)
    ) -> Response:
        buffer = runs.get(run_id)
        if buffer is None:
            raise HTTPException(404, f"No run {run_id!r} here: start one with POST /runs.")
        after = 0
        if last_event_id is not None:
            if not last_event_id.strip().isdigit() or int(last_event_id) > len(buffer.frames):
                raise HTTPException(
                    400,
                    f"Last-Event-ID {last_event_id!r} is not an event of run {run_id!r} "
                    f"(its ids so far are 1 to {len(buffer.frames)}); reconnect without it "
                    "to get the whole run.",
                )
            after = int(last_event_id)
        if buffer.finished and after == len(buffer.frames):
            return Response(status_code=204)  # nothing more, ever: EventSource stops here
        return StreamingResponse(
            buffer.frames_after(after, ping_every),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return app


def main(port: int = 8000) -> None:
    import uvicorn

    print(f"POST http://127.0.0.1:{port}/runs, then GET the events URL it gives (Ctrl-C stops)")
    # streams still open at Ctrl-C get 5 seconds to end before the server stops anyway
    uvicorn.run(create_app(), host="127.0.0.1", port=port, timeout_graceful_shutdown=5)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 8000)
