"""The terminal view of a run: node-tagged, live, thinking dimmed, tool calls as they stream.

Draws the transcript fold (`ui/transcript.py`): each item goes into a `Transcript` and the
view writes only what grew — it never redraws. Works as a pull consumer
(`render(flow.run_stream(shared))`) or as a push callback
(`flow.run(shared, on_chunk=TerminalRenderer())`). Colour only on a terminal and never when
`NO_COLOR` is set; on a pipe, plain lines.

Knows the transcript's steps and ANSI codes; knows no provider format.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Dict, Generator, List, Optional, TextIO

from .transcript import Step, ToolCallView, Transcript

__all__ = ["TerminalRenderer", "render", "wants_color"]

_BOLD, _DIM, _CYAN, _RED, _GREEN, _RESET = (
    "\033[1m",
    "\033[2m",
    "\033[36m",
    "\033[31m",
    "\033[32m",
    "\033[0m",
)


def wants_color(out: TextIO) -> bool:
    """Colour for `out`: only a terminal, and never with `NO_COLOR` set (no-color.org) or
    `TERM=dumb`."""
    if os.environ.get("NO_COLOR"):
        return False
    return _is_terminal(out)


def _is_terminal(out: TextIO) -> bool:
    """A terminal that understands cursor movement (not a pipe, a file or TERM=dumb)."""
    if os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(out, "isatty", None)
    return bool(isatty and isatty())


class _Shown:
    """How much of one step is on screen already."""

    __slots__ = (
        "attempt",
        "thinking",
        "text",
        "refusal",
        "calls",
        "results",
        "values",
        "error",
        "finish",
    )

    def __init__(self, attempt: int) -> None:
        self.attempt = attempt
        self.thinking = self.text = self.refusal = 0
        self.calls: Dict[str, List[Any]] = {}  # call id -> [characters shown, closed]
        self.results = self.values = 0
        self.error = self.finish = False


class TerminalRenderer:
    """Writes a run as it streams: a `[Agent > Plan]` header whenever the step being written
    changes, the answer as plain text, thinking dimmed under `thinking:`, tool calls as
    `-> name(args)` with the arguments appearing while they arrive (`[invalid arguments: not
    run]` after a call that did not parse), tool results as `name -> result`, batch progress as
    `3/10 items`, a finish other than stop as `(stopped: length)`.

    Call it with each chunk or event (or their dicts); call `finish()` at the end for the last
    newline. `events=True` also writes lifecycle lines. `color` and `interactive` (progress
    rewritten in place) default to whether `out` is a terminal, colour never with `NO_COLOR`.
    `transcript` holds the fold.
    """

    def __init__(
        self,
        out: Optional[TextIO] = None,
        *,
        color: Optional[bool] = None,
        events: bool = False,
        interactive: Optional[bool] = None,
    ) -> None:
        self.out = out if out is not None else sys.stdout
        self.color = wants_color(self.out) if color is None else color
        self.interactive = _is_terminal(self.out) if interactive is None else interactive
        self.events = events
        self.transcript = Transcript()
        self._shown: Dict[str, _Shown] = {}
        self._source: Optional[str] = None  # the id of the step being written
        self._mode = ""  # what the current line holds: "", "text", "thinking", "refusal", "tool"
        self._call: Optional[str] = None  # the tool call the current line shows
        self._at_line_start = True
        self._progress: Dict[str, int] = {}  # step id -> the tenth of the batch last written

    def __call__(self, item: Any) -> None:
        changed = self.transcript.add(item)
        kind = getattr(item, "type", None) if not isinstance(item, dict) else item.get("type")
        if kind == "chunk":
            for step in changed:
                self._draw(step)
        elif kind == "retry":
            error = item["error"] if isinstance(item, dict) else item.error
            attempt = item["attempt"] if isinstance(item, dict) else item.attempt
            self._line(f"(attempt {attempt + 1} failed: {error}; retrying)", _RED)
            self._source = None
        elif kind == "progress":
            for step in changed:
                self._draw_progress(step)
        elif kind == "interrupt":
            for step in changed:
                if step.interrupt is not None and step.status == "paused":
                    self._line(f"[{step.label}] paused: {_payload_text(step.interrupt)}", _BOLD)
            self._source = None
        elif self.events and kind in ("node_started", "node_finished", "flow_finished"):
            self._event(item)

    def finish(self) -> None:
        if not self._at_line_start:
            self._write("\n")
        self.out.flush()

    # -- drawing a step ------------------------------------------------------------------

    def _draw(self, step: Step) -> None:
        shown = self._shown.get(step.id)
        if shown is None or shown.attempt != step.attempt:
            shown = self._shown[step.id] = _Shown(step.attempt)
            if step.id == self._source:
                self._source = None  # a new attempt: its header again, marked
        if step.thinking_length > shown.thinking:
            self._enter(step)
            self._switch("thinking", "thinking: ", _DIM)
            self._write(step.thinking_since(shown.thinking), _DIM)
            shown.thinking = step.thinking_length
        if step.text_length > shown.text:
            self._enter(step)
            self._switch("text", "")
            self._write(step.text_since(shown.text))
            shown.text = step.text_length
        if len(step.refusal) > shown.refusal:
            self._enter(step)
            self._switch("refusal", "refusal: ", _RED)
            self._write(step.refusal[shown.refusal :], _RED)
            shown.refusal = len(step.refusal)
        for call in step.tool_calls:
            self._draw_call(step, shown, call)
        for result in step.results[shown.results :]:
            self._enter(step)
            name = result.name or "tool"
            content = result.content if isinstance(result.content, str) else repr(result.content)
            self._line(f"{name} -> {content}", _RED if result.is_error else _GREEN)
        shown.results = len(step.results)
        for value in step.values[shown.values :]:
            if not hasattr(value, "type"):  # usage, signatures and the like are not for people
                self._enter(step)
                self._line(repr(value))
        shown.values = len(step.values)
        if step.error is not None and not shown.error:
            shown.error = True
            self._enter(step)
            self._line(f"provider error: {step.error}", _RED)
        if step.finish_reason not in (None, "stop", "tool_calls") and not shown.finish:
            shown.finish = True
            self._enter(step)
            self._line(f"(stopped: {step.finish_reason})", _RED)

    def _draw_call(self, step: Step, shown: _Shown, call: ToolCallView) -> None:
        state = shown.calls.get(call.id)
        if state is None:
            self._enter(step)
            self._line(f"-> {call.name}(", _CYAN, end="")
            state = shown.calls[call.id] = [0, False]
            self._mode, self._call = "tool", call.id
        if call.arguments_length > state[0]:
            self._enter(step)
            if self._mode != "tool" or self._call != call.id:
                self._line(f"   {call.name} ...", _CYAN, end="")
                self._mode, self._call = "tool", call.id
            self._write(call.arguments_since(state[0]), _CYAN)
            state[0] = call.arguments_length
        if call.done and not state[1]:
            state[1] = True
            self._enter(step)
            if self._mode != "tool" or self._call != call.id:
                self._line(f"   {call.name} ...", _CYAN, end="")
            self._write(")", _CYAN)
            if not call.valid:
                self._write(f"  [invalid arguments: not run — {call.error}]", _RED)
            self._mode, self._call = "", None

    def _draw_progress(self, step: Step) -> None:
        if step.progress is None:
            return
        done, total = step.progress
        tenth = done * 10 // total if total else 10
        on_tty = self.interactive
        if not on_tty and self._progress.get(step.id) == tenth and done != total:
            return  # on a pipe: a line per tenth of the batch, not per item
        self._progress[step.id] = tenth
        text = f"[{step.label}] {done}/{total} items"
        if on_tty:  # one line, rewritten in place while this batch is what is shown
            if self._mode != "progress" or self._call != step.id:
                self._enter(step, header=False)  # ends another batch's progress line
                if not self._at_line_start:
                    self._write("\n")
            self._write(f"\r{text}", _DIM)
            self._mode, self._call = "progress", step.id
            if done == total:
                self._write("\n")
                self._mode, self._call = "", None
        else:
            self._enter(step, header=False)
            self._line(text)
        self._source = None

    def _enter(self, step: Step, header: bool = True) -> None:
        """Writes the step's header when the output switches to it."""
        if self._mode == "progress":
            self._write("\n")
            self._mode = ""
        if step.id == self._source or not header:
            return
        self._source = step.id
        label = step.label
        if step.attempt:
            label += f" (retry {step.attempt})"
        self._line(f"[{label}]", _BOLD)
        self._mode, self._call = "", None

    def _event(self, event: Any) -> None:
        data = event if isinstance(event, dict) else event.to_dict()
        where = " > ".join(data["path"])
        if data["type"] == "node_finished":
            text = f"({where} -> {data['action']!r}, {data['duration'] * 1000:.0f} ms)"
        elif data["type"] == "flow_finished":
            text = f"(flow {data['node']} finished -> {data['action']!r}, "
            text += f"{data['duration'] * 1000:.0f} ms)"
        else:
            text = f"(node_started: {where})"
        self._line(text, _DIM)
        self._source = None

    # -- writing -------------------------------------------------------------------------

    def _switch(self, mode: str, label: str, style: str = "") -> None:
        if self._mode != mode:
            if not self._at_line_start:
                self._write("\n")
            self._mode, self._call = mode, None
            if label:
                self._write(label, style)

    def _line(self, text: str, style: str = "", end: str = "\n") -> None:
        if not self._at_line_start:
            self._write("\n")
        self._write(text + end, style)
        if end:
            self._mode, self._call = "", None

    def _write(self, text: str, style: str = "") -> None:
        if not text:
            return
        self._at_line_start = text.endswith("\n")
        if self.color and style:
            text = f"{style}{text}{_RESET}"
        self.out.write(text)
        self.out.flush()


def _payload_text(interrupt: Any) -> str:
    payload = getattr(interrupt, "payload", None)
    if isinstance(payload, dict):
        for key in ("question", "prompt", "message"):
            if isinstance(payload.get(key), str):
                return str(payload[key])
    return repr(payload)


def render(
    stream: Generator[Any, None, Any],
    out: Optional[TextIO] = None,
    *,
    color: Optional[bool] = None,
    events: bool = False,
    renderer: Optional[TerminalRenderer] = None,
) -> Any:
    """Render a `run_stream` generator to the terminal; returns what the walk returned (the
    final action, or a paused run's `Paused` handle). Pass the `renderer` of an earlier
    stream to go on drawing the same run (a resumed pause)."""
    if renderer is None:
        renderer = TerminalRenderer(out, color=color, events=events)
    try:
        while True:
            renderer(next(stream))
    except StopIteration as stop:
        return stop.value
    finally:
        stream.close()
        renderer.finish()
