"""The async driver (async_driver.py): the walk's Requests carried out on anyio.

Every test runs on asyncio and on trio. The rules: the async driver streams what the sync
driver streams, live; it reports the final action; parallel batches interleave, keep order,
stay bounded and fail as one item; every way of stopping closes what runs, leaves no task and
no busy worker thread, and the flow runs again; blocking sync nodes go to worker threads; long
loops and deep nesting run in constant stack. No timing is asserted: where a test waits for a
thread, it counts what the event loop did meanwhile.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import warnings
from contextlib import contextmanager
from typing import Any, Dict, List, Optional, Tuple

import anyio
import pytest
import trio
from helpers import Built, any_graphs, fresh_shared, limits, tags, timeless
from hypothesis import HealthCheck, given, settings

import pocketflow_stream
from pocketflow_stream import (
    AsyncBatchFlow,
    AsyncFlow,
    AsyncNode,
    AsyncParallelBatchFlow,
    AsyncParallelBatchNode,
    AsyncStreamBatchNode,
    AsyncStreamFlow,
    AsyncStreamNode,
    Chunk,
    Flow,
    FlowError,
    FlowFinished,
    Node,
    NodeFinished,
    NodeStarted,
    Retry,
    Return,
    StreamNode,
)

pytestmark = pytest.mark.anyio


# --- helpers -------------------------------------------------------------------------------


def live_tasks() -> set:
    """Every task alive on the running event loop, asyncio's or trio's."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # trio: walk the task tree from the root
        found = set()
        pending = [trio.lowlevel.current_root_task()]
        while pending:
            task = pending.pop()
            found.add(task)
            for nursery in task.child_nurseries:
                pending.extend(nursery.child_tasks)
        return found
    return set(asyncio.all_tasks())


def threads_running_this_files_code() -> List[int]:
    """Threads other than this one that are executing code of this file (a node's hook)."""
    here = threading.get_ident()
    busy = []
    for ident, frame in sys._current_frames().items():
        while ident != here and frame is not None:
            if frame.f_code.co_filename == __file__:
                busy.append(ident)
                break
            frame = frame.f_back
    return busy


@contextmanager
def lowered_recursion_limit(limit: int = 200):
    """Run a block with a small recursion limit, proving the driver's stack does not grow."""
    saved = sys.getrecursionlimit()
    sys.setrecursionlimit(limit)
    try:
        yield
    finally:
        sys.setrecursionlimit(saved)


class Barrier:
    """`parties` tasks wait in `wait()` until all of them have arrived."""

    def __init__(self, parties: int) -> None:
        self.parties = parties
        self.arrived = 0
        self.everyone = anyio.Event()

    async def wait(self) -> None:
        self.arrived += 1
        if self.arrived == self.parties:
            self.everyone.set()
        with anyio.fail_after(5):  # a driver that runs items one by one fails, not hangs
            await self.everyone.wait()


class Ticker:
    """A task that counts its turns on the event loop: if it ticks, the loop is not blocked."""

    def __init__(self) -> None:
        self.ticks = 0

    async def run(self) -> None:
        while True:
            self.ticks += 1
            await anyio.sleep(0.001)


async def stream_items(flow: Any, shared: Any, **options: Any) -> Tuple[List[Any], Any]:
    """Everything `run_stream_async` yields, and the stream's final action."""
    items = []
    async with flow.run_stream_async(shared, **options) as stream:
        async for item in stream:
            items.append(item)
    assert stream.finished
    return items, stream.action


# --- the same items as the sync driver -----------------------------------------------------

OUTER = "StreamFlow"  # the name of the sync root flow of a Built graph, one level down here


def lifted(item: Any) -> Any:
    """A sync stream's item as it looks one level down, inside the outer AsyncStreamFlow."""
    if type(item) is Chunk:
        node, path, data, index, attempt, batch = tags(item)
        return (node, (OUTER, *path), data, index, attempt, batch)
    described = timeless(item)
    described["path"] = [OUTER, *described["path"]]
    return described


def comparable(item: Any) -> Any:
    return tags(item) if type(item) is Chunk else timeless(item)


async def assert_async_stream_equals_sync_stream(spec: Dict[str, Any], limit: int) -> List[Any]:
    """Stream a random graph's sync flow inside an AsyncStreamFlow; return what it yielded."""
    expected = Built(pocketflow_stream, spec)
    expected_shared = fresh_shared(limit)
    expected_items: List[Any] = []
    with warnings.catch_warnings(record=True) as expected_warnings:
        warnings.simplefilter("always")
        stream = expected.flow.run_stream(expected_shared, events=True)
        while True:
            try:
                expected_items.append(next(stream))
            except StopIteration as stop:
                expected_action = stop.value
                break

    built = Built(pocketflow_stream, spec)
    shared = fresh_shared(limit)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outer = AsyncStreamFlow(start=built.flow)
        outer.set_params(built.flow.params)  # as a flow does, it gives its params to the inner one
        items, action = await stream_items(outer, shared, events=True)

    assert action == expected_action
    assert shared == expected_shared
    assert built.production == expected.production
    assert built.tracker == expected.tracker  # generators opened and closed alike
    assert [str(w.message) for w in caught] == [str(w.message) for w in expected_warnings]
    # the outer flow adds its own start, finish and FlowFinished around the same items
    assert isinstance(items[0], NodeStarted) and items[0].path == (OUTER,)
    assert [comparable(item) for item in items[1:-2]] == [
        lifted(item) for item in expected_items[:-1]
    ]
    assert isinstance(items[-2], NodeFinished) and items[-2].path == (OUTER,)
    assert isinstance(items[-1], FlowFinished) and items[-1].action == expected_action
    assert items[-2].action == expected_items[-1].action == expected_action
    return items


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,  # anyio_backend: set once per test
    ],
)
@given(spec=any_graphs(), limit=limits)
async def test_a_sync_graph_streamed_by_the_async_driver_gives_the_sync_drivers_items(spec, limit):
    await assert_async_stream_equals_sync_stream(spec, limit)


