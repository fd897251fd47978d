"""ThinkTagSplitter: inline `<think>` reasoning split out of streamed text, whatever the split."""

from __future__ import annotations

from typing import List, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pocketflow_stream.llm.deltas import ReasoningDelta, TextDelta
from pocketflow_stream.llm.think_tags import ThinkTagSplitter


def split_text(pieces: List[str], **options) -> Tuple[str, str]:
    """Feed `pieces` one by one; return (answer text, reasoning)."""
    splitter = ThinkTagSplitter(**options)
    deltas = []
    for piece in pieces:
        deltas.extend(splitter.feed(piece))
    deltas.extend(splitter.close())
    for delta in deltas:
        assert isinstance(delta, (TextDelta, ReasoningDelta))
        assert delta.text, "no empty deltas are sent"
    text = "".join(d.text for d in deltas if isinstance(d, TextDelta))
    reasoning = "".join(d.text for d in deltas if isinstance(d, ReasoningDelta))
    return text, reasoning


def reference_split(whole: str, start_in_reasoning: bool = False) -> Tuple[str, str]:
    """The documented rule applied to the whole string at once (no streaming involved)."""
    text, reasoning = [], []
    in_reasoning = start_in_reasoning
    rest = whole
    while True:
        if in_reasoning:
            rest = rest.lstrip()
            end = rest.find("</think>")
            if end < 0:
                reasoning.append(rest.rstrip())
                break
            reasoning.append(rest[:end].rstrip())
            rest = rest[end + len("</think>") :].lstrip()
            in_reasoning = False
        else:
            start = rest.find("<think>")
            if start < 0:
                text.append(rest)
                break
            text.append(rest[:start])
            rest = rest[start + len("<think>") :]
            in_reasoning = True
    return "".join(text), "".join(reasoning)


def test_reasoning_then_answer():
    assert split_text(["<think>\nLet me see.\n</think>\n\nIt is 4."]) == ("It is 4.", "Let me see.")


@pytest.mark.parametrize("cut", range(1, len("<think>a</think>b")))
def test_tags_cut_at_every_position(cut):
    whole = "<think>a</think>b"
    assert split_text([whole[:cut], whole[cut:]]) == ("b", "a")


def test_one_character_at_a_time():
    whole = "<think> plan it </think> Done <b>bold</b>"
    assert split_text(list(whole)) == ("Done <b>bold</b>", "plan it")


def test_text_that_only_looks_like_a_tag_is_released():
    splitter = ThinkTagSplitter()
    assert splitter.feed("<th") == []  # might still become <think>
    assert splitter.feed("esis>") == [TextDelta("<thesis>")]
    assert split_text(["a < b and <", "thinking> is not a tag"]) == (
        "a < b and <thinking> is not a tag",
        "",
    )


def test_unfinished_tag_at_the_end_is_text():
    assert split_text(["Answer <thi"]) == ("Answer <thi", "")


def test_no_closing_tag_keeps_everything_as_reasoning():
    assert split_text(["<think>still thinking ", "when the stream ended\n"]) == (
        "",
        "still thinking when the stream ended",
    )


def test_prompt_that_already_opened_the_tag():
    # chat templates (DeepSeek-R1, Qwen3) put "<think>\n" in the prompt; the model starts inside
    assert split_text(["reasoning here", "</th", "ink>answer"], start_in_reasoning=True) == (
        "answer",
        "reasoning here",
    )


def test_whitespace_inside_reasoning_is_kept():
    assert split_text(["<think>one\n\ntwo</think>"]) == ("", "one\n\ntwo")


def test_several_reasoning_blocks():
    assert split_text(["<think>a</think>b<think>c</think>d"]) == ("bd", "ac")


def test_custom_tags():
    pieces = ["[[rea", "son]]why[[/reason]]", " because"]
    assert split_text(pieces, open_tag="[[reason]]", close_tag="[[/reason]]") == ("because", "why")


def test_empty_tags_are_refused():
    with pytest.raises(ValueError, match="open_tag"):
        ThinkTagSplitter(open_tag="")


def test_feeding_after_close_keeps_the_mode():
    splitter = ThinkTagSplitter()
    assert splitter.feed("<think>x") == [ReasoningDelta("x")]
    assert splitter.close() == []
    assert splitter.feed("y</think>z") == [ReasoningDelta("y"), TextDelta("z")]


_TOKENS = st.sampled_from(
    ["<think>", "</think>", "<th", "ink>", "</", "<", ">", " ", "\n", "a", "b", "<thesis>", "é"]
)


@st.composite
def text_and_split(draw, max_tokens=30):
    whole = "".join(draw(st.lists(_TOKENS, max_size=max_tokens)))
    cuts = sorted(draw(st.sets(st.integers(0, len(whole)), max_size=len(whole) + 1)))
    pieces = [whole[start:end] for start, end in zip([0] + cuts, cuts + [len(whole)])]
    return whole, pieces


@settings(max_examples=400, deadline=None)
@given(text_and_split(), st.booleans())
def test_any_split_gives_the_documented_result(case, start_in_reasoning):
    whole, pieces = case
    expected = reference_split(whole, start_in_reasoning)
    assert split_text(pieces, start_in_reasoning=start_in_reasoning) == expected
    assert split_text(list(whole), start_in_reasoning=start_in_reasoning) == expected
