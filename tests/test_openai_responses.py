"""OpenAIResponsesAdapter: Responses API stream events (SDK objects or wire dicts) -> deltas."""

from __future__ import annotations

from typing import Any, Dict, List

import pytest
from helpers import rotate_item_ids
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types import responses as sdk

from pocketflow_stream.llm.accumulator import accumulate
from pocketflow_stream.llm.deltas import (
    Finish,
    ProviderError,
    ReasoningDelta,
    RefusalDelta,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
)
from pocketflow_stream.llm.openai_responses import OpenAIResponsesAdapter, openai_responses_deltas

_sequence = iter(range(10**9))


def event(kind: str, **fields: Any) -> Dict[str, Any]:
    return {"type": kind, "sequence_number": next(_sequence), **fields}


def response(status: str = "completed", **fields: Any) -> Dict[str, Any]:
    body = {
        "id": "resp_1",
        "object": "response",
        "created_at": 1700000000,
        "model": "gpt-test",
        "output": [],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "status": status,
        "usage": {
            "input_tokens": 12,
            "input_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 0},
            "output_tokens": 30,
            "output_tokens_details": {"reasoning_tokens": 10},
            "total_tokens": 42,
        },
    }
    body.update(fields)
    return body


def function_item(item_id: str, call_id: str, name: str, arguments: str = "", status="in_progress"):
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def text_delta(text: str, item_id: str = "msg_1", output_index: int = 1) -> Dict[str, Any]:
    return event(
        "response.output_text.delta",
        item_id=item_id,
        output_index=output_index,
        content_index=0,
        delta=text,
        logprobs=[],
    )


def summary_delta(text: str, summary_index: int = 0) -> Dict[str, Any]:
    return event(
        "response.reasoning_summary_text.delta",
        item_id="rs_1",
        output_index=0,
        summary_index=summary_index,
        delta=text,
    )


def arguments_delta(text: str, item_id: str, output_index: int) -> Dict[str, Any]:
    return event(
        "response.function_call_arguments.delta",
        item_id=item_id,
        output_index=output_index,
        delta=text,
    )


REALISTIC = [
    event("response.created", response=response("in_progress", usage=None)),
    event(
        "response.output_item.added",
        output_index=0,
        item={"type": "reasoning", "id": "rs_1", "summary": []},
    ),
    summary_delta("Two "),
    summary_delta("cities."),
    event(
        "response.output_item.added",
        output_index=1,
        item={
            "type": "message",
            "id": "msg_1",
            "role": "assistant",
            "status": "in_progress",
            "content": [],
        },
    ),
    text_delta("Checking"),
    text_delta(" both."),
    event(
        "response.output_item.added",
        output_index=2,
        item=function_item("fc_1", "call_a", "get_weather"),
    ),
    arguments_delta('{"city": ', "fc_1", 2),
    arguments_delta('"Paris"}', "fc_1", 2),
    event(
        "response.function_call_arguments.done",
        item_id="fc_1",
        output_index=2,
        arguments='{"city": "Paris"}',
    ),
    event(
        "response.output_item.done",
        output_index=2,
        item=function_item("fc_1", "call_a", "get_weather", '{"city": "Paris"}', "completed"),
    ),
    event(
        "response.output_item.added",
        output_index=3,
        item=function_item("fc_2", "call_b", "get_time"),
    ),
    arguments_delta('{"tz": "CET"}', "fc_2", 3),
    event(
        "response.output_item.done",
        output_index=3,
        item=function_item("fc_2", "call_b", "get_time", '{"tz": "CET"}', "completed"),
    ),
    event("response.completed", response=response()),
]

_SDK_CLASSES = {
    "response.created": sdk.ResponseCreatedEvent,
    "response.output_item.added": sdk.ResponseOutputItemAddedEvent,
    "response.output_item.done": sdk.ResponseOutputItemDoneEvent,
    "response.output_text.delta": sdk.ResponseTextDeltaEvent,
    "response.reasoning_summary_text.delta": sdk.ResponseReasoningSummaryTextDeltaEvent,
    "response.function_call_arguments.delta": sdk.ResponseFunctionCallArgumentsDeltaEvent,
    "response.function_call_arguments.done": sdk.ResponseFunctionCallArgumentsDoneEvent,
    "response.completed": sdk.ResponseCompletedEvent,
}


