"""Reading wire data: the SSE decoder of the raw streaming path, and the views adapters read
SDK objects and dicts through."""

from __future__ import annotations

from types import SimpleNamespace

import openai
from hypothesis import given
from hypothesis import strategies as st
from openai.types.chat import ChatCompletionChunk

from pocketflow_stream.llm._wire import SSEDecoder, field, view

BODY = (
    b": a comment, then a ping without data\n"
    b"event: ping\n\n"
    b'data: {"a": 1}\n\n'
    b"event: content_block_delta\n"
    b'data: {"text": "caf\xc3\xa9 \xe2\x98\x95"}\n\n'
    b"id: 7\r\nretry: 100\r\nevent: multi\r\ndata: line one\r\ndata:line two\r\n\r\n"
    b"data: cr only\r\r"
    b"\n\n\n"  # stray blank lines dispatch nothing
    b"data: [DONE]\n\n"
)
EVENTS = [
    (None, b'{"a": 1}'),
    ("content_block_delta", '{"text": "café ☕"}'.encode()),
    ("multi", b"line one\nline two"),
    (None, b"cr only"),
    (None, b"[DONE]"),
]


def decode(pieces):
    decoder = SSEDecoder()
    events = []
    for piece in pieces:
        events += decoder.feed(piece)
    return events + decoder.close()


def test_a_body_in_one_piece():
    assert decode([BODY]) == EVENTS


def test_a_body_cut_at_every_byte():
    assert decode([BODY[n : n + 1] for n in range(len(BODY))]) == EVENTS


@given(st.lists(st.integers(min_value=0, max_value=len(BODY)), max_size=12))
def test_a_body_cut_anywhere_gives_the_same_events(cuts):
    points = [0, *sorted(cuts), len(BODY)]
    assert decode([BODY[a:b] for a, b in zip(points, points[1:])]) == EVENTS


def test_crlf_split_between_reads_is_one_line_end():
    assert decode([b"data: x\r", b"\n\r", b"\ndata: y\r\n\r\n"]) == [(None, b"x"), (None, b"y")]


def test_an_event_the_body_ends_without_its_blank_line_is_given_at_close():
    decoder = SSEDecoder()
    assert decoder.feed(b'data: {"last": true}') == []
    assert decoder.close() == [(None, b'{"last": true}')]
    assert decoder.close() == []


def test_a_field_without_a_space_and_an_empty_data_line():
    assert decode([b"data:x\n\ndata:\n\n"]) == [(None, b"x"), (None, b"")]


# --- views ---------------------------------------------------------------------------------


def test_a_pydantic_view_reads_declared_and_undeclared_fields_without_getattr():
    chunk = ChatCompletionChunk.construct(
        id="c", choices=[], created=1, model="m", object="chat.completion.chunk", extra_field=3
    )

    chunk_view = view(chunk)

    assert chunk_view.get("model") == "m" and chunk_view.get("extra_field") == 3
    assert chunk_view.get("not_there") is None
    assert field(chunk, "usage", "default") == "default"  # None reads as missing


def test_other_objects_are_read_by_attribute():
    class WithProperty(openai.BaseModel):
        @property
        def computed(self) -> int:
            return 5

    assert view(SimpleNamespace(a=1)).get("a") == 1
    assert view(WithProperty()).get("computed") == 5
    assert view(None).get("anything") is None
    assert view({"a": 2}).get("a") == 2
