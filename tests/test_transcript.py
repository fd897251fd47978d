"""The transcript fold: one tree of steps from a run's stream, the same from objects or dicts."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pocketflow_stream import (
    Ask,
    BatchFlow,
    BatchNode,
    FlowFinished,
    Interrupt,
    NodeFinished,
    NodeStarted,
    Progress,
    Retry,
    StreamBatchNode,
    StreamFlow,
    StreamNode,
)
from pocketflow_stream.llm import (
    Finish,
    LLMNode,
    ProviderError,
    ReasoningDelta,
    RedactedReasoning,
    RefusalDelta,
    ScriptedModel,
    SignatureDelta,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallSpec,
    ToolCallStart,
    Turn,
    Usage,
)
from pocketflow_stream.ui.transcript import (
    ToolResult,
    Transcript,
    from_dict,
    load_item,
)


def over_the_wire(item):
    return json.loads(json.dumps(item.to_dict()))


def timeless(tree):
    """A transcript's dict without wall-clock times (they differ between two folds)."""
    if isinstance(tree, dict):
        return {k: timeless(v) for k, v in tree.items() if k not in ("started", "duration")}
    if isinstance(tree, list):
        return [timeless(v) for v in tree]
    return tree


class Talk(StreamNode):
    def exec_stream(self, prep_res):
        yield ReasoningDelta("why ")
        yield ReasoningDelta("not")
        yield TextDelta("Hello ")
        yield TextDelta("world")
        yield ToolCallStart(0, "c1", "save_file")
        yield ToolCallDelta(0, '{"path": "a.txt", "content": "li')
        yield ToolCallDelta(0, 'ne 1\\nline 2"}')
        yield ToolCallEnd(0)
        yield Usage(input_tokens=3, output_tokens=4)
        yield Finish("tool_calls")
        return "ok"


class Act(StreamNode):
    def exec_stream(self, prep_res):
        yield ToolResult("c1", "saved a.txt", name="save_file")


def test_a_node_run_folds_into_one_step_with_thinking_text_and_a_tool_call():
    transcript = Transcript()
    transcript.extend(Talk(name="Plan").run_stream({}))
    (step,) = transcript.steps
    assert (step.node, step.path, step.status) == ("Plan", ("Plan",), "running")
    assert step.thinking == "why not" and step.text == "Hello world"
    (call,) = step.tool_calls
    assert (call.id, call.name, call.done, call.valid) == ("c1", "save_file", True, True)
    assert call.arguments == {"path": "a.txt", "content": "line 1\nline 2"}
    assert step.finish_reason == "tool_calls" and step.usage.output_tokens == 4
    transcript.finish("ok")
    assert step.status == "done" and step.duration is not None and transcript.finished


def test_tool_call_arguments_fill_in_healed_and_are_valid_only_once_ended_and_strict():
    transcript = Transcript()
    plan = Talk(name="Plan")
    stream = plan.run_stream({})
    seen = []
    for item in stream:
        transcript.add(item)
        calls = transcript.steps[0].tool_calls
        if calls:
            seen.append((calls[0].arguments, calls[0].valid))
    assert seen[0] == (None, False)  # the call opened, no arguments yet
    assert seen[1] == ({"path": "a.txt", "content": "li"}, False)  # growing, not runnable
    assert seen[2] == ({"path": "a.txt", "content": "line 1\nline 2"}, False)  # not ended
    assert seen[3] == ({"path": "a.txt", "content": "line 1\nline 2"}, True)


@pytest.mark.parametrize(
    "pieces, ended, valid, error",
    [
        (['{"a": 1'], False, False, None),  # truncated: never ended
        (['{"a": 1'], True, False, "invalid JSON"),  # ended but cut off
        (["[1, 2]"], True, False, "must be a JSON object"),
        (["{'a': 1}"], True, False, "invalid JSON"),
        ([], True, True, None),  # no arguments: {}
        (['{"a": 1}', " "], True, True, None),
    ],
)
def test_only_strictly_parsed_ended_calls_are_valid(pieces, ended, valid, error):
    transcript = Transcript()
    items = [ToolCallStart(0, None, "f"), *(ToolCallDelta(0, p) for p in pieces)]
    if ended:
        items.append(ToolCallEnd(0))

    class Node(StreamNode):
        def exec_stream(self, prep_res):
            yield from items

    transcript.extend(Node().run_stream({}))
    (call,) = transcript.steps[0].tool_calls
    assert (call.id, call.done, call.valid) == ("call_0", ended, valid)
    assert (error is None and call.error is None) or error in call.error
    if valid:
        assert isinstance(call.arguments, dict)


def agent(events):
    plan, act = Talk(name="Plan"), Act(name="Act")
    plan >> act
    inner = StreamFlow(start=plan, name="Agent")
    return StreamFlow(start=inner)


