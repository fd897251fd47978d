"""Node ids: the given name, else the class name, else a distinct id derived from the graph.

Chunks, events, error paths and `nodes=` all use a node's id; ids must be the same every
time the same graph is built, and two nodes given one name in a flow are an error.
"""

from __future__ import annotations

import pytest

from pocketflow_stream import (
    BatchNode,
    Flow,
    FlowError,
    FlowFinished,
    Node,
    NodeStarted,
    StreamFlow,
    StreamNode,
    node_path_of,
)

pytestmark = pytest.mark.filterwarnings("ignore:Flow ends")  # the loops end by running out


class Talk(StreamNode):
    def exec_stream(self, prep_res):
        yield self.params.get("line", "hi")

    def post(self, shared, prep_res, exec_res):
        shared["turns"] = shared.get("turns", 0) + 1
        return "again" if shared["turns"] < shared["limit"] else None


def two_talks():
    first, second = Talk(), Talk()
    first - "again" >> second
    second - "again" >> first
    return StreamFlow(start=first)


def test_a_second_unnamed_node_of_one_class_gets_a_distinct_deterministic_id():
    chunks = list(two_talks().run_stream({"limit": 4}))
    assert [chunk.node for chunk in chunks] == ["Talk", "Talk#2", "Talk", "Talk#2"]
    again = list(two_talks().run_stream({"limit": 4}))  # built again: the same ids
    assert [chunk.path for chunk in again] == [chunk.path for chunk in chunks]


def test_unnamed_nodes_of_distinct_classes_keep_their_class_names():
    class Plan(Node):
        pass

    class Speak(StreamNode):
        def exec_stream(self, prep_res):
            yield "x"

    plan = Plan()
    plan >> Speak()
    items = list(Flow(start=plan).run_stream({}, events=True))
    started = [item.node for item in items if isinstance(item, NodeStarted)]
    assert started == ["Plan", "Speak"]
    assert items[-1] == FlowFinished("Flow", (), None, items[-1].duration)


def test_ids_in_nested_flows_are_per_flow():
    inner = Flow(start=Talk(), name="Inner")
    outer_talk = Talk()
    outer_talk >> inner
    chunks = list(Flow(start=outer_talk).run_stream({"limit": 1}))
    assert [chunk.path for chunk in chunks] == [("Talk",), ("Inner", "Talk")]


def test_an_explicit_name_wins_and_an_unnamed_node_of_that_class_name_steps_aside():
    named = Talk(name="Talk")  # the explicit name "Talk" ...
    unnamed = Talk()  # ... so this one cannot be "Talk"
    unnamed - "again" >> named
    chunks = list(StreamFlow(start=unnamed).run_stream({"limit": 2}))
    assert [chunk.node for chunk in chunks] == ["Talk#2", "Talk"]


def test_two_nodes_given_one_name_in_a_flow_is_an_error_naming_both():
    class Review(Node):
        pass

    first, second = Talk(name="Check"), Review(name="Check")
    first >> second
    with pytest.raises(FlowError) as caught:
        Flow(start=first, name="Agent").run({"limit": 1})
    message = str(caught.value)
    assert "'Agent'" in message and "'Check'" in message
    assert "Talk" in message and "Review" in message and "Rename one" in message


def test_one_node_object_reached_twice_is_one_node_not_a_duplicate():
    talk = Talk(name="Echo")
    talk - "again" >> talk
    assert [chunk.node for chunk in Flow(start=talk).run_stream({"limit": 3})] == ["Echo"] * 3


def test_the_visible_name_is_the_given_name_else_the_class_name():
    assert Node().name == "Node"
    assert Talk(name="Loud").name == "Loud"
    assert Flow().name == "Flow"
    assert repr(Talk()) == "<Talk 'Talk'>"


def test_error_paths_use_ids():
    class Boom(Node):
        def exec(self, prep_res):
            raise ValueError("boom")

    first, second = Boom(), Boom()
    first >> second
    first.exec = lambda prep_res: None  # the first passes, the second fails
    with pytest.raises(ValueError) as caught:
        Flow(start=first).run({})
    assert node_path_of(caught.value) == ("Boom#2",)


def test_nodes_filter_takes_ids_and_refuses_a_name_no_node_has_before_anything_runs():
    shared = {"limit": 4}
    chunks = list(two_talks().run_stream(shared, nodes=["Talk#2"]))
    assert [chunk.node for chunk in chunks] == ["Talk#2", "Talk#2"]
    shared = {"limit": 4}
    with pytest.raises(FlowError) as caught:
        list(two_talks().run_stream(shared, nodes=["Writer"]))
    message = str(caught.value)
    assert "'Writer'" in message and "'Talk'" in message and "'Talk#2'" in message
    assert "turns" not in shared  # refused before the first node ran
    with pytest.raises(FlowError):
        Talk().run({"limit": 1}, on_chunk=print, nodes="Writer")


def test_batch_nodes_and_plain_nodes_on_the_hot_path_get_ids_too():
    class Count(BatchNode):
        def prep(self, shared):
            return [1, 2]

        def exec(self, item):
            raise ValueError(item)

        def exec_fallback(self, item, exc):
            raise exc

    first, second = Count(), Count()
    first.exec_fallback = lambda item, exc: item  # the first recovers, the second does not
    first >> second
    with pytest.raises(ValueError) as caught:
        Flow(start=first).run({})
    assert node_path_of(caught.value) == ("Count#2",)
