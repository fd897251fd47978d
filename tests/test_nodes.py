"""Nodes: PocketFlow 0.0.3's BaseNode / Node / BatchNode, and the streaming StreamNode family.

Tests marked by the `module` fixture run the same app against PocketFlow 0.0.3 and against
pocketflow_stream and demand the same observable behaviour.
"""

from __future__ import annotations

import time

import pocketflow
import pytest

import pocketflow_stream
from pocketflow_stream import (
    BaseNode,
    BatchNode,
    Chunk,
    Node,
    StreamBatchNode,
    StreamNode,
)


@pytest.fixture
def sleeps(monkeypatch):
    """Replace time.sleep (both modules look it up on the time module) and record the calls."""
    calls = []
    monkeypatch.setattr(time, "sleep", calls.append)
    return calls


# --- wiring (same in both modules) ---------------------------------------------------------


def test_rshift_sets_the_default_successor_and_returns_the_target(module):
    first, second, third = module.Node(), module.Node(), module.Node()
    returned = first >> second >> third
    assert returned is third
    assert first.successors == {"default": second}
    assert second.successors == {"default": third}


def test_minus_action_rshift_sets_a_named_successor_and_returns_the_target(module):
    source, target = module.Node(), module.Node()
    assert (source - "retry" >> target) is target
    assert source.successors == {"retry": target}


def test_next_defaults_to_the_default_action_and_returns_the_node(module):
    source, target, other = module.Node(), module.Node(), module.Node()
    assert source.next(target) is target
    assert source.next(other, "other") is other
    assert source.successors == {"default": target, "other": other}


@pytest.mark.parametrize("action", [1, None, 2.5, ("a",)])
def test_minus_something_other_than_a_string_raises_type_error(module, action):
    with pytest.raises(TypeError) as caught:
        module.Node() - action  # noqa: B018
    assert str(caught.value) == "Action must be a string"


def test_overwriting_a_successor_warns_and_keeps_the_new_one(module, caught_warnings):
    source, old, new = module.Node(), module.Node(), module.Node()
    source - "go" >> old
    _, messages = caught_warnings(lambda: source - "go" >> new)
    assert messages == ["Overwriting successor for action 'go'"]
    assert source.successors["go"] is new

    source >> old
    _, messages = caught_warnings(lambda: source >> new)
    assert messages == ["Overwriting successor for action 'default'"]


def test_wiring_warnings_are_the_same_as_pocketflows(caught_warnings):
    def wire(module):
        source = module.Node()
        source >> module.Node()
        source >> module.Node()
        source - "x" >> module.Node()
        source - "x" >> module.Node()
        return source

    assert (
        caught_warnings(lambda: wire(pocketflow))[1]
        == caught_warnings(lambda: wire(pocketflow_stream))[1]
    )


# --- running one node ---------------------------------------------------------------------


def make_recording_node(module):
    class Recording(module.Node):
        def prep(self, shared):
            shared["calls"].append(("prep", self.params.get("who")))
            return "prep-result"

        def exec(self, prep_res):
            return ("exec-result", prep_res)

        def post(self, shared, prep_res, exec_res):
            shared["calls"].append(("post", prep_res, exec_res))
            return "next"

    return Recording


def test_run_is_prep_then_exec_then_post_and_returns_posts_action(module):
    node = make_recording_node(module)()
    node.set_params({"who": "me"})
    shared = {"calls": []}
    assert node.run(shared) == "next"
    assert shared["calls"] == [
        ("prep", "me"),
        ("post", "prep-result", ("exec-result", "prep-result")),
    ]


def test_default_prep_exec_post_return_none(module):
    for node in (module.BaseNode(), module.Node(), module.BatchNode()):
        assert node.prep({}) is None
        assert node.exec("anything") is None
        assert node.post({}, None, None) is None
        assert node.run({}) is None


def test_params_start_empty_and_set_params_replaces_them(module):
    node = module.Node()
    assert node.params == {}
    params = {"a": 1}
    node.set_params(params)
    assert node.params is params


def test_running_a_node_with_successors_warns_and_runs_only_that_node(module, caught_warnings):
    ran = []

    class Step(module.Node):
        def prep(self, shared):
            ran.append(self)

    first, second = Step(), Step()
    first >> second
    action, messages = caught_warnings(lambda: first.run({}))
    assert action is None
    assert messages == ["Node won't run successors. Use Flow."]
    assert ran == [first]


def test_node_run_runs_the_node_itself_not_a_copy(module):
    class Remember(module.Node):
        def prep(self, shared):
            self.seen = shared["value"]

    node = Remember()
    node.run({"value": 42})
    assert node.seen == 42


def test_subclass_init_without_arguments_still_works(module):
    class Custom(module.Node):
        def __init__(self):
            super().__init__()
            self.extra = "x"

        def exec(self, prep_res):
            return self.extra

        def post(self, shared, prep_res, exec_res):
            return exec_res

    assert Custom().run({}) == "x"


