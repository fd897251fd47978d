"""The Gradio chat app in a real browser (Debian's Chromium, driven by Playwright) and through
gradio_client: streamed text shows before the run ends, a tool step's arguments grow live, the
Stop button closes the running node, two sessions stream at once, and a screenshot for the
README. One app and one browser for the module; every run is held open by events the test
releases, never by timing."""

from __future__ import annotations

import importlib
import os
import threading
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest


def needed(module: str) -> Any:
    """Import `module`; without it skip, except in CI (`.ci/run` installs it): fail there."""
    if os.environ.get("CI"):
        return importlib.import_module(module)
    return pytest.importorskip(module, reason=f"{module} missing: pip install -e '.[test]'")


os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

gr = needed("gradio")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore:.*:Warning:gradio")

from chromium import chromium  # noqa: E402

from pocketflow_stream import Ask, Node, StopSignal, StreamFlow, StreamNode  # noqa: E402
from pocketflow_stream.llm import LLMNode, ScriptedModel  # noqa: E402
from pocketflow_stream.llm.deltas import TextDelta, ToolCallDelta  # noqa: E402
from pocketflow_stream.llm.scripted import ToolCallSpec, Turn  # noqa: E402
from pocketflow_stream.ui.gradio import chat_app  # noqa: E402
from pocketflow_stream.ui.transcript import ToolResult  # noqa: E402

WAIT = 20.0  # seconds: the most any bounded wait here lasts (a failing test, not a slow one)
THOUGHT = "[role=button].title"  # a thought's title bar (click to open or fold it)
DOCS = Path(__file__).resolve().parent.parent / "docs"


# -- the runs the app serves, each held open by the test -----------------------------------


