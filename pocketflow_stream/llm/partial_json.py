"""Incremental parsing of JSON that arrives in pieces, such as a tool call's streamed arguments.

`PartialJSON` keeps its state between `feed` calls, so feeding a whole text costs O(n) in its
length however it is split. At any moment `healed()` gives the best value so far (open strings,
arrays and objects closed), and `watch(path)` streams the growth of one string field as text,
at a cost proportional to the new bytes. A truncated prefix never raises; `finish()` is strict.

What a healed value shows, so that it never shows something that later changes or disappears:

- a string appears as soon as its opening quote arrives, and only grows at its end;
- an array or object appears as soon as it opens, and only gains members at its end;
- an object member appears once its value has started (a key alone is not shown);
- a number appears once something follows it (``12`` may still become ``123``);
- ``true``, ``false`` and ``null`` appear once fully spelled.

(Duplicate keys are the one exception: as in `json.loads`, the last one wins.)

Successive healed values share their finished parts (an array, object or string that has closed
is built once and then handed out again by every later call), so showing the value after every
fragment costs the new text plus the still-open spine, not the whole value each time. To make
that sharing safe, healed arrays and objects are read-only views (subclasses of `list` and
`dict` whose mutating methods raise TypeError); a view never changes after it is returned, and
`copy.deepcopy(view)` gives plain, mutable lists and dicts. `finish()` returns plain ones.

This module knows JSON only: nothing of providers, deltas or the engine.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

__all__ = ["PartialJSON", "PartialJSONError", "StringWatch", "PathElement", "heal_json"]

#: One step of a path into a JSON value: an object key or an array index.
PathElement = Union[str, int]

_WHITESPACE = " \t\n\r"
_WHITESPACE_RUN = re.compile(r"[ \t\n\r]*")
# Everything a string may hold unescaped; one C-level match consumes a whole run of it.
_STRING_RUN = re.compile(r'[^"\\\x00-\x1f]*')
_NUMBER_RUN = re.compile(r"[0-9eE.+\-]*")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_HEX_DIGITS = "0123456789abcdefABCDEF"
_SIMPLE_ESCAPES = {
    '"': '"',
    "\\": "\\",
    "/": "/",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
}
# The characters allowed at each place of a `\uDC00`..`\uDFFF` escape: what may follow a high
# surrogate escape to complete a pair.
_LOW_SURROGATE_ESCAPE = ("\\", "u", "dD", "cdefCDEF", _HEX_DIGITS, _HEX_DIGITS)
_LITERALS = {"t": ("true", True), "f": ("false", False), "n": ("null", None)}
_NUMBER_START = "-0123456789"
_COMPACT_EVERY = 256

# What the parser expects next.
_EXPECT_VALUE = 0
_EXPECT_VALUE_OR_ARRAY_END = 1  # just after '['
_EXPECT_KEY_OR_OBJECT_END = 2  # just after '{'
_EXPECT_KEY = 3  # after ',' in an object
_EXPECT_COLON = 4
_EXPECT_COMMA_OR_END = 5  # after a member or an element
_IN_STRING = 6
_IN_NUMBER = 7
_IN_LITERAL = 8
_AFTER_TOP_VALUE = 9  # only whitespace may follow

_NOTHING: Any = object()


class PartialJSONError(ValueError):
    """The fed text is not valid JSON. Says what is wrong and where; `.raw` holds the whole text
    fed so far and `.position` the character offset of the problem in it."""

    def __init__(self, message: str, raw: str, position: int) -> None:
        super().__init__(message)
        self.raw = raw
        self.position = position


class _SyntaxProblem(Exception):
    """Raised inside the parser at the first invalid character; `feed` turns it into a state."""

    def __init__(self, position: int, message: str) -> None:
        super().__init__(message)
        self.position = position
        self.message = message


class _Frame:
    """An array or object being built, and for an object the key whose value comes next.

    `container` is the plain value `finish` returns; `shown` holds the same members as they are
    shown by `healed`: finished arrays and objects as their read-only views, made once.
    """

    __slots__ = ("container", "shown", "is_object", "key")

    def __init__(self, container: Union[Dict[str, Any], List[Any]]) -> None:
        self.container = container
        self.is_object = isinstance(container, dict)
        self.shown: Union[Dict[str, Any], List[Any]] = {} if self.is_object else []
        self.key: str = ""


_READ_ONLY_MESSAGE = (
    "a healed PartialJSON value is read-only: successive values share their finished parts, "
    "so changing one would change the others; make a mutable copy with copy.deepcopy(value)"
)


def _refuse(self: Any, *args: Any, **kwargs: Any) -> Any:
    raise TypeError(_READ_ONLY_MESSAGE)


class _ReadOnlyList(List[Any]):
    """A healed array: a `list` whose mutating methods raise TypeError (see the module doc)."""

    __slots__ = ()
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse
    append = extend = insert = pop = remove = clear = sort = reverse = _refuse

    def __copy__(self) -> List[Any]:
        return list(self)

    def __deepcopy__(self, memo: Dict[int, Any]) -> List[Any]:
        return _copy_json(self)  # type: ignore[no-any-return]

    def __reduce__(self) -> Tuple[Any, ...]:
        return (list, (list(self),))


class _ReadOnlyDict(Dict[str, Any]):
    """A healed object: a `dict` whose mutating methods raise TypeError (see the module doc)."""

    __slots__ = ()
    __setitem__ = __delitem__ = __ior__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse

    def __copy__(self) -> Dict[str, Any]:
        return dict(self)

    def __deepcopy__(self, memo: Dict[int, Any]) -> Dict[str, Any]:
        return _copy_json(self)  # type: ignore[no-any-return]

    def __reduce__(self) -> Tuple[Any, ...]:
        return (dict, (dict(self),))


_list_append = list.append
_dict_set = dict.__setitem__


class StringWatch:
    """The growth of one string field, read as text while the JSON streams in.

    Made by `PartialJSON.watch`. Each character of the field is handed out once, by `read` or
    by `read_lines` (they share one cursor); both cost time proportional to what they return::

        content = parser.watch(["files", 0, "content"])
        parser.feed(fragment)
        ui.append(content.read())
    """

    __slots__ = ("path", "started", "done", "_parts", "_read_upto", "_scanned_upto", "_carry")

    def __init__(self, path: Tuple[PathElement, ...]) -> None:
        self.path = path
        #: The field's opening quote has arrived.
        self.started = False
        #: The field's closing quote has arrived: `read` has nothing more to give after this.
        self.done = False
        # Shared with the parser, which appends decoded pieces while the field is open.
        self._parts: List[str] = []
        self._read_upto = 0
        self._scanned_upto = 0
        self._carry = ""  # the unfinished last line that `read_lines` held back

    @property
    def text(self) -> str:
        """The field's whole text so far (costs its length)."""
        return "".join(self._parts)

    def read(self) -> str:
        """Returns the text added since the last `read` or `read_lines` ("" when none)."""
        parts = self._parts
        count = len(parts)
        if self._read_upto == count:
            new_text = ""
        elif self._read_upto == count - 1:
            new_text = parts[-1]
        else:
            new_text = "".join(parts[self._read_upto : count])
        self._read_upto = self._scanned_upto = count
        if self._carry:
            new_text = self._carry + new_text
            self._carry = ""
        return new_text

    def read_lines(self) -> List[str]:
        """Returns the lines completed since the last read, each with its "\\n" (like a file's
        lines, so joining them gives the text back).

        An unfinished last line is held back until its "\\n" arrives or the field closes, so a
        UI can print whole lines only. Only "\\n" ends a line.
        """
        parts = self._parts
        count = len(parts)
        if not self.done:
            # Join nothing until a newline exists: a very long line then costs its length once.
            has_newline = any("\n" in part for part in parts[self._scanned_upto : count])
            self._scanned_upto = count
            if not has_newline:
                return []
        text = self._carry + "".join(parts[self._read_upto : count])
        self._read_upto = self._scanned_upto = count
        lines = text.split("\n")
        last = lines.pop()
        lines = [line + "\n" for line in lines]
        if self.done:
            self._carry = ""
            if last:
                lines.append(last)
        else:
            self._carry = last
        return lines

    def _shift(self, count: int) -> None:
        """The parser joined `count` + 1 pieces this watch had read into one."""
        self._read_upto -= count
        self._scanned_upto -= count

    def _bind(self, parts: List[str]) -> None:
        self._parts = parts
        self.started = True

    def __repr__(self) -> str:
        return f"StringWatch(path={list(self.path)!r}, started={self.started}, done={self.done})"


