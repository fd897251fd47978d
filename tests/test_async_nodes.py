"""Async nodes and flows: PocketFlow 0.0.3's AsyncNode family, and what ours adds to it.

Tests taking `async_differential` run the same async app against PocketFlow 0.0.3 (on asyncio,
since it calls asyncio.gather and asyncio.sleep) and against pocketflow_stream (on asyncio and
on trio), and demand the same shared state, final action and warnings. Tests marked
`@pytest.mark.anyio` are ours only and run on asyncio and on trio.
"""

from __future__ import annotations

import asyncio
import inspect

import anyio
import pocketflow
import pytest

from pocketflow_stream import (
    AsyncBatchFlow,
    AsyncBatchNode,
    AsyncFlow,
    AsyncNode,
    AsyncParallelBatchFlow,
    AsyncParallelBatchNode,
    AsyncStreamBatchNode,
    AsyncStreamNode,
    FlowError,
    Node,
    Return,
    node_path_of,
)

#: Longest sleep any test takes (seconds): waits between attempts only.
TINY_WAIT = 0.005


def run_app(app, module, backend):
    """Run the coroutine function `app(module)`: PocketFlow on asyncio, ours on `backend`."""
    if module is pocketflow:
        return asyncio.run(app(module))
    return anyio.run(app, module, backend=backend)


@pytest.fixture
def async_differential(differential, anyio_backend):
    """`async_differential(app)`: run the async `app(module)` on both modules; return each one's
    (result, warnings), PocketFlow's (on asyncio) first, ours (on `anyio_backend`) second."""

    def run_on_both(app):
        return differential(lambda module: run_app(app, module, anyio_backend))

    return run_on_both


def same_in_both(async_differential, app):
    """Run `app` on both modules, demand the same result and warnings; return ours."""
    (theirs, their_warnings), (ours, our_warnings) = async_differential(app)
    assert ours == theirs
    assert our_warnings == their_warnings
    return ours, our_warnings


# --- PocketFlow semantics (differential) ---------------------------------------------------


def test_run_async_is_prep_then_exec_then_post_and_returns_posts_action(async_differential):
    async def app(module):
        class Answer(module.AsyncNode):
            async def prep_async(self, shared):
                await anyio.sleep(0)
                shared["log"].append(("prep", dict(self.params)))
                return shared["question"]

            async def exec_async(self, question):
                await anyio.sleep(0)
                return question.upper()

            async def post_async(self, shared, prep_res, exec_res):
                shared["log"].append(("post", prep_res, exec_res))
                return "answered"

        node = Answer()
        node.set_params({"who": "me"})
        shared = {"log": [], "question": "why"}
        return shared, await node.run_async(shared)

    (shared, action), warnings = same_in_both(async_differential, app)
    assert action == "answered"
    assert shared["log"] == [("prep", {"who": "me"}), ("post", "why", "WHY")]
    assert warnings == []


def test_run_async_on_a_node_with_successors_warns_and_runs_only_that_node(async_differential):
    async def app(module):
        class Step(module.AsyncNode):
            def __init__(self, label):
                super().__init__()
                self.label = label

            async def prep_async(self, shared):
                shared["ran"].append(self.label)

        first = Step("first")
        first >> Step("second")
        shared = {"ran": []}
        return shared, await first.run_async(shared)

    (shared, action), warnings = same_in_both(async_differential, app)
    assert (shared, action) == ({"ran": ["first"]}, None)
    assert warnings == ["Node won't run successors. Use AsyncFlow."]


def flaky_node(module, failures, calls, *, fallback=False):
    """An AsyncNode whose exec_async fails its first `failures` calls, logging into `calls`."""

    class Flaky(module.AsyncNode):
        async def prep_async(self, shared):
            return shared["input"]

        async def exec_async(self, prep_res):
            calls.append(("exec", prep_res))
            await anyio.sleep(0)
            if len(calls) <= failures:
                raise ValueError(f"failure {len(calls)}")
            return f"ok after {len(calls)}"

        async def post_async(self, shared, prep_res, exec_res):
            shared["result"] = exec_res
            return "done"

    if fallback:

        async def exec_fallback_async(self, prep_res, exc):
            calls.append(("fallback", prep_res, str(exc)))
            return "fell back"

        Flaky.exec_fallback_async = exec_fallback_async
    return Flaky