@pytest.mark.parametrize("events", [False, True], ids=["chunks only", "with events"])
def test_nested_flows_nest_and_results_attach_to_their_calls(events):
    transcript = Transcript()
    transcript.extend(agent(events).run_stream({}, events=events))
    if not events:
        transcript.finish()
    (outer,) = transcript.steps
    assert outer.path == ("Agent",) and outer.status == "done"
    assert [(s.node, s.status) for s in outer.children] == [("Plan", "done"), ("Act", "done")]
    plan, act = outer.children
    assert plan.parent is outer and plan.tool_calls[0].result == "saved a.txt"
    assert act.results == [ToolResult("c1", "saved a.txt", name="save_file")]
    if events:
        assert plan.action is None and transcript.finished and transcript.action is None


@pytest.mark.filterwarnings("ignore:Flow ends")
def test_a_loop_makes_one_step_per_visit_in_order_even_without_events():
    class Turn_(StreamNode):
        def exec_stream(self, prep_res):
            yield "x"

        def post(self, shared, prep_res, exec_res):
            shared["n"] = shared.get("n", 0) + 1
            return "again" if shared["n"] < 3 else None

    class Between(StreamNode):
        def exec_stream(self, prep_res):
            yield "y"

    first, between = Turn_(name="A"), Between(name="B")
    first - "again" >> between
    between >> first
    transcript = Transcript()
    transcript.extend(StreamFlow(start=first).run_stream({}))
    assert [s.node for s in transcript.steps] == ["A", "B", "A", "B", "A"]
    assert [s.status for s in transcript.steps] == ["done"] * 4 + ["running"]


def test_add_returns_the_steps_it_changed():
    transcript = Transcript()
    items = list(agent(True).run_stream({}, events=True))
    assert [s.path for s in transcript.add(items[0])] == [("Agent",)]  # Agent started
    changed = transcript.add(items[1])  # Plan started: the Agent step gained a child
    assert [s.path for s in changed] == [("Agent",), ("Agent", "Plan")]
    assert [s.path for s in transcript.add(items[2])] == [("Agent", "Plan")]  # a delta
    act_result = next(i for i in items if getattr(i, "data", None).__class__ is ToolResult)
    for item in items[3 : items.index(act_result)]:
        transcript.add(item)
    changed = transcript.add(act_result)  # the Act step, and the Plan step whose call it was
    assert [s.node for s in changed] == ["Act", "Plan"]


class Flaky(StreamNode):
    def exec_stream(self, prep_res):
        yield TextDelta(f"attempt {self.cur_retry} ")
        yield ToolCallStart(0, "c", "f")
        if self.cur_retry == 0:
            raise RuntimeError("boom")
        yield TextDelta("worked")


@pytest.mark.parametrize("events", [False, True], ids=["chunks only", "with events"])
def test_a_retried_attempt_replaces_the_failed_one(events):
    transcript = Transcript()
    transcript.extend(Flaky(max_retries=2).run_stream({}, events=events))
    (step,) = transcript.steps
    assert step.text == "attempt 1 worked" and step.attempt == 1
    assert len(step.tool_calls) == 1
    assert step.retries == (["RuntimeError: boom"] if events else [])


def test_a_late_chunk_of_a_failed_attempt_is_dropped():
    items = list(Flaky(max_retries=2).run_stream({}, events=True))
    stale = items[1]  # a chunk of attempt 0
    transcript = Transcript()
    transcript.extend(i for i in items if not isinstance(i, (NodeFinished, FlowFinished)))
    assert transcript.add(stale) == []
    assert transcript.steps[0].text == "attempt 1 worked"


def test_batch_items_are_child_steps_and_batch_flow_iterations_are_apart():
    class Items(StreamBatchNode):
        def prep(self, shared):
            return ["a", "b"]

        def exec_stream(self, item):
            yield f"<{item}{self.params.get('n')}>"

    transcript = Transcript()
    flow = BatchFlow(start=Items(name="Items"), name="Each")
    flow.prep = lambda shared: [{"n": 1}, {"n": 2}]
    transcript.extend(StreamFlow(start=flow).run_stream({}, events=True))
    (each,) = transcript.steps
    assert [(s.node, s.batch) for s in each.children] == [("Items", {"n": 1}), ("Items", {"n": 2})]
    first = each.children[0]
    assert [(c.item, c.text) for c in first.children] == [(0, "<a1>"), (1, "<b1>")]
    assert all(s.status == "done" for s in transcript.walk())


