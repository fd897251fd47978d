"""The Gradio view without a browser: a transcript drawn as chat messages by Gradio's agent
conventions, the coalescer's timing rule, LiveRun's fresh updates and stopping, the history
handed to the flow factory, and the app's clear errors."""

from __future__ import annotations

import asyncio
import importlib
import os
import threading
from typing import Any, Iterator, List

import pytest


def needed(module: str) -> Any:
    """Import `module`; without it skip, except in CI (`.ci/run` installs it): fail there."""
    if os.environ.get("CI"):
        return importlib.import_module(module)
    return pytest.importorskip(module, reason=f"{module} missing: pip install -e '.[test]'")


os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
gr = needed("gradio")

from pocketflow_stream import StreamFlow, StreamNode  # noqa: E402
from pocketflow_stream.llm import (  # noqa: E402
    LLMNode,
    ReasoningDelta,
    ScriptedModel,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallSpec,
    ToolCallStart,
    Turn,
)
from pocketflow_stream.ui.gradio import (  # noqa: E402
    Coalescer,
    LiveRun,
    chat_app,
    history_messages,
    interrupt_question,
    transcript_messages,
)
from pocketflow_stream.ui.transcript import ToolResult, Transcript  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
WAIT = 20.0


def drawn(messages: List[Any]) -> List[tuple]:
    """(title or None, parent_id, status, content) per message: what the chat shows."""
    return [
        (
            m.metadata.get("title"),
            m.metadata.get("parent_id"),
            m.metadata.get("status"),
            m.content,
        )
        for m in messages
    ]


class Think(StreamNode):
    def exec_stream(self, prep_res: Any) -> Iterator[Any]:
        yield ReasoningDelta("pondering")
        yield TextDelta("The answer.")


def test_a_thinking_step_is_a_thought_and_its_text_a_plain_message() -> None:
    transcript = Transcript()
    transcript.extend(StreamFlow(start=Think(name="Plan")).run_stream({}, events=True))
    messages = transcript_messages(transcript)
    assert drawn(messages) == [
        ("💭 Plan", None, "done", "pondering"),
        (None, None, None, "The answer."),
    ]
    assert isinstance(messages[0].metadata["duration"], float)
    assert all(m.role == "assistant" for m in messages)


def test_a_running_step_is_pending_without_a_duration() -> None:
    transcript = Transcript()
    stream = StreamFlow(start=Think(name="Plan")).run_stream({}, events=True)
    for item in stream:
        transcript.add(item)
        if getattr(item, "data", None) == ReasoningDelta("pondering"):
            break
    (thought,) = transcript_messages(transcript)
    assert thought.metadata["status"] == "pending" and "duration" not in thought.metadata
    stream.close()


def test_nested_flows_nest_thoughts_and_tool_calls_by_parent_id() -> None:
    model = ScriptedModel(
        [Turn(reasoning="hmm", tool_calls=[ToolCallSpec("save_file", {"path": "a.md"})])]
    )
    inner = StreamFlow(start=LLMNode(model, name="Plan"), name="Agent")
    transcript = Transcript()
    transcript.extend(StreamFlow(start=inner).run_stream({"messages": []}, events=True))
    agent, plan, call = transcript_messages(transcript)
    assert agent.metadata["title"] == "🧩 Agent" and "parent_id" not in agent.metadata
    assert plan.metadata["title"] == "💭 Plan"
    assert plan.metadata["parent_id"] == agent.metadata["id"]
    assert call.metadata["title"] == "🛠️ save_file"
    assert call.metadata["parent_id"] == plan.metadata["id"]
    assert call.content == "**path**: `a.md`"


