"""Errors: an app's exception keeps its type and learns where it was raised; wiring and usage
mistakes raise FlowError naming the node or flow and what to do."""

from __future__ import annotations

import pytest

from pocketflow_stream import (
    BatchFlow,
    Flow,
    FlowError,
    MaxStepsExceeded,
    Node,
    StreamFlow,
    StreamNode,
    node_path_of,
)


class Boom(Exception):
    pass


def failing_node(stage, base=Node, **options):
    """A node named 'Work' that raises Boom in `stage` (prep, exec, exec_stream or post)."""

    class Failing(base):
        def prep(self, shared):
            if stage == "prep":
                raise Boom("in prep")

        def exec(self, prep_res):
            if stage == "exec":
                raise Boom("in exec")

        def exec_stream(self, prep_res):
            yield "before"
            if stage == "exec_stream":
                raise Boom("in exec_stream")

        def post(self, shared, prep_res, exec_res):
            if stage == "post":
                raise Boom("in post")

    return Failing(name="Work", **options)


def nested_around(node):
    """Flow 'Outer' > Flow 'Inner' > node, run from a root flow."""
    return Flow(start=Flow(start=Flow(start=node, name="Inner"), name="Outer"), name="Root")


STAGES = [
    ("prep", Node, {}),
    ("exec", Node, {}),
    ("post", Node, {}),
    ("exec", Node, {"max_retries": 2}),
    ("prep", StreamNode, {}),
    ("exec_stream", StreamNode, {}),
    ("exec_stream", StreamNode, {"max_retries": 3}),
    ("post", StreamNode, {}),
]


@pytest.mark.parametrize("stage, base, options", STAGES)
@pytest.mark.parametrize("driver", ["run", "run_stream", "run_with_events"])
def test_an_exception_in_a_node_keeps_its_type_and_names_the_node_path(
    stage, base, options, driver
):
    flow = nested_around(failing_node(stage, base, **options))
    with pytest.raises(Boom, match=f"in {stage}") as caught:
        if driver == "run":
            flow.run({})
        else:
            list(flow.run_stream({}, events=driver == "run_with_events"))
    error = caught.value
    assert error.node_path == ("Outer", "Inner", "Work")
    assert node_path_of(error) == ("Outer", "Inner", "Work")
    assert error.__notes__ == ["raised in node Outer > Inner > Work"]


def test_a_stand_alone_nodes_error_names_the_node():
    with pytest.raises(Boom) as caught:
        failing_node("exec").run({})
    assert node_path_of(caught.value) == ("Work",)


def test_node_path_of_is_none_for_an_exception_that_did_not_come_from_a_node():
    assert node_path_of(ValueError("elsewhere")) is None


def test_an_exception_kept_by_the_app_is_marked_where_it_is_finally_raised():
    class Wrapper(Flow):
        def post(self, shared, prep_res, exec_res):
            raise shared["error"]

    class Keeps(Node):
        def exec(self, prep_res):
            raise Boom("kept")

        def exec_fallback(self, prep_res, exc):
            return exc

        def post(self, shared, prep_res, exec_res):
            shared["error"] = exec_res

    with pytest.raises(Boom) as caught:
        Flow(start=Wrapper(start=Keeps(), name="Wrapper")).run({})
    assert caught.value.node_path == ("Wrapper",)
    assert caught.value.__notes__ == ["raised in node Wrapper"]


def test_an_exception_raised_in_exec_fallback_names_the_node():
    class FallbackFails(Node):
        def exec(self, prep_res):
            raise Boom("exec")

        def exec_fallback(self, prep_res, exc):
            raise KeyError("fallback failed")

    with pytest.raises(KeyError) as caught:
        Flow(start=FallbackFails(max_retries=2, name="F")).run({})
    assert caught.value.node_path == ("F",)


