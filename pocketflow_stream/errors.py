"""Errors the engine raises, and how it marks an app's own exception with the node it came from.

An exception raised by a node's code keeps its own type (apps catch their ValueError as before);
the engine only attaches the node's path to it: as `exc.node_path` and as a note shown in the
traceback ("raised in node Agent > Plan").
"""

from __future__ import annotations

from typing import Iterable, Tuple

__all__ = ["FlowError", "MaxStepsExceeded", "node_path_of", "describe_path", "add_note"]


class FlowError(Exception):
    """A flow or node is wired or used wrongly; the message says where and what to do."""


class MaxStepsExceeded(FlowError):
    """A flow took more node steps than its `max_steps` allows: most likely a runaway loop."""


def describe_path(path: Iterable[str]) -> str:
    text = " > ".join(path)
    return text if text else "(the flow being run)"


def attach_node_path(exc: BaseException, path: Tuple[str, ...]) -> None:
    """Mark `exc` with the path of the node it was raised in (only the innermost mark counts)."""
    if getattr(exc, "node_path", None) is not None:
        return
    try:
        exc.node_path = path  # type: ignore[attr-defined]
    except AttributeError:  # an exception class with __slots__: the note still tells
        pass
    add_note(exc, f"raised in node {describe_path(path)}")


def add_note(exc: BaseException, note: str) -> None:
    """`exc.add_note(note)`, on every Python we support (before 3.11 notes are kept, not
    printed)."""
    if hasattr(exc, "add_note"):
        exc.add_note(note)
        return
    notes = getattr(exc, "__notes__", None)
    try:
        exc.__notes__ = [*(notes or ()), note]  # type: ignore[attr-defined, unused-ignore]  # <3.11
    except AttributeError:
        pass


def node_path_of(exc: BaseException) -> Tuple[str, ...] | None:
    """The path of the node an exception was raised in, or None if it did not come from one."""
    return getattr(exc, "node_path", None)
