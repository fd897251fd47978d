"""Flows: PocketFlow 0.0.3's Flow and BatchFlow semantics, and how every flow streams.

Tests taking the `module` fixture run the same app against PocketFlow 0.0.3 and against
pocketflow_stream: an app written for PocketFlow must behave the same after changing its import.
"""

from __future__ import annotations

import time

import pocketflow
import pytest

import pocketflow_stream
from pocketflow_stream import (
    BatchFlow,
    Chunk,
    Flow,
    FlowError,
    Node,
    StreamBatchNode,
    StreamFlow,
    StreamNode,
)


def labelled(module):
    """Node classes that log their label and params into shared["log"] and act on a script."""

    class Step(module.Node):
        def __init__(self, label, actions=(None,), **kwargs):
            super().__init__(**kwargs)
            self.label = label
            self.actions = list(actions)

        def prep(self, shared):
            shared["log"].append((self.label, dict(self.params)))
            return shared.get("value")

        def exec(self, prep_res):
            return self.label

        def post(self, shared, prep_res, exec_res):
            visits = shared.setdefault("visits", {})
            visit = visits.get(self.label, 0)
            visits[self.label] = visit + 1
            return self.actions[min(visit, len(self.actions) - 1)]

    return Step


# --- PocketFlow semantics (differential) ---------------------------------------------------


def test_flow_follows_actions_and_returns_the_last_action(module):
    Step = labelled(module)
    decide = Step("decide", actions=["search", "search", "answer"])
    search = Step("search")
    answer = Step("answer", actions=["finished"])
    decide - "search" >> search
    decide - "answer" >> answer
    search >> decide
    shared = {"log": []}
    action = module.Flow(start=decide).run(shared)
    assert action == "finished"
    assert [label for label, _ in shared["log"]] == [
        "decide",
        "search",
        "decide",
        "search",
        "decide",
        "answer",
    ]


def test_an_agent_app_gives_the_same_shared_action_order_and_warnings_in_both_modules(differential):
    def app(module):
        Step = labelled(module)
        decide = Step("decide", actions=["search", None, "answer", "weird"])
        search = Step("search", max_retries=2)
        answer = Step("answer")
        decide - "search" >> search
        decide >> search
        decide - "answer" >> answer
        search >> decide
        answer >> decide
        flow = module.Flow(start=decide)
        flow.set_params({"model": "m"})
        shared = {"log": [], "value": 7}
        action = flow.run(shared)
        return shared, action

    (theirs, their_warnings), (ours, our_warnings) = differential(app)
    assert ours == theirs
    assert our_warnings == their_warnings
    assert our_warnings == ["Flow ends: 'weird' not found in ['search', 'default', 'answer']"]


def test_none_action_follows_the_default_successor(module):
    Step = labelled(module)
    first, second = Step("first", actions=[None]), Step("second")
    first >> second
    shared = {"log": []}
    module.Flow(start=first).run(shared)
    assert [label for label, _ in shared["log"]] == ["first", "second"]


def test_flow_ends_with_a_warning_when_no_successor_matches_the_action(module, caught_warnings):
    Step = labelled(module)
    first = Step("first", actions=["nowhere"])
    first - "a" >> Step("a")
    first - "b" >> Step("b")
    shared = {"log": []}
    action, messages = caught_warnings(lambda: module.Flow(start=first).run(shared))
    assert action == "nowhere"
    assert messages == ["Flow ends: 'nowhere' not found in ['a', 'b']"]
    assert [label for label, _ in shared["log"]] == ["first"]


def test_a_node_without_successors_ends_the_flow_silently(module, caught_warnings):
    Step = labelled(module)
    shared = {"log": []}
    action, messages = caught_warnings(
        lambda: module.Flow(start=Step("only", actions=["x"])).run(shared)
    )
    assert (action, messages) == ("x", [])


def test_flow_start_sets_the_start_node_and_returns_it_for_chaining(module):
    Step = labelled(module)
    flow = module.Flow()
    first, second = Step("first"), Step("second")
    assert flow.start(first) is first
    flow.start(first) >> second
    shared = {"log": []}
    flow.run(shared)
    assert [label for label, _ in shared["log"]] == ["first", "second"]