# --- retries (same in both modules) -------------------------------------------------------


def make_flaky(module, failures, *, fallback=None):
    """A node whose exec fails `failures` times, recording cur_retry and what it got."""

    class Flaky(module.Node):
        def prep(self, shared):
            return shared["input"]

        def exec(self, prep_res):
            self.log.append(("exec", self.cur_retry, prep_res))
            if len(self.log) <= failures:
                raise ValueError(f"failure {len(self.log)}")
            return f"ok after {len(self.log)}"

        def post(self, shared, prep_res, exec_res):
            shared["result"] = exec_res
            return "done"

    if fallback is not None:

        def exec_fallback(self, prep_res, exc):
            self.log.append(("fallback", self.cur_retry, prep_res, str(exc)))
            return fallback

        Flaky.exec_fallback = exec_fallback
    return Flaky


def test_exec_is_retried_until_it_succeeds_with_cur_retry_counting_from_zero(module, sleeps):
    node = make_flaky(module, failures=2)(max_retries=3)
    node.log = []
    shared = {"input": "in"}
    assert node.run(shared) == "done"
    assert node.log == [("exec", 0, "in"), ("exec", 1, "in"), ("exec", 2, "in")]
    assert shared["result"] == "ok after 3"
    assert sleeps == []  # wait=0: no sleeping


def test_wait_is_slept_between_attempts_and_not_after_the_last(module, sleeps):
    node = make_flaky(module, failures=10, fallback="fallback")(max_retries=3, wait=0.25)
    node.log = []
    shared = {"input": "in"}
    node.run(shared)
    assert sleeps == [0.25, 0.25]
    assert shared["result"] == "fallback"


def test_exec_fallback_gets_prep_res_and_the_last_error_after_the_last_attempt(module, sleeps):
    node = make_flaky(module, failures=10, fallback="fallback")(max_retries=2)
    node.log = []
    node.run({"input": "in"})
    assert node.log == [
        ("exec", 0, "in"),
        ("exec", 1, "in"),
        ("fallback", 1, "in", "failure 2"),
    ]


def test_default_exec_fallback_reraises_the_last_attempts_exception(module, sleeps):
    errors = []

    class AlwaysFails(module.Node):
        def exec(self, prep_res):
            errors.append(KeyError(self.cur_retry))
            raise errors[-1]

    with pytest.raises(KeyError) as caught:
        AlwaysFails(max_retries=3).run({})
    assert caught.value is errors[-1]
    assert len(errors) == 3


def test_a_real_tiny_wait_between_attempts_works(module):
    node = make_flaky(module, failures=1)(max_retries=2, wait=0.001)
    node.log = []
    shared = {"input": "in"}
    node.run(shared)
    assert shared["result"] == "ok after 2"


def test_batch_node_runs_exec_once_per_item_with_retries_per_item(module, sleeps):
    class PerItem(module.BatchNode):
        def prep(self, shared):
            return shared["items"]

        def exec(self, item):
            self.log.append((item, self.cur_retry))
            if item == "b" and self.cur_retry == 0:
                raise RuntimeError("flaky b")
            return item.upper()

        def post(self, shared, prep_res, exec_res):
            shared["out"] = exec_res

    node = PerItem(max_retries=2, wait=0.5)
    node.log = []
    shared = {"items": ["a", "b", "c"]}
    node.run(shared)
    assert shared["out"] == ["A", "B", "C"]
    assert node.log == [("a", 0), ("b", 0), ("b", 1), ("c", 0)]
    assert sleeps == [0.5]


@pytest.mark.parametrize("prep_res", [None, []])
def test_batch_node_with_no_items_runs_no_exec_and_post_gets_an_empty_list(module, prep_res):
    class Empty(module.BatchNode):
        def prep(self, shared):
            return prep_res

        def exec(self, item):
            raise AssertionError("exec must not run")

        def post(self, shared, prep_res, exec_res):
            shared["exec_res"] = exec_res

    shared = {}
    Empty().run(shared)
    assert shared["exec_res"] == []


def test_batch_node_exec_fallback_is_per_item(module):
    class Fallback(module.BatchNode):
        def prep(self, shared):
            return [1, 2, 3]

        def exec(self, item):
            if item == 2:
                raise ValueError("two")
            return item * 10

        def exec_fallback(self, item, exc):
            return f"fallback {item}: {exc}"

        def post(self, shared, prep_res, exec_res):
            shared["out"] = exec_res

    shared = {}
    Fallback(max_retries=2).run(shared)
    assert shared["out"] == [10, "fallback 2: two", 30]


# --- names (ours) -------------------------------------------------------------------------


