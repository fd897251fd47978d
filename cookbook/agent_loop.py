"""Recipe: a plan <-> act agent loop whose thoughts, answers and tool calls stream live.

    python cookbook/agent_loop.py

Offline with the scripted model; swap in `OpenAIChatModel("gpt-4o-mini")` (or any model with a
`stream(messages, tools=...)` method) for a real one.
"""

from __future__ import annotations

import json
import warnings

from pocketflow_stream import Node, StreamFlow
from pocketflow_stream.llm import LLMNode, ScriptedModel, ToolCallSpec, Turn

WEATHER = {"Paris": "18°C, light rain", "Lima": "24°C, sunny"}


def script(messages, tools):
    """The offline model: asks for the weather once, then answers from the tool result."""
    results = [m["content"] for m in messages if m["role"] == "tool"]
    if not results:
        return Turn(
            reasoning="I need the current weather.",
            tool_calls=[ToolCallSpec("weather", {"city": "Paris"})],
        )
    return Turn(text=f"In Paris it is {results[0]}.")


class Plan(LLMNode):
    def post(self, shared, messages, reply):
        shared["messages"].append(reply.to_openai())
        return "act" if reply.tool_calls else "done"


class Act(Node):
    def prep(self, shared):
        return shared["messages"][-1]["tool_calls"]

    def exec(self, calls):
        return [
            {
                "role": "tool",
                "tool_call_id": call["id"],
                "content": WEATHER.get(json.loads(call["function"]["arguments"])["city"], "?"),
            }
            for call in calls
        ]

    def post(self, shared, calls, results):
        shared["messages"].extend(results)
        return "default"


def build(model) -> StreamFlow:
    plan, act = Plan(model), Act()
    plan - "act" >> act
    act >> plan
    return StreamFlow(start=plan, max_steps=10)


def main() -> str:
    # PocketFlow warns "Flow ends: 'done' not found" when a loop ends; here it is the plan.
    warnings.filterwarnings("ignore", message="Flow ends: 'done'")
    shared = {"messages": [{"role": "user", "content": "Weather in Paris?"}]}
    flow = build(ScriptedModel(script))
    kind = None
    for chunk in flow.run_stream(shared):
        delta = chunk.data
        if delta.type in ("text", "reasoning", "tool_call_start") and delta.type != kind:
            kind = delta.type
            print(f"\n[{chunk.node}] {kind}: ", end="")
        if delta.type in ("text", "reasoning"):
            print(delta.text, end="", flush=True)
        elif delta.type == "tool_call_start":
            print(delta.name, end="")
        elif delta.type == "tool_call_delta":
            print(delta.arguments, end="", flush=True)
    print()
    return shared["messages"][-1]["content"]


if __name__ == "__main__":
    print(main())
