"""The engine: an iterative walk (constant stack, constant memory), its push driver, stopping.

No timing is asserted here; the million-turn loop is kept to trivial nodes so it stays quick.
"""

from __future__ import annotations

import gc
import sys
import tracemalloc
from collections.abc import Generator
from contextlib import contextmanager

import pytest

from pocketflow_stream import (
    BatchFlow,
    Chunk,
    Flow,
    MaxStepsExceeded,
    Node,
    NodeFinished,
    NodeStarted,
    StreamBatchNode,
    StreamFlow,
    StreamNode,
    drain,
)


@contextmanager
def lowered_recursion_limit(limit: int = 200):
    """Run a block with a small recursion limit, proving the engine's stack does not grow."""
    saved = sys.getrecursionlimit()
    sys.setrecursionlimit(limit)
    try:
        yield
    finally:
        sys.setrecursionlimit(saved)


# --- a plan <-> action loop ----------------------------------------------------------------


class Plan(Node):
    def post(self, shared, prep_res, exec_res):
        shared["turns"] += 1
        return "act" if shared["turns"] < shared["limit"] else "done"


class StreamingPlan(StreamNode):
    def exec_stream(self, prep_res):
        yield "thinking"
        return "planned"

    def post(self, shared, prep_res, exec_res):
        shared["turns"] += 1
        return "act" if shared["turns"] < shared["limit"] else "done"


class Act(Node):
    pass


class Finish(Node):
    def post(self, shared, prep_res, exec_res):
        return "finished"


def plan_act_loop(plan_class=Plan, **flow_options):
    plan, act = plan_class(), Act()
    plan - "act" >> act
    plan - "done" >> Finish()
    act >> plan
    return Flow(start=plan, **flow_options)


def test_a_million_turn_loop_runs_without_recursion_error():
    shared = {"turns": 0, "limit": 1_000_000}
    assert plan_act_loop().run(shared) == "finished"
    assert shared["turns"] == 1_000_000


def test_a_long_streaming_loop_streams_every_turn_without_recursion_error():
    shared = {"turns": 0, "limit": 200_000}
    received = 0
    for chunk in plan_act_loop(StreamingPlan).run_stream(shared):
        received += 1
        last = chunk
    assert last.data == "thinking" and last.path == ("StreamingPlan",)
    assert received == shared["turns"] == 200_000


def test_loops_run_and_stream_with_a_small_recursion_limit():
    with lowered_recursion_limit():
        shared = {"turns": 0, "limit": 20_000}
        assert plan_act_loop().run(shared) == "finished"
        streamed = {"turns": 0, "limit": 20_000}
        stream = plan_act_loop(StreamingPlan).run_stream(streamed, events=True)
        kinds = {type(item) for item in stream}
    assert shared["turns"] == streamed["turns"] == 20_000
    assert Chunk in kinds and NodeStarted in kinds


def peak_memory_of_a_loop(turns: int, *, stream: bool) -> int:
    shared = {"turns": 0, "limit": turns}
    flow = plan_act_loop(StreamingPlan if stream else Plan)
    gc.collect()
    tracemalloc.start()
    try:
        if stream:
            for _item in flow.run_stream(shared, events=True):
                pass
        else:
            flow.run(shared)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("stream", [False, True], ids=["run", "run_stream"])
def test_a_loop_keeps_nothing_per_turn(stream):
    peak_memory_of_a_loop(1_000, stream=stream)  # warm caches (copiers, code objects)
    small = peak_memory_of_a_loop(1_000, stream=stream)
    large = peak_memory_of_a_loop(20_000, stream=stream)
    assert large - small < 256 * 1024


# --- deep nesting --------------------------------------------------------------------------


class Leaf(StreamNode):
    def exec_stream(self, prep_res):
        yield "from the bottom"
        return "leaf result"

    def post(self, shared, prep_res, exec_res):
        shared["leaf"] = exec_res
        return "up"


def nested(depth: int, leaf=None):
    """A root flow over `depth` flows nested one in another, with a Leaf at the bottom."""
    inner = leaf if leaf is not None else Leaf()
    for level in range(depth, 0, -1):
        inner = Flow(start=inner, name=f"F{level}")
    return Flow(start=inner, name="Root")


