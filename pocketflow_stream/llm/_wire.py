"""Reading provider wire data: SDK objects and decoded dicts through one read-only view.

`view(source)` turns whatever an adapter is handed into something with a dict's `get`:

- a dict (or any Mapping) is its own view;
- a pydantic v2 model (every `openai` / `anthropic` / LiteLLM stream object) is read from its
  `__dict__` (the declared fields) and its `__pydantic_extra__` (the undeclared ones a server
  sent, such as `reasoning_content`). Reading an undeclared name with `getattr` would make
  pydantic raise and catch an AttributeError each time, which cost more than the rest of the
  adapter together; a dict lookup costs almost nothing;
- a pydantic v1 model is its `__dict__` (where v1 keeps extras too);
- anything else (a class with properties, slots, `__getattr__`) is read with `getattr`.

Which kind a class is is worked out once per class. A value of None reads as missing
everywhere, as the SDKs themselves treat null fields. The views are read-only: adapters never
write into them (a pydantic view *is* the object's own `__dict__`).

Shared by every adapter in this package; knows no provider's event names.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from .deltas import Delta

__all__ = ["view", "field", "arguments_text", "EventDispatch", "EMPTY", "SSEDecoder", "SSEEvent"]

#: The view of a missing object: every read gives the default.
EMPTY: Mapping[str, Any] = {}


class _AttributeView:
    """The view of an object with no usable `__dict__`: `get` reads attributes."""

    __slots__ = ("_source",)

    def __init__(self, source: Any) -> None:
        self._source = source

    def get(self, name: str, default: Any = None) -> Any:
        value = getattr(self._source, name, None)
        return default if value is None else value


def _pydantic_v2_view(source: Any) -> Mapping[str, Any]:
    extra = source.__pydantic_extra__
    if extra:
        return {**source.__dict__, **extra}
    return source.__dict__  # type: ignore[no-any-return]


def _dict_view(source: Any) -> Mapping[str, Any]:
    return source.__dict__  # type: ignore[no-any-return]


_ViewOf = Callable[[Any], Any]
_VIEWS: Dict[type, _ViewOf] = {_AttributeView: lambda source: source}


def _has_properties(cls: type, base: Optional[type]) -> bool:
    """Whether `cls` defines properties (or other descriptors) a `__dict__` read would miss."""
    for klass in cls.__mro__:
        if klass is base or klass is object:
            break
        for name, member in vars(klass).items():
            if isinstance(member, property) and not name.startswith("_"):
                return True
    return False


def _view_for(cls: type) -> _ViewOf:
    if issubclass(cls, Mapping):
        return _identity
    base = next((k for k in cls.__mro__ if k.__name__ == "BaseModel"), None)
    if base is not None and not _has_properties(cls, base):
        if hasattr(cls, "__pydantic_fields__") and hasattr(base, "__pydantic_extra__"):
            return _pydantic_v2_view
        if hasattr(cls, "__fields__") and not hasattr(cls, "__getattr__"):
            return _dict_view
    return _AttributeView


def _identity(source: Any) -> Any:
    return source


def view(source: Any) -> Mapping[str, Any]:
    """A read-only, dict-like view of a wire object (see the module docstring); None -> EMPTY."""
    if type(source) is dict:
        return source
    if source is None:
        return EMPTY
    cls = type(source)
    make = _VIEWS.get(cls)
    if make is None:
        make = _VIEWS[cls] = _view_for(cls)
    return make(source)  # type: ignore[no-any-return]


def field(source: Any, name: str, default: Any = None) -> Any:
    """Read `name` from an SDK object or a decoded dict; None reads as default."""
    value = view(source).get(name)
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
    routes each event's view to the handler for its `type`; unknown types give no deltas."""

    _handlers: Dict[str, Callable[[Mapping[str, Any], List[Delta]], None]]

    def feed(self, event: Any) -> List[Delta]:
        """Consume one stream event; return its deltas (none for unknown event types)."""
        out: List[Delta] = []
        if type(event) is not dict:
            make = _VIEWS.get(type(event))
            event = view(event) if make is None else make(event)
        handler = self._handlers.get(event.get("type") or "")
        if handler is not None:
            handler(event, out)
        return out


# --- server-sent events ----------------------------------------------------------------------

#: One decoded server-sent event: its `event:` name (None when the frame has none) and its
#: `data:` payload as bytes (several data lines joined by "\n"), ready for `json.loads`.
SSEEvent = Tuple[Optional[str], bytes]


class SSEDecoder:
    """An incremental decoder of a `text/event-stream` body (the WHATWG rules that matter for
    model APIs): `feed(bytes)` returns the events completed by those bytes, `close()` the one
    a body ended without its blank line.

    Lines end with LF, CRLF or CR (also split across reads); a blank line ends an event;
    `data:` lines are joined with "\\n"; one space after the colon is dropped; comments
    (`: ...`), `id:` and `retry:` are skipped; a frame without data is no event. Bytes are
    only split at line ends, so a UTF-8 character cut across reads is whole again by then.
    """

    __slots__ = ("_rest", "_held_cr")

    def __init__(self) -> None:
        self._rest = b""
        self._held_cr = False

    def feed(self, chunk: bytes) -> List[SSEEvent]:
        if self._held_cr:
            chunk = b"\r" + chunk
            self._held_cr = False
        if b"\r" in chunk:
            if chunk.endswith(b"\r"):  # maybe the first half of a CRLF
                chunk = chunk[:-1]
                self._held_cr = True
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if self._rest:
            chunk = self._rest + chunk
        if b"\n\n" not in chunk:
            self._rest = chunk
            return []
        frames = chunk.split(b"\n\n")
        self._rest = frames.pop()
        events: List[SSEEvent] = []
        for frame in frames:
            if frame.startswith(b"data: ") and b"\n" not in frame:
                events.append((None, frame[6:]))  # the common frame: one data line
                continue
            if frame.startswith(b"event: "):  # the other common frame: a name, one data line
                head, _, data = frame.partition(b"\n")
                if data.startswith(b"data: ") and b"\n" not in data:
                    events.append((head[7:].decode("utf-8", "replace"), data[6:]))
                    continue
            event = _frame(frame)
            if event is not None:
                events.append(event)
        return events

    def close(self) -> List[SSEEvent]:
        """The end of the body: an event cut short of its blank line, if it has data."""
        rest, self._rest = self._rest, b""
        event = _frame(rest) if rest else None
        return [] if event is None else [event]


def _frame(frame: bytes) -> Optional[SSEEvent]:
    name: Optional[str] = None
    data: List[bytes] = []
    for line in frame.split(b"\n"):
        if not line or line.startswith(b":"):
            continue
        key, colon, value = line.partition(b":")
        if colon and value.startswith(b" "):
            value = value[1:]
        if key == b"data":
            data.append(value)
        elif key == b"event":
            name = value.decode("utf-8", "replace")
    if not data:
        return None
    return name, data[0] if len(data) == 1 else b"\n".join(data)