def test_realistic_stream():
    assert list(openai_responses_deltas(REALISTIC)) == [
        ReasoningDelta("Two "),
        ReasoningDelta("cities."),
        TextDelta("Checking"),
        TextDelta(" both."),
        ToolCallStart(0, "call_a", "get_weather"),
        ToolCallDelta(0, '{"city": '),
        ToolCallDelta(0, '"Paris"}'),
        ToolCallEnd(0),
        ToolCallStart(1, "call_b", "get_time"),
        ToolCallDelta(1, '{"tz": "CET"}'),
        ToolCallEnd(1),
        Usage(12, 30, 42, 10, 4),
        Finish("tool_calls", "completed"),
    ]


def test_sdk_objects_give_the_same_deltas_as_wire_dicts():
    objects = [_SDK_CLASSES[e["type"]].model_validate(e) for e in REALISTIC]
    assert list(openai_responses_deltas(objects)) == list(openai_responses_deltas(REALISTIC))


def test_text_only_response_finishes_with_stop():
    stream = [text_delta("Hi"), event("response.completed", response=response())]
    assert list(openai_responses_deltas(stream))[-1] == Finish("stop", "completed")


def test_reasoning_summary_parts_are_separated_by_a_blank_line():
    stream = [summary_delta("First."), summary_delta("Second.", summary_index=1)]
    assert accumulate(openai_responses_deltas(stream)).reasoning == "First.\n\nSecond."


def test_raw_reasoning_text_deltas():
    stream = [
        event(
            "response.reasoning_text.delta",
            item_id="rs_1",
            output_index=0,
            content_index=0,
            delta="a",
        ),
        event(
            "response.reasoning_text.done",
            item_id="rs_1",
            output_index=0,
            content_index=0,
            text="ab",
        ),
    ]
    assert list(openai_responses_deltas(stream)) == [ReasoningDelta("a"), ReasoningDelta("b")]


def test_refusal():
    stream = [
        event(
            "response.refusal.delta", item_id="msg_1", output_index=0, content_index=0, delta="No"
        ),
        event(
            "response.refusal.done", item_id="msg_1", output_index=0, content_index=0, refusal="No."
        ),
    ]
    assert list(openai_responses_deltas(stream)) == [RefusalDelta("No"), RefusalDelta(".")]


def test_arguments_only_in_the_done_event():
    # https://github.com/BerriAI/litellm/issues/27144
    stream = [
        event(
            "response.output_item.added",
            output_index=1,
            item=function_item("fc_1", "call_1", "add"),
        ),
        event(
            "response.function_call_arguments.done",
            item_id="fc_1",
            output_index=1,
            arguments='{"a":5,"b":7}',
        ),
        event(
            "response.output_item.done",
            output_index=1,
            item=function_item("fc_1", "call_1", "add", '{"a":5,"b":7}', "completed"),
        ),
    ]
    assert list(openai_responses_deltas(stream)) == [
        ToolCallStart(0, "call_1", "add"),
        ToolCallDelta(0, '{"a":5,"b":7}'),
        ToolCallEnd(0),
    ]


def test_done_event_brings_the_fragment_the_deltas_held_back():
    # vLLM could leave the last fragment unstreamed: https://github.com/vllm-project/vllm/pull/44348
    stream = [
        event(
            "response.output_item.added", output_index=0, item=function_item("fc_1", "c", "weather")
        ),
        arguments_delta('{"location": "San', "fc_1", 0),
        event(
            "response.function_call_arguments.done",
            item_id="fc_1",
            output_index=0,
            arguments='{"location": "San Francisco"}',
        ),
    ]
    message = accumulate(openai_responses_deltas(stream))
    assert message.tool_calls[0].arguments == {"location": "San Francisco"}


