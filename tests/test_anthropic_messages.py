"""AnthropicAdapter: Messages stream events (SDK objects or wire dicts) -> deltas."""

from __future__ import annotations

import json
from typing import Any, Dict, List

import pytest
from anthropic import types as sdk
from hypothesis import given, settings
from hypothesis import strategies as st

from pocketflow_stream.llm.accumulator import accumulate
from pocketflow_stream.llm.anthropic_messages import AnthropicAdapter, anthropic_deltas
from pocketflow_stream.llm.deltas import (
    Finish,
    ProviderError,
    ReasoningDelta,
    RedactedReasoning,
    SignatureDelta,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
)


def message_start(input_tokens=8, cache_read=4, cache_creation=0) -> Dict[str, Any]:
    return {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-test",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": input_tokens,
                "cache_read_input_tokens": cache_read,
                "cache_creation_input_tokens": cache_creation,
                "output_tokens": 1,
            },
        },
    }


def start(index: int, block: Dict[str, Any]) -> Dict[str, Any]:
    return {"type": "content_block_start", "index": index, "content_block": block}


def delta(index: int, **payload: Any) -> Dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": payload}


def stop(index: int) -> Dict[str, Any]:
    return {"type": "content_block_stop", "index": index}


def message_delta(stop_reason: str, output_tokens: int = 30, **usage: Any) -> Dict[str, Any]:
    return {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": None},
        "usage": {"output_tokens": output_tokens, **usage},
    }


def thinking_block(thinking: str = "", signature: str = "") -> Dict[str, Any]:
    return {"type": "thinking", "thinking": thinking, "signature": signature}


def tool_block(tool_id: str, name: str, given: Any = None) -> Dict[str, Any]:
    return {
        "type": "tool_use",
        "id": tool_id,
        "name": name,
        "input": {} if given is None else given,
    }


REALISTIC = [
    message_start(),
    start(0, thinking_block()),
    delta(0, type="thinking_delta", thinking="Two "),
    delta(0, type="thinking_delta", thinking="cities."),
    delta(0, type="signature_delta", signature="EqQBCgIYAhIM"),
    stop(0),
    start(1, {"type": "text", "text": ""}),
    delta(1, type="text_delta", text="Checking"),
    {"type": "ping"},
    delta(1, type="text_delta", text=" both."),
    stop(1),
    start(2, tool_block("toolu_a", "get_weather")),
    delta(2, type="input_json_delta", partial_json=""),
    delta(2, type="input_json_delta", partial_json='{"city": '),
    delta(2, type="input_json_delta", partial_json='"Paris"}'),
    stop(2),
    start(3, tool_block("toolu_b", "get_time")),
    delta(3, type="input_json_delta", partial_json='{"tz": "CET"}'),
    stop(3),
    message_delta("tool_use", 30, output_tokens_details={"thinking_tokens": 10}),
    {"type": "message_stop"},
]

_SDK_CLASSES = {
    "message_start": sdk.RawMessageStartEvent,
    "content_block_start": sdk.RawContentBlockStartEvent,
    "content_block_delta": sdk.RawContentBlockDeltaEvent,
    "content_block_stop": sdk.RawContentBlockStopEvent,
    "message_delta": sdk.RawMessageDeltaEvent,
    "message_stop": sdk.RawMessageStopEvent,
}


def test_realistic_stream():
    assert list(anthropic_deltas(REALISTIC)) == [
        Usage(12, 1, 13, None, 4),
        ReasoningDelta("Two "),
        ReasoningDelta("cities."),
        SignatureDelta("EqQBCgIYAhIM"),
        TextDelta("Checking"),
        TextDelta(" both."),
        ToolCallStart(0, "toolu_a", "get_weather"),
        ToolCallDelta(0, '{"city": '),
        ToolCallDelta(0, '"Paris"}'),
        ToolCallEnd(0),
        ToolCallStart(1, "toolu_b", "get_time"),
        ToolCallDelta(1, '{"tz": "CET"}'),
        ToolCallEnd(1),
        Usage(12, 30, 42, 10, 4),
        Finish("tool_calls", "tool_use"),
    ]


