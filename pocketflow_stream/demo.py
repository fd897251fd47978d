"""The main demo: a plan <-> act agent loop streamed live to the terminal, tagged by node.

    python -m pocketflow_stream.demo            # offline: the built-in scripted model
    python -m pocketflow_stream.demo --async    # the same agent on the async driver
    OPENAI_API_KEY=... python -m pocketflow_stream.demo "What is 17% of 2340?"

With OPENAI_API_KEY (or ANTHROPIC_API_KEY) set it uses that provider; otherwise the scripted
model plays a three-turn conversation: think, call the calculator, save a note, answer. Uses
only public names, like any app would.
"""

from __future__ import annotations

import argparse
import ast
import json
import operator
import sys
import warnings
from typing import Any, Callable, Dict, Generator, List, Optional

from pocketflow_stream import AsyncStreamFlow, StreamFlow, StreamNode, run_stream_sync
from pocketflow_stream.llm import (
    AsyncLLMNode,
    LLMNode,
    ScriptedModel,
    ToolCallSpec,
    Turn,
    default_model,
)
from pocketflow_stream.ui import render

Message = Dict[str, Any]
QUESTION = "What is 17% of 2,340? Save a short note about it."

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "calculate",
            "description": "Evaluate an arithmetic expression (+ - * / ** and parentheses).",
            "parameters": {
                "type": "object",
                "properties": {"expression": {"type": "string"}},
                "required": ["expression"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "save_note",
            "description": "Save a note for the user.",
            "parameters": {
                "type": "object",
                "properties": {"title": {"type": "string"}, "content": {"type": "string"}},
                "required": ["title", "content"],
            },
        },
    },
]

_OPERATORS: Dict[type, Callable[..., Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
    ast.USub: operator.neg,
}


def calculate(expression: str) -> float:
    """Arithmetic only: numbers, + - * / ** and parentheses (no names, no calls)."""

    def value(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](value(node.left), value(node.right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](value(node.operand))
        raise ValueError(f"not arithmetic: {ast.dump(node)}")

    return value(ast.parse(expression.replace(",", ""), mode="eval").body)


def record_reply(shared: Dict[str, Any], reply: Any) -> str:
    shared["messages"].append(reply.to_openai())
    return "act" if reply.tool_calls else "done"


class Plan(LLMNode):
    """Asks the model what to do next; streams its thoughts, words and tool calls."""

    def post(self, shared: Dict[str, Any], prep_res: Any, reply: Any) -> str:
        return record_reply(shared, reply)


class AsyncPlan(AsyncLLMNode):
    """Plan, awaiting the model's stream (for the async driver)."""

    async def post_async(self, shared: Dict[str, Any], prep_res: Any, reply: Any) -> str:
        return record_reply(shared, reply)


class Act(StreamNode):
    """Runs the tool calls of the last assistant message, streams and adds their results."""

    def prep(self, shared: Dict[str, Any]) -> List[Dict[str, Any]]:
        return shared["messages"][-1].get("tool_calls") or []

    def exec_stream(
        self, calls: List[Dict[str, Any]]
    ) -> Generator[str, None, List[Dict[str, Any]]]:
        results = []
        for call in calls:
            name, raw = call["function"]["name"], call["function"]["arguments"]
            try:
                arguments = json.loads(raw or "{}")
                if name == "calculate":
                    output = str(calculate(arguments["expression"]))
                elif name == "save_note":
                    output = f"saved note {arguments['title']!r}"
                else:
                    output = f"error: no tool named {name!r}"
            except (ValueError, KeyError, TypeError, ZeroDivisionError) as exc:
                output = f"error: {exc}"
            yield f"{name} -> {output}\n"
            results.append({"role": "tool", "tool_call_id": call["id"], "content": output})
        return results

    def post(self, shared: Dict[str, Any], prep_res: Any, results: List[Dict[str, Any]]) -> str:
        shared["messages"].extend(results)
        return "default"


def scripted_agent(messages: List[Dict[str, Any]], tools: Optional[List[Dict]]) -> Turn:
    """The offline model: answers the conversation so far, one step of the agent at a time."""
    results = [m["content"] for m in messages if m.get("role") == "tool"]
    if not results:
        return Turn(
            reasoning="The user wants 17% of 2,340. I should not do that in my head: "
            "the calculator tool is safer.",
            text="Let me work that out.",
            tool_calls=[ToolCallSpec("calculate", {"expression": "0.17 * 2340"})],
        )
    if len(results) == 1:
        amount = results[0]
        return Turn(
            reasoning=f"The calculator says {amount}. Now the note they asked for.",
            text="Saving a note for you.",
            tool_calls=[
                ToolCallSpec(
                    "save_note",
                    {
                        "title": "17% of 2,340",
                        "content": f"17% of 2,340 is {amount}.\n"
                        "Worked out as 0.17 x 2340 with the calculator tool.\n",
                    },
                )
            ],
        )
    return Turn(
        reasoning="Both tools are done; time to answer.",
        text=f"17% of 2,340 is {results[0]}. I saved a note with the working.",
    )


def build_flow(model: Any, asynchronous: bool = False) -> Any:
    """The agent: a StreamFlow, or with `asynchronous` an AsyncStreamFlow whose plan awaits
    the model (Act, a sync StreamNode, runs inside it as it is)."""
    plan = AsyncPlan(model, tools=TOOLS, name="Plan") if asynchronous else Plan(model, tools=TOOLS)
    act = Act()
    plan - "act" >> act
    act >> plan
    if asynchronous:
        return AsyncStreamFlow(start=plan, name="Agent", max_steps=20)
    return StreamFlow(start=plan, name="Agent", max_steps=20)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("question", nargs="?", default=QUESTION)
    parser.add_argument("--fast", action="store_true", help="no pauses in the scripted model")
    parser.add_argument("--events", action="store_true", help="show node lifecycle events")
    parser.add_argument("--offline", action="store_true", help="scripted model even with a key")
    parser.add_argument(
        "--async",
        dest="asynchronous",
        action="store_true",
        help="run the agent on the async driver (an event loop in a worker thread)",
    )
    args = parser.parse_args(argv)

    model: Any = None if args.offline else default_model(args.asynchronous)
    if model is None:
        model = ScriptedModel(scripted_agent, chunk_size=3, delay=0 if args.fast else 0.02)
        print("(offline: the built-in scripted model; set OPENAI_API_KEY for a real one)")
    # Ending the loop with "done" (no successor) is the PocketFlow way, and PocketFlow warns
    # "Flow ends: 'done' not found" when it happens; here that end is the plan.
    warnings.filterwarnings("ignore", message="Flow ends: 'done'")
    shared: Dict[str, Any] = {"messages": [{"role": "user", "content": args.question}]}
    print(f"user: {args.question}")
    flow = build_flow(model, args.asynchronous)
    if args.asynchronous:  # sync code iterating an async flow: the bridge a sync handler uses
        stream = run_stream_sync(flow, shared, events=args.events)
    else:
        stream = flow.run_stream(shared, events=args.events)
    action = render(stream, events=args.events)
    print(f"(flow finished with action {action!r} after {len(shared['messages'])} messages)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
