"""bridges.py: async flows streamed from sync code, sync flows streamed from async code.

`run_stream_sync` must behave like the sync `run_stream` (same chunks, live, the action as the
generator's return value, a stop closes the node) while the flow runs on an event loop of its
own; `run_stream_in_thread` like `run_stream_async` while the sync walk steps in worker threads.
Neither may leave a thread behind.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any, List

import anyio
import pytest

from pocketflow_stream import (
    AsyncFlow,
    AsyncParallelBatchNode,
    AsyncStreamBatchNode,
    AsyncStreamFlow,
    AsyncStreamNode,
    Flow,
    Return,
    StreamBatchNode,
    StreamFlow,
    StreamNode,
    run_stream_in_thread,
    run_stream_sync,
)

BACKENDS = ["asyncio", "trio"]
TIMEOUT = 5.0  # seconds a test waits for the other side before it fails instead of hanging


def tags(chunks: List[Any]) -> List[tuple]:
    return [(chunk.node, chunk.path, chunk.data, chunk.item) for chunk in chunks]


def new_threads(before: set) -> set:
    """Threads alive now that were not in `before` (threads that ended since are fine)."""
    return set(threading.enumerate()) - before


# --- flows the tests run -------------------------------------------------------------------


class Words(AsyncStreamNode):
    async def prep_async(self, shared):
        return shared["text"]

    async def exec_stream_async(self, text):
        for word in text.split():
            await anyio.sleep(0)
            yield word
        yield Return(text.upper())

    async def post_async(self, shared, text, upper):
        shared["upper"] = upper
        return "spell"


class Initials(AsyncStreamBatchNode):
    async def prep_async(self, shared):
        return shared["text"].split()

    async def exec_stream_async(self, word):
        yield word[0]
        yield Return(len(word))

    async def post_async(self, shared, words, lengths):
        shared["lengths"] = lengths
        return "done"


def async_flow() -> AsyncStreamFlow:
    """Outer > Inner > (Words -"spell"-> Initials): a nested flow and a batch node."""
    words, initials = Words(), Initials()
    words - "spell" >> initials
    return AsyncStreamFlow(start=AsyncFlow(start=words, name="Inner"), name="Outer")


async def stream_async(flow: Any, shared: dict) -> List[Any]:
    async with flow.run_stream_async(shared) as stream:
        return [chunk async for chunk in stream]


class SyncWords(StreamNode):
    name = "Words"

    def prep(self, shared):
        return shared["text"]

    def exec_stream(self, text):
        yield from text.split()
        return text.upper()

    def post(self, shared, text, upper):
        shared["upper"] = upper
        return "spell"


class SyncInitials(StreamBatchNode):
    name = "Initials"

    def prep(self, shared):
        return shared["text"].split()

    def exec_stream(self, word):
        yield word[0]
        return len(word)

    def post(self, shared, words, lengths):
        shared["lengths"] = lengths
        return "done"


def sync_flow() -> StreamFlow:
    words, initials = SyncWords(), SyncInitials()
    words - "spell" >> initials
    return StreamFlow(start=Flow(start=words, name="Inner"), name="Outer")


class Probe:
    """What a node reports from wherever it runs: how far it got, whether its finally ran."""

    def __init__(self) -> None:
        self.produced: List[Any] = []
        self.closed = False
        self.posted = False
        self.log: List[str] = []


class EndlessAsync(AsyncStreamNode):
    def __init__(self, probe: Probe) -> None:
        super().__init__()
        self.probe = probe

    async def exec_stream_async(self, prep_res):
        try:
            for index in itertools.count():
                self.probe.produced.append(index)
                yield index
                await anyio.sleep(0)
        finally:
            self.probe.closed = True

    async def post_async(self, shared, prep_res, exec_res):
        self.probe.posted = True


class AfterEndless(AsyncStreamNode):
    def __init__(self, probe: Probe) -> None:
        super().__init__()
        self.probe = probe

    async def prep_async(self, shared):
        self.probe.log.append("the next node ran")


def endless_async_flow(probe: Probe) -> AsyncStreamFlow:
    endless = EndlessAsync(probe)
    endless >> AfterEndless(probe)
    return AsyncStreamFlow(start=AsyncFlow(start=endless, name="Inner"))


class AsyncBoom(AsyncStreamNode):
    name = "Boom"

    async def exec_stream_async(self, prep_res):
        yield "partial"
        raise ValueError("the model went away")


class SyncBoom(StreamNode):
    name = "Boom"

    def exec_stream(self, prep_res):
        yield "partial"
        raise ValueError("the model went away")


# --- run_stream_sync: an async flow from sync code -------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_run_stream_sync_yields_the_same_chunks_as_run_stream_async(backend):
    expected_shared = {"text": "to be or not"}
    expected = anyio.run(stream_async, async_flow(), expected_shared, backend=backend)

    shared = {"text": "to be or not"}
    chunks = list(run_stream_sync(async_flow(), shared, backend=backend))

    assert tags(chunks) == tags(expected)
    assert tags(chunks)[0] == ("Words", ("Inner", "Words"), "to", None)
    assert tags(chunks)[-1] == ("Initials", ("Inner", "Initials"), "n", 3)
    assert shared == expected_shared
    assert shared == {"text": "to be or not", "upper": "TO BE OR NOT", "lengths": [2, 2, 2, 3]}


@pytest.mark.parametrize("backend", BACKENDS)
def test_run_stream_sync_returns_the_final_action_as_the_generators_return_value(backend):
    def handler():  # a sync generator handler, as a Gradio app writes one
        action = yield from run_stream_sync(async_flow(), {"text": "hi"}, backend=backend)
        yield ("action", action)

    assert list(handler())[-1] == ("action", "done")

    stream = run_stream_sync(async_flow(), {"text": "hi"}, backend=backend)
    with pytest.raises(StopIteration) as stop:
        while True:
            next(stream)
    assert stop.value.value == "done"


@pytest.mark.parametrize("backend", BACKENDS)
def test_run_stream_sync_runs_parallel_batches_in_the_portals_task_group(backend):
    class Shout(AsyncParallelBatchNode):
        async def prep_async(self, shared):
            return ["a", "b", "c"]

        async def exec_stream_async(self, letter):
            yield letter
            await anyio.sleep(0)
            yield letter.upper()
            yield Return(letter * 2)

        async def post_async(self, shared, letters, results):
            shared["results"] = results

    shared: dict = {}
    chunks = list(run_stream_sync(AsyncStreamFlow(start=Shout()), shared, backend=backend))

    assert sorted((chunk.item, chunk.data) for chunk in chunks) == [
        (0, "A"),
        (0, "a"),
        (1, "B"),
        (1, "b"),
        (2, "C"),
        (2, "c"),
    ]
    assert shared["results"] == ["aa", "bb", "cc"]


class WaitsForTheConsumer(AsyncStreamNode):
    """Yields one chunk, then waits until the sync consumer says it has seen it."""

    def __init__(self, seen: threading.Event) -> None:
        super().__init__()
        self.seen = seen

    async def exec_stream_async(self, prep_res):
        yield "first"
        with anyio.move_on_after(TIMEOUT):
            while not self.seen.is_set():
                await anyio.sleep(0.001)
        yield "after the consumer saw the first" if self.seen.is_set() else "timed out"


@pytest.mark.parametrize("backend", BACKENDS)
def test_run_stream_sync_hands_each_chunk_over_while_the_node_is_still_running(backend):
    seen = threading.Event()
    received = []
    for chunk in run_stream_sync(AsyncFlow(start=WaitsForTheConsumer(seen)), {}, backend=backend):
        received.append(chunk.data)
        seen.set()

    assert received == ["first", "after the consumer saw the first"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_closing_run_stream_sync_early_closes_the_node_and_stops_its_thread(backend):
    probe = Probe()
    before = set(threading.enumerate())
    stream = run_stream_sync(endless_async_flow(probe), {}, backend=backend)

    assert [next(stream).data for _ in range(3)] == [0, 1, 2]
    assert new_threads(before)  # the event loop's thread, while the run is open
    stream.close()

    assert probe.closed  # the node's finally ran before close() returned
    assert not probe.posted and probe.log == []  # nothing after the stop ran
    assert new_threads(before) == set()
    assert probe.produced == [0, 1, 2]  # pulled one at a time: nothing was made ahead


@pytest.mark.parametrize("backend", BACKENDS)
def test_breaking_out_of_run_stream_sync_in_a_wrapping_generator_closes_the_run(backend):
    probe = Probe()
    before = set(threading.enumerate())

    def first_two():
        for chunk in run_stream_sync(endless_async_flow(probe), {}, backend=backend):
            yield chunk.data
            if chunk.data == 1:
                return

    assert list(first_two()) == [0, 1]
    assert probe.closed and not probe.posted
    assert new_threads(before) == set()


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_error_in_a_node_reaches_the_sync_caller_with_its_type_and_node_path(backend):
    before = set(threading.enumerate())
    flow = AsyncStreamFlow(start=AsyncFlow(start=AsyncBoom(), name="Inner"))
    received = []

    with pytest.raises(ValueError, match="the model went away") as raised:
        for chunk in run_stream_sync(flow, {}, backend=backend):
            received.append(chunk.data)

    assert received == ["partial"]
    assert raised.value.node_path == ("Inner", "Boom")
    assert new_threads(before) == set()


@pytest.mark.anyio
@pytest.mark.parametrize("inner_backend", BACKENDS)
async def test_run_stream_sync_works_in_a_worker_thread_of_a_running_event_loop(inner_backend):
    # A Gradio server: an async app calls a sync handler in a worker thread, and the handler
    # streams an async flow on an event loop of its own.
    expected = await stream_async(async_flow(), {"text": "to be or not"})

    def sync_handler():
        stream = run_stream_sync(async_flow(), {"text": "to be or not"}, backend=inner_backend)
        chunks = []
        while True:
            try:
                chunks.append(next(stream))
            except StopIteration as stop:
                return chunks, stop.value

    chunks, action = await anyio.to_thread.run_sync(sync_handler)

    assert tags(chunks) == tags(expected)
    assert action == "done"


# --- run_stream_in_thread: a sync flow from async code ---------------------------------------


@pytest.mark.anyio
async def test_run_stream_in_thread_yields_the_same_chunks_as_run_stream():
    expected_shared = {"text": "to be or not"}
    expected = list(sync_flow().run_stream(expected_shared))

    shared = {"text": "to be or not"}
    async with run_stream_in_thread(sync_flow(), shared) as stream:
        chunks = [chunk async for chunk in stream]

    assert tags(chunks) == tags(expected)
    assert tags(chunks)[0] == ("Words", ("Inner", "Words"), "to", None)
    assert shared == expected_shared


@pytest.mark.anyio
async def test_run_stream_in_thread_gives_the_action_once_finished():
    stream = run_stream_in_thread(sync_flow(), {"text": "hi there"})
    assert (stream.action, stream.finished) == (None, False)

    async with stream:
        first = await stream.__anext__()
        assert first.data == "hi"
        assert (stream.action, stream.finished) == (None, False)
        rest = [chunk.data async for chunk in stream]

    assert rest == ["there", "h", "t"]
    assert (stream.action, stream.finished) == ("done", True)


class SleepsBetweenYields(StreamNode):
    """Blocks its thread between chunks until the event loop has ticked three times, and
    records how often it ticked. However loaded the machine, a free loop gets there; a blocked
    one never does (the node gives up TIMEOUT seconds after it started)."""

    def __init__(self, clock: List[int]) -> None:
        super().__init__()
        self.clock = clock
        self.ticks_while_sleeping: List[int] = []

    def exec_stream(self, prep_res):
        deadline = time.monotonic() + TIMEOUT
        for index in range(3):
            before = self.clock[0]
            while self.clock[0] - before < 3 and time.monotonic() < deadline:
                time.sleep(0.001)  # the thread blocks; only a free loop moves the clock
            self.ticks_while_sleeping.append(self.clock[0] - before)
            yield index


@pytest.mark.anyio
async def test_run_stream_in_thread_does_not_block_the_event_loop_while_a_node_blocks():
    clock = [0]
    node = SleepsBetweenYields(clock)

    async def tick():
        while True:
            clock[0] += 1
            await anyio.sleep(0.001)

    async with anyio.create_task_group() as group:
        group.start_soon(tick)
        async with run_stream_in_thread(Flow(start=node), {}) as stream:
            received = [chunk.data async for chunk in stream]
        group.cancel_scope.cancel()

    assert received == [0, 1, 2]
    assert len(node.ticks_while_sleeping) == 3
    assert all(ticks >= 3 for ticks in node.ticks_while_sleeping)


class EndlessSync(StreamNode):
    def __init__(self, probe: Probe) -> None:
        super().__init__()
        self.probe = probe

    def exec_stream(self, prep_res):
        try:
            for index in itertools.count():
                self.probe.produced.append(index)
                yield index
        finally:
            self.probe.closed = True
            self.probe.log.append("finally")

    def post(self, shared, prep_res, exec_res):
        self.probe.posted = True


@pytest.mark.anyio
async def test_leaving_run_stream_in_thread_early_closes_the_sync_generator():
    probe = Probe()
    received = []

    async with run_stream_in_thread(Flow(start=EndlessSync(probe)), {}) as stream:
        async for chunk in stream:
            received.append(chunk.data)
            if chunk.data == 2:
                break
        assert not probe.closed  # still open inside the block

    assert received == [0, 1, 2]
    # The node's finally has run (in the worker thread the stop awaited), and a closed
    # generator never runs again: what a thread stepping on would have made, it made by now.
    assert probe.closed and probe.log == ["finally"] and not probe.posted
    assert probe.produced == [0, 1, 2]  # stepped one chunk at a time, nothing made ahead


class BlocksMidStep(StreamNode):
    """Its second step blocks in a worker thread until the test releases it."""

    def __init__(self, probe: Probe, in_step: threading.Event, release: threading.Event):
        super().__init__()
        self.probe, self.in_step, self.release = probe, in_step, release

    def exec_stream(self, prep_res):
        try:
            yield "before"
            self.in_step.set()
            self.release.wait(TIMEOUT)
            self.probe.log.append("step finished")
            yield "after"
            yield "never consumed"
        finally:
            self.probe.closed = True
            self.probe.log.append("finally")


@pytest.mark.anyio
async def test_a_cancelled_run_stream_in_thread_waits_for_the_step_in_progress_then_closes():
    probe = Probe()
    in_step, release = threading.Event(), threading.Event()
    node = BlocksMidStep(probe, in_step, release)
    received = []

    async def release_later(consumer: anyio.CancelScope):
        with anyio.fail_after(TIMEOUT):
            while not in_step.is_set():
                await anyio.sleep(0.001)
        consumer.cancel()
        # A stop that did not wait for the thread would let the consumer resume (and log it)
        # now; one that waits keeps it blocked on the thread. Either way, every other task
        # waits before the step may finish.
        await anyio.wait_all_tasks_blocked()
        release.set()

    async with anyio.create_task_group() as group:
        with anyio.CancelScope() as consumer:
            group.start_soon(release_later, consumer)
            async with run_stream_in_thread(Flow(start=node), {}) as stream:
                async for chunk in stream:
                    received.append(chunk.data)
        probe.log.append("consumer resumed")

    assert consumer.cancelled_caught
    assert received[0] == "before" and "never consumed" not in received
    assert probe.log == ["step finished", "finally", "consumer resumed"]


@pytest.mark.anyio
async def test_an_error_in_run_stream_in_thread_keeps_its_type_and_node_path():
    flow = StreamFlow(start=Flow(start=SyncBoom(), name="Inner"))
    received = []

    with pytest.raises(ValueError, match="the model went away") as raised:
        async with run_stream_in_thread(flow, {}) as stream:
            async for chunk in stream:
                received.append(chunk.data)

    assert received == ["partial"]
    assert raised.value.node_path == ("Inner", "Boom")
    assert not stream.finished