def leaf(kind: str, script: List[Optional[str]], **spec: Any) -> Dict[str, Any]:
    return {"kind": kind, "script": script, "failure": "none", **spec}


EVERY_KIND = {
    "nodes": [
        leaf("stream", ["default"], failure="first", chunks=2),  # retried, with events
        leaf("stream_batch", ["default"], items=2, chunks=2),
        {
            "kind": "batch_flow",
            "script": ["default"],
            "batches": 2,
            "graph": {
                "nodes": [
                    {
                        "kind": "flow",
                        "script": [None],
                        "graph": {
                            "nodes": [leaf("stream", [None], failure="always", chunks=1)],
                            "wiring": {},
                        },
                    }
                ],
                "wiring": {},
            },
        },
        leaf("batch", ["a"], items=2),
    ],
    "wiring": {(0, "default"): 1, (1, "default"): 2, (2, "default"): 3, (3, "a"): 0},
}


async def test_stream_nodes_batches_nested_flows_and_retries_stream_as_under_the_sync_driver():
    items = await assert_async_stream_equals_sync_stream(EVERY_KIND, limit=9)
    chunks = [item for item in items if type(item) is Chunk]
    assert any(isinstance(item, Retry) for item in items)
    assert {chunk.attempt for chunk in chunks} == {0, 1, 2}  # 2: the fallback's chunks
    assert {chunk.item for chunk in chunks} == {None, 0, 1}
    assert {chunk.batch["i"] for chunk in chunks if chunk.batch is not None} == {0, 1}
    assert max(len(chunk.path) for chunk in chunks) == 4  # outer, batch flow, flow, node


# --- live ----------------------------------------------------------------------------------


class AsyncCounter(AsyncStreamNode):
    async def exec_stream_async(self, prep_res):
        for index in range(3):
            self.params["observed"].append(len(self.params["seen"]))
            yield index
            await anyio.sleep(0)
        yield Return("counted")

    async def post_async(self, shared, prep_res, exec_res):
        shared["result"] = exec_res


class SyncCounter(StreamNode):
    def exec_stream(self, prep_res):
        for index in range(3):
            self.params["observed"].append(len(self.params["seen"]))
            yield index
        return "counted"

    def post(self, shared, prep_res, exec_res):
        shared["result"] = exec_res


@pytest.mark.parametrize(
    "make",
    [AsyncCounter, SyncCounter, lambda: SyncCounter(in_thread=True)],
    ids=["async", "sync", "sync in_thread"],
)
async def test_each_chunk_reaches_the_consumer_before_the_node_makes_the_next(make):
    seen: List[Any] = []
    observed: List[int] = []
    flow = AsyncStreamFlow(start=make())
    flow.set_params({"seen": seen, "observed": observed})
    shared: Dict[str, Any] = {}
    async with flow.run_stream_async(shared) as stream:
        async for chunk in stream:
            seen.append(chunk.data)
    assert seen == [0, 1, 2]
    assert observed == [0, 1, 2]  # before making chunk i, the consumer had seen i chunks
    assert shared == {"result": "counted"}


class AsyncSay(AsyncStreamNode):
    async def exec_stream_async(self, prep_res):
        yield f"{self.name} {self.params.get('round')}"


class SyncSay(StreamNode):
    def exec_stream(self, prep_res):
        yield f"{self.name} {self.params.get('round')}"


class SayItems(AsyncStreamBatchNode):
    async def prep_async(self, shared):
        return ["x", "y"]

    async def exec_stream_async(self, item):
        yield item


class Rounds(AsyncBatchFlow):
    async def prep_async(self, shared):
        return [{"round": 1}, {"round": 2}]


async def test_nested_async_and_sync_flows_tag_chunks_with_the_full_path_and_batch():
    first = AsyncSay(name="First")
    first >> SyncSay(name="Second") >> SayItems(name="Items")
    batches = Rounds(start=first, name="Batches")
    middle = Flow(start=batches, name="Middle")
    outer = AsyncFlow(start=middle, name="Outer")
    items, _ = await stream_items(AsyncStreamFlow(start=outer), {})
    inner = ("Outer", "Middle", "Batches")
    assert [(c.path, c.data, c.item, dict(c.batch)) for c in items] == [
        (inner + ("First",), "First 1", None, {"round": 1}),
        (inner + ("Second",), "Second 1", None, {"round": 1}),
        (inner + ("Items",), "x", 0, {"round": 1}),
        (inner + ("Items",), "y", 1, {"round": 1}),
        (inner + ("First",), "First 2", None, {"round": 2}),
        (inner + ("Second",), "Second 2", None, {"round": 2}),
        (inner + ("Items",), "x", 0, {"round": 2}),
        (inner + ("Items",), "y", 1, {"round": 2}),
    ]


# --- the final action, the push driver, filtering ------------------------------------------


class Speaker(AsyncStreamNode):
    async def exec_stream_async(self, prep_res):
        for word in ("a", "b"):
            self.params["log"].append(f"{self.name} yields {word}")
            yield word
        yield Return(2)

    async def post_async(self, shared, prep_res, exec_res):
        self.params["log"].append(f"{self.name} post")
        shared[self.name] = exec_res
        return "spoken"


async def test_the_stream_gives_the_final_action_once_exhausted_and_not_before():
    flow = AsyncStreamFlow(start=Speaker(name="Speaker"))
    flow.set_params({"log": []})
    async with flow.run_stream_async({}) as stream:
        async for _chunk in stream:
            assert (stream.action, stream.finished) == (None, False)
    assert (stream.action, stream.finished) == ("spoken", True)

    async with flow.run_stream_async({}) as stopped:
        async for _chunk in stopped:
            break
    assert (stopped.action, stopped.finished) == (None, False)


