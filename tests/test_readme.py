"""The README's Python examples run as written (a README that lies is a bug).

Every ```python block of README.md runs on its own, in a fresh namespace, in an empty working
folder, exactly as a reader would paste it: it must not raise and must not warn. A block that
needs a network, a key or a server that keeps running is no ```python block: show it as
```bash (or another fence). Some blocks also get their printed output checked below.
"""

from __future__ import annotations

import re
import sys
import warnings
from pathlib import Path

import pytest

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"^```python\n(.*?)^```", README, re.S | re.M)


def heading_of(block: str) -> str:
    """The README heading above a block, to name its test."""
    before = re.sub(r"^```.*?^```", "", README[: README.index(block)], flags=re.S | re.M)
    headings = re.findall(r"^#+ (.+)$", before, re.M)  # outside code: not a comment
    return headings[-1] if headings else "top"


@pytest.fixture(autouse=True)
def in_an_empty_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a block that writes files (a SQLite store, ...) writes them here


def run_block(block: str) -> None:
    if sys.version_info < (3, 10) and "gradio" in block:
        pytest.skip("Gradio 6 needs Python 3.10 (the extra is not installed on 3.9)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exec(compile(block, "README.md", "exec"), {"__name__": "__readme__"})
    assert not caught, f"the README block under {heading_of(block)!r} warns: " + "; ".join(
        f"{w.category.__name__}: {w.message}" for w in caught
    )


def test_every_python_fence_is_found():
    # an indented or oddly spelled fence would escape the tests below
    fences = re.findall(r"^[ \t]*```[ \t]*(?:py|python|python3|pycon)\b", README, re.M | re.I)
    assert len(fences) == len(BLOCKS) >= 6


@pytest.mark.parametrize(
    "block", BLOCKS, ids=[f"{n}-{heading_of(block)}" for n, block in enumerate(BLOCKS)]
)
def test_the_block_runs_as_written_without_warnings(block):
    run_block(block)


def only(marker: str) -> str:
    (block,) = [block for block in BLOCKS if marker in block]
    return block


def test_the_streaming_example_streams_and_loops(capsys):
    run_block(only("class Plan(StreamNode)"))
    lines = capsys.readouterr().out.splitlines()
    assert lines[:3] == ["Plan ('Plan',) Thinking", "Plan ('Plan',)  about ", "Plan ('Plan',) life"]
    assert len(lines) == 10  # three turns of plan, each streaming three tokens, then Done
    assert lines[-1] == "answer: Thinking about life"


def test_the_push_example_filters_by_node(capsys):
    run_block(only("on_chunk=sent.append"))
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 9  # six chunks pushed to print, then Draft's three pulled
    assert lines[-3:] == ["Draft a", "Draft  rough", "Draft  draft"]


def test_the_llm_example_defines_a_working_plan_node(capsys):
    run_block(only("class Plan(LLMNode)"))
    assert capsys.readouterr().out == "act Hi!\n"


def test_the_accumulator_example_folds_the_deltas(capsys):
    run_block(only("acc = Accumulator()"))
    assert capsys.readouterr().out == "{'role': 'assistant', 'content': 'Hello!'}\n"


def test_the_partial_json_example_shows_the_content_lines(capsys):
    run_block(only("parser = PartialJSON("))
    assert capsys.readouterr().out == "one\ntwo\n"


def test_the_async_example_streams_then_runs_with_a_callback(capsys):
    run_block(only("class Answer(AsyncStreamNode)"))
    lines = capsys.readouterr().out.splitlines()
    assert lines[:4] == [
        "Answer Thinking",
        "Answer  about ",
        "Answer life",
        "None Thinking about life",
    ]
    assert len(lines) == 7  # the streamed run, its action and answer, then three pushed chunks
