"""Every cookbook recipe runs offline and does what its docstring says."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

COOKBOOK = Path(__file__).resolve().parent.parent / "cookbook"


def recipe(name: str):
    spec = importlib.util.spec_from_file_location(name, COOKBOOK / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_agent_loop_calls_the_tool_and_answers_from_its_result(capsys):
    assert recipe("agent_loop").main() == "In Paris it is 18°C, light rain."
    out = capsys.readouterr().out
    assert '[Plan] tool_call_start: weather{"city": "Paris"}' in out


def test_push_callbacks_receive_only_the_chosen_nodes_chunks():
    assert recipe("push_callbacks").main() == ["a", "polished", "draft"]


def test_batch_streams_tag_each_chunk_with_its_batch_params():
    assert recipe("batch_streams").main() == {
        "French": ["hello", "in", "French"],
        "Quechua": ["hello", "in", "Quechua"],
    }


def test_sse_frames_are_json_and_end_with_the_action():
    frames = recipe("sse_events").main()
    payloads = [json.loads(frame.split("data: ", 1)[1]) for frame in frames]
    kinds = [payload.get("type") for payload in payloads]
    assert kinds[0] == "node_started" and kinds[-2] == "flow_finished"
    text = "".join(
        p["data"]["text"]
        for p in payloads
        if p.get("type") == "chunk" and p["data"]["type"] == "text"
    )
    assert text == "Hello!"
    assert frames[-1].startswith("event: end") and payloads[-1] == {"action": None}


def test_live_tool_arguments_show_each_line_of_the_file_as_it_arrives():
    module = recipe("live_tool_arguments")
    assert "".join(module.main()) == module.POEM


def test_async_parallel_streams_the_three_summaries_interleaved_and_tagged(capsys):
    import anyio

    module = recipe("async_parallel")
    for backend in ("asyncio", "trio"):
        assert anyio.run(module.main, 0, backend=backend) == module.SUMMARIES
        out = capsys.readouterr().out
        tagged = [line for line in out.splitlines() if line.startswith("[")]
        titles = [line[1:].split("]")[0].strip() for line in tagged]
        assert set(titles) == set(module.DOCUMENTS)
        # interleaved: every document's first token comes before any document's last one
        firsts = [titles.index(title) for title in module.DOCUMENTS]
        lasts = [len(titles) - 1 - titles[::-1].index(title) for title in module.DOCUMENTS]
        assert max(firsts) < min(lasts)
        for title, summary in module.SUMMARIES.items():
            assert f"{title}: {summary}" in out