def test_exec_async_is_retried_until_it_succeeds(async_differential):
    async def app(module):
        calls = []
        node = flaky_node(module, 2, calls)(max_retries=3, wait=TINY_WAIT)
        shared = {"input": "in"}
        return shared, calls, await node.run_async(shared)

    (shared, calls, action), _ = same_in_both(async_differential, app)
    assert action == "done"
    assert shared["result"] == "ok after 3"
    assert calls == [("exec", "in")] * 3


def test_exhausted_retries_give_exec_fallback_asyncs_result_for_the_last_error(
    async_differential,
):
    async def app(module):
        calls = []
        node = flaky_node(module, 10, calls, fallback=True)(max_retries=2)
        shared = {"input": "in"}
        return shared, calls, await node.run_async(shared)

    (shared, calls, action), _ = same_in_both(async_differential, app)
    assert action == "done"
    assert shared["result"] == "fell back"
    assert calls == [("exec", "in"), ("exec", "in"), ("fallback", "in", "failure 2")]


def test_default_exec_fallback_async_reraises_the_last_attempts_exception(async_differential):
    async def app(module):
        errors = []

        class AlwaysFails(module.AsyncNode):
            async def exec_async(self, prep_res):
                errors.append(KeyError(f"attempt {len(errors)}"))
                raise errors[-1]

        try:
            await AlwaysFails(max_retries=3).run_async({})
        except KeyError as exc:
            return type(exc).__name__, str(exc), exc is errors[-1], len(errors)
        return "no error"

    (outcome, _) = same_in_both(async_differential, app)
    assert outcome == ("KeyError", "'attempt 2'", True, 3)


def test_async_batch_node_runs_items_one_by_one_in_order(async_differential):
    async def app(module):
        class Each(module.AsyncBatchNode):
            async def prep_async(self, shared):
                return shared["items"]

            async def exec_async(self, item):
                shared["log"].append(("start", item))
                await anyio.sleep(0)
                shared["log"].append(("end", item))
                return item * 10

            async def post_async(self, shared, prep_res, exec_res):
                shared["results"] = exec_res
                return "done"

        shared = {"items": [3, 1, 2], "log": []}
        return shared, await Each().run_async(shared)

    (shared, action), _ = same_in_both(async_differential, app)
    assert action == "done"
    assert shared["results"] == [30, 10, 20]
    assert shared["log"] == [
        ("start", 3),
        ("end", 3),
        ("start", 1),
        ("end", 1),
        ("start", 2),
        ("end", 2),
    ]


def test_async_parallel_batch_node_keeps_input_order_when_later_items_finish_first(
    async_differential,
):
    async def app(module):
        # item i finishes only after item i + 1 has: the last item finishes first
        finished = {}

        class Chain(module.AsyncParallelBatchNode):
            async def prep_async(self, shared):
                for item in shared["items"]:
                    finished[item] = anyio.Event()
                return shared["items"]

            async def exec_async(self, item):
                shared["started"].add(item)
                if item + 1 in finished:
                    await finished[item + 1].wait()
                shared["finish_order"].append(item)
                finished[item].set()
                return f"result {item}"

            async def post_async(self, shared, prep_res, exec_res):
                shared["results"] = exec_res
                return "done"

        shared = {"items": [0, 1, 2], "started": set(), "finish_order": []}
        with anyio.fail_after(5):  # a sequential run would wait forever
            return shared, await Chain().run_async(shared)

    (shared, action), _ = same_in_both(async_differential, app)
    assert action == "done"
    assert shared["finish_order"] == [2, 1, 0]
    assert shared["results"] == ["result 0", "result 1", "result 2"]


def script_steps(module):
    """An AsyncNode that acts on a script (by turn) and a sync Node, both logging their params."""

    class Decide(module.AsyncNode):
        def __init__(self, actions):
            super().__init__()
            self.actions = actions

        async def prep_async(self, shared):
            shared["log"].append(("decide", dict(self.params)))
            return shared["turn"]

        async def exec_async(self, turn):
            await anyio.sleep(0)
            return self.actions[min(turn, len(self.actions) - 1)]

        async def post_async(self, shared, prep_res, exec_res):
            shared["turn"] += 1
            return exec_res

    class Record(module.Node):
        def __init__(self, label, action=None):
            super().__init__()
            self.label = label
            self.action = action

        def prep(self, shared):
            shared["log"].append((self.label, dict(self.params)))

        def post(self, shared, prep_res, exec_res):
            return self.action

    return Decide, Record