def test_errors_provider_errors_refusals_and_other_values():
    class Bad(StreamNode):
        def exec_stream(self, prep_res):
            yield RefusalDelta("no")
            yield ProviderError("overloaded", "529")
            yield {"custom": 1}
            yield SignatureDelta("sig")  # history only: not shown
            raise ValueError("broken")

    transcript = Transcript()
    with pytest.raises(ValueError) as caught:
        transcript.extend(StreamFlow(start=StreamFlow(start=Bad(), name="F")).run_stream({}))
    changed = transcript.fail(caught.value)
    flow_step, bad = list(transcript.walk())
    assert {s.id for s in changed} == {flow_step.id, bad.id}
    assert bad.status == "failed" and bad.error.startswith("ValueError: broken")
    assert bad.refusal == "no" and bad.values == [{"custom": 1}]
    assert transcript.error == "ValueError: broken"


def test_interrupts_pause_their_step_until_the_run_goes_on():
    transcript = Transcript()
    pause = {
        "type": "interrupt",
        "id": "run:Agent>Ask:0",
        "payload": {"question": "Which file?"},
        "node": "Ask",
        "path": ["Agent", "Ask"],
        "item": None,
        "batch": None,
    }
    changed = transcript.add(pause)
    ask = changed[-1]
    assert ask.status == "paused" and ask.interrupt.payload == {"question": "Which file?"}
    assert [i.id for i in transcript.pending] == ["run:Agent>Ask:0"]
    chunk = {"type": "chunk", "node": "Ask", "path": ["Agent", "Ask"], "item": None}
    transcript.add({**chunk, "attempt": 0, "batch": None, "data": "notes.txt"})
    assert ask.status == "running" and ask.text == "notes.txt" and transcript.pending == []


def test_a_pause_before_a_node_is_the_step_that_runs_when_the_run_goes_on():
    transcript = Transcript()
    pause = {"type": "interrupt", "id": "i1", "payload": {"approve": "save_file"}, "node": "Act"}
    (act,) = transcript.add({**pause, "path": ["Act"], "item": None, "batch": None})
    assert act.status == "paused"
    assert transcript.add(NodeStarted("Act", ("Act",), None)) == [act]  # resumed: same step
    assert act.status == "running" and transcript.pending == []
    transcript.add(NodeFinished("Act", ("Act",), None, 0.1, None))
    assert [s.status for s in transcript.steps] == ["done"]


def test_batch_progress_from_a_real_run_and_replayed_items_by_id():
    class Embed(BatchNode):
        def prep(self, shared):
            return [1, 2, 3]

    transcript = Transcript()
    transcript.extend(StreamFlow(start=Embed()).run_stream({}, progress=True))
    (step,) = transcript.steps
    assert step.progress == (3, 3)

    progress = {"type": "progress", "node": "Embed", "path": ["Embed"], "batch": None}
    assert transcript.add({**progress, "done": 4, "total": 9, "id": 7}) == [step]
    assert transcript.add({**progress, "done": 5, "total": 9, "id": 7}) == []  # a replay
    assert step.progress == (4, 9)


def test_a_real_interrupt_pauses_its_step_and_resuming_goes_on_in_it():
    class Draft(StreamNode):
        def exec_stream(self, prep_res):
            yield TextDelta("draft ")
            verdict = yield Ask({"question": "Send it?"})
            yield TextDelta(f"sent: {verdict}")

    transcript = Transcript()
    stream = StreamFlow(start=StreamFlow(start=Draft(), name="Agent")).run_stream({})
    items = list(stream_items(stream))
    paused = items.pop()
    transcript.extend(over_the_wire(item) for item in items)  # across a process boundary
    draft = transcript.steps[0].children[0]
    assert draft.status == "paused" and type(draft.interrupt) is Interrupt
    assert [i.payload for i in transcript.pending] == [{"question": "Send it?"}]
    transcript.extend(stream_items(paused.resume({paused.interrupts[0].id: "yes"})))
    assert draft.status == "running" and draft.text == "draft sent: yes"
    assert transcript.pending == []


def stream_items(stream):
    try:
        while True:
            yield next(stream)
    except StopIteration as stop:
        if stop.value is not None:
            yield stop.value


def test_an_unknown_dict_is_refused_with_the_types_it_knows():
    with pytest.raises(ValueError, match="cannot rebuild a stream item of type 'nope'"):
        Transcript().add({"type": "nope"})


# -- across a process boundary ---------------------------------------------------------------

EVERY_DATA = [
    TextDelta("a"),
    ReasoningDelta("b"),
    SignatureDelta("s"),
    RedactedReasoning("r"),
    ToolCallStart(0, "id", "f"),
    ToolCallStart(1, None, "g"),
    ToolCallDelta(0, '{"x"'),
    ToolCallEnd(0),
    Usage(1, 2, 3, 4, 5),
    Usage(output_tokens=2),
    Finish("length", "max_tokens"),
    RefusalDelta("no"),
    ProviderError("bad", None),
    ToolResult("id", {"rows": [1, 2]}, name="f", is_error=True),
    "plain text",
    {"app": ["own", 1]},
    None,
]