class PartialJSON:
    """A JSON parser fed fragments of text, which keeps its state between feeds::

        parser = PartialJSON()
        content = parser.watch(["files", 0, "content"])
        for fragment in fragments:
            parser.feed(fragment)
            print(content.read(), end="")    # the field's new text, live
        arguments = parser.finish()           # strict: raises PartialJSONError if invalid

    `feed` costs O(len(fragment)) amortised and never raises on bad or cut-off text: the first
    problem is recorded (see `error`), later text is kept for `raw`, and `finish` raises it.

    With ``empty_is_object=True`` a text that is empty or only whitespace finishes as ``{}``
    (many providers send "" as the arguments of a tool that takes none); otherwise it is an
    error like any other invalid JSON.
    """

    def __init__(self, *, empty_is_object: bool = False) -> None:
        self.empty_is_object = empty_is_object
        self._raw_chunks: List[str] = []  # the raw text, joined every _COMPACT_EVERY fragments
        self._raw_parts: List[str] = []
        self._offset = 0  # the position in the raw text of the first character not yet parsed
        self._tail = ""  # a cut-off escape sequence, parsed again with the next fragment
        self._state = _EXPECT_VALUE
        self._stack: List[_Frame] = []
        self._root: Any = _NOTHING
        self._root_view: Any = _NOTHING  # the finished top-level value as `healed` shows it
        self._changes = 0  # counts changes to what `healed` shows
        self._healed_at = -1  # `_changes` when `_healed` was made
        self._healed: Any = _NOTHING
        self._string_parts: List[str] = []  # the open string's decoded pieces
        self._string_chunks = 0  # how many leading pieces are joined chunks (see _compact_string)
        self._compact_at = _COMPACT_EVERY
        self._string_is_key = False
        self._string_watch: Optional[StringWatch] = None
        self._token_parts: List[str] = []  # the number being read
        self._literal = ""  # the literal being read ("true", "false" or "null")
        self._literal_value: Any = None
        self._literal_matched = 0
        self._watches: Dict[Tuple[PathElement, ...], StringWatch] = {}
        self._problem: Optional[_SyntaxProblem] = None
        self._finished = False
        self._final: Any = _NOTHING

    # -- feeding -------------------------------------------------------------------------

    def feed(self, fragment: str) -> None:
        """Parses one more fragment of the text. Returns nothing: read `healed()` or a watch.

        Raises TypeError for a non-str fragment and RuntimeError after `finish()`; never raises
        for the text itself.
        """
        if not isinstance(fragment, str):
            raise TypeError(
                f"PartialJSON.feed takes str, got {type(fragment).__name__}; decode bytes first"
            )
        if self._finished:
            raise RuntimeError("PartialJSON.feed called after finish(); make a new PartialJSON")
        if not fragment:
            return
        self._raw_parts.append(fragment)
        if len(self._raw_parts) == _COMPACT_EVERY:
            self._raw_chunks.append("".join(self._raw_parts))
            self._raw_parts = []
        if self._problem is not None:
            return
        text = self._tail + fragment if self._tail else fragment
        self._tail = ""
        try:
            self._parse(text)
        except _SyntaxProblem as problem:
            problem.position += self._offset
            self._problem = problem
            return
        self._offset += len(text) - len(self._tail)

    def _parse(self, text: str) -> None:
        position = 0
        end = len(text)
        while position < end:
            state = self._state
            if state == _IN_STRING:
                position = self._scan_string(text, position)
            elif state == _IN_NUMBER:
                position = self._scan_number(text, position)
            elif state == _IN_LITERAL:
                position = self._scan_literal(text, position)
            elif text[position] in _WHITESPACE:
                position = _WHITESPACE_RUN.match(text, position + 1).end()  # type: ignore[union-attr]
            else:
                position = self._structural(text[position], position)

    def _structural(self, char: str, position: int) -> int:
        """Handles one character outside strings, numbers and literals; returns where to go on."""
        state = self._state
        if state == _EXPECT_COMMA_OR_END:
            frame = self._stack[-1]
            if char == ",":
                self._state = _EXPECT_KEY if frame.is_object else _EXPECT_VALUE
            elif char == ("}" if frame.is_object else "]"):
                self._close_container()
            else:
                closer = "}" if frame.is_object else "]"
                where = "an object member" if frame.is_object else "an array element"
                raise _SyntaxProblem(
                    position, f"expected ',' or '{closer}' after {where}, found {char!r}"
                )
            return position + 1
        if state == _EXPECT_VALUE:
            return self._start_value(char, position)
        if state == _EXPECT_KEY_OR_OBJECT_END and char == "}":
            self._close_container()
            return position + 1
        if state == _EXPECT_KEY or state == _EXPECT_KEY_OR_OBJECT_END:
            if char != '"':
                expected = "'}' or a key" if state == _EXPECT_KEY_OR_OBJECT_END else "a key"
                raise _SyntaxProblem(
                    position, f"expected {expected} (a string in double quotes), found {char!r}"
                )
            self._open_string(is_key=True)
            return position + 1
        if state == _EXPECT_COLON:
            if char != ":":
                raise _SyntaxProblem(position, f"expected ':' after an object key, found {char!r}")
            self._state = _EXPECT_VALUE
            return position + 1
        if state == _EXPECT_VALUE_OR_ARRAY_END:
            if char == "]":
                self._close_container()
                return position + 1
            return self._start_value(char, position)
        raise _SyntaxProblem(position, f"unexpected {char!r} after the complete JSON value")

    def _start_value(self, char: str, position: int) -> int:
        if char == '"':
            self._open_string(is_key=False)
            return position + 1
        if char == "{":
            self._open_container({})
            self._state = _EXPECT_KEY_OR_OBJECT_END
            return position + 1
        if char == "[":
            self._open_container([])
            self._state = _EXPECT_VALUE_OR_ARRAY_END
            return position + 1
        if char in _NUMBER_START:
            self._token_parts = []
            self._state = _IN_NUMBER
            return position  # `_scan_number` reads it
        if char in _LITERALS:
            self._literal, self._literal_value = _LITERALS[char]
            self._literal_matched = 0
            self._state = _IN_LITERAL
            return position
        raise _SyntaxProblem(position, f"expected a value, found {char!r}")

    def _scan_string(self, text: str, position: int) -> int:
        if not self._string_is_key:
            self._changes += 1
        parts = self._string_parts
        end = len(text)
        while True:
            run_end = _STRING_RUN.match(text, position).end()  # type: ignore[union-attr]
            if run_end > position:
                parts.append(text[position:run_end])
            if run_end == end:
                if len(parts) >= self._compact_at:
                    self._compact_string()
                return end
            char = text[run_end]
            if char == '"':
                self._close_string()
                return run_end + 1
            if char != "\\":
                raise _SyntaxProblem(
                    run_end,
                    f"control character {char!r} inside a string; JSON needs it escaped",
                )
            decoded, position = _decode_escape(text, run_end)
            if not decoded:
                self._tail = text[run_end:]  # cut off: wait for the rest of the escape
                return end
            parts.append(decoded)

    def _scan_number(self, text: str, position: int) -> int:
        run_end = _NUMBER_RUN.match(text, position).end()  # type: ignore[union-attr]
        if run_end > position:
            self._token_parts.append(text[position:run_end])
        if run_end < len(text):
            self._complete_number(run_end)
        return run_end

    def _complete_number(self, end: int) -> None:
        """Adds the number that ends at `end` in the current text (it may have begun in an
        earlier fragment, so its start may be negative there)."""
        token = "".join(self._token_parts)
        if not _NUMBER.fullmatch(token):
            raise _SyntaxProblem(end - len(token), f"invalid number {token!r}")
        try:
            if token.isdigit() or (token[0] == "-" and token[1:].isdigit()):
                number: Union[int, float] = int(token)
            else:
                number = float(token)
        except ValueError as exc:  # e.g. more digits than int() accepts
            raise _SyntaxProblem(end - len(token), f"{exc} in number {token[:20]!r}...") from None
        self._add_value(number)

    def _scan_literal(self, text: str, position: int) -> int:
        literal = self._literal
        matched = self._literal_matched
        end = len(text)
        while position < end and matched < len(literal):
            if text[position] != literal[matched]:
                raise _SyntaxProblem(
                    position - matched,
                    f"invalid literal: expected {literal!r}, "
                    f"found {(literal[:matched] + text[position])!r}",
                )
            matched += 1
            position += 1
        self._literal_matched = matched
        if matched == len(literal):
            self._add_value(self._literal_value)
        return position

    # -- building the value --------------------------------------------------------------

    def _attach(self, value: Any, shown: Any) -> None:
        """Adds a value to the innermost container: `value` to the plain one, `shown` (its view,
        or _NOTHING for a container that is still open) to the shown one."""
        self._changes += 1
        stack = self._stack
        if not stack:
            self._root = value
            self._root_view = shown
            return
        frame = stack[-1]
        if frame.is_object:
            frame.container[frame.key] = value  # type: ignore[call-overload]
            if shown is not _NOTHING:
                frame.shown[frame.key] = shown  # type: ignore[call-overload]
        else:
            frame.container.append(value)  # type: ignore[union-attr]
            if shown is not _NOTHING:
                frame.shown.append(shown)  # type: ignore[union-attr]

    def _add_value(self, value: Any) -> None:
        self._attach(value, value)
        self._state = _EXPECT_COMMA_OR_END if self._stack else _AFTER_TOP_VALUE

    def _open_container(self, container: Union[Dict[str, Any], List[Any]]) -> None:
        self._attach(container, _NOTHING)
        self._stack.append(_Frame(container))

    def _close_container(self) -> None:
        # What it shows does not change, so `_changes` stays: a cached view is still right.
        frame = self._stack.pop()
        shown = frame.shown
        view = _ReadOnlyDict(shown) if frame.is_object else _ReadOnlyList(shown)
        if self._stack:
            parent = self._stack[-1]
            if parent.is_object:
                parent.shown[parent.key] = view  # type: ignore[call-overload]
            else:
                parent.shown.append(view)  # type: ignore[union-attr]
            self._state = _EXPECT_COMMA_OR_END
        else:
            self._root_view = view
            self._state = _AFTER_TOP_VALUE

    def _open_string(self, is_key: bool) -> None:
        if not is_key:
            self._changes += 1  # an open string value shows as ""
        parts: List[str] = []
        self._string_parts = parts
        self._string_chunks = 0
        self._compact_at = _COMPACT_EVERY
        self._string_is_key = is_key
        self._state = _IN_STRING
        if self._watches and not is_key:
            watch = self._watches.get(self._current_path())
            if watch is not None and not watch.started:
                watch._bind(parts)
                self._string_watch = watch

    def _compact_string(self) -> None:
        """Joins the open string's small pieces into one chunk.

        A long string arrives as many tiny pieces; keeping them all costs memory and, through
        the cache, time per piece that grows with the string. Each piece is joined once here and
        once at the end, so this stays linear. Pieces a watch has not read yet stay separate,
        because the watch finds its new text by piece index.
        """
        parts = self._string_parts
        watch = self._string_watch
        start = self._string_chunks
        stop = len(parts) if watch is None else watch._read_upto
        if stop - start >= _COMPACT_EVERY // 2:
            parts[start:stop] = ["".join(parts[start:stop])]
            self._string_chunks = start + 1
            if watch is not None:
                watch._shift(stop - start - 1)
        self._compact_at = len(parts) + _COMPACT_EVERY

    def _close_string(self) -> None:
        parts = self._string_parts
        text = parts[0] if len(parts) == 1 else "".join(parts)
        if self._string_is_key:
            self._stack[-1].key = text
            self._state = _EXPECT_COLON
            return
        if self._string_watch is not None:
            self._string_watch.done = True
            self._string_watch = None
        self._add_value(text)

    def _current_path(self) -> Tuple[PathElement, ...]:
        """The path of the string value being read or about to start (not yet attached)."""
        # An open array's open child is its last element; the innermost array's next one is new.
        path: List[PathElement] = [
            frame.key if frame.is_object else len(frame.container) - 1 for frame in self._stack
        ]
        if path and not self._stack[-1].is_object:
            path[-1] += 1  # type: ignore[operator]
        return tuple(path)

    # -- reading -------------------------------------------------------------------------

    def watch(self, path: Sequence[PathElement]) -> StringWatch:
        """Returns a `StringWatch` that streams the string at `path` (keys and indexes).

        The field need not exist yet; text already parsed is handed out by the first read.
        A path whose value turns out not to be a string never starts. Asking twice for the same
        path returns the same watch.
        """
        key = tuple(path)
        for element in key:
            if isinstance(element, bool) or not isinstance(element, (str, int)):
                raise TypeError(
                    f"a watch path holds object keys (str) and array indexes (int), "
                    f"got {element!r} in {list(path)!r}"
                )
        if key in self._watches:
            return self._watches[key]
        watch = StringWatch(key)
        self._watches[key] = watch
        existing = _lookup(self._root, key)
        if isinstance(existing, str):
            watch._bind([existing])
            watch.done = True
        elif self._state == _IN_STRING and not self._string_is_key:
            if self._current_path() == key:
                watch._bind(self._string_parts)
                self._string_watch = watch
        return watch

    def healed(self, default: Any = None) -> Any:
        """Returns the best value so far, with open strings, arrays and objects closed,
        following the rules in this module's docstring (so every value is consistent with the
        final one). Returns `default` while nothing can be shown yet (no text, or a top-level
        number or literal still incomplete).

        Arrays and objects come as read-only views (`list` and `dict` subclasses whose mutating
        methods raise TypeError), because successive calls share their finished parts; a view
        never changes once returned. `copy.deepcopy(value)` gives a plain, mutable copy.

        Costs nothing new when nothing shown has changed since the last call (the same value is
        returned); otherwise the length of a string still open plus, for each array and object
        still open, a C-level copy of its member references. Finished parts cost nothing.

        After an error, returns the value as it was just before the bad character.
        """
        if self._healed_at != self._changes:
            self._healed = self._build_view()
            self._healed_at = self._changes
        return default if self._healed is _NOTHING else self._healed

    def _build_view(self) -> Any:
        if self._state == _IN_STRING and not self._string_is_key:
            parts = self._string_parts
            child: Any = parts[0] if len(parts) == 1 else "".join(parts)
        else:
            child = _NOTHING
        stack = self._stack
        if not stack:
            return self._root_view if self._root_view is not _NOTHING else child
        # Inside out: each open container shows its finished members and its open last one.
        for frame in reversed(stack):
            if frame.is_object:
                view: Any = _ReadOnlyDict(frame.shown)
                if child is not _NOTHING:
                    _dict_set(view, frame.key, child)
            else:
                view = _ReadOnlyList(frame.shown)
                if child is not _NOTHING:
                    _list_append(view, child)
            child = view
        return child

    @property
    def complete(self) -> bool:
        """True once the top-level value is complete (a number only once something follows it)
        and nothing invalid has been fed."""
        return self._state == _AFTER_TOP_VALUE and self._problem is None

    @property
    def raw(self) -> str:
        """The whole text fed so far."""
        return "".join(self._raw_chunks) + "".join(self._raw_parts)

    @property
    def error(self) -> Optional[PartialJSONError]:
        """The first problem found in the text so far, or None. `finish` raises it."""
        if self._problem is None:
            return None
        return _make_error(self._problem.message, self.raw, self._problem.position)

    def finish(self) -> Any:
        """Ends the text and returns the value, parsed strictly like `json.loads` (except that
        NaN and Infinity are not JSON and are refused).

        Raises PartialJSONError, with the raw text and the position, if the text is invalid,
        incomplete, or empty (unless ``empty_is_object=True``). Further feeds raise RuntimeError.
        Calling it again returns the same value or raises the same error.
        """
        self._finished = True
        if self._final is not _NOTHING:
            return self._final
        raw = self.raw
        if self._problem is None and self._state == _IN_NUMBER and not self._stack:
            try:
                self._complete_number(0)
            except _SyntaxProblem as problem:
                problem.position += self._offset
                self._problem = problem
        if self._problem is not None:
            raise _make_error(self._problem.message, raw, self._problem.position)
        if self._state == _AFTER_TOP_VALUE:
            self._final = self._root
            return self._final
        if self._root is _NOTHING and self._state == _EXPECT_VALUE:
            if self.empty_is_object:
                self._final = {}
                return self._final
            raise _make_error(
                "the JSON text is empty; pass empty_is_object=True to read it as {}",
                raw,
                len(raw),
            )
        raise _make_error(f"the JSON text ends early, {self._describe_open()}", raw, len(raw))

    def _describe_open(self) -> str:
        if self._state == _IN_STRING:
            where = "inside an object key" if self._string_is_key else "inside a string"
        elif self._state == _EXPECT_COLON:
            where = "after an object key"
        elif self._state == _IN_LITERAL:
            where = f"inside the literal {self._literal!r}"
        elif self._state == _IN_NUMBER:
            where = "after a number"
        else:
            where = "where a value or a closing bracket should follow"
        openers = "".join("{" if frame.is_object else "[" for frame in self._stack)
        if openers:
            where += f", with {len(openers)} unclosed '{openers}'"
        return where


