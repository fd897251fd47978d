"""Recipe: an agent that asks you to approve each tool call, resumable across restarts.

    python cookbook/human-in-the-loop/main.py                       # start; answer yes / no
    python cookbook/human-in-the-loop/main.py --run RUN_ID          # after a restart
    python cookbook/human-in-the-loop/main.py --run RUN_ID --answer no

Plan asks the model what to do; every tool call it makes goes to Approve, which pauses the run
with the call as its question. The run is checkpointed to a SQLite file after every node, so
you can stop the script while it waits (Ctrl-C, kill -9, a reboot) and resume it later, from
another process, by its id: nothing that finished runs again. Offline with the scripted model.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Dict, Optional

from pocketflow_stream import AskNode, Node, StreamFlow
from pocketflow_stream.llm import LLMNode, ScriptedModel, ToolCallSpec, Turn
from pocketflow_stream.persist import DurableRuns, SQLiteStore

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": {"path": {"type": "string"}},
                "required": ["path"],
            },
        },
    }
    for name, description in [
        ("read_file", "Read a file of the user's notes."),
        ("delete_file", "Delete a file of the user's notes."),
    ]
]


def script(messages, tools):
    """The offline model: read the notes, delete the old file, then report."""
    results = [m for m in messages if m["role"] == "tool"]
    if len(results) == 0:
        return Turn(
            reasoning="First I read the notes.",
            tool_calls=[ToolCallSpec("read_file", {"path": "notes.txt"}, id="call_read")],
        )
    if len(results) == 1:
        return Turn(
            reasoning="The notes say old.txt is obsolete.",
            tool_calls=[ToolCallSpec("delete_file", {"path": "old.txt"}, id="call_delete")],
        )
    return Turn(text=f"Done. Read the notes; deleting old.txt: {results[1]['content']}.")


class Plan(LLMNode):
    def post(self, shared, messages, reply):
        shared["messages"].append(reply.to_openai())
        return "approve" if reply.tool_calls else "reply"


class Approve(AskNode):
    """Pauses the run with the tool call as the question; the answer decides."""

    def prep(self, shared):
        call = shared["messages"][-1]["tool_calls"][0]["function"]
        return {"tool": call["name"], "arguments": json.loads(call["arguments"])}

    def post(self, shared, question, answer):
        if str(answer).strip().lower() in ("y", "yes"):
            return "approved"
        call = shared["messages"][-1]["tool_calls"][0]
        shared["messages"].append(
            {"role": "tool", "tool_call_id": call["id"], "content": "refused by the user"}
        )
        return "refused"


class Act(Node):
    """Runs the approved call on the notes (kept in `shared`, so the recipe touches no disk)."""

    def prep(self, shared):
        return shared["messages"][-1]["tool_calls"][0], shared["files"]

    def exec(self, inputs):
        call, files = inputs
        name, path = call["function"]["name"], json.loads(call["function"]["arguments"])["path"]
        if path not in files:
            return f"no file {path}"
        if name == "read_file":
            return files[path]
        return "deleted"

    def post(self, shared, inputs, result):
        call = inputs[0]
        if result == "deleted":
            del shared["files"][json.loads(call["function"]["arguments"])["path"]]
        shared["messages"].append({"role": "tool", "tool_call_id": call["id"], "content": result})


class Reply(Node):
    def post(self, shared, prep_res, exec_res):
        shared["answer"] = shared["messages"][-1]["content"]


def build(model=None) -> StreamFlow:
    plan, approve, act = Plan(model or ScriptedModel(script), tools=TOOLS), Approve(), Act()
    plan - "approve" >> approve
    approve - "approved" >> act
    approve - "refused" >> plan
    act >> plan
    plan - "reply" >> Reply()
    return StreamFlow(start=plan, name="Agent", max_steps=50)


def show(run) -> None:
    for item in run:
        delta = getattr(item, "data", None)
        if getattr(delta, "type", None) in ("text", "reasoning"):
            print(delta.text, end="", flush=True)
    print()


def question_of(ask: Dict[str, Any]) -> str:
    payload = ask["payload"]
    return f"Allow {payload['tool']}({json.dumps(payload['arguments'])})? [yes/no] "


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="human-in-the-loop.db", help="the runs' SQLite file")
    parser.add_argument("--run", help="resume this run id")
    parser.add_argument("--answer", help="the answer to the question the run waits for")
    args = parser.parse_args(argv)
    runs = DurableRuns(build(), SQLiteStore(args.db))

    if args.run is None:
        shared = {
            "messages": [{"role": "user", "content": "Tidy my notes, please."}],
            "files": {"notes.txt": "old.txt is obsolete", "old.txt": "2019 plans"},
        }
        run = runs.start(shared)
        print(f"run id: {run.run_id}", flush=True)
    else:
        state = runs.inspect(args.run)
        if state.status == "done":
            print(f"run {args.run} is done: {state.shared.get('answer')}")
            return 0
        ask = state.interrupts[0]
        answer = args.answer if args.answer is not None else input(question_of(ask))
        run = runs.resume(args.run, {ask["id"]: answer})
    show(run)
    while run.status == "paused":
        ask = run.interrupts[0]
        print(f"(stop now and resume later with: --run {run.run_id})", flush=True)
        try:
            answer = input(question_of(ask))
        except EOFError:
            return 0  # the run waits in the file
        run = runs.resume(run.run_id, {ask["id"]: answer})
        show(run)
    print(f"answer: {run.shared['answer']}")
    print(f"files left: {sorted(run.shared['files'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
