"""Pause and resume on the sync drivers: a node asks, the stream yields an Interrupt and ends,
the Paused handle goes on with the answer. In-process nothing runs again and no chunk comes
twice; from a saved position only the paused node's exec runs again (its re-made chunks
marked as replays, with their original ids). Counted node runs, not timings, prove it."""

from __future__ import annotations

import json
import threading
from collections import Counter
from typing import Any, List, Tuple

import pytest

from pocketflow_stream import (
    STOPPED,
    Ask,
    AskNode,
    BatchNode,
    Chunk,
    Flow,
    FlowError,
    Interrupt,
    Node,
    NodeStarted,
    Paused,
    Progress,
    Retry,
    StopSignal,
    StreamBatchNode,
    StreamNode,
    ask,
)
from pocketflow_stream.engine import walk

runs: Counter = Counter()


@pytest.fixture(autouse=True)
def fresh_counts():
    runs.clear()


def pull(stream) -> Tuple[List[Any], Any]:
    """Every item of a stream, and what the stream returned."""
    items: List[Any] = []
    while True:
        try:
            items.append(next(stream))
        except StopIteration as stop:
            return items, stop.value


def data(items) -> List[Any]:
    return [item.data for item in items if type(item) is Chunk]


class Start(Node):
    def post(self, shared, prep_res, exec_res):
        runs["Start"] += 1
        shared["log"].append("start")


class Draft(StreamNode):
    """Streams a draft, asks for approval after two chunks, streams the verdict."""

    def prep(self, shared):
        runs["Draft.prep"] += 1
        return shared["topic"]

    def exec_stream(self, topic):
        runs["Draft.exec"] += 1
        yield f"{topic}:1"
        yield f"{topic}:2"
        verdict = yield Ask({"approve": topic})
        yield f"verdict {verdict}"
        return verdict

    def post(self, shared, prep_res, verdict):
        runs["Draft.post"] += 1
        shared["log"].append(verdict)


class Finish(Node):
    def post(self, shared, prep_res, exec_res):
        runs["Finish"] += 1
        shared["log"].append("finish")


def nested_draft_flow() -> Flow:
    """Start -> Outer( Inner( Draft ) ) -> Finish: the ask is two flows deep."""
    start = Start()
    start >> Flow(start=Flow(start=Draft(), name="Inner"), name="Outer") >> Finish()
    return Flow(start=start, name="Agent")


def test_a_streaming_node_deep_in_nested_flows_pauses_after_its_chunks_and_goes_on_in_process():
    shared = {"topic": "t", "log": []}
    items, paused = pull(nested_draft_flow().run_stream(shared))
    assert data(items) == ["t:1", "t:2"]
    assert isinstance(items[-1], Interrupt) and isinstance(paused, Paused)
    interrupt = items[-1]
    assert interrupt.payload == {"approve": "t"}
    assert interrupt.path == ("Outer", "Inner", "Draft") and interrupt.node == "Draft"
    assert interrupt.handle is paused and paused.interrupts == (interrupt,)
    assert interrupt.to_dict()["type"] == "interrupt" and "handle" not in interrupt.to_dict()
    json.dumps(interrupt.to_dict())
    assert shared["log"] == ["start"]  # nothing after the pause ran

    rest, action = pull(paused.resume({interrupt.id: "yes"}))
    assert data(rest) == ["verdict yes"]  # chunks go on where they stopped, none twice
    assert action is None
    assert shared["log"] == ["start", "yes", "finish"]
    assert runs == Counter(
        {"Start": 1, "Draft.prep": 1, "Draft.exec": 1, "Draft.post": 1, "Finish": 1}
    )


def test_interrupt_ids_are_deterministic():
    first = pull(nested_draft_flow().run_stream({"topic": "t", "log": []}))[1]
    second = pull(nested_draft_flow().run_stream({"topic": "t", "log": []}))[1]
    assert [i.id for i in first.interrupts] == [i.id for i in second.interrupts]
    assert first.interrupts[0].id == "Outer@2/Inner@1/Draft@1#0"


def test_the_interrupt_is_yielded_with_events_on_too_and_the_stream_ends_there():
    items, paused = pull(nested_draft_flow().run_stream({"topic": "t", "log": []}, events=True))
    assert isinstance(items[-1], Interrupt)
    assert [type(item).__name__ for item in items].count("FlowFinished") == 0
    items, _ = pull(paused.resume({paused.interrupts[0].id: "ok"}))
    assert type(items[-1]).__name__ == "FlowFinished"


