"""What a streamed run yields: chunks by default, lifecycle events when asked; all of it
immutable and JSON-ready."""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
from types import MappingProxyType

import pytest

from pocketflow_stream import (
    BatchFlow,
    Chunk,
    Flow,
    FlowFinished,
    Node,
    NodeFinished,
    NodeStarted,
    Retry,
    StreamBatchNode,
    StreamFlow,
    StreamNode,
    json_ready,
)


class Token:
    """An app's data object with its own JSON form."""

    def __init__(self, text):
        self.text = text

    def to_dict(self):
        return {"type": "token", "text": self.text}


class Say(StreamNode):
    def prep(self, shared):
        return self.params.get("words", ["hi"])

    def exec_stream(self, words):
        yield from words
        return len(words)

    def post(self, shared, prep_res, exec_res):
        return shared.get("action")


class Quiet(Node):
    pass


def agent():
    """Say 'Plan' -> Flow 'Tools' [Quiet -> Say 'Search'], run as Flow 'Agent'."""
    plan = Say(name="Plan")
    quiet = Quiet()
    quiet >> Say(name="Search")
    tools = Flow(start=quiet, name="Tools")
    for action in ("default", "go", "done"):
        plan.next(tools, action)
    return StreamFlow(start=plan, name="Agent")


def summary(items):
    out = []
    for item in items:
        if type(item) is Chunk:
            out.append(("chunk", item.path, item.data))
        elif isinstance(item, (NodeFinished, FlowFinished)):
            out.append((item.type, item.path, item.action))
        else:
            out.append((item.type, item.path))
    return out


# --- opt-in lifecycle events ---------------------------------------------------------------


def test_the_default_stream_has_only_chunks():
    items = list(agent().run_stream({}))
    assert items and all(type(item) is Chunk for item in items)


def test_events_true_adds_node_started_node_finished_and_flow_finished_in_order():
    items = list(agent().run_stream({"action": "go"}, events=True))
    assert summary(items) == [
        ("node_started", ("Plan",)),
        ("chunk", ("Plan",), "hi"),
        ("node_finished", ("Plan",), "go"),
        ("node_started", ("Tools",)),
        ("node_started", ("Tools", "Quiet")),
        ("node_finished", ("Tools", "Quiet"), None),
        ("node_started", ("Tools", "Search")),
        ("chunk", ("Tools", "Search"), "hi"),
        ("node_finished", ("Tools", "Search"), "go"),
        ("node_finished", ("Tools",), "go"),
        ("flow_finished", (), "go"),
    ]
    assert items[-1].node == "Agent"


def test_events_carry_the_node_name_and_non_negative_durations():
    items = list(agent().run_stream({}, events=True))
    finished = [item for item in items if isinstance(item, (NodeFinished, FlowFinished))]
    assert all(item.duration >= 0 for item in finished)
    assert [item.node for item in items if isinstance(item, NodeStarted)] == [
        "Plan",
        "Tools",
        "Quiet",
        "Search",
    ]


def test_flow_finished_is_the_last_item_and_carries_the_action_run_stream_returns():
    stream = agent().run_stream({"action": "done"}, events=True)
    items = []
    while True:
        try:
            items.append(next(stream))
        except StopIteration as stop:
            returned = stop.value
            break
    assert isinstance(items[-1], FlowFinished)
    assert items[-1].action == returned == "done"
    assert sum(isinstance(item, FlowFinished) for item in items) == 1


def test_a_stand_alone_node_streams_its_events_and_ends_with_flow_finished_like_a_flow():
    items = list(Say(name="Solo").run_stream({"action": "x"}, events=True))
    assert summary(items) == [
        ("node_started", ("Solo",)),
        ("chunk", ("Solo",), "hi"),
        ("node_finished", ("Solo",), "x"),
        ("flow_finished", (), "x"),
    ]
    assert items[-1].node == "Solo"


def test_events_do_not_change_chunks_shared_or_action():
    def run(events):
        shared = {"action": None}
        stream = agent().run_stream(shared, events=events)
        chunks = []
        while True:
            try:
                item = next(stream)
            except StopIteration as stop:
                return [c.to_dict() for c in chunks], shared, stop.value
            if type(item) is Chunk:
                chunks.append(item)

    assert run(True) == run(False)


def test_retry_events_tell_which_attempts_chunks_failed():
    class Flaky(StreamNode):
        def exec_stream(self, prep_res):
            yield f"try {self.cur_retry}"
            if self.cur_retry < 2:
                raise ConnectionError(f"dropped {self.cur_retry}")
            return "ok"

    items = list(Flow(start=Flaky(max_retries=3, name="Call")).run_stream({}, events=True))
    retries = [item for item in items if isinstance(item, Retry)]
    assert [(r.node, r.path, r.item, r.attempt, r.error) for r in retries] == [
        ("Call", ("Call",), None, 0, "ConnectionError: dropped 0"),
        ("Call", ("Call",), None, 1, "ConnectionError: dropped 1"),
    ]
    # each Retry comes after its attempt's chunks and before the next attempt's
    order = [
        item.attempt if type(item) is Chunk else ("retry", item.attempt)
        for item in items
        if type(item) is Chunk or isinstance(item, Retry)
    ]
    assert order == [0, ("retry", 0), 1, ("retry", 1), 2]


