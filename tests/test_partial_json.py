"""Specification of the incremental partial-JSON parser (pocketflow_stream/llm/partial_json.py)."""

from __future__ import annotations

import json
import random
from typing import Any, List, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pocketflow_stream.llm.partial_json import (
    PartialJSON,
    PartialJSONError,
    StringWatch,
    heal_json,
)

NOTHING = object()  # passed as healed()'s default, so "nothing yet" differs from null

# Every construct, including escapes and literals that a split can cut in two.
CORPUS = [
    "{}",
    "[]",
    '""',
    "0",
    "-0",
    "12",
    "-12.5e+3",
    "1E-2",
    "0.000",
    "true",
    "false",
    "null",
    '"plain"',
    '"esc \\" \\\\ \\/ \\b \\f \\n \\r \\t end"',
    '"\\u00e9t\\u00C9 \\u4e1c"',
    '"pair \\ud83d\\ude00 and \\uD83C\\uDF89"',
    '"lone \\ud800 then \\u0041, low \\udc00 alone, high at end \\udbff"',
    '"high then escape \\ud83d\\n"',
    '"raw non-ascii: é 東 😀"',
    '{"a": 1, "b": [true, false, null], "c": {"d": "e"}}',
    '[1, -2, 3.5, 4e10, "x", [], {}, [[]], {"k": {}}]',
    ' \n\t{ "spaced" :\r\n [ 1 , 2 ] } \n',
    '{"files": [{"name": "a.py", "content": "line 1\\nline \\"2\\"\\n"}]}',
    '{"": "", "k": ""}',
]

INVALID = [
    "{",
    "[1,",
    '{"a":1,}',
    "[1,]",
    '{"a" 1}',
    "{a: 1}",
    "[1 2]",
    "01",
    "-",
    "1.",
    ".5",
    "+1",
    "1e",
    "tru",
    "trux",
    "nul",
    "True",
    '"abc',
    '"a\nb"',
    '"\\x"',
    '"\\u12g4"',
    '"\\u12',
    "1 2",
    "{} x",
    "]",
    "[1}",
    '{"a": 1]',
    "NaN",
    "Infinity",
    "",
    "   ",
]


def feed_all(parser: PartialJSON, fragments: List[str]) -> None:
    for fragment in fragments:
        parser.feed(fragment)


def split_at(text: str, cuts: List[int]) -> List[str]:
    bounds = [0, *sorted(set(cuts)), len(text)]
    return [text[start:stop] for start, stop in zip(bounds, bounds[1:]) if stop > start]


def same(left: Any, right: Any) -> bool:
    """Equal including types and key order (1 is not 1.0, True is not 1)."""
    return json.dumps(left) == json.dumps(right)


def consistent(partial: Any, final: Any) -> bool:
    """Whether a healed snapshot can grow into `final`: strings are prefixes, arrays and objects
    only miss members at their end, everything before their last member is already final."""
    if partial is NOTHING:
        return True
    if isinstance(partial, str):
        return isinstance(final, str) and final.startswith(partial)
    if isinstance(partial, list):
        if not isinstance(final, list) or len(partial) > len(final):
            return False
        done = all(same(a, b) for a, b in zip(partial[:-1], final))
        return done and (not partial or consistent(partial[-1], final[len(partial) - 1]))
    if isinstance(partial, dict):
        if not isinstance(final, dict) or list(partial) != list(final)[: len(partial)]:
            return False
        keys = list(partial)
        done = all(same(partial[key], final[key]) for key in keys[:-1])
        return done and (not keys or consistent(partial[keys[-1]], final[keys[-1]]))
    return same(partial, final)


def check_stream(text: str, fragments: List[str]) -> None:
    """Feeds `fragments` of the valid JSON `text` and checks every promise along the way."""
    expected = json.loads(text)
    parser = PartialJSON()
    previous = NOTHING
    kept: List[Tuple[Any, str]] = []  # every value shown, with what it showed when returned
    for fragment in fragments:
        parser.feed(fragment)
        snapshot = parser.healed(NOTHING)
        assert consistent(snapshot, expected), (fragment, snapshot)
        assert consistent(previous, snapshot if snapshot is not NOTHING else expected)
        previous = snapshot
        if snapshot is not NOTHING:
            kept.append((snapshot, json.dumps(snapshot)))
    assert parser.error is None
    assert same(parser.finish(), expected)
    assert parser.raw == text
    for snapshot, shown in kept:
        assert json.dumps(snapshot) == shown  # no value changed after it was returned


