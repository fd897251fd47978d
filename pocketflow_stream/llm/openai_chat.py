"""OpenAI Chat Completions stream chunks -> unified deltas.

Reads `chat.completion.chunk` objects as the `openai` SDK yields them, or as plain dicts decoded
from the SSE `data:` lines (a raw `data:` string is accepted too; `[DONE]` is ignored). The
same adapter serves every OpenAI-compatible server (vLLM, llama.cpp, Ollama, LM Studio, SGLang,
proxies and gateways), so it is tolerant by design; each tolerance below names the public
thread that shows the server behaviour it survives.

Tool calls. OpenAI sends `id` and `name` on the first fragment of each call and keys later
fragments by `index`. Servers bend this, so the adapter assigns its own call indexes (0, 1, …
in order of appearance) and routes each wire fragment to a call:

- `index` missing or null: a known `id` continues its call, a new `id` opens a call, no `id`
  continues the latest call (Ollama, Gemini's OpenAI endpoint, proxies); a new `id` without a
  name while the latest call's arguments are incomplete continues it too (a server that
  rotates ids mid-call, as Poolside does with an index).
- `id`, `type` and the whole `name` repeated on every fragment are not new calls, and a
  repeated name is not concatenated ("fnfn"); a name sent in pieces is joined.
- a wire index reused by a new named call (new `id`, or another name once the first call's
  arguments are complete JSON) opens a new call instead of merging two calls.
- arguments sent whole with the id and name, or as an already-parsed object (serialised here).
- a fragment that restates the whole arguments received so far (a trailing "summary" chunk, a
  final flush that repeats the prefix already streamed) adds only what is new: two complete
  JSON objects glued together can never be valid, so nothing valid is ever lost by this.

`ToolCallStart` is sent when a call's first argument text arrives (or when the call ends
without arguments), so it always carries the whole name even when the name came in pieces.
Calls end (`ToolCallEnd`) at the chunk carrying `finish_reason`, or at `close()`.

Finish. `finish_reason` is mapped onto FINISH_REASONS (the provider's word is kept in `raw`);
"stop" reported although tool calls were made becomes "tool_calls"; a repeated identical finish
is sent once; `finish_reason: "error"` with a top-level `error` object (OpenRouter's mid-stream
failure) becomes a ProviderError, not a Finish.

Usage. The top-level `usage` (also when `choices` is empty, also when repeated on every chunk)
or a `usage` inside the choice (Moonshot) becomes a `Usage` of running totals; an unchanged
figure is not repeated.

This module knows the Chat Completions wire format and nothing of the engine.
"""

from __future__ import annotations

import json
import re
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Union

from ._wire import arguments_text as _arguments_text
from ._wire import field as _field
from ._wire import view as _view
from .deltas import (
    Delta,
    Finish,
    ProviderError,
    ReasoningDelta,
    RefusalDelta,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
)
from .think_tags import ThinkTagSplitter

__all__ = ["OpenAIChatAdapter", "openai_chat_deltas"]

_FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
    # words that proxies pass through from other vendors
    "end_turn": "stop",
    "stop_sequence": "stop",
    "eos": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "safety": "content_filter",
}


# What `_reasoning` returns when a delta has none (never mutated).
_NOTHING: List[Delta] = []

# The characters that shape JSON structure: brackets, string quotes and escapes.
_JSON_MARKS = re.compile(r'[{}\[\]"\\]')


def _usage_from(raw: Any) -> Optional[Usage]:
    """An OpenAI-style usage object (or dict) as a `Usage`, or None when it carries no figure."""
    if raw is None:
        return None
    input_tokens = _field(raw, "prompt_tokens", _field(raw, "input_tokens"))
    output_tokens = _field(raw, "completion_tokens", _field(raw, "output_tokens"))
    total_tokens = _field(raw, "total_tokens")
    reasoning_tokens = _field(_field(raw, "completion_tokens_details"), "reasoning_tokens")
    cached_tokens = _field(_field(raw, "prompt_tokens_details"), "cached_tokens")
    if input_tokens is None and output_tokens is None and total_tokens is None:
        return None
    if total_tokens is None and input_tokens is not None and output_tokens is not None:
        total_tokens = input_tokens + output_tokens
    return Usage(input_tokens, output_tokens, total_tokens, reasoning_tokens, cached_tokens)


def _complete_object(text: str) -> bool:
    """Whether `text` is one complete JSON object (the shape tool arguments must have)."""
    stripped = text.strip()
    if not stripped.endswith("}"):  # cheap filter: most partial argument texts fail here
        return False
    try:
        return isinstance(json.loads(stripped), dict)
    except ValueError:
        return False