def test_an_answer_for_an_id_that_is_not_pending_is_refused_and_nothing_changes():
    shared = {"topic": "t", "log": []}
    _, paused = pull(nested_draft_flow().run_stream(shared))
    with pytest.raises(FlowError) as caught:
        paused.resume({"Draft#9": "yes"})
    assert "'Draft#9'" in str(caught.value) and paused.interrupts[0].id in str(caught.value)
    with pytest.raises(FlowError):
        paused.answer("nope", 1)
    assert shared["log"] == ["start"]
    rest, _ = pull(paused.resume({paused.interrupts[0].id: "late"}))  # still resumable
    assert data(rest) == ["verdict late"]
    with pytest.raises(FlowError) as caught:  # a handle goes on once
        paused.resume({paused.interrupts[0].id: "again"})
    assert "resumed already" in str(caught.value)


def test_resume_without_an_answer_is_refused():
    _, paused = pull(nested_draft_flow().run_stream({"topic": "t", "log": []}))
    with pytest.raises(FlowError) as caught:
        paused.resume()
    assert "needs an answer" in str(caught.value)


def test_answer_then_resume_and_the_same_node_asking_twice():
    class TwoQuestions(StreamNode):
        def exec_stream(self, prep_res):
            runs["exec"] += 1
            first = yield Ask("first?")
            yield first
            second = yield Ask("second?")
            return [first, second]

        def post(self, shared, prep_res, exec_res):
            shared["answers"] = exec_res

    shared: dict = {}
    _, paused = pull(Flow(start=TwoQuestions()).run_stream(shared))
    assert paused.interrupts[0].id.endswith("#0")
    items, again = pull(paused.answer(paused.interrupts[0].id, "a").resume())
    assert data(items) == ["a"] and again.interrupts[0].id.endswith("#1")
    assert again.interrupts[0].id != paused.interrupts[0].id
    pull(again.resume({again.interrupts[0].id: "b"}))
    assert shared["answers"] == ["a", "b"] and runs["exec"] == 1


def test_ask_in_a_plain_exec_runs_that_exec_again_with_the_answer_and_nothing_else():
    class Confirm(Node):  # a plain node: it runs on the engine's hot path
        def prep(self, shared):
            runs["prep"] += 1
            return shared["amount"]

        def exec(self, amount):
            runs["exec"] += 1
            return ask({"confirm": amount}) == "yes"

        def post(self, shared, prep_res, confirmed):
            runs["post"] += 1
            shared["confirmed"] = confirmed

    start = Start()
    start >> Confirm() >> Finish()
    shared = {"amount": 5, "log": []}
    paused = Flow(start=start).run(shared)
    assert isinstance(paused, Paused) and paused.interrupts[0].payload == {"confirm": 5}
    assert paused.interrupts[0].path == ("Confirm",)
    assert paused.run({paused.interrupts[0].id: "yes"}) is None
    assert shared == {"amount": 5, "log": ["start", "finish"], "confirmed": True}
    assert (runs["prep"], runs["exec"], runs["post"], runs["Start"]) == (1, 2, 1, 1)


def test_an_ask_node_takes_its_question_from_prep_and_nothing_runs_again():
    class Approve(AskNode):
        def prep(self, shared):
            runs["prep"] += 1
            return {"tool": shared["tool"]}

        def post(self, shared, payload, answer):
            runs["post"] += 1
            shared["approved"] = (payload, answer)
            return "run" if answer == "yes" else "skip"

    approve = Approve()
    approve - "run" >> Finish()
    shared = {"tool": "rm", "log": []}
    items, paused = pull(Flow(start=approve).run_stream(shared, events=True))
    assert [type(item) for item in items] == [NodeStarted, Interrupt]
    assert paused.interrupts[0].payload == {"tool": "rm"}
    pull(paused.resume({paused.interrupts[0].id: "yes"}))
    assert shared["approved"] == ({"tool": "rm"}, "yes") and shared["log"] == ["finish"]
    assert (runs["prep"], runs["post"]) == (1, 1)


def test_pause_before_a_node_by_id_pauses_before_it_runs_and_it_runs_on_resume():
    start = Start()
    start >> Finish()
    shared: dict = {"log": []}
    items, paused = pull(Flow(start=start).run_stream(shared, pause_before=["Finish"]))
    assert shared["log"] == ["start"] and runs["Finish"] == 0
    (interrupt,) = items
    assert interrupt.id.endswith("Finish@2#before") and interrupt.payload == {"before": "Finish"}
    _, action = pull(paused.resume())  # a pause before a node needs no answer
    assert action is None and shared["log"] == ["start", "finish"] and runs["Start"] == 1


