"""Async driver benchmarks: every figure is a ratio against a baseline measured in this run.

    python bench/bench_async.py            # about 25 seconds on the 2-core CI machine
    python bench/bench_async.py --quick    # smaller counts, a few seconds

1. Per-chunk cost of run_stream_async for an AsyncStreamNode inside three nested flows
   (AsyncStreamFlow > AsyncFlow > AsyncFlow > node), against a bare chain of async generators
   three deep (the producer and two levels of `async for x in inner: yield x`, as bench_core
   compares three nested flows with a `yield from` chain three deep). Target <= 3x.
   Also reported: the chain with one generator per nesting level (node + three), a sync
   StreamNode in the same async flows, and run_async with an on_chunk callback.
   On asyncio and on trio.
2. 1,000 flows streaming 1,000 chunks each, concurrently on one event loop: one consumer task
   per flow (`async with flow.run_stream_async(...)`), the node doing `await anyio.sleep(0)`
   before each chunk, as tokens arrive. Total chunks/second, and the time per chunk as a ratio
   against 1,000 bare async generators doing the same sleeps and yields ("x: time"); the delay
   from a chunk's making (a perf_counter() stamp in its data) to its consumer, p50 and p99.
   Target p99 < 50 ms. The consumer pulls the node from its own task, so the delay is the
   driver's own work per chunk. Also: the same 1,000 streams as the items of one
   AsyncParallelBatchNode with one consumer, where every chunk crosses the driver's bounded
   buffer (64) from the item's task to the consumer's, so the delay includes queueing.
   On asyncio and on trio.
3. Memory (tracemalloc) per flow suspended before its first chunk, 1,000 of them each with its
   consumer task, against a bare async generator suspended the same way. On both backends.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Dict, List, Optional

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # measure this checkout
import pocketflow_stream as pfs  # noqa: E402

BACKENDS = ("asyncio", "trio")
perf_counter = time.perf_counter


def best_of(repeats: int, measure: Callable[[], float]) -> float:
    return min(measure() for _ in range(repeats))


def timed(backend: str, drain: Callable[[], Awaitable[None]], count: int) -> Callable[[], float]:
    """A measure of `drain()` on a fresh event loop of `backend`, in seconds per chunk."""

    async def run() -> float:
        gc.collect()
        start = perf_counter()
        await drain()
        return (perf_counter() - start) / count

    return lambda: anyio.run(run, backend=backend)


# --- 1. per-chunk cost through nested async flows -------------------------------------------


def bench_chunks(backend: str, count: int) -> Dict[str, float]:
    class Talk(pfs.AsyncStreamNode):
        async def exec_stream_async(self, prep_res):
            for index in range(count):  # noqa: UP028 - a node making each value in Python
                yield index

    class SyncTalk(pfs.StreamNode):
        def exec_stream(self, prep_res):
            for index in range(count):  # noqa: UP028 - the same work, in a sync generator
                yield index

    def nested(node: pfs.BaseNode) -> pfs.AsyncStreamFlow:
        return pfs.AsyncStreamFlow(start=pfs.AsyncFlow(start=pfs.AsyncFlow(start=node)))

    async def source() -> AsyncIterator[int]:
        for index in range(count):  # noqa: UP028 - the same work as the node above
            yield index

    async def level(inner: AsyncIterator[int]) -> AsyncIterator[int]:
        async for value in inner:
            yield value

    def chain(generators: int) -> Callable[[], Awaitable[None]]:
        async def drain() -> None:
            stream = source()
            for _ in range(generators - 1):
                stream = level(stream)
            async for _ in stream:
                pass

        return drain

    def streamed(flow: pfs.AsyncStreamFlow) -> Callable[[], Awaitable[None]]:
        async def drain() -> None:
            async with flow.run_stream_async({}) as stream:
                async for _ in stream:
                    pass

        return drain

    def pushed(flow: pfs.AsyncStreamFlow) -> Callable[[], Awaitable[None]]:
        def on_chunk(chunk: pfs.Chunk) -> None:
            pass

        async def drain() -> None:
            await flow.run_async({}, on_chunk=on_chunk)

        return drain

    drains = {
        "bare": chain(3),  # the target's baseline: three generators deep
        "bare_per_level": chain(4),  # the node plus one generator per flow level
        "run_stream_async": streamed(nested(Talk())),
        "sync_node": streamed(nested(SyncTalk())),
        "on_chunk": pushed(nested(Talk())),
    }
    return {key: best_of(3, timed(backend, drain, count)) for key, drain in drains.items()}


# --- 2. many flows streaming at once ----------------------------------------------------------


class Tokens(pfs.AsyncStreamNode):
    """Streams shared["chunks"] timestamps, waiting for the event loop before each, as a model's
    tokens arrive."""

    async def prep_async(self, shared):
        return shared["chunks"]

    async def exec_stream_async(self, count):
        for _ in range(count):
            await anyio.sleep(0)
            yield perf_counter()


async def bare_tokens(count: int) -> AsyncIterator[float]:
    for _ in range(count):
        await anyio.sleep(0)
        yield perf_counter()


class ParallelTokens(pfs.AsyncParallelBatchNode):
    """The same streams as items of one parallel batch: their chunks reach the one consumer
    through the driver's bounded buffer, so queueing shows in the delay."""

    async def prep_async(self, shared):
        return [shared["chunks"]] * shared["items"]

    async def exec_stream_async(self, count):
        for _ in range(count):
            await anyio.sleep(0)
            yield perf_counter()