def test_shared_is_left_as_the_last_completed_post_left_it():
    class Writes(Node):
        def post(self, shared, prep_res, exec_res):
            shared["log"].append(self.name)

    class FailsAfterWriting(StreamNode):
        def prep(self, shared):
            shared["log"].append("prep of the failing node")

        def exec_stream(self, prep_res):
            yield 1
            raise Boom("mid-stream")

        def post(self, shared, prep_res, exec_res):
            shared["log"].append("never")

    first, second = Writes(name="first"), Writes(name="second")
    first >> second >> FailsAfterWriting()
    shared = {"log": []}
    received = []
    with pytest.raises(Boom):
        for chunk in StreamFlow(start=first).run_stream(shared):
            received.append(chunk.data)
    assert received == [1]
    assert shared == {"log": ["first", "second", "prep of the failing node"]}


# --- exec_stream must give a generator -----------------------------------------------------


def test_exec_stream_that_returns_a_non_generator_raises_flow_error_and_is_not_retried():
    calls = []

    class NotAGenerator(StreamNode):
        def exec_stream(self, prep_res):
            calls.append(self.cur_retry)
            return ["a", "list"]

        def exec_fallback(self, prep_res, exc):
            calls.append("fallback")
            return "hidden"

    flow = Flow(start=Flow(start=NotAGenerator(max_retries=3, name="Bad"), name="Inner"))
    with pytest.raises(FlowError) as caught:
        flow.run({})
    message = str(caught.value)
    assert "Inner > Bad" in message and "generator" in message and "list" in message
    assert caught.value.node_path == ("Inner", "Bad")
    assert calls == [0]


def test_an_async_generator_exec_stream_gets_a_hint():
    class AsyncStream(StreamNode):
        async def exec_stream(self, prep_res):
            yield "never"

    with pytest.raises(FlowError, match="async generator") as caught:
        Flow(start=AsyncStream(name="Async")).run({})
    assert "Async" in str(caught.value)


# --- actions -------------------------------------------------------------------------------


@pytest.mark.parametrize("action", [0, 1.5, b"go", ("go",), {"go": 1}, object()])
@pytest.mark.parametrize("base", [Node, StreamNode])
@pytest.mark.parametrize("events", [False, True])
def test_an_action_that_is_not_a_str_or_none_raises_flow_error_naming_the_node(
    action, base, events
):
    class Returns(base):
        def post(self, shared, prep_res, exec_res):
            return action

    flow = Flow(start=Flow(start=Returns(name="Decide"), name="Inner"))
    with pytest.raises(FlowError) as caught:
        list(flow.run_stream({}, events=events))
    message = str(caught.value)
    assert "Inner > Decide" in message and type(action).__name__ in message
    assert caught.value.node_path == ("Inner", "Decide")


def test_a_flow_post_returning_a_non_str_action_names_the_flow():
    class BadPost(Flow):
        def post(self, shared, prep_res, exec_res):
            return 42

    with pytest.raises(FlowError, match="Sub") as caught:
        Flow(start=BadPost(start=Node(), name="Sub")).run({})
    assert caught.value.node_path == ("Sub",)
    with pytest.raises(FlowError, match="Top") as caught:
        BadPost(start=Node(), name="Top").run({})
    assert caught.value.node_path == ("Top",)


# --- flows ---------------------------------------------------------------------------------


def test_a_flow_without_a_start_node_raises_flow_error_naming_it_and_saying_what_to_do():
    with pytest.raises(FlowError) as caught:
        Flow(name="Agent").run({})
    assert "Agent" in str(caught.value) and "start" in str(caught.value)
    with pytest.raises(FlowError) as caught:
        list(Flow(start=Flow(name="Empty"), name="Agent").run_stream({}))
    assert "Empty" in str(caught.value)
    assert caught.value.node_path == ("Empty",)


