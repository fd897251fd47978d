"""What a streamed run yields: chunks (the default) and lifecycle events (opt-in).

A closed set of small immutable objects, each with a JSON-ready `to_dict()`, so a stream can
cross a process boundary (SSE, a websocket, a queue) unchanged. This module knows nothing of
nodes, flows or the engine's frames: the engine hands it an `Origin` and the data.
"""

from __future__ import annotations

from dataclasses import field, fields
from typing import Any, ClassVar, Dict, Iterator, Mapping, Optional, Tuple, Union

from ._compat import frozen_slots

__all__ = [
    "Origin",
    "Chunk",
    "NodeStarted",
    "NodeFinished",
    "Retry",
    "FlowFinished",
    "Progress",
    "Ask",
    "Interrupt",
    "Event",
    "StreamItem",
    "json_ready",
]


def json_ready(value: Any) -> Any:
    """`value` with every object that has a `to_dict()` replaced by it (recursively through
    lists, tuples and dicts), so `json.dumps` can take it when the app's data is JSON-able."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    if isinstance(value, Mapping):
        return {key: json_ready(item) for key, item in value.items()}
    return value


class Origin:
    """Where chunks come from: one node, at one place in the flow, for one batch item and one
    attempt. Made once per node run (not per chunk) and shared by all the chunks it makes.

    The path is kept as a link to the enclosing flow's origin and built on demand, so flows
    nested ten thousand deep cost constant memory per level.
    """

    __slots__ = ("name", "parent", "batch", "item", "attempt", "replay")
    name: str
    parent: Optional[Origin]
    batch: Optional[Mapping[str, Any]]
    item: Optional[int]
    attempt: int
    replay: bool  # chunks re-made on the way back to a pause, resuming from a checkpoint

    def __init__(
        self,
        name: str,
        parent: Optional[Origin] = None,
        batch: Optional[Mapping[str, Any]] = None,
        item: Optional[int] = None,
        attempt: int = 0,
        replay: bool = False,
    ) -> None:
        _set = object.__setattr__  # shared by every chunk of a node run: immutable once made
        _set(self, "name", name)
        _set(self, "parent", parent)
        _set(self, "batch", batch)
        _set(self, "item", item)
        _set(self, "attempt", attempt)
        _set(self, "replay", replay)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Origin is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Origin is immutable: cannot delete {name!r}")

    def __reduce__(self) -> Any:
        return (
            Origin,
            (self.name, self.parent, self.batch, self.item, self.attempt, self.replay),
        )

    @property
    def path(self) -> Tuple[str, ...]:
        names = []
        origin: Optional[Origin] = self
        while origin is not None:
            names.append(origin.name)
            origin = origin.parent
        names.reverse()
        return tuple(names)

    def __repr__(self) -> str:
        return (
            f"Origin(path={self.path!r}, item={self.item!r}, attempt={self.attempt!r}, "
            f"batch={self.batch!r})"
        )


class Chunk(tuple[Any, ...]):  # (origin, data[, id]); typing.Tuple would put Generic in the MRO
    """One value a node yielded, tagged with where it came from.

    - `data`: what the node yielded, untouched.
    - `node`: the node's name (its `name` if given, else its class name).
    - `path`: names from the outermost flow below the one being run down to the node.
    - `item`: the batch item's index for a StreamBatchNode (or an async batch node), else None.
    - `attempt`: 0 for the first try; a retried node's chunks carry the retry's number.
    - `batch`: the params of the innermost (Async, Parallel) BatchFlow iteration the node runs
      in, else None.

    - `id` (also `seq`): in a checkpointed run, the item's run-unique increasing number (the
      same when the chunk is re-made on resume); None otherwise.
    - `replay`: True for a chunk re-made on the way back to a pause when a run resumes from a
      checkpoint (it carries its original `id`: a relay that delivered it drops it).

    A chunk is the pair `(origin, data)` underneath, made as `Chunk((origin, data))`: it is
    the one object made per chunk, and a tuple subclass without a Python-level `__new__` is the
    cheapest immutable object Python can make. A checkpointed run's chunks are the triple
    `(origin, data, id)`.
    """

    __slots__ = ()
    type: ClassVar[str] = "chunk"

    @property
    def origin(self) -> Origin:
        origin: Origin = self[0]
        return origin

    @property
    def data(self) -> Any:
        return self[1]

    @property
    def node(self) -> str:
        origin: Origin = self[0]
        return origin.name

    @property
    def path(self) -> Tuple[str, ...]:
        origin: Origin = self[0]
        return origin.path

    @property
    def item(self) -> Optional[int]:
        origin: Origin = self[0]
        return origin.item

    @property
    def attempt(self) -> int:
        origin: Origin = self[0]
        return origin.attempt

    @property
    def batch(self) -> Optional[Mapping[str, Any]]:
        origin: Origin = self[0]
        return origin.batch

    @property
    def id(self) -> Optional[int]:
        number: Optional[int] = self[2] if len(self) > 2 else None
        return number

    seq = id

    @property
    def replay(self) -> bool:
        origin: Origin = self[0]
        return origin.replay

    def to_dict(self) -> Dict[str, Any]:
        origin: Origin = self[0]
        out = {
            "type": "chunk",
            "node": origin.name,
            "path": list(origin.path),
            "item": origin.item,
            "attempt": origin.attempt,
            "batch": None if origin.batch is None else json_ready(dict(origin.batch)),
            "data": json_ready(self[1]),
        }
        if len(self) > 2:
            out["id"] = self[2]
        if origin.replay:
            out["replay"] = True
        return out

    def __repr__(self) -> str:
        origin: Origin = self[0]
        checkpointed = f", id={self[2]!r}" if len(self) > 2 else ""
        if origin.replay:
            checkpointed += ", replay=True"
        return (
            f"Chunk(node={origin.name!r}, path={origin.path!r}, data={self[1]!r}, "
            f"item={origin.item!r}, attempt={origin.attempt!r}, batch={origin.batch!r}"
            f"{checkpointed})"
        )


class FrozenParams(Mapping[str, Any]):
    """A batch iteration's params as `Chunk.batch` and the events' `batch` hold them: read-only,
    equal to the dict it was made from, hashable (by its items) when its values are, so an event
    with a `batch` hashes and pickles like one without."""

    __slots__ = ("_params",)
    _params: Dict[str, Any]

    def __init__(self, params: Mapping[str, Any]) -> None:
        object.__setattr__(self, "_params", dict(params))

    def __getitem__(self, key: str) -> Any:
        return self._params[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._params)

    def __len__(self) -> int:
        return len(self._params)

    def __hash__(self) -> int:
        return hash(frozenset(self._params.items()))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FrozenParams):
            return self._params == other._params
        return self._params == other

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"batch params are read-only: cannot set {name!r}")

    def __reduce__(self) -> Any:
        return (FrozenParams, (self._params,))

    def __repr__(self) -> str:
        return repr(self._params)


def freeze_params(params: Mapping[str, Any]) -> Mapping[str, Any]:
    """A read-only copy of a batch iteration's params, for `Chunk.batch`."""
    return FrozenParams(params)


