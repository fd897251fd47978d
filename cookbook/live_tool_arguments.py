"""Recipe: show a tool call's arguments while they arrive — a `save_file` call whose file
content appears line by line, long before the call is complete.

    python cookbook/live_tool_arguments.py
"""

from __future__ import annotations

from pocketflow_stream import StreamFlow
from pocketflow_stream.llm import LLMNode, PartialJSON, ScriptedModel, ToolCallSpec, Turn

POEM = "Roses stream in red,\nvioletts in blue,\nchunks arrive one by one\nand so do you.\n"


def main() -> list:
    model = ScriptedModel(
        [Turn(tool_calls=[ToolCallSpec("save_file", {"path": "poem.txt", "content": POEM})])],
        chunk_size=5,
    )
    flow = StreamFlow(start=LLMNode(model, name="Writer"))
    shown = []
    parsers = {}
    for chunk in flow.run_stream({"messages": [{"role": "user", "content": "a poem"}]}):
        delta = chunk.data
        if delta.type == "tool_call_start":
            parser = PartialJSON(empty_is_object=True)
            parsers[delta.index] = (parser, parser.watch(["content"]))
            print(f"{delta.name}:")
        elif delta.type == "tool_call_delta":
            parser, content = parsers[delta.index]
            parser.feed(delta.arguments)
            for line in content.read_lines():  # each line as soon as its newline arrives
                shown.append(line)
                print("  |", line, end="")
    return shown


if __name__ == "__main__":
    main()