def test_a_flow_runs_a_fresh_copy_of_each_node_it_visits(module, caught_warnings):
    class Counter(module.Node):
        def prep(self, shared):
            self.runs = getattr(self, "runs", 0) + 1
            shared["copies"].append((self is original, self.runs))

        def post(self, shared, prep_res, exec_res):
            return "again" if len(shared["copies"]) < 3 else "stop"

    original = Counter()
    original - "again" >> original
    shared = {"copies": []}
    caught_warnings(lambda: module.Flow(start=original).run(shared))  # "Flow ends: 'stop' ..."
    assert shared["copies"] == [(False, 1), (False, 1), (False, 1)]
    assert not hasattr(original, "runs")


def test_a_custom_copy_is_honoured_when_the_flow_copies_nodes(module):
    class Tracked(module.Node):
        def __copy__(self):
            duplicate = type(self).__new__(type(self))
            duplicate.__dict__.update(self.__dict__)
            duplicate.generation = self.generation + 1
            return duplicate

        def prep(self, shared):
            shared["generations"].append(self.generation)

    node = Tracked()
    node.generation = 0
    shared = {"generations": []}
    module.Flow(start=node).run(shared)
    assert shared["generations"] == [1]


def test_all_nodes_in_one_run_of_a_graph_get_the_same_params_dict(module):
    seen = []

    class Looks(module.Node):
        def prep(self, shared):
            seen.append(self.params)

    first, second, third = Looks(), Looks(), Looks()
    first >> second >> third
    flow = module.Flow(start=first)
    flow_params = {"user": "ada"}
    flow.set_params(flow_params)
    flow.run({})
    assert len(seen) == 3
    assert seen[0] is seen[1] is seen[2]
    assert seen[0] == {"user": "ada"}
    assert seen[0] is not flow_params  # a copy of the flow's params, not the flow's own dict


def test_a_nested_flows_nodes_get_a_copy_of_the_params_the_outer_flow_gave_it(module):
    seen = []

    class Looks(module.Node):
        def prep(self, shared):
            seen.append(self.params)

    outer_node, inner_node = Looks(), Looks()
    inner = module.Flow(start=inner_node)
    outer_node >> inner
    outer = module.Flow(start=outer_node)
    outer.set_params({"k": 1})
    outer.run({})
    assert seen[0] == seen[1] == {"k": 1}
    assert seen[0] is not seen[1]


def test_flow_prep_runs_first_and_its_post_gets_the_last_action(module):
    class Outer(module.Flow):
        def prep(self, shared):
            shared["log"].append(("flow prep", None))
            return "flow prep result"

        def post(self, shared, prep_res, exec_res):
            shared["log"].append(("flow post", (prep_res, exec_res)))
            return "overridden"

    Step = labelled(module)
    shared = {"log": []}
    action = Outer(start=Step("only", actions=["last"])).run(shared)
    assert action == "overridden"
    assert shared["log"] == [
        ("flow prep", None),
        ("only", {}),
        ("flow post", ("flow prep result", "last")),
    ]


def test_a_nested_flows_last_action_drives_the_outer_flow(module):
    Step = labelled(module)
    inner_start = Step("inner", actions=["escalate"])
    inner = module.Flow(start=inner_start)
    before = Step("before")
    before >> inner
    inner - "escalate" >> Step("escalated", actions=["end"])
    inner >> Step("default path")
    shared = {"log": []}
    action = module.Flow(start=before).run(shared)
    assert action == "end"
    assert [label for label, _ in shared["log"]] == ["before", "inner", "escalated"]


def test_a_custom_get_next_node_routes_the_flow(module):
    Step = labelled(module)

    class Routed(module.Flow):
        def get_next_node(self, current, action):
            return self.targets.get(current.label)

    first, second = Step("first"), Step("second")
    flow = Routed(start=first)
    flow.targets = {"first": second}
    shared = {"log": []}
    flow.run(shared)
    assert [label for label, _ in shared["log"]] == ["first", "second"]


def test_running_a_flow_that_has_successors_warns_and_runs_only_that_flow(module, caught_warnings):
    Step = labelled(module)
    flow = module.Flow(start=Step("inside"))
    flow >> Step("after")
    shared = {"log": []}
    _, messages = caught_warnings(lambda: flow.run(shared))
    assert messages == ["Node won't run successors. Use Flow."]
    assert [label for label, _ in shared["log"]] == ["inside"]


