"""The terminal renderer: node headers, answer, reasoning, tool calls, as chunks arrive."""

from __future__ import annotations

import io

from pocketflow_stream import Node, StreamFlow, StreamNode
from pocketflow_stream.llm import (
    Finish,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
)
from pocketflow_stream.ui import TerminalRenderer, render


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


def test_color_is_only_used_when_asked_or_on_a_tty():
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
