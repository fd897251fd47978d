"""The scripted model: a model client that plays turns from a script, so every demo and test
runs offline, with no key, deterministically.

It streams only unified deltas (no provider format, no adapter), at a configurable pace. It
knows nothing of the engine or of any provider.
"""

from __future__ import annotations

import json
import math
import time
from typing import (
    Any,
    AsyncIterator,
    Callable,
    Dict,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Union,
)

import anyio

from .._compat import frozen_slots
from .deltas import (
    FINISH_REASONS,
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

__all__ = ["ToolCallSpec", "Turn", "ScriptedModel", "ScriptExhausted", "TurnLike", "CallLog"]


@frozen_slots
class ToolCallSpec:
    """A tool call the scripted model makes. `arguments` is a dict (sent as JSON) or a JSON
    string sent exactly as given (so a test can script broken JSON). Without an `id`, the
    model makes up a deterministic one (`call_<turn>_<index>`)."""

    name: str
    arguments: Union[Mapping[str, Any], str] = "{}"
    id: Optional[str] = None


@frozen_slots
class Turn:
    """One scripted model reply. Streams in this order: reasoning, text, refusal, tool calls,
    then either `error` (a ProviderError ends the stream, as a provider's error event would)
    or Usage and Finish.

    `finish` defaults to "tool_calls" when there are tool calls, else "stop". `usage` defaults
    to a rough, deterministic estimate (4 characters per token) so usage displays have
    something to show; pass a `Usage` (or a dict of its fields) to set it exactly.
    """

    text: str = ""
    reasoning: str = ""
    tool_calls: Sequence[ToolCallSpec] = ()
    finish: Optional[str] = None
    usage: Optional[Usage] = None
    refusal: str = ""
    error: Optional[str] = None


#: What a script may hold for one turn: a Turn, a dict of Turn's fields (tool calls as
#: ToolCallSpec or dicts of its fields), or a plain string (a text-only reply).
TurnLike = Union[Turn, Mapping[str, Any], str]

Script = Union[
    Sequence[TurnLike], Callable[[List[Dict[str, Any]], Optional[List[Dict[str, Any]]]], TurnLike]
]


class ScriptExhausted(RuntimeError):
    """The scripted model was called more times than its script has turns."""


class CallLog(List[Dict[str, Any]]):
    """The calls a ScriptedModel recorded: a list holding at most `maxlen` of the most recent
    (None: no bound). Appending beyond the bound drops the oldest call."""

    def __init__(self, maxlen: Optional[int]) -> None:
        super().__init__()
        self.maxlen = maxlen

    def append(self, call: Dict[str, Any]) -> None:
        if self.maxlen is not None:
            if self.maxlen <= 0:
                return
            if len(self) >= self.maxlen:
                del self[0]
        super().append(call)


class ScriptedModel:
    """A model that replays a script. Satisfies both `ChatModel` and `AsyncChatModel`.

    `script` is a list of turns (each call plays the next one) or a function
    `(messages, tools) -> turn` (so an agent demo can answer the conversation).
    `chunk_size` characters go in each text, reasoning, refusal and argument delta; `delay`
    seconds pass between deltas (keep 0 in tests; a demo uses a little to show the streaming).

    Deltas are made as they are read, so the first one comes as soon for a turn of a million
    characters as for a word. The turn is picked, and checked, at the call.

    `calls` records the most recent calls as `{"messages", "tools", "options"}` (a list, oldest
    first): at most `record_calls` of them (default 100, so one instance reused by a
    long-running app does not grow without bound; None keeps every call, 0 none).
    `call_count` counts every call made.

        model = ScriptedModel(["Hello!", Turn(tool_calls=[ToolCallSpec("add", {"a": 1})])])
        for delta in model.stream([{"role": "user", "content": "hi"}]):
            print(delta)
    """

    def __init__(
        self,
        script: Script,
        *,
        chunk_size: int = 4,
        delay: float = 0.0,
        record_calls: Optional[int] = 100,
    ) -> None:
        if chunk_size < 1:
            raise ValueError(f"ScriptedModel chunk_size must be at least 1, got {chunk_size}")
        if delay < 0:
            raise ValueError(f"ScriptedModel delay must be 0 or more seconds, got {delay}")
        if record_calls is not None and record_calls < 0:
            raise ValueError(
                f"ScriptedModel record_calls must be 0 or more (or None), got {record_calls}"
            )
        self.script = script
        self.chunk_size = chunk_size
        self.delay = delay
        self.calls = CallLog(record_calls)
        self.call_count = 0

    def stream(
        self,
        messages: List[Dict[str, Any]],
        *,
        tools: Optional[List[Dict[str, Any]]] = None,
        **options: Any,
    ) -> Iterator[Delta]:
        """Pick the next turn now and return an iterator over its deltas.

        Raises ScriptExhausted (at the call, not during iteration) when no turn is left.
        """
        deltas = self._next_turn_deltas(messages, tools, options)
        return self._paced(deltas) if self.delay else deltas

    def astream(
        self,
        messages: List[Dict[str, Any]],
        *,
        tools: Optional[List[Dict[str, Any]]] = None,
        **options: Any,
    ) -> AsyncIterator[Delta]:
        """Like `stream`, as an async iterator that waits with `anyio.sleep` between deltas
        (a cancellation point even when `delay` is 0)."""
        deltas = self._next_turn_deltas(messages, tools, options)
        return self._apaced(deltas)

    def _paced(self, deltas: Iterator[Delta]) -> Iterator[Delta]:
        for position, delta in enumerate(deltas):
            if position:
                time.sleep(self.delay)
            yield delta

    async def _apaced(self, deltas: Iterator[Delta]) -> AsyncIterator[Delta]:
        for position, delta in enumerate(deltas):
            if position:
                await anyio.sleep(self.delay)
            yield delta

    def _next_turn_deltas(
        self,
        messages: List[Dict[str, Any]],
        tools: Optional[List[Dict[str, Any]]],
        options: Dict[str, Any],
    ) -> Iterator[Delta]:
        turn_number = self.call_count + 1
        if callable(self.script):
            turn = self.script(messages, tools)
            if turn is None:
                raise ScriptExhausted(
                    f"ScriptedModel: the script function returned None for call {turn_number}; "
                    "return a Turn, a dict of Turn fields or a string for every call"
                )
        elif turn_number > len(self.script):
            raise ScriptExhausted(
                f"ScriptedModel was called {turn_number} times but its script has "
                f"{len(self.script)} turn(s); add a turn for every model call, or pass a "
                "function (messages, tools) -> turn as the script"
            )
        else:
            turn = self.script[turn_number - 1]
        played = _as_turn(turn)
        reason = played.finish or ("tool_calls" if played.tool_calls else "stop")
        if played.error is None and reason not in FINISH_REASONS:
            raise ValueError(
                f"ScriptedModel: turn {turn_number} has finish={reason!r}; "
                f"use one of {', '.join(FINISH_REASONS)}"
            )
        self.call_count = turn_number
        self.calls.append({"messages": list(messages), "tools": tools, "options": options})
        return _turn_deltas(played, turn_number, messages, self.chunk_size, reason)


def _as_turn(turn: TurnLike) -> Turn:
    if isinstance(turn, Turn):
        return turn
    if isinstance(turn, str):
        return Turn(text=turn)
    if isinstance(turn, Mapping):
        fields = dict(turn)
        fields["tool_calls"] = tuple(
            call if isinstance(call, ToolCallSpec) else ToolCallSpec(**call)
            for call in fields.get("tool_calls") or ()
        )
        usage = fields.get("usage")
        if isinstance(usage, Mapping):
            fields["usage"] = Usage(**usage)
        try:
            return Turn(**fields)
        except TypeError as error:
            raise TypeError(
                f"ScriptedModel: cannot read the turn {turn!r} ({error}); a turn's keys are "
                "text, reasoning, tool_calls, finish, usage, refusal and error"
            ) from None
    raise TypeError(
        f"ScriptedModel: a turn must be a Turn, a dict or a string, got {type(turn).__name__}"
    )


def _turn_deltas(
    turn: Turn, turn_number: int, messages: List[Dict[str, Any]], chunk_size: int, reason: str
) -> Iterator[Delta]:
    """The turn's deltas, made one by one as they are read."""
    for piece in _pieces(turn.reasoning, chunk_size):
        yield ReasoningDelta(piece)
    for piece in _pieces(turn.text, chunk_size):
        yield TextDelta(piece)
    for piece in _pieces(turn.refusal, chunk_size):
        yield RefusalDelta(piece)
    arguments_length = 0
    for index, call in enumerate(turn.tool_calls):
        arguments = call.arguments
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments, ensure_ascii=False)
        arguments_length += len(arguments)
        yield ToolCallStart(index, call.id or f"call_{turn_number}_{index}", call.name)
        for piece in _pieces(arguments, chunk_size):
            yield ToolCallDelta(index, piece)
        yield ToolCallEnd(index)
    if turn.error is not None:
        yield ProviderError(turn.error, "scripted_error")
        return
    usage = turn.usage
    if usage is None:
        output = _tokens(len(turn.reasoning) + len(turn.text) + len(turn.refusal))
        output += _tokens(arguments_length)
        prompt = _tokens(sum(len(str(message.get("content") or "")) for message in messages))
        usage = Usage(prompt, output, prompt + output, _tokens(len(turn.reasoning)))
    yield usage
    yield Finish(reason, reason)


def _pieces(text: str, size: int) -> Iterator[str]:
    return (text[start : start + size] for start in range(0, len(text), size))


def _tokens(characters: int) -> int:
    return math.ceil(characters / 4)