def test_retrying_nodes_inside_a_flow_behave_the_same(monkeypatch, differential):
    def app(module):
        sleeps = []
        monkeypatch.setattr(time, "sleep", sleeps.append)

        class Flaky(module.Node):
            def exec(self, prep_res):
                prep_res.append(self.cur_retry)
                if self.cur_retry < 2:
                    raise ValueError("flaky")
                return "ok"

            def prep(self, shared):
                return shared["tries"]

            def post(self, shared, prep_res, exec_res):
                shared["result"] = exec_res

        class Fails(module.BatchNode):
            def prep(self, shared):
                return [1, 2]

            def exec(self, item):
                raise ValueError(item)

            def exec_fallback(self, item, exc):
                return ("fallback", item, self.cur_retry)

            def post(self, shared, prep_res, exec_res):
                shared["fallbacks"] = exec_res

        first = Flaky(max_retries=3, wait=0.01)
        first >> Fails(max_retries=2, wait=0.02)
        shared = {"tries": []}
        module.Flow(start=first).run(shared)
        return shared, sleeps

    (theirs, _), (ours, _) = differential(app)
    assert ours == theirs
    assert ours[0]["fallbacks"] == [("fallback", 1, 1), ("fallback", 2, 1)]


@pytest.mark.parametrize("prep_res", [None, [], [3, 4]])
def test_batch_node_in_a_flow_sees_the_same_items_as_in_pocketflow(prep_res, differential):
    def app(module):
        class Double(module.BatchNode):
            def prep(self, shared):
                return prep_res

            def exec(self, item):
                return item * 2

            def post(self, shared, prep_res, exec_res):
                shared["out"] = exec_res
                return "done"

        shared = {}
        action = module.Flow(start=Double()).run(shared)
        return shared, action

    (theirs, _), (ours, _) = differential(app)
    assert ours == theirs


# --- BatchFlow (differential) --------------------------------------------------------------


def make_batch_flow(module, batches):
    seen = []

    class Looks(module.Node):
        def prep(self, shared):
            seen.append((self.label, self.params))
            shared["log"].append((self.label, dict(self.params)))

    class PerFile(module.BatchFlow):
        def prep(self, shared):
            return batches

        def post(self, shared, prep_res, exec_res):
            shared["post"] = (prep_res, exec_res)
            return "batched"

    first, second = Looks(), Looks()
    first.label, second.label = "first", "second"
    first >> second
    flow = PerFile(start=first)
    flow.set_params({"model": "m", "file": "default.txt"})
    return flow, seen


def test_batch_flow_runs_the_graph_once_per_param_dict_merged_over_the_flow_params(module):
    batches = [{"file": "a.txt"}, {"file": "b.txt", "extra": 1}]
    flow, seen = make_batch_flow(module, batches)
    shared = {"log": []}
    action = flow.run(shared)
    assert action == "batched"
    assert shared["log"] == [
        ("first", {"model": "m", "file": "a.txt"}),
        ("second", {"model": "m", "file": "a.txt"}),
        ("first", {"model": "m", "file": "b.txt", "extra": 1}),
        ("second", {"model": "m", "file": "b.txt", "extra": 1}),
    ]
    # one params dict per run of the graph, shared by its nodes
    assert seen[0][1] is seen[1][1]
    assert seen[2][1] is seen[3][1]
    assert seen[0][1] is not seen[2][1]


def test_batch_flow_post_gets_prep_res_and_none(module):
    batches = [{"file": "a.txt"}]
    flow, _ = make_batch_flow(module, batches)
    shared = {"log": []}
    flow.run(shared)
    assert shared["post"] == (batches, None)


@pytest.mark.parametrize("batches", [None, []])
def test_batch_flow_with_no_param_dicts_runs_nothing_and_post_gets_an_empty_list(
    batches, differential
):
    def app(module):
        flow, _ = make_batch_flow(module, batches)
        shared = {"log": []}
        action = flow.run(shared)
        return shared, action

    (theirs, _), (ours, _) = differential(app)
    assert ours == theirs
    assert ours[0]["post"] == ([], None)


def test_a_batch_flows_default_post_returns_none_to_the_outer_flow(module):
    Step = labelled(module)

    class Batches(module.BatchFlow):
        def prep(self, shared):
            return [{"i": 1}, {"i": 2}]

    inner = Batches(start=Step("inner", actions=["ignored"]))
    inner >> Step("after")
    inner - "ignored" >> Step("wrong")
    shared = {"log": []}
    assert module.Flow(start=inner).run(shared) is None
    assert shared["log"] == [("inner", {"i": 1}), ("inner", {"i": 2}), ("after", {})]


