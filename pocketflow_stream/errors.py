"""Errors the engine raises, and how it marks an app's own exception with the node it came from.

An exception raised by a node's code keeps its own type (apps catch their ValueError as before);
the engine only attaches the node's path to it: as `exc.node_path` and as a note shown in the
traceback ("raised in node Agent > Plan"). The engine's own messages about a node used
wrongly are made here too (`_bad_action`, `_not_a_generator`, ...): each names the node's
path, what was wrong and what to do. This file knows nothing of frames or the walk.
"""

from __future__ import annotations

from typing import Any, Iterable, Tuple

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


# --- the engine's messages about a node used wrongly ------------------------------------


def _bad_action(action: Any, path: Tuple[str, ...]) -> FlowError:
    return FlowError(
        f"node {describe_path(path)}: post returned {action!r} ({type(action).__name__}) as its "
        "action; an action must be a str naming the transition to take (or None for 'default')."
    )


def _not_a_generator(node: Any, made: Any, path: Tuple[str, ...]) -> FlowError:
    hint = (
        " It is an async generator: run_stream drives sync generators only (async nodes need"
        " the async driver)."
        if hasattr(made, "__anext__")
        else " Write exec_stream with `yield` (and `return` the result for post), or use"
        " Node.exec if the node does not stream."
    )
    error = FlowError(
        f"node {describe_path(path)}: {type(node).__name__}.exec_stream must return a "
        f"generator, got {type(made).__name__}.{hint}"
    )
    attach_node_path(error, path)
    return error


def _not_awaitable(node: Any, hook: str, made: Any, path: Tuple[str, ...]) -> FlowError:
    error = FlowError(
        f"node {describe_path(path)}: {type(node).__name__}.{hook} must be an `async def` "
        f"method (or, for exec_stream_async, an async generator); it returned "
        f"{type(made).__name__}. Declare it with `async def`."
    )
    attach_node_path(error, path)
    return error


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _ask_outside_exec(path: Tuple[str, ...]) -> FlowError:
    error = FlowError(
        f"node {describe_path(path)}: ask() was called outside exec (in prep or post). Ask in "
        "exec (or exec_stream with `yield Ask(...)`), or use an AskNode, whose question comes "
        "from its prep."
    )
    attach_node_path(error, path)
    return error