# -- the final value -------------------------------------------------------------------------


@pytest.mark.parametrize("text", CORPUS)
def test_every_split_point_gives_the_json_loads_value(text: str) -> None:
    for cut in range(len(text) + 1):
        check_stream(text, split_at(text, [cut]))
    check_stream(text, list(text))


def test_top_level_number_completes_at_finish() -> None:
    parser = PartialJSON()
    parser.feed("12")
    assert parser.healed(NOTHING) is NOTHING  # it might still become 123
    parser.feed("3")
    assert parser.finish() == 123


def test_deep_nesting_uses_no_recursion() -> None:
    depth = 20_000
    parser = PartialJSON()
    parser.feed("[" * depth + '"x')
    healed = parser.healed()
    for _ in range(depth - 1):
        healed = healed[0]
    assert healed == ["x"]
    parser.feed('"' + "]" * depth)
    value = parser.finish()
    for _ in range(depth):
        value = value[0]
    assert value == "x"


@pytest.mark.parametrize("seed", range(4))
def test_long_string_in_tiny_fragments_keeps_every_character(seed: int) -> None:
    # Thousands of pieces: the parser joins them as it goes, under a watch that reads at odd times.
    rng = random.Random(seed)
    content = "".join(rng.choice(["ab", "é", "\n", '"', "\\", "😀", "xyz "]) for _ in range(6000))
    text = json.dumps({"content": content})
    parser = PartialJSON()
    watch = parser.watch(["content"])
    shown: List[str] = []
    for start in range(0, len(text), 3):
        parser.feed(text[start : start + 3])
        how = rng.random()
        if how < 0.3:
            shown.append(watch.read())
        elif how < 0.6:
            shown.extend(watch.read_lines())
        assert content.startswith("".join(shown))
    assert parser.finish() == {"content": content}
    shown.append(watch.read())
    assert "".join(shown) == content


# -- healing rules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "healed"),
    [
        ("", NOTHING),
        ("  ", NOTHING),
        ("{", {}),
        ('{"a', {}),
        ('{"a"', {}),
        ('{"a":', {}),
        ('{"a": "', {"a": ""}),
        ('{"a": "hel', {"a": "hel"}),
        ('{"a": 12', {}),
        ('{"a": 12,', {"a": 12}),
        ('{"a": 12}', {"a": 12}),
        ('{"a": [', {"a": []}),
        ('{"a": [{"b": t', {"a": [{}]}),
        ('{"a": [{"b": tru', {"a": [{}]}),
        ('{"a": [{"b": true', {"a": [{"b": True}]}),
        ("[nul", []),
        ("[null", [None]),
        ('["ab\\', ["ab"]),
        ('["ab\\u00', ["ab"]),
        ('["ab\\u00e9', ["abé"]),
        ('["\\ud83d', [""]),
        ('["\\ud83d\\ude', [""]),
        ('["\\ud83d\\ude00', ["😀"]),
        ('["\\ud83dx', ["\ud83dx"]),
        ('"top', "top"),
        ("-", NOTHING),
        ("12", NOTHING),
        ("12 ", 12),
        ("fals", NOTHING),
        ("false", False),
    ],
)
def test_healed_shows_only_what_cannot_change(prefix: str, healed: Any) -> None:
    parser = PartialJSON()
    parser.feed(prefix)
    for result in (parser.healed(NOTHING), heal_json(prefix, NOTHING)):
        assert result is healed if healed is NOTHING else same(result, healed)