def test_sdk_objects_give_the_same_deltas_as_wire_dicts():
    objects = [_SDK_CLASSES[e["type"]].model_validate(e) for e in REALISTIC if e["type"] != "ping"]
    wire = [e for e in REALISTIC if e["type"] != "ping"]
    assert list(anthropic_deltas(objects)) == list(anthropic_deltas(wire))


def test_folded_message_keeps_the_signed_thinking_block():
    message = accumulate(anthropic_deltas(REALISTIC))
    assert message.content == "Checking both."
    assert message.reasoning == "Two cities."
    assert [(b.text, b.signature) for b in message.reasoning_blocks] == [
        ("Two cities.", "EqQBCgIYAhIM")
    ]
    assert [(c.id, c.arguments) for c in message.tool_calls] == [
        ("toolu_a", {"city": "Paris"}),
        ("toolu_b", {"tz": "CET"}),
    ]


def test_tool_without_parameters_and_empty_partial_json():
    # https://github.com/anthropics/anthropic-sdk-java/pull/295
    stream = [
        start(1, tool_block("toolu_1", "getCurrentTime")),
        delta(1, type="input_json_delta", partial_json=""),
        stop(1),
        message_delta("tool_use"),
    ]
    assert list(anthropic_deltas(stream))[:2] == [
        ToolCallStart(0, "toolu_1", "getCurrentTime"),
        ToolCallEnd(0),
    ]
    (call,) = accumulate(anthropic_deltas(stream)).tool_calls
    assert (call.arguments, call.valid) == ({}, True)


def test_input_given_whole_at_block_start():
    # proxies that synthesise complete blocks: https://github.com/inflaborg/ccrelay/pull/119
    stream = [start(0, tool_block("toolu_1", "search", {"q": "x"})), stop(0)]
    assert list(anthropic_deltas(stream)) == [
        ToolCallStart(0, "toolu_1", "search"),
        ToolCallDelta(0, '{"q": "x"}'),
        ToolCallEnd(0),
    ]
    # streamed input wins over the start's copy
    streamed = [
        start(0, tool_block("toolu_1", "search", {"q": "x"})),
        delta(0, type="input_json_delta", partial_json='{"q": "x"}'),
        stop(0),
    ]
    assert [d for d in anthropic_deltas(streamed) if isinstance(d, ToolCallDelta)] == [
        ToolCallDelta(0, '{"q": "x"}')
    ]


