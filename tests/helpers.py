"""Helpers shared by the test modules: random graphs of plain and streaming nodes (nested flows,
batch nodes, batch flows, random loops) built against PocketFlow or pocketflow_stream, and
views of what a run yields that compare across runs.

Every node's action is chosen from its script by a step counter in `shared`, so two runs of one
graph take the same path; once the counter reaches the limit every node returns "stop" (which
no node is wired for), so every random loop ends.
"""

from __future__ import annotations

import itertools
import warnings
from typing import Any, Dict, List, Optional, Tuple

import pocketflow
from hypothesis import strategies as st

import pocketflow_stream
from pocketflow_stream import Chunk

# "c" is never wired: the flow ends there
SCRIPT_ACTIONS = [None, "default", "a", "a", "b", "b", "c"]
WIRED_ACTIONS = ["default", "a", "b"]
LEAF_KINDS = ["node", "batch"]
STREAM_KINDS = ["stream", "stream_batch"]


# --- graph specs ---------------------------------------------------------------------------


@st.composite
def graph_specs(draw, depth: int, streaming: bool) -> Dict[str, Any]:
    """A graph: node specs (the first is the start) and wiring {(source, action): target}."""
    kinds = LEAF_KINDS + (STREAM_KINDS * 2 if streaming else [])
    if depth > 0:
        kinds += ["flow", "batch_flow", "batch_flow"]
    size = draw(st.integers(1, 4))
    nodes = []
    for _ in range(size):
        kind = draw(st.sampled_from(kinds))
        spec: Dict[str, Any] = {
            "kind": kind,
            "script": draw(st.lists(st.sampled_from(SCRIPT_ACTIONS), min_size=1, max_size=3)),
        }
        if kind in LEAF_KINDS or kind in STREAM_KINDS:
            spec["failure"] = draw(st.sampled_from(["none", "none", "first", "always"]))
        if kind in ("batch", "stream_batch"):
            spec["items"] = draw(st.one_of(st.none(), st.integers(0, 3)))
        if kind in STREAM_KINDS:
            spec["chunks"] = draw(st.one_of(st.just(0), st.integers(1, 3)))
        if kind in ("flow", "batch_flow"):
            spec["graph"] = draw(graph_specs(depth - 1, streaming))
        if kind == "batch_flow":
            spec["batches"] = draw(st.one_of(st.none(), st.integers(0, 3), st.integers(1, 3)))
        nodes.append(spec)
    wiring = {}
    for source in range(size):
        for action in WIRED_ACTIONS:
            target = draw(st.one_of(st.none(), st.integers(0, size - 1)))
            if target is not None:
                wiring[(source, action)] = target
    return {"nodes": nodes, "wiring": wiring}


def plain_graphs():
    return graph_specs(2, streaming=False)


def any_graphs():
    return graph_specs(2, streaming=True)


limits = st.integers(1, 30)


# --- node classes, one set per module ------------------------------------------------------


def params_view(params) -> Tuple[Tuple[str, Any], ...]:
    return tuple(sorted(params.items()))


def batch_view(params) -> Optional[Tuple[Any, Any]]:
    return (params["batch_of"], params["i"]) if "batch_of" in params else None


def choose(node, shared) -> Optional[str]:
    if shared["steps"] >= shared["limit"]:
        return "stop"
    return node.script[shared["steps"] % len(node.script)]


def fails(node) -> bool:
    return node.failure == "always" or (node.failure == "first" and node.cur_retry == 0)


def make_classes(module) -> Dict[str, type]:
    """The node and flow classes of the random graphs, written against `module`'s API."""

    class Leaf(module.Node):
        def prep(self, shared):
            shared["log"].append(("prep", self.label, params_view(self.params)))
            if self.kind in ("batch", "stream_batch"):
                return None if self.items is None else list(range(self.items))
            return shared["steps"]

        def exec(self, prep_res):
            if fails(self):
                raise ValueError(f"{self.label} failed on attempt {self.cur_retry}")
            return (self.label, prep_res, self.cur_retry)

        def exec_fallback(self, prep_res, exc):
            return ("fallback", self.label, prep_res, self.cur_retry, str(exc))

        def post(self, shared, prep_res, exec_res):
            shared["log"].append(("post", self.label, exec_res))
            shared["steps"] += 1
            return choose(self, shared)

    class Batch(Leaf, module.BatchNode):
        pass

    class SubFlow(module.Flow):
        def prep(self, shared):
            shared["log"].append(("flow", self.label, params_view(self.params)))

    class Batches(module.BatchFlow):
        def prep(self, shared):
            shared["log"].append(("batch flow", self.label, params_view(self.params)))
            if self.batches is None:
                return None
            return [{"batch_of": self.label, "i": index} for index in range(self.batches)]

        def post(self, shared, prep_res, exec_res):
            shared["log"].append(("batch flow post", self.label, prep_res, exec_res))
            shared["steps"] += 1
            return choose(self, shared)

    classes = {"node": Leaf, "batch": Batch, "flow": SubFlow, "batch_flow": Batches}
    if module is pocketflow_stream:

        class Streams(Leaf, module.StreamNode):
            def exec_stream(self, prep_res):
                self.tracker.append(("open", self.label))
                try:
                    yield from self.emit(prep_res, None, self.cur_retry)
                    if fails(self):
                        raise ValueError(f"{self.label} failed on attempt {self.cur_retry}")
                    return (self.label, prep_res, self.cur_retry)
                finally:
                    self.tracker.append(("closed", self.label))

            def exec_fallback(self, prep_res, exc):
                yield from self.emit(prep_res, None, "fallback")
                return ("fallback", self.label, prep_res, str(exc))

            def emit(self, prep_res, item, attempt):
                for index in range(self.chunks):
                    data = (
                        self.label,
                        prep_res if item is None else None,
                        index,
                        attempt,
                        item,
                        batch_view(self.params),
                    )
                    self.production.append(data)
                    yield data

        class StreamBatch(Streams, module.StreamBatchNode):
            def exec_stream(self, item):
                self.tracker.append(("open", self.label))
                try:
                    yield from self.emit(None, item, self.cur_retry)
                    if fails(self):
                        raise ValueError(f"{self.label} failed on attempt {self.cur_retry}")
                    return (self.label, item, self.cur_retry)
                finally:
                    self.tracker.append(("closed", self.label))

            def exec_fallback(self, item, exc):
                yield from self.emit(None, item, "fallback")
                return ("fallback", self.label, item, str(exc))

        classes["stream"] = Streams
        classes["stream_batch"] = StreamBatch
    return classes