class _Call:
    """One tool call being assembled from wire fragments (adapter-private, mutable)."""

    __slots__ = (
        "index",
        "id",
        "name",
        "started",
        "ended",
        "_parts",
        "_length",
        "_last_mark",
        "_depth",
        "_opened",
        "_in_string",
        "_escape_pending",
        "_scanned",
    )

    def __init__(self, index: int) -> None:
        self.index = index
        self.id: Optional[str] = None
        self.name = ""
        self.started = False
        self.ended = False
        self._parts: List[str] = []
        self._length = 0
        self._last_mark = ""  # last non-whitespace character of the arguments so far
        # A running scan of the JSON structure, so "are the arguments complete?" — asked on every
        # fragment of servers that repeat the name — costs nothing until brackets balance.
        self._depth = 0
        self._opened = False
        self._in_string = False
        self._escape_pending = False
        self._scanned = 0  # how many of _parts the scan has read (it runs only when asked)

    @property
    def arguments(self) -> str:
        parts = self._parts
        if len(parts) > 1:
            self._catch_up()
            self._parts = parts = ["".join(parts)]
            self._scanned = 1
        return parts[0] if parts else ""

    @property
    def has_arguments(self) -> bool:
        return bool(self._last_mark)

    def append(self, text: str) -> None:
        self._parts.append(text)
        self._length += len(text)
        last = text[-1:]
        if last and not last.isspace():
            self._last_mark = last
        else:
            stripped = text.rstrip()
            if stripped:
                self._last_mark = stripped[-1]

    def _catch_up(self) -> None:
        parts = self._parts
        for position in range(self._scanned, len(parts)):
            self._scan(parts[position])
        self._scanned = len(parts)

    def _scan(self, text: str) -> None:
        skip_at = 0 if self._escape_pending else -1
        self._escape_pending = False
        for mark in _JSON_MARKS.finditer(text):
            position = mark.start()
            if position == skip_at:
                continue
            char = text[position]
            if self._in_string:
                if char == "\\":
                    skip_at = position + 1
                    self._escape_pending = skip_at == len(text)
                elif char == '"':
                    self._in_string = False
            elif char == '"':
                self._in_string = True
            elif char in "{[":
                self._depth += 1
                self._opened = True
            elif char in "}]":
                self._depth -= 1

    def is_complete(self) -> bool:
        if self._last_mark != "}":
            return False  # cheap: most partial argument texts fail here
        self._catch_up()
        balanced = self._opened and self._depth == 0 and not self._in_string
        return balanced and self._last_mark == "}" and _complete_object(self.arguments)

    def restated_suffix(self, fragment: str) -> Optional[str]:
        """If `fragment` restates all arguments so far (plus maybe more), the new part; else None.

        A restatement is a fragment that on its own is a complete JSON object (or a JSON string
        holding one: a double-encoded summary) and begins with everything received so far.
        """
        if not self._last_mark or len(fragment) < self._length:
            return None
        so_far = self.arguments
        candidate = fragment
        if fragment.lstrip().startswith('"'):
            try:
                decoded = json.loads(fragment)
            except ValueError:
                decoded = None
            if isinstance(decoded, str):
                candidate = decoded
        if not candidate.startswith(so_far) or not _complete_object(candidate):
            return None
        return candidate[len(so_far) :]