@pytest.mark.parametrize("callbacks", ["sync", "async"])
async def test_run_async_hands_each_chunk_and_event_to_the_callbacks_before_going_on(callbacks):
    log: List[str] = []
    pushed: List[Any] = []

    def on_item(item):
        pushed.append(item)
        log.append(f"got {item.data}" if type(item) is Chunk else f"got {item.type}")

    async def on_item_async(item):
        await anyio.sleep(0)  # the run waits for the callback, awaits included
        on_item(item)

    first = Speaker(name="First")
    first - "spoken" >> Speaker(name="Second")
    flow = AsyncFlow(start=first)
    flow.set_params({"log": log})
    callback = on_item if callbacks == "sync" else on_item_async
    shared: Dict[str, Any] = {}
    assert await flow.run_async(shared, on_chunk=callback, on_event=callback) == "spoken"
    assert shared == {"First": 2, "Second": 2}
    assert log == [
        "got node_started",
        "First yields a",
        "got a",
        "First yields b",
        "got b",
        "First post",
        "got node_finished",
        "got node_started",
        "Second yields a",
        "got a",
        "Second yields b",
        "got b",
        "Second post",
        "got node_finished",
        "got flow_finished",
    ]
    streamed, _ = await stream_items(flow, {}, events=True)
    assert [comparable(item) for item in pushed] == [comparable(item) for item in streamed]


class Fetch(AsyncStreamNode):
    async def exec_stream_async(self, prep_res):
        self.params["log"].append(self.name)
        yield self.name


class Search(StreamNode):
    def exec_stream(self, prep_res):
        self.params["log"].append(self.name)
        yield self.name


def nested_speakers(log: List[str]) -> AsyncFlow:
    """Plan, then an async flow 'Tools' holding Search -> a sync flow 'Deeper' holding Fetch."""
    plan = Fetch(name="Plan")
    search = Search(name="Search")
    search >> Flow(start=Fetch(name="Fetch"), name="Deeper")
    plan >> AsyncFlow(start=search, name="Tools")
    flow = AsyncFlow(start=plan, name="Agent")
    flow.set_params({"log": log})
    return flow


@pytest.mark.parametrize(
    "nodes, expected",
    [
        (["Plan"], ["Plan"]),
        (["Fetch", "Plan"], ["Plan", "Fetch"]),
        (["Tools"], ["Search", "Fetch"]),
        (["Deeper"], ["Fetch"]),
        ("Search", ["Search"]),
        (["Agent"], ["Plan", "Search", "Fetch"]),
        ([], []),
    ],
)
async def test_nodes_filters_chunks_to_those_nodes_or_to_nodes_inside_those_flows(nodes, expected):
    pushed_log: List[str] = []
    pushed: List[Chunk] = []
    await nested_speakers(pushed_log).run_async({}, on_chunk=pushed.append, nodes=nodes)
    pulled_log: List[str] = []
    pulled, _ = await stream_items(nested_speakers(pulled_log), {}, nodes=nodes)
    assert [chunk.node for chunk in pushed] == expected
    assert [chunk.node for chunk in pulled] == expected
    # filtering chooses what is seen, not what runs
    assert pushed_log == pulled_log == ["Plan", "Search", "Fetch"]


# --- parallel batches ----------------------------------------------------------------------


class Interleaved(AsyncParallelBatchNode):
    """Each item yields 'start', waits until every item has started, then yields 'end'."""

    async def prep_async(self, shared):
        return [0, 1, 2]

    async def exec_stream_async(self, item):
        yield ("start", item)
        await self.params["barrier"].wait()
        yield ("end", item)
        yield Return(item * 10)

    async def post_async(self, shared, prep_res, exec_res):
        shared["results"] = exec_res
        return "gathered"


async def test_a_parallel_batch_node_interleaves_its_items_chunks_tagged_with_the_item():
    flow = AsyncStreamFlow(start=Interleaved())
    flow.set_params({"barrier": Barrier(3)})
    shared: Dict[str, Any] = {}
    chunks, action = await stream_items(flow, shared)
    # the only possible order: every item's first chunk before any item's last
    assert [chunk.data[0] for chunk in chunks] == ["start"] * 3 + ["end"] * 3
    assert sorted(chunk.data for chunk in chunks) == [
        ("end", 0),
        ("end", 1),
        ("end", 2),
        ("start", 0),
        ("start", 1),
        ("start", 2),
    ]
    assert all(chunk.item == chunk.data[1] for chunk in chunks)
    assert all(chunk.path == ("Interleaved",) for chunk in chunks)
    assert (action, shared) == ("gathered", {"results": [0, 10, 20]})


class Visit(AsyncStreamNode):
    async def exec_stream_async(self, prep_res):
        yield ("arrived", self.params["city"], self.params["trip"])
        await self.params["barrier"].wait()
        yield ("left", self.params["city"], self.params["trip"])


class Cities(AsyncParallelBatchFlow):
    async def prep_async(self, shared):
        return [{"city": "Oslo"}, {"city": "Lima"}, {"city": "Pune"}]

    async def post_async(self, shared, prep_res, exec_res):
        shared["post"] = (len(prep_res), exec_res)
        return "toured"


async def test_a_parallel_batch_flow_interleaves_its_runs_chunks_tagged_with_their_params():
    flow = AsyncStreamFlow(start=Cities(start=Visit(), name="Cities"))
    flow.set_params({"barrier": Barrier(3), "trip": "T1"})
    shared: Dict[str, Any] = {}
    chunks, action = await stream_items(flow, shared)
    assert [chunk.data[0] for chunk in chunks] == ["arrived"] * 3 + ["left"] * 3
    assert all(dict(chunk.batch) == {"city": chunk.data[1]} for chunk in chunks)
    assert all(chunk.data[2] == "T1" for chunk in chunks)  # {**flow.params, **params}
    assert {chunk.data[1] for chunk in chunks} == {"Oslo", "Lima", "Pune"}
    assert all(chunk.path == ("Cities", "Visit") for chunk in chunks)
    assert (action, shared) == ("toured", {"post": (3, None)})


