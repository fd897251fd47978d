"""A run's stream as Gradio 6 chat messages, and a ready chat app (optional extra `gradio`).

    from pocketflow_stream.ui.gradio import chat_app

    def make_flow(message, history):          # per message: a fresh flow and shared
        shared = {"messages": history + [{"role": "user", "content": message}]}
        return StreamFlow(start=LLMNode(model)), shared

    chat_app(make_flow).launch()              # binds 127.0.0.1

The pieces, for building your own app:
- `transcript_messages(transcript)`: a `Transcript` drawn as a fresh list of `gr.ChatMessage`s,
  by Gradio's conventions for agent UIs — a collapsible thought per step that thinks, calls
  tools, has inner steps or fails (`title`, `status` pending/done, `duration`, `id`/`parent_id`
  nesting inner steps and tool calls under the step that made them); tool calls with their
  arguments as they stream, then their results; each step's text as a plain message (the answer
  streams into the last one); an interrupt's question as a plain message.
- `Coalescer`: when to send the next update — the first change at once, then at most one
  update per `interval` while changes keep coming.
- `history_messages(history)`: Gradio's history (either shape) as OpenAI-style dicts;
  `interrupt_question(interrupt)`: what an interrupt asks, as chat text.
- `LiveRun(stream)`: folds a stream in a thread of its own and reads it as coalesced message
  lists (`async for messages in run.updates()`, or `for messages in run.iter_updates()`);
  stopping it closes the stream in that thread, so the running node's `finally` runs.

Rules: every update is a new list of new message objects (gradio_client's streamed diffs
compare them with what it sent before); Gradio is imported here only (the `gradio` extra).
Knows the transcript and Gradio; knows no provider format and no engine internals.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
import time
from typing import (
    AbstractSet,
    Any,
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
)

from ..async_nodes import AsyncNode
from ..bridges import run_stream_sync
from ..engine import Paused, StopSignal
from ..nodes import BaseNode
from .transcript import Step, ToolCallView, Transcript

try:
    import gradio as gr
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "pocketflow_stream.ui.gradio needs Gradio 6: pip install 'pocketflow-stream[gradio]' "
        "(or pip install 'gradio>=6')"
    ) from error

__all__ = [
    "transcript_messages",
    "history_messages",
    "interrupt_question",
    "Coalescer",
    "LiveRun",
    "FlowFactory",
    "chat_app",
    "launch_chat",
    "DEFAULT_INTERVAL",
]

logger = logging.getLogger(__name__)

#: Seconds between two updates while chunks keep coming (at most ~30 updates a second).
DEFAULT_INTERVAL = 1 / 30

#: `flow_factory(message, history) -> (flow, shared)`: called for every user message with the
#: message's text and the conversation before it as OpenAI-style dicts (`{"role", "content"}`,
#: user messages and the assistant's plain replies; thoughts and tool steps left out).
FlowFactory = Callable[[str, List[Dict[str, str]]], Tuple[BaseNode, Any]]


# -- drawing a transcript ------------------------------------------------------------------


def transcript_messages(transcript: Transcript) -> List[gr.ChatMessage]:
    """The transcript as a new list of new `gr.ChatMessage`s (assistant role), in order.

    A step gets a thought (collapsible, `status` "pending" while it runs and "done" with its
    `duration` after) when it thinks, calls tools, has inner steps, shows values or an error;
    inner steps' thoughts and tool calls nest under it by `parent_id`. A step's answer text is
    a plain message, so the final answer streams into the last one. A paused step's
    interrupt is asked as a plain message. A run that failed ends with its error.
    """
    messages: List[gr.ChatMessage] = []
    call_ids = {call.id for step in transcript.walk() for call in step.tool_calls}
    for step in transcript.steps:
        _draw(step, None, transcript.finished, call_ids, messages)
    if transcript.error is not None and not any(
        step.error for step in transcript.walk() if step.status == "failed"
    ):
        messages.append(gr.ChatMessage(content=f"❌ {transcript.error}"))
    return messages


def _draw(
    step: Step,
    parent_id: Optional[str],
    finished: bool,
    call_ids: AbstractSet[str],
    messages: List[gr.ChatMessage],
) -> None:
    thought_id = parent_id
    if _has_thought(step, call_ids):
        thought_id = step.id
        messages.append(
            gr.ChatMessage(content=_thought_body(step), metadata=_meta(step, parent_id))
        )
        for call in step.tool_calls:
            messages.append(_tool_message(step, call, finished))
        for result in step.results:
            if result.call_id not in call_ids:  # else it shows under its call
                messages.append(
                    gr.ChatMessage(
                        content=_value_block(result.content),
                        metadata={
                            "title": f"{'⚠️' if result.is_error else '📎'} "
                            f"{result.name or 'result'}",
                            "id": f"{step.id}/result/{result.call_id}",
                            "parent_id": step.id,
                            "status": "done",
                        },
                    )
                )
    for child in step.children:
        _draw(child, thought_id, finished, call_ids, messages)
    if step.text or step.refusal:
        text = step.text
        if step.refusal:
            text = f"{text}\n\n*Refused:* {step.refusal}" if text else f"*Refused:* {step.refusal}"
        messages.append(gr.ChatMessage(content=text))
    if step.status == "paused" and step.interrupt is not None:
        messages.append(gr.ChatMessage(content=interrupt_question(step.interrupt)))


def _has_thought(step: Step, call_ids: AbstractSet[str]) -> bool:
    return bool(
        step.thinking
        or step.tool_calls
        or step.children
        or step.values
        or step.error
        or step.retries
        or step.progress
        or step.interrupt is not None
        or any(result.call_id not in call_ids for result in step.results)
    )


def _meta(step: Step, parent_id: Optional[str]) -> Any:
    icon = "❌" if step.status == "failed" else ("🧩" if step.children else "💭")
    # nested thoughts show under their parent: their own name says enough
    name = step.label if parent_id is None else step.node
    if parent_id is not None and step.item is not None:
        name = f"{name} [{step.item}]"
    meta: Dict[str, Any] = {"title": f"{icon} {name}", "id": step.id}
    if parent_id is not None:
        meta["parent_id"] = parent_id
    log = []
    if step.attempt:
        log.append(f"attempt {step.attempt + 1}")
    if step.progress is not None:
        log.append(f"{step.progress[0]}/{step.progress[1]} items")
    if step.status == "paused":
        log.append("waiting for your answer")
    if log:
        meta["log"] = ", ".join(log)
    if step.status == "running":  # a paused step waits without a spinner: the question shows
        meta["status"] = "pending"
    else:
        meta["status"] = "done"
        if step.duration is not None:
            meta["duration"] = round(step.duration, 2)
    return meta


def _thought_body(step: Step) -> str:
    parts = []
    if step.thinking:
        parts.append(step.thinking)
    for value in step.values:
        parts.append(_value_block(value))
    for error in step.retries:
        parts.append(f"⚠️ attempt failed: {error}")
    if step.error:
        parts.append(f"❌ {step.error}")
    return "\n\n".join(parts)


def _tool_message(step: Step, call: ToolCallView, finished: bool) -> gr.ChatMessage:
    body = [_arguments_block(call)]
    if call.done and not call.valid:
        body.append(f"⚠️ not run: {call.error or 'the arguments are not a JSON object'}")
    if call.has_result:
        label = "Error" if call.result_is_error else "Result"
        body.append(f"**{label}**\n\n{_value_block(call.result)}")
    meta: Any = {
        "title": f"🛠️ {call.name or 'tool'}",
        "id": f"{step.id}/{call.id}",
        "parent_id": step.id,
    }
    settled = call.has_result or finished or (call.done and not call.valid)
    if not call.done:
        meta["log"] = "writing arguments…"
    elif not settled:
        meta["log"] = "running…"
    meta["status"] = "done" if settled else "pending"
    return gr.ChatMessage(content="\n\n".join(body), metadata=meta)


def _arguments_block(call: ToolCallView) -> str:
    arguments = call.arguments
    if isinstance(arguments, Mapping):
        lines = []
        for key, value in arguments.items():
            if isinstance(value, str) and ("\n" in value or len(value) > 60):
                lines.append(f"**{key}**\n\n{_fenced(value)}")
            else:
                shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
                lines.append(f"**{key}**: `{shown}`" if "`" not in shown else f"**{key}**: {shown}")
        return "\n\n".join(lines) if lines else "*(no arguments)*"
    if call.arguments_text:
        return _fenced(call.arguments_text, "json")
    return "*(no arguments yet)*"


def _value_block(value: Any) -> str:
    if isinstance(value, str):
        return value if "\n" not in value and len(value) <= 200 else _fenced(value)
    try:
        text = json.dumps(value, ensure_ascii=False, indent=2, default=repr)
    except (TypeError, ValueError):
        text = repr(value)
    return _fenced(text, "json")


def _fenced(text: str, language: str = "") -> str:
    longest, run = 0, 0
    for character in text:
        run = run + 1 if character == "`" else 0
        longest = max(longest, run)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{text}\n{fence}"


def interrupt_question(interrupt: Any) -> str:
    """What an interrupt asks, as chat text: its payload's `question` (or `prompt`,
    `message`, `text`), a string payload as it is, anything else as JSON."""
    payload = getattr(interrupt, "payload", interrupt)
    question: Any = payload
    if isinstance(payload, Mapping):
        for key in ("question", "prompt", "message", "text"):
            if isinstance(payload.get(key), str):
                question = payload[key]
                break
    if not isinstance(question, str):
        question = _value_block(question)
    return f"❓ {question}"


def history_messages(history: Sequence[Any]) -> List[Dict[str, str]]:
    """Gradio's chat history as OpenAI-style `{"role", "content"}` dicts: user messages and the
    assistant's plain replies (thoughts and tool steps left out). Takes both shapes Gradio
    sends — content as a string (gradio_client) or as a list of blocks (the browser)."""
    out: List[Dict[str, str]] = []
    for message in history:
        role: Any
        content: Any
        metadata: Any
        if isinstance(message, gr.ChatMessage):
            role, content, metadata = message.role, message.content, message.metadata
        elif isinstance(message, Mapping):
            role = message.get("role")
            content, metadata = message.get("content"), message.get("metadata") or {}
        else:
            continue
        if role not in ("user", "assistant") or (metadata and metadata.get("title")):
            continue
        text = _text_of(content)
        if text:
            out.append({"role": str(role), "content": text})
    return out


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Mapping):
        return str(content.get("text") or "") if content.get("type", "text") == "text" else ""
    if isinstance(content, (list, tuple)):
        return "\n".join(filter(None, (_text_of(block) for block in content)))
    return ""


# -- coalescing ----------------------------------------------------------------------------


class Coalescer:
    """When to send the next update of a changing view: the first change at once (no
    latency after a quiet spell), then at most one update per `interval` seconds while changes
    keep coming (a burst of tiny chunks becomes ~1/interval updates a second).

        coalescer = Coalescer(1 / 30)
        time.sleep(coalescer.wait())   # 0 after a quiet spell
        send(view); coalescer.sent()
    """

    def __init__(
        self, interval: float = DEFAULT_INTERVAL, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        if not (interval >= 0 and math.isfinite(interval)):
            raise ValueError(f"Coalescer interval must be 0 or more seconds, got {interval!r}")
        self.interval = interval
        self.clock = clock
        self.updates = 0
        self._last = -math.inf

    def wait(self) -> float:
        """Seconds to wait before the next update may go (0: send now)."""
        return max(0.0, self._last + self.interval - self.clock())

    def sent(self) -> None:
        """An update went out now."""
        self._last = self.clock()
        self.updates += 1


# -- a run read as coalesced message lists --------------------------------------------------


class LiveRun:
    """A stream (e.g. `flow.run_stream(shared, events=True)`) folded into a `Transcript` in a
    thread of its own, read as coalesced lists of fresh chat messages.

        run = LiveRun(flow.run_stream(shared, events=True))
        async for messages in run.updates():   # or: for messages in run.iter_updates()
            yield messages

    The first change is drawn at once, then at most one update per `interval` seconds; the
    last update shows the finished run. Leaving the loop early (a Stop button, a closed tab)
    or `stop()` closes the stream in its thread at its next item, so the running node's
    generator is closed and its `finally` runs. After the run: `result` is the stream's
    return value (the final action, or a paused run's handle), `error` what it raised (also
    drawn in the chat), `stopped` whether it was stopped. `render` draws the transcript
    (default `transcript_messages`).
    """

    def __init__(
        self,
        stream: Iterable[Any],
        *,
        interval: float = DEFAULT_INTERVAL,
        render: Callable[[Transcript], List[Any]] = transcript_messages,
        transcript: Optional[Transcript] = None,
        stop_signal: Optional[StopSignal] = None,
    ) -> None:
        self.transcript = Transcript() if transcript is None else transcript
        self.stop_signal = stop_signal
        self.coalescer = Coalescer(interval)
        self.render = render
        self.result: Any = None
        self.error: Optional[BaseException] = None
        self.stopped = False
        self.done = threading.Event()  # set once the stream is over and closed
        self._stream = stream
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._changed = threading.Condition(self._lock)
        self._dirty = False
        self._wake: Optional[Callable[[], None]] = None  # set by an async reader
        self._thread: Optional[threading.Thread] = None

    # -- the producing thread --

    def start(self) -> None:
        """Start folding the stream (the readers call this; calling it again does nothing)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._produce, name="LiveRun", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Ask the run to stop: its stream is closed in its thread at its next item (and the
        run's `stop_signal`, if given, is set: the engine stops before its next chunk)."""
        if self.done.is_set():
            return  # over: a paused run's signal must stay clear for its resume
        self._stop.set()
        if self.stop_signal is not None:
            self.stop_signal.set()

    def _produce(self) -> None:
        iterator = iter(self._stream)
        try:
            while not self._stop.is_set():
                try:
                    item = next(iterator)
                except StopIteration as end:
                    self.result = end.value
                    break
                if self._stop.is_set():
                    break
                with self._lock:
                    changed = self.transcript.add(item)
                    if changed:
                        self._signal()
        except Exception as error:  # the run failed: shown in the chat, logged here
            logger.exception("the run failed")
            self.error = error
            with self._lock:
                self.transcript.fail(error)
        finally:
            self.stopped = self._stop.is_set()
            try:
                close = getattr(iterator, "close", None)
                if close is not None:
                    close()  # a stopped run: the running node's generator closes here
            finally:
                with self._lock:
                    if not self.transcript.finished and not self.transcript.pending:
                        self.transcript.finish()
                    self.done.set()
                    self._signal()

    def _signal(self) -> None:  # with the lock held
        if not self._dirty:
            self._dirty = True
            self._changed.notify_all()
            if self._wake is not None:
                self._wake()

    def messages(self) -> List[Any]:
        """The run drawn as it is now (fresh objects), whatever the coalescer says."""
        with self._lock:
            return self.render(self.transcript)

    def _take(self) -> Tuple[List[Any], bool]:
        """The update to send now, and whether it is the last."""
        with self._lock:
            self._dirty = False
            over = self.done.is_set()
            messages = self.render(self.transcript)
        self.coalescer.sent()
        return messages, over

    # -- readers --

    async def updates(self) -> AsyncGenerator[List[Any], None]:
        """Coalesced message lists, as an async generator (what a Gradio async handler
        yields). Cancelling it (Gradio's Stop) or leaving the loop stops the run at once."""
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()

        def wake() -> None:
            try:
                loop.call_soon_threadsafe(changed.set)
            except RuntimeError:  # the loop closed under us: nobody is reading any more
                pass

        with self._lock:
            self._wake = wake
            if self._dirty or self.done.is_set():
                changed.set()
        self.start()
        try:
            while True:
                await changed.wait()
                delay = self.coalescer.wait()
                if delay > 0:
                    await asyncio.sleep(delay)
                changed.clear()
                messages, over = self._take()
                yield messages
                if over:
                    return
        finally:
            with self._lock:
                self._wake = None
            self.stop()

    def iter_updates(self) -> Iterator[List[Any]]:
        """Coalesced message lists, as a plain generator (for a sync Gradio handler; closing it
        stops the run, though Gradio closes a sync handler only between two updates)."""
        self.start()
        try:
            while True:
                with self._lock:
                    while not self._dirty and not self.done.is_set():
                        self._changed.wait()
                delay = self.coalescer.wait()
                if delay > 0:
                    time.sleep(delay)
                messages, over = self._take()
                yield messages
                if over:
                    return
        finally:
            self.stop()


# -- the ready app ---------------------------------------------------------------------------


class _Session:
    """A browser session's run between two messages: the paused run waiting for the user's
    answer (in-process: the suspended generators live in this handle), and how it ran."""

    __slots__ = ("paused", "asynchronous", "stop", "live")

    def __init__(
        self, paused: Any, asynchronous: bool, stop: StopSignal, live: Optional[LiveRun] = None
    ) -> None:
        self.paused = paused
        self.asynchronous = asynchronous
        self.stop = stop  # the run keeps the signal it started with
        self.live = live  # the run streaming now (for the Stop button's last picture)


def _give_up(session: Any) -> None:
    """Gradio dropped a session (tab closed long ago): close the run it left paused."""
    paused = getattr(session, "paused", None)
    if paused is not None:
        paused.close()


def _start(flow: Any, shared: Any, stop: StopSignal) -> Tuple[Iterable[Any], bool]:
    """The run's items with lifecycle events, and whether it runs under the async driver: a
    sync flow's own generator, an async flow through the bridge (its own event loop in the
    producing thread)."""
    if isinstance(flow, AsyncNode):  # async flows and nodes (their run_stream refuses)
        return run_stream_sync(flow, shared, events=True, stop=stop), True
    if hasattr(flow, "run_stream"):
        return flow.run_stream(shared, events=True, stop=stop), False
    raise TypeError(
        f"chat_app: flow_factory returned a {type(flow).__name__}, which cannot be streamed; "
        "return (flow, shared) where flow is a StreamFlow, a node or an async flow"
    )


def _resume(session: _Session, answer: str) -> Iterable[Any]:
    """The paused run going on with the user's message as the answer to its first pending
    interrupt (others, if any, are asked again after it)."""
    paused = session.paused
    answers = {paused.interrupts[0].id: answer}
    if session.asynchronous:
        from ..bridges import resume_stream_sync

        return resume_stream_sync(paused, answers)
    return paused.resume(answers)  # type: ignore[no-any-return]


def _made(made: Any) -> Tuple[Any, Any]:
    if not (isinstance(made, tuple) and len(made) == 2):
        raise TypeError(
            f"chat_app: flow_factory(message, history) must return a (flow, shared) pair, got "
            f"{type(made).__name__}; e.g. return StreamFlow(start=plan), "
            '{"messages": history + [{"role": "user", "content": message}]}'
        )
    return made


def chat_app(
    flow_factory: FlowFactory,
    *,
    title: Optional[str] = None,
    description: Optional[str] = None,
    examples: Optional[List[str]] = None,
    interval: float = DEFAULT_INTERVAL,
    api_name: str = "chat",
    height: Any = 600,
    **chat_interface_options: Any,
) -> gr.ChatInterface:
    """A Gradio chat app streaming a flow's run for every message.

    `flow_factory(message, history) -> (flow, shared)` is called for each user message, with
    the message's text and the conversation before it as OpenAI-style `{"role", "content"}`
    dicts (user messages and the assistant's plain replies): build a fresh flow and shared
    there, so every browser session has its own run and state. The flow is streamed with
    lifecycle events and drawn by `transcript_messages`, coalesced to at most one update per
    `interval` seconds. Every session streams at once (`concurrency_limit=None`); the Stop
    button closes the running node's generator. The API endpoint is `/<api_name>`.
    Other keyword arguments go to `gr.ChatInterface`. Returns the app; `app.launch()` serves
    it on 127.0.0.1 (see `launch_chat`)::

        chat_app(make_flow, title="Agent").launch()
    """

    async def chat(
        message: Any, history: List[Any], session: Optional[_Session]
    ) -> AsyncIterator[Tuple[List[Any], Optional[_Session]]]:
        text = _text_of(message) if not isinstance(message, str) else message
        stop = StopSignal()
        if session is not None and session.paused is not None:  # the answer it waits for
            stream, asynchronous, stop = _resume(session, text), session.asynchronous, session.stop
        else:
            flow, shared = _made(flow_factory(text, history_messages(history)))
            stream, asynchronous = _start(flow, shared, stop)
        run = LiveRun(stream, interval=interval, stop_signal=stop)
        updates = run.updates()
        try:
            async for messages in updates:
                if not run.done.is_set():
                    yield messages, _Session(None, asynchronous, stop, live=run)
                elif isinstance(run.result, Paused):
                    yield messages, _Session(run.result, asynchronous, stop)
                else:
                    yield messages, None
        finally:
            await updates.aclose()  # stops the run (also when Gradio cancels us)

    chat.__name__ = api_name
    options: Dict[str, Any] = {
        "concurrency_limit": None,
        "api_name": api_name,
        "fill_height": True,
    }
    options.update(chat_interface_options)
    chatbot = options.pop("chatbot", None) or gr.Chatbot(
        height=height, show_label=False, placeholder=description
    )
    session = gr.State(None, render=False, delete_callback=_give_up)
    app = gr.ChatInterface(
        chat,
        chatbot=chatbot,
        additional_inputs=[session],
        additional_outputs=[session],
        additional_inputs_accordion=gr.Accordion(visible=False, render=False),  # state only
        title=title,
        description=description,
        examples=examples,
        **options,
    )
    with app:  # Gradio cancels the handler on Stop; this draws the stopped run's last state
        app.textbox.stop(
            _stopped, [app.chatbot, session], [app.chatbot, session], api_visibility="private"
        )
    return app


async def _stopped(history: List[Any], session: Optional[_Session]) -> Tuple[List[Any], None]:
    """Stop: stop the session's run, wait (briefly) until its stream closed, and show its
    last state in place of the turn's partial picture, no step left spinning."""
    run = getattr(session, "live", None)
    if run is None:
        return history, None
    run.stop()
    await asyncio.get_running_loop().run_in_executor(None, run.done.wait, 10)
    turn_starts = len(history)
    while turn_starts > 0 and _role_of(history[turn_starts - 1]) != "user":
        turn_starts -= 1
    return list(history[:turn_starts]) + run.messages() + [
        gr.ChatMessage(content="⏹ Stopped.")
    ], None


def _role_of(message: Any) -> Any:
    return message.get("role") if isinstance(message, Mapping) else getattr(message, "role", None)


def launch_chat(
    flow_factory: FlowFactory,
    *,
    server_name: str = "127.0.0.1",
    server_port: Optional[int] = None,
    app_options: Optional[Mapping[str, Any]] = None,
    **launch_options: Any,
) -> gr.ChatInterface:
    """Build `chat_app(flow_factory, **app_options)` and launch it on `server_name`
    (127.0.0.1 unless you ask otherwise; "0.0.0.0" opens it to your network)."""
    app = chat_app(flow_factory, **dict(app_options or {}))
    app.launch(server_name=server_name, server_port=server_port, **launch_options)
    return app
