"""Every cookbook recipe runs offline and does what its README says.

A recipe is a folder `cookbook/<name>/` with a README.md and a main.py; the tests import the
main.py (or run it as a program where a terminal or stdin is the point) and check its outcome.
"""

from __future__ import annotations

import importlib.util
import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import anyio
import pytest

COOKBOOK = Path(__file__).resolve().parent.parent / "cookbook"
RECIPES = sorted(path.name for path in COOKBOOK.iterdir() if (path / "main.py").exists())


def recipe(name: str):
    spec = importlib.util.spec_from_file_location(
        f"recipe_{name.replace('-', '_')}", COOKBOOK / name / "main.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- the cookbook's shape ---------------------------------------------------------------------


def test_every_recipe_folder_has_a_readme_and_is_in_the_index():
    index = (COOKBOOK / "README.md").read_text(encoding="utf-8")
    folders = sorted(path.name for path in COOKBOOK.iterdir() if path.is_dir())
    for name in folders:
        if name.startswith((".", "__")):
            continue
        assert (COOKBOOK / name / "README.md").exists(), f"cookbook/{name} has no README.md"
        assert f"]({name}/)" in index, f"cookbook/README.md does not list {name}"
    assert not list(COOKBOOK.glob("*.py")), "recipes live in folders: cookbook/<name>/main.py"


def test_the_main_readme_links_the_cookbook():
    readme = (COOKBOOK.parent / "README.md").read_text(encoding="utf-8")
    assert "## Cookbook" in readme and "](cookbook/" in readme


@pytest.mark.parametrize("name", RECIPES)
def test_recipes_use_public_names_only(name):
    source = (COOKBOOK / name / "main.py").read_text(encoding="utf-8")
    assert not re.search(r"^\s*(from|import) tests\b", source, re.M), "no imports from tests"
    private = re.findall(r"from pocketflow_stream[\w.]* import [^\n]*\b(_\w+)", source)
    private += re.findall(r"pocketflow_stream[\w.]*\._\w+", source)
    assert not private, f"cookbook/{name} uses private names {private}"


# --- llm-streaming ------------------------------------------------------------------------------


class Output:
    """A child's stdout read in a thread, so the test can wait for text with a deadline."""

    def __init__(self, stream) -> None:
        self.text = ""
        self._parts: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for part in iter(lambda: os.read(stream.fileno(), 1024), b""):
            self._parts.put(part.decode("utf-8", "replace"))
        self._parts.put(None)

    def wait_for(self, predicate, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while not predicate(self.text):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"timed out; output so far: {self.text!r}"
            try:
                part = self._parts.get(timeout=remaining)
            except queue.Empty:
                continue
            assert part is not None, f"the program ended; output: {self.text!r}"
            self.text += part
        return self.text

    def rest(self) -> str:
        self._thread.join(timeout=30)
        while not self._parts.empty():
            part = self._parts.get()
            if part is not None:
                self.text += part
        return self.text


def test_llm_streaming_stops_at_enter_and_closes_the_node():
    module = recipe("llm-streaming")
    program = subprocess.Popen(
        [sys.executable, "-u", str(COOKBOOK / "llm-streaming" / "main.py")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        output = Output(program.stdout)
        started = module.ANSWER[:20]
        output.wait_for(lambda text: started in text)  # mid-stream ...
        program.stdin.write(b"\n")  # ... press Enter
        program.stdin.flush()
        assert program.wait(timeout=30) == 0, program.stderr.read().decode()
    finally:
        if program.poll() is None:
            program.kill()
            program.wait()
    text = output.rest()
    header = f"{module.QUESTION}  (press Enter to stop)\n"
    answer = text[len(header) :].split("\n[stream closed]", 1)[0]
    assert started in answer and module.ANSWER.startswith(answer)
    assert len(answer) < len(module.ANSWER) // 2  # stopped early, long before the end
    # nothing after the stop but the node's `finally`, and post never ran
    assert text == header + answer + "\n[stream closed]\n[stopped]\n"


def test_llm_streaming_shows_the_whole_answer_when_not_stopped(capsys):
    module = recipe("llm-streaming")
    from pocketflow_stream.llm import ScriptedModel

    read, write = os.pipe()  # stdin that stays open and silent: nobody presses Enter
    saved = sys.stdin
    sys.stdin = os.fdopen(read)
    try:
        shown = module.main(ScriptedModel([module.ANSWER], chunk_size=7))
    finally:
        sys.stdin = saved
        os.close(write)
    assert shown == module.ANSWER
    assert capsys.readouterr().out.endswith(module.ANSWER + "\n[stream closed]\n")


# --- agent ------------------------------------------------------------------------------------


def test_agent_calls_the_tool_and_answers_from_its_result(capsys):
    assert recipe("agent").main() == "In Paris it is 18°C, light rain."
    out = capsys.readouterr().out.splitlines()
    assert out[1:] == [
        "[Plan] reasoning: I need the current weather.",
        '[Plan] tool_call_start: weather{"city": "Paris"}',
        "[Act] weather -> 18°C, light rain",
        "[Plan] text: In Paris it is 18°C, light rain.",
    ]


def test_agent_runs_a_real_model_shape_too():
    # any model with stream(messages, tools=...) fits; this one answers at once
    from pocketflow_stream.llm import ScriptedModel

    model = ScriptedModel(["No tools needed."])
    assert recipe("agent").main(model) == "No tools needed."
    assert model.calls[0]["tools"][0]["function"]["name"] == "weather"


# --- tool-call-streaming ----------------------------------------------------------------------


def test_tool_call_streaming_shows_each_line_before_the_call_is_complete(tmp_path):
    module = recipe("tool-call-streaming")
    result = module.main(tmp_path)
    assert "".join(result["lines"]) == module.POEM
    # the first line was on screen when less than half of the arguments had arrived
    assert result["received"][0] < result["total"] // 2
    assert result["received"] == sorted(result["received"])
    assert result["saved"] == [(tmp_path / "poem.txt").resolve()]
    assert (tmp_path / "poem.txt").read_text(encoding="utf-8") == module.POEM


def test_tool_call_streaming_never_runs_a_call_that_leaves_the_folder(tmp_path, capsys):
    module = recipe("tool-call-streaming")
    from pocketflow_stream import StreamFlow
    from pocketflow_stream.llm import ScriptedModel, ToolCallSpec, Turn

    escape = ToolCallSpec("save_file", {"path": "../outside.txt", "content": "x"})
    broken = ToolCallSpec("save_file", '{"path": "a.txt", "content": "cut of')
    write = module.Write(ScriptedModel([Turn(tool_calls=[escape, broken])]))
    write - "save" >> module.SaveFile()
    folder = tmp_path / "sandbox"
    folder.mkdir()
    shared = {"messages": [{"role": "user", "content": "x"}], "folder": folder}
    StreamFlow(start=write).run(shared)
    assert shared["saved"] == [] and not (tmp_path / "outside.txt").exists()
    assert not list(folder.iterdir())
    out = capsys.readouterr().out
    assert "'../outside.txt' is outside" in out and "not run: save_file(" in out


# --- nested-flows, push-callbacks, batch-streams ----------------------------------------------


def test_nested_flows_tag_chunks_with_their_path_and_the_sub_flow_action_drives_the_outer():
    result = recipe("nested-flows").main()
    assert [path for path, _ in result["chunks"]] == [
        ("Research", "Outline"),
        ("Research", "Outline"),
        ("Research", "Draft"),
        ("Research", "Draft"),
        ("Review",),
    ]
    assert result["verdict"] == "Looks good (12 words)."  # Review ran: Research said "review"
    assert [path[0] for path, _ in result["research_only"]] == ["Research"] * 4


def test_push_callbacks_receive_only_the_chosen_nodes_chunks():
    assert recipe("push-callbacks").main() == ["a", "polished", "draft"]


def test_batch_streams_tag_each_chunk_with_its_batch_params():
    assert recipe("batch-streams").main() == {
        "French": ["hello", "in", "French"],
        "Quechua": ["hello", "in", "Quechua"],
    }


# --- parallel-batch-streaming -----------------------------------------------------------------


def interleaved(labels, keys) -> bool:
    """Every key's first label comes before any key's last one."""
    firsts = [labels.index(key) for key in keys]
    lasts = [len(labels) - 1 - labels[::-1].index(key) for key in keys]
    return max(firsts) < min(lasts)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_parallel_batch_streaming_interleaves_tagged_chunks(backend, capsys):
    module = recipe("parallel-batch-streaming")
    result = anyio.run(module.main, 0, backend=backend)
    assert result == {"summaries": module.SUMMARIES, "greetings": module.GREETINGS}
    out = capsys.readouterr().out
    documents, languages = out.split("\n\n")
    for part, keys in ((documents, module.DOCUMENTS), (languages, module.GREETINGS)):
        tagged = [line for line in part.splitlines() if line.startswith("[")]
        labels = [line[1:].split("]")[0].strip() for line in tagged]
        assert set(labels) == set(keys) and interleaved(labels, list(keys))
    for title, summary in module.SUMMARIES.items():
        assert f"{title}: {summary}" in out


# --- fastapi-sse --------------------------------------------------------------------------------


class Server:
    """The recipe's app served by uvicorn on 127.0.0.1 (a free port), in a thread."""

    def __init__(self, app) -> None:
        import uvicorn

        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]})

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:  # bounded poll: uvicorn has no "started" event
            assert self.thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc_info) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.socket.close()
        assert not self.thread.is_alive(), "uvicorn did not stop"