def heal_json(prefix: str, default: Any = None) -> Any:
    """Returns the healed value of a JSON prefix, as `PartialJSON.healed` would (a one-shot
    parse: to follow a stream, keep one `PartialJSON` and feed it instead)."""
    parser = PartialJSON()
    parser.feed(prefix)
    return parser.healed(default)


def _decode_escape(text: str, start: int) -> Tuple[str, int]:
    """Decodes the escape sequence at text[start] (a backslash). Returns the decoded text and
    the position after it, or ("", start) when the text ends before the escape can be decided.
    """
    end = len(text)
    if start + 1 == end:
        return "", start
    kind = text[start + 1]
    simple = _SIMPLE_ESCAPES.get(kind)
    if simple is not None:
        return simple, start + 2
    if kind != "u":
        raise _SyntaxProblem(start, f"invalid escape '\\{kind}' in a string")
    digits = text[start + 2 : start + 6]
    for digit in digits:
        if digit not in _HEX_DIGITS:
            raise _SyntaxProblem(start, f"invalid escape {text[start : start + 6]!r} in a string")
    if len(digits) < 4:
        return "", start
    code = int(digits, 16)
    if not 0xD800 <= code <= 0xDBFF:
        return chr(code), start + 6
    # A high surrogate: the pair's second half may follow as another escape.
    follower = text[start + 6 : start + 12]
    for char, allowed in zip(follower, _LOW_SURROGATE_ESCAPE):
        if char not in allowed:
            return chr(code), start + 6  # a lone surrogate, kept as json.loads keeps it
    if len(follower) < 6:
        return "", start
    low = int(follower[2:], 16)
    return chr(0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)), start + 12


