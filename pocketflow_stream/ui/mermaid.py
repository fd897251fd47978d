"""A flow drawn as a Mermaid flowchart: nodes and the actions between them, nested flows as
subgraphs, batch and async kinds marked. From Python, `to_mermaid(flow)`; from the shell,
`python -m pocketflow_stream mermaid module:flow` (GitHub, GitLab and most Markdown viewers
render the text inside a ```` ```mermaid ```` block).

    flowchart TD
        Plan["Plan"]
        Act["Act"]
        Plan -->|"act"| Act
        Act --> Plan

Node labels are the nodes' ids in their flow, as chunk paths and events name them (the
engine's: the given `name`, else the class name, else `Class#2` for a second unnamed node of
one class); two nodes given one name in a flow raise the engine's FlowError. Shapes:
a rectangle for a node, `[[...]]` for a batch, `([...])` for async, a subgraph for a flow;
the kind is also written under the name. The start node of each flow has a thick border.

Knows nodes' public attributes (`successors`, `start_node`, `name`) and their classes; reads
the graph only, never runs it.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from typing import Any, Dict, List, Optional, Tuple

from ..async_flows import AsyncBatchFlow, AsyncFlow, AsyncParallelBatchFlow
from ..async_nodes import AsyncBatchNode, AsyncNode, AsyncParallelBatchNode
from ..engine import fingerprint, graph_nodes, node_name
from ..errors import FlowError
from ..flows import BatchFlow, Flow
from ..nodes import BaseNode, BatchNode, StreamBatchNode, StreamNode

__all__ = ["to_mermaid", "node_kind", "main"]

DIRECTIONS = ("TD", "TB", "BT", "LR", "RL")


def node_kind(node: BaseNode) -> str:
    """The words that mark a node's kind, e.g. "" (a plain node), "stream", "stream batch",
    "async", "async parallel batch", "flow", "batch flow", "async parallel batch flow"."""
    words: List[str] = []
    if isinstance(node, (AsyncNode, AsyncFlow)):
        words.append("async")
    if isinstance(node, (AsyncParallelBatchNode, AsyncParallelBatchFlow)):
        words.append("parallel")
    if not isinstance(node, Flow) and _streams(node):
        words.append("stream")
    if isinstance(node, (BatchNode, StreamBatchNode, AsyncBatchNode, BatchFlow, AsyncBatchFlow)):
        words.append("batch")
    if isinstance(node, Flow):
        words.append("flow")
    return " ".join(words)


def _streams(node: Any) -> bool:
    if isinstance(node, StreamNode):
        return True
    return isinstance(node, AsyncNode) and hasattr(type(node), "exec_stream_async")


def _graph(flow: Any) -> Tuple[List[Any], Dict[int, str]]:
    """The nodes of `flow`'s graph in the engine's order (breadth-first from its start, in
    wiring order), and the id the engine gives each (`to_mermaid` has them assigned first)."""
    order = graph_nodes(flow)
    return order, {id(node): node_name(node) for node in order}


def _label(text: str) -> str:
    return '"' + text.replace('"', "#quot;") + '"'


class _Drawing:
    def __init__(self) -> None:
        self.lines: List[str] = []
        self.used: Dict[str, int] = {}
        self.starts: List[str] = []

    def mermaid_id(self, path: Tuple[str, ...]) -> str:
        base = re.sub(r"[^A-Za-z0-9_]", "_", "__".join(path)) or "node"
        if base[0].isdigit():
            base = "n_" + base
        count = self.used.get(base, 0)
        self.used[base] = count + 1
        return base if count == 0 else f"{base}_{count + 1}"


def to_mermaid(flow: BaseNode, direction: str = "TD") -> str:
    """`flow` as the text of a Mermaid flowchart (`direction`: TD, LR, ...). A plain node is
    drawn alone. Never runs anything."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    drawing = _Drawing()
    drawing.lines.append(f"flowchart {direction}")
    if not isinstance(flow, Flow):
        name = node_name(flow)
        drawing.lines.append(f"    {_node_line(drawing.mermaid_id((name,)), name, flow)}")
        return "\n".join(drawing.lines) + "\n"
    fingerprint(flow)  # gives every node of the graph its id, as its first run would
    _draw_flow(drawing, flow)
    if drawing.starts:
        drawing.lines.append("    classDef start stroke-width:3px")
        drawing.lines.append(f"    class {','.join(drawing.starts)} start")
    return "\n".join(drawing.lines) + "\n"


