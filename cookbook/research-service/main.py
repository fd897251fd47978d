"""The demo's research agent as a FastAPI service: two web workers, two run workers, one command.

    python cookbook/research-service/main.py            # http://127.0.0.1:8000/ (and :8001)

Roles, all in this file (the command starts the four processes as children of itself):
- `serve` (the default): the supervisor. Uses POCKETFLOW_STREAM_POSTGRES_URL and
  POCKETFLOW_STREAM_REDIS_URL, or starts throwaway servers with scripts/servers.sh and stops
  them on exit; starts two run workers with stable executor ids and two web workers; restarts
  a dead child (a run worker under the same executor id, so DBOS gives it back its segments);
  stops them all on Ctrl-C or SIGTERM.
- `worker --executor-id ID`: DistributedRuns.launch(): runs the segments of runs.
- `web --port N`: uvicorn serving `create_app()`: starts runs, relays their events from Redis
  (sse_response: Last-Event-ID resume), takes answers, shows the page.

Security (README "Security model"): run ids are unguessable; every request about a run needs
its token, HMAC-SHA256(secret, run id), as `Authorization: Bearer` or the run's cookie; an
unknown run and a wrong token get the same 404. Offline by default (the scripted model).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from fastapi import Request  # at module level: FastAPI reads the endpoints' annotations here

from pocketflow_stream.demo import build_flow, scripted_agent
from pocketflow_stream.demo.tools import Sandbox
from pocketflow_stream.llm import ScriptedModel, ToolCall
from pocketflow_stream.persist import Codecs
from pocketflow_stream.persist.runs import RunFinished, UnknownInterrupt
from pocketflow_stream.persist.store import RunNotFound

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SECRET_VARIABLE = "POCKETFLOW_STREAM_SERVICE_SECRET"
APP_NAME = "research_service"
ANSWERED_PREFIX = "research_service:answered:"  # interrupt id -> the accepted answer
ANSWER_LIMIT = 4000
SYSTEM_PROMPT = (
    "You are a research agent with tools. Use calculate for every calculation, search for "
    "facts from the bundled documents, save_file when the user asks to save or write "
    "something, ask_user when you need the user to decide. Answer briefly."
)


# -- the flow and its runs (the same in every process) -----------------------------------------


def build_runs(executor_id: Optional[str] = None) -> Any:
    """The agent's DistributedRuns on Postgres (store and DBOS) and Redis (events)."""
    from pocketflow_stream.scale.dbos_runs import DistributedRuns
    from pocketflow_stream.scale.postgres_store import PostgresStore

    postgres = os.environ["POCKETFLOW_STREAM_POSTGRES_URL"]
    delay = float(os.environ.get("RESEARCH_SERVICE_MODEL_DELAY", "0.02"))
    model = ScriptedModel(scripted_agent, chunk_size=3, delay=delay)
    sandbox = Sandbox(Path(tempfile.gettempdir()) / "research_service_files")
    flow = build_flow(model, sandbox=sandbox)
    return DistributedRuns(
        flow,
        PostgresStore(postgres),
        postgres,
        events=os.environ["POCKETFLOW_STREAM_REDIS_URL"],
        executor_id=executor_id,
        name=APP_NAME,
        queue=APP_NAME,
        polling_interval=0.1,
        codecs=CODECS,
        ttl=10.0,
    )


# the demo keeps the last reply's tool calls in `shared`: checkpoints hold them by this tag
CODECS = Codecs().register(
    "tool_call", ToolCall, lambda call: call.to_dict(), lambda plain: ToolCall(**plain)
)


def new_conversation(question: str) -> Dict[str, Any]:
    return {
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": question},
        ]
    }


# -- tokens and answers ------------------------------------------------------------------------


def run_token(secret: bytes, run_id: str) -> str:
    """The run's token: HMAC-SHA256 of its id under the web workers' shared secret."""
    return hmac.new(secret, run_id.encode(), hashlib.sha256).hexdigest()