def test_flows_nested_ten_thousand_deep_run():
    shared = {}
    assert nested(10_000).run(shared) == "up"
    assert shared["leaf"] == "leaf result"


def test_flows_nested_ten_thousand_deep_stream_with_the_full_path():
    chunks = list(nested(10_000).run_stream({}))
    assert len(chunks) == 1
    path = chunks[0].path
    assert len(path) == 10_001
    assert path[:2] == ("F1", "F2") and path[-2:] == ("F10000", "Leaf")


def test_deep_nesting_runs_and_streams_with_a_small_recursion_limit():
    flow = nested(10_000)
    with lowered_recursion_limit():
        shared = {}
        action = flow.run(shared)
        streamed = {}
        stream = flow.run_stream(streamed)
        chunks = list(stream)
        path_length = len(chunks[0].path)
    assert action == "up"
    assert shared == streamed == {"leaf": "leaf result"}
    assert path_length == 10_001


def test_an_error_ten_thousand_deep_carries_the_full_path_with_a_small_recursion_limit():
    class Fails(Node):
        def exec(self, prep_res):
            raise ValueError("deep")

    flow = nested(10_000, leaf=Fails())
    with lowered_recursion_limit():
        with pytest.raises(ValueError) as caught:
            flow.run({})
        path = caught.value.node_path
    assert len(path) == 10_001 and path[-1] == "Fails"


def test_deep_batch_flows_stream_and_tag_the_innermost_batch():
    class Twice(BatchFlow):
        def prep(self, shared):
            return [{"level": self.name, "pass": 0}, {"level": self.name, "pass": 1}]

    inner = Leaf()
    for level in range(1, 4):
        inner = Twice(start=inner, name=f"B{level}")
    chunks = list(Flow(start=inner).run_stream({}))
    assert len(chunks) == 2**3
    assert {chunk.batch["level"] for chunk in chunks} == {"B1"}
    assert [chunk.batch["pass"] for chunk in chunks] == [0, 1] * 4


# --- the push driver -----------------------------------------------------------------------


class Speak(StreamNode):
    def prep(self, shared):
        shared["log"].append(f"{self.name} prep")
        return shared["words"]

    def exec_stream(self, words):
        for word in words:
            shared_log = self.params["log"]
            shared_log.append(f"{self.name} yields {word}")
            yield word
        return len(words)

    def post(self, shared, prep_res, exec_res):
        shared["log"].append(f"{self.name} post")


def two_speakers():
    plan = Speak(name="Plan")
    act = Speak(name="Act")
    plan >> act
    return plan


def test_on_chunk_is_called_live_between_the_yield_and_the_nodes_post():
    shared = {"log": [], "words": ["a", "b"]}
    flow = Flow(start=two_speakers())
    flow.set_params({"log": shared["log"]})

    def on_chunk(chunk):
        shared["log"].append(f"got {chunk.node} {chunk.data}")

    assert flow.run(shared, on_chunk=on_chunk) is None
    assert shared["log"] == [
        "Plan prep",
        "Plan yields a",
        "got Plan a",
        "Plan yields b",
        "got Plan b",
        "Plan post",
        "Act prep",
        "Act yields a",
        "got Act a",
        "Act yields b",
        "got Act b",
        "Act post",
    ]


def test_on_event_is_called_in_order_with_the_chunks():
    shared = {"log": [], "words": ["a"]}
    flow = Flow(start=two_speakers(), name="Agent")
    flow.set_params({"log": shared["log"]})
    calls = []
    flow.run(shared, on_chunk=calls.append, on_event=calls.append)
    assert [(type(item).__name__, item.node) for item in calls] == [
        ("NodeStarted", "Plan"),
        ("Chunk", "Plan"),
        ("NodeFinished", "Plan"),
        ("NodeStarted", "Act"),
        ("Chunk", "Act"),
        ("NodeFinished", "Act"),
        ("FlowFinished", "Agent"),
    ]