def _node_line(mermaid_id: str, name: str, node: Any) -> str:
    kind = node_kind(node)
    text = name if not kind else f"{name}<br/><small>{kind}</small>"
    if "batch" in kind:
        return f"{mermaid_id}[[{_label(text)}]]"
    if "async" in kind:
        return f"{mermaid_id}([{_label(text)}])"
    return f"{mermaid_id}[{_label(text)}]"


def _draw_flow(drawing: _Drawing, root: Any) -> None:
    """Draws `root`'s graph; sub-flows become subgraphs. An explicit stack, not recursion, so
    flows nested deeper than Python's recursion limit draw too."""
    # work items: ("flow", flow, path, indent) draws a graph; ("end", indent) closes a subgraph
    work: List[Tuple[Any, ...]] = [("flow", root, (), 1)]
    edges: List[str] = []
    while work:
        entry = work.pop()
        if entry[0] == "end":
            drawing.lines.append("    " * entry[1] + "end")
            continue
        if entry[0] == "open":
            _, mermaid_id, title, level = entry
            drawing.lines.append("    " * level + f"subgraph {mermaid_id}[{_label(title)}]")
            continue
        _, flow, path, indent = entry
        pad = "    " * indent
        order, ids = _graph(flow)
        mermaid_ids: Dict[int, str] = {}
        pending: List[Tuple[Any, ...]] = []
        for node in order:
            node_path = path + (ids[id(node)],)
            mermaid_ids[id(node)] = drawing.mermaid_id(node_path)
        for node in order:
            name, mermaid_id = ids[id(node)], mermaid_ids[id(node)]
            if isinstance(node, Flow):
                pending.append((mermaid_id, name, node, path + (name,), indent))
            else:
                drawing.lines.append(pad + _node_line(mermaid_id, name, node))
        if order:
            drawing.starts.append(mermaid_ids[id(order[0])])
        for node in order:
            for action, successor in getattr(node, "successors", {}).items():
                arrow = "-->" if action == "default" else f"-->|{_label(action)}|"
                edges.append(f"    {mermaid_ids[id(node)]} {arrow} {mermaid_ids[id(successor)]}")
        # sub-flows: each a subgraph holding its own graph, drawn in wiring order
        for mermaid_id, name, node, node_path, level in reversed(pending):
            work.append(("end", level))
            work.append(("flow", node, node_path, level + 1))
            kind = node_kind(node)
            title = name if kind == "flow" else f"{name} ({kind})"
            work.append(("open", mermaid_id, title, level))
    drawing.lines.extend(edges)


def _load(spec: str) -> Any:
    module_name, colon, attribute = spec.partition(":")
    if not colon or not module_name or not attribute:
        raise SystemExit(
            f"error: {spec!r} is not module:attribute; e.g. "
            "python -m pocketflow_stream mermaid myapp.agent:flow"
        )
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # the current folder, as `python -m` has it
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise SystemExit(f"error: cannot import {module_name!r}: {error}") from None
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise SystemExit(f"error: {module_name!r} has no attribute {attribute!r}") from None
    if not isinstance(target, BaseNode) and callable(target):
        try:
            target = target()  # a function that builds the flow
        except TypeError as error:
            raise SystemExit(
                f"error: calling {spec}() failed ({error}): give a flow, or a function that "
                "builds one without arguments"
            ) from None
    if not isinstance(target, BaseNode):
        raise SystemExit(
            f"error: {spec} is a {type(target).__name__}, not a flow or node (or a function "
            "returning one)"
        )
    return target


def main(argv: Optional[List[str]] = None) -> int:
    """`python -m pocketflow_stream mermaid module:flow [--direction LR] [--markdown]`."""
    parser = argparse.ArgumentParser(
        prog="python -m pocketflow_stream mermaid",
        description="Print a flow as a Mermaid flowchart.",
    )
    parser.add_argument(
        "flow",
        help="module:attribute of a flow or node, or of a function without arguments that "
        "builds one (e.g. pocketflow_stream.demo:build_flow needs arguments; myapp:flow)",
    )
    parser.add_argument("--direction", default="TD", choices=DIRECTIONS)
    parser.add_argument(
        "--markdown", action="store_true", help="wrap it in a ```mermaid block for a README"
    )
    args = parser.parse_args(argv)
    try:
        text = to_mermaid(_load(args.flow), args.direction)
    except FlowError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.markdown:
        text = f"```mermaid\n{text}```\n"
    sys.stdout.write(text)
    return 0