def test_async_flow_runs_sync_and_async_nodes_through_branches_and_a_loop(async_differential):
    async def app(module):
        Decide, Record = script_steps(module)
        decide = Decide(["search", None, "answer"])
        search = Record("search")
        answer = Record("answer", action="finished")
        decide - "search" >> search
        decide >> search
        decide - "answer" >> answer
        search >> decide
        answer - "again" >> decide
        flow = module.AsyncFlow(start=decide)
        flow.set_params({"model": "m"})
        shared = {"log": [], "turn": 0}
        return shared, await flow.run_async(shared)

    (shared, action), warnings = same_in_both(async_differential, app)
    assert action == "finished"
    assert [label for label, _ in shared["log"]] == [
        "decide",
        "search",
        "decide",
        "search",
        "decide",
        "answer",
    ]
    assert all(params == {"model": "m"} for _, params in shared["log"])
    assert warnings == ["Flow ends: 'finished' not found in ['again']"]


def test_a_nested_async_flows_post_async_action_drives_the_outer_flow(async_differential):
    async def app(module):
        Decide, Record = script_steps(module)

        class Inner(module.AsyncFlow):
            async def prep_async(self, shared):
                shared["log"].append(("inner prep", dict(self.params)))
                return "inner prep result"

            async def post_async(self, shared, prep_res, exec_res):
                shared["log"].append(("inner post", prep_res, exec_res))
                return f"inner said {exec_res}"

        inner = Inner(start=Decide(["x"]))
        outer = module.AsyncFlow(start=inner)
        inner - "inner said x" >> Record("after", action="end")
        inner - "x" >> Record("wrong")
        outer.set_params({"p": 1})
        shared = {"log": [], "turn": 0}
        return shared, await outer.run_async(shared)

    (shared, action), warnings = same_in_both(async_differential, app)
    assert action == "end"
    assert shared["log"] == [
        ("inner prep", {"p": 1}),
        ("decide", {"p": 1}),
        ("inner post", "inner prep result", "x"),
        ("after", {"p": 1}),
    ]
    assert warnings == []


def test_an_async_flow_runs_a_sync_flow_inside_it_and_follows_its_action(async_differential):
    async def app(module):
        Decide, Record = script_steps(module)
        first = Record("sync 1")
        first >> Record("sync 2", action="out")
        sync_flow = module.Flow(start=first)
        decide = Decide(["go"])
        decide - "go" >> sync_flow
        sync_flow - "out" >> Record("last", action="end")
        flow = module.AsyncFlow(start=decide)
        flow.set_params({"p": 1})
        shared = {"log": [], "turn": 0}
        return shared, await flow.run_async(shared)

    (shared, action), _ = same_in_both(async_differential, app)
    assert action == "end"
    assert shared["log"] == [
        ("decide", {"p": 1}),
        ("sync 1", {"p": 1}),
        ("sync 2", {"p": 1}),
        ("last", {"p": 1}),
    ]


def batch_flow_app(flow_class_name, batches):
    """An app running a two-node graph in `flow_class_name` once per param set of `batches`."""

    async def app(module):
        class Visit(module.AsyncNode):
            def __init__(self, label):
                super().__init__()
                self.label = label

            async def prep_async(self, shared):
                await anyio.sleep(0)
                shared["log"].append((self.label, dict(self.params)))

        class Batches(getattr(module, flow_class_name)):
            async def prep_async(self, shared):
                return shared["batches"]

            async def post_async(self, shared, prep_res, exec_res):
                shared["post"] = (prep_res, exec_res)
                return "batched"

        first = Visit("first")
        first >> Visit("second")
        flow = Batches(start=first)
        flow.set_params({"model": "m", "k": "flow"})
        shared = {"log": [], "batches": batches}
        return shared, await flow.run_async(shared)

    return app


BATCHES = [{"k": "a"}, {"k": "b", "extra": 1}, {"model": "other"}]
EXPECTED_PARAMS = [
    {"model": "m", "k": "a"},
    {"model": "m", "k": "b", "extra": 1},
    {"model": "other", "k": "flow"},
]


def test_async_batch_flow_runs_the_graph_per_param_set_one_after_another(async_differential):
    app = batch_flow_app("AsyncBatchFlow", BATCHES)
    (shared, action), _ = same_in_both(async_differential, app)
    assert action == "batched"
    assert shared["log"] == [
        (label, params) for params in EXPECTED_PARAMS for label in ("first", "second")
    ]
    assert shared["post"] == (BATCHES, None)