def test_on_event_alone_gets_only_events_and_run_returns_the_action():
    flow = plan_act_loop()
    events = []
    assert flow.run({"turns": 0, "limit": 2}, on_event=events.append) == "finished"
    assert [(type(event).__name__, event.node) for event in events] == [
        ("NodeStarted", "Plan"),
        ("NodeFinished", "Plan"),
        ("NodeStarted", "Act"),
        ("NodeFinished", "Act"),
        ("NodeStarted", "Plan"),
        ("NodeFinished", "Plan"),
        ("NodeStarted", "Finish"),
        ("NodeFinished", "Finish"),
        ("FlowFinished", "Flow"),
    ]


def nested_speakers():
    """Plan, then a flow 'Tools' holding Search -> a flow 'Deeper' holding Fetch."""
    plan = Speak(name="Plan")
    search = Speak(name="Search")
    search >> Flow(start=Speak(name="Fetch"), name="Deeper")
    plan >> Flow(start=search, name="Tools")
    return plan


@pytest.mark.parametrize(
    "nodes, expected",
    [
        (["Plan"], ["Plan"]),
        (["Fetch", "Plan"], ["Plan", "Fetch"]),
        (["Tools"], ["Search", "Fetch"]),
        (["Deeper"], ["Fetch"]),
        ([], []),
    ],  # a name no node has is an error: tests/test_node_ids.py
)
def test_nodes_filters_chunks_to_those_nodes_or_to_nodes_inside_those_flows(nodes, expected):
    def fresh():
        shared = {"log": [], "words": ["w"]}
        flow = Flow(start=nested_speakers())
        flow.set_params({"log": shared["log"]})
        return flow, shared

    flow, pushed_shared = fresh()
    pushed = []
    flow.run(pushed_shared, on_chunk=pushed.append, nodes=nodes)
    flow, pulled_shared = fresh()
    pulled = list(flow.run_stream(pulled_shared, nodes=nodes))
    assert [chunk.node for chunk in pushed] == expected
    assert [chunk.node for chunk in pulled] == expected
    # filtering chooses what is seen, not what runs
    assert pushed_shared["log"] == pulled_shared["log"]
    assert "Fetch post" in pushed_shared["log"]


def test_nodes_takes_a_single_name_as_a_string():
    flow = Flow(start=nested_speakers())
    flow.set_params({"log": []})
    assert [
        chunk.node for chunk in flow.run_stream({"words": ["w"], "log": []}, nodes="Search")
    ] == ["Search"]


def test_naming_the_flow_being_run_in_nodes_selects_all_its_chunks():
    flow = Flow(start=nested_speakers(), name="Agent")
    flow.set_params({"log": []})
    chunks = list(flow.run_stream({"words": ["w"], "log": []}, nodes=["Agent"]))
    assert [chunk.node for chunk in chunks] == ["Plan", "Search", "Fetch"]


def test_an_exception_in_a_callback_stops_the_run_and_closes_the_running_generator():
    log = []

    class Streams(StreamNode):
        def exec_stream(self, prep_res):
            try:
                yield 1
                yield 2
            finally:
                log.append("closed")

        def post(self, shared, prep_res, exec_res):
            log.append("post")

    def refuse(chunk):
        raise RuntimeError("consumer failed")

    with pytest.raises(RuntimeError, match="consumer failed"):
        Flow(start=Streams()).run({}, on_chunk=refuse)
    assert log == ["closed"]


# --- stopping ------------------------------------------------------------------------------


class Talker(StreamNode):
    """Yields three chunks, logging each resume, its finally, and post."""

    def exec_stream(self, prep_res):
        try:
            for index in range(3):
                self.params["log"].append(f"{self.name} {index}")
                yield index
        finally:
            self.params["log"].append(f"{self.name} finally")
        return 3

    def post(self, shared, prep_res, exec_res):
        self.params["log"].append(f"{self.name} post")
        shared["posts"] = shared.get("posts", 0) + 1


def stoppable():
    log = []
    first = Talker(name="First")
    first >> Talker(name="Second")
    inner = Flow(start=first, name="Inner")
    flow = StreamFlow(start=inner)
    flow.set_params({"log": log})
    return flow, log


def full_run_result(flow, log):
    log.clear()
    shared = {}
    chunks = [(chunk.path, chunk.data) for chunk in flow.run_stream(shared)]
    return chunks, shared, list(log)


def test_breaking_out_of_the_loop_closes_the_running_generator_at_once():
    flow, log = stoppable()
    shared = {}
    for chunk in flow.run_stream(shared):
        if chunk.data == 1:
            break
    assert log == ["First 0", "First 1", "First finally"]
    assert shared == {}