def test_nested_batch_flows_merge_params_level_by_level(module, differential):
    def app(module):
        Step = labelled(module)

        class Outer(module.BatchFlow):
            def prep(self, shared):
                return [{"outer": 1, "shadow": "outer"}, {"outer": 2}]

        class Inner(module.BatchFlow):
            def prep(self, shared):
                return [{"inner": "x", "shadow": "inner"}, {"inner": "y"}]

        flow = Outer(start=Inner(start=Step("leaf")))
        flow.set_params({"base": True})
        shared = {"log": []}
        flow.run(shared)
        return shared

    (theirs, _), (ours, _) = differential(app)
    assert ours == theirs
    assert ours["log"][0] == ("leaf", {"base": True, "outer": 1, "shadow": "inner", "inner": "x"})


# --- deliberate differences from PocketFlow ------------------------------------------------


def test_a_flow_without_a_start_node_raises_flow_error_naming_the_flow():
    assert pocketflow.Flow().run({}) is None  # PocketFlow silently does nothing
    with pytest.raises(FlowError, match="Agent"):
        Flow(name="Agent").run({})
    with pytest.raises(FlowError, match="Flow"):
        Flow().run({})


@pytest.mark.parametrize("action", [1, b"bytes", ["a"], True])
def test_an_action_that_is_not_a_string_or_none_raises_flow_error_naming_the_node(action):
    class Returns(Node):
        def post(self, shared, prep_res, exec_res):
            return action

    inner = Flow(start=Returns(name="Decide"), name="Inner")
    with pytest.raises(FlowError, match="Inner > Decide") as caught:
        Flow(start=inner).run({})
    assert caught.value.node_path == ("Inner", "Decide")


def test_flows_take_optional_name_and_max_steps_keywords():
    start = Node()
    flow = Flow(start, name="Agent", max_steps=5)
    assert (flow.start_node, flow.name, flow.max_steps) == (start, "Agent", 5)
    assert BatchFlow(start, name="Each").name == "Each"
    assert StreamFlow(start=start).name == "StreamFlow"  # the class name when unnamed


# --- streaming flows -----------------------------------------------------------------------


class Say(StreamNode):
    """Yields each word of params['words'] (or shared['words']), returns them joined."""

    def prep(self, shared):
        return self.params.get("words", shared.get("words", []))

    def exec_stream(self, words):
        yield from words
        return " ".join(words)

    def post(self, shared, prep_res, exec_res):
        shared.setdefault("said", []).append(exec_res)
        return self.params.get("action", shared.get("action"))


class Quiet(Node):
    def post(self, shared, prep_res, exec_res):
        shared.setdefault("quiet", 0)
        shared["quiet"] += 1


def tags(stream):
    return [(chunk.node, chunk.path, chunk.data) for chunk in stream]


def test_run_stream_chunks_carry_node_path_and_data():
    first = Say(name="Greeter")
    second = Say()
    first >> second
    shared = {"words": ["hello", "world"]}
    assert tags(StreamFlow(start=first).run_stream(shared)) == [
        ("Greeter", ("Greeter",), "hello"),
        ("Greeter", ("Greeter",), "world"),
        ("Say", ("Say",), "hello"),
        ("Say", ("Say",), "world"),
    ]


def test_run_stream_returns_the_final_action_to_yield_from():
    flow = StreamFlow(start=Say())
    shared = {"words": ["a"], "action": "finished"}

    def relay():
        action = yield from flow.run_stream(shared)
        yield ("action", action)

    assert [item if type(item) is tuple else item.data for item in relay()] == [
        "a",
        ("action", "finished"),
    ]


def test_run_stream_does_nothing_until_iterated():
    shared = {"words": ["a"]}
    stream = StreamFlow(start=Say()).run_stream(shared)
    assert "said" not in shared
    assert next(stream).data == "a"
    stream.close()


def test_plain_nodes_yield_nothing_but_still_run_inside_a_streamed_flow():
    quiet = Quiet()
    say = Say()
    quiet >> say >> Quiet()
    shared = {"words": ["x"]}
    assert tags(Flow(start=quiet).run_stream(shared)) == [("Say", ("Say",), "x")]
    assert shared["quiet"] == 2