class Counted(AsyncNode):
    """Counts how many of its kind run at once."""

    async def exec_async(self, prep_res):
        meter = self.params["meter"]
        meter["running"] += 1
        meter["peak"] = max(meter["peak"], meter["running"])
        for _ in range(5):
            await anyio.sleep(0)
        meter["running"] -= 1
        meter["done"] += 1


class CountedItems(AsyncParallelBatchNode):
    async def prep_async(self, shared):
        return list(range(6))

    exec_async = Counted.exec_async


class SixRuns(AsyncParallelBatchFlow):
    async def prep_async(self, shared):
        return [{"run": index} for index in range(6)]


@pytest.mark.parametrize("limit", [1, 2, 4])
@pytest.mark.parametrize("where", ["node", "flow"])
async def test_max_concurrency_bounds_how_many_items_run_at_once(where, limit):
    if where == "node":
        parallel = CountedItems(max_concurrency=limit)
    else:
        parallel = SixRuns(start=Counted(), max_concurrency=limit)
    flow = AsyncFlow(start=parallel)
    meter = {"running": 0, "peak": 0, "done": 0}
    flow.set_params({"meter": meter})
    await flow.run_async({})
    assert meter == {"running": 0, "peak": limit, "done": 6}


class FinishBackwards(AsyncParallelBatchNode):
    """Item i finishes only after item i + 1 has: they finish in reverse order."""

    async def prep_async(self, shared):
        self.params["done"] = [anyio.Event() for _ in range(4)]
        return ["a", "b", "c", "d"]

    async def exec_async(self, item):
        done = self.params["done"]
        index = "abcd".index(item)
        if index + 1 < len(done):
            await done[index + 1].wait()
        self.params["finished"].append(item)
        done[index].set()
        return item.upper()

    async def post_async(self, shared, prep_res, exec_res):
        shared["results"] = exec_res


async def test_parallel_results_keep_input_order_whatever_order_items_finish_in():
    flow = AsyncFlow(start=FinishBackwards())
    finished: List[str] = []
    flow.set_params({"finished": finished})
    shared: Dict[str, Any] = {}
    await flow.run_async(shared)
    assert finished == ["d", "c", "b", "a"]
    assert shared == {"results": ["A", "B", "C", "D"]}


class ItemBroke(Exception):
    pass


class OneFails(AsyncParallelBatchNode):
    """Item 1 fails once every item has yielded its first chunk; the others wait meanwhile."""

    async def prep_async(self, shared):
        return [0, 1, 2]

    async def exec_stream_async(self, item):
        log = self.params["log"]
        log.append(f"item {item} open")
        try:
            yield ("first", item)
            await self.params["barrier"].wait()
            if item == 1:
                raise ItemBroke("item 1 broke")
            await anyio.sleep(5)  # cancelled long before
            log.append(f"item {item} resumed")
            yield ("after", item)
        finally:
            log.append(f"item {item} finally")

    async def post_async(self, shared, prep_res, exec_res):
        self.params["log"].append("post")


class Outro(AsyncNode):
    async def prep_async(self, shared):
        self.params["log"].append("Outro ran")


@pytest.mark.parametrize("driver", ["run_stream_async", "run_async"])
async def test_a_failing_item_cancels_its_siblings_and_reaches_the_consumer_as_itself(driver):
    log: List[str] = []
    failing = OneFails()
    failing >> Outro()
    flow = AsyncStreamFlow(start=failing)
    flow.set_params({"log": log, "barrier": Barrier(3)})
    before = live_tasks()
    received: List[Any] = []
    with pytest.raises(ItemBroke) as caught:
        if driver == "run_async":
            await flow.run_async({}, on_chunk=lambda chunk: received.append(chunk.data))
        else:
            async with flow.run_stream_async({}) as stream:
                async for chunk in stream:
                    received.append(chunk.data)
    error = caught.value
    assert str(error) == "item 1 broke"
    assert error.batch_item == 1
    assert error.node_path == ("OneFails",)
    assert any("item 1 of the parallel batch OneFails" in note for note in error.__notes__)
    assert sorted(received) == [("first", 0), ("first", 1), ("first", 2)]
    assert sorted(log) == [f"item {i} {what}" for i in range(3) for what in ("finally", "open")]
    assert live_tasks() == before


class Flood(AsyncParallelBatchNode):
    """Three items of 100 chunks each, counting what they produce."""

    async def prep_async(self, shared):
        return [0, 1, 2]

    async def exec_stream_async(self, item):
        meter = self.params["meter"]
        for index in range(100):
            meter["produced"] += 1
            yield (item, index)
        yield Return(item)


async def test_a_slow_consumer_makes_parallel_producers_wait_on_a_bounded_buffer():
    buffer, items = 2, 3
    meter = {"produced": 0}
    flow = AsyncStreamFlow(start=Flood())
    flow.set_params({"meter": meter})
    consumed = 0
    leads = []
    resume = anyio.Event()

    async def measure_while_the_consumer_waits():
        await anyio.wait_all_tasks_blocked()  # producers have gone as far as they can
        leads.append(meter["produced"] - consumed)
        resume.set()

    async with anyio.create_task_group() as group:
        async with flow.run_stream_async({}, buffer=buffer) as stream:
            async for _chunk in stream:
                consumed += 1
                leads.append(meter["produced"] - consumed)
                if consumed == 10:  # stop reading for a while
                    group.start_soon(measure_while_the_consumer_waits)
                    await resume.wait()
    assert consumed == meter["produced"] == 300
    assert max(leads) <= buffer + items + 1  # a small constant, not the 300 made in all
    assert leads[10] >= buffer  # while the consumer waited, producers did fill the buffer