def test_close_runs_the_generators_finally_before_returning_and_nothing_after_it_runs():
    flow, log = stoppable()
    shared = {}
    stream = flow.run_stream(shared)
    assert next(stream).data == 0
    stream.close()
    assert log == ["First 0", "First finally"]
    assert shared == {}
    with pytest.raises(StopIteration):
        next(stream)
    assert log == ["First 0", "First finally"]


def test_dropping_the_generator_closes_the_running_exec_stream():
    flow, log = stoppable()
    stream = flow.run_stream({})
    next(stream)
    next(stream)
    del stream
    gc.collect()
    assert log == ["First 0", "First 1", "First finally"]


def test_stopping_on_an_event_before_a_node_starts_runs_nothing_of_it():
    flow, log = stoppable()
    stream = flow.run_stream({}, events=True)
    for item in stream:
        if isinstance(item, NodeFinished) and item.node == "First":
            break
    assert log == ["First 0", "First 1", "First 2", "First finally", "First post"]


def test_a_stopped_flow_runs_again_with_identical_results():
    flow, log = stoppable()
    expected = full_run_result(flow, log)
    assert expected[1] == {"posts": 2}
    for stop_after in range(6):
        stream = flow.run_stream({})
        for _ in range(stop_after + 1):
            next(stream)
        stream.close()
        assert full_run_result(flow, log) == expected


def test_stopping_a_stream_batch_node_runs_no_later_item():
    ran = []

    class Items(StreamBatchNode):
        def prep(self, shared):
            return ["a", "b", "c"]

        def exec_stream(self, item):
            ran.append(item)
            yield item

    stream = Flow(start=Items()).run_stream({})
    assert next(stream).data == "a"
    stream.close()
    assert ran == ["a"]


def test_stopping_during_a_failed_attempt_makes_no_further_attempt():
    attempts = []

    class Flaky(StreamNode):
        def exec_stream(self, prep_res):
            attempts.append(self.cur_retry)
            yield "partial"
            raise ValueError("retry me")

    stream = Flow(start=Flaky(max_retries=5)).run_stream({})
    next(stream)
    stream.close()
    assert attempts == [0]


def test_closing_a_stream_that_never_started_runs_nothing():
    flow, log = stoppable()
    stream = flow.run_stream({})
    stream.close()
    assert log == []


def test_two_runs_of_one_flow_can_be_interleaved_independently():
    flow, log = stoppable()
    first, second = {}, {}
    left, right = flow.run_stream(first), flow.run_stream(second)
    interleaved = []
    for left_chunk in left:
        interleaved.append((left_chunk.data, next(right).data))
    assert drain(right) is None
    assert interleaved == [(0, 0), (1, 1), (2, 2)] * 2
    assert first == second == {"posts": 2}


# --- max_steps counting ---------------------------------------------------------------------


def test_max_steps_allows_exactly_that_many_node_steps():
    # limit=3 turns: Plan, Act, Plan, Act, Plan, Finish = 6 node steps
    assert plan_act_loop(max_steps=6).run({"turns": 0, "limit": 3}) == "finished"
    with pytest.raises(MaxStepsExceeded):
        plan_act_loop(max_steps=5).run({"turns": 0, "limit": 3})


def test_max_steps_given_to_run_bounds_the_run():
    assert plan_act_loop().run({"turns": 0, "limit": 3}, max_steps=6) == "finished"
    with pytest.raises(MaxStepsExceeded):
        plan_act_loop().run({"turns": 0, "limit": 3}, max_steps=5)
    stream = plan_act_loop(StreamingPlan).run_stream({"turns": 0, "limit": 100}, max_steps=10)
    with pytest.raises(MaxStepsExceeded):
        drain(stream)


def test_max_steps_bounds_each_batch_iteration_not_the_whole_batch():
    class EachItem(BatchFlow):
        def prep(self, shared):
            return [{"item": index} for index in range(5)]

    class Count(Node):
        def post(self, shared, prep_res, exec_res):
            shared["steps"] = shared.get("steps", 0) + 1

    shared = {}
    EachItem(start=Count(), max_steps=1).run(shared)
    assert shared == {"steps": 5}


