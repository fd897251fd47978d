"""The offline model of the demo: a script that plans with the bundled tools from the words of
the question asked, one step at a time, so the demo answers *your* question without a key.

Rules, in order (each tool at most once):
- "ask me", "ask the user", "confirm", "check with me" -> `ask_user` first; the answer is read
  with the question for the steps after it;
- numbers with an operation ("17% of 2,340", "6 x 7", "12 plus 30", "(3 + 4) * 2") ->
  `calculate`;
- words found in the bundled documents (Jupiter, caffeine, honeybees, streaming, ...) ->
  `search`;
- "save", "write", "store", "note", "file" -> `save_file` (the file named in the question, else
  notes.md), with what the other tools found;
- then the answer, built from the tool results. Nothing matched: it says what it can do.

It is a function for `ScriptedModel`; it knows the conversation format and the tools' names.
"""

from __future__ import annotations

import json
import re
from typing import Any, Dict, List, Optional, Tuple

from pocketflow_stream.llm import ToolCallSpec, Turn

from .tools import calculate, documents, words

__all__ = ["scripted_agent", "expression_in", "search_terms_in", "OFFLINE_BANNER"]

OFFLINE_BANNER = (
    "(offline: the built-in scripted model, not an LLM: it plans with the bundled tools from "
    "the words of your question; set OPENAI_API_KEY or ANTHROPIC_API_KEY for a real model)"
)

_ASK = re.compile(r"\b(ask me|ask the user|confirm|check with me)\b", re.I)
_SAVE = re.compile(r"\b(save|write|store|notes?|file)\b", re.I)
_FILE_NAME = re.compile(r"\b[\w\-]+\.(?:txt|md|csv|json)\b")
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s*(?:%|percent)\s+of\s+(\d+(?:\.\d+)?)", re.I)
_WORD_OPERATORS = [
    (re.compile(r"\bplus\b", re.I), " + "),
    (re.compile(r"\bminus\b", re.I), " - "),
    (re.compile(r"\b(?:times|multiplied by)\b", re.I), " * "),
    (re.compile(r"\b(?:divided by|over)\b", re.I), " / "),
    (re.compile(r"\bto the power of\b", re.I), " ** "),
    (re.compile(r"\bsquared\b", re.I), " ** 2"),
    (re.compile(r"(?<=\d)\s*[x×]\s*(?=[\d(])"), " * "),
    (re.compile(r"÷"), " / "),
]
_ARITHMETIC = re.compile(r"[\d.\s+\-*/%()]+")
_TOOL_WORDS = frozenset(words("save write store note notes file calculate search ask user"))


def expression_in(text: str) -> Optional[str]:
    """The arithmetic the text asks for, as an expression `calculate` takes, or None."""
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)  # 2,340 -> 2340
    text = _PERCENT.sub(lambda match: f"{match[1]} / 100 * {match[2]}", text)
    for pattern, replacement in _WORD_OPERATORS:
        text = pattern.sub(replacement, text)
    candidates = []
    for match in _ARITHMETIC.finditer(text):
        candidate = " ".join(match.group().split()).strip(" .")
        if len(re.findall(r"\d+(?:\.\d+)?", candidate)) >= 2 and re.search(r"[+\-*/%]", candidate):
            try:
                calculate(candidate)
            except (ValueError, ZeroDivisionError, OverflowError):
                continue
            candidates.append(candidate)
    return max(candidates, key=len) if candidates else None


def search_terms_in(text: str) -> List[str]:
    """The question's words that the bundled documents contain (numbers and tool words left
    out), in the question's order."""
    vocabulary = frozenset().union(*(document.vocabulary for document in documents()))
    terms: List[str] = []
    for word in words(text):
        if (
            len(word) < 3
            or word.isdigit()
            or word in _TOOL_WORDS
            or word not in vocabulary
            or word in terms
        ):
            continue
        terms.append(word)
    return terms