class Gates:
    """One run's controls: `started` once it holds, `release` to let it go on, `closed`
    once the model stream's `finally` ran (the node closed it), `produced` deltas made."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.closed = threading.Event()
        self.produced = 0
        self.total = 0


GATES: Dict[str, Gates] = {}


def gates(key: str) -> Gates:
    return GATES.setdefault(key, Gates())


class GatedModel:
    """A ScriptedModel whose stream stops before the first delta `hold(delta, seen)` picks and
    waits there for the test; `seen` is the text and arguments streamed so far."""

    def __init__(self, model: ScriptedModel, key: str, hold: Any) -> None:
        self.model, self.gates, self.hold = model, gates(key), hold

    def stream(self, messages: List[Dict[str, Any]], **options: Any) -> Iterator[Any]:
        deltas = list(self.model.stream(messages, **options))
        self.gates.total = len(deltas)

        def paced() -> Iterator[Any]:
            seen, held = "", False
            try:
                for delta in deltas:
                    if not held and self.hold(delta, seen):
                        held = True
                        self.gates.started.set()
                        assert self.gates.release.wait(3 * WAIT), "the test never released the run"
                    seen += getattr(delta, "text", "") + getattr(delta, "arguments", "")
                    self.gates.produced += 1
                    yield delta
            finally:
                self.gates.closed.set()

        return paced()


class Plan(LLMNode):
    def post(self, shared: Any, prep_res: Any, reply: Any) -> str:
        shared["messages"].append(reply.to_openai())
        shared["calls"] = reply.tool_calls
        return "act" if reply.tool_calls else "done"


class Act(StreamNode):
    """Runs the (pretend) tools the plan called, yielding each result for the view."""

    def prep(self, shared: Any) -> Any:
        return shared["calls"]

    def exec_stream(self, calls: Any) -> Any:
        results = []
        for call in calls:
            arguments = call.arguments
            if call.name == "save_file":
                content = (
                    f"saved {len(arguments['content'].splitlines())} lines to {arguments['path']}"
                )
            else:  # the calculator of the pictured run
                content = "397.8"
            yield ToolResult(call.id, content, name=call.name)
            results.append((call.id, content))
        return results

    def post(self, shared: Any, prep_res: Any, results: Any) -> None:
        for call_id, content in results:
            shared["messages"].append({"role": "tool", "tool_call_id": call_id, "content": content})


class Done(Node):
    pass


class Confirm(StreamNode):
    """Asks which file to save in the middle of its stream, then goes on with the answer."""

    def __init__(self, run: Gates, name: str) -> None:
        super().__init__(name=name)
        self.gates = run

    def exec_stream(self, prep_res: Any) -> Any:
        self.gates.produced += 1  # how many times this generator started
        try:
            yield "Let me check. "
            answer = yield Ask({"question": "Which file should I save?"})
            yield f"Saving {answer}."
        finally:
            self.gates.closed.set()


def agent(model: Any) -> StreamFlow:
    plan = Plan(model, name="Plan")
    plan - "act" >> Act(name="Act") >> plan
    plan - "done" >> Done()
    return StreamFlow(start=plan)


def text_held(delta: Any, seen: str) -> bool:
    return isinstance(delta, TextDelta) and bool(seen)


def arguments_held(delta: Any, seen: str) -> bool:
    return isinstance(delta, ToolCallDelta) and "line one" in seen


NOTES = "line one\nline two\nline three"


def make_flow(message: str, history: List[Dict[str, str]]) -> Any:
    kind, _, key = message.partition(" ")
    shared = {"messages": history + [{"role": "user", "content": message}]}
    if kind == "hold":  # a reply held after its first sentence
        script = ScriptedModel([Turn(text="Streaming starts. Finished now.")], chunk_size=18)
        return agent(GatedModel(script, key, text_held)), shared
    if kind == "tool":  # a save_file call held in the middle of its content
        script = ScriptedModel(
            [
                Turn(
                    reasoning="The user wants the notes saved.",
                    tool_calls=[ToolCallSpec("save_file", {"path": "notes.md", "content": NOTES})],
                ),
                Turn(text="Saved notes.md."),
            ],
            chunk_size=6,
        )
        return agent(GatedModel(script, key, arguments_held)), shared
    if kind == "stop":  # a long reply, held after its first chunk until the test stops it
        script = ScriptedModel([Turn(reasoning="Counting.", text="tick " * 2000)], chunk_size=5)
        return agent(GatedModel(script, key, text_held)), shared
    if kind == "ask":  # the model plans, then a node asks the user mid-stream
        script = ScriptedModel([Turn(reasoning="I need to know which file to write.")])
        plan = LLMNode(script, name="Plan")
        plan >> Confirm(gates(key), name="Confirm")
        return StreamFlow(start=plan), shared
    if message.startswith("What is 17%"):  # the pictured run
        return demo_flow(), shared
    raise AssertionError(f"no scenario for {message!r}")


def demo_flow() -> StreamFlow:
    model = ScriptedModel(
        [
            Turn(
                reasoning="The user asks what 17% of 2,340 is. I will use the calculator "
                "rather than guess, then save the answer to a file.",
                tool_calls=[ToolCallSpec("calculator", {"expression": "0.17 * 2340"})],
            ),
            Turn(
                reasoning="The calculator says 397.8. Now I save a short note.",
                tool_calls=[
                    ToolCallSpec(
                        "save_file",
                        {"path": "answer.md", "content": "# Answer\n\n17% of 2,340 is 397.8 ✅"},
                    )
                ],
            ),
            Turn(text="**17% of 2,340 is 397.8.** I saved the working to `answer.md` 📝."),
        ],
        delay=0.01,  # for the picture: steps with a visible duration
    )
    inner = agent(model)
    inner.name = "Agent"
    return StreamFlow(start=inner)


# -- the app, the browser -----------------------------------------------------------------


@pytest.fixture(scope="module")
def app() -> Iterator[Any]:
    demo = chat_app(make_flow, title="pocketflow_stream chat", height=900)
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    try:
        yield demo
    finally:
        for gate in GATES.values():
            gate.release.set()
        demo.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def page(app: Any, browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1000, "height": 1150})
    page = context.new_page()
    page.set_default_timeout(WAIT * 1000)
    page.goto(app.local_url)
    try:
        yield page
    finally:
        context.close()


def send(page: Any, message: str) -> None:
    box = page.locator('textarea[data-testid="textbox"]')
    box.fill(message)
    box.press("Enter")


def settled(page: Any) -> None:
    """Wait until the run's last update is drawn: no thought pending, every done one folded."""
    page.wait_for_function(
        "() => !document.querySelector("
        "'[data-testid=bot] .loading-spinner, [data-testid=bot] .title.expanded')"
    )