LIST_MUTATIONS = [
    lambda value: value.append(0),
    lambda value: value.extend([0]),
    lambda value: value.insert(0, 0),
    lambda value: value.pop(),
    lambda value: value.remove(value[0]),
    lambda value: value.clear(),
    lambda value: value.sort(),
    lambda value: value.reverse(),
    lambda value: value.__setitem__(0, 0),
    lambda value: value.__setitem__(slice(0, 1), [0]),
    lambda value: value.__delitem__(0),
    lambda value: value.__iadd__([0]),
    lambda value: value.__imul__(2),
]
DICT_MUTATIONS = [
    lambda value: value.__setitem__("new", 0),
    lambda value: value.__setitem__(next(iter(value)), 0),
    lambda value: value.__delitem__(next(iter(value))),
    lambda value: value.pop(next(iter(value))),
    lambda value: value.popitem(),
    lambda value: value.clear(),
    lambda value: value.setdefault("new", 0),
    lambda value: value.update(new=0),
    lambda value: value.__ior__({"new": 0}),
]


def containers_in(value: Any) -> List[Any]:
    """Every array and object in `value`, outermost first."""
    found = []
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, (dict, list)):
            found.append(item)
            pending.extend(item.values() if isinstance(item, dict) else item)
    return found


def test_healed_values_are_read_only_at_every_depth() -> None:
    parser = PartialJSON()
    parser.feed('{"done": {"x": [1, 2]}, "open": [{"y": 3}, ["te')
    snapshot = parser.healed()
    before = json.dumps(snapshot)
    containers = containers_in(snapshot)
    assert len(containers) == 6  # finished ones and the open spine alike
    for container in containers:
        mutations = DICT_MUTATIONS if isinstance(container, dict) else LIST_MUTATIONS
        for mutate in mutations:
            with pytest.raises(TypeError, match="read-only.*copy.deepcopy"):
                mutate(container)
    assert json.dumps(snapshot) == before
    parser.feed('xt"]]}')
    assert parser.healed() == {"done": {"x": [1, 2]}, "open": [{"y": 3}, ["text"]]}
    assert parser.finish() == {"done": {"x": [1, 2]}, "open": [{"y": 3}, ["text"]]}


def test_deepcopy_copy_and_pickle_of_a_healed_value_give_plain_mutable_values() -> None:
    import copy
    import pickle

    parser = PartialJSON()
    parser.feed('{"done": {"x": [1, 2]}, "open": [{"y": 3}, "te')
    snapshot = parser.healed()
    for plain in (copy.deepcopy(snapshot), pickle.loads(pickle.dumps(snapshot))):
        assert plain == snapshot
        assert all(type(item) in (dict, list) for item in containers_in(plain))
        plain["done"]["x"].append(99)
        plain["open"].clear()
    shallow = copy.copy(snapshot)
    assert type(shallow) is dict and shallow == snapshot
    shallow["new"] = 1
    assert "new" not in snapshot
    assert json.loads(json.dumps(snapshot)) == snapshot
    parser.feed('xt"]}')
    later = parser.healed()
    assert later == {"done": {"x": [1, 2]}, "open": [{"y": 3}, "text"]}
    assert parser.finish() == later


def test_finish_returns_plain_values_the_caller_may_change() -> None:
    parser = PartialJSON()
    parser.feed('{"a": [1, {"b": 2}]')
    shown = parser.healed()
    parser.feed("}")
    final = parser.finish()
    assert all(type(item) in (dict, list) for item in containers_in(final))
    final["a"][1]["b"] = 0
    final["a"].append(3)
    assert shown == {"a": [1, {"b": 2}]}
    assert parser.healed() == {"a": [1, {"b": 2}]}


def test_successive_values_share_their_finished_parts() -> None:
    parser = PartialJSON()
    parser.feed('{"rows": [{"id": 1, "tags": ["a"]}, {"id": 2, "na')
    first = parser.healed()
    assert parser.healed() is first  # nothing new: the same value again
    parser.feed('me": 3')  # a key and an unfinished number: nothing shown changes
    assert parser.healed() is first
    parser.feed("4, ")
    second = parser.healed()
    assert first == {"rows": [{"id": 1, "tags": ["a"]}, {"id": 2}]}  # unchanged by the feeds
    assert second == {"rows": [{"id": 1, "tags": ["a"]}, {"id": 2, "name": 34}]}
    assert second["rows"][0] is first["rows"][0]  # the finished record is not copied again


def test_healed_default_is_none() -> None:
    parser = PartialJSON()
    assert parser.healed() is None


# -- watching a string field -----------------------------------------------------------------


