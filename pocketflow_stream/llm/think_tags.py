"""Split raw model text with inline `<think>…</think>` reasoning into text and reasoning deltas.

Local servers and open models (DeepSeek-R1, Qwen3, QwQ, …) often stream their reasoning inside
the answer text. `ThinkTagSplitter` is a small state machine fed text fragments as they arrive:
a tag may be cut across any fragment boundary, text that only looks like the start of a tag
(`<thesis>`) is released as soon as it cannot be one, and a prompt that already opened the tag
(`start_in_reasoning=True`) starts inside the reasoning.

Whitespace rule: reasoning and answer are trimmed where they meet a tag. Whitespace right after
the opening tag, right before the closing tag and right after the closing tag is dropped, so
`"<think>\\nplan\\n</think>\\n\\nAnswer"` gives the reasoning `"plan"` and the answer `"Answer"` —
the same message a server that sends `reasoning_content` separately produces. The result never
depends on how the text was split.

This module knows nothing about providers or the engine.
"""

from __future__ import annotations

from typing import List, Union

from .deltas import ReasoningDelta, TextDelta

__all__ = ["ThinkTagSplitter"]


class ThinkTagSplitter:
    """Turns text fragments with inline reasoning tags into `TextDelta` / `ReasoningDelta`.

    >>> splitter = ThinkTagSplitter()
    >>> splitter.feed("<th") + splitter.feed("ink>why</think>") + splitter.feed("Because.")
    [ReasoningDelta(text='why'), TextDelta(text='Because.')]
    """

    def __init__(
        self,
        open_tag: str = "<think>",
        close_tag: str = "</think>",
        start_in_reasoning: bool = False,
    ) -> None:
        if not open_tag or not close_tag:
            raise ValueError(
                "ThinkTagSplitter needs a non-empty open_tag and close_tag, "
                f"got {open_tag!r} and {close_tag!r}"
            )
        self.open_tag = open_tag
        self.close_tag = close_tag
        self.in_reasoning = start_in_reasoning
        # Text held back: the start of a tag cut at a fragment boundary, and (inside reasoning)
        # trailing whitespace that is dropped if the closing tag follows.
        self._pending = ""
        # Drop leading whitespace of what follows a tag, even across fragments.
        self._strip_leading = start_in_reasoning

    def feed(self, text: str) -> List[Union[TextDelta, ReasoningDelta]]:
        """Consume one fragment; return the deltas it completes, in order (possibly none)."""
        out: List[Union[TextDelta, ReasoningDelta]] = []
        buffer = self._pending + text
        self._pending = ""
        while buffer:
            if self._strip_leading:
                buffer = buffer.lstrip()
                if not buffer:
                    break
                self._strip_leading = False
            tag = self.close_tag if self.in_reasoning else self.open_tag
            position = buffer.find(tag)
            if position >= 0:
                before = buffer[:position]
                if self.in_reasoning:
                    before = before.rstrip()
                self._emit(out, before)
                self.in_reasoning = not self.in_reasoning
                self._strip_leading = True
                buffer = buffer[position + len(tag) :]
                continue
            held = _partial_tag_length(buffer, tag)
            ready = buffer[: len(buffer) - held]
            if self.in_reasoning:
                kept = ready.rstrip()
                held += len(ready) - len(kept)
                ready = kept
            self._emit(out, ready)
            self._pending = buffer[len(buffer) - held :]
            break
        return out

    def close(self) -> List[Union[TextDelta, ReasoningDelta]]:
        """End of stream: release held-back text (an unfinished tag is plain text then).

        Reasoning that never saw its closing tag stays reasoning. The splitter may be fed again
        afterwards; it keeps whether it is inside reasoning.
        """
        out: List[Union[TextDelta, ReasoningDelta]] = []
        pending, self._pending = self._pending, ""
        if self.in_reasoning:
            pending = pending.rstrip()
        self._emit(out, pending)
        return out

    def _emit(self, out: List[Union[TextDelta, ReasoningDelta]], text: str) -> None:
        if text:
            out.append(ReasoningDelta(text) if self.in_reasoning else TextDelta(text))


def _partial_tag_length(text: str, tag: str) -> int:
    """Length of the longest end of `text` that is a proper beginning of `tag`."""
    for length in range(min(len(text), len(tag) - 1), 0, -1):
        if text.endswith(tag[:length]):
            return length
    return 0