def check_answer(answer: Any, payload: Any) -> Optional[str]:
    """Why `answer` does not fit the interrupt (None when it does). The demo's ask_user
    asks for text (its payload has no schema): a string of at most ANSWER_LIMIT characters.
    A payload with a "schema" is checked against this subset of JSON Schema: "type"
    (string, number, integer, boolean), "enum", "maxLength"."""
    schema = payload.get("schema") if isinstance(payload, dict) else None
    if not isinstance(schema, dict):
        schema = {"type": "string", "maxLength": ANSWER_LIMIT}
    types = {
        "string": lambda v: isinstance(v, str),
        "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
    }
    wanted = schema.get("type")
    if wanted in types and not types[wanted](answer):
        return f"the answer must be a {wanted} (got {type(answer).__name__})"
    if "enum" in schema and answer not in schema["enum"]:
        return f"the answer must be one of {schema['enum']!r}"
    limit = schema.get("maxLength")
    if isinstance(limit, int) and isinstance(answer, str) and len(answer) > limit:
        return f"the answer is {len(answer)} characters long; at most {limit} are taken"
    return None


# -- the web worker ----------------------------------------------------------------------------


def create_app(runs: Any = None, secret: Optional[bytes] = None) -> Any:
    """The FastAPI app of a web worker (it never launches DBOS: it enqueues through DBOS's
    client and reads the store)."""
    import redis.asyncio
    from fastapi import FastAPI
    from fastapi.responses import HTMLResponse, JSONResponse
    from starlette.concurrency import run_in_threadpool

    runs = runs or build_runs()
    key = secret or os.environ[SECRET_VARIABLE].encode()
    events = redis.asyncio.Redis.from_url(os.environ["POCKETFLOW_STREAM_REDIS_URL"])
    app = FastAPI(title="research service")

    def error(status: int, what: str, do: str, **more: Any) -> JSONResponse:
        return JSONResponse({"error": what, "what_to_do": do, **more}, status_code=status)

    def not_found(run_id: str) -> JSONResponse:
        # the same answer for a run that does not exist and a token that is not its own
        return error(
            404,
            f"no run {run_id!r} that this token may read",
            "use the run id and token POST /runs gave you (Authorization: Bearer TOKEN)",
        )

    def authorized(request: Request, run_id: str) -> bool:
        given = request.cookies.get("run_token") or ""
        header = request.headers.get("authorization") or ""
        if header.lower().startswith("bearer "):
            given = header[7:].strip()
        return hmac.compare_digest(given.encode(), run_token(key, run_id).encode())

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return (HERE / "page.html").read_text(encoding="utf-8")

    @app.get("/ready")
    async def ready() -> Dict[str, Any]:
        await events.ping()
        return {"ok": True, "pid": os.getpid()}

    @app.post("/runs", status_code=201)
    async def start(request: Request) -> Any:
        try:
            body = await request.json()
        except ValueError:
            body = None
        question = body.get("question") if isinstance(body, dict) else None
        if not isinstance(question, str) or not question.strip():
            return error(
                422,
                "the body must be a JSON object with a non-empty string 'question'",
                'send {"question": "What is 17% of 2,340? Ask me first."}',
            )
        if len(question) > ANSWER_LIMIT:
            return error(422, f"the question is over {ANSWER_LIMIT} characters", "shorten it")
        run_id = await run_in_threadpool(runs.start, new_conversation(question))
        token = run_token(key, run_id)
        response = JSONResponse(
            {"run_id": run_id, "token": token, "events": f"/runs/{run_id}/events"},
            status_code=201,
        )
        response.set_cookie(
            "run_token",
            token,
            path=f"/runs/{run_id}",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    @app.get("/runs/{run_id}")
    async def status(request: Request, run_id: str) -> Any:
        if not authorized(request, run_id):
            return not_found(run_id)
        try:
            state = await run_in_threadpool(runs.inspect, run_id)
        except RunNotFound:
            return not_found(run_id)
        return {
            "run_id": run_id,
            "status": state.status,
            "at": state.at,
            "error": state.error,
            "interrupts": [
                {"id": ask.get("id"), "payload": ask.get("payload")} for ask in state.interrupts
            ],
        }

    @app.get("/runs/{run_id}/events")
    async def relay(request: Request, run_id: str) -> Any:
        from pocketflow_stream.scale.redis_events import sse_response

        if not authorized(request, run_id):
            return not_found(run_id)
        return await sse_response(request, events, run_id)

    @app.post("/runs/{run_id}/answers")
    async def answer(request: Request, run_id: str) -> Any:
        if not authorized(request, run_id):
            return not_found(run_id)
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("interrupt_id"), str):
            return error(
                422,
                "the body must be a JSON object with 'interrupt_id' (a string) and 'answer'",
                "take the id from GET /runs/{id} (interrupts[].id) or the stream's interrupt",
            )
        if "answer" not in body:
            return error(
                422, "the body has no 'answer'", 'send {"interrupt_id": ..., "answer": ...}'
            )
        interrupt_id, value = body["interrupt_id"], body["answer"]
        accepted = {"run_id": run_id, "interrupt_id": interrupt_id, "accepted": True}
        done_key = f"{ANSWERED_PREFIX}{run_id}:{interrupt_id}"
        before = await events.get(done_key)
        if before is not None:  # answered already: the same response, nothing changes
            return repeat(json.loads(before), value, accepted)
        try:
            state = await run_in_threadpool(runs.inspect, run_id)
        except RunNotFound:
            return not_found(run_id)
        pending = {ask.get("id"): ask for ask in state.interrupts}
        if interrupt_id not in pending:
            return error(
                409,
                f"run {run_id!r} is not waiting for an answer to {interrupt_id!r}; nothing "
                "was changed",
                "answer one of the pending interrupts (GET /runs/{id})",
                pending=sorted(pending),
            )
        wrong = check_answer(value, pending[interrupt_id].get("payload"))
        if wrong is not None:
            return error(422, wrong + "; nothing was changed", "send an answer that fits")
        try:
            submission = await run_in_threadpool(runs.resume, run_id, {interrupt_id: value})
        except (UnknownInterrupt, RunFinished) as exc:  # answered meanwhile by another request
            before = await events.get(done_key)
            if before is not None:
                return repeat(json.loads(before), value, accepted)
            return error(409, str(exc), "answer one of the pending interrupts (GET /runs/{id})")
        if submission.new:
            await events.set(done_key, json.dumps({"answer": value}), ex=86_400)
        else:
            before = await events.get(done_key)
            if before is not None:
                return repeat(json.loads(before), value, accepted)
        return JSONResponse(accepted, status_code=202)

    def repeat(before: Dict[str, Any], value: Any, accepted: Dict[str, Any]) -> Any:
        if before.get("answer") != value:
            return error(
                409,
                "this interrupt was answered already, with a different answer; nothing was changed",
                "look at GET /runs/{id} for what the run waits for now",
            )
        return JSONResponse(accepted, status_code=202)

    return app