class OpenAIChatAdapter:
    """Stateful converter of one Chat Completions stream into deltas.

    `think_tags=True` splits `<think>…</think>` reasoning out of `content` (servers that inline
    it); pass a `ThinkTagSplitter` instead for other tags or a prompt that opened the tag.
    `choice_index` selects the choice to follow when the request asked for several (`n > 1`).

    >>> adapter = OpenAIChatAdapter()
    >>> adapter.feed({"choices": [{"index": 0, "delta": {"content": "Hi"}}]})
    [TextDelta(text='Hi')]
    """

    def __init__(
        self, *, think_tags: Union[bool, ThinkTagSplitter] = False, choice_index: int = 0
    ) -> None:
        if isinstance(think_tags, ThinkTagSplitter):
            self._think: Optional[ThinkTagSplitter] = think_tags
        else:
            self._think = ThinkTagSplitter() if think_tags else None
        self._choice_index = choice_index
        self._calls: List[_Call] = []
        self._by_wire_index: Dict[int, _Call] = {}
        self._finish_sent: Optional[Finish] = None
        self._usage_sent: Optional[Usage] = None

    def feed(self, chunk: Any) -> List[Delta]:
        """Consume one chunk (SDK object, decoded dict or raw `data:` text); return its deltas."""
        out: List[Delta] = []
        if type(chunk) is not dict:
            chunk = _decode(chunk)
            if chunk is None:
                return out
            chunk = _view(chunk)
        error = chunk.get("error")
        if error is not None:
            out.append(_provider_error(error))
        choices = chunk.get("choices")
        if choices:
            for choice in choices:
                if type(choice) is not dict:
                    choice = _view(choice)
                if (choice.get("index") or 0) != self._choice_index:
                    continue
                delta = choice.get("delta")
                if delta is None:
                    delta = choice.get("message")
                if delta is not None:
                    self._read_delta(delta if type(delta) is dict else _view(delta), out)
                finish_reason = choice.get("finish_reason")
                if finish_reason is not None:
                    self._finish(str(finish_reason), error is not None, out)
                usage = choice.get("usage")
                if usage is not None:
                    self._add_usage(usage, out)
        usage = chunk.get("usage")
        if usage is not None:
            self._add_usage(usage, out)
        return out

    def close(self) -> List[Delta]:
        """End of stream: release held-back text and end every call still open."""
        out: List[Delta] = []
        if self._think is not None:
            out.extend(self._think.close())
        self._end_calls(out)
        return out

    # -- reading one delta -------------------------------------------------------------------

    def _read_delta(self, delta: Mapping[str, Any], out: List[Delta]) -> None:
        """Read one choice's delta (a view: dict-like, None meaning absent)."""
        reasoning = self._reasoning(delta)
        if reasoning:
            out.extend(reasoning)
        content = delta.get("content")
        if content:
            if type(content) is str and self._think is None:
                out.append(TextDelta(content))
            else:
                self._read_content(content, out)
        refusal = delta.get("refusal")
        if refusal and isinstance(refusal, str):
            out.append(RefusalDelta(refusal))
        tool_calls = delta.get("tool_calls")
        if tool_calls:
            for fragment in tool_calls:
                self._read_tool_fragment(_view(fragment), out)
        legacy = delta.get("function_call")
        if legacy is not None:  # the pre-tools `functions` API: one call, no id, no index
            self._read_tool_fragment({"function": legacy}, out)

    def _reasoning(self, delta: Mapping[str, Any]) -> List[Delta]:
        """Reasoning text carried beside the content: llama.cpp/DeepSeek `reasoning_content`,
        vLLM's newer `reasoning`. Servers sending both send the same text twice, so the first
        non-empty one wins. LiteLLM's adapter extends this."""
        text = delta.get("reasoning_content")
        if text and isinstance(text, str):
            return [ReasoningDelta(text)]
        text = delta.get("reasoning")
        if text and isinstance(text, str):
            return [ReasoningDelta(text)]
        return _NOTHING

    def _read_content(self, content: Any, out: List[Delta]) -> None:
        if isinstance(content, str):
            if content:
                if self._think is not None:
                    out.extend(self._think.feed(content))
                else:
                    out.append(TextDelta(content))
            return
        if isinstance(content, list):  # content parts (Mistral's reasoning models stream these)
            for part in content:
                kind = _field(part, "type")
                if kind == "text":
                    self._read_content(_field(part, "text", ""), out)
                elif kind in ("thinking", "reasoning"):
                    text = _joined_text(_field(part, kind, _field(part, "text", "")))
                    if text:
                        out.append(ReasoningDelta(text))

    # -- tool calls --------------------------------------------------------------------------

    def _read_tool_fragment(self, fragment: Mapping[str, Any], out: List[Delta]) -> None:
        function = fragment.get("function")
        function = function if type(function) is dict else _view(function)
        raw_arguments = function.get("arguments")
        if (
            type(raw_arguments) is str
            and raw_arguments
            and fragment.get("id") is None
            and function.get("name") is None
            and fragment.get("name") is None
        ):
            # The common fragment: arguments only, on a call whose arguments are under way.
            # Shorter than what came before, it cannot restate it.
            call = self._by_wire_index.get(fragment.get("index"))  # type: ignore[arg-type]
            if call is not None and call.started and len(raw_arguments) < call._length:
                call.append(raw_arguments)
                call.ended = False
                out.append(ToolCallDelta(call.index, raw_arguments))
                return
        call_id = fragment.get("id") or None
        name = function.get("name") or fragment.get("name") or None
        arguments = raw_arguments if type(raw_arguments) is str else _arguments_text(raw_arguments)
        call = self._route(fragment.get("index"), call_id, name, arguments)

        if call_id is not None and call.id is None:
            call.id = call_id
            if call.started:
                out.append(ToolCallStart(call.index, call.id, call.name))
        if name is not None and name != call.name:
            # A name equal to the one so far is a restatement (MiniMax, Fireworks); anything
            # else is its next piece (Gemini splits names).
            call.name += name
            if call.started:
                out.append(ToolCallStart(call.index, call.id, call.name))

        if not arguments:
            return
        suffix = call.restated_suffix(arguments)
        if suffix is not None:
            arguments = suffix
        elif not isinstance(raw_arguments, str) and call.has_arguments:
            # a parsed object equal to what was streamed is a restatement too
            if call.is_complete() and json.loads(call.arguments) == raw_arguments:
                arguments = ""
        if not arguments:
            return
        if not call.started:
            self._start(call, out)
        call.append(arguments)
        call.ended = False
        out.append(ToolCallDelta(call.index, arguments))

    def _route(
        self, wire_index: Any, call_id: Optional[str], name: Optional[str], arguments: str
    ) -> _Call:
        """The call a wire fragment belongs to, opening a new one when it starts another call."""
        if isinstance(wire_index, int) and not isinstance(wire_index, bool):
            call = self._by_wire_index.get(wire_index)
            if call is None:
                latest = self._calls[-1] if self._calls else None
                if call_id is None and name is None and latest and not latest.is_complete():
                    # A headless fragment on an unseen index is the tail of the open call: some
                    # servers send a call's head and its tail under different indexes.
                    call = latest
                else:
                    call = self._open()
            elif self._starts_another_call(call, call_id, name, arguments):
                call = self._open()
            self._by_wire_index[wire_index] = call
            return call
        if call_id is not None:
            for call in self._calls:
                if call.id == call_id:
                    return call
            latest = self._calls[-1] if self._calls else None
            if name is None and latest is not None and not latest.is_complete():
                # A new id without a name, while a call is under way: the server rotates ids
                # (every new call names its function), so it is the same call.
                return latest
            return self._open()
        if not self._calls:
            return self._open()
        latest = self._calls[-1]
        if self._starts_another_call(latest, None, name, arguments):
            return self._open()
        return latest

    @staticmethod
    def _starts_another_call(
        call: _Call, call_id: Optional[str], name: Optional[str], arguments: str
    ) -> bool:
        if name is None:
            return False  # every new call names its function; a nameless fragment continues
        if call_id is not None and call.id is not None and call_id != call.id:
            # A reused index with a new id: another call if this one is done (Poolside keeps the
            # index but changes the id mid-call, and never repeats the name then).
            return not call.has_arguments or call.is_complete()
        if not call.has_arguments or not call.is_complete():
            return False
        if name != call.name:
            return True
        # Same name after complete arguments: a restatement, unless it brings other arguments.
        return bool(arguments.strip()) and call.restated_suffix(arguments) is None

    def _open(self) -> _Call:
        call = _Call(len(self._calls))
        self._calls.append(call)
        return call

    def _start(self, call: _Call, out: List[Delta]) -> None:
        call.started = True
        out.append(ToolCallStart(call.index, call.id, call.name))

    def _end_calls(self, out: List[Delta]) -> None:
        for call in self._calls:
            if not call.ended:
                if not call.started:
                    self._start(call, out)
                call.ended = True
                out.append(ToolCallEnd(call.index))

    # -- finish and usage --------------------------------------------------------------------

    def _finish(self, raw_reason: str, error_reported: bool, out: List[Delta]) -> None:
        if self._think is not None:
            out.extend(self._think.close())
        self._end_calls(out)
        if raw_reason == "error":
            if not error_reported:
                out.append(ProviderError("the server ended the stream with finish_reason 'error'"))
            return
        reason = _FINISH_REASONS.get(raw_reason, "stop")
        if reason == "stop" and self._calls:
            reason = "tool_calls"  # servers that report "stop" after making tool calls
        finish = Finish(reason, raw_reason)
        if finish != self._finish_sent:
            self._finish_sent = finish
            out.append(finish)

    def _add_usage(self, raw: Any, out: List[Delta]) -> None:
        usage = _usage_from(raw)
        if usage is not None and usage != self._usage_sent:
            self._usage_sent = usage
            out.append(usage)


def _decode(chunk: Any) -> Any:
    if isinstance(chunk, bytes):
        chunk = chunk.decode("utf-8")
    if isinstance(chunk, str):
        text = chunk.strip()
        if text.startswith("data:"):
            text = text[len("data:") :].strip()
        if not text or text == "[DONE]":
            return None
        return json.loads(text)
    return chunk


def _joined_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(_joined_text(_field(item, "text", item)) for item in value)
    return ""


def _provider_error(error: Any) -> ProviderError:
    if isinstance(error, str):
        return ProviderError(error)
    message = _field(error, "message", "the provider reported an error without a message")
    code = _field(error, "code", _field(error, "type"))
    return ProviderError(str(message), None if code is None else str(code))


def openai_chat_deltas(chunks: Iterable[Any], **options: Any) -> Iterator[Delta]:
    """Yield the deltas of a whole Chat Completions stream (feeds every chunk, then closes).

    `options` are `OpenAIChatAdapter`'s (`think_tags=`, `choice_index=`).
    """
    adapter = OpenAIChatAdapter(**options)
    for chunk in chunks:
        yield from adapter.feed(chunk)
    yield from adapter.close()