def test_async_parallel_batch_flow_runs_the_graph_per_param_set(async_differential):
    app = batch_flow_app("AsyncParallelBatchFlow", BATCHES)
    (theirs, _), (ours, our_warnings) = async_differential(app)
    (their_shared, their_action), (shared, action) = theirs, ours
    assert our_warnings == []
    assert action == their_action == "batched"
    assert shared["post"] == their_shared["post"] == (BATCHES, None)
    # concurrent runs interleave in an order left to the scheduler: compare the visits
    visits = sorted(repr(visit) for visit in shared["log"])
    assert visits == sorted(repr(visit) for visit in their_shared["log"])
    assert visits == sorted(
        repr((label, params)) for params in EXPECTED_PARAMS for label in ("first", "second")
    )


@pytest.mark.parametrize("flow_class_name", ["AsyncBatchFlow", "AsyncParallelBatchFlow"])
@pytest.mark.parametrize("batches", [None, []])
def test_async_batch_flow_prep_returning_none_or_empty_runs_nothing(
    async_differential, flow_class_name, batches
):
    app = batch_flow_app(flow_class_name, batches)
    (shared, action), _ = same_in_both(async_differential, app)
    assert action == "batched"
    assert shared["log"] == []
    assert shared["post"] == ([], None)


ASYNC_ROOTS = {
    "AsyncNode": lambda module: module.AsyncNode(),
    "AsyncBatchNode": lambda module: module.AsyncBatchNode(),
    "AsyncParallelBatchNode": lambda module: module.AsyncParallelBatchNode(),
    "AsyncFlow around an AsyncNode": lambda module: module.AsyncFlow(start=module.AsyncNode()),
}


@pytest.mark.parametrize("make", ASYNC_ROOTS.values(), ids=ASYNC_ROOTS.keys())
@pytest.mark.parametrize("method", ["run", "_run"])
def test_the_sync_run_of_an_async_node_or_flow_raises_use_run_async(module, make, method):
    with pytest.raises(RuntimeError) as caught:
        getattr(make(module), method)({})
    assert str(caught.value) == "Use run_async."


def test_a_sync_flow_reaching_an_async_node_raises_use_run_async(differential):
    def app(module):
        class Record(module.Node):
            def prep(self, shared):
                shared["log"].append("sync")

        class Later(module.AsyncNode):
            async def prep_async(self, shared):
                shared["log"].append("async")

        first = Record()
        first >> Later()
        shared = {"log": []}
        try:
            module.Flow(start=first).run(shared)
        except RuntimeError as exc:
            return shared, str(exc)
        return shared, "no error"

    (theirs, their_warnings), (ours, our_warnings) = differential(app)
    assert ours == theirs == ({"log": ["sync"]}, "Use run_async.")
    assert our_warnings == their_warnings


# --- ours: retries, waits and drivers -------------------------------------------------------


@pytest.mark.anyio
async def test_cur_retry_holds_the_zero_based_attempt_in_exec_async():
    attempts = []

    class Flaky(AsyncNode):
        async def exec_async(self, prep_res):
            attempts.append(self.cur_retry)
            if self.cur_retry < 2:
                raise ValueError("not yet")
            return "ok"

        async def post_async(self, shared, prep_res, exec_res):
            shared["result"] = exec_res

    shared = {}
    await Flaky(max_retries=4).run_async(shared)
    assert attempts == [0, 1, 2]
    assert shared["result"] == "ok"


@pytest.mark.anyio
async def test_cur_retry_restarts_per_batch_item_and_stays_at_the_last_attempt_in_fallback():
    seen = []

    class PerItem(AsyncBatchNode):
        async def prep_async(self, shared):
            return ["a", "b"]

        async def exec_async(self, item):
            seen.append(("exec", item, self.cur_retry))
            raise ValueError(item)

        async def exec_fallback_async(self, item, exc):
            seen.append(("fallback", item, self.cur_retry))
            return item.upper()

        async def post_async(self, shared, prep_res, exec_res):
            shared["results"] = exec_res

    shared = {}
    await PerItem(max_retries=2).run_async(shared)
    assert shared["results"] == ["A", "B"]
    assert seen == [
        ("exec", "a", 0),
        ("exec", "a", 1),
        ("fallback", "a", 1),
        ("exec", "b", 0),
        ("exec", "b", 1),
        ("fallback", "b", 1),
    ]