def test_nodes_take_an_optional_name_keyword():
    assert Node(name="Plan").name == "Plan"
    assert BaseNode(name="Base").name == "Base"
    assert BatchNode(3, 0.1, name="Batch").name == "Batch"
    assert Node().name == "Node"  # the visible name: the class name when unnamed
    named = Node(max_retries=4, wait=0.5, name="Retry")
    assert (named.max_retries, named.wait) == (4, 0.5)


def test_an_unnamed_nodes_chunks_carry_its_class_name():
    class Speaker(StreamNode):
        def exec_stream(self, prep_res):
            yield "hi"

    assert [chunk.node for chunk in Speaker().run_stream({})] == ["Speaker"]
    assert [chunk.node for chunk in Speaker(name="Alice").run_stream({})] == ["Alice"]


# --- StreamNode ---------------------------------------------------------------------------


class Counting(StreamNode):
    """Yields prep_res chunks, logging when it resumes, and returns their count."""

    def prep(self, shared):
        return shared["count"]

    def exec_stream(self, count):
        for index in range(count):
            self.log.append(f"making {index}")
            yield index
        return count

    def post(self, shared, prep_res, exec_res):
        shared["made"] = exec_res
        return "counted"


def test_each_yielded_value_reaches_the_caller_before_the_generator_resumes():
    node = Counting(name="Counter")
    node.log = []
    seen = []
    stream = node.run_stream({"count": 3})
    for chunk in stream:
        # the generator has made exactly this chunk and not started on the next one
        assert node.log[-1] == f"making {chunk.data}"
        seen.append(chunk.data)
    assert seen == [0, 1, 2]


def test_exec_streams_return_value_is_exec_res_for_post_and_the_action_is_returned():
    node = Counting()
    node.log = []
    shared = {"count": 2}

    def consume():
        action = yield from node.run_stream(shared)
        return action

    gathered = []
    generator = consume()
    try:
        while True:
            gathered.append(next(generator).data)
    except StopIteration as stop:
        action = stop.value
    assert gathered == [0, 1]
    assert action == "counted"
    assert shared["made"] == 2


def test_a_stand_alone_stream_nodes_chunks_have_its_name_as_path():
    node = Counting(name="Counter")
    node.log = []
    chunks = list(node.run_stream({"count": 2}))
    assert all(type(chunk) is Chunk for chunk in chunks)
    assert [(chunk.node, chunk.path, chunk.data) for chunk in chunks] == [
        ("Counter", ("Counter",), 0),
        ("Counter", ("Counter",), 1),
    ]
    assert all(
        chunk.item is None and chunk.attempt == 0 and chunk.batch is None for chunk in chunks
    )


def test_stream_node_run_alone_discards_chunks_and_returns_the_action():
    node = Counting()
    node.log = []
    shared = {"count": 3}
    assert node.run(shared) == "counted"
    assert shared["made"] == 3
    assert node.log == ["making 0", "making 1", "making 2"]


def test_stream_node_run_with_on_chunk_calls_back_with_each_chunk():
    node = Counting()
    node.log = []
    received = []
    assert node.run({"count": 2}, on_chunk=received.append) == "counted"
    assert [chunk.data for chunk in received] == [0, 1]


def test_a_stream_node_that_only_defines_exec_works_like_a_node():
    class JustExec(StreamNode):
        def exec(self, prep_res):
            return "from exec"

        def post(self, shared, prep_res, exec_res):
            shared["got"] = exec_res

    shared = {}
    assert list(JustExec().run_stream(shared)) == []
    assert shared["got"] == "from exec"


def test_retry_restarts_exec_stream_and_tags_the_failed_attempts_chunks(sleeps):
    class Flaky(StreamNode):
        def exec_stream(self, prep_res):
            yield f"start {self.cur_retry}"
            if self.cur_retry < 2:
                raise ConnectionError("dropped")
            yield "rest"
            return "complete"

        def post(self, shared, prep_res, exec_res):
            shared["result"] = exec_res

    shared = {}
    chunks = list(Flaky(max_retries=3, wait=0.1).run_stream(shared))
    assert [(chunk.data, chunk.attempt) for chunk in chunks] == [
        ("start 0", 0),
        ("start 1", 1),
        ("start 2", 2),
        ("rest", 2),
    ]
    assert shared["result"] == "complete"
    assert sleeps == [0.1, 0.1]


def test_a_failing_exec_stream_is_closed_before_the_retry():
    closed = []

    class Flaky(StreamNode):
        def exec_stream(self, prep_res):
            attempt = self.cur_retry
            try:
                yield attempt
                if attempt == 0:
                    raise ValueError("first try fails")
            finally:
                closed.append(attempt)
            return attempt

    assert [chunk.data for chunk in Flaky(max_retries=2).run_stream({})] == [0, 1]
    assert closed == [0, 1]