def test_watch_streams_new_text_after_every_fragment() -> None:
    content = 'print("héllo")\n\tdone \\ 😀\n'
    text = json.dumps({"path": "x", "files": [{"name": "a", "content": content}]})
    parser = PartialJSON()
    watch = parser.watch(["files", 0, "content"])
    pieces = []
    for start in range(0, len(text), 5):
        parser.feed(text[start : start + 5])
        pieces.append(watch.read())
        assert content.startswith("".join(pieces))
    assert "".join(pieces) == content
    assert watch.started and watch.done
    assert watch.text == content
    assert watch.read() == ""


def test_watch_before_the_field_exists_starts_when_it_opens() -> None:
    parser = PartialJSON()
    watch = parser.watch(["b"])
    parser.feed('{"a": "not me", "b')
    assert not watch.started and watch.read() == ""
    parser.feed('": "yes')
    assert watch.started and not watch.done
    assert watch.read() == "yes"
    parser.feed(' it is"}')
    assert watch.read() == " it is" and watch.done


def test_watch_added_mid_string_hands_out_the_text_so_far() -> None:
    parser = PartialJSON()
    parser.feed('{"a": ["x", "hello wor')
    watch = parser.watch(["a", 1])
    assert watch.read() == "hello wor"
    parser.feed('ld"]}')
    assert watch.read() == "ld" and watch.done


def test_watch_added_after_the_string_is_complete_gives_it_whole() -> None:
    parser = PartialJSON()
    parser.feed('{"a": "all of it", "b": 1')
    watch = parser.watch(("a",))
    assert watch.done and watch.read() == "all of it"


def test_watch_of_a_value_that_is_not_a_string_never_starts() -> None:
    parser = PartialJSON()
    watch = parser.watch(["a"])
    parser.feed('{"a": {"b": "inner"}, "c": "x"}')
    assert not watch.started and watch.read() == ""


def test_several_watches_and_the_same_path_twice() -> None:
    parser = PartialJSON()
    first = parser.watch(["files", 0, "content"])
    second = parser.watch(["files", 1, "content"])
    assert parser.watch(["files", 0, "content"]) is first
    top = PartialJSON()
    whole = top.watch([])
    parser.feed('{"files": [{"content": "one"}, {"content": "two"}]}')
    top.feed('"top-level"')
    assert (first.read(), second.read(), whole.read()) == ("one", "two", "top-level")


def test_watch_path_elements_must_be_keys_or_indexes() -> None:
    parser = PartialJSON()
    with pytest.raises(TypeError, match="keys"):
        parser.watch(["files", True])
    with pytest.raises(TypeError, match="keys"):
        parser.watch([1.5])


def test_read_lines_gives_whole_lines_only() -> None:
    parser = PartialJSON()
    watch = parser.watch(["content"])
    parser.feed('{"content": "first li')
    assert watch.read_lines() == []
    parser.feed("ne\\nsecond\\nthi")
    assert watch.read_lines() == ["first line\n", "second\n"]
    assert watch.read_lines() == []
    parser.feed('rd"')
    assert watch.read_lines() == ["third"]  # the field closed: the last line is complete
    assert watch.read_lines() == []


def test_read_lines_keeps_empty_lines_and_adds_none_at_the_end() -> None:
    parser = PartialJSON()
    watch = parser.watch(["c"])
    parser.feed('{"c": "a\\n\\nb\\n"}')
    assert watch.read_lines() == ["a\n", "\n", "b\n"]


def test_read_and_read_lines_share_one_cursor() -> None:
    parser = PartialJSON()
    watch = parser.watch(["c"])
    parser.feed('{"c": "ab\\ncd')
    assert watch.read_lines() == ["ab\n"]
    assert watch.read() == "cd"  # the held-back part of the line
    parser.feed('ef"}')
    assert watch.read_lines() == ["ef"]