def test_text_done_without_deltas_and_item_done_repeating_everything():
    stream = [
        event(
            "response.output_text.done",
            item_id="msg_1",
            output_index=0,
            content_index=0,
            text="Hello",
            logprobs=[],
        ),
        event(
            "response.output_item.done",
            output_index=0,
            item={
                "type": "message",
                "id": "msg_1",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": "Hello", "annotations": []}],
            },
        ),
    ]
    assert list(openai_responses_deltas(stream)) == [TextDelta("Hello")]


def test_arguments_without_an_added_item_are_still_a_call():
    stream = [
        arguments_delta('{"q": 1}', "fc_9", 4),
        event(
            "response.output_item.done",
            output_index=4,
            item=function_item("fc_9", "call_9", "lookup", '{"q": 1}', "completed"),
        ),
    ]
    assert list(openai_responses_deltas(stream)) == [
        ToolCallStart(0, None, ""),
        ToolCallDelta(0, '{"q": 1}'),
        ToolCallStart(0, "call_9", "lookup"),
        ToolCallEnd(0),
    ]
    (call,) = accumulate(openai_responses_deltas(stream)).tool_calls
    assert (call.id, call.name, call.arguments) == ("call_9", "lookup", {"q": 1})


@pytest.mark.parametrize(
    "reason, finish", [("max_output_tokens", "length"), ("content_filter", "content_filter")]
)
def test_incomplete_response(reason, finish):
    incomplete = response("incomplete", incomplete_details={"reason": reason})
    stream = [text_delta("Par"), event("response.incomplete", response=incomplete)]
    assert list(openai_responses_deltas(stream))[-1] == Finish(finish, reason)


def test_failed_response_and_error_event():
    failed = response(
        "failed", error={"code": "server_error", "message": "The model crashed"}, usage=None
    )
    assert list(openai_responses_deltas([event("response.failed", response=failed)])) == [
        ProviderError("The model crashed", "server_error")
    ]
    error = event("error", code="rate_limit_exceeded", message="Slow down", param=None)
    assert list(openai_responses_deltas([error])) == [
        ProviderError("Slow down", "rate_limit_exceeded")
    ]
    sdk_error = sdk.ResponseErrorEvent.model_validate(error)
    assert list(openai_responses_deltas([sdk_error])) == [
        ProviderError("Slow down", "rate_limit_exceeded")
    ]
    nested = {"type": "error", "error": {"type": "invalid_request_error", "message": "Bad"}}
    assert list(openai_responses_deltas([nested])) == [
        ProviderError("Bad", "invalid_request_error")
    ]


def test_unknown_events_are_skipped():
    stream = [
        event("response.in_progress", response=response("in_progress")),
        event("response.web_search_call.searching", item_id="ws_1", output_index=0),
        event("response.something_new", payload=[1, 2]),
        {"no_type": True},
        text_delta("ok"),
    ]
    assert list(openai_responses_deltas(stream)) == [TextDelta("ok")]


def test_close_ends_open_calls():
    adapter = OpenAIResponsesAdapter()
    adapter.feed(
        event("response.output_item.added", output_index=0, item=function_item("fc_1", "c", "f"))
    )
    assert adapter.close() == [ToolCallEnd(0)]
    assert adapter.close() == []


def _pieces(draw, text: str) -> List[str]:
    cuts = sorted(c for c in draw(st.sets(st.integers(1, max(1, len(text) - 1)))) if c < len(text))
    return [text[a:b] for a, b in zip([0] + cuts, cuts + [len(text)])]


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_any_split_yields_the_same_message(data):
    arguments = '{"city": "Zürich", "unit": "C"}'
    stream = [summary_delta(p) for p in _pieces(data.draw, "Plan: one call.")]
    stream += [text_delta(p) for p in _pieces(data.draw, "Let me check.")]
    stream.append(
        event(
            "response.output_item.added",
            output_index=2,
            item=function_item("fc_1", "call_z", "weather"),
        )
    )
    stream += [arguments_delta(p, "fc_1", 2) for p in _pieces(data.draw, arguments)]
    stream.append(event("response.completed", response=response()))
    message = accumulate(openai_responses_deltas(stream))
    assert (message.reasoning, message.content) == ("Plan: one call.", "Let me check.")
    assert [(c.id, c.name, c.raw_arguments) for c in message.tool_calls] == [
        ("call_z", "weather", arguments)
    ]
    assert (message.usage, message.finish_reason) == (Usage(12, 30, 42, 10, 4), "tool_calls")


