"""The flagship demo, tried as a newcomer would: it answers the question asked, offline or with
a key, ends quietly on Ctrl-C and on a closed pipe, and says in one line what to do when the
provider cannot be used. Its tools cannot be turned against the machine."""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pocketflow_stream import Paused, StreamFlow, demo
from pocketflow_stream.demo import Act, Sandbox, build_flow
from pocketflow_stream.demo.offline import expression_in, search_terms_in
from pocketflow_stream.demo.tools import SandboxError, calculate
from pocketflow_stream.llm import ScriptedModel, ToolCall, ToolCallSpec, Turn
from pocketflow_stream.ui import render

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def no_keys(monkeypatch):
    for key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "NO_COLOR"):
        monkeypatch.delenv(key, raising=False)


def offline_env():
    return {
        key: value
        for key, value in os.environ.items()
        if key not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")
    }


def run_demo(capsys, tmp_path, *args):
    code = demo.main(["--fast", "--sandbox", str(tmp_path), *args])
    return code, capsys.readouterr()


# -- the offline model answers the question asked ----------------------------------------------


def test_the_default_question_calculates_then_saves_a_note(no_keys, capsys, tmp_path):
    code, captured = run_demo(capsys, tmp_path)
    assert code == 0 and captured.err == ""
    lines = captured.out.splitlines()
    assert lines[0].startswith("(offline: the built-in scripted model, not an LLM")
    headers = [line for line in lines if line.startswith("[")]
    assert headers == ["[Plan]", "[Act]", "[Plan]", "[Act]", "[Plan]"]
    assert '-> calculate({"expression": "17 / 100 * 2340"})' in captured.out
    assert "calculate -> 397.8" in lines  # the tool really ran on the streamed arguments
    assert any(line.startswith("thinking: ") for line in lines)
    assert "= 397.8." in lines[-2]
    assert lines[-1] == "(flow finished with action 'done' after 7 messages)"
    assert "397.8" in (tmp_path / "notes.md").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "question, tools, answer",
    [
        ("What is 6 x 7?", ["calculate"], "6 * 7 = 42."),
        ("what's 12 plus 30 divided by 2?", ["calculate"], "= 27."),
        ("How much heavier is Jupiter than Earth?", ["search"], "318 times the mass of Earth"),
        ("How much caffeine is in an espresso?", ["search"], "63 milligrams"),
        (
            "A queen bee lays 2,000 eggs a day: what is 2,000 times 30? Write it to bees.txt",
            ["calculate", "search", "save_file"],
            "saved bees.txt",
        ),
        ("Hello there!", [], "I am the offline scripted model"),
    ],
)
def test_the_offline_model_plans_with_the_tools_the_question_needs(
    no_keys, capsys, tmp_path, question, tools, answer
):
    code, captured = run_demo(capsys, tmp_path, question)
    assert code == 0, captured.err
    called = re.findall(r"^-> (\w+)\(", captured.out, re.M)
    assert called == tools
    final = captured.out.splitlines()[-2]
    assert answer in final
    assert (tmp_path / "bees.txt").exists() == ("save_file" in tools)


def test_the_words_of_a_question_pick_its_expression_and_search_terms():
    assert expression_in("What is 17% of 2,340?") == "17 / 100 * 2340"
    assert expression_in("(3 + 4) * 2 please") == "(3 + 4) * 2"
    assert expression_in("Mars has 2 moons") is None  # numbers, but nothing to work out
    assert search_terms_in("Tell me about Jupiter and Mars, then save a note") == [
        "jupiter",
        "mar",
    ]


def tools_used(shared):
    return [
        call["function"]["name"]
        for message in shared["messages"]
        for call in message.get("tool_calls") or ()
    ]


@pytest.mark.filterwarnings("ignore:Flow ends")
def test_ask_user_pauses_the_run_and_the_answer_steers_the_plan(no_keys, tmp_path):
    shared = demo.new_conversation("Ask me what to look up first.")
    flow = build_flow(ScriptedModel(demo.scripted_agent), sandbox=Sandbox(tmp_path))
    stream = flow.run_stream(shared)
    items = list_until_return(stream)
    paused = items.pop()
    interrupt = items[-1]
    assert isinstance(paused, Paused) and interrupt.type == "interrupt"
    assert (
        interrupt.path == ("Act",) and interrupt.payload["question"] == "What should I look into?"
    )
    list_until_return(paused.resume({interrupt.id: "honeybees"}))
    assert tools_used(shared) == ["ask_user", "search"]
    assert "You told me: honeybees." in shared["messages"][-1]["content"]


def list_until_return(stream):
    """The stream's items, then what the walk returned."""
    items = []
    try:
        while True:
            items.append(next(stream))
    except StopIteration as stop:
        items.append(stop.value)
    return items