def test_a_batch_item_asks_and_the_finished_items_do_not_run_again():
    class Review(StreamBatchNode):
        def prep(self, shared):
            return ["a", "b", "c"]

        def exec_stream(self, item):
            runs[item] += 1
            yield item
            if item == "b":
                verdict = yield Ask({"item": item})
                return f"b={verdict}"
            return item

        def post(self, shared, prep_res, exec_res):
            shared["results"] = exec_res

    shared: dict = {}
    items, paused = pull(Flow(start=Review()).run_stream(shared, progress=True))
    progress = [item for item in items if isinstance(item, Progress)]
    assert [(p.done, p.total) for p in progress] == [(1, 3)]
    interrupt = paused.interrupts[0]
    assert interrupt.item == 1 and "[1]" in interrupt.id
    rest, _ = pull(paused.resume({interrupt.id: "ok"}))
    assert data(items) + data(rest) == ["a", "b", "c"]
    assert [(p.done, p.total) for p in rest if isinstance(p, Progress)] == [(2, 3), (3, 3)]
    assert shared["results"] == ["a", "b=ok", "c"]
    assert runs == Counter({"a": 1, "b": 1, "c": 1})


def test_progress_is_opt_in():
    class Items(BatchNode):
        def prep(self, shared):
            return [1, 2]

    items = list(Flow(start=Items()).run_stream({}))
    assert items == []
    items = list(Flow(start=Items()).run_stream({}, progress=True))
    assert [(item.done, item.total, item.node) for item in items] == [
        (1, 2, "Items"),
        (2, 2, "Items"),
    ]


def test_a_node_that_yields_ask_from_a_helper_says_so_with_asks_true():
    def helper():
        answer = yield Ask("from a helper")
        return answer

    class Helped(StreamNode):
        asks = True  # its own code never names Ask

        def exec_stream(self, prep_res):
            answer = yield from helper()
            yield answer
            return answer

    items, paused = pull(Flow(start=Helped()).run_stream({}))
    assert items == list(paused.interrupts)
    assert data(pull(paused.resume({paused.interrupts[0].id: 42}))[0]) == [42]


def test_the_push_driver_pauses_and_goes_on():
    chunks: List[Any] = []
    events: List[Any] = []
    shared = {"topic": "p", "log": []}
    paused = nested_draft_flow().run(shared, on_chunk=chunks.append, on_event=events.append)
    assert isinstance(paused, Paused) and [type(event) for event in events][-1] is Interrupt
    assert paused.run({paused.interrupts[0].id: "go"}, on_chunk=chunks.append) is None
    assert [chunk.data for chunk in chunks] == ["p:1", "p:2", "verdict go"]
    assert shared["log"] == ["start", "go", "finish"]


def test_a_stop_from_another_thread_closes_the_running_generator_and_ends_the_run():
    stop = StopSignal()
    first_chunk_seen = threading.Event()
    stop_was_set = threading.Event()
    closed: List[str] = []

    class Endless(StreamNode):
        def exec_stream(self, prep_res):
            try:
                count = 0
                while True:
                    yield count
                    count += 1
                    if count == 1:
                        stop_was_set.wait(5)  # the stopper has set the signal
            finally:
                closed.append("closed")

    def stopper():
        first_chunk_seen.wait(5)
        stop.set()
        stop_was_set.set()

    thread = threading.Thread(target=stopper)
    thread.start()
    after = Finish()
    endless = Endless()
    endless >> after
    stream = Flow(start=endless).run_stream({"log": []}, stop=stop)
    assert next(stream).data == 0
    first_chunk_seen.set()
    rest, returned = pull(stream)
    thread.join(5)
    assert returned is STOPPED and closed == ["closed"]
    assert data(rest) == []  # the chunk after the stop never came out
    assert runs["Finish"] == 0


def test_a_stop_between_plain_nodes_stops_before_the_next_one():
    stop = StopSignal()

    class Stopper(Node):
        def post(self, shared, prep_res, exec_res):
            stop.set()

    first = Stopper()
    first >> Finish()
    assert Flow(start=first).run({"log": []}, stop=stop) is STOPPED
    assert runs["Finish"] == 0


# --- checkpoints: positions, resuming from one --------------------------------------------


def checkpointed(flow: Flow, shared: dict, **options: Any) -> Tuple[List[Any], Any, List[dict]]:
    positions: List[dict] = []

    def save(position: dict) -> None:
        positions.append(json.loads(json.dumps(position)))  # it must survive JSON unchanged

    items, returned = pull(walk(flow, shared, checkpoint=save, events=True, **options))
    return items, returned, positions