class _EventBase:
    """`to_dict()`: every field, JSON-ready; `id` only in a checkpointed run (where every item
    carries one), `handle` never (a live object)."""

    __slots__ = ()
    type: ClassVar[str]

    def to_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"type": self.type}
        for each in fields(self):  # type: ignore[arg-type]
            name = each.name
            value = getattr(self, name)
            if name == "handle" or (value is None and name in ("id", "seq")):
                continue
            out[name] = list(value) if name == "path" else json_ready(value)
        return out

    @property
    def seq(self) -> Optional[int]:
        """The item's run-unique increasing number in a checkpointed run, else None."""
        return getattr(self, "id", None)


@frozen_slots
class NodeStarted(_EventBase):
    """A flow stepped into a node (a sub-flow counts as a node of its flow). `batch`: the
    params of the BatchFlow iteration it runs in, as on its chunks."""

    type: ClassVar[str] = "node_started"
    node: str
    path: Tuple[str, ...]
    batch: Optional[Mapping[str, Any]] = None
    id: Optional[int] = None


@frozen_slots
class NodeFinished(_EventBase):
    """A node's post returned `action`, `duration` seconds after it started (`batch` as on
    NodeStarted)."""

    type: ClassVar[str] = "node_finished"
    node: str
    path: Tuple[str, ...]
    action: Optional[str]
    duration: float
    batch: Optional[Mapping[str, Any]] = None
    id: Optional[int] = None


@frozen_slots
class Retry(_EventBase):
    """Attempt `attempt` (0-based) of a node (of batch item `item`) failed with `error`; the
    next attempt (or, after the last, exec_fallback as attempt `max_retries`) follows. Chunks of
    that node and item with this `attempt` belong to the failed try: a UI drops them."""

    type: ClassVar[str] = "retry"
    node: str
    path: Tuple[str, ...]
    item: Optional[int]
    attempt: int
    error: str
    batch: Optional[Mapping[str, Any]] = None
    id: Optional[int] = None


@frozen_slots
class FlowFinished(_EventBase):
    """The flow (or the node) being run finished with `action` (always the last item of a
    stream that ran to its end)."""

    type: ClassVar[str] = "flow_finished"
    node: str
    path: Tuple[str, ...]
    action: Optional[str]
    duration: float
    id: Optional[int] = None


@frozen_slots
class Progress(_EventBase):
    """`done` of a batch node's `total` items are finished (opt-in: `progress=True`, or with
    `events=True`); `batch` as on NodeStarted."""

    type: ClassVar[str] = "progress"
    node: str
    path: Tuple[str, ...]
    done: int
    total: int
    batch: Optional[Mapping[str, Any]] = None
    id: Optional[int] = None


class Ask:
    """What a streaming node yields to pause the run and wait for an answer::

        answer = yield Ask({"question": "Send the e-mail?"})   # in exec_stream

    `payload` is JSON-ready data for the front end (a question, a tool call to approve, a
    form). The stream shows an `Interrupt` carrying it; the run goes on when the answer comes
    (see README, "Pause and resume")."""

    __slots__ = ("payload",)

    def __init__(self, payload: Any = None) -> None:
        self.payload = payload

    def __repr__(self) -> str:
        return f"Ask({self.payload!r})"


@frozen_slots
class Interrupt(_EventBase):
    """The run paused to wait for input: always yielded (whether events are on or not), then
    the stream ends. `id` is deterministic (node path, steps, batch item, ask number) and is
    what the answer is given for; `payload` is what the node asked with; `node`, `path`,
    `item`, `batch` say where. `seq` is its number in a checkpointed run. `handle` is the
    `Paused` handle of the run (never in `to_dict()`), to answer and resume in-process."""

    type: ClassVar[str] = "interrupt"
    id: str
    payload: Any
    node: str
    path: Tuple[str, ...]
    item: Optional[int] = None
    batch: Optional[Mapping[str, Any]] = None
    seq: Optional[int] = None
    handle: Any = field(default=None, compare=False, repr=False)

    def __reduce__(self) -> Any:  # the live handle does not travel
        return (
            Interrupt,
            (self.id, self.payload, self.node, self.path, self.item, self.batch, self.seq),
        )


Event = Union[NodeStarted, NodeFinished, Retry, FlowFinished, Progress, Interrupt]
StreamItem = Union[Chunk, Event]
