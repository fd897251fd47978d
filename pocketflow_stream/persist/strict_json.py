"""Strict JSON for checkpoints: what goes into a store comes back exactly as it went in.

`json.dumps` silently changes some values (a tuple comes back a list, `{1: "a"}` comes back
`{"1": "a"}`, NaN is written though JSON has none, a `str` subclass comes back a plain `str`)
and refuses others only when it meets them. A run resumed from such a checkpoint would go on
from a different state. So before each commit `encode` walks the value and refuses anything
that would not come back equal and of the same type, naming the key path and the node that
wrote it; other types go through codecs the app registers by tag (never pickle, never a class
path read from data). `decode` refuses an unknown tag instead of guessing.

Rules it keeps: exact types only (`type(v) is dict`, not isinstance) for dict, list, str,
int, float, bool and None; dict keys are str; floats are finite; a dict whose only keys are
`$codec` and `value` is a codec's envelope, so an app dict with a `$codec` key is refused.
This module knows nothing of nodes, flows or stores.
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable, Dict, List, Optional, Set, Tuple, Type

from ..errors import FlowError

__all__ = [
    "CheckpointError",
    "NotJSONError",
    "UnknownCodecError",
    "CheckpointTooLarge",
    "Codecs",
    "encode",
    "decode",
    "dumps",
    "loads",
    "check_size",
    "DEFAULT_MAX_BYTES",
]

TAG = "$codec"
DEFAULT_MAX_BYTES = 64 * 1024 * 1024  # a checkpoint is rewritten after every node: keep it lean


class CheckpointError(FlowError):
    """A run's state could not be saved to, or read back from, a store."""


class NotJSONError(CheckpointError, TypeError):
    """A value in `shared` (or a position) that JSON would silently change or cannot hold.

    `.path` is the key path (e.g. `shared['items'][2]`), `.writer` the node that wrote it (the
    last node whose post ran), when known."""

    def __init__(self, message: str, path: str, writer: Optional[str]) -> None:
        super().__init__(message)
        self.path = path
        self.writer = writer


class UnknownCodecError(CheckpointError, ValueError):
    """A checkpoint holds a value tagged with a codec this process did not register."""


class CheckpointTooLarge(CheckpointError, ValueError):
    """The encoded checkpoint is larger than the configured `max_bytes`; `.biggest` lists the
    largest top-level keys of `shared` with their encoded sizes in bytes."""

    def __init__(self, message: str, size: int, biggest: List[Tuple[str, int]]) -> None:
        super().__init__(message)
        self.size = size
        self.biggest = biggest


# What JSON would do to each refused builtin kind, for the error message.
_CHANGES: Dict[type, str] = {
    tuple: "JSON would turn it into a list",
    set: "JSON cannot hold a set",
    frozenset: "JSON cannot hold a frozenset",
    bytes: "JSON cannot hold bytes",
    bytearray: "JSON cannot hold bytes",
    complex: "JSON cannot hold a complex number",
}


