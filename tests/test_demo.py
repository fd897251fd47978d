"""The README's first quick-start command: the offline demo streams a plan <-> act loop."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