@given(st.data())
@settings(max_examples=60, deadline=None)
def test_watch_reads_survive_long_strings_and_any_reading_pattern(data: st.DataObject) -> None:
    lines = data.draw(st.lists(st.text(alphabet='ab é\\"😀', max_size=12), max_size=120))
    content = "\n".join(lines)
    text = json.dumps({"c": content}, ensure_ascii=data.draw(st.booleans()))
    size = data.draw(st.integers(1, 4))
    parser = PartialJSON()
    watch = parser.watch(["c"])
    read: List[str] = []
    for start in range(0, len(text), size):
        parser.feed(text[start : start + size])
        how = data.draw(st.sampled_from(["read", "lines", "later"]))
        if how == "read":
            read.append(watch.read())
        elif how == "lines":
            read.extend(watch.read_lines())
    parser.finish()
    read.append(watch.read())
    assert "".join(read) == content


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("text", INVALID)
def test_invalid_text_never_raises_while_feeding_and_fails_at_finish(text: str) -> None:
    for fragments in ([text], list(text)):
        parser = PartialJSON()
        feed_all(parser, fragments)  # must not raise
        parser.healed()  # nor this
        with pytest.raises(PartialJSONError) as caught:
            parser.finish()
        error = caught.value
        assert error.raw == text
        assert 0 <= error.position <= len(text)
        assert f"position {error.position}" in str(error)
        with pytest.raises(PartialJSONError):
            parser.finish()  # the same error again


@pytest.mark.parametrize("text", [t for t in INVALID if t not in ("NaN", "Infinity")])
def test_invalid_texts_are_the_ones_json_loads_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        json.loads(text)


def test_error_says_what_and_where() -> None:
    parser = PartialJSON()
    parser.feed('{"a": 1,\n "b" 2}')
    assert parser.error is not None
    with pytest.raises(PartialJSONError) as caught:
        parser.finish()
    message = str(caught.value)
    assert caught.value.position == 14
    assert "line 2, column 6" in message
    assert "expected ':'" in message and "found '2'" in message


def test_error_on_a_huge_text_quotes_an_excerpt_not_the_whole() -> None:
    text = '{"a": "' + "x" * 100_000 + '", "b": oops}'
    parser = PartialJSON()
    parser.feed(text)
    with pytest.raises(PartialJSONError) as caught:
        parser.finish()
    assert len(str(caught.value)) < 500
    assert caught.value.raw == text
    assert "oops" in str(caught.value)


def test_after_an_error_healed_shows_what_came_before_it() -> None:
    parser = PartialJSON()
    parser.feed('{"a": [1, 2], "b": "text"')
    parser.feed(" oops")
    parser.feed(', "c": 3}')
    assert parser.error is not None and not parser.complete
    assert parser.healed() == {"a": [1, 2], "b": "text"}
    assert parser.raw.endswith('"c": 3}')


def test_truncated_text_reports_what_is_still_open() -> None:
    parser = PartialJSON()
    parser.feed('{"a": [1, {"b": "te')
    with pytest.raises(PartialJSONError, match=r"inside a string.*3 unclosed '\{\[\{'"):
        parser.finish()


def test_empty_text_is_an_error_unless_read_as_an_empty_object() -> None:
    with pytest.raises(PartialJSONError, match="empty_is_object"):
        PartialJSON().finish()
    lenient = PartialJSON(empty_is_object=True)
    lenient.feed("  ")
    assert lenient.finish() == {}
    assert PartialJSON(empty_is_object=True).finish() == {}


def test_feed_refuses_bytes_and_feeding_after_finish() -> None:
    parser = PartialJSON()
    with pytest.raises(TypeError, match="decode"):
        parser.feed(b"{}")  # type: ignore[arg-type]
    parser.feed("{}")
    assert parser.complete
    assert parser.finish() == {}
    with pytest.raises(RuntimeError, match="after finish"):
        parser.feed(" ")


# -- properties over every value and every split ---------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def streamed_json(draw: st.DrawFn) -> Tuple[str, List[str]]:
    value = draw(json_values)
    text = json.dumps(
        value,
        ensure_ascii=draw(st.booleans()),
        indent=draw(st.none() | st.integers(0, 3)),
    )
    if draw(st.booleans()):
        return text, list(text)  # one character per fragment
    cuts = draw(st.lists(st.integers(0, len(text)), max_size=12))
    return text, split_at(text, cuts)


def string_paths(value: Any, path: Tuple[Any, ...] = ()) -> List[Tuple[Tuple[Any, ...], str]]:
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):
        items = list(enumerate(value))
    else:
        return []
    return [found for key, item in items for found in string_paths(item, (*path, key))]


@given(streamed_json())
@settings(max_examples=300, deadline=None)
def test_any_split_gives_json_loads_value_and_consistent_snapshots(
    stream: Tuple[str, List[str]],
) -> None:
    text, fragments = stream
    check_stream(text, fragments)