def test_max_steps_exceeded_carries_the_flows_path():
    inner = plan_act_loop(max_steps=2)
    inner.name = "Agent"
    with pytest.raises(MaxStepsExceeded) as caught:
        Flow(start=inner).run({"turns": 0, "limit": 3})
    assert caught.value.node_path == ("Agent",)
    assert str(caught.value).startswith("Flow Agent exceeded max_steps=2")


def test_a_flow_without_max_steps_is_unbounded():
    shared = {"turns": 0, "limit": 10_000}
    assert plan_act_loop().run(shared) == "finished"


# --- drain --------------------------------------------------------------------------------


def test_drain_runs_a_generator_to_its_end_and_returns_its_return_value():
    seen = []

    def generator():
        seen.append("ran")
        yield 1
        yield 2
        return "value"

    assert drain(generator()) == "value"
    assert seen == ["ran"]


def test_drain_of_run_stream_gives_the_same_as_run():
    ran = {"turns": 0, "limit": 50}
    drained = {"turns": 0, "limit": 50}
    assert plan_act_loop(StreamingPlan).run(ran) == drain(
        plan_act_loop(StreamingPlan).run_stream(drained)
    )
    assert ran == drained


def test_an_exception_thrown_in_by_the_consumer_stops_the_run_without_a_retry():
    log = []

    class Streams(StreamNode):
        def exec_stream(self, prep_res):
            log.append(f"attempt {self.cur_retry}")
            try:
                yield 1
                yield 2
            finally:
                log.append("closed")

        def post(self, shared, prep_res, exec_res):
            log.append("post")

    stream = Flow(start=Streams(max_retries=3)).run_stream({})
    next(stream)
    with pytest.raises(LookupError, match="consumer gave up"):
        stream.throw(LookupError("consumer gave up"))
    assert log == ["attempt 0", "closed"]


# --- both ways a node's generator is passed through ------------------------------------------


def test_the_import_time_check_finds_the_direct_way_on_cpython():
    from pocketflow_stream import engine

    assert engine._return_passes_map() is (sys.implementation.name == "cpython")


def test_chunks_return_value_retries_and_stop_hold_both_ways(pass_through):
    log = []

    class Flaky(StreamNode):
        def exec_stream(self, prep_res):
            try:
                yield f"try{self.cur_retry}"
                if self.cur_retry == 0:
                    raise ValueError("first attempt fails")
                yield "ok"
                return "result"
            finally:
                log.append(f"closed {self.cur_retry}")

        def post(self, shared, prep_res, exec_res):
            shared["result"] = exec_res
            return "next"

    shared = {}
    stream = Flaky(max_retries=2).run_stream(shared)
    chunks = []
    try:
        while True:
            chunks.append(next(stream))
    except StopIteration as stop:
        action = stop.value
    assert [(chunk.data, chunk.attempt) for chunk in chunks] == [
        ("try0", 0),
        ("try1", 1),
        ("ok", 1),
    ]
    assert (action, shared, log) == ("next", {"result": "result"}, ["closed 0", "closed 1"])

    stream = Flaky(max_retries=2).run_stream({})
    next(stream)
    with pytest.raises(KeyError):  # thrown in by the consumer: no retry, the run stops
        stream.throw(KeyError("stop"))
    assert log[-1] == "closed 0"


class CountingGenerator(Generator):
    """A generator object that is not a Python generator (as Cython or a hand-written class
    gives): the walk takes the wrapped way for it."""

    def __init__(self, limit):
        self.count, self.limit = 0, limit

    def send(self, value):
        if self.count == self.limit:
            raise StopIteration(f"counted {self.limit}")
        self.count += 1
        return self.count

    def throw(self, *args):
        raise args[0] if isinstance(args[0], BaseException) else args[0]()


def test_a_generator_that_is_not_a_python_generator_streams_and_returns():
    class Count(StreamNode):
        def exec_stream(self, prep_res):
            return CountingGenerator(3)

        def post(self, shared, prep_res, exec_res):
            shared["result"] = exec_res

    shared = {}
    assert [chunk.data for chunk in Count().run_stream(shared)] == [1, 2, 3]
    assert shared == {"result": "counted 3"}
