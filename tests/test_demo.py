"""The README's first quick-start command: the offline demo streams a plan <-> act loop."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pocketflow_stream import demo

ROOT = Path(__file__).resolve().parent.parent


def test_the_demo_runs_offline_and_tags_every_part_with_its_node(capsys):
    assert demo.main(["--fast", "--offline"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    headers = [line for line in lines if line.startswith("[")]
    assert headers == ["[Plan]", "[Act]", "[Plan]", "[Act]", "[Plan]"]
    assert '-> calculate({"expression": "0.17 * 2340"})' in out
    assert "calculate -> 397.8" in out  # the tool really ran on the streamed arguments
    assert any(line.startswith("thinking: ") for line in lines)
    assert "17% of 2,340 is 397.8" in lines[-2]
    assert lines[-1] == "(flow finished with action 'done' after 6 messages)"


def test_the_async_demo_streams_the_same_as_the_sync_one(capsys):
    """--async runs the agent as an AsyncStreamFlow (AsyncLLMNode plan, sync StreamNode act),
    iterated from sync code through run_stream_sync: what it shows is identical."""

    def shown(flags):
        assert demo.main(["--fast", "--offline", "--events", *flags]) == 0
        return re.sub(r"\d+ ms", "_ ms", capsys.readouterr().out)  # durations differ

    sync_out = shown([])
    assert "(Plan -> 'act', _ ms)" in sync_out
    assert shown(["--async"]) == sync_out


def test_the_quick_start_command_works_without_any_key():
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")
    }
    result = subprocess.run(
        [sys.executable, "-m", "pocketflow_stream.demo", "--fast"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "offline: the built-in scripted model" in result.stdout
    assert "[Act]" in result.stdout
    assert result.stderr == ""  # no warnings, no tracebacks


def test_the_calculator_tool_refuses_anything_but_arithmetic():
    assert demo.calculate("(1 + 2) * 3 ** 2 - -1") == 28
    for bad in ("__import__('os')", "x + 1", "len('a')"):
        try:
            demo.calculate(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} was evaluated")


def chat_chunk(delta, finish_reason=None):
    return {
        "id": "chatcmpl-demo",
        "object": "chat.completion.chunk",
        "created": 1727000000,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def tool_call_turn(text, call_id, name, argument_pieces):
    chunks = [chat_chunk({"role": "assistant", "content": text})]
    head = {"index": 0, "id": call_id, "type": "function"}
    for number, piece in enumerate(argument_pieces):
        function = {"name": name, "arguments": piece} if number == 0 else {"arguments": piece}
        call = {**head, "function": function} if number == 0 else {"index": 0, "function": function}
        chunks.append(chat_chunk({"tool_calls": [call]}))
    return chunks + [chat_chunk({}, "tool_calls")]


@pytest.mark.parametrize("flags", [[], ["--async"]], ids=["sync", "async"])
def test_with_an_openai_key_the_demo_uses_the_real_client(
    flags, replay_server, monkeypatch, capsys
):
    """OPENAI_API_KEY set: the demo streams from the OpenAI SDK (here parsing the loopback
    server's real SSE bytes through OPENAI_BASE_URL) instead of the scripted model; with
    --async, from the AsyncOpenAI client."""
    from pocketflow_stream.llm.replay_server import openai_chat_replay

    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("OPENAI_BASE_URL", replay_server.openai_base_url)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    replay_server.enqueue(
        openai_chat_replay(
            tool_call_turn("Calculating.", "call_a", "calculate", ['{"expression": "6', ' * 7"}'])
        ),
        openai_chat_replay(
            tool_call_turn(
                "Noting.", "call_b", "save_note", ['{"title": "t", ', '"content": "42"}']
            )
        ),
        openai_chat_replay([chat_chunk({"content": "It is 42."}), chat_chunk({}, "stop")]),
    )

    assert demo.main(["--fast", "What is 6 x 7?", *flags]) == 0

    out = capsys.readouterr().out
    assert "offline" not in out
    assert '-> calculate({"expression": "6 * 7"})' in out
    assert "calculate -> 42" in out and "It is 42." in out
    requests = replay_server.wait_for_requests(3)
    assert requests[0].body["stream"] is True
    assert requests[0].body["tools"] == demo.TOOLS
    tool_results = [m for m in requests[2].body["messages"] if m["role"] == "tool"]
    assert [m["content"] for m in tool_results] == ["42", "saved note 't'"]
