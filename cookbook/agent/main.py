"""Recipe: a plan <-> act agent whose thinking, answer and tool calls stream live.

    python cookbook/agent/main.py

Plan asks the model what to do; when the model calls tools, Act runs them and hands the results
back to Plan; when it answers, Reply takes the answer. Offline with the scripted model; swap
in `OpenAIChatModel("gpt-4o-mini")` (or any model with `stream(messages, tools=...)`).
"""

from __future__ import annotations

import json

from pocketflow_stream import Node, StreamFlow, StreamNode
from pocketflow_stream.llm import LLMNode, ScriptedModel, ToolCallSpec, Turn

WEATHER = {"Paris": "18°C, light rain", "Lima": "24°C, sunny"}

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "weather",
            "description": "The current weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]


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
        return "act" if reply.tool_calls else "reply"


class Act(StreamNode):
    def prep(self, shared):
        return shared["messages"][-1]["tool_calls"]

    def exec_stream(self, calls):
        results = []
        for call in calls:
            arguments = json.loads(call["function"]["arguments"])
            content = WEATHER.get(arguments.get("city"), "unknown city")
            yield f"{call['function']['name']} -> {content}"  # the tool result, shown live
            results.append({"role": "tool", "tool_call_id": call["id"], "content": content})
        return results

    def post(self, shared, calls, results):
        shared["messages"].extend(results)  # back to Plan ("default")


class Reply(Node):
    def prep(self, shared):
        return shared["messages"][-1]["content"]

    def post(self, shared, answer, exec_res):
        shared["answer"] = answer


def build(model) -> StreamFlow:
    plan, act = Plan(model, tools=TOOLS), Act()
    plan - "act" >> act
    act >> plan
    plan - "reply" >> Reply()
    return StreamFlow(start=plan, max_steps=20)  # a runaway loop raises MaxStepsExceeded


def main(model=None) -> str:
    shared = {"messages": [{"role": "user", "content": "Weather in Paris?"}]}
    flow = build(model or ScriptedModel(script))
    kind = None
    for chunk in flow.run_stream(shared):
        delta = chunk.data
        if isinstance(delta, str):  # Act's tool results
            kind = None
            print(f"\n[{chunk.node}] {delta}", end="")
            continue
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
    return shared["answer"]


if __name__ == "__main__":
    print(main())