@pytest.mark.parametrize("hook", ["prep", "post"])
def test_an_error_in_a_flows_own_prep_or_post_names_the_flow(hook):
    class Hooked(Flow):
        def prep(self, shared):
            if hook == "prep":
                raise Boom("flow prep")

        def post(self, shared, prep_res, exec_res):
            if hook == "post":
                raise Boom("flow post")

    with pytest.raises(Boom) as caught:
        Flow(start=Flow(start=Hooked(start=Node(), name="Sub"), name="Mid")).run({})
    assert caught.value.node_path == ("Mid", "Sub")
    assert caught.value.__notes__ == ["raised in node Mid > Sub"]

    with pytest.raises(Boom) as caught:
        Hooked(start=Node(), name="Top").run({})
    assert caught.value.node_path == ("Top",)
    assert "Top" in caught.value.__notes__[0]


@pytest.mark.parametrize("batches", [[{"ok": 1}, "file.txt"], ["a"], [None], [[("k", "v")]]])
def test_a_batch_flow_prep_returning_non_dicts_raises_a_clear_flow_error(batches):
    class Files(BatchFlow):
        def prep(self, shared):
            return batches

    ran = []

    class Records(Node):
        def prep(self, shared):
            ran.append(dict(self.params))

    with pytest.raises(FlowError) as caught:
        Flow(start=Files(start=Records(), name="Files")).run({})
    message = str(caught.value)
    assert "dict" in message and repr(batches[-1]) in message
    assert caught.value.node_path == ("Files",)
    assert ran == []  # checked before any iteration runs


# --- max_steps -----------------------------------------------------------------------------


class Again(Node):
    def post(self, shared, prep_res, exec_res):
        shared["steps"] = shared.get("steps", 0) + 1
        return "again"


def looping(**flow_options):
    think, check = Again(name="Think"), Again(name="Check")
    think - "again" >> check
    check - "again" >> think
    return Flow(start=think, **flow_options)


def test_max_steps_raises_max_steps_exceeded_naming_the_flow_and_the_looping_nodes():
    shared = {}
    with pytest.raises(MaxStepsExceeded) as caught:
        looping(name="Agent", max_steps=7).run(shared)
    message = str(caught.value)
    assert "Agent" in message and "7" in message
    assert "Think" in message and "Check" in message
    assert shared["steps"] == 7
    assert isinstance(caught.value, FlowError)


def test_max_steps_given_to_run_or_run_stream_raises_the_same():
    with pytest.raises(MaxStepsExceeded, match="Think"):
        looping(name="Agent").run({}, max_steps=3)
    with pytest.raises(MaxStepsExceeded, match="Agent"):
        list(looping(name="Agent").run_stream({}, max_steps=3))


def test_max_steps_in_a_nested_flow_names_that_flow():
    outer = Flow(start=looping(name="Loop", max_steps=4), name="Outer")
    with pytest.raises(MaxStepsExceeded, match="Loop"):
        outer.run({})


# --- a FlowError from the app's own code is just an exception --------------------------------


class Circles(Node):
    def post(self, shared, prep_res, exec_res):
        return "again"


class RunsARunawaySubflow(Node):
    """Runs a looping flow inside exec: its MaxStepsExceeded is the app's exception here."""

    def exec(self, prep_res):
        self.attempts.append(self.cur_retry)
        circle = Circles()
        circle - "again" >> circle
        return Flow(start=circle, max_steps=3).run({})

    def exec_fallback(self, prep_res, exc):
        return f"fallback after {type(exc).__name__}"

    def post(self, shared, prep_res, exec_res):
        shared["result"] = exec_res


@pytest.mark.parametrize("max_retries", [1, 3])
@pytest.mark.parametrize("events", [False, True])
def test_a_flow_error_raised_by_exec_is_retried_and_given_to_exec_fallback(max_retries, events):
    node = RunsARunawaySubflow(max_retries=max_retries)
    node.attempts = []
    shared = {}
    list(Flow(start=node).run_stream(shared, events=events))
    assert shared == {"result": "fallback after MaxStepsExceeded"}
    assert node.attempts == list(range(max_retries))