@pytest.mark.anyio
async def test_wait_between_attempts_lets_other_tasks_run_meanwhile():
    failed = [anyio.Event(), anyio.Event()]
    progress = []
    seen_by_attempt = []

    class Flaky(AsyncNode):
        async def exec_async(self, prep_res):
            seen_by_attempt.append(list(progress))
            if self.cur_retry < 2:
                failed[self.cur_retry].set()  # then fail, with no checkpoint before the wait
                raise ValueError("not yet")
            return "ok"

    async def other_task():
        for attempt in range(2):
            await failed[attempt].wait()
            progress.append(f"ran after attempt {attempt}")

    async with anyio.create_task_group() as group:
        group.start_soon(other_task)
        await Flaky(max_retries=3, wait=TINY_WAIT).run_async({})
    assert seen_by_attempt == [
        [],
        ["ran after attempt 0"],
        ["ran after attempt 0", "ran after attempt 1"],
    ]


def make_small_app():
    """An AsyncFlow: async node -> AsyncParallelBatchNode -> sync node; returns (flow, shared)."""

    class Fetch(AsyncNode):
        async def exec_async(self, prep_res):
            await anyio.sleep(0)
            return [1, 2, 3]

        async def post_async(self, shared, prep_res, exec_res):
            shared["items"] = exec_res

    class Square(AsyncParallelBatchNode):
        async def prep_async(self, shared):
            return shared["items"]

        async def exec_async(self, item):
            await anyio.sleep(0)
            return item * item

        async def post_async(self, shared, prep_res, exec_res):
            shared["squares"] = exec_res

    class Total(Node):
        def prep(self, shared):
            return shared["squares"]

        def exec(self, squares):
            return sum(squares)

        def post(self, shared, prep_res, exec_res):
            shared["total"] = exec_res
            return "summed"

    fetch = Fetch()
    fetch >> Square() >> Total()
    return AsyncFlow(start=fetch), {}


def test_run_async_is_a_coroutine_for_an_asyncio_apps_run_until_complete():
    flow, shared = make_small_app()
    loop = asyncio.new_event_loop()
    try:
        coroutine = flow.run_async(shared)
        assert inspect.iscoroutine(coroutine)
        action = loop.run_until_complete(coroutine)
    finally:
        loop.close()
    assert action == "summed"
    assert shared == {"items": [1, 2, 3], "squares": [1, 4, 9], "total": 14}


def test_run_async_can_be_awaited_and_gathered_by_an_asyncio_app():
    async def main():
        (first, first_shared), (second, second_shared) = make_small_app(), make_small_app()
        actions = await asyncio.gather(
            first.run_async(first_shared), second.run_async(second_shared)
        )
        return actions, first_shared, second_shared

    actions, first_shared, second_shared = asyncio.run(main())
    assert actions == ["summed", "summed"]
    assert first_shared["total"] == second_shared["total"] == 14


def test_the_small_app_gives_the_same_result_on_trio():
    flow, shared = make_small_app()
    assert anyio.run(flow.run_async, shared, backend="trio") == "summed"
    assert shared["total"] == 14


@pytest.mark.parametrize(
    "make",
    [lambda: AsyncFlow(start=Node()), lambda: AsyncBatchFlow(start=Node())],
    ids=["AsyncFlow", "AsyncBatchFlow"],
)
def test_the_sync_run_of_an_async_flow_raises_before_any_node_runs(make):
    # PocketFlow 0.0.3 would run an AsyncFlow of sync nodes synchronously by accident; an
    # async flow is refused by the sync drivers whatever its nodes are
    flow = make()
    with pytest.raises(RuntimeError) as caught:
        flow.run({})
    assert str(caught.value) == "Use run_async."


# --- ours: concurrency ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_async_parallel_batch_node_runs_every_item_at_once():
    count = 4
    everyone_started = anyio.Event()
    started = []

    class Together(AsyncParallelBatchNode):
        async def prep_async(self, shared):
            return list(range(count))

        async def exec_async(self, item):
            started.append(item)
            if len(started) == count:  # only the last item to start lets everyone finish
                everyone_started.set()
            await everyone_started.wait()
            return item * item

        async def post_async(self, shared, prep_res, exec_res):
            shared["results"] = exec_res

    shared = {}
    with anyio.fail_after(5):  # one item at a time would wait forever
        await Together().run_async(shared)
    assert sorted(started) == [0, 1, 2, 3]
    assert shared["results"] == [0, 1, 4, 9]


@pytest.mark.anyio
async def test_async_parallel_batch_node_max_concurrency_bounds_items_in_flight():
    in_flight = [0]
    peak = [0]

    class Bounded(AsyncParallelBatchNode):
        async def prep_async(self, shared):
            return list(range(7))

        async def exec_async(self, item):
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
            for _ in range(1 + (7 - item) % 3):  # items take different numbers of turns
                await anyio.sleep(0)
            in_flight[0] -= 1
            return f"r{item}"

        async def post_async(self, shared, prep_res, exec_res):
            shared["results"] = exec_res

    shared = {}
    await Bounded(max_concurrency=2).run_async(shared)
    assert peak[0] == 2
    assert shared["results"] == [f"r{item}" for item in range(7)]