def test_a_retried_plain_node_reports_retry_events_too():
    class Flaky(Node):
        def exec(self, prep_res):
            if self.cur_retry == 0:
                raise ValueError("first")
            return "ok"

    items = list(Flow(start=Flaky(max_retries=2)).run_stream({}, events=True))
    retries = [item for item in items if isinstance(item, Retry)]
    assert [(r.node, r.attempt, r.error) for r in retries] == [("Flaky", 0, "ValueError: first")]


def test_retry_events_of_a_stream_batch_node_carry_the_item():
    class PerItem(StreamBatchNode):
        def prep(self, shared):
            return ["a", "b"]

        def exec_stream(self, item):
            yield item
            if item == "b" and self.cur_retry == 0:
                raise RuntimeError("b once")
            return item

    items = list(PerItem(max_retries=2).run_stream({}, events=True))
    retries = [item for item in items if isinstance(item, Retry)]
    assert [(r.item, r.attempt) for r in retries] == [(1, 0)]
    chunks = [(item.item, item.attempt, item.data) for item in items if type(item) is Chunk]
    assert chunks == [(0, 0, "a"), (1, 0, "b"), (1, 1, "b")]


def test_the_failed_last_attempt_is_announced_before_the_fallbacks_chunks():
    class WithFallback(StreamNode):
        def exec_stream(self, prep_res):
            yield "failed"
            raise TimeoutError("slow")

        def exec_fallback(self, prep_res, exc):
            yield "fallback"
            return "kept"

    items = list(WithFallback(max_retries=2).run_stream({}, events=True))
    failed_attempts = {item.attempt for item in items if isinstance(item, Retry)}
    chunk_attempts = {item.data: set() for item in items if type(item) is Chunk}
    for item in items:
        if type(item) is Chunk:
            chunk_attempts[item.data].add(item.attempt)
    # every chunk of a failed try is covered by a Retry event; the fallback's chunks are not
    assert chunk_attempts["failed"] <= failed_attempts
    assert not (chunk_attempts["fallback"] & failed_attempts)


def test_batch_flow_events_name_the_sub_flow_once_and_its_nodes_per_iteration():
    class Each(BatchFlow):
        def prep(self, shared):
            return [{"words": ["a"]}, {"words": ["b"]}]

    items = list(Flow(start=Each(start=Say(), name="Each")).run_stream({}, events=True))
    assert summary(items) == [
        ("node_started", ("Each",)),
        ("node_started", ("Each", "Say")),
        ("chunk", ("Each", "Say"), "a"),
        ("node_finished", ("Each", "Say"), None),
        ("node_started", ("Each", "Say")),
        ("chunk", ("Each", "Say"), "b"),
        ("node_finished", ("Each", "Say"), None),
        ("node_finished", ("Each",), None),
        ("flow_finished", (), None),
    ]


# --- immutability --------------------------------------------------------------------------


def a_chunk():
    class Batches(BatchFlow):
        def prep(self, shared):
            return [{"words": ["x"]}]

    return next(Flow(start=Batches(start=Say()), name="Outer").run_stream({}))


@pytest.mark.parametrize("attribute", ["data", "node", "path", "item", "attempt", "batch", "other"])
def test_a_chunk_cannot_be_changed(attribute):
    chunk = a_chunk()
    with pytest.raises(AttributeError):
        setattr(chunk, attribute, "changed")


def test_a_chunks_origin_and_batch_cannot_be_changed():
    chunk = a_chunk()
    with pytest.raises(AttributeError):
        chunk.origin.name = "changed"
    with pytest.raises(AttributeError):
        chunk.origin.attempt = 5
    with pytest.raises(TypeError):
        chunk.batch["words"] = ["changed"]
    assert chunk.node == "Say" and dict(chunk.batch) == {"words": ["x"]}


@pytest.mark.parametrize(
    "event",
    [
        NodeStarted("A", ("F", "A")),
        NodeFinished("A", ("A",), "go", 0.5),
        Retry("A", ("A",), 2, 1, "ValueError: x"),
        FlowFinished("Agent", (), None, 1.0),
    ],
)
def test_an_event_cannot_be_changed(event):
    with pytest.raises(AttributeError):  # dataclasses.FrozenInstanceError is an AttributeError
        event.node = "changed"
    with pytest.raises(AttributeError):
        event.anything = 1
    with pytest.raises(AttributeError):
        del event.node
    assert dataclasses.is_dataclass(event)


# --- JSON-ready ----------------------------------------------------------------------------