def test_redacted_thinking_and_signature_in_the_start_block():
    stream = [
        start(0, {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3p"}),
        stop(0),
        start(1, thinking_block("whole thought", "sig-in-start")),
        stop(1),
    ]
    assert list(anthropic_deltas(stream)) == [
        RedactedReasoning("EmwKAhgBEgy3va3p"),
        ReasoningDelta("whole thought"),
        SignatureDelta("sig-in-start"),
    ]


def test_usage_is_a_running_total_not_a_sum():
    stream = [
        message_start(input_tokens=100, cache_read=0, cache_creation=20),
        message_delta("end_turn", output_tokens=5),
        message_delta("end_turn", output_tokens=9),
    ]
    usages = [d for d in anthropic_deltas(stream) if isinstance(d, Usage)]
    assert usages == [
        Usage(120, 1, 121, None, 0),
        Usage(120, 5, 125, None, 0),
        Usage(120, 9, 129, None, 0),
    ]
    assert accumulate(anthropic_deltas(stream)).usage == Usage(120, 9, 129, None, 0)


def test_message_delta_with_cumulative_input_figures():
    stream = [
        message_start(input_tokens=10, cache_read=0),
        message_delta("end_turn", 3, input_tokens=50),
    ]
    assert accumulate(anthropic_deltas(stream)).usage == Usage(50, 3, 53, None, 0)


@pytest.mark.parametrize(
    "stop_reason, reason",
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("pause_turn", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("brand_new_reason", "stop"),
    ],
)
def test_stop_reasons(stop_reason, reason):
    assert list(
        anthropic_deltas([{"type": "message_delta", "delta": {"stop_reason": stop_reason}}])
    ) == [Finish(reason, stop_reason)]


def test_error_event_mid_stream():
    stream = [
        start(0, {"type": "text", "text": ""}),
        delta(0, type="text_delta", text="Par"),
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    ]
    assert list(anthropic_deltas(stream))[1] == ProviderError("Overloaded", "overloaded_error")


def test_unknown_events_blocks_and_deltas_are_skipped():
    stream = [
        {"type": "ping"},
        {"type": "brand_new_event", "x": 1},
        start(
            0, {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}
        ),
        delta(0, type="input_json_delta", partial_json='{"query": "x"}'),  # a server tool's input
        stop(0),
        start(1, {"type": "text", "text": ""}),
        delta(1, type="citations_delta", citation={"type": "char_location"}),
        delta(1, type="text_delta", text="ok"),
        stop(1),
    ]
    assert list(anthropic_deltas(stream)) == [TextDelta("ok")]


def test_deltas_for_a_block_that_never_started():
    stream = [
        delta(0, type="text_delta", text="a"),
        delta(1, type="input_json_delta", partial_json="{}"),
    ]
    assert list(anthropic_deltas(stream)) == [
        TextDelta("a"),
        ToolCallStart(0, None, ""),
        ToolCallDelta(0, "{}"),
        ToolCallEnd(0),
    ]


def test_close_ends_blocks_of_a_cut_stream():
    adapter = AnthropicAdapter()
    adapter.feed(start(0, tool_block("toolu_1", "f")))
    adapter.feed(delta(0, type="input_json_delta", partial_json='{"a": '))
    assert adapter.close() == [ToolCallEnd(0)]
    assert adapter.close() == []


def _pieces(draw, text: str) -> List[str]:
    cuts = sorted(c for c in draw(st.sets(st.integers(1, max(1, len(text) - 1)))) if c < len(text))
    return [text[a:b] for a, b in zip([0] + cuts, cuts + [len(text)])]


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_any_split_yields_the_same_message(data):
    arguments = {"city": "Zürich", "days": [1, 2], "note": 'say "hi"'}
    raw = json.dumps(arguments, ensure_ascii=False)
    stream = [message_start(), start(0, thinking_block())]
    stream += [delta(0, type="thinking_delta", thinking=p) for p in _pieces(data.draw, "Plan it.")]
    stream += [
        delta(0, type="signature_delta", signature="sig"),
        stop(0),
        start(1, {"type": "text", "text": ""}),
    ]
    stream += [delta(1, type="text_delta", text=p) for p in _pieces(data.draw, "Checking.")]
    stream += [stop(1), start(2, tool_block("toolu_z", "weather"))]
    stream += [delta(2, type="input_json_delta", partial_json=p) for p in _pieces(data.draw, raw)]
    stream += [stop(2), message_delta("tool_use"), {"type": "message_stop"}]
    message = accumulate(anthropic_deltas(stream))
    assert (message.reasoning, message.content) == ("Plan it.", "Checking.")
    assert [(c.id, c.name, c.arguments) for c in message.tool_calls] == [
        ("toolu_z", "weather", arguments)
    ]
    assert [(b.text, b.signature) for b in message.reasoning_blocks] == [("Plan it.", "sig")]
    assert (message.usage, message.finish_reason) == (Usage(12, 30, 42, None, 4), "tool_calls")


# --- indexes a proxy may omit (issue 10 §3) ------------------------------------------------


def without_index(event: Dict[str, Any]) -> Dict[str, Any]:
    return {key: value for key, value in event.items() if key != "index"}


def test_deltas_and_stops_without_a_block_index_belong_to_the_block_started_last():
    """A proxy that keeps `index` on content_block_start but drops it from the deltas and
    stops: block 0 is not a default to pour everything into."""
    events = [
        message_start(),
        start(0, {"type": "text", "text": ""}),
        without_index(delta(0, type="text_delta", text="Checking.")),
        without_index(stop(0)),
        start(1, tool_block("toolu_1", "get_weather")),
        without_index(delta(1, type="input_json_delta", partial_json='{"city": ')),
        without_index(delta(1, type="input_json_delta", partial_json='"Paris"}')),
        without_index(stop(1)),
        message_delta("tool_use"),
        {"type": "message_stop"},
    ]

    message = accumulate(anthropic_deltas(events))

    assert message.content == "Checking."
    assert [(c.id, c.name, c.arguments) for c in message.tool_calls] == [
        ("toolu_1", "get_weather", {"city": "Paris"})
    ]
