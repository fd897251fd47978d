"""Reading provider wire data: one accessor for SDK objects and decoded dicts alike.

Shared by every adapter in this package; knows no provider's event names.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Dict, List

from .deltas import Delta

__all__ = ["field", "arguments_text", "EventDispatch"]


def field(source: Any, name: str, default: Any = None) -> Any:
    """Read `name` from an SDK object (attribute) or a decoded dict (key); None reads as default.

    The one accessor every adapter uses, so SDK objects and wire dicts share one code path.
    """
    if source is None:
        return default
    if isinstance(source, dict):
        value = source.get(name)
    else:
        value = getattr(source, name, None)
    return default if value is None else value


def arguments_text(arguments: Any) -> str:
    """Wire arguments as text: strings as they are, parsed objects serialised back to JSON."""
    if arguments is None:
        return ""
    if isinstance(arguments, str):
        return arguments
    # Ollama-style servers and some proxies send the arguments already parsed.
    return json.dumps(arguments, ensure_ascii=False)


class EventDispatch:
    """Base of the adapters whose streams are typed events (Anthropic, Responses): `feed`
    routes each event to the handler for its `type`; unknown types give no deltas."""

    _handlers: Dict[str, Callable[[Any, List[Delta]], None]]

    def feed(self, event: Any) -> List[Delta]:
        """Consume one stream event; return its deltas (none for unknown event types)."""
        out: List[Delta] = []
        handler = self._handlers.get(field(event, "type", ""))
        if handler is not None:
            handler(event, out)
        return out