# --- item ids that rotate (issue 10 §3) ----------------------------------------------------


def copilot_shaped_stream() -> List[Dict[str, Any]]:
    reasoning = {"type": "reasoning", "id": "rs", "summary": []}
    message = {"type": "message", "id": "msg", "role": "assistant", "content": []}
    refusal_part = {"type": "refusal", "refusal": "Not that."}
    where_summary = {"item_id": "rs", "output_index": 0, "summary_index": 0}
    where_text = {"item_id": "msg", "output_index": 1, "content_index": 0}
    where_refusal = {"item_id": "msg", "output_index": 1, "content_index": 1}
    return rotate_item_ids(
        [
            event("response.created", response=response("in_progress", usage=None)),
            event("response.output_item.added", output_index=0, item=reasoning),
            event("response.reasoning_summary_part.added", **where_summary, part={}),
            event("response.reasoning_summary_text.delta", **where_summary, delta="Think "),
            event("response.reasoning_summary_text.delta", **where_summary, delta="twice."),
            event("response.reasoning_summary_text.done", **where_summary, text="Think twice."),
            event(
                "response.output_item.done",
                output_index=0,
                item={**reasoning, "summary": [{"type": "summary_text", "text": "Think twice."}]},
            ),
            event("response.output_item.added", output_index=1, item=message),
            event("response.output_text.delta", **where_text, delta="Hello ", logprobs=[]),
            event("response.output_text.delta", **where_text, delta="there.", logprobs=[]),
            event("response.output_text.done", **where_text, text="Hello there.", logprobs=[]),
            event("response.refusal.delta", **where_refusal, delta="Not that."),
            event("response.refusal.done", **where_refusal, refusal="Not that."),
            event(
                "response.output_item.done",
                output_index=1,
                item={
                    **message,
                    "content": [
                        {"type": "output_text", "text": "Hello there.", "annotations": []},
                        refusal_part,
                    ],
                },
            ),
            event("response.completed", response=response()),
        ]
    )


def test_item_ids_rotating_on_every_event_fold_text_refusal_and_reasoning_once():
    events = copilot_shaped_stream()
    assert len({e.get("item_id") for e in events if "item_id" in e}) > 4  # they do rotate

    message = accumulate(openai_responses_deltas(events))

    assert message.reasoning == "Think twice."
    assert message.content == "Hello there."
    assert message.refusal == "Not that."


def test_text_events_without_item_id_or_output_index_continue_the_latest_item():
    events = [
        event("response.output_text.delta", item_id="msg_1", output_index=0, delta="Hel"),
        event("response.output_text.delta", delta="lo"),  # a proxy that strips both
        event("response.output_text.done", text="Hello!"),  # brings what the deltas held back
        event("response.completed", response=response()),
    ]

    assert accumulate(openai_responses_deltas(events)).content == "Hello!"


def test_arguments_events_without_item_id_or_output_index_continue_the_open_call():
    events = [
        event("response.output_item.added", output_index=0, item=function_item("fc_1", "c1", "f")),
        event("response.function_call_arguments.delta", delta='{"a": '),
        event("response.function_call_arguments.delta", delta="1}"),
        event("response.function_call_arguments.done", arguments='{"a": 1}'),
        event("response.completed", response=response()),
    ]

    message = accumulate(openai_responses_deltas(events))

    assert [(c.id, c.name, c.arguments) for c in message.tool_calls] == [("c1", "f", {"a": 1})]