def open_thought(page: Any, title: str, nth: int, shows: str) -> None:
    """Open the `nth` (folded) thought titled `title`; wait for `shows` inside it."""
    page.locator(THOUGHT, has_text=title).nth(nth).click()
    page.get_by_text(shows).first.wait_for()


def bot_text(page: Any) -> str:
    return " ".join(page.locator('[data-testid="bot"]').all_inner_texts())


# -- in the browser -------------------------------------------------------------------------


def test_streamed_text_shows_before_the_run_ends(page: Any) -> None:
    run = gates("browser-text")
    send(page, "hold browser-text")
    assert run.started.wait(WAIT)
    page.get_by_text("Streaming starts.").wait_for()
    assert "Finished now." not in bot_text(page)
    assert not run.closed.is_set()  # the run is still open while its text shows
    run.release.set()
    page.get_by_text("Streaming starts. Finished now.").wait_for()
    assert run.closed.wait(WAIT)


def test_a_tool_step_shows_its_arguments_growing_then_its_result(page: Any) -> None:
    run = gates("browser-tool")
    send(page, "tool browser-tool")
    assert run.started.wait(WAIT)
    step = page.locator(THOUGHT, has_text="save_file").first
    step.wait_for()
    page.get_by_text("line one").first.wait_for()  # the call is pending: its body shows
    assert "line three" not in bot_text(page)
    run.release.set()
    page.get_by_text("Saved notes.md.").wait_for()
    settled(page)
    open_thought(page, "Plan", 0, "save_file")  # done thoughts fold away: open them
    open_thought(page, "save_file", 0, "line three")
    page.get_by_text("saved 3 lines to notes.md").first.wait_for()


def test_the_stop_button_closes_the_running_node(page: Any, monkeypatch: Any) -> None:
    requested = threading.Event()  # the run's StopSignal was set (Stop reached the server)
    set_signal = StopSignal.set

    def set_and_tell(signal: StopSignal) -> None:
        set_signal(signal)
        requested.set()

    monkeypatch.setattr(StopSignal, "set", set_and_tell)
    run = gates("browser-stop")
    send(page, "stop browser-stop")
    assert run.started.wait(WAIT)
    page.get_by_text("Counting.").wait_for()  # its thought is pending: a spinner shows
    page.locator('[data-testid="stop-button"]').click()
    # released only once the click reached the run (a click returns when the browser sent
    # it): the model would stream on now; the stop must close it first
    assert requested.wait(WAIT), "Stop never reached the run's StopSignal"
    run.release.set()
    assert run.closed.wait(WAIT), "the node's finally never ran after Stop"
    assert run.produced < run.total, "the run streamed to its end despite Stop"
    page.get_by_text("⏹ Stopped.").wait_for()  # and the chat says so, nothing left spinning
    page.wait_for_function("() => !document.querySelector('[data-testid=bot] .loading-spinner')")


def test_an_interrupt_asks_in_the_chat_and_the_next_message_answers_it(page: Any) -> None:
    run = gates("browser-ask")
    send(page, "ask browser-ask")
    page.get_by_text("❓ Which file should I save?").wait_for()
    assert not run.closed.is_set()  # the asking generator waits, suspended, for the answer
    send(page, "notes.md")
    page.get_by_text("Saving notes.md.").wait_for()
    assert run.closed.wait(WAIT)
    assert run.produced == 1  # the same generator went on: nothing ran again
    send(page, "hold browser-after")  # answered: the next message starts a new run
    after = gates("browser-after")
    assert after.started.wait(WAIT)
    after.release.set()
    page.get_by_text("Streaming starts. Finished now.").wait_for()


