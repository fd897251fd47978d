"""Render a streamed run in a terminal: node-tagged, live, reasoning apart from the answer.

Knows the engine's chunks and events and the llm layer's deltas; knows no provider format.
Works as a pull consumer (`render(flow.run_stream(shared))`) or as a push callback
(`flow.run(shared, on_chunk=TerminalRenderer())`).
"""

from __future__ import annotations

import sys
from typing import Any, Generator, Optional, TextIO, Tuple

from ..events import Chunk, NodeFinished, Retry
from ..llm.deltas import (
    Finish,
    ProviderError,
    ReasoningDelta,
    RefusalDelta,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
)

__all__ = ["TerminalRenderer", "render"]

_BOLD, _DIM, _CYAN, _RED, _RESET = "\033[1m", "\033[2m", "\033[36m", "\033[31m", "\033[0m"


class TerminalRenderer:
    """Writes chunks as they come: a `[Agent > Plan]` header whenever the source changes, the
    answer as plain text, reasoning dimmed under `thinking:`, tool calls as `-> name(args)`
    with the JSON arguments appearing while they arrive.

    Call it with each chunk or event; call `finish()` at the end for the last newline.
    """

    def __init__(
        self,
        out: Optional[TextIO] = None,
        *,
        color: Optional[bool] = None,
        events: bool = False,
    ) -> None:
        self.out = out if out is not None else sys.stdout
        self.color = self.out.isatty() if color is None else color
        self.events = events
        self._source: Optional[Tuple[Any, ...]] = None
        self._mode = ""  # what the current line holds: "", "text", "reasoning", "tool"
        self._at_line_start = True

    def __call__(self, item: Any) -> None:
        if type(item) is Chunk:
            self._chunk(item)
        elif self.events:
            self._event(item)
        elif isinstance(item, Retry):  # a failed attempt's text is on screen: say so, always
            self._line(f"(attempt {item.attempt + 1} failed: {item.error}; retrying)", _RED)

    def finish(self) -> None:
        if not self._at_line_start:
            self._write("\n")
        self.out.flush()

    def _chunk(self, chunk: Chunk) -> None:
        source = (chunk.path, chunk.item, chunk.attempt)
        if source != self._source:
            self._source = source
            label = " > ".join(chunk.path)
            if chunk.item is not None:
                label += f" [{chunk.item}]"
            if chunk.attempt:
                label += f" (retry {chunk.attempt})"
            self._line(f"[{label}]", _BOLD)
            self._mode = ""
        data = chunk.data
        if isinstance(data, TextDelta):
            self._switch("text", "")
            self._write(data.text)
        elif isinstance(data, ReasoningDelta):
            self._switch("reasoning", "thinking: ", _DIM)
            self._write(data.text, _DIM)
        elif isinstance(data, ToolCallStart):
            self._mode = "tool"
            self._line(f"-> {data.name}(", _CYAN, end="")
        elif isinstance(data, ToolCallDelta):
            self._write(data.arguments, _CYAN)
        elif isinstance(data, ToolCallEnd):
            self._write(")", _CYAN)
            self._mode = ""
        elif isinstance(data, Finish):
            if data.reason not in ("stop", "tool_calls"):
                self._line(f"(stopped: {data.reason})", _RED)
        elif isinstance(data, RefusalDelta):
            self._switch("refusal", "refusal: ", _RED)
            self._write(data.text, _RED)
        elif isinstance(data, ProviderError):
            self._line(f"provider error: {data.message}", _RED)
        elif isinstance(data, str):
            self._switch("text", "")
            self._write(data)
        elif hasattr(data, "type"):  # usage, signatures, ...: not for the screen
            return
        else:
            self._line(repr(data))

    def _event(self, event: Any) -> None:
        if isinstance(event, NodeFinished):
            text = f"({' > '.join(event.path)} -> {event.action!r}, {event.duration * 1000:.0f} ms)"
        else:
            text = f"({event.type}: {' > '.join(event.path)})"
        self._line(text, _DIM)
        self._source = None

    def _switch(self, mode: str, label: str, style: str = "") -> None:
        if self._mode != mode:
            if self._mode:
                self._write("\n")
            self._mode = mode
            if label:
                self._write(label, style)

    def _line(self, text: str, style: str = "", end: str = "\n") -> None:
        if not self._at_line_start:
            self._write("\n")
        self._write(text + end, style)

    def _write(self, text: str, style: str = "") -> None:
        if not text:
            return
        if self.color and style:
            text = f"{style}{text}{_RESET}"
        self.out.write(text)
        self.out.flush()
        self._at_line_start = text.endswith("\n") or text.endswith(f"\n{_RESET}")


def render(
    stream: Generator[Any, None, Any],
    out: Optional[TextIO] = None,
    *,
    color: Optional[bool] = None,
    events: bool = False,
) -> Any:
    """Render a `run_stream` generator to the terminal; returns its final action."""
    renderer = TerminalRenderer(out, color=color, events=events)
    try:
        while True:
            renderer(next(stream))
    except StopIteration as stop:
        return stop.value
    finally:
        stream.close()
        renderer.finish()