def test_a_position_round_trips_through_json_and_resuming_from_it_gives_the_same_final_shared():
    uninterrupted = {"topic": "t", "log": []}
    _, paused = pull(nested_draft_flow().run_stream(uninterrupted))
    pull(paused.resume({paused.interrupts[0].id: "yes"}))

    shared = {"topic": "t", "log": []}
    items, paused, positions = checkpointed(nested_draft_flow(), shared)
    assert isinstance(paused, Paused)
    assert [position["status"] for position in positions] == ["running", "paused"]
    position = positions[-1]
    assert position["version"] == 1 and "shared" not in json.dumps(position)
    assert position["interrupts"][0]["id"] == paused.interrupts[0].id
    ids = [item.id if type(item) is Chunk else item.seq for item in items]
    assert ids == sorted(set(ids)) and ids[0] == 0  # run-unique and increasing

    runs.clear()
    saved_shared = json.loads(json.dumps(shared))  # what PERSIST stores beside the position
    answer = {position["interrupts"][0]["id"]: "yes"}
    resumed, action, later = checkpointed(
        nested_draft_flow(), saved_shared, resume_from=position, answers=answer
    )
    assert action is None and saved_shared == uninterrupted
    replayed = [item for item in resumed if type(item) is Chunk and item.replay]
    originals = [item for item in items if type(item) is Chunk]
    assert [(c.data, c.id) for c in replayed] == [(c.data, c.id) for c in originals]
    fresh = [item for item in resumed if type(item) is Chunk and not item.replay]
    assert [c.data for c in fresh] == ["verdict yes"] and fresh[0].id > ids[-1]
    # only the paused node's exec ran again: not its prep, not its post before, not Start
    assert runs == Counter({"Draft.exec": 1, "Draft.post": 1, "Finish": 1})
    assert later[-1]["status"] == "done" and later[-1]["action"] is None


def test_a_checkpoint_is_taken_after_every_node_run_including_plain_ones():
    start = Start()
    start >> Finish()
    _, _, positions = checkpointed(Flow(start=start), {"log": []})
    assert [(p["status"], p["frames"][0]["node"] if p["frames"] else None) for p in positions] == [
        ("running", "Finish"),  # after Start
        ("running", None),  # after Finish: the flow's graph has ended
        ("done", None),  # after the flow's post
    ]


def test_resuming_from_a_running_position_reruns_the_next_node_as_a_new_attempt():
    shared = {"topic": "t", "log": []}
    _, _, positions = checkpointed(nested_draft_flow(), shared)
    after_start = positions[0]  # Start finished; the crash came during Draft
    assert after_start["status"] == "running"
    runs.clear()
    shared = {"topic": "t", "log": ["start"]}
    items, paused, _ = checkpointed(nested_draft_flow(), shared, resume_from=after_start)
    retry = [item for item in items if isinstance(item, Retry)]
    assert len(retry) == 1 and retry[0].path == ("Outer", "Inner", "Draft")
    assert retry[0].attempt == 0  # what the crashed run streamed of it is superseded ...
    assert {item.attempt for item in items if type(item) is Chunk} == {1}  # ... by attempt 1
    assert isinstance(paused, Paused) and runs["Start"] == 0


def test_resuming_on_a_graph_without_the_saved_node_names_it():
    _, _, positions = checkpointed(nested_draft_flow(), {"topic": "t", "log": []})
    position = json.loads(json.dumps(positions[-1]))
    position["frames"][0]["node"] = "Gone"
    with pytest.raises(FlowError) as caught:
        walk(nested_draft_flow(), {}, resume_from=position, answers={})
    assert "'Gone'" in str(caught.value) and "'Outer'" in str(caught.value)


def test_a_position_rejects_an_answer_for_an_id_it_does_not_wait_for():
    _, _, positions = checkpointed(nested_draft_flow(), {"topic": "t", "log": []})
    with pytest.raises(FlowError) as caught:
        walk(nested_draft_flow(), {}, resume_from=positions[-1], answers={"x": 1})
    assert "'x'" in str(caught.value)


def test_the_fingerprint_is_the_same_for_the_same_graph_and_differs_for_another():
    from pocketflow_stream.engine import fingerprint

    assert fingerprint(nested_draft_flow()) == fingerprint(nested_draft_flow())
    other = Start()
    other >> Finish()
    assert fingerprint(Flow(start=other)) != fingerprint(nested_draft_flow())


def test_a_stream_node_that_only_defines_exec_may_ask_in_it():
    class Quiet(StreamNode):  # its exec_stream is StreamNode's: it calls exec
        def exec(self, prep_res):
            runs["exec"] += 1
            return ask("from exec")

        def post(self, shared, prep_res, answer):
            shared["answer"] = answer

    shared: dict = {}
    paused = Flow(start=Quiet()).run(shared)
    assert paused.interrupts[0].payload == "from exec"
    assert paused.run({paused.interrupts[0].id: 7}) is None
    assert shared == {"answer": 7} and runs["exec"] == 2


def test_pause_before_a_name_no_node_has_is_refused_before_anything_runs():
    start = Start()
    start >> Finish()
    with pytest.raises(FlowError) as caught:
        Flow(start=start).run({"log": []}, pause_before=["Finsh"])
    assert "'Finsh'" in str(caught.value) and "'Finish'" in str(caught.value)
    assert runs["Start"] == 0