@pytest.mark.anyio
async def test_async_parallel_batch_flow_runs_every_param_set_at_once():
    count = 3
    everyone_started = anyio.Event()
    started = []

    class Meet(AsyncNode):
        async def prep_async(self, shared):
            started.append(self.params["k"])
            if len(started) == count:
                everyone_started.set()
            await everyone_started.wait()
            shared["done"].append(self.params["k"])

    class Sets(AsyncParallelBatchFlow):
        async def prep_async(self, shared):
            return [{"k": k} for k in range(count)]

        async def post_async(self, shared, prep_res, exec_res):
            shared["post"] = (prep_res, exec_res)
            return "met"

    shared = {"done": []}
    with anyio.fail_after(5):  # one param set at a time would wait forever
        action = await Sets(start=Meet()).run_async(shared)
    assert action == "met"
    assert sorted(shared["done"]) == [0, 1, 2]
    assert shared["post"] == ([{"k": 0}, {"k": 1}, {"k": 2}], None)


@pytest.mark.anyio
async def test_async_parallel_batch_flow_max_concurrency_bounds_param_sets_in_flight():
    in_flight = [0]
    peak = [0]

    class Enter(AsyncNode):
        async def prep_async(self, shared):
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
            await anyio.sleep(0)

    class Leave(AsyncNode):
        async def post_async(self, shared, prep_res, exec_res):
            await anyio.sleep(0)
            shared["left"].append(self.params["k"])
            in_flight[0] -= 1

    class Sets(AsyncParallelBatchFlow):
        async def prep_async(self, shared):
            return [{"k": k} for k in range(5)]

    enter = Enter()
    enter >> Leave()
    shared = {"left": []}
    await Sets(start=enter, max_concurrency=2).run_async(shared)
    assert peak[0] == 2
    assert sorted(shared["left"]) == [0, 1, 2, 3, 4]


# --- ours: mistakes are refused with a clear message ----------------------------------------


def plain_prep_async(self, shared):
    return "not awaited"


def plain_exec_async(self, prep_res):
    self.calls.append("exec_async")
    return "not awaited"


async def failing_exec_async(self, prep_res):
    raise ValueError("fails")


def plain_exec_fallback_async(self, prep_res, exc):
    self.calls.append("exec_fallback_async")
    return "not awaited"


def plain_post_async(self, shared, prep_res, exec_res):
    return "not awaited"


def sync_generator_exec_stream_async(self, prep_res):
    yield "chunk"


PLAIN_HOOKS = {
    "prep_async": (AsyncNode, {"prep_async": plain_prep_async}),
    "exec_async": (AsyncNode, {"exec_async": plain_exec_async}),
    "exec_fallback_async": (
        AsyncNode,
        {"exec_async": failing_exec_async, "exec_fallback_async": plain_exec_fallback_async},
    ),
    "post_async": (AsyncNode, {"post_async": plain_post_async}),
    "exec_stream_async": (
        AsyncStreamNode,
        {"exec_stream_async": sync_generator_exec_stream_async},
    ),
}


@pytest.mark.anyio
@pytest.mark.parametrize("hook", PLAIN_HOOKS)
async def test_a_hook_written_with_plain_def_raises_flow_error_naming_the_node(hook):
    base, hooks = PLAIN_HOOKS[hook]
    Plain = type("Plain", (base,), hooks)
    node = Plain(max_retries=3, name="Bad")
    node.calls = []
    flow = AsyncFlow(start=AsyncFlow(start=node, name="Inner"))
    with pytest.raises(FlowError) as caught:
        await flow.run_async({})
    message = str(caught.value)
    assert node_path_of(caught.value) == ("Inner", "Bad")
    assert "Inner > Bad" in message
    assert hook in message
    assert "async def" in message
    # a mistake in the code is not retried: a plain exec hook was called once, not three times
    assert node.calls == ([hook] if hook in ("exec_async", "exec_fallback_async") else [])


@pytest.mark.anyio
async def test_a_flows_own_hook_written_with_plain_def_raises_flow_error_naming_the_flow():
    class PlainPost(AsyncFlow):
        def post_async(self, shared, prep_res, exec_res):
            return exec_res

    flow = AsyncFlow(start=PlainPost(start=AsyncNode(), name="Inner"))
    with pytest.raises(FlowError, match="async def") as caught:
        await flow.run_async({})
    assert node_path_of(caught.value) == ("Inner",)
    assert "post_async" in str(caught.value)


