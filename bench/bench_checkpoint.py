"""Checkpoint benchmarks: every figure is a ratio against a baseline measured in this run.

    python bench/bench_checkpoint.py          # needs the bench extra: pip install -e .[bench]
    python bench/bench_checkpoint.py --quick

1. A checkpointed node step of a durable run (a two-node loop, 1 KB `shared`, SQLiteStore's
   default durability "node"): the engine's position, the strict JSON walk, the record, the
   compare-and-set save and its commit, after every node — against a bare
   `BEGIN IMMEDIATE; INSERT ... ON CONFLICT DO UPDATE; COMMIT` of the same bytes (one of the
   run's checkpoints) on the same kind of file. Target <= 1.5x.
2. The same two-node loop checkpointed by LangGraph's SQLite checkpointer (SqliteSaver), per
   step, against ours. Target: ours at least 10x cheaper.
3. Each durability mode's cost per step ("node", "power", "pause"), and "power" against a
   bare upsert committed with synchronous=FULL.
   Where a checkpointed step's time goes, from runs of the same loop in the same rounds: the
   node step itself (an uncheckpointed walk), the engine's checkpointed path with its
   position (a walk whose checkpoint callable does nothing), the durable run layer (the strict
   walks, the record's encoding: a durable run on a store that keeps nothing), and the store's
   save and commit (the rest); with the strict walk and the encoding of one checkpoint timed
   on their own.
4. Uncheckpointed runs are unchanged: a plain run with the persist layer imported against one
   in a process that never imported it.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict

from typing_extensions import TypedDict

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # measure this checkout

# `shared` of about 1 KB, shaped like an agent's: a few messages and counters
MESSAGES = [
    {"role": "user", "content": "Find the three largest files under /srv and summarise them."},
    {"role": "assistant", "content": "I will list the directory first.", "tool_calls": []},
    {"role": "tool", "name": "list_dir", "content": "a.log 120MB\nb.db 80MB\nc.tar 40MB"},
    {"role": "assistant", "content": "The largest are a.log (120 MB), b.db and c.tar. " * 10},
]


def best_of(repeats: int, measure: Callable[[], float]) -> float:
    return min(measure() for _ in range(repeats))


def interleaved(repeats: int, *measures: Callable[[], float]) -> list:
    """The best of `repeats` rounds of each measure, taken in turns, so that a machine shared
    with other work slows each of them alike."""
    best = [float("inf")] * len(measures)
    for _ in range(repeats):
        for index, measure in enumerate(measures):
            best[index] = min(best[index], measure())
    return best


def fresh_file(folder: str, name: str) -> str:
    path = os.path.join(folder, name)
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    return path


# --- 1. a checkpointed step against a bare upsert commit ---------------------------------


def bare_upsert(folder: str, steps: int, text: str, synchronous: str = "NORMAL") -> float:
    """The floor: the same bytes written and committed the cheapest correct way."""
    path = fresh_file(folder, "bare.db")
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.execute("CREATE TABLE runs (run_id TEXT PRIMARY KEY, seq INTEGER, record TEXT)")
    upsert = (
        "INSERT INTO runs (run_id, seq, record) VALUES (?, ?, ?) "
        "ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq, record = excluded.record"
    )
    gc.collect()
    start = time.perf_counter()
    for seq in range(steps):
        db.execute("BEGIN IMMEDIATE")
        db.execute(upsert, ("run", seq, text))
        db.execute("COMMIT")
    elapsed = time.perf_counter() - start
    db.close()
    return elapsed / steps


def make_loop(turns: int) -> Any:
    """The same two-node loop as bench_core's: plan -"act"-> act -> plan ..., `turns` turns."""
    import pocketflow_stream as pfs

    class Plan(pfs.Node):
        def post(self, shared: Any, prep_res: Any, exec_res: Any) -> str:
            shared["turn"] += 1
            return "act" if shared["turn"] < turns else "done"

    class Act(pfs.Node):
        pass

    plan, act = Plan(), Act()
    plan - "act" >> act
    act >> plan
    plan - "done" >> pfs.Node(name="End")
    return pfs.Flow(start=plan, name="Loop")