def test_two_sessions_stream_at_once(page: Any, app: Any, browser: Any) -> None:
    first, second = gates("session-a"), gates("session-b")
    context = browser.new_context()
    other = context.new_page()
    other.set_default_timeout(WAIT * 1000)
    try:
        other.goto(app.local_url)
        send(page, "hold session-a")
        assert first.started.wait(WAIT)
        send(other, "hold session-b")
        # the first run is held: had the app queued the second user, this would never start
        assert second.started.wait(WAIT), "the second session waited for the first run"
        assert not first.release.is_set()
        page.get_by_text("Streaming starts.").wait_for()
        other.get_by_text("Streaming starts.").wait_for()
        second.release.set()
        other.get_by_text("Streaming starts. Finished now.").wait_for()
        assert "Finished now." not in bot_text(page)  # each session shows its own run
        first.release.set()
        page.get_by_text("Streaming starts. Finished now.").wait_for()
    finally:
        context.close()


def test_screenshot_of_an_agent_run(page: Any, tmp_path: Path) -> None:
    """The picture goes to a temporary folder; POCKETFLOW_STREAM_UPDATE_SCREENSHOT=1 writes
    the README's docs/gradio-chat.png instead (so a test run leaves the tracked file alone)."""
    send(page, "What is 17% of 2,340? Save the answer to a file.")
    page.get_by_text("17% of 2,340 is 397.8.").first.wait_for()
    settled(page)
    # done thoughts fold away: open the agent, its plans and their tool calls for the picture
    open_thought(page, "Agent", 0, "Plan")
    open_thought(page, "Plan", 0, "I will use the calculator")
    open_thought(page, "calculator", 0, "0.17 * 2340")
    open_thought(page, "Plan", 1, "Now I save a short note")
    open_thought(page, "save_file", 0, "# Answer")
    page.wait_for_timeout(400)  # for the picture only: let the accordions finish opening
    folder = DOCS if os.environ.get("POCKETFLOW_STREAM_UPDATE_SCREENSHOT") else tmp_path
    folder.mkdir(exist_ok=True)
    page.screenshot(path=str(folder / "gradio-chat.png"), full_page=True)
    assert (folder / "gradio-chat.png").stat().st_size > 10_000


# -- through gradio_client ---------------------------------------------------------------


def test_gradio_client_streams_the_run_as_it_happens(app: Any) -> None:
    client_module = needed("gradio_client")
    client = client_module.Client(app.local_url, verbose=False)
    run = gates("client")
    try:
        job = client.submit("tool client", api_name="/chat")
        assert run.started.wait(WAIT)
        # held in the middle of the call's content: the client already has the partial steps
        held = poll(lambda: [out for out in job.outputs() if "line one" in str(out)])
        plan, call = held[-1]
        assert plan["metadata"] == {"title": "💭 Plan", "id": "s1", "status": "pending"}
        assert call["metadata"]["status"] == "pending"
        assert call["content"] == "**path**: `notes.md`\n\n**content**: `line one`"
        run.release.set()
        final = job.result(timeout=WAIT)
    finally:
        run.release.set()
        client.close()
    # the diffs streamed to the client add up to exactly what the app drew last
    assert [message["content"] for message in final] == [
        "The user wants the notes saved.",
        "**path**: `notes.md`\n\n**content**\n\n```\nline one\nline two\nline three\n```"
        "\n\n**Result**\n\nsaved 3 lines to notes.md",
        "Saved notes.md.",
    ]
    assert final[0]["metadata"]["status"] == "done"
    assert final[1]["metadata"]["parent_id"] == final[0]["metadata"]["id"]
    assert final[2]["metadata"] == {}


def test_gradio_client_answers_an_interrupt_with_its_next_message(app: Any) -> None:
    client_module = needed("gradio_client")
    client = client_module.Client(app.local_url, verbose=False)
    run = gates("client-ask")
    try:
        asked = client.predict("ask client-ask", api_name="/chat")
        assert asked[-1]["content"] == "❓ Which file should I save?"
        assert asked[-2]["content"] == "Let me check. "
        assert not run.closed.is_set()
        answered = client.predict("report.md", api_name="/chat")
    finally:
        client.close()
    assert [message["content"] for message in answered] == ["Saving report.md."]
    assert run.closed.is_set() and run.produced == 1


def poll(found: Any) -> Any:
    """What `found()` returns once it is truthy (a bounded poll for something that must come)."""
    tick = threading.Event()
    for _ in range(int(WAIT / 0.02)):
        value = found()
        if value:
            return value
        tick.wait(0.02)
    raise AssertionError("gave up waiting")