async def test_a_bare_async_for_over_a_parallel_batch_says_to_use_async_with():
    flow = AsyncStreamFlow(start=Interleaved())
    flow.set_params({"barrier": Barrier(3)})
    stream = flow.run_stream_async({})
    with pytest.raises(FlowError, match="async with flow.run_stream_async"):
        async for _chunk in stream:
            pass
    assert not stream.finished


async def test_a_bare_async_for_works_over_a_flow_without_parallel_parts():
    flow = AsyncStreamFlow(start=Speaker(name="Speaker"))
    log: List[str] = []
    flow.set_params({"log": log})
    stream = flow.run_stream_async({})
    received = [chunk.data async for chunk in stream]
    assert received == ["a", "b"]
    assert (stream.action, stream.finished) == ("spoken", True)
    assert log == ["Speaker yields a", "Speaker yields b", "Speaker post"]


# --- cancellation and stopping -------------------------------------------------------------


class Probe:
    """What the nodes of a stoppable flow record, and how a stopped run makes them wait.

    With `hang`, a node blocks after its "ready" chunk(s): an async node awaits until stopped; a
    node in a worker thread tells the loop it is blocked, then waits until the stop has been
    asked for (`release`) and finishes its step, which the stop must wait for. A sync node
    cannot block the loop: there the consumer is the one awaiting, with the node at its yield.
    """

    def __init__(self, hang: bool, ready: int = 0, consumer_blocks: bool = False) -> None:
        self.hang = hang
        self.ready = ready  # how many "ready" chunks the section yields before it blocks
        self.consumer_blocks = consumer_blocks
        self.log: List[str] = []
        self.blocked = anyio.Event()  # everything that will block is blocked
        self.waiting = 0
        self.release = threading.Event()
        self.resume = anyio.Event()

    async def block(self, parties: int = 1) -> None:
        self.waiting += 1
        if self.waiting == parties:
            self.blocked.set()
        with anyio.move_on_after(5):  # stopped long before; a run the stop missed resumes
            await self.resume.wait()

    async def let_go(self) -> None:
        """After a stop: let whatever it failed to stop go on (an awaiting node, a worker
        thread's step), then wait until that had every chance to run: no thread runs this
        file's code and every other task on the loop waits."""
        self.resume.set()
        self.release.set()
        with anyio.fail_after(5):
            await anyio.wait_all_tasks_blocked()
            while threads_running_this_files_code():
                await anyio.sleep(0.001)
            await anyio.wait_all_tasks_blocked()  # what a finished thread's step hands back

    def block_in_thread(self) -> None:
        anyio.from_thread.run_sync(self.blocked.set)
        self.release.wait(5)
        # still busy until the loop has run as far as it can: a stop that does not wait for
        # this step returns meanwhile, one that waits stays blocked on it
        anyio.from_thread.run(all_tasks_blocked)


async def all_tasks_blocked() -> None:
    """`wait_all_tasks_blocked`, called from a worker thread whose task may be cancelled."""
    with anyio.CancelScope(shield=True):
        await anyio.wait_all_tasks_blocked()


class Worker(AsyncStreamNode):
    async def prep_async(self, shared):
        self.params["probe"].log.append("Worker prep")

    async def exec_stream_async(self, prep_res):
        probe = self.params["probe"]
        probe.log.append("Worker open")
        try:
            yield "ready"
            if probe.hang:
                await probe.block()
                probe.log.append("Worker resumed")
            yield "more"
            yield Return("worked")
        finally:
            probe.log.append("Worker finally")

    async def post_async(self, shared, prep_res, exec_res):
        self.params["probe"].log.append("Worker post")
        shared["Worker"] = exec_res


class Items(AsyncParallelBatchNode):
    async def prep_async(self, shared):
        self.params["probe"].log.append("Items prep")
        return [0, 1, 2]

    async def exec_stream_async(self, item):
        probe = self.params["probe"]
        probe.log.append(f"item {item} open")
        try:
            yield ("ready", item)
            if probe.hang:
                await probe.block(parties=3)
                probe.log.append(f"item {item} resumed")
            yield ("more", item)
            yield Return(item)
        finally:
            probe.log.append(f"item {item} finally")

    async def post_async(self, shared, prep_res, exec_res):
        self.params["probe"].log.append("Items post")
        shared["Items"] = exec_res


class Talker(StreamNode):
    def prep(self, shared):
        self.params["probe"].log.append("Talker prep")

    def exec_stream(self, prep_res):
        probe = self.params["probe"]
        probe.log.append("Talker open")
        try:
            yield "ready"
            yield "more"
            return "talked"
        finally:
            probe.log.append("Talker finally")

    def post(self, shared, prep_res, exec_res):
        self.params["probe"].log.append("Talker post")
        shared["Talker"] = exec_res


class Reader(StreamNode):
    def prep(self, shared):
        self.params["probe"].log.append("Reader prep")

    def exec_stream(self, prep_res):
        probe = self.params["probe"]
        probe.log.append("Reader open")
        try:
            yield "ready"
            if probe.hang:
                probe.block_in_thread()
                probe.log.append("Reader step done")
            yield "more"
            return "read"
        finally:
            probe.log.append("Reader finally")

    def post(self, shared, prep_res, exec_res):
        self.params["probe"].log.append("Reader post")
        shared["Reader"] = exec_res


class Blocking(Node):
    def prep(self, shared):
        self.params["probe"].log.append("Blocking prep")

    def exec(self, prep_res):
        probe = self.params["probe"]
        probe.log.append("Blocking exec")
        if probe.hang:
            probe.block_in_thread()
        probe.log.append("Blocking exec done")
        return "blocked"

    def post(self, shared, prep_res, exec_res):
        self.params["probe"].log.append("Blocking post")
        shared["Blocking"] = exec_res