def test_in_thread_is_refused_for_an_async_node():
    with pytest.raises(TypeError, match="in_thread"):
        AsyncNode(in_thread=True)
    with pytest.raises(TypeError, match="in_thread"):
        AsyncBatchNode(in_thread=True)
    assert Node(in_thread=True).in_thread is True


@pytest.mark.parametrize("max_concurrency", [0, -1])
def test_max_concurrency_below_one_raises_value_error(max_concurrency):
    with pytest.raises(ValueError, match="max_concurrency"):
        AsyncParallelBatchNode(max_concurrency=max_concurrency)
    with pytest.raises(ValueError, match="max_concurrency"):
        AsyncParallelBatchFlow(start=AsyncNode(), max_concurrency=max_concurrency)
    assert AsyncParallelBatchNode(max_concurrency=1).max_concurrency == 1


# --- AsyncStreamNode ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_yield_return_hands_its_value_to_post_async_and_ends_the_generator():
    log = []

    class Speak(AsyncStreamNode):
        async def prep_async(self, shared):
            return shared["words"]

        async def exec_stream_async(self, words):
            try:
                text = ""
                for word in words:
                    await anyio.sleep(0)
                    text += word
                    yield word
                yield Return(text)
                log.append("after the Return")
                yield "never streamed"
            finally:
                log.append("finally")

        async def post_async(self, shared, prep_res, exec_res):
            log.append(("post", exec_res))
            return "spoken"

    chunks = []
    action = await Speak(name="Speak").run_async({"words": ["a", "b"]}, on_chunk=chunks.append)
    assert action == "spoken"
    assert [(chunk.node, chunk.data) for chunk in chunks] == [("Speak", "a"), ("Speak", "b")]
    assert log == ["finally", ("post", "ab")]


@pytest.mark.anyio
async def test_an_async_stream_without_return_gives_none_to_post_async():
    class NoReturn(AsyncStreamNode):
        async def exec_stream_async(self, prep_res):
            yield 1
            yield 2

        async def post_async(self, shared, prep_res, exec_res):
            shared["exec_res"] = exec_res

    chunks = []
    shared = {"exec_res": "unset"}
    await NoReturn().run_async(shared, on_chunk=chunks.append)
    assert [chunk.data for chunk in chunks] == [1, 2]
    assert shared["exec_res"] is None


@pytest.mark.anyio
async def test_an_async_stream_node_with_only_exec_async_works_like_an_async_node():
    class Plain(AsyncStreamNode):
        async def exec_async(self, prep_res):
            await anyio.sleep(0)
            return prep_res * 2

        async def prep_async(self, shared):
            return shared["n"]

        async def post_async(self, shared, prep_res, exec_res):
            shared["result"] = exec_res
            return "done"

    chunks = []
    shared = {"n": 21}
    assert await Plain().run_async(shared, on_chunk=chunks.append) == "done"
    assert shared["result"] == 42
    assert chunks == []


@pytest.mark.anyio
async def test_async_stream_batch_node_streams_items_one_by_one_and_post_gets_the_list():
    class PerItem(AsyncStreamBatchNode):
        async def prep_async(self, shared):
            return ["x", "y"]

        async def exec_stream_async(self, item):
            yield f"{item} start"
            await anyio.sleep(0)
            yield f"{item} end"
            yield Return(item.upper())

        async def post_async(self, shared, prep_res, exec_res):
            shared["results"] = exec_res

    chunks = []
    shared = {}
    await PerItem().run_async(shared, on_chunk=chunks.append)
    assert [(chunk.item, chunk.data) for chunk in chunks] == [
        (0, "x start"),
        (0, "x end"),
        (1, "y start"),
        (1, "y end"),
    ]
    assert shared["results"] == ["X", "Y"]


@pytest.mark.anyio
async def test_a_retried_async_stream_nodes_chunks_carry_their_attempt():
    class Flaky(AsyncStreamNode):
        async def exec_stream_async(self, prep_res):
            yield f"try {self.cur_retry}"
            if self.cur_retry == 0:
                raise ValueError("cut off")
            yield Return("complete")

        async def post_async(self, shared, prep_res, exec_res):
            shared["result"] = exec_res

    chunks = []
    shared = {}
    await Flaky(max_retries=2).run_async(shared, on_chunk=chunks.append)
    assert [(chunk.attempt, chunk.data) for chunk in chunks] == [(0, "try 0"), (1, "try 1")]
    assert shared["result"] == "complete"


