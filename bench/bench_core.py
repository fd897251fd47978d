"""Core engine benchmarks: every figure is a ratio against a baseline measured in this run.

    python bench/bench_core.py            # needs the bench extra: pip install -e .[bench]

1. Per node-step cost on a two-node plan <-> action loop of trivial nodes:
   StreamFlow.run_stream and Flow.run, against PocketFlow 0.0.3's Flow.run.
   Targets: run_stream <= 0.6x, run <= 0.5x.
2. Per-chunk cost of a StreamNode's chunks coming out of run_stream through three levels of
   nested flows, against a bare `yield from` chain three generators deep. Target <= 2.5x.
   Also: the same chunks on the checked path (a run with a StopSignal), against the C path.
3. Peak memory (tracemalloc) of a 1,000,000-turn loop above a 1,000-turn loop. Target < 10 MB.
"""

from __future__ import annotations

import gc
import sys
import time
import tracemalloc
import warnings
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # measure this checkout
import pocketflow_stream as pfs  # noqa: E402

try:
    import pocketflow as pocketflow_003  # noqa: E402
except ImportError:  # pragma: no cover - the bench extra is missing
    sys.exit("bench_core needs PocketFlow 0.0.3: pip install -e .[bench]")


def best_of(repeats: int, measure: Callable[[], float]) -> float:
    return min(measure() for _ in range(repeats))


# --- 1. per node-step cost -----------------------------------------------------------------


def make_loop(module):
    """plan -"act"-> action -> plan ..., ending after shared["turns"] turns."""

    class Plan(module.Node):
        def post(self, shared, prep_res, exec_res):
            shared["turn"] += 1
            return "act" if shared["turn"] < shared["turns"] else "done"

    class Action(module.Node):
        def post(self, shared, prep_res, exec_res):
            return "default"

    plan, action = Plan(), Action()
    plan - "act" >> action
    action >> plan
    return module.Flow(start=plan)


def per_step(run: Callable[[dict], object], turns: int) -> float:
    def measure() -> float:
        shared = {"turn": 0, "turns": turns}
        gc.collect()
        start = time.perf_counter()
        run(shared)
        elapsed = time.perf_counter() - start
        assert shared["turn"] == turns
        return elapsed / (2 * turns - 1)

    return best_of(5, measure)


def bench_steps(turns: int = 100_000) -> dict:
    ours = make_loop(pfs)
    theirs = make_loop(pocketflow_003)

    def drain_stream(shared: dict) -> None:
        for _ in ours.run_stream(shared):
            pass

    baseline = per_step(theirs.run, turns)
    stream = per_step(drain_stream, turns)
    run = per_step(ours.run, turns)
    return {"pocketflow": baseline, "run_stream": stream, "run": run}


# --- 2. per-chunk cost through nested flows -------------------------------------------------


def bench_chunks(count: int = 1_000_000) -> dict:
    class Talk(pfs.StreamNode):
        def exec_stream(self, prep_res):
            for index in range(count):  # noqa: UP028 - a node making each value in Python
                yield index
            return None

    def nested(depth: int):
        flow = Talk()
        for _ in range(depth):
            flow = pfs.Flow(start=flow)
        return pfs.StreamFlow(start=flow)

    def source():
        for index in range(count):  # noqa: UP028 - the same work as the node above
            yield index
        return None

    def level(inner):
        result = yield from inner
        return result

    def chain(generators: int):
        def run() -> float:
            stream = source()
            for _ in range(generators - 1):
                stream = level(stream)
            gc.collect()
            start = time.perf_counter()
            for _ in stream:
                pass
            return (time.perf_counter() - start) / count

        return run

    def ours(depth: int, **options):
        flow = nested(depth)

        def run() -> float:
            gc.collect()
            start = time.perf_counter()
            for _ in flow.run_stream({}, **options):
                pass
            return (time.perf_counter() - start) / count

        return run

    return {
        "bare": best_of(3, chain(3)),  # the target's baseline: three generators deep
        "bare_per_level": best_of(3, chain(4)),  # the node plus one generator per flow level
        "run_stream": best_of(3, ours(2)),  # the node inside three nested flows
        "run_stream_deep": best_of(3, ours(29)),  # ... and inside thirty
        # a run with a StopSignal: chunks take the checked, send()-capable path (as do those
        # of a node that asks, and of a checkpointed run), one Python step per chunk
        "run_stream_checked": best_of(3, ours(2, stop=pfs.StopSignal())),
    }


# --- 3. memory of a long loop ---------------------------------------------------------------


def peak_memory(turns: int) -> int:
    flow = make_loop(pfs)
    shared = {"turn": 0, "turns": turns}
    gc.collect()
    tracemalloc.start()
    for _ in flow.run_stream(shared):
        pass
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def main() -> None:
    warnings.simplefilter("ignore")  # "Flow ends: 'done' not found" ends every loop, in both
    steps = bench_steps()
    print("per node-step (two-node loop, 100,000 turns)")
    print(f"  PocketFlow 0.0.3 Flow.run : {steps['pocketflow'] * 1e9:8.0f} ns")
    for key, target in (("run_stream", 0.6), ("run", 0.5)):
        ratio = steps[key] / steps["pocketflow"]
        verdict = "ok" if ratio <= target else "MISSED"
        figure = f"{steps[key] * 1e9:8.0f} ns  {ratio:.2f}x"
        print(f"  ours {key:<20} : {figure}  target <= {target}x {verdict}")

    chunks = bench_chunks()
    ratio = chunks["run_stream"] / chunks["bare"]
    verdict = "ok" if ratio <= 2.5 else "MISSED"
    print("per chunk (a StreamNode's 1,000,000 chunks)")
    print(f"  bare yield-from chain, 3 generators deep   : {chunks['bare'] * 1e9:6.0f} ns")
    figure = f"{chunks['run_stream'] * 1e9:6.0f} ns  {ratio:.2f}x"
    print(f"  ours run_stream, three nested flows        : {figure}  target <= 2.5x {verdict}")
    context = chunks["run_stream"] / chunks["bare_per_level"]
    print(
        f"  bare chain, node + a generator per level   : {chunks['bare_per_level'] * 1e9:6.0f} ns"
        f"  (ours {context:.2f}x of it)"
    )
    deep = chunks["run_stream_deep"] / chunks["run_stream"]
    print(
        f"  ours run_stream, thirty nested flows       : {chunks['run_stream_deep'] * 1e9:6.0f} ns"
        f"  {deep:.2f}x of three: nesting adds nothing per chunk"
    )
    checked = chunks["run_stream_checked"]
    print(
        f"  ours, the checked path (a StopSignal)      : {checked * 1e9:6.0f} ns"
        f"  {checked / chunks['run_stream']:.2f}x of the C path (asking nodes, checkpointed"
        " runs, stop signals only)"
    )

    small, large = peak_memory(1_000), peak_memory(1_000_000)
    extra = (large - small) / 1e6
    verdict = "ok" if extra < 10 else "MISSED"
    print("peak memory (tracemalloc), run_stream of the loop")
    print(
        f"  1,000 turns {small / 1e6:.3f} MB; 1,000,000 turns {large / 1e6:.3f} MB; "
        f"difference {extra:+.3f} MB  target < 10 MB {verdict}"
    )


if __name__ == "__main__":
    main()