def durable_step(folder: str, turns: int, durability: str = "node") -> float:
    """A checkpointed node step of a real durable run: the engine's position, the strict
    JSON walk, the record, the compare-and-set save and its commit, after every node."""
    from pocketflow_stream.persist import DurableRuns, SQLiteStore

    path = fresh_file(folder, f"durable-{durability}.db")
    runs = DurableRuns(make_loop(turns), SQLiteStore(path, durability=durability), ttl=600)
    try:
        return timed_run(runs, turns)
    finally:
        runs.store.close()


def timed_run(runs: Any, turns: int) -> float:
    """Seconds per node step of a durable run of the loop, from its start to its end."""
    shared = {"turn": 0, "messages": MESSAGES, "done": False}
    gc.collect()
    start = time.perf_counter()
    run = runs.start(shared)
    for _ in run:
        pass
    elapsed = time.perf_counter() - start
    assert run.status == "done" and shared["turn"] == turns
    return elapsed / (2 * turns)


def durable_record_text(folder: str) -> str:
    """The bytes one checkpoint of that run commits (for the bare baseline)."""
    from pocketflow_stream.persist import DurableRuns, SQLiteStore

    path = fresh_file(folder, "sample.db")
    runs = DurableRuns(make_loop(3), SQLiteStore(path))
    run = runs.start({"turn": 0, "messages": MESSAGES, "done": False})
    items = iter(run)
    for _ in items:
        pass
    record = runs.store.load(run.run_id)
    assert record is not None
    runs.store.close()
    return record.to_json(record.seq, record.updated_at)


# --- where the time goes -------------------------------------------------------------------


def walk_step(turns: int, checkpointed: bool) -> float:
    """The same loop walked by the engine: without checkpoints, or with a checkpoint callable
    that does nothing (the engine's checkpointed path and its position, nothing else)."""
    from pocketflow_stream import engine

    options: Dict[str, Any] = {}
    if checkpointed:  # as a durable run walks it
        options = {"checkpoint": lambda position: None, "stop": engine.StopSignal()}
    shared = {"turn": 0, "messages": MESSAGES, "done": False}
    flow = make_loop(turns)
    gc.collect()
    start = time.perf_counter()
    for _ in engine.walk(flow, shared, **options):
        pass
    elapsed = time.perf_counter() - start
    assert shared["turn"] == turns
    return elapsed / (2 * turns)


def null_store_step(turns: int) -> float:
    """A durable run on a store that keeps nothing: the engine, the strict walks of `shared`
    and the position, the record and its encoding; no save."""
    from pocketflow_stream.persist import DurableRuns, Store
    from pocketflow_stream.persist.store import Lease

    class NullStore(Store):
        blocking = False

        def claim(self, run_id: str, owner: str, ttl: float = 30.0) -> Lease:
            return Lease(run_id, owner, "token", ttl, time.time() + ttl)

        def renew(self, lease: Lease) -> Lease:
            return lease

        def release(self, lease: Lease) -> None:
            pass

        def save(self, lease: Lease, seq_expected: int, record: Any) -> int:
            return seq_expected + 1

        def load(self, run_id: str, seq: Any = None) -> None:
            return None

        def list(self, status: Any = None, limit: Any = None) -> list:
            return []

        def seqs(self, run_id: str) -> list:
            return []

        def delete(self, run_id: str) -> bool:
            return False

    return timed_run(DurableRuns(make_loop(turns), NullStore(), ttl=600), turns)


def sample_position() -> Dict[str, Any]:
    """A position the engine hands to the checkpoint callable between the loop's nodes."""
    from pocketflow_stream import engine

    positions: list = []
    for _ in engine.walk(make_loop(3), {"turn": 0}, checkpoint=positions.append):
        pass
    return positions[1]  # type: ignore[no-any-return]