class Stoppable(AsyncStreamFlow):
    async def post_async(self, shared, prep_res, exec_res):
        self.params["probe"].log.append("flow post")
        return exec_res


class WarmUp(AsyncNode):
    async def post_async(self, shared, prep_res, exec_res):
        shared["warmed up"] = True


SECTIONS = {
    "async node": lambda: Worker(),
    "parallel items": lambda: Items(),
    "sync stream node": lambda: Talker(),
    "in_thread stream node": lambda: Reader(in_thread=True),
    "in_thread node": lambda: Blocking(in_thread=True),
}
READY = {"async node": 1, "parallel items": 3, "sync stream node": 1, "in_thread stream node": 1}
# what had run when the stop returned: every generator's finally, nothing after the stop
STOPPED_LOG = {
    "async node": ["Worker prep", "Worker open", "Worker finally"],
    "parallel items": ["Items prep"]
    + [f"item {i} {s}" for i in range(3) for s in ("open", "finally")],
    "sync stream node": ["Talker prep", "Talker open", "Talker finally"],
    "in_thread stream node": ["Reader prep", "Reader open", "Reader finally"],
    "in_thread node": ["Blocking prep", "Blocking exec", "Blocking exec done"],
}
# stopped while a worker thread is mid-step: the step finishes first
STOPPED_MID_STEP_LOG = {
    **STOPPED_LOG,
    "in_thread stream node": ["Reader prep", "Reader open", "Reader step done", "Reader finally"],
}


def stoppable(section: str, probe: Probe) -> Stoppable:
    """WarmUp -> the section -> Outro, in a flow whose post logs."""
    warm_up = WarmUp()
    warm_up >> SECTIONS[section]() >> Outro()
    flow = Stoppable(start=warm_up)
    flow.set_params({"probe": probe, "log": probe.log})
    return flow


def in_order(section: str, values: List[Any]) -> List[Any]:
    """Parallel items run in any order; everything else in one order."""
    return sorted(values) if section == "parallel items" else list(values)


async def stop_when_blocked(scope: Any, stop: str, probe: Probe) -> None:
    await probe.blocked.wait()
    if stop == "cancel scope from another task":
        scope.cancel()
    else:
        scope.deadline = anyio.current_time()  # the timeout expires now, while the node waits
    while not scope.cancel_called:
        await anyio.sleep(0)
    probe.release.set()  # a node in a worker thread may finish its step now


class Stopped:
    """What a consumer saw, and what had run the moment its stop returned."""

    def __init__(self) -> None:
        self.received: List[Any] = []
        self.log: List[str] = []
        self.busy_threads: List[int] = []

    def now(self, probe: Probe) -> None:
        self.log = list(probe.log)
        self.busy_threads = threads_running_this_files_code()


async def consume_and_stop(flow: Stoppable, shared: Any, stop: str, probe: Probe) -> Stopped:
    stopped = Stopped()
    received = stopped.received

    def all_ready() -> bool:
        return sum(1 for data in received if "ready" in data) == probe.ready

    if stop == "break inside async with":
        async with flow.run_stream_async(shared) as stream:
            async for chunk in stream:
                received.append(chunk.data)
                if all_ready():
                    break
        stopped.now(probe)
    elif stop == "break then aclose":
        stream = flow.run_stream_async(shared)
        async for chunk in stream:
            received.append(chunk.data)
            if all_ready():
                break
        await stream.aclose()
        stopped.now(probe)
    elif stop == "aclose inside async with":
        async with flow.run_stream_async(shared) as stream:
            async for chunk in stream:
                received.append(chunk.data)
                if all_ready():
                    break
            await stream.aclose()
            stopped.now(probe)  # before the block is left
    else:

        async def consume() -> None:
            async with flow.run_stream_async(shared) as stream:
                async for chunk in stream:
                    received.append(chunk.data)
                    if probe.consumer_blocks and all_ready():
                        await probe.block()  # the node waits at its yield meanwhile

        async with anyio.create_task_group() as helpers:
            if stop == "fail_after":
                with pytest.raises(TimeoutError):
                    with anyio.fail_after(60) as scope:
                        helpers.start_soon(stop_when_blocked, scope, stop, probe)
                        await consume()
            else:
                scope = anyio.move_on_after(60) if stop == "move_on_after" else anyio.CancelScope()
                with scope:
                    helpers.start_soon(stop_when_blocked, scope, stop, probe)
                    await consume()
                assert scope.cancelled_caught
            stopped.now(probe)
    return stopped


STOPS = [
    "break inside async with",
    "break then aclose",
    "aclose inside async with",
    "move_on_after",
    "fail_after",
    "cancel scope from another task",
]
BREAKS = STOPS[:3]
STOP_CASES = [
    pytest.param(section, stop, id=f"{section}-{stop}")
    for section in SECTIONS
    for stop in STOPS
    # a break happens at a chunk: a node with no chunks is never mid-step then; a bare
    # `async for` cannot run a parallel section at all (see the FlowError test above)
    if not (section == "in_thread node" and stop in BREAKS)
    and not (section == "parallel items" and stop == "break then aclose")
]