EVERY_EVENT = [
    NodeStarted("Plan", ("Agent", "Plan"), None),
    NodeStarted("Plan", ("Agent", "Plan"), {"n": 1}),
    NodeFinished("Plan", ("Agent", "Plan"), "act", 0.25, None),
    NodeFinished("Plan", ("Plan",), None, 0.5, {"n": [1, 2]}),
    Retry("Plan", ("Plan",), 2, 0, "ValueError: x", None),
    FlowFinished("Agent", (), "done", 1.5),
    Progress("Embed", ("Agent", "Embed"), 3, 10, None),
    Progress("Embed", ("Embed",), 1, 2, {"n": 1}),
    Interrupt("Agent@1/Ask@1#0", {"question": "ok?"}, "Ask", ("Agent", "Ask"), None, None),
    Interrupt("Ask@1#0", ["any", 1], "Ask", ("Ask",), 2, {"n": 1}, 5),
]


@pytest.mark.parametrize("data", EVERY_DATA, ids=lambda d: type(d).__name__)
def test_every_chunk_data_round_trips_through_json(data):
    class One(StreamNode):
        def exec_stream(self, prep_res):
            yield data

    flow = BatchFlow(start=StreamFlow(start=One(name="One"), name="In"))
    flow.prep = lambda shared: [{"k": "v"}]
    (chunk,) = list(StreamFlow(start=flow).run_stream({}))
    rebuilt = load_item(over_the_wire(chunk))
    assert type(rebuilt.data) is type(data) and rebuilt.data == data
    assert (rebuilt.path, rebuilt.item, rebuilt.attempt) == (chunk.path, chunk.item, 0)
    assert dict(rebuilt.batch) == {"k": "v"} and rebuilt.to_dict() == chunk.to_dict()


def test_a_checkpointed_runs_chunk_keeps_its_id_and_replay_mark_and_a_replay_folds_once():
    wire = {"type": "chunk", "node": "Draft", "path": ["Agent", "Draft"], "item": None}
    first = load_item({**wire, "attempt": 0, "batch": None, "data": "draft ", "id": 3})
    replayed = load_item({**first.to_dict(), "replay": True})
    assert (first.id, first.replay, replayed.id, replayed.replay) == (3, False, 3, True)
    assert replayed.to_dict() == {**first.to_dict(), "replay": True}
    transcript = Transcript()
    transcript.add(first)
    assert transcript.add(replayed) == []  # a relay delivered it already
    assert transcript.steps[0].children[0].text == "draft "


@pytest.mark.parametrize("event", EVERY_EVENT, ids=lambda e: e.type)
def test_every_event_round_trips_through_json(event):
    rebuilt = from_dict(over_the_wire(event))
    assert type(rebuilt) is type(event) and rebuilt == event


def fold(items, wire):
    transcript = Transcript()
    for item in items:
        transcript.add(over_the_wire(item) if wire else item)
    return timeless(transcript.to_dict())


text = st.text(alphabet='ab {}"\\:,\nü', max_size=12)
tool_call = st.builds(
    ToolCallSpec,
    st.sampled_from(["calculate", "save_file"]),
    st.one_of(st.dictionaries(st.sampled_from(["x", "y"]), text, max_size=2), text),
)
turn = st.builds(
    Turn,
    text=text,
    reasoning=text,
    tool_calls=st.lists(tool_call, max_size=2),
    refusal=st.sampled_from(["", "no"]),
)


@pytest.mark.filterwarnings("ignore:Flow ends")
@settings(max_examples=60, deadline=None)
@given(
    turns=st.lists(turn, min_size=1, max_size=3),
    chunk_size=st.integers(1, 5),
    events=st.booleans(),
)
def test_a_run_folds_the_same_from_its_objects_and_from_their_json(turns, chunk_size, events):
    class Plan(LLMNode):
        def post(self, shared, prep_res, reply):
            shared["turn"] = shared.get("turn", 0) + 1
            return "again" if shared["turn"] < len(turns) else None

    class Tools(StreamNode):
        def exec_stream(self, prep_res):
            yield ToolResult("call_1_0", "ok")

    def run():
        plan = Plan(ScriptedModel(turns, chunk_size=chunk_size), name="Plan")
        tools = Tools(name="Tools")
        plan - "again" >> tools
        tools >> plan
        shared = {"messages": [{"role": "user", "content": "hi"}]}
        return list(
            StreamFlow(start=StreamFlow(start=plan, name="Agent")).run_stream(shared, events=events)
        )

    items = run()
    assert fold(items, wire=True) == fold(items, wire=False)
    assert fold(items, wire=False) == fold(run(), wire=False)  # and it is deterministic
