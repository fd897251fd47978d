"""Strict JSON: a checkpoint resumes to exactly the state that was saved, or is refused."""

from __future__ import annotations

import collections
import datetime
import decimal
import enum
import json
import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pocketflow_stream.persist import (
    CheckpointTooLarge,
    Codecs,
    NotJSONError,
    UnknownCodecError,
    decode,
    encode,
)
from pocketflow_stream.persist.strict_json import check_size, dumps, dumps_checked, loads


class Color(str, enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Tags(list):
    pass


Point = collections.namedtuple("Point", "x y")

REFUSED = [
    ((1, 2), r"is a tuple; JSON would turn it into a list"),
    ({1, 2}, r"is a set; JSON cannot hold a set"),
    (frozenset([1]), r"is a frozenset; JSON cannot hold a frozenset"),
    (b"x", r"is a bytes; JSON cannot hold bytes"),
    (bytearray(b"x"), r"is a bytearray; JSON cannot hold bytes"),
    (1j, r"is a complex; JSON cannot hold a complex number"),
    (float("nan"), r"is nan, which JSON cannot hold"),
    (float("inf"), r"is inf, which JSON cannot hold"),
    (float("-inf"), r"is -inf, which JSON cannot hold"),
    (datetime.datetime(2024, 1, 1), r"is a datetime\.datetime, which JSON cannot hold"),
    (datetime.date(2024, 1, 1), r"is a datetime\.date, which JSON cannot hold"),
    (decimal.Decimal("1.5"), r"is a decimal\.Decimal, which JSON cannot hold"),
    (object(), r"is a builtins\.object, which JSON cannot hold"),
    (
        collections.OrderedDict(a=1),
        r"is a collections\.OrderedDict, a subclass of dict; JSON would bring it back as a "
        r"plain dict",
    ),
    (
        collections.defaultdict(list),
        r"is a collections\.defaultdict, a subclass of dict; JSON would bring it back",
    ),
    (Color.RED, r"a subclass of str; JSON would bring it back as a plain str"),
    (Level.HIGH, r"a subclass of int; JSON would bring it back as a plain int"),
    (Tags([1]), r"a subclass of list; JSON would bring it back as a plain list"),
    (Point(1, 2), r"Point, a subclass of tuple; JSON would turn it into a list"),
]


@pytest.mark.parametrize("value, problem", REFUSED, ids=[repr(v)[:30] for v, _ in REFUSED])
def test_every_kind_json_would_change_is_refused_with_its_path_and_writer(value, problem):
    shared = {"history": [{"role": "user"}, {"parts": [value]}]}
    with pytest.raises(NotJSONError) as caught:
        encode(shared, writer="Agent > Plan")
    message = str(caught.value)
    assert message.startswith(
        "cannot checkpoint shared['history'][1]['parts'][0] (written by node Agent > Plan): it "
    )
    assert caught.value.path == "shared['history'][1]['parts'][0]"
    assert caught.value.writer == "Agent > Plan"
    assert re.search(problem, message), message
    assert "register a codec" in message
    assert isinstance(caught.value, TypeError)  # what json.dumps would have raised, roughly


@pytest.mark.parametrize(
    "key, becomes",
    [
        (1, 'JSON would turn it into the str "1"'),
        (2.5, 'JSON would turn it into the str "2.5"'),
        (True, 'JSON would turn it into the str "true"'),
        (None, 'JSON would turn it into the str "null"'),
        ((1, 2), "JSON cannot hold it as a key"),
    ],
)
def test_a_key_that_is_not_a_str_is_refused_saying_what_json_would_make_of_it(key, becomes):
    with pytest.raises(NotJSONError) as caught:
        encode({"scores": {key: 1}})
    assert str(caught.value).startswith(
        f"cannot checkpoint shared['scores'][{key!r}]: it has the key {key!r} "
        f"({type(key).__name__}); {becomes}. Use str keys."
    )


def test_a_cycle_is_refused():
    loop: list = [1]
    loop.append(loop)
    with pytest.raises(NotJSONError, match=r"shared\[1\]: it contains itself \(a cycle\)"):
        encode(loop)


def test_the_same_list_twice_is_no_cycle():
    part = [1]
    assert encode({"a": part, "b": part}) == {"a": [1], "b": [1]}


def test_the_codec_key_is_reserved():
    with pytest.raises(NotJSONError, match=r"shared\['x'\]\['\$codec'\]: it uses the key"):
        encode({"x": {"$codec": "datetime", "value": "2024"}})


def test_plain_json_passes_unchanged_and_uncopied():
    shared = {"a": [1, 2.5, "s", True, None, {"b": []}], "ü": {"": -(10**30)}}
    assert encode(shared) is shared


def datetime_codecs() -> Codecs:
    return Codecs().register(
        "datetime", datetime.datetime, datetime.datetime.isoformat, datetime.datetime.fromisoformat
    )


def test_a_registered_codec_round_trips_its_type_by_tag():
    codecs = datetime_codecs().register("tuple", tuple, list, tuple)
    when = datetime.datetime(2024, 5, 6, 7, 8, 9)
    shared = {"log": [{"at": when, "span": (when, 3)}], "n": 1}
    encoded = encode(shared, codecs)
    assert encoded is not shared and shared["log"][0]["at"] is when  # the app's value untouched
    text = dumps(encoded)
    assert '{"$codec":"datetime","value":"2024-05-06T07:08:09"}' in text
    back = decode(loads(text), codecs)
    assert back == shared and type(back["log"][0]["span"]) is tuple
    assert type(back["log"][0]["span"][0]) is datetime.datetime


def test_a_codec_matches_the_exact_type_only():
    class Later(datetime.datetime):
        pass

    with pytest.raises(NotJSONError, match=r"Later, which JSON cannot hold"):
        encode({"t": Later(2024, 1, 1)}, datetime_codecs())


def test_an_unknown_tag_on_load_is_an_error_never_none():
    text = dumps(encode({"t": datetime.datetime(2024, 1, 1)}, datetime_codecs()))
    with pytest.raises(UnknownCodecError, match=r"codec 'datetime', which is not registered"):
        decode(loads(text))
    with pytest.raises(UnknownCodecError, match=r"registered: 'tuple'"):
        decode(loads(text), Codecs().register("tuple", tuple, list, tuple))


def test_a_codec_that_fails_is_named():
    codecs = Codecs().register("bad", complex, lambda value: 1 / 0, complex)
    with pytest.raises(NotJSONError, match=r"could not be encoded by codec 'bad'.*ZeroDivision"):
        encode({"z": 1j}, codecs)


def test_a_codec_must_give_json_in_turn():
    codecs = Codecs().register("lazy", complex, lambda value: (value.real, value.imag), complex)
    with pytest.raises(NotJSONError, match=r"shared\['z'\]\['<lazy>'\]: it is a tuple"):
        encode({"z": 1j}, codecs)


def test_registering_twice_or_a_json_type_is_refused():
    codecs = datetime_codecs()
    with pytest.raises(ValueError, match="tag 'datetime' is registered already"):
        codecs.register("datetime", datetime.date, str, str)
    with pytest.raises(ValueError, match="a codec for datetime is registered already"):
        codecs.register("dt2", datetime.datetime, str, str)
    with pytest.raises(ValueError, match="dict is held by JSON itself"):
        codecs.register("d", dict, dict, dict)


def test_the_size_guard_names_the_biggest_keys():
    shared = {"small": "x", "files": "y" * 5000, "history": ["z" * 100] * 20, "n": 1}
    text = dumps(shared)
    check_size(text, shared, len(text), "Agent > Read")  # at the limit: fine
    with pytest.raises(CheckpointTooLarge) as caught:
        check_size(text, shared, 1000, "Agent > Read")
    message = str(caught.value)
    assert message.startswith(f"the checkpoint after node Agent > Read is {len(text):,} bytes")
    assert "shared['files'] 5,002 bytes, shared['history'] 2,061 bytes" in message
    assert [key for key, _ in caught.value.biggest][:2] == ["files", "history"]


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text().filter(lambda key: key != "$codec"), children, max_size=4)
    ),
    max_leaves=20,
)


def same(a, b) -> bool:
    if type(a) is not type(b):
        return False
    if type(a) is dict:
        return a.keys() == b.keys() and all(same(a[key], b[key]) for key in a)
    if type(a) is list:
        return len(a) == len(b) and all(map(same, a, b))
    if type(a) is float:
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return a == b


@given(json_values)
def test_every_accepted_value_comes_back_equal_and_of_the_same_types(value):
    assert same(decode(loads(dumps(encode(value)))), value)


@given(json_values, st.sampled_from([(1,), {2}, b"3", float("nan")]))
def test_one_bad_value_anywhere_is_refused(value, bad):
    with pytest.raises(NotJSONError):
        encode([value, {"deep": [bad]}])
    json.dumps([value])  # the rest alone is JSON


def test_a_value_nested_too_deep_is_refused_not_a_recursion_error():
    deep: list = []
    inner = deep
    for _ in range(1000):
        inner.append([])
        inner = inner[0]
    with pytest.raises(NotJSONError, match=r"it is nested more than 400 levels deep"):
        encode({"deep": deep})


@given(json_values)
def test_the_fast_encoder_of_checked_values_writes_what_dumps_writes(value):
    encoded = encode(value)
    assert dumps_checked(encoded) == dumps(encoded)