def call_chunks(content: str, *, end: bool) -> List[Any]:
    """A Plan node's chunks: a save_file call whose arguments stop after `content`."""
    arguments = '{"path": "notes.md", "content": "' + content
    deltas: List[Any] = [ToolCallStart(0, "c1", "save_file"), ToolCallDelta(0, arguments)]
    if end:
        deltas += [ToolCallDelta(0, '"}'), ToolCallEnd(0)]

    class Plan(StreamNode):
        def exec_stream(self, prep_res: Any) -> Iterator[Any]:
            yield from deltas

    items = list(Plan(name="Plan").run_stream({}))
    return items


def test_a_tool_call_shows_its_arguments_as_they_stream_then_its_result() -> None:
    transcript = Transcript()
    transcript.extend(call_chunks("line one\\nline", end=False))
    _, call = transcript_messages(transcript)
    assert call.metadata["status"] == "pending" and call.metadata["log"] == "writing arguments…"
    assert call.content == "**path**: `notes.md`\n\n**content**\n\n```\nline one\nline\n```"

    transcript = Transcript()
    transcript.extend(call_chunks("line one\\nline two", end=True))
    _, call = transcript_messages(transcript)
    assert call.metadata["status"] == "pending" and call.metadata["log"] == "running…"
    assert "line two" in call.content

    class Act(StreamNode):
        def exec_stream(self, prep_res: Any) -> Iterator[Any]:
            yield ToolResult("c1", "saved", name="save_file")

    transcript.extend(Act(name="Act").run_stream({}))
    _, call = transcript_messages(transcript)
    assert call.metadata["status"] == "done" and "log" not in call.metadata
    assert call.content.endswith("**Result**\n\nsaved")


def test_a_call_that_never_parsed_says_it_was_not_run() -> None:
    class Plan(StreamNode):
        def exec_stream(self, prep_res: Any) -> Iterator[Any]:
            yield ToolCallStart(0, "c1", "save_file")
            yield ToolCallDelta(0, '{"path": ')
            yield ToolCallEnd(0)

    transcript = Transcript()
    transcript.extend(Plan(name="Plan").run_stream({}))
    _, call = transcript_messages(transcript)
    assert call.metadata["status"] == "done"
    assert "⚠️ not run: invalid JSON arguments" in call.content


def test_content_with_backticks_gets_a_longer_fence() -> None:
    transcript = Transcript()
    transcript.extend(call_chunks("```python\\nx = 1\\n```", end=True))
    _, call = transcript_messages(transcript)
    assert "````\n```python\nx = 1\n```\n````" in call.content


class Flaky(StreamNode):
    def exec_stream(self, prep_res: Any) -> Iterator[Any]:
        yield TextDelta(f"attempt {self.cur_retry} says ")
        if self.cur_retry == 0:
            raise RuntimeError("overloaded")
        yield TextDelta("hello")


def test_a_retried_attempt_replaces_its_partial_answer() -> None:
    transcript = Transcript()
    transcript.extend(Flaky(max_retries=2, name="Talk").run_stream({}, events=True))
    thought, answer = transcript_messages(transcript)
    assert answer.content == "attempt 1 says hello"  # not "attempt 0 says attempt 1 ..."
    assert thought.metadata["log"] == "attempt 2"
    assert "⚠️ attempt failed: RuntimeError: overloaded" in thought.content


def test_a_failed_run_shows_its_error() -> None:
    class Broken(StreamNode):
        def exec_stream(self, prep_res: Any) -> Iterator[Any]:
            yield "partial"
            raise ValueError("the disk is full")

    run = LiveRun(StreamFlow(start=Broken(name="Save")).run_stream({}, events=True))
    *_, last = run.iter_updates()
    assert isinstance(run.error, ValueError)
    assert drawn(last)[0][:3] == ("❌ Save", None, "done")
    assert "ValueError: the disk is full" in last[0].content