def percentile(ordered: List[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def bench_concurrent(flows: int, chunks: int, backend: str = "asyncio") -> Dict[str, Any]:
    flow = pfs.AsyncStreamFlow(start=Tokens())  # one flow, run 1,000 times at once

    async def consume_flow(delays: List[float]) -> None:
        async with flow.run_stream_async({"chunks": chunks}) as stream:
            async for chunk in stream:
                delays.append(perf_counter() - chunk.data)

    async def consume_bare(delays: List[float]) -> None:
        async for stamp in bare_tokens(chunks):
            delays.append(perf_counter() - stamp)

    parallel = pfs.AsyncStreamFlow(start=ParallelTokens())

    async def consume_parallel(delays: List[float]) -> None:
        shared = {"chunks": chunks, "items": flows}
        async with parallel.run_stream_async(shared) as stream:
            async for chunk in stream:
                delays.append(perf_counter() - chunk.data)

    def measure(
        consume: Callable[[List[float]], Awaitable[None]], consumers: int
    ) -> Dict[str, Any]:
        delays: List[float] = []

        async def run() -> float:
            gc.collect()
            start = perf_counter()
            async with anyio.create_task_group() as group:
                for _ in range(consumers):
                    group.start_soon(consume, delays)
            return perf_counter() - start

        elapsed = anyio.run(run, backend=backend)
        assert len(delays) == flows * chunks
        delays.sort()
        return {
            "rate": len(delays) / elapsed,
            "p50": percentile(delays, 0.50),
            "p99": percentile(delays, 0.99),
        }

    return {
        "bare": measure(consume_bare, flows),
        "ours": measure(consume_flow, flows),
        "parallel": measure(consume_parallel, 1),  # one consumer of all the streams
    }


# --- 3. memory of suspended flows -------------------------------------------------------------


class Gated(pfs.AsyncStreamNode):
    """Waits for shared["gate"] before its first chunk, having counted itself as waiting."""

    async def prep_async(self, shared):
        return shared

    async def exec_stream_async(self, shared):
        shared["waiting"][0] += 1
        await shared["gate"].wait()
        for index in range(10):  # noqa: UP028
            yield index


async def bare_gated(gate: anyio.Event, waiting: List[int]) -> AsyncIterator[int]:
    waiting[0] += 1
    await gate.wait()
    for index in range(10):  # noqa: UP028
        yield index


def bench_memory(flows: int, backend: str = "asyncio") -> Dict[str, float]:
    flow = pfs.AsyncStreamFlow(start=Gated())

    async def consume_flow(gate: anyio.Event, waiting: List[int]) -> None:
        async with flow.run_stream_async({"gate": gate, "waiting": waiting}) as stream:
            async for _ in stream:
                pass

    async def consume_bare(gate: anyio.Event, waiting: List[int]) -> None:
        async for _ in bare_gated(gate, waiting):
            pass

    def per_suspended(consume: Callable[[anyio.Event, List[int]], Awaitable[None]]) -> float:
        async def run() -> float:
            gate = anyio.Event()
            waiting = [0]
            async with anyio.create_task_group() as group:
                gc.collect()
                tracemalloc.start()
                before, _ = tracemalloc.get_traced_memory()
                for _ in range(flows):
                    group.start_soon(consume, gate, waiting)
                while waiting[0] < flows:  # every node is now suspended before its first chunk
                    await anyio.sleep(0)
                gc.collect()
                after, _ = tracemalloc.get_traced_memory()
                tracemalloc.stop()
                gate.set()
            return (after - before) / flows

        return anyio.run(run, backend=backend)  # type: ignore[no-any-return]

    return {"bare": per_suspended(consume_bare), "ours": per_suspended(consume_flow)}


def cell(figure: str, ratio: Optional[float] = None) -> str:
    """One backend's column: the figure, then its ratio to the baseline when there is one."""
    multiple = "" if ratio is None else f"{ratio:.2f}x"
    return f"{figure:>13} {multiple:<6}"


def line(label: str, cells: List[str], verdict: str = "") -> None:
    print(f"  {label:<44}:{''.join(cells)}".rstrip() + verdict)


def heading(title: str) -> None:
    print(f"{title:<47}" + "".join(f"{backend:>13}       " for backend in BACKENDS).rstrip())


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--quick", action="store_true", help="smaller counts, a few seconds")
    quick = options.parse_args().quick
    count = 100_000 if quick else 1_000_000
    flows, chunks = (1_000, 100) if quick else (1_000, 1_000)

    per_chunk = [bench_chunks(backend, count) for backend in BACKENDS]
    heading(f"per chunk (an async node's {count:,} chunks)")
    for label, key, target in (
        ("bare async-for chain, 3 generators deep", "bare", None),
        ("ours run_stream_async, three nested flows", "run_stream_async", 3.0),
        ("bare chain, node + a generator per level", "bare_per_level", None),
        ("ours, a sync StreamNode in the same flows", "sync_node", None),
        ("ours run_async(on_chunk=...), same flows", "on_chunk", None),
    ):
        ratios = [figures[key] / figures["bare"] for figures in per_chunk]
        cells = [
            cell(f"{figures[key] * 1e9:.0f} ns", None if key == "bare" else ratio)
            for figures, ratio in zip(per_chunk, ratios)
        ]
        verdict = ""
        if target is not None:
            verdict = f"  target <= {target}x {'ok' if max(ratios) <= target else 'MISSED'}"
        line(label, cells, verdict)

    concurrent = [bench_concurrent(flows, chunks, backend) for backend in BACKENDS]
    heading(f"{flows:,} flows x {chunks:,} chunks, all at once")
    line(
        "bare async generators, chunks/s",
        [cell(f"{run['bare']['rate']:,.0f}") for run in concurrent],
    )
    line(
        "ours run_stream_async, chunks/s (x: time)",
        [
            cell(f"{run['ours']['rate']:,.0f}", run["bare"]["rate"] / run["ours"]["rate"])
            for run in concurrent
        ],
    )
    line(
        "ours, as one parallel batch, chunks/s",
        [
            cell(f"{run['parallel']['rate']:,.0f}", run["bare"]["rate"] / run["parallel"]["rate"])
            for run in concurrent
        ],
    )
    for name, label in (
        ("bare", "bare"),
        ("ours", "ours"),
        ("parallel", "ours, one parallel batch,"),
    ):
        delays = [
            cell(f"{run[name]['p50'] * 1e6:.1f} / {run[name]['p99'] * 1e6:.1f} us")
            for run in concurrent
        ]
        verdict = ""
        if name != "bare":
            missed = any(run[name]["p99"] >= 0.050 for run in concurrent)
            verdict = f"  target p99 < 50 ms {'MISSED' if missed else 'ok'}"
        line(f"{label} made -> consumed, p50 / p99", delays, verdict)

    memory = [bench_memory(flows, backend) for backend in BACKENDS]
    heading(f"memory per suspended run ({flows:,} at once)")
    line(
        "bare async generator and its task",
        [cell(f"{size['bare'] / 1e3:.1f} KB") for size in memory],
    )
    line(
        "ours flow and its consumer task",
        [cell(f"{size['ours'] / 1e3:.1f} KB", size["ours"] / size["bare"]) for size in memory],
    )


if __name__ == "__main__":
    main()