def test_exec_fallback_may_be_a_generator_that_streams_and_returns_exec_res():
    class WithFallback(StreamNode):
        def exec_stream(self, prep_res):
            yield "partial"
            raise TimeoutError("too slow")

        def exec_fallback(self, prep_res, exc):
            yield f"sorry: {exc}"
            return "fallback answer"

        def post(self, shared, prep_res, exec_res):
            shared["answer"] = exec_res

    shared = {}
    data = [chunk.data for chunk in WithFallback().run_stream(shared)]
    assert data == ["partial", "sorry: too slow"]
    assert shared["answer"] == "fallback answer"


def test_fallback_chunks_can_be_told_apart_from_the_failed_attempts_chunks():
    class WithFallback(StreamNode):
        def exec_stream(self, prep_res):
            yield "failed"
            raise TimeoutError("too slow")

        def exec_fallback(self, prep_res, exc):
            yield "fallback"
            return "fallback answer"

    chunks = list(WithFallback(max_retries=2).run_stream({}))
    failed = {chunk.attempt for chunk in chunks if chunk.data == "failed"}
    fallback = {chunk.attempt for chunk in chunks if chunk.data == "fallback"}
    assert failed == {0, 1}
    assert fallback and not (fallback & failed)


def test_a_stream_nodes_exec_fallback_may_return_a_plain_value():
    class PlainFallback(StreamNode):
        def exec_stream(self, prep_res):
            raise ValueError("no")
            yield  # pragma: no cover

        def exec_fallback(self, prep_res, exc):
            return f"plain {exc}"

        def post(self, shared, prep_res, exec_res):
            return exec_res

    assert PlainFallback().run({}) == "plain no"


def test_a_stream_node_that_keeps_failing_raises_its_last_error():
    class Broken(StreamNode):
        def exec_stream(self, prep_res):
            yield self.cur_retry
            raise LookupError(f"attempt {self.cur_retry}")

    received = []
    with pytest.raises(LookupError, match="attempt 2"):
        for chunk in Broken(max_retries=3).run_stream({}):
            received.append(chunk.data)
    assert received == [0, 1, 2]


# --- StreamBatchNode ----------------------------------------------------------------------


class Spell(StreamBatchNode):
    """Streams each word letter by letter; exec_res is the list of the words' lengths."""

    def prep(self, shared):
        return shared["words"]

    def exec_stream(self, word):
        yield from word
        return len(word)

    def post(self, shared, prep_res, exec_res):
        shared["lengths"] = exec_res
        return "spelled"


def test_stream_batch_node_runs_exec_stream_per_item_and_tags_chunks_with_the_item_index():
    shared = {"words": ["ab", "", "xyz"]}
    stream = Spell().run_stream(shared)
    chunks = list(stream)
    assert [(chunk.item, chunk.data) for chunk in chunks] == [
        (0, "a"),
        (0, "b"),
        (2, "x"),
        (2, "y"),
        (2, "z"),
    ]
    assert all(chunk.path == ("Spell",) and chunk.attempt == 0 for chunk in chunks)
    assert shared["lengths"] == [2, 0, 3]


@pytest.mark.parametrize("words", [None, []])
def test_stream_batch_node_with_no_items_streams_nothing_and_post_gets_an_empty_list(words):
    shared = {"words": words}
    assert list(Spell().run_stream(shared)) == []
    assert shared["lengths"] == []


def test_stream_batch_node_retries_per_item_and_tags_item_and_attempt():
    class FlakySecond(StreamBatchNode):
        def prep(self, shared):
            return ["a", "b"]

        def exec_stream(self, item):
            yield item
            if item == "b" and self.cur_retry == 0:
                raise RuntimeError("b failed once")
            return item * 2

        def post(self, shared, prep_res, exec_res):
            shared["out"] = exec_res

    shared = {}
    chunks = list(FlakySecond(max_retries=2).run_stream(shared))
    assert [(chunk.item, chunk.attempt, chunk.data) for chunk in chunks] == [
        (0, 0, "a"),
        (1, 0, "b"),
        (1, 1, "b"),
    ]
    assert shared["out"] == ["aa", "bb"]


def test_stream_batch_node_run_alone_returns_the_action():
    shared = {"words": ["hi"]}
    assert Spell().run(shared) == "spelled"
    assert shared["lengths"] == [2]


def test_stream_nodes_are_nodes_with_the_node_api():
    assert issubclass(StreamNode, Node)
    assert issubclass(StreamBatchNode, StreamNode)
    node = StreamNode(max_retries=2, wait=0.5, name="S")
    assert (node.max_retries, node.wait, node.name) == (2, 0.5, "S")
    other = StreamNode()
    assert (node - "go" >> other) is other
    assert node.successors == {"go": other}


def test_the_package_exports_the_core_names():
    for name in pocketflow_stream.__all__:
        assert hasattr(pocketflow_stream, name)
