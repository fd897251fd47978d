"""What the walk knows of a graph: node kinds, node ids, successors, the graph's nodes in
order, and how a node is copied for a run.

Everything here reads the app's nodes and flows (their class attributes, `successors`,
`start_node`, names); nothing here knows frames, the walk, pausing or positions.
"""

from __future__ import annotations

import copy
import warnings
from collections import deque
from typing import Any, Callable, Dict, FrozenSet, List, Optional

from .errors import FlowError

__all__ = ["NODE", "STREAM", "FLOW", "next_node", "node_name", "given_name", "graph_nodes"]


NODE = "node"  # prep -> exec -> post (Node, BatchNode)
STREAM = "stream"  # prep -> exec_stream (a generator) -> post (StreamNode, StreamBatchNode)
FLOW = "flow"  # a graph of nodes (Flow, StreamFlow, BatchFlow)


def next_node(flow: Any, node: Any, action: Optional[str]) -> Any:
    """The node that follows `node` after `action` (not yet copied), or None if the flow ends.

    Warns, as PocketFlow does, when the node has successors but none for this action.
    """
    successors = node.successors
    following = successors.get(action or "default")
    if following is None and successors:
        warnings.warn(f"Flow ends: '{action}' not found in {list(successors)}", stacklevel=2)
    return following


def node_name(node: Any) -> str:
    """The node's id in its flow, what chunks, paths, events and `nodes=` use: its given name,
    else its class name, or for a second unnamed node of one class in one flow a distinct id
    (`Talk#2`) given by `_assign_ids` when the flow first runs."""
    return node._node_id or node.name  # type: ignore[no-any-return]


def given_name(node: Any) -> Optional[str]:
    """The name the app gave a node (`name=` or a class attribute `name`), or None."""
    if type(node).name is _NAME_PROPERTY:
        return node._name  # type: ignore[no-any-return]
    return node.name  # type: ignore[no-any-return]


_NAME_PROPERTY: Any = None  # nodes.py's BaseNode.name, set when nodes.py is imported


def _assign_ids(flow: Any) -> None:
    """Give every node of `flow`'s graph its id, once per graph (the start node keeps the mark;
    copies share it): the given name, else the class name, else `<class>#<n>` for the n-th
    unnamed node of one class met walking the graph breadth-first from the start in wiring
    order, so the same graph built twice gets the same ids. Two nodes given one name raise
    FlowError."""
    start = flow.start_node
    if start is None or getattr(start, "__dict__", {}).get("_ids_assigned"):
        return
    order = graph_nodes(flow)
    named: Dict[str, Any] = {}
    for node in order:
        name = given_name(node)
        if name is None:
            continue
        other = named.setdefault(name, node)
        if other is not node:
            flow_name = given_name(flow) or type(flow).__name__
            raise FlowError(
                f"flow {flow_name!r} has two nodes named {name!r} (a {type(other).__name__} "
                f"and a {type(node).__name__}): a node's name is its id in its flow (in chunk "
                "paths, events and checkpoints), so it must be unique there. Rename one."
            )
    taken = set(named)
    counts: Dict[str, int] = {}
    for node in order:
        name = given_name(node)
        if name is None:
            base = type(node).__name__
            count = counts.get(base, 0) + 1
            name = base if count == 1 else f"{base}#{count}"
            while name in taken:  # a given name took it
                count += 1
                name = f"{base}#{count}"
            counts[base] = count
            taken.add(name)
        try:
            node._node_id = name
        except AttributeError:  # a node class with __slots__ keeps its visible name
            pass
    try:
        start._ids_assigned = True
    except AttributeError:
        pass


def _known_names(root: Any) -> List[str]:
    """Every id in `root`'s graph and the graphs of its sub-flows (for `nodes=`)."""
    names = [node_name(root)]
    flows = [root] if root._kind is FLOW else []
    while flows:
        flow = flows.pop()
        _assign_ids(flow)
        for node in graph_nodes(flow):
            names.append(node_name(node))
            if node._kind is FLOW:
                flows.append(node)
    return names


def _check_names(root: Any, names: FrozenSet[str], option: str) -> None:
    """`nodes=` or `pause_before=` names no node or flow of the graph: say which names there
    are (checked once per run, before it starts; a flow that routes with its own
    get_next_node is not checked, as its graph is not known in advance)."""
    known = _known_names(root)
    missing = sorted(names.difference(known))
    if missing and not _routes_itself(root):
        there = ", ".join(map(repr, dict.fromkeys(known)))
        raise FlowError(
            f"{option}={sorted(names)!r}: no node or flow is named "
            f"{', '.join(map(repr, missing))} in {node_name(root)}; the names there are "
            f"{there}. Pass the names (ids) chunks carry in chunk.node."
        )


def _routes_itself(root: Any) -> bool:
    if root._kind is not FLOW:
        return False
    return type(root).get_next_node is not next_node


def graph_nodes(flow: Any) -> List[Any]:
    """The flow's nodes (the originals), breadth-first from its start in wiring order."""
    order: List[Any] = []
    seen = set()
    queue = deque([flow.start_node] if flow.start_node is not None else [])
    while queue:
        node = queue.popleft()
        if id(node) in seen:
            continue
        seen.add(id(node))
        order.append(node)
        queue.extend(node.successors.values())
    return order


_copiers: Dict[type, Callable[[Any], Any]] = {}
_SPECIAL_COPY = ("__copy__", "__reduce_ex__", "__reduce__", "__getstate__", "__setstate__")


def _copy(node: Any) -> Any:
    """`copy.copy(node)`, without copy.copy's generic machinery for plain node classes."""
    cls = type(node)
    copier = _copiers.get(cls)
    if copier is None:
        copier = _copiers[cls] = _choose_copier(cls)
    return copier(node)


def _choose_copier(cls: Any) -> Callable[[Any], Any]:
    customised = any(
        getattr(cls, name, None) is not getattr(object, name, None) for name in _SPECIAL_COPY
    )
    if customised or any("__slots__" in vars(base) for base in cls.__mro__[:-1]):
        return copy.copy

    def copy_dict(node: Any) -> Any:
        duplicate = cls.__new__(cls)
        duplicate.__dict__.update(node.__dict__)
        return duplicate

    return copy_dict