def _done_steps(messages: List[Dict[str, Any]]) -> List[Tuple[str, Dict[str, Any], str]]:
    """(tool name, arguments, result) of every tool call answered so far."""
    calls: Dict[str, Tuple[str, Dict[str, Any]]] = {}
    steps = []
    for message in messages:
        for call in message.get("tool_calls") or ():
            try:
                arguments = json.loads(call["function"]["arguments"] or "{}")
            except ValueError:
                arguments = {}
            calls[call["id"]] = (call["function"]["name"], arguments)
        if message.get("role") == "tool":
            name, arguments = calls.get(message.get("tool_call_id", ""), ("?", {}))
            steps.append((name, arguments, str(message.get("content", ""))))
    return steps


def _this_turn(messages: List[Dict[str, Any]]) -> Tuple[str, List[Dict[str, Any]]]:
    """The last user message (the question being answered) and the messages after it (the
    steps taken for it): earlier turns of a chat are history, not part of this plan."""
    for position in range(len(messages) - 1, -1, -1):
        message = messages[position]
        if message.get("role") == "user":
            content = message.get("content")
            question = content if isinstance(content, str) else str(content)
            return question, messages[position + 1 :]
    return "", messages


def scripted_agent(messages: List[Dict[str, Any]], tools: Optional[List[Dict[str, Any]]]) -> Turn:
    """The offline model: the next step of the plan for the conversation so far."""
    question, this_turn = _this_turn(messages)
    done = _done_steps(this_turn)
    used = {name for name, _, _ in done}
    answers = " ".join(result for name, _, result in done if name == "ask_user")
    text = f"{question} {answers}"

    if _ASK.search(question) and "ask_user" not in used:
        return Turn(
            reasoning="The question asks me to check with the user first, so I ask before "
            "doing anything.",
            text="One question before I start.",
            tool_calls=[ToolCallSpec("ask_user", {"question": "What should I look into?"})],
        )
    expression = expression_in(text)
    if expression is not None and "calculate" not in used:
        return Turn(
            reasoning=f"There is arithmetic in the question: {expression}. I should not do "
            "that in my head: the calculator tool is safer.",
            text="Let me work that out.",
            tool_calls=[ToolCallSpec("calculate", {"expression": expression})],
        )
    terms = search_terms_in(text)
    if terms and "search" not in used:
        return Turn(
            reasoning=f"The bundled documents mention {', '.join(terms)}: a search should "
            "find the facts instead of my guessing them.",
            text="Searching the documents.",
            tool_calls=[ToolCallSpec("search", {"query": " ".join(terms)})],
        )
    if _SAVE.search(question) and "save_file" not in used:
        name = _FILE_NAME.search(question)
        content = f"# {question.strip()}\n\n" + "".join(
            f"- {tool}: {result}\n" for tool, _, result in done
        )
        if not done:
            content += "(no tool results to note)\n"
        return Turn(
            reasoning="They asked me to save it: I write what the tools found to a file in "
            "the sandbox.",
            text="Saving a file for you.",
            tool_calls=[
                ToolCallSpec(
                    "save_file",
                    {"path": name.group() if name else "notes.md", "content": content},
                )
            ],
        )
    return _answer(done)


def _answer(done: List[Tuple[str, Dict[str, Any], str]]) -> Turn:
    if not done:
        titles = "; ".join(document.title for document in documents())
        return Turn(
            reasoning="Nothing in the question matches my tools, and as the scripted model I "
            "cannot answer from knowledge.",
            text="I am the offline scripted model, so I can only plan with the bundled tools: "
            "arithmetic goes to the calculator, topics of the bundled documents "
            f"({titles}) to search, and 'save' or 'write' to save_file. Try: "
            '"How much heavier is Jupiter than Earth? Save a note." '
            "Set OPENAI_API_KEY or ANTHROPIC_API_KEY for a real model.",
        )
    parts = []
    for tool, arguments, result in done:
        if result.startswith("error:"):
            parts.append(f"The {tool} tool failed ({result[6:].strip()}).")
        elif tool == "calculate":
            parts.append(f"{arguments.get('expression', '?')} = {result}.")
        elif tool == "search":
            first = result.splitlines()[0] if result else ""
            parts.append(f"From the bundled documents: {first}")
        elif tool == "save_file":
            parts.append(f"I {result}.")
        elif tool == "ask_user":
            parts.append(f"You told me: {result or '(no answer)'}.")
    return Turn(reasoning="Every tool has answered; time to sum up.", text=" ".join(parts))