def _copy_json(value: Any) -> Any:
    """A plain, mutable copy of the arrays and objects in `value`, read-only views included
    (iterative: depth costs no stack)."""
    if not isinstance(value, (dict, list)):
        return value
    top: Any = {} if isinstance(value, dict) else []
    pending = [(value, top)]
    while pending:
        source, target = pending.pop()
        if isinstance(source, dict):
            for key, item in source.items():
                if isinstance(item, (dict, list)):
                    copied: Any = {} if isinstance(item, dict) else []
                    pending.append((item, copied))
                    item = copied
                dict.__setitem__(target, key, item)
        else:
            for item in source:
                if isinstance(item, (dict, list)):
                    copied = {} if isinstance(item, dict) else []
                    pending.append((item, copied))
                    item = copied
                list.append(target, item)
    return top


def _lookup(root: Any, path: Tuple[PathElement, ...]) -> Any:
    node = root
    for element in path:
        if isinstance(node, dict) and isinstance(element, str) and element in node:
            node = node[element]
        elif isinstance(node, list) and isinstance(element, int) and 0 <= element < len(node):
            node = node[element]
        else:
            return _NOTHING
    return node


def _make_error(message: str, raw: str, position: int) -> PartialJSONError:
    line = raw.count("\n", 0, position) + 1
    column = position - raw.rfind("\n", 0, position)
    if len(raw) <= 200:
        context = f"in {raw!r}"
    else:
        context = f"near {raw[max(0, position - 40) : position + 20]!r}"
    return PartialJSONError(
        f"invalid JSON at position {position} (line {line}, column {column}): {message}; "
        f"{context} (the whole text is in this error's .raw)",
        raw,
        position,
    )