CLASSES = {module: make_classes(module) for module in (pocketflow, pocketflow_stream)}


class Built:
    """A graph built from a spec: the flow to run, and what its nodes record outside `shared`."""

    def __init__(self, module, spec: Dict[str, Any], *, max_steps: Optional[int] = None) -> None:
        self.module = module
        self.ours = module is pocketflow_stream
        self.production: List[Any] = []  # every chunk a node yielded, in order
        self.tracker: List[Any] = []  # exec_stream generators opened and closed
        self.expected: Dict[str, Tuple[Tuple[str, ...], Optional[str]]] = {}  # label: path, batch
        self.labels = itertools.count()
        start = self.build(spec, (), None)
        root_class = module.StreamFlow if self.ours else module.Flow
        self.flow = root_class(start=start, max_steps=max_steps) if self.ours else root_class(start)
        self.flow.set_params({"root": True})

    def build(self, spec, path: Tuple[str, ...], batch_scope: Optional[str]):
        classes = CLASSES[self.module]
        built = []
        for node_spec in spec["nodes"]:
            kind = node_spec["kind"]
            label = f"{kind}{next(self.labels)}"
            if kind in ("flow", "batch_flow"):
                inner_scope = label if kind == "batch_flow" else batch_scope
                node = classes[kind](
                    start=self.build(node_spec["graph"], path + (label,), inner_scope)
                )
                node.batches = node_spec.get("batches")
            else:
                retries = 1 if node_spec["failure"] == "none" else 2
                node = classes[kind](max_retries=retries)
                node.failure = node_spec["failure"]
                node.items = node_spec.get("items")
                node.chunks = node_spec.get("chunks", 0)
            node.kind = kind
            node.label = label
            node.script = node_spec["script"]
            node.production = self.production
            node.tracker = self.tracker
            if self.ours:
                node.name = label
            self.expected[label] = (path + (label,), batch_scope)
            built.append(node)
        for (source, action), target in spec["wiring"].items():
            if action == "default":
                built[source] >> built[target]
            else:
                built[source] - action >> built[target]
        return built[0]


def fresh_shared(limit: int) -> Dict[str, Any]:
    return {"steps": 0, "limit": limit, "log": []}


def outcome_of(run) -> Tuple[Any, List[str]]:
    """(("action", action) or ("error", type, message, node_path), warning messages)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result: Any = ("action", run())
        except AssertionError:  # a check inside `run` failed: that is the test's, not the run's
            raise
        except Exception as error:
            result = ("error", type(error).__name__, str(error), getattr(error, "node_path", None))
    return result, [str(warning.message) for warning in caught]


def pull(stream, into: List[Any]):
    """Drain a run_stream generator into `into`; return its return value."""
    while True:
        try:
            into.append(next(stream))
        except StopIteration as stop:
            return stop.value


def timeless(event) -> Dict[str, Any]:
    """An event's JSON form without its duration, which differs from run to run."""
    described = event.to_dict()
    described.pop("duration", None)
    return described


def tags(chunk: Chunk):
    batch = None if chunk.batch is None else dict(chunk.batch)
    return (chunk.node, chunk.path, chunk.data, chunk.item, chunk.attempt, batch)


# --- provider streams ----------------------------------------------------------------------


def rotate_item_ids(events: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Give every event its own item id, as GitHub Copilot's /responses endpoint does: for one
    output item, `output_item.added`, each part and delta event and `output_item.done` all carry
    different ids while `output_index` stays (https://github.com/BerriAI/litellm/pull/30072)."""
    rotated = []
    for number, original in enumerate(events):
        copy = dict(original)
        if "item_id" in copy:
            copy["item_id"] = f"enc_{number}"
        if isinstance(copy.get("item"), dict) and "id" in copy["item"]:
            copy["item"] = {**copy["item"], "id": f"enc_{number}"}
        rotated.append(copy)
    return rotated