def strict_walks(steps: int, position: Dict[str, Any]) -> float:
    """The strict walks of one checkpoint (`shared` and the position) on their own."""
    from pocketflow_stream.persist.strict_json import Codecs, encode

    codecs = Codecs().with_tuples()
    shared = {"turn": 0, "messages": MESSAGES, "done": False}
    gc.collect()
    start = time.perf_counter()
    for _ in range(steps):
        encode(shared, None, writer="Plan")
        encode(position, codecs, root="position", writer="Plan")
    return (time.perf_counter() - start) / steps


def record_encoding(steps: int, position: Dict[str, Any]) -> float:
    """The JSON encoding of one checkpoint's values (`shared` and the position) on its own."""
    from pocketflow_stream.persist.strict_json import dumps_checked

    shared = {"turn": 0, "messages": MESSAGES, "done": False}
    gc.collect()
    start = time.perf_counter()
    for _ in range(steps):
        dumps_checked(position)
        dumps_checked(shared)
    return (time.perf_counter() - start) / steps


# --- 2. LangGraph's SQLite checkpointer on the same loop ---------------------------------


def langgraph_step(folder: str, turns: int) -> float:
    from langgraph.checkpoint.sqlite import SqliteSaver
    from langgraph.graph import END, START, StateGraph

    class State(TypedDict):
        turn: int
        turns: int
        messages: list

    def plan(state: Dict[str, Any]) -> Dict[str, Any]:
        return {"turn": state["turn"] + 1}

    def act(state: Dict[str, Any]) -> Dict[str, Any]:
        return {}

    def route(state: Dict[str, Any]) -> str:
        return "act" if state["turn"] < state["turns"] else END

    graph = StateGraph(State)
    graph.add_node("plan", plan)
    graph.add_node("act", act)
    graph.add_edge(START, "plan")
    graph.add_conditional_edges("plan", route, ["act", END])
    graph.add_edge("act", "plan")
    path = fresh_file(folder, "langgraph.db")
    connection = sqlite3.connect(path, check_same_thread=False)
    app = graph.compile(checkpointer=SqliteSaver(connection))
    config = {"configurable": {"thread_id": "bench"}, "recursion_limit": 4 * turns + 10}
    gc.collect()
    start = time.perf_counter()
    final = app.invoke({"turn": 0, "turns": turns, "messages": MESSAGES}, config)
    elapsed = time.perf_counter() - start
    assert final["turn"] == turns
    connection.close()
    return elapsed / (2 * turns - 1)


# --- 4. uncheckpointed runs with and without the persist layer imported ------------------

PLAIN_LOOP = """
import sys, time, gc
sys.path.insert(0, {root!r})
import pocketflow_stream as pfs
if {imported}:
    import pocketflow_stream.persist  # noqa: F401
class Plan(pfs.Node):
    def post(self, shared, prep_res, exec_res):
        shared["turn"] += 1
        return "act" if shared["turn"] < shared["turns"] else "done"
class Act(pfs.Node):
    pass
plan, act = Plan(), Act()
plan - "act" >> act
act >> plan
flow = pfs.Flow(start=plan)
best = float("inf")
for _ in range(5):
    shared = {{"turn": 0, "turns": {turns}}}
    gc.collect()
    start = time.perf_counter()
    for _ in flow.run_stream(shared):
        pass
    best = min(best, (time.perf_counter() - start) / (2 * {turns} - 1))
print(best)
"""


