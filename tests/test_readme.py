"""The README's Python examples run as written (a README that lies is a bug)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)


def test_the_readme_has_runnable_examples():
    assert len(BLOCKS) >= 2


def test_the_streaming_example_streams_and_loops(capsys):
    example = next(block for block in BLOCKS if "class Plan(StreamNode)" in block)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the loop's end warns "Flow ends", as in PocketFlow
        exec(compile(example, "README.md", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert lines[:3] == ["Plan ('Plan',) Thinking", "Plan ('Plan',)  about ", "Plan ('Plan',) life"]
    assert len(lines) == 9  # three turns of plan, each streaming three tokens


def test_the_llm_example_defines_a_working_plan_node():
    example = next(block for block in BLOCKS if "class Plan(LLMNode)" in block)
    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)
    shared = {"messages": [{"role": "user", "content": "hi"}]}
    assert namespace["Plan"](namespace["model"]).run(shared) == "act"
    assert shared["messages"][-1]["tool_calls"][0]["function"]["arguments"] == '{"x": 1}'


def test_the_async_example_streams_then_runs_with_a_callback(capsys):
    example = next(block for block in BLOCKS if "class Answer(AsyncStreamNode)" in block)
    exec(compile(example, "README.md", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert lines[:4] == [
        "Answer Thinking",
        "Answer  about ",
        "Answer life",
        "None Thinking about life",
    ]
    assert len(lines) == 7  # the streamed run, its action and answer, then three pushed chunks