def test_a_stream_flow_nested_in_an_outer_flow_resolves_the_outer_transition_by_its_action():
    inner = StreamFlow(start=Say(), name="Inner")
    inner - "left" >> Say(name="Left")
    inner - "right" >> Say(name="Right")
    outer = Flow(start=inner)
    shared = {"words": ["w"], "action": "right"}
    assert [chunk.node for chunk in outer.run_stream(shared)] == ["Say", "Right"]


def test_nested_flows_stream_inner_chunks_with_full_paths():
    class Two(BatchFlow):
        def prep(self, shared):
            return [{"words": ["b1"]}, {"words": ["b2"]}]

    batch = Two(start=Say(name="InBatch"), name="Batch")
    stream_flow = StreamFlow(start=Say(name="Deep"), name="Streamy")
    middle = Flow(start=stream_flow, name="Middle")
    stream_flow >> batch
    top = Say(name="Top")
    top >> middle
    shared = {"words": ["w"]}
    assert tags(Flow(start=top, name="Root").run_stream(shared)) == [
        ("Top", ("Top",), "w"),
        ("Deep", ("Middle", "Streamy", "Deep"), "w"),
        ("InBatch", ("Middle", "Batch", "InBatch"), "b1"),
        ("InBatch", ("Middle", "Batch", "InBatch"), "b2"),
    ]


def test_an_unnamed_flow_appears_in_paths_by_its_class_name():
    class Research(Flow):
        pass

    chunks = list(Flow(start=Research(start=Say())).run_stream({"words": ["x"]}))
    assert [chunk.path for chunk in chunks] == [("Research", "Say")]


def test_batch_flow_chunks_carry_the_params_of_their_iteration():
    class Files(BatchFlow):
        def prep(self, shared):
            return [{"words": ["a"], "file": 1}, {"words": ["b"], "file": 2}]

    flow = Files(start=Say())
    flow.set_params({"model": "m"})
    chunks = list(flow.run_stream({}))
    assert [chunk.data for chunk in chunks] == ["a", "b"]
    assert [dict(chunk.batch) for chunk in chunks] == [
        {"words": ["a"], "file": 1},
        {"words": ["b"], "file": 2},
    ]


def test_chunks_carry_the_innermost_batch_and_none_outside_any_batch_flow():
    class Outer(BatchFlow):
        def prep(self, shared):
            return [{"o": 1}]

    class Inner(BatchFlow):
        def prep(self, shared):
            return [{"i": 1, "words": ["in"]}]

    before = Say(name="Before")
    inner_plain = Flow(start=Say(name="UnderOuter"))
    inner_plain >> Inner(start=Say(name="UnderInner"))
    batch = Outer(start=inner_plain)
    before >> batch
    chunks = list(Flow(start=before).run_stream({"words": ["w"]}))
    assert [
        (chunk.node, None if chunk.batch is None else dict(chunk.batch)) for chunk in chunks
    ] == [
        ("Before", None),
        ("UnderOuter", {"o": 1}),
        ("UnderInner", {"i": 1, "words": ["in"]}),
    ]


def test_stream_batch_node_chunks_inside_a_flow_carry_item_and_path():
    class Letters(StreamBatchNode):
        def prep(self, shared):
            return ["ab", "c"]

        def exec_stream(self, word):
            yield from word
            return word

    chunks = list(Flow(start=Flow(start=Letters(), name="Inner")).run_stream({}))
    assert [(chunk.path, chunk.item, chunk.data) for chunk in chunks] == [
        (("Inner", "Letters"), 0, "a"),
        (("Inner", "Letters"), 0, "b"),
        (("Inner", "Letters"), 1, "c"),
    ]


def test_flow_run_is_run_stream_drained():
    def build():
        class Batches(BatchFlow):
            def prep(self, shared):
                return [{"words": ["x", "y"]}, {"words": []}]

        start = Say()
        quiet = Quiet()
        start >> quiet >> Batches(start=Say(name="B"))
        return Flow(start=start)

    ran, streamed = {"words": ["a"], "action": None}, {"words": ["a"], "action": None}
    run_action = build().run(ran)
    stream = build().run_stream(streamed)
    chunks = []
    while True:
        try:
            chunks.append(next(stream))
        except StopIteration as stop:
            stream_action = stop.value
            break
    assert run_action == stream_action
    assert ran == streamed
    assert all(type(chunk) is Chunk for chunk in chunks)


def test_stream_flow_is_a_flow():
    assert issubclass(StreamFlow, Flow)
    assert issubclass(BatchFlow, Flow)
    assert issubclass(Flow, pocketflow_stream.BaseNode)