@pytest.mark.filterwarnings("ignore:Flow ends")
def test_an_ask_function_answers_without_pausing(no_keys, tmp_path):
    asked = []
    shared = demo.new_conversation("Ask me what to look up first.")
    ask = lambda question: asked.append(question) or "coffee"  # noqa: E731
    build_flow(ScriptedModel(demo.scripted_agent), sandbox=Sandbox(tmp_path), ask=ask).run(shared)
    assert asked == ["What should I look into?"] and tools_used(shared) == ["ask_user", "search"]


@pytest.mark.parametrize("flags", [[], ["--async"]], ids=["sync", "async"])
def test_in_the_terminal_the_question_is_answered_on_stdin(flags, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pocketflow_stream", "--fast", "--sandbox", str(tmp_path)]
        + ["Ask me what to look up, then save it", *flags],
        cwd=ROOT,
        env=offline_env(),
        input="honeybees\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and result.stderr == ""
    lines = result.stdout.splitlines()
    asked = lines.index("[Act] paused: What should I look into?")
    assert lines[asked + 1 : asked + 3] == ["answer> honeybees", "[Act]"]
    assert "ask_user -> honeybees" in lines
    assert "- ask_user: honeybees" in (tmp_path / "notes.md").read_text()


def test_the_async_demo_streams_the_same_as_the_sync_one(no_keys, capsys, tmp_path):
    """--async runs the agent as an AsyncStreamFlow (AsyncLLMNode plan, sync StreamNode act),
    iterated from sync code through run_stream_sync: what it shows is identical."""

    def shown(flags):
        assert demo.main(["--fast", "--sandbox", str(tmp_path), "--events", *flags]) == 0
        return re.sub(r"\d+ ms", "_ ms", capsys.readouterr().out)  # durations differ

    sync_out = shown([])
    assert "(Plan -> 'act', _ ms)" in sync_out
    assert "(flow Agent finished -> 'done', _ ms)" in sync_out
    assert "(flow_finished: )" not in sync_out
    assert shown(["--async"]) == sync_out


@pytest.mark.parametrize("module", ["pocketflow_stream", "pocketflow_stream.demo"])
def test_the_quick_start_command_works_without_any_key(module, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", module, "--fast", "--sandbox", str(tmp_path)],
        cwd=ROOT,
        env=offline_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("(offline: the built-in scripted model")
    assert "[Act]" in result.stdout and "\033[" not in result.stdout  # a pipe: plain text
    assert result.stderr == ""  # no warnings, no tracebacks


# -- arguments ---------------------------------------------------------------------------------


def test_usage_names_the_command_and_the_question_has_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        demo.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m pocketflow_stream ")
    assert re.search(r"question\s+what to ask the agent", out)


@pytest.mark.parametrize("question", ["", "   "])
def test_an_empty_question_is_refused(question, capsys):
    with pytest.raises(SystemExit) as exit_:
        demo.main([question])
    assert exit_.value.code == 2
    assert "the question is empty" in capsys.readouterr().err


# -- ending quietly ------------------------------------------------------------------------------


def start_demo(*flags):
    return subprocess.Popen(
        [sys.executable, "-m", "pocketflow_stream", *flags],
        cwd=ROOT,
        env={**offline_env(), "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a shell without job control starts background commands with SIGINT ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def read_until_streaming(process):
    """Reads stdout until the first streamed line (the model's thinking) has arrived."""
    for line in process.stdout:
        if line.startswith("thinking: "):
            return line
    raise AssertionError(f"the demo ended before streaming: {process.stderr.read()}")


@pytest.mark.parametrize("flags", [[], ["--async"]], ids=["sync", "async"])
def test_ctrl_c_mid_stream_ends_quietly_with_130(flags, tmp_path):
    process = start_demo("--sandbox", str(tmp_path), *flags)  # paced: streams for seconds
    try:
        read_until_streaming(process)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    assert stderr == ""
    assert "(flow finished" not in stdout


@pytest.mark.parametrize("flags", [[], ["--async"]], ids=["sync", "async"])
def test_a_closed_pipe_ends_quietly_with_141(flags, tmp_path):
    process = start_demo("--sandbox", str(tmp_path), *flags)
    try:
        read_until_streaming(process)
        process.stdout.close()  # `| head` has read what it wanted
        stderr = process.stderr.read()
        process.wait(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 141
    assert stderr == ""


# -- a real provider ---------------------------------------------------------------------------


def test_a_key_without_its_package_says_to_install_the_extra(monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setitem(sys.modules, "openai", None)  # `import openai` raises ImportError
    assert demo.main(["--fast", "What is 6 x 7?"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert "OPENAI_API_KEY is set but the 'openai' package is not installed" in line
    assert "pip install 'pocketflow-stream[openai]'" in line and "--offline" in line
    assert demo.main(["--fast", "--offline", "What is 6 x 7?"]) == 0  # what it suggests works


@pytest.mark.parametrize("flags", [[], ["--async"]], ids=["sync", "async"])
def test_an_unreachable_server_is_one_line_about_the_base_url(flags, monkeypatch, capsys):
    closed = socket.socket()  # bound, never listening: connections are refused
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    try:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{port}/v1")
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
        assert demo.main(["--fast", "What is 6 x 7?", *flags]) == 1
    finally:
        closed.close()
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0] == (
        f"(model: OpenAI gpt-4o-mini at http://127.0.0.1:{port}/v1/)"
    )
    (line,) = captured.err.splitlines()
    assert line.startswith("error: cannot reach the OpenAI API at http://127.0.0.1:")
    assert "check the base URL (OPENAI_BASE_URL)" in line and "--offline" in line


def chat_chunk(delta, finish_reason=None):
    return {
        "id": "chatcmpl-demo",
        "object": "chat.completion.chunk",
        "created": 1727000000,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def tool_call_turn(text, call_id, name, argument_pieces):
    chunks = [chat_chunk({"role": "assistant", "content": text})]
    head = {"index": 0, "id": call_id, "type": "function"}
    for number, piece in enumerate(argument_pieces):
        function = {"name": name, "arguments": piece} if number == 0 else {"arguments": piece}
        call = {**head, "function": function} if number == 0 else {"index": 0, "function": function}
        chunks.append(chat_chunk({"tool_calls": [call]}))
    return chunks + [chat_chunk({}, "tool_calls")]


@pytest.mark.parametrize("flags", [[], ["--async"]], ids=["sync", "async"])
def test_with_an_openai_key_the_demo_uses_the_real_client(
    flags, replay_server, monkeypatch, capsys, tmp_path
):
    """OPENAI_API_KEY set: the demo streams from the OpenAI SDK (here parsing the loopback
    server's real SSE bytes through OPENAI_BASE_URL) instead of the scripted model; with
    --async, from the AsyncOpenAI client. The first line names the provider and model."""
    from pocketflow_stream.llm.replay_server import openai_chat_replay

    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("OPENAI_BASE_URL", replay_server.openai_base_url)
    monkeypatch.setenv("POCKETFLOW_STREAM_OPENAI_MODEL", "gpt-test")
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    replay_server.enqueue(
        openai_chat_replay(
            tool_call_turn("Calculating.", "call_a", "calculate", ['{"expression": "6', ' * 7"}'])
        ),
        openai_chat_replay(
            tool_call_turn(
                "Noting.", "call_b", "save_file", ['{"path": "t.md", ', '"content": "42"}']
            )
        ),
        openai_chat_replay([chat_chunk({"content": "It is 42."}), chat_chunk({}, "stop")]),
    )

    assert demo.main(["--fast", "--sandbox", str(tmp_path), "What is 6 x 7?", *flags]) == 0

    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("(model: OpenAI gpt-test at http://127.0.0.1:")
    assert "offline" not in out
    assert '-> calculate({"expression": "6 * 7"})' in out
    assert "calculate -> 42" in out and "It is 42." in out
    requests = replay_server.wait_for_requests(3)
    assert requests[0].body["stream"] is True and requests[0].body["model"] == "gpt-test"
    assert requests[0].body["tools"] == demo.TOOLS
    tool_results = [m for m in requests[2].body["messages"] if m["role"] == "tool"]
    assert tool_results[0]["content"] == "42"
    assert tool_results[1]["content"].startswith("saved t.md (2 bytes)")
    assert (tmp_path / "t.md").read_text() == "42"


# -- safety ------------------------------------------------------------------------------------


def test_the_calculator_refuses_anything_but_arithmetic():
    assert calculate("(1 + 2) * 3 ** 2 - -1") == 28
    assert calculate("2,340 * 2") == 4680
    bad = ["__import__('os')", "x + 1", "len('a')", "(1).real", "9 ** 9 ** 9", "'a' * 3"]
    bad += ["((10 ** 1000) ** 1000) ** 1000", "(2 ** 1000) ** 200"]  # numbers too big to hold
    for expression in bad:
        with pytest.raises(ValueError):
            calculate(expression)


def test_save_file_cannot_leave_its_sandbox(tmp_path):
    root = tmp_path / "sandbox"
    outside = tmp_path / "outside"
    outside.mkdir()
    sandbox = Sandbox(root)
    assert sandbox.save("notes/today.md", "hi").startswith("saved notes/today.md (2 bytes)")
    assert (root / "notes" / "today.md").read_text() == "hi"
    (root / "out").symlink_to(outside)  # a folder symlink leading out
    (root / "link.md").symlink_to(outside / "target.md")  # a file symlink
    refused = {
        "/etc/passwd": "absolute path",
        str(outside / "x.md"): "absolute path",
        "../outside/x.md": "'..'",
        "notes/../../outside/x.md": "'..'",
        "..\\outside\\x.md": "'..'",
        "C:\\x.md": "absolute path",
        "~/x.md": "absolute path",
        "out/x.md": "leads out of the sandbox through a symlink",
        "link.md": "symlink",
        "": "a file name is needed",
        ".": "a file name is needed",
    }
    for path, reason in refused.items():
        with pytest.raises(SandboxError, match=re.escape(reason)):
            sandbox.save(path, "escaped")
    assert list(outside.iterdir()) == []  # nothing was written outside


def call(name, raw, valid, arguments=None, error=None):
    return ToolCall(0, "call_0", name, arguments, raw, valid, error)


def test_a_tool_call_whose_arguments_did_not_parse_is_never_run(tmp_path):
    ran = []
    act = Act(Sandbox(tmp_path), ask=lambda question: ran.append(question) or "yes")
    broken = call("save_file", '{"path": "x.md", "content": "hal', False, error="cut off")
    (result,) = list(act.exec_stream([broken]))
    assert result.is_error and "not valid JSON" in result.content and "not run" in result.content
    assert list(tmp_path.iterdir()) == []
    asking = call("ask_user", '{"question": "ok?"', False, error="cut off")
    assert list(act.exec_stream([asking]))[0].is_error and ran == []


@pytest.mark.filterwarnings("ignore:Flow ends")
def test_a_truncated_call_from_the_model_is_shown_and_answered_with_an_error(tmp_path):
    model = ScriptedModel(
        [
            Turn(tool_calls=[ToolCallSpec("save_file", '{"path": "x.md", "content": "hal')]),
            Turn(text="Sorry."),
        ]
    )
    shared = demo.new_conversation("save it")
    out = io.StringIO()
    render(build_flow(model, sandbox=Sandbox(tmp_path)).run_stream(shared), out, color=False)
    shown = out.getvalue()
    assert '-> save_file({"path": "x.md", "content": "hal)  [invalid arguments: not run' in shown
    assert "save_file -> error: the arguments are not valid JSON" in shown
    assert not (tmp_path / "x.md").exists()
    assert isinstance(build_flow(model), StreamFlow)


# -- the same agent in a browser chat --------------------------------------------------------


def test_ui_serves_the_same_agent_on_loopback_only(tmp_path):
    gradio_client = pytest.importorskip("gradio_client")  # the test extra has it on 3.10+
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "pocketflow_stream", "--ui", "--fast", "--port", str(port)]
        + ["--sandbox", str(tmp_path)],
        cwd=ROOT,
        env={**offline_env(), "PYTHONUNBUFFERED": "1", "GRADIO_ANALYTICS_ENABLED": "False"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        first = process.stdout.readline()
        assert first.startswith("(offline: the built-in scripted model"), process.stderr.read()
        assert (
            process.stdout.readline() == f"(the chat: http://127.0.0.1:{port}; Ctrl-C stops it)\n"
        )
        client = connect(gradio_client, f"http://127.0.0.1:{port}/", process, port)
        messages = client.predict("What is 6 x 7?", api_name="/chat")
        assert messages[-1]["content"] == "6 * 7 = 42."
        tool = next(m for m in messages if m["metadata"].get("title", "").endswith("calculate"))
        assert "42" in tool["content"] and tool["metadata"]["status"] == "done"
        asking = client.predict("Ask me what to look up first", api_name="/chat")
        assert "What should I look into?" in asking[-1]["content"]  # ask_user: an interrupt
        answered = client.predict("honeybees", api_name="/chat")  # the next message answers
        assert "You told me: honeybees." in answered[-1]["content"]
        elsewhere = outside_address()
        if elsewhere is not None:  # the app is not reachable from the network
            with pytest.raises(OSError):
                socket.create_connection((elsewhere, port), timeout=5).close()
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode in (0, 130)


def connect(gradio_client, url, process, port):
    """A client once the server answers (a bounded poll: 240 connection attempts)."""
    for _ in range(240):
        if process.poll() is not None:
            raise AssertionError(f"the app exited: {process.stderr.read()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            time.sleep(0.25)
            continue
        return gradio_client.Client(url, verbose=False)
    raise AssertionError("the app never listened")


def outside_address():
    """An address of this machine that is not loopback, if it has one."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.connect(("192.0.2.1", 9))  # no packet is sent: it only picks a source address
            address = udp.getsockname()[0]
    except OSError:
        return None
    return None if address.startswith("127.") else address


def test_the_package_command_dispatches_runs_to_the_persist_cli(capsys):
    from pocketflow_stream.__main__ import main

    assert main(["runs", "--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: python -m pocketflow_stream runs")