class Codecs:
    """Codecs the app registers by tag, for types JSON cannot hold exactly.

        codecs = Codecs()
        codecs.register("datetime", datetime, datetime.isoformat, datetime.fromisoformat)

    `encode(obj)` must return a JSON-ready value (which may itself hold registered types);
    `decode(value)` rebuilds the object. A codec matches the exact type, not subclasses. The
    tag, not a class path, is what the checkpoint stores: loading never imports anything."""

    def __init__(self) -> None:
        self._by_type: Dict[type, Tuple[str, Callable[[Any], Any]]] = {}
        self._by_tag: Dict[str, Callable[[Any], Any]] = {}

    def register(
        self,
        tag: str,
        cls: Type[Any],
        encode: Callable[[Any], Any],
        decode: Callable[[Any], Any],
    ) -> Codecs:
        """Register a codec; returns self, so registrations chain. Raises ValueError for a
        tag or type registered twice, or a type JSON holds natively."""
        if not isinstance(tag, str) or not tag:
            raise ValueError(f"a codec tag must be a non-empty str, not {tag!r}")
        if tag in self._by_tag:
            raise ValueError(f"codec tag {tag!r} is registered already")
        if cls in self._by_type:
            raise ValueError(f"a codec for {cls.__qualname__} is registered already")
        if cls in _NATIVE:
            raise ValueError(f"{cls.__qualname__} is held by JSON itself: it needs no codec")
        self._by_type[cls] = (tag, encode)
        self._by_tag[tag] = decode
        return self

    @property
    def tags(self) -> List[str]:
        return sorted(self._by_tag)

    def with_tuples(self) -> Codecs:
        """A copy that also carries tuples (tag "tuple"), unless the app registered its own:
        what the engine's position holds (a node's `prep_res` is often a tuple) must come
        back as it was."""
        copy = Codecs()
        copy._by_type = dict(self._by_type)
        copy._by_tag = dict(self._by_tag)
        if tuple not in copy._by_type and "tuple" not in copy._by_tag:
            copy.register("tuple", tuple, list, tuple)
        return copy


_NATIVE = (dict, list, str, int, float, bool, type(None))
_NO_CODECS = Codecs()


def encode(
    value: Any,
    codecs: Optional[Codecs] = None,
    *,
    root: str = "shared",
    writer: Optional[str] = None,
) -> Any:
    """`value` as a JSON-ready value that `decode` turns back into an equal value of the same
    types: registered types replaced by their codec's envelope, everything else checked.
    The value itself is returned (no copy) when it holds no registered type.

    Raises NotJSONError naming the key path (from `root`), what was wrong, the node that wrote
    it (`writer`) and what to do."""
    try:
        if type(value) is dict:  # `shared` and positions are: no dispatch
            return _mapping(value, codecs or _NO_CODECS, 0)
        return _value(value, codecs or _NO_CODECS, 0)
    except _Refused as refused:
        refused.path.reverse()
        raise _error(root, refused.path, writer, refused.problem, refused.advice) from None
    except _TooDeep:
        path = _cycle(value, [], set())
        problem = (
            "contains itself (a cycle), which JSON cannot hold"
            if path is not None
            else f"is nested more than {MAX_DEPTH} levels deep"
        )
        raise _error(root, path or [], writer, problem, None) from None


MAX_DEPTH = 400  # below Python's recursion limit, with room for the caller's own frames
_SCALARS = frozenset((str, int, bool, type(None)))


class _Refused(Exception):
    """Raised where the walk finds a bad value; each level adds its key on the way out, so
    the walk builds no path unless there is an error to name."""

    def __init__(self, problem: str, advice: Optional[str] = None) -> None:
        self.problem = problem
        self.advice = advice
        self.path: List[Any] = []


class _TooDeep(Exception):
    pass


def _value(value: Any, codecs: Codecs, depth: int) -> Any:
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is float:
        if math.isfinite(value):
            return value
        raise _Refused(f"is {value!r}, which JSON cannot hold")
    if kind is dict:
        return _mapping(value, codecs, depth)
    if kind is list:
        return _sequence(value, codecs, depth)
    codec = codecs._by_type.get(kind)
    if codec is None:
        raise _Refused(_what_is_wrong(value))
    tag, encode_value = codec
    try:
        encoded = encode_value(value)
    except Exception as exc:
        raise _Refused(f"could not be encoded by codec {tag!r}: {exc!r}") from None
    try:
        return {TAG: tag, "value": _value(encoded, codecs, depth + 1)}
    except _Refused as refused:
        refused.path.append(f"<{tag}>")
        raise


