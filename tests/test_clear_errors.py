"""Where a newcomer trips, the library says so: a clear FlowError (naming the node or class,
what was wrong and what to do) instead of silence or a bare exception; and the value classes a
stream yields behave alike (hashable, with a repr that shows every field)."""

from __future__ import annotations

import pickle

import pytest

from pocketflow_stream import (
    BatchFlow,
    Chunk,
    NodeFinished,
    NodeStarted,
    StreamFlow,
    StreamNode,
)

# --- the value classes ----------------------------------------------------------------------


class Each(BatchFlow):
    def prep(self, shared):
        return [{"city": "Lima"}, {"city": "Oslo"}]


class Say(StreamNode):
    def exec_stream(self, prep_res):
        yield self.params["city"]


def batch_stream():
    return list(StreamFlow(start=Each(start=Say())).run_stream({}, events=True))


def test_every_item_of_a_batch_flows_stream_hashes_like_one_without_a_batch():
    items = batch_stream()
    with_batch = [item for item in items if getattr(item, "batch", None) is not None]
    assert {type(item) for item in with_batch} == {NodeStarted, Chunk, NodeFinished}
    for item in items:
        hash(item)  # TypeError: unhashable type: 'mappingproxy' before
    started = [item for item in with_batch if isinstance(item, NodeStarted)]
    assert started[0] != started[1] and len({*started, *started}) == 2  # hashed by value
    again = [item for item in batch_stream() if isinstance(item, NodeStarted) and item.batch]
    assert again == started and {*again} == {*started}  # a second run's equal events


def test_an_events_batch_stays_read_only_equal_to_its_dict_and_picklable():
    event = next(item for item in batch_stream() if isinstance(item, NodeFinished))
    assert event.batch == {"city": "Lima"} and dict(event.batch) == {"city": "Lima"}
    with pytest.raises(TypeError):
        event.batch["city"] = "Quito"  # type: ignore[index]
    with pytest.raises(AttributeError):
        event.batch._params = {}  # type: ignore[union-attr]
    copy = pickle.loads(pickle.dumps(event))
    assert copy == event and hash(copy) == hash(event)


def test_a_chunks_repr_shows_its_item_attempt_and_batch():
    chunk = next(item for item in batch_stream() if isinstance(item, Chunk))
    text = repr(chunk)
    assert "node='Say'" in text and "data='Lima'" in text
    assert "item=None" in text and "attempt=0" in text and "batch={'city': 'Lima'}" in text

    class Flaky(StreamNode):
        def prep(self, shared):
            return ["a", "b"]

        def exec_stream(self, prep_res):
            yield self.cur_retry
            if self.cur_retry == 0:
                raise ValueError("again")

    retried = list(Flaky(max_retries=2).run_stream({}))[-1]
    assert "attempt=1" in repr(retried)
