"""Invariants that hold for every graph: random graphs of plain and streaming nodes, nested
flows, batch nodes and batch flows, with random loops (built by tests/helpers.py).
"""

from __future__ import annotations

import warnings
from typing import Any, List, Tuple

import pocketflow
from helpers import (
    Built,
    any_graphs,
    fresh_shared,
    limits,
    outcome_of,
    plain_graphs,
    pull,
    tags,
    timeless,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pocketflow_stream
from pocketflow_stream import (
    Chunk,
    FlowFinished,
    NodeFinished,
    NodeStarted,
    Progress,
    Retry,
)

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,  # pass_through: set once per test, never reset
    ],
)


# --- properties ----------------------------------------------------------------------------


@SETTINGS
@given(spec=any_graphs(), limit=limits, max_steps=st.one_of(st.none(), st.integers(1, 40)))
def test_run_and_every_way_of_streaming_agree(spec, limit, max_steps):
    ran = Built(pocketflow_stream, spec, max_steps=max_steps)
    ran_shared = fresh_shared(limit)
    ran_outcome = outcome_of(lambda: ran.flow.run(ran_shared))

    pulled = Built(pocketflow_stream, spec, max_steps=max_steps)
    pulled_shared = fresh_shared(limit)
    pulled_items: List[Any] = []
    pulled_outcome = outcome_of(lambda: pull(pulled.flow.run_stream(pulled_shared), pulled_items))

    with_events = Built(pocketflow_stream, spec, max_steps=max_steps)
    events_shared = fresh_shared(limit)
    event_items: List[Any] = []
    events_outcome = outcome_of(
        lambda: pull(with_events.flow.run_stream(events_shared, events=True), event_items)
    )

    pushed = Built(pocketflow_stream, spec, max_steps=max_steps)
    pushed_shared = fresh_shared(limit)
    pushed_chunks: List[Any] = []
    pushed_events: List[Any] = []
    pushed_outcome = outcome_of(
        lambda: pushed.flow.run(
            pushed_shared, on_chunk=pushed_chunks.append, on_event=pushed_events.append
        )
    )

    # same action (or the same error), same warnings, same shared state and node order
    assert pulled_outcome == ran_outcome
    assert events_outcome == ran_outcome
    assert pushed_outcome == ran_outcome
    assert pulled_shared == ran_shared
    assert events_shared == ran_shared
    assert pushed_shared == ran_shared
    assert pulled.production == ran.production == with_events.production == pushed.production

    # the default stream is chunks only; events add events and change no chunk
    assert all(type(item) is Chunk for item in pulled_items)
    event_chunks = [item for item in event_items if type(item) is Chunk]
    assert [tags(c) for c in event_chunks] == [tags(c) for c in pulled_items]
    assert [tags(c) for c in pushed_chunks] == [tags(c) for c in pulled_items]
    assert [timeless(e) for e in pushed_events] == [
        timeless(item) for item in event_items if type(item) is not Chunk
    ]


@SETTINGS
@given(spec=any_graphs(), limit=limits)
def test_chunks_come_out_live_in_production_order_tagged_with_where_they_were_made(
    spec, limit, pass_through
):
    built = Built(pocketflow_stream, spec)
    received: List[Any] = []
    chunks: List[Chunk] = []

    def consume():
        stream = built.flow.run_stream(fresh_shared(limit), events=True)
        for item in stream:
            received.append(item)
            if type(item) is Chunk:
                chunks.append(item)
                # live: the chunk just made is the one received, and nothing was made ahead of it
                assert built.production[-1] is item.data
                assert len(built.production) == len(chunks)

    outcome_of(consume)
    assert [chunk.data for chunk in chunks] == built.production

    failed_attempts = {
        (item.path, item.item, item.attempt) for item in received if isinstance(item, Retry)
    }
    for chunk in chunks:
        label, _, _, attempt, item, batch = chunk.data
        path, batch_scope = built.expected[label]
        assert chunk.node == label
        assert chunk.path == path
        assert chunk.item == item
        if attempt == "fallback":  # its chunks must not look like a failed attempt's
            assert (chunk.path, chunk.item, chunk.attempt) not in failed_attempts
        else:
            assert chunk.attempt == attempt
        if batch_scope is None:
            assert chunk.batch is None and batch is None
        else:
            assert batch[0] == batch_scope
            assert dict(chunk.batch) == {"batch_of": batch[0], "i": batch[1]}


@SETTINGS
@given(spec=any_graphs(), limit=limits)
def test_events_nest_like_the_flows_and_every_chunk_belongs_to_the_running_node(spec, limit):
    built = Built(pocketflow_stream, spec)
    items: List[Any] = []
    outcome, _ = outcome_of(
        lambda: pull(built.flow.run_stream(fresh_shared(limit), events=True), items)
    )
    assert outcome[0] == "action"
    running: List[Tuple[str, ...]] = []
    for item in items[:-1]:
        if isinstance(item, NodeStarted):
            assert item.path[:-1] == (running[-1] if running else ())
            assert item.node == item.path[-1]
            running.append(item.path)
        elif isinstance(item, NodeFinished):
            assert running.pop() == item.path
            assert item.duration >= 0
        elif isinstance(item, (Retry, Progress)):  # Progress: after each batch item
            assert running[-1] == item.path
        else:
            assert type(item) is Chunk
            assert running[-1] == item.path
    assert running == []
    assert isinstance(items[-1], FlowFinished)
    assert items[-1].action == outcome[1]


@SETTINGS
@given(spec=plain_graphs(), limit=limits)
def test_our_run_equals_pocketflows_run_for_plain_nodes(spec, limit):
    theirs = Built(pocketflow, spec)
    their_shared = fresh_shared(limit)
    their_outcome = outcome_of(lambda: theirs.flow.run(their_shared))

    ours = Built(pocketflow_stream, spec)
    our_shared = fresh_shared(limit)
    our_outcome = outcome_of(lambda: ours.flow.run(our_shared))

    assert our_outcome == their_outcome
    assert our_shared == their_shared


@SETTINGS
@given(spec=any_graphs(), limit=limits, stop_after=st.integers(0, 20))
def test_stopping_anywhere_closes_the_running_generator_and_a_rerun_is_unchanged(
    spec, limit, stop_after, pass_through
):
    reference = Built(pocketflow_stream, spec)
    reference_shared = fresh_shared(limit)
    expected = outcome_of(lambda: reference.flow.run(reference_shared))

    built = Built(pocketflow_stream, spec)
    stream = built.flow.run_stream(fresh_shared(limit))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in zip(range(stop_after), stream):
            pass
        stream.close()
    opened = [label for event, label in built.tracker if event == "open"]
    closed = [label for event, label in built.tracker if event == "closed"]
    assert sorted(opened) == sorted(closed)

    built.tracker.clear()
    built.production.clear()
    rerun_shared = fresh_shared(limit)
    assert outcome_of(lambda: built.flow.run(rerun_shared)) == expected
    assert rerun_shared == reference_shared
    assert built.production == reference.production