def plain_step(imported: bool, turns: int) -> float:
    root = str(Path(__file__).resolve().parent.parent)
    script = PLAIN_LOOP.format(root=root, imported=imported, turns=turns)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(done.stderr)
    return float(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="a smaller, noisier run")
    args = parser.parse_args()
    turns = 250 if args.quick else 1500
    lg_turns = 100 if args.quick else 500
    repeats = 3 if args.quick else 5
    results: Dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        text = durable_record_text(folder)
        results["record_bytes"] = len(text)
        steps = 2 * turns
        power_turns = max(turns // 10, 20)
        position = sample_position()
        measures: Dict[str, Callable[[], float]] = {
            "bare_upsert": lambda: bare_upsert(folder, steps, text),
            "durability_node": lambda: durable_step(folder, turns),
            "durability_pause": lambda: durable_step(folder, turns, "pause"),
            "durability_power": lambda: durable_step(folder, power_turns, "power"),
            "bare_full": lambda: bare_upsert(folder, 2 * power_turns, text, "FULL"),
            "plain_walk": lambda: walk_step(turns, False),
            "engine_checkpointed": lambda: walk_step(turns, True),
            "null_store": lambda: null_store_step(turns),
            "strict_walks": lambda: strict_walks(steps, position),
            "record_encoding": lambda: record_encoding(steps, position),
        }
        try:
            import langgraph.checkpoint.sqlite  # noqa: F401
        except ImportError:
            print("LangGraph is not installed (pip install -e .[bench]): skipping its figure")
        else:
            measures["langgraph_step"] = lambda: langgraph_step(folder, lg_turns)
        best = interleaved(repeats, *measures.values())
        for name, seconds in zip(measures, best):
            results[f"{name}_us"] = seconds * 1e6
        ours = results["durability_node_us"]
        results["durable_step_us"] = ours
        results["durable_vs_bare"] = ours / results["bare_upsert_us"]
        results["power_vs_bare_full"] = results["durability_power_us"] / results["bare_full_us"]
        if "langgraph_step_us" in results:
            results["langgraph_vs_ours"] = results["langgraph_step_us"] / ours
        results["breakdown_us"] = {
            "node step": results["plain_walk_us"],
            "engine checkpoint path and position": results["engine_checkpointed_us"]
            - results["plain_walk_us"],
            "durable run layer (strict walks, record, encoding)": results["null_store_us"]
            - results["engine_checkpointed_us"],
            "store save and commit": ours - results["null_store_us"],
        }
    loop_turns = 20_000 if args.quick else 100_000
    without = plain_step(False, loop_turns)
    with_persist = plain_step(True, loop_turns)
    results["plain_step_ns"] = without * 1e9
    results["plain_step_with_persist_imported_ratio"] = with_persist / without

    print(f"one checkpoint: {results['record_bytes']} bytes of JSON")
    print(
        f"checkpointed node step (durable run, durability 'node') / bare upsert commit of the "
        f"same bytes: {results['durable_vs_bare']:.2f}x ({results['durable_step_us']:.1f} us "
        f"vs {results['bare_upsert_us']:.1f} us; target <= 1.5x)"
    )
    if "langgraph_step_us" in results:
        print(
            f"LangGraph SqliteSaver step / ours: {results['langgraph_vs_ours']:.1f}x "
            f"({results['langgraph_step_us']:.0f} us; target >= 10x)"
        )
    for durability in ("node", "power", "pause"):
        print(f"durability {durability!r}: {results[f'durability_{durability}_us']:.1f} us/step")
    print(
        f"durability 'power' / a bare upsert commit with synchronous=FULL: "
        f"{results['power_vs_bare_full']:.2f}x ({results['bare_full_us']:.1f} us)"
    )
    print(
        f"where a checkpointed 'node' step's {ours:.1f} us go (differences of runs in the same "
        f"rounds; the bare commit is {results['bare_upsert_us']:.1f} us):"
    )
    for part, us in results["breakdown_us"].items():
        print(f"  {part}: {us:.1f} us ({us / results['bare_upsert_us']:.2f}x the bare commit)")
    print(
        f"  of the durable run layer, on their own: the strict walks of shared and the "
        f"position {results['strict_walks_us']:.1f} us, their JSON encoding "
        f"{results['record_encoding_us']:.1f} us"
    )
    print(
        f"uncheckpointed step with persist imported / without: "
        f"{results['plain_step_with_persist_imported_ratio']:.2f}x "
        f"({results['plain_step_ns']:.0f} ns)"
    )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