@pytest.mark.parametrize("section, stop", STOP_CASES)
async def test_a_stop_closes_what_runs_leaves_no_task_or_thread_and_the_flow_runs_again(
    section, stop
):
    reference_probe = Probe(hang=False)
    reference_shared: Dict[str, Any] = {}
    reference_chunks: List[Any] = []
    reference_action = await stoppable(section, reference_probe).run_async(
        reference_shared, on_chunk=lambda chunk: reference_chunks.append(chunk.data)
    )
    assert reference_probe.log[-1] == "flow post"

    before = live_tasks()
    probe = Probe(
        hang=True,
        ready=READY.get(section, 0),
        consumer_blocks=section == "sync stream node",
    )
    flow = stoppable(section, probe)
    shared: Dict[str, Any] = {}
    stopped = await consume_and_stop(flow, shared, stop, probe)

    # when the stop returned: every generator's finally had run, the step in progress in a
    # worker thread had finished, no thread ran node code, nothing after the stop had run
    expected = STOPPED_LOG if stop in BREAKS else STOPPED_MID_STEP_LOG
    assert in_order(section, stopped.log) == in_order(section, expected[section])
    assert stopped.busy_threads == []
    await probe.let_go()
    assert probe.log == stopped.log  # and nothing ran later, though it was free to
    assert shared == {"warmed up": True}  # no post of the stopped node, nothing later
    assert live_tasks() == before
    if section == "parallel items":
        assert set(stopped.received) <= set(reference_chunks)
    else:
        assert stopped.received == reference_chunks[: len(stopped.received)]

    # the same flow object runs again, in full
    rerun_probe = Probe(hang=False)
    flow.set_params({"probe": rerun_probe, "log": rerun_probe.log})
    rerun_shared: Dict[str, Any] = {}
    rerun_chunks: List[Any] = []
    rerun_action = await flow.run_async(
        rerun_shared, on_chunk=lambda chunk: rerun_chunks.append(chunk.data)
    )
    assert rerun_action == reference_action
    assert rerun_shared == reference_shared
    assert in_order(section, rerun_chunks) == in_order(section, reference_chunks)
    assert in_order(section, rerun_probe.log) == in_order(section, reference_probe.log)


# --- blocking sync nodes in worker threads -------------------------------------------------


class Sleeper(Node):
    """Blocks its thread in exec, noting how often the ticker ticked meanwhile: in a worker
    thread until the loop has ticked three times (however loaded the machine, a free loop gets
    there; a blocked one never does, and the wait gives up after 5 s); on the loop's own thread
    for a moment, during which the loop cannot tick at all."""

    def exec(self, prep_res):
        ticker = self.params["ticker"]
        before = ticker.ticks
        if self.in_thread:
            deadline = time.monotonic() + 5
            while ticker.ticks - before < 3 and time.monotonic() < deadline:
                time.sleep(0.001)
        else:
            time.sleep(0.01)
        return ticker.ticks - before, threading.get_ident()

    def post(self, shared, prep_res, exec_res):
        shared["ticks while blocked"], shared["thread"] = exec_res


@pytest.mark.parametrize("in_thread", [True, False])
async def test_an_in_thread_node_that_blocks_leaves_the_event_loop_free(in_thread):
    ticker = Ticker()
    flow = AsyncFlow(start=Sleeper(in_thread=in_thread))
    flow.set_params({"ticker": ticker})
    shared: Dict[str, Any] = {}
    async with anyio.create_task_group() as group:
        group.start_soon(ticker.run)
        await flow.run_async(shared)
        group.cancel_scope.cancel()
    # in a thread the loop kept ticking; on the loop's own thread it could not tick at all
    on_the_loop = shared["thread"] == threading.get_ident()
    if in_thread:
        assert shared["ticks while blocked"] >= 3 and not on_the_loop
    else:
        assert shared["ticks while blocked"] == 0 and on_the_loop


class WhereNode(Node):
    def prep(self, shared):
        shared["threads"].append(("prep", threading.get_ident()))

    def exec(self, prep_res):
        self.params["threads"].append(("exec", threading.get_ident()))

    def post(self, shared, prep_res, exec_res):
        shared["threads"].append(("post", threading.get_ident()))


class WhereStream(StreamNode):
    def prep(self, shared):
        shared["threads"].append(("prep", threading.get_ident()))

    def exec_stream(self, prep_res):
        for step in range(2):
            self.params["threads"].append((f"step {step}", threading.get_ident()))
            yield step
        return "streamed"

    def post(self, shared, prep_res, exec_res):
        shared["threads"].append(("post", threading.get_ident()))
        shared["result"] = exec_res


@pytest.mark.parametrize("in_thread", [True, False])
@pytest.mark.parametrize("node_class", [WhereNode, WhereStream])
async def test_an_in_thread_nodes_hooks_run_off_the_event_loops_thread(node_class, in_thread):
    threads: List[Tuple[str, int]] = []
    flow = AsyncStreamFlow(start=node_class(in_thread=in_thread))
    flow.set_params({"threads": threads})
    shared = {"threads": threads}
    loop_thread = threading.get_ident()
    await stream_items(flow, shared)
    hooks = [hook for hook, _ in threads]
    if node_class is WhereNode:
        assert hooks == ["prep", "exec", "post"]
    else:
        assert hooks == ["prep", "step 0", "step 1", "post"]
    assert all((ident != loop_thread) is in_thread for _, ident in threads)


async def test_an_in_thread_stream_nodes_chunks_stream_and_its_return_value_reaches_post():
    threads: List[Tuple[str, int]] = []
    node = WhereStream(in_thread=True, name="Reader")
    flow = AsyncStreamFlow(start=node, name="Outer")
    flow.set_params({"threads": threads})
    shared: Dict[str, Any] = {"threads": threads}
    chunks, action = await stream_items(flow, shared, events=True)
    assert [(type(item).__name__, getattr(item, "data", None)) for item in chunks] == [
        ("NodeStarted", None),
        ("Chunk", 0),
        ("Chunk", 1),
        ("NodeFinished", None),
        ("FlowFinished", None),
    ]
    assert chunks[1].path == ("Reader",)
    assert shared["result"] == "streamed"
    assert action is None


class Closing(StreamNode):
    def exec_stream(self, prep_res):
        try:
            yield "first"
            yield "second"
        finally:
            self.params["threads"].append(("finally", threading.get_ident()))


