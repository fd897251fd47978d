"""The terminal view: node headers, answer, thinking, tool calls and results, progress — written
as the items arrive, coloured on a terminal only, plain on a pipe or with NO_COLOR."""

from __future__ import annotations

import io
import os
import pty
import select
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pocketflow_stream import BatchNode, Node, StreamFlow, StreamNode
from pocketflow_stream.llm import (
    Finish,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
)
from pocketflow_stream.ui import TerminalRenderer, ToolResult, render

ROOT = Path(__file__).resolve().parent.parent


class Talk(StreamNode):
    def exec_stream(self, prep_res):
        yield ReasoningDelta("why ")
        yield ReasoningDelta("not")
        yield TextDelta("Hello ")
        yield TextDelta("world")
        yield ToolCallStart(0, "c1", "save")
        yield ToolCallDelta(0, '{"a":')
        yield ToolCallDelta(0, " 1}")
        yield ToolCallEnd(0)
        yield Usage(input_tokens=3, output_tokens=4)
        yield Finish("length")
        return "ok"


def test_render_writes_a_header_per_node_and_keeps_reasoning_apart():
    out = io.StringIO()
    flow = StreamFlow(start=StreamFlow(start=Talk(), name="Agent"))
    assert render(flow.run_stream({}), out, color=False) is None
    assert out.getvalue().splitlines() == [
        "[Agent > Talk]",
        "thinking: why not",
        "Hello world",
        '-> save({"a": 1})',
        "(stopped: length)",
    ]


def test_the_renderer_is_a_push_callback_too_and_shows_events_when_asked():
    out = io.StringIO()
    renderer = TerminalRenderer(out, color=False, events=True)
    Talk().run({}, on_chunk=renderer, on_event=renderer)
    renderer.finish()
    text = out.getvalue()
    assert text.startswith("(node_started: Talk)\n[Talk]\n")
    assert "(Talk -> None," in text
    assert "(flow_finished: )" not in text