def _mapping(value: Dict[Any, Any], codecs: Codecs, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise _TooDeep()
    if TAG in value:
        refused = _Refused(f"uses the key {TAG!r}, reserved for codecs")
        refused.path.append(TAG)
        raise refused
    out: Optional[Dict[str, Any]] = None
    depth += 1
    for key, item in value.items():
        if type(key) is not str:
            refused = _Refused(
                f"has the key {key!r} ({type(key).__name__}); " + _key_change(key),
                "Use str keys",
            )
            refused.path.append(key)
            raise refused
        kind = type(item)
        if kind in _SCALARS:
            continue  # the common case, without a call
        try:  # a container is walked without the dispatch of _value (as in _sequence: a
            # helper would cost the call this saves)
            if kind is dict:
                encoded = _mapping(item, codecs, depth)
            elif kind is list:
                encoded = _sequence(item, codecs, depth)
            else:
                encoded = _value(item, codecs, depth)
        except _Refused as refused:
            refused.path.append(key)
            raise
        if encoded is not item:
            if out is None:
                out = dict(value)
            out[key] = encoded
    return value if out is None else out


def _sequence(value: List[Any], codecs: Codecs, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise _TooDeep()
    out: Optional[List[Any]] = None
    depth += 1
    index = -1
    for item in value:
        index += 1
        kind = type(item)
        if kind in _SCALARS:
            continue
        try:
            if kind is dict:
                encoded = _mapping(item, codecs, depth)
            elif kind is list:
                encoded = _sequence(item, codecs, depth)
            else:
                encoded = _value(item, codecs, depth)
        except _Refused as refused:
            refused.path.append(index)
            raise
        if encoded is not item:
            if out is None:
                out = list(value)
            out[index] = encoded
    return value if out is None else out


def _cycle(value: Any, path: List[Any], active: Set[int]) -> Optional[List[Any]]:
    """The path to a container that contains itself, if any (only looked for when the walk
    went too deep, so the walk itself keeps no set of what it is inside)."""
    if type(value) not in (dict, list) or len(path) > MAX_DEPTH + 1:
        return None
    if id(value) in active:
        return path
    active.add(id(value))
    pairs = value.items() if type(value) is dict else enumerate(value)
    for key, item in pairs:
        found = _cycle(item, path + [key], active)
        if found is not None:
            return found
    active.discard(id(value))
    return None


def _error(
    root: str, path: List[Any], writer: Optional[str], problem: str, advice: Optional[str]
) -> NotJSONError:
    where = root + "".join(f"[{step!r}]" for step in path)
    by = f" (written by node {writer})" if writer else ""
    if advice is None:
        advice = (
            "Store plain JSON values (dict with str keys, list, str, int, finite float, "
            "bool, None), or register a codec for the type with "
            "pocketflow_stream.persist.Codecs().register(tag, type, encode, decode)"
        )
    return NotJSONError(f"cannot checkpoint {where}{by}: it {problem}. {advice}.", where, writer)


def _key_change(key: Any) -> str:
    if type(key) in (int, float, bool) or key is None:
        made = next(iter(json.loads(json.dumps({key: 0}))))
        return f"JSON would turn it into the str {json.dumps(made)}"
    return "JSON cannot hold it as a key"


def _what_is_wrong(value: Any) -> str:
    kind = type(value)
    if kind in _CHANGES:
        return f"is a {kind.__name__}; {_CHANGES[kind]}"
    name = f"{kind.__module__}.{kind.__qualname__}"
    for builtin in (dict, list, str, int, float, *_CHANGES):
        if isinstance(value, builtin):
            change = _CHANGES.get(
                builtin, f"JSON would bring it back as a plain {builtin.__name__}"
            )
            return f"is a {name}, a subclass of {builtin.__name__}; {change}"
    return f"is a {name}, which JSON cannot hold"


def decode(value: Any, codecs: Optional[Codecs] = None) -> Any:
    """The inverse of `encode`: codec envelopes replaced by their decoded objects (inner ones
    first). Raises UnknownCodecError for a tag that is not registered."""
    codecs = codecs or _NO_CODECS
    kind = type(value)
    if kind is dict:
        if TAG in value:
            return _decode_envelope(value, codecs)
        out = None
        for key, item in value.items():
            decoded = decode(item, codecs)
            if decoded is not item:
                if out is None:
                    out = dict(value)
                out[key] = decoded
        return value if out is None else out
    if kind is list:
        out_list = None
        for index, item in enumerate(value):
            decoded = decode(item, codecs)
            if decoded is not item:
                if out_list is None:
                    out_list = list(value)
                out_list[index] = decoded
        return value if out_list is None else out_list
    return value


def _decode_envelope(envelope: Dict[str, Any], codecs: Codecs) -> Any:
    tag = envelope[TAG]
    decoder = codecs._by_tag.get(tag)
    if decoder is None:
        known = ", ".join(repr(t) for t in codecs.tags) or "none"
        raise UnknownCodecError(
            f"the checkpoint holds a value encoded by codec {tag!r}, which is not registered "
            f"in this process (registered: {known}). Register it with "
            f"Codecs().register({tag!r}, type, encode, decode) before loading the run."
        )
    return decoder(decode(envelope.get("value"), codecs))


_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"))  # made once: dumps is hot


def dumps(value: Any) -> str:
    """Compact JSON text of a JSON-ready value (NaN refused, non-ASCII escaped)."""
    return _ENCODER.encode(value)


def _not_json(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _checked_encoder() -> Callable[[Any], str]:
    """`dumps` for a value `encode` returned, which is plain JSON by then: no cycle (the walk
    is bounded in depth), exact types, str keys, finite floats. So the checks `dumps` would
    make again (circular references) are skipped, and the C encoder is called directly,
    without `JSONEncoder`'s Python layer. The text is the same as `dumps` gives."""
    fallback = json.JSONEncoder(allow_nan=False, separators=(",", ":"), check_circular=False)
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # no C accelerator (e.g. PyPy)
        return fallback.encode
    try:
        encoder = make(
            None, _not_json, json.encoder.encode_basestring_ascii, None, ":", ",",
            False, False, False,
        )  # fmt: skip
        join = "".join

        def dumps_checked(value: Any) -> str:
            return join(encoder(value, 0))

        sample = {"a": [1, 2.5, None, True, "\u00e9\n"], "b": {}}
        if dumps_checked(sample) != dumps(sample):
            return fallback.encode
        return dumps_checked
    except Exception:  # a Python whose private C encoder takes other arguments
        return fallback.encode


#: compact JSON text of a value `encode` returned (not for anything else: no cycle check)
dumps_checked = _checked_encoder()
#: a str as JSON text (quoted, escaped like `dumps`)
dumps_str: Callable[[str], str] = json.encoder.encode_basestring_ascii


def loads(text: str) -> Any:
    return json.loads(text)


def check_size(text: str, shared: Any, max_bytes: Optional[int], writer: Optional[str]) -> None:
    """Raise CheckpointTooLarge when `text` (the encoded checkpoint) exceeds `max_bytes`,
    naming the five largest top-level keys of `shared` (JSON-ready)."""
    if max_bytes is None or len(text) <= max_bytes:
        return
    size = len(text.encode("utf-8"))
    if size <= max_bytes:
        return
    biggest: List[Tuple[str, int]] = []
    if type(shared) is dict:
        biggest = sorted(
            ((key, len(dumps(item))) for key, item in shared.items()),
            key=lambda pair: -pair[1],
        )[:5]
    listed = ", ".join(f"shared[{key!r}] {n:,} bytes" for key, n in biggest) or "none"
    by = f" after node {writer}" if writer else ""
    raise CheckpointTooLarge(
        f"the checkpoint{by} is {size:,} bytes, over the limit of {max_bytes:,} "
        f"bytes (max_bytes); the largest keys: {listed}. Keep large data (files, token streams, "
        f"histories) outside `shared` and store a reference, or raise max_bytes.",
        size,
        biggest,
    )