def web(port: int, host: str) -> None:
    import uvicorn

    uvicorn.run(create_app(), host=host, port=port, log_level="warning", access_log=False)


# -- the run worker ----------------------------------------------------------------------------


def worker(executor_id: str, ready_file: Optional[str]) -> None:
    # the agent ends its loop with "done", which has no successor: the PocketFlow way, which
    # warns "Flow ends: 'done' not found" at every run's end (the demo silences it too)
    warnings.filterwarnings("ignore", message="Flow ends: 'done'")
    runs = build_runs(executor_id)
    stop: List[int] = []
    signal.signal(signal.SIGTERM, lambda number, frame: stop.append(number))
    runs.launch()
    if ready_file:
        Path(ready_file).write_text(str(os.getpid()), encoding="utf-8")
    print(f"run worker {executor_id} (pid {os.getpid()}) is up", flush=True)
    try:
        while not stop:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        runs.shutdown()


# -- the supervisor ----------------------------------------------------------------------------


class Child:
    """One supervised process: its role's command line, restarted under the same arguments."""

    def __init__(self, name: str, argv: List[str]) -> None:
        self.name = name
        self.argv = argv
        self.process: Optional[subprocess.Popen[bytes]] = None
        self.restarts = 0

    def start(self) -> None:
        self.process = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), *self.argv])

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