def test_color_is_only_used_when_asked_or_on_a_tty(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    out = io.StringIO()
    render(Talk().run_stream({}), out, color=True)
    assert "\033[2mwhy \033[0m" in out.getvalue()
    plain = io.StringIO()
    render(Talk().run_stream({}), plain)  # StringIO is not a tty
    assert "\033[" not in plain.getvalue()


def test_plain_values_from_any_node_are_shown_as_text():
    class Count(StreamNode):
        def exec_stream(self, prep_res):
            yield "one "
            yield "two"

    out = io.StringIO()
    first = Count()
    first >> Node()
    render(StreamFlow(start=first).run_stream({}), out, color=False)
    assert out.getvalue() == "[Count]\none two\n"


def test_tool_results_invalid_calls_retries_and_progress():
    class Plan(StreamNode):
        def exec_stream(self, prep_res):
            yield ToolCallStart(0, "c1", "calculate")
            yield ToolCallDelta(0, '{"expression": "6 * 7"}')
            yield ToolCallEnd(0)
            yield ToolCallStart(1, "c2", "save_file")
            yield ToolCallDelta(1, '{"path": "a.md", "content": "cut')
            yield ToolCallEnd(1)

    class Act(StreamNode):
        def exec_stream(self, prep_res):
            yield ToolResult("c1", "42", name="calculate")
            yield ToolResult("c2", "error: not run", name="save_file", is_error=True)

    plan, act = Plan(), Act()
    plan >> act
    out = io.StringIO()
    renderer = TerminalRenderer(out, color=False)
    for item in StreamFlow(start=plan).run_stream({}):
        renderer(item)
    progress = {"type": "progress", "node": "Embed", "path": ["Embed"], "batch": None}
    for done in range(1, 21):  # on a pipe: a line per tenth of the batch, not per item
        renderer({**progress, "done": done, "total": 20})
    renderer.finish()
    lines = out.getvalue().splitlines()
    assert lines[:6] == [
        "[Plan]",
        '-> calculate({"expression": "6 * 7"})',
        '-> save_file({"path": "a.md", "content": "cut)  [invalid arguments: not run — '
        "invalid JSON arguments: " + lines[2].split("invalid JSON arguments: ", 1)[1],
        "[Act]",
        "calculate -> 42",
        "save_file -> error: not run",
    ]
    assert lines[6:] == [f"[Embed] {n}/20 items" for n in (1, *range(2, 21, 2))]


def test_a_real_batch_shows_how_many_items_are_done():
    class Embed(BatchNode):
        def prep(self, shared):
            return ["a", "b", "c"]

    out = io.StringIO()
    render(StreamFlow(start=Embed()).run_stream({}, progress=True), out, color=False)
    assert out.getvalue().splitlines() == [f"[Embed] {n}/3 items" for n in (1, 2, 3)]
    on_a_terminal = io.StringIO()  # one line rewritten in place
    renderer = TerminalRenderer(on_a_terminal, color=False, interactive=True)
    render(StreamFlow(start=Embed()).run_stream({}, progress=True), renderer=renderer)
    assert on_a_terminal.getvalue() == "".join(f"\r[Embed] {n}/3 items" for n in (1, 2, 3)) + "\n"


def test_a_retry_is_said_and_the_new_attempt_is_marked():
    class Flaky(StreamNode):
        def exec_stream(self, prep_res):
            yield TextDelta(f"try {self.cur_retry}")
            if self.cur_retry == 0:
                raise RuntimeError("boom")

    out = io.StringIO()
    render(Flaky(max_retries=2).run_stream({}, events=True), out, color=False)
    lines = out.getvalue().splitlines()
    assert lines[:4] == [
        "[Flaky]",
        "try 0",
        "(attempt 1 failed: RuntimeError: boom; retrying)",
        "[Flaky (retry 1)]",
    ]
    assert lines[4:] == ["try 1"]


# -- a real terminal and a real pipe -------------------------------------------------------------

SCRIPT = textwrap.dedent(
    """
    import sys
    from pocketflow_stream import StreamNode, StreamFlow
    from pocketflow_stream.llm import ReasoningDelta, TextDelta
    from pocketflow_stream.ui import render

    class Speak(StreamNode):
        def exec_stream(self, prep_res):
            yield ReasoningDelta("pondering")
            yield TextDelta("first part")
            sys.stdin.readline()          # the test lets the stream go on
            yield TextDelta(" second part")

    render(StreamFlow(start=Speak()).run_stream({}))
    """
)


def read_until(fd, marker, seen=b""):
    """Reads from `fd` until `marker` has arrived (bounded by select's 60 s per read)."""
    while marker not in seen:
        ready, _, _ = select.select([fd], [], [], 60)
        assert ready, f"nothing more arrived; so far {seen!r}"
        try:
            data = os.read(fd, 4096)
        except OSError:  # the pty closed: the child is gone
            break
        if not data:
            break
        seen += data
    return seen


@pytest.mark.parametrize("no_color", [False, True], ids=["colour", "NO_COLOR"])
def test_under_a_real_terminal_it_streams_live_and_in_colour(no_color):
    environment = {
        k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TERM", "PYTHONUNBUFFERED")
    }
    if no_color:
        environment["NO_COLOR"] = "1"
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env=environment,
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
    )
    os.close(terminal)
    try:
        seen = read_until(controller, b"first part")
        assert b"second part" not in seen  # written while the node still runs
        os.write(controller, b"\n")  # the node may go on
        seen = read_until(controller, b"second part", seen)
        assert process.wait(timeout=60) == 0
    finally:
        process.kill()
        os.close(controller)
    text = seen.decode()
    assert "[Speak]" in text and "pondering" in text
    if no_color:
        assert "\033[" not in text
    else:
        assert "\033[2mthinking: \033[0m\033[2mpondering\033[0m" in text  # dimmed
        assert "\033[1m[Speak]" in text


def test_on_a_pipe_it_writes_plain_lines_live():
    process = subprocess.Popen(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "PYTHONUNBUFFERED")},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        seen = read_until(process.stdout.fileno(), b"first part")
        assert b"second part" not in seen
        process.stdin.write(b"\n")
        process.stdin.flush()
        rest, errors = process.communicate(timeout=60)
    finally:
        process.kill()
    assert errors == b""
    assert (seen + rest).decode().splitlines() == [
        "[Speak]",
        "thinking: pondering",
        "first part second part",
    ]
