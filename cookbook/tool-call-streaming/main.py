"""Recipe: show a tool call while the model is still writing it — a `save_file` call whose
file content appears line by line, long before the call is complete — then run the tool only
once its arguments parsed strictly.

    python cookbook/tool-call-streaming/main.py [folder]

`PartialJSON.watch(["content"])` hands out the `content` field's text as it arrives (every
character once, whole lines with `read_lines`), however the JSON is cut into fragments.
The file is written into `folder` (default: a new temporary folder) and never outside it.
Offline with the scripted model; swap in any model with `stream(messages, tools=...)`.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from pocketflow_stream import Node, StreamFlow
from pocketflow_stream.llm import LLMNode, PartialJSON, ScriptedModel, ToolCallSpec, Turn

POEM = "Roses stream in red,\nviolets in blue,\nchunks arrive one by one\nand so do you.\n"

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "save_file",
            "description": "Save a text file.",
            "parameters": {
                "type": "object",
                "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
                "required": ["path", "content"],
            },
        },
    }
]


class Write(LLMNode):
    def post(self, shared, messages, reply):
        shared["calls"] = reply.tool_calls
        return "save"


class SaveFile(Node):
    def prep(self, shared):
        return shared["calls"], Path(shared["folder"]).resolve()

    def exec(self, inputs):
        calls, folder = inputs
        saved = []
        for call in calls:
            if call.name != "save_file" or not call.valid:  # truncated or invalid: never run
                print(f"not run: {call.name}({call.raw_arguments!r}): {call.error}")
                continue
            target = (folder / call.arguments["path"]).resolve()
            if folder not in target.parents:
                print(f"not run: {call.arguments['path']!r} is outside {folder}")
                continue
            target.write_text(call.arguments["content"], encoding="utf-8")
            saved.append(target)
        return saved

    def post(self, shared, inputs, saved):
        shared["saved"] = saved


def main(folder=None) -> dict:
    """Returns the lines shown, how many argument characters had arrived when each was shown,
    the length of the whole arguments text, and the files saved."""
    folder = folder or tempfile.mkdtemp(prefix="tool-call-streaming-")
    model = ScriptedModel(
        [Turn(tool_calls=[ToolCallSpec("save_file", {"path": "poem.txt", "content": POEM})])],
        chunk_size=5,
    )
    write = Write(model, tools=TOOLS)
    write - "save" >> SaveFile()
    shared = {"messages": [{"role": "user", "content": "Save a poem."}], "folder": folder}

    shown, received_when_shown = [], []
    parsers, received = {}, {}
    for chunk in StreamFlow(start=write).run_stream(shared):
        delta = chunk.data
        if delta.type == "tool_call_start":
            parser = PartialJSON(empty_is_object=True)
            parsers[delta.index] = (parser, parser.watch(["content"]))
            received[delta.index] = 0
            print(f"{delta.name}:")
        elif delta.type == "tool_call_delta":
            parser, content = parsers[delta.index]
            parser.feed(delta.arguments)
            received[delta.index] += len(delta.arguments)
            for line in content.read_lines():  # each line as soon as its newline arrives
                shown.append(line)
                received_when_shown.append(received[delta.index])
                print("  |", line, end="")
    for path in shared["saved"]:
        print(f"saved {path}")
    return {
        "lines": shown,
        "received": received_when_shown,
        "total": len(shared["calls"][0].raw_arguments),
        "saved": shared["saved"],
    }


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