def start_servers(folder: str) -> Tuple[Dict[str, str], str]:
    script = REPO / "scripts" / "servers.sh"
    subprocess.run(["bash", str(script), "start", folder], check=True, stdout=subprocess.DEVNULL)
    found: Dict[str, str] = {}
    for line in (Path(folder) / "env").read_text(encoding="utf-8").splitlines():
        if line.startswith("export ") and "=" in line:
            name, _, value = line[len("export ") :].partition("=")
            found[name] = value.strip().strip("'\"")
    return found, str(script)


def answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def serve(ports: List[int], host: str) -> int:
    servers: Optional[str] = None
    script = ""
    stopping: List[int] = []

    def on_signal(number: int, frame: Any) -> None:
        stopping.append(number)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    children: List[Child] = []
    try:
        if not (
            os.environ.get("POCKETFLOW_STREAM_POSTGRES_URL")
            and os.environ.get("POCKETFLOW_STREAM_REDIS_URL")
        ):
            servers = tempfile.mkdtemp(prefix="research-service-")
            print(f"starting throwaway Postgres and Redis in {servers}", flush=True)
            found, script = start_servers(servers)
            os.environ.update(found)
        os.environ.setdefault(SECRET_VARIABLE, secrets.token_hex(32))
        state = tempfile.mkdtemp(prefix="research-service-workers-")
        for number in (1, 2):
            executor = f"research-worker-{number}"
            ready = os.path.join(state, executor)
            children.append(
                Child(executor, ["worker", "--executor-id", executor, "--ready", ready])
            )
        for port in ports:
            children.append(Child(f"web:{port}", ["web", "--port", str(port), "--host", host]))
        # the first worker creates the store's and DBOS's tables before anyone else starts
        children[0].start()
        first_ready = os.path.join(state, children[0].name)
        deadline = time.monotonic() + 120
        while not os.path.exists(first_ready) and not stopping:
            if not children[0].alive() or time.monotonic() > deadline:
                print("the first run worker did not come up: see its output above", flush=True)
                return 1
            time.sleep(0.1)
        for child in children[1:]:
            child.start()
        urls = ", ".join(f"http://{host}:{port}/" for port in ports)
        for port in ports:  # announce the service once its web workers answer
            while not stopping and not answers(f"http://{host}:{port}/ready"):
                if time.monotonic() > deadline:
                    print(f"the web worker on port {port} did not come up", flush=True)
                    return 1
                time.sleep(0.1)
        print(f"research service: {urls} (Ctrl-C stops it)", flush=True)
        while not stopping:
            for child in children:
                if not child.alive() and not stopping:
                    code = child.process.returncode if child.process else None
                    child.restarts += 1
                    print(f"{child.name} exited ({code}): restarting it", flush=True)
                    child.start()
            time.sleep(0.2)
        return 0
    finally:
        for child in children:
            if child.alive():
                assert child.process is not None
                child.process.terminate()
        for child in children:
            if child.process is not None:
                try:
                    child.process.wait(10)
                except subprocess.TimeoutExpired:
                    child.process.kill()
                    child.process.wait()
        if servers is not None:
            subprocess.run(["bash", script, "stop", servers], stdout=subprocess.DEVNULL)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    roles = parser.add_subparsers(dest="role")
    serving = roles.add_parser("serve", help="the four processes (the default)")
    serving.add_argument("--ports", default="8000,8001", help="the web workers' ports")
    serving.add_argument("--host", default="127.0.0.1")
    web_role = roles.add_parser("web")
    web_role.add_argument("--port", type=int, required=True)
    web_role.add_argument("--host", default="127.0.0.1")
    worker_role = roles.add_parser("worker")
    worker_role.add_argument("--executor-id", required=True)
    worker_role.add_argument("--ready", default=None)
    args = parser.parse_args(argv)
    if args.role == "web":
        web(args.port, args.host)
        return 0
    if args.role == "worker":
        worker(args.executor_id, args.ready)
        return 0
    ports = [int(port) for port in getattr(args, "ports", "8000,8001").split(",")]
    return serve(ports, getattr(args, "host", "127.0.0.1"))


if __name__ == "__main__":
    sys.exit(main())