async def test_stopping_an_in_thread_stream_node_closes_its_generator_in_a_worker_thread():
    threads: List[Tuple[str, int]] = []
    flow = AsyncStreamFlow(start=Closing(in_thread=True))
    flow.set_params({"threads": threads})
    async with flow.run_stream_async({}) as stream:
        async for _chunk in stream:
            break
        await stream.aclose()
        assert [hook for hook, _ in threads] == ["finally"]  # closed before aclose returned
    assert threads[0][1] != threading.get_ident()  # a blocking finally cannot block the loop


class FlakyOnce(Node):
    def exec(self, prep_res):
        self.params["ticks"].append(self.params["ticker"].ticks)
        if self.cur_retry == 0:
            raise ConnectionError("try again")
        return "ok"

    def post(self, shared, prep_res, exec_res):
        shared["result"] = exec_res


async def test_the_wait_between_retries_of_a_sync_node_leaves_the_event_loop_free():
    ticker = Ticker()
    ticks: List[int] = []
    flow = AsyncFlow(start=FlakyOnce(max_retries=2, wait=0.05))
    flow.set_params({"ticker": ticker, "ticks": ticks})
    shared: Dict[str, Any] = {}
    async with anyio.create_task_group() as group:
        group.start_soon(ticker.run)
        await flow.run_async(shared)
        group.cancel_scope.cancel()
    assert shared == {"result": "ok"}
    assert len(ticks) == 2 and ticks[1] > ticks[0]  # the loop ticked during the wait


# --- long loops and deep nesting, iteratively ----------------------------------------------


class AsyncPlan(AsyncStreamNode):
    async def exec_stream_async(self, prep_res):
        yield "thinking"
        yield Return("planned")

    async def post_async(self, shared, prep_res, exec_res):
        shared["turns"] += 1
        return "act" if shared["turns"] < shared["limit"] else "done"


class AsyncAct(AsyncNode):
    async def exec_async(self, prep_res):
        return "acted"


class AsyncFinish(AsyncNode):
    async def post_async(self, shared, prep_res, exec_res):
        return "finished"


def async_plan_act_loop() -> AsyncFlow:
    plan, act = AsyncPlan(), AsyncAct()
    plan - "act" >> act
    plan - "done" >> AsyncFinish()
    act >> plan
    return AsyncFlow(start=plan)


async def test_a_ten_thousand_turn_async_loop_runs_and_streams_with_a_small_recursion_limit():
    flow = async_plan_act_loop()
    ran = {"turns": 0, "limit": 10_000}
    streamed = {"turns": 0, "limit": 10_000}
    with lowered_recursion_limit():
        action = await flow.run_async(ran)
        chunks = 0
        async with flow.run_stream_async(streamed) as stream:
            async for chunk in stream:
                chunks += 1
                last = chunk
        streamed_action = stream.action
    assert action == streamed_action == "finished"
    assert ran["turns"] == streamed["turns"] == chunks == 10_000
    assert (last.path, last.data) == (("AsyncPlan",), "thinking")


class DeepLeaf(AsyncStreamNode):
    async def exec_stream_async(self, prep_res):
        yield "from the bottom"
        yield Return("leaf result")

    async def post_async(self, shared, prep_res, exec_res):
        shared["leaf"] = exec_res
        return "up"


async def test_a_thousand_nested_async_and_sync_flows_stream_with_the_full_path():
    inner: Any = DeepLeaf()
    for level in range(1000, 0, -1):
        inner = (AsyncFlow if level % 2 else Flow)(start=inner, name=f"F{level}")
    flow = AsyncStreamFlow(start=inner)
    ran: Dict[str, Any] = {}
    streamed: Dict[str, Any] = {}
    with lowered_recursion_limit():
        action = await flow.run_async(ran)
        chunks, streamed_action = await stream_items(flow, streamed)
        path = chunks[0].path
    assert action == streamed_action == "up"
    assert ran == streamed == {"leaf": "leaf result"}
    assert len(chunks) == 1 and len(path) == 1001
    assert path[:2] == ("F1", "F2") and path[-2:] == ("F1000", "DeepLeaf")


@pytest.mark.anyio
async def test_an_in_thread_stream_node_whose_exec_stream_is_no_generator_says_so():
    class Listing(pocketflow_stream.StreamNode):
        def exec_stream(self, prep_res):
            return [1, 2]

    flow = pocketflow_stream.AsyncFlow(start=Listing(in_thread=True, max_retries=3))
    with pytest.raises(pocketflow_stream.FlowError, match="must return a generator") as caught:
        await flow.run_async({})
    assert caught.value.node_path == ("Listing",)


@pytest.mark.anyio
@pytest.mark.parametrize("parallel", [False, True], ids=["plain", "parallel"])
async def test_an_exception_in_the_consumers_block_comes_out_as_itself_and_stops_the_run(
    parallel,
):
    """Not wrapped in an ExceptionGroup by the run's task group: the app catches its own
    exception as it would around any `async with`."""
    closed = []
    kind = (
        pocketflow_stream.AsyncParallelBatchNode
        if parallel
        else pocketflow_stream.AsyncStreamBatchNode
    )

    class Items(kind):  # type: ignore[valid-type, misc]
        async def prep_async(self, shared):
            return [0, 1, 2] if parallel else [0]

        async def exec_stream_async(self, item):
            try:
                while True:
                    await anyio.sleep(0)
                    yield item
            finally:
                closed.append(item)

    flow = pocketflow_stream.AsyncStreamFlow(start=Items())
    with pytest.raises(KeyError, match="the app's own") as caught:
        async with flow.run_stream_async({}) as stream:
            async for _chunk in stream:
                raise KeyError("the app's own")
    assert type(caught.value) is KeyError
    assert sorted(closed) == ([0, 1, 2] if parallel else [0])