def test_an_interrupt_is_asked_as_a_plain_message() -> None:
    transcript = Transcript()
    transcript.add(
        {
            "type": "interrupt",
            "id": "i1",
            "payload": {"question": "Save notes.md?"},
            "node": "Ask",
            "path": ["Ask"],
            "item": None,
            "batch": None,
        }
    )
    thought, question = transcript_messages(transcript)
    assert question.content == "❓ Save notes.md?" and question.metadata == {}
    assert thought.metadata["status"] == "done"  # no spinner: it is the user's turn
    assert thought.metadata["log"] == "waiting for your answer"
    assert interrupt_question("Go on?") == "❓ Go on?"
    assert interrupt_question({"tool": "rm"}) == '❓ ```json\n{\n  "tool": "rm"\n}\n```'


# -- the coalescer -------------------------------------------------------------------------


def test_the_coalescer_sends_the_first_change_at_once_then_at_most_one_per_interval() -> None:
    now = [100.0]
    coalescer = Coalescer(0.1, clock=lambda: now[0])
    assert coalescer.wait() == 0  # nothing sent yet: at once
    coalescer.sent()
    now[0] += 0.03
    assert coalescer.wait() == pytest.approx(0.07)
    now[0] += 0.07
    assert coalescer.wait() == 0
    coalescer.sent()
    now[0] += 5  # a quiet spell: the next change goes at once
    assert coalescer.wait() == 0
    assert coalescer.updates == 2
    with pytest.raises(ValueError, match="interval must be 0 or more seconds"):
        Coalescer(-1)


# -- LiveRun ---------------------------------------------------------------------------------


class Held(StreamNode):
    """Streams words; after the first it waits for `go`; `closed` once its finally ran."""

    def __init__(self, words: int, go: threading.Event, closed: threading.Event) -> None:
        super().__init__(name="Talk")
        self.words, self.go, self.closed = words, go, closed

    def exec_stream(self, prep_res: Any) -> Iterator[Any]:
        try:
            for index in range(self.words):
                yield TextDelta(f"w{index} ")
                if index == 0:
                    assert self.go.wait(WAIT)
        finally:
            self.closed.set()


def test_every_update_is_fresh_objects_and_the_last_shows_the_end() -> None:
    go, closed = threading.Event(), threading.Event()
    run = LiveRun(StreamFlow(start=Held(200, go, closed)).run_stream({}, events=True), interval=0)
    updates = []
    for messages in run.iter_updates():
        updates.append(messages)
        go.set()
    assert updates[-1][-1].content == "".join(f"w{i} " for i in range(200))
    assert len(updates) >= 2
    seen_messages, seen_metadata = set(), set()
    for messages in updates:
        for message in messages:
            assert id(message) not in seen_messages and id(message.metadata) not in seen_metadata
        # keep them alive, so an id is never reused by a later object
        seen_messages |= {id(m) for m in messages}
        seen_metadata |= {id(m.metadata) for m in messages}
    assert len({id(messages) for messages in updates}) == len(updates)
    assert run.done.is_set() and closed.is_set() and not run.stopped


def test_leaving_the_updates_early_closes_the_running_node() -> None:
    go, closed = threading.Event(), threading.Event()
    run = LiveRun(StreamFlow(start=Held(1000, go, closed)).run_stream({}))
    updates = run.iter_updates()
    first = next(updates)
    assert first[-1].content == "w0 "  # shown while the node waits after its first word
    updates.close()
    go.set()
    assert run.done.wait(WAIT) and closed.is_set() and run.stopped
    assert "w999" not in transcript_messages(run.transcript)[-1].content


def test_cancelling_the_async_updates_stops_the_run() -> None:
    go, closed = threading.Event(), threading.Event()
    run = LiveRun(StreamFlow(start=Held(1000, go, closed)).run_stream({}))

    async def main() -> None:
        shown = asyncio.Event()

        async def read() -> None:
            async for messages in run.updates():
                if messages and messages[-1].content == "w0 ":
                    shown.set()

        task = asyncio.create_task(read())
        await asyncio.wait_for(shown.wait(), WAIT)
        task.cancel()  # what Gradio's Stop does to an async handler
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    go.set()
    assert run.done.wait(WAIT) and closed.is_set() and run.stopped