def read_events(client, url, last_event_id=None, count=None):
    """Reads server-sent events over one connection: all of them, or `count` and hang up."""
    headers = {"Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    events = []
    with client.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        fields: dict = {}
        for line in response.iter_lines():
            if line.startswith(":"):  # a comment (keep-alive): no event
                continue
            if line:
                name, _, value = line.partition(": ")
                fields[name] = value
                continue
            if fields:
                events.append(fields)
            fields = {}
            if len(events) == count:
                break  # leaving the block drops the connection mid-stream
    return events


def text_of(events) -> str:
    import json

    text = ""
    for event in events:
        data = json.loads(event["data"])
        if event["event"] == "chunk" and data["data"]["type"] == "text":
            text += data["data"]["text"]
    return text


ANSWER = "The first words arrive at once. The rest comes after the pause, and none is lost."


class HeldModel:
    """The scripted answer, held after `hold_after` deltas until the test releases it, so the
    test knows the run is still going while it reads, drops and reconnects."""

    def __init__(self, hold_after: int) -> None:
        from pocketflow_stream.llm import ScriptedModel

        self.scripted = ScriptedModel(lambda messages, tools: ANSWER, chunk_size=4)
        self.hold_after = hold_after
        self.released = threading.Event()  # set from the test's thread
        self.holding = threading.Event()

    async def astream(self, messages, *, tools=None, **options):
        made = 0
        async for delta in self.scripted.astream(messages, tools=tools, **options):
            if made == self.hold_after:
                self.holding.set()
                while not self.released.is_set():  # bounded by the test's release
                    await anyio.sleep(0.005)
            made += 1
            yield delta


def quiet_stream_pings(client, url, after) -> bool:
    """While the run is held, a stream gets the frames made so far, then a keep-alive
    comment (not the end: the stream ends only with the run)."""
    with client.stream("GET", url, headers={"Last-Event-ID": after}) as response:
        for line in response.iter_lines():
            if line == ": ping":
                return True
    return False


def test_fastapi_sse_resumes_with_last_event_id_without_gap_or_duplicate():
    import httpx

    module = recipe("fastapi-sse")
    model = HeldModel(hold_after=8)
    with Server(module.create_app(model, ping_every=0.05)) as server:
        try:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                started = client.post("/runs", json={"question": "Why stream?"})
                assert started.status_code == 201
                url = started.json()["events"]

                # live: these arrive while the model is held, long before the run can end
                first = read_events(client, url, count=5)  # then the connection drops
                assert [event["id"] for event in first] == ["1", "2", "3", "4", "5"]
                assert first[0]["event"] == "node_started"
                assert model.holding.wait(timeout=30) and not model.released.is_set()
                assert quiet_stream_pings(client, url, after=first[-1]["id"])

                model.released.set()  # the run goes on with nobody connected ...
                rest = read_events(client, url, last_event_id=first[-1]["id"])  # ... resumed
                ids = [int(event["id"]) for event in first + rest]
                assert ids == list(range(1, len(ids) + 1))  # no gap, no duplicate
                assert [event["event"] for event in rest[-2:]] == ["flow_finished", "end"]
                assert text_of(first + rest) == ANSWER

                late = read_events(client, url)  # after the end: the whole run
                assert late == first + rest

                # a reconnect after the end: 204 tells an EventSource to stop reconnecting
                again = client.get(url, headers={"Last-Event-ID": rest[-1]["id"]})
                assert again.status_code == 204
                wrong = client.get(url, headers={"Last-Event-ID": "9999"})
                assert wrong.status_code == 400 and "9999" in wrong.json()["detail"]
                missing = client.get("/runs/nope/events")
                assert missing.status_code == 404 and "POST /runs" in missing.json()["detail"]
        finally:
            model.released.set()


def test_fastapi_sse_each_run_has_its_own_buffer_and_ids():
    import json

    import httpx

    module = recipe("fastapi-sse")
    with Server(module.create_app(delay=0.005)) as server:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            urls = [client.post("/runs", json={"question": q}).json()["events"] for q in "ab"]
            runs = [read_events(client, url) for url in urls]
    for question, events in zip("ab", runs):  # each run its own buffer and ids
        assert [int(event["id"]) for event in events] == list(range(1, len(events) + 1))
        reasoning = "".join(
            json.loads(e["data"])["data"]["text"]
            for e in events
            if e["event"] == "chunk" and json.loads(e["data"])["data"]["type"] == "reasoning"
        )
        assert reasoning == f"The user asks: {question} Keep it short."


# --- visualisation ------------------------------------------------------------------------------


def test_visualisation_draws_the_flow_and_the_command_line_draws_the_same(tmp_path, capsys):
    module = recipe("visualisation")
    text = module.main(tmp_path / "flow.md")
    assert capsys.readouterr().out == text
    lines = [line.strip() for line in text.splitlines()]
    assert lines[0] == "flowchart TD"
    assert 'subgraph Agent["Agent"]' in lines  # the nested flow
    assert 'Agent__Plan -->|"act"| Agent__Act' in lines  # actions as edge labels
    assert "Agent__Act --> Agent__Plan" in lines  # the loop back
    assert 'Agent -->|"publish"| Publish' in lines  # the sub-flow's action, outside
    assert any("FetchSources" in line and "async parallel batch" in line for line in lines)
    assert (tmp_path / "flow.md").read_text(encoding="utf-8") == f"```mermaid\n{text}```\n"

    command = [sys.executable, "-m", "pocketflow_stream", "mermaid", "main:build", "--markdown"]
    drawn = subprocess.run(
        command, cwd=COOKBOOK / "visualisation", capture_output=True, text=True, timeout=60
    )
    assert drawn.returncode == 0, drawn.stderr
    assert drawn.stdout == f"```mermaid\n{text}```\n"