@given(streamed_json())
@settings(max_examples=200, deadline=None)
def test_watched_fields_stream_exactly_their_final_text(stream: Tuple[str, List[str]]) -> None:
    text, fragments = stream
    fields = string_paths(json.loads(text))
    parser = PartialJSON()
    watches: List[Tuple[StringWatch, str]] = [(parser.watch(path), final) for path, final in fields]
    shown = [""] * len(watches)
    for fragment in fragments:
        parser.feed(fragment)
        for index, (watch, final) in enumerate(watches):
            shown[index] += watch.read()
            assert final.startswith(shown[index])
    parser.finish()
    for (watch, final), text_shown in zip(watches, shown):
        assert watch.done and text_shown == final


@given(st.text(alphabet='{}[]:,"\\ \t\r\n\x0b\x000123456789-+.eEtrufalsnu', max_size=30), st.data())
@settings(max_examples=500, deadline=None)
def test_validity_matches_json_loads_whatever_the_split(text: str, data: st.DataObject) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(text)), max_size=8))
    split = PartialJSON()
    feed_all(split, split_at(text, cuts))
    whole = PartialJSON()
    whole.feed(text)
    try:
        expected = json.loads(text)
    except ValueError:
        for parser in (split, whole):
            with pytest.raises(PartialJSONError) as caught:
                parser.finish()
            assert caught.value.raw == text
        assert split.error is None or split.error.position == whole.error.position  # type: ignore[union-attr]
    else:
        assert same(split.finish(), expected)
        assert same(whole.finish(), expected)


@given(streamed_json(), st.data())
@settings(max_examples=200, deadline=None)
def test_no_healed_value_can_be_changed_by_its_caller(
    stream: Tuple[str, List[str]], data: st.DataObject
) -> None:
    # The caller tries to change some array or object of every value it is shown; each attempt
    # raises, and neither that value, the later ones nor the final one see any difference.
    text, fragments = stream
    parser = PartialJSON()
    kept: List[Tuple[Any, str]] = []
    for fragment in fragments:
        parser.feed(fragment)
        snapshot = parser.healed()
        containers = containers_in(snapshot)
        if containers:
            target = data.draw(st.sampled_from(containers))
            if target:
                mutations = DICT_MUTATIONS if isinstance(target, dict) else LIST_MUTATIONS
                with pytest.raises(TypeError):
                    data.draw(st.sampled_from(mutations))(target)
        kept.append((snapshot, json.dumps(snapshot)))
    expected = json.loads(text)
    assert same(parser.finish(), expected)
    assert same(parser.healed(), expected)
    for snapshot, shown in kept:
        assert json.dumps(snapshot) == shown


def records_text(count: int) -> str:
    rows = [
        {"id": index, "title": f"Result {index} ✓", "score": index / 4, "done": index % 2 == 0}
        for index in range(count)
    ]
    return json.dumps({"rows": rows, "total": count})


@pytest.mark.parametrize("size", [1, 3, 5])
def test_records_show_row_by_row_and_never_change_once_shown(size: int) -> None:
    # A UI showing a growing table: rows appear in order, each row's fields once complete, and
    # what was shown stays: no number that grows, no value that changes type.
    text = records_text(60)
    expected = json.loads(text)
    parser = PartialJSON()
    kept: List[Tuple[Any, str]] = []
    rows_seen = 0
    for start in range(0, len(text), size):
        parser.feed(text[start : start + size])
        snapshot = parser.healed({})
        rows = snapshot.get("rows", [])
        assert len(rows) >= rows_seen  # rows only get added
        rows_seen = len(rows)
        for index, row in enumerate(rows):
            final = expected["rows"][index]
            if index < len(rows) - 1:
                assert same(row, final)  # finished rows are final
            for key, value in row.items():
                if key != "title":  # the title may still be growing
                    assert same(value, final[key]), (key, value)
                else:
                    assert final["title"].startswith(value)
        kept.append((snapshot, json.dumps(snapshot)))
    assert rows_seen == 60
    assert same(parser.finish(), expected)
    for snapshot, shown in kept:
        assert json.dumps(snapshot) == shown
