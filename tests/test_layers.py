"""The package's layers import only downward (DESIGN.md): the core knows no LLM and no UI,
the llm layer never reaches into the engine's internals, the demo uses public names only."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "pocketflow_stream"
LAYER = {
    "_compat": 0,
    "events": 1,
    "errors": 1,
    "graph": 1.1,  # node kinds, ids, successors, copies
    "frames": 1.2,  # the two frame kinds and a run's options: plain data
    "interrupts": 1.3,  # ask, StopSignal, the walk's signals, Paused
    "requests": 1.4,  # what the walk asks of an async driver
    "positions": 1.5,  # checkpoint positions: the stack as JSON-ready data, and back
    "engine": 2,
    "nodes": 3,
    "flows": 4,
    "async_driver": 5,
    "async_nodes": 6,
    "async_flows": 7,
    "bridges": 8,
    "persist": 8.5,  # checkpoints and stores: above the drivers, below llm
    "scale": 8.6,  # the Postgres store (and what runs past one machine): on persist
    "llm": 9,
    "ui": 10,
    "demo": 11,
    "__main__": 12,
}


def imports_of(path: Path):
    """(top-level module of pocketflow_stream imported, imported names) for each import."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(parts[:-1])[: len(parts) - node.level]
                target = base + (node.module.split(".") if node.module else [])
            elif node.module and node.module.startswith("pocketflow_stream"):
                target = node.module.split(".")[1:]
            else:
                continue
            if target:
                yield target[0], [alias.name for alias in node.names]
            else:  # `from . import engine`
                for alias in node.names:
                    yield alias.name, [alias.name]


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        top = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        if top != "__init__":
            yield top, path


def test_every_module_belongs_to_a_layer():
    assert {top for top, _ in modules()} <= set(LAYER)


def test_no_module_imports_a_layer_above_its_own():
    upward = [
        (str(path.relative_to(PACKAGE)), target)
        for top, path in modules()
        for target, _ in imports_of(path)
        if LAYER.get(target, -1) > LAYER[top]
    ]
    assert upward == []


def test_upper_layers_use_only_public_names_of_the_layers_below():
    private = [
        (str(path.relative_to(PACKAGE)), target, name)
        for top, path in modules()
        if LAYER[top] >= LAYER["llm"]
        for target, names in imports_of(path)
        if LAYER.get(target, LAYER[top]) < LAYER["llm"]
        for name in names
        if name.startswith("_") and target != "_compat"
    ]
    assert private == []