def test_a_burst_goes_out_at_most_once_per_interval() -> None:
    class Burst(StreamNode):
        def exec_stream(self, prep_res: Any) -> Iterator[Any]:
            for _ in range(10_000):
                yield "x"

    run = LiveRun(StreamFlow(start=Burst()).run_stream({}), interval=0.02)
    sent: List[float] = []
    clock = run.coalescer.clock
    recorded_sent = run.coalescer.sent

    def sent_now() -> None:
        recorded_sent()
        sent.append(clock())

    run.coalescer.sent = sent_now  # type: ignore[method-assign]
    updates = list(run.iter_updates())
    assert updates[-1][-1].content == "x" * 10_000
    assert len(sent) == len(updates) < 10_000
    gaps = [later - earlier for earlier, later in zip(sent, sent[1:])]
    assert all(gap >= 0.02 for gap in gaps), gaps


# -- history and the app -------------------------------------------------------------------


def test_history_reaches_the_flow_as_openai_messages_without_thoughts() -> None:
    history = [
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},  # from the browser
        {"role": "assistant", "content": "thinking", "metadata": {"title": "💭 Plan"}},
        {"role": "assistant", "content": "hello"},  # from gradio_client
        gr.ChatMessage(content="more", role="assistant"),
        {"role": "user", "content": [{"type": "file", "file": {"path": "x.png"}}]},
    ]
    assert history_messages(history) == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "assistant", "content": "more"},
    ]


def test_the_app_says_what_the_flow_factory_must_return() -> None:
    app = chat_app(lambda message, history: StreamFlow(start=Think()))
    handler = app.fn

    async def first() -> Any:
        return await handler("hi", [], None).__anext__()

    with pytest.raises(TypeError, match=r"must return a \(flow, shared\) pair, got StreamFlow"):
        asyncio.run(first())


def test_the_app_streams_every_session_at_once_on_a_named_endpoint() -> None:
    app = chat_app(lambda message, history: (StreamFlow(start=Think()), {}), api_name="ask")
    (chat,) = [fn for fn in app.fns.values() if fn.api_name == "ask"]
    assert chat.concurrency_limit is None


def run_handler(app: Any, message: str, session: Any = None) -> Any:
    """Every (messages, session) the app's chat handler yields for one message."""

    async def collect() -> List[Any]:
        return [update async for update in app.fn(message, [], session)]

    return asyncio.run(collect())


def test_an_async_flow_streams_and_its_interrupt_is_answered_by_the_next_message() -> None:
    from pocketflow_stream import Ask, AsyncStreamFlow, AsyncStreamNode

    class Confirm(AsyncStreamNode):
        async def exec_stream_async(self, prep_res: Any) -> Any:
            yield TextDelta("Checking. ")
            answer = yield Ask({"question": "Which file?"})
            yield TextDelta(f"Saving {answer}.")

    app = chat_app(lambda message, history: (AsyncStreamFlow(start=Confirm(name="Confirm")), {}))
    *_, (asked, session) = run_handler(app, "save it")
    assert [m.content for m in asked][-2:] == ["Checking. ", "❓ Which file?"]
    assert session is not None and session.asynchronous
    *_, (answered, after) = run_handler(app, "notes.md", session)
    assert answered[-1].content == "Saving notes.md." and after is None


def test_a_dropped_session_closes_the_run_it_left_paused() -> None:
    from pocketflow_stream import Ask
    from pocketflow_stream.ui import gradio as view

    closed = threading.Event()

    class Confirm(StreamNode):
        def exec_stream(self, prep_res: Any) -> Any:
            try:
                yield Ask({"question": "Go on?"})
            finally:
                closed.set()

    app = chat_app(lambda message, history: (StreamFlow(start=Confirm()), {}))
    *_, (_, session) = run_handler(app, "start")
    assert session is not None and not closed.is_set()
    view._give_up(session)  # what Gradio's State delete_callback does with it
    assert closed.is_set()