def test_a_chunks_to_dict_is_json_and_round_trips_its_tags():
    class Each(BatchFlow):
        def prep(self, shared):
            return [{"file": "a.txt"}]

    class Letters(StreamBatchNode):
        def prep(self, shared):
            return ["ab"]

        def exec_stream(self, word):
            yield {"letter": word[0], "tokens": [Token(word)]}

    inner = Flow(start=Each(start=Letters(name="Spell"), name="Each"), name="Inner")
    chunk = next(Flow(start=inner).run_stream({}))
    decoded = json.loads(json.dumps(chunk.to_dict()))
    assert decoded == {
        "type": "chunk",
        "node": "Spell",
        "path": ["Inner", "Each", "Spell"],
        "item": 0,
        "attempt": 0,
        "batch": {"file": "a.txt"},
        "data": {"letter": "a", "tokens": [{"type": "token", "text": "ab"}]},
    }
    assert decoded["path"] == list(chunk.path)
    assert (decoded["item"], decoded["attempt"]) == (chunk.item, chunk.attempt)


def test_a_chunk_whose_data_has_to_dict_is_converted():
    class Emits(StreamNode):
        def exec_stream(self, prep_res):
            yield Token("hello")

    chunk = next(Emits().run_stream({}))
    assert chunk.data.text == "hello"  # the data itself is untouched
    assert json.loads(json.dumps(chunk.to_dict()))["data"] == {"type": "token", "text": "hello"}


def test_a_retried_attempts_chunk_round_trips_its_attempt():
    class Flaky(StreamNode):
        def exec_stream(self, prep_res):
            yield self.cur_retry
            if self.cur_retry == 0:
                raise ValueError("again")

    chunks = list(Flaky(max_retries=2).run_stream({}))
    assert [json.loads(json.dumps(c.to_dict()))["attempt"] for c in chunks] == [0, 1]


@pytest.mark.parametrize(
    "event, expected",
    [
        (
            NodeStarted("A", ("F", "A")),
            {"type": "node_started", "node": "A", "path": ["F", "A"], "batch": None},
        ),
        (
            NodeFinished("A", ("A",), "go", 0.5, MappingProxyType({"city": "Lima"})),
            {
                "type": "node_finished",
                "node": "A",
                "path": ["A"],
                "action": "go",
                "duration": 0.5,
                "batch": {"city": "Lima"},
            },
        ),
        (
            Retry("A", ("A",), 2, 1, "ValueError: x"),
            {
                "type": "retry",
                "node": "A",
                "path": ["A"],
                "item": 2,
                "attempt": 1,
                "error": "ValueError: x",
                "batch": None,
            },
        ),
        (
            FlowFinished("Agent", (), None, 1.0),
            {"type": "flow_finished", "node": "Agent", "path": [], "action": None, "duration": 1.0},
        ),
    ],
)
def test_an_events_to_dict_is_json_with_every_field(event, expected):
    assert json.loads(json.dumps(event.to_dict())) == expected


def test_node_events_inside_a_batch_flow_carry_the_iterations_params():
    class Each(BatchFlow):
        def prep(self, shared):
            return [{"city": "Lima"}, {"city": "Oslo"}]

    events = [
        item
        for item in StreamFlow(start=Each(start=Node(name="Visit"))).run_stream({}, events=True)
        if isinstance(item, (NodeStarted, NodeFinished)) and item.node == "Visit"
    ]
    assert [(type(event).__name__, dict(event.batch)) for event in events] == [
        ("NodeStarted", {"city": "Lima"}),
        ("NodeFinished", {"city": "Lima"}),
        ("NodeStarted", {"city": "Oslo"}),
        ("NodeFinished", {"city": "Oslo"}),
    ]


def test_every_item_of_a_real_stream_is_json_ready():
    class Flaky(StreamNode):
        def exec_stream(self, prep_res):
            yield Token("t")
            if self.cur_retry == 0:
                raise ValueError("again")

    start = Say(name="Plan")
    start >> Flaky(max_retries=2)
    for item in Flow(start=start).run_stream({}, events=True):
        encoded = json.loads(json.dumps(item.to_dict()))
        assert encoded["type"] == item.type
        assert encoded["node"] == item.node
        assert encoded["path"] == list(item.path)


def test_json_ready_converts_to_dict_objects_inside_lists_tuples_and_dicts():
    value = {"a": [Token("x"), (Token("y"), 1)], "b": {"c": Token("z")}, "d": "plain"}
    assert json_ready(value) == {
        "a": [{"type": "token", "text": "x"}, [{"type": "token", "text": "y"}, 1]],
        "b": {"c": {"type": "token", "text": "z"}},
        "d": "plain",
    }
    assert json_ready(3) == 3 and json_ready(None) is None


# --- crossing a process boundary -----------------------------------------------------------


def test_chunks_and_events_survive_pickling_and_deep_copies():
    items = list(agent().run_stream({"action": "go"}, events=True))
    for item in items:
        for duplicate in (pickle.loads(pickle.dumps(item)), copy.deepcopy(item)):
            assert type(duplicate) is type(item)
            assert duplicate.to_dict() == item.to_dict()


def test_the_stream_item_types_say_what_they_are():
    assert Chunk.type == "chunk"
    assert [cls.type for cls in (NodeStarted, NodeFinished, Retry, FlowFinished)] == [
        "node_started",
        "node_finished",
        "retry",
        "flow_finished",
    ]