@pytest.mark.anyio
async def test_exec_fallback_async_may_stream_and_yield_return():
    class Fallback(AsyncStreamNode):
        async def exec_stream_async(self, prep_res):
            yield "attempt"
            raise ValueError("down")

        async def exec_fallback_async(self, prep_res, exc):
            yield f"fallback after {exc}"
            yield Return("from fallback")

        async def post_async(self, shared, prep_res, exec_res):
            shared["result"] = exec_res

    chunks = []
    shared = {}
    await Fallback(max_retries=2).run_async(shared, on_chunk=chunks.append)
    assert [(chunk.attempt, chunk.data) for chunk in chunks] == [
        (0, "attempt"),
        (1, "attempt"),
        (2, "fallback after down"),  # the fallback's chunks come after the last attempt's
    ]
    assert shared["result"] == "from fallback"


# --- errors ---------------------------------------------------------------------------------


class Boom(Exception):
    pass


class FailingExec(AsyncNode):
    async def exec_async(self, prep_res):
        await anyio.sleep(0)
        raise Boom("in exec_async")


class FailingBatch(AsyncBatchNode):
    async def prep_async(self, shared):
        return [1]

    async def exec_async(self, item):
        raise Boom("in exec_async")


class FailingStream(AsyncStreamNode):
    async def exec_stream_async(self, prep_res):
        yield "before"
        raise Boom("in exec_stream_async")


@pytest.mark.anyio
@pytest.mark.parametrize("failing", [FailingExec, FailingBatch, FailingStream])
async def test_an_exception_in_an_async_node_keeps_its_type_and_names_the_node_path(failing):
    node = failing(max_retries=2, name="Work")
    flow = AsyncFlow(start=AsyncFlow(start=AsyncFlow(start=node, name="Inner"), name="Outer"))
    with pytest.raises(Boom) as caught:
        await flow.run_async({}, on_chunk=lambda chunk: None)
    assert node_path_of(caught.value) == ("Outer", "Inner", "Work")
    assert caught.value.__notes__ == ["raised in node Outer > Inner > Work"]


@pytest.mark.anyio
async def test_a_failing_parallel_item_names_its_index_and_cancels_the_other_items():
    count = 4
    everyone_started = anyio.Event()
    started, cleaned_up, finished = [], [], []

    class OneFails(AsyncParallelBatchNode):
        async def prep_async(self, shared):
            return list(range(count))

        async def exec_async(self, item):
            started.append(item)
            if len(started) == count:
                everyone_started.set()
            try:
                await everyone_started.wait()
                if item == 2:
                    raise Boom("item two failed")
                await anyio.sleep_forever()
                finished.append(item)
            finally:
                cleaned_up.append(item)

    flow = AsyncFlow(start=OneFails(name="Fan"))
    with anyio.fail_after(5), pytest.raises(Boom) as caught:
        await flow.run_async({})
    error = caught.value
    assert error.batch_item == 2
    assert node_path_of(error) == ("Fan",)
    assert any("item 2" in note for note in error.__notes__)
    assert sorted(cleaned_up) == [0, 1, 2, 3]
    assert finished == []


@pytest.mark.anyio
async def test_a_failing_parallel_param_set_is_named_and_cancels_the_other_sets():
    count = 3
    everyone_started = anyio.Event()
    started, cleaned_up, finished = [], [], []

    class Work(AsyncNode):
        async def exec_async(self, prep_res):
            key = self.params["k"]
            started.append(key)
            if len(started) == count:
                everyone_started.set()
            try:
                await everyone_started.wait()
                if key == "b":
                    raise Boom("set b failed")
                await anyio.sleep_forever()
                finished.append(key)
            finally:
                cleaned_up.append(key)

    class Sets(AsyncParallelBatchFlow):
        async def prep_async(self, shared):
            return [{"k": "a"}, {"k": "b"}, {"k": "c"}]

    flow = AsyncFlow(start=Sets(start=Work(name="Work"), name="Sets"))
    with anyio.fail_after(5), pytest.raises(Boom) as caught:
        await flow.run_async({})
    error = caught.value
    assert node_path_of(error) == ("Sets", "Work")
    assert any("param set 1 {'k': 'b'}" in note for note in error.__notes__)
    assert sorted(cleaned_up) == ["a", "b", "c"]
    assert finished == []
