"""Recipe: draw a flow as a Mermaid diagram — nested flows as subgraphs, actions as edge
labels, batch, parallel and async nodes marked — to paste into a README or a pull request
(GitHub and GitLab render ```mermaid blocks).

    python cookbook/visualisation/main.py [flow.md]    # prints it; also writes flow.md

or from the shell, for any flow an app defines (a flow, or a function without arguments that
builds one), here from this folder:

    python -m pocketflow_stream mermaid main:build --markdown

Drawing reads the graph only; nothing runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pocketflow_stream import AsyncFlow, AsyncNode, AsyncParallelBatchNode, Flow, Node, StreamNode
from pocketflow_stream.ui import to_mermaid


class Plan(StreamNode):
    def exec_stream(self, prep_res):
        yield "thinking..."


class Act(Node):
    pass


class Answer(StreamNode):
    def exec_stream(self, prep_res):
        yield "the answer"

    def post(self, shared, prep_res, exec_res):
        return "publish"  # the agent's last action: Research goes on to Publish


class Fetch(AsyncParallelBatchNode):
    async def exec_async(self, url):
        return url


class Publish(AsyncNode):
    async def exec_async(self, prep_res):
        return None


def build() -> AsyncFlow:
    """Fetch sources in parallel, then an agent loop (a sub-flow), then publish."""
    plan, act = Plan(), Act()
    plan - "act" >> act
    act >> plan
    plan - "answer" >> Answer()
    agent = Flow(start=plan, name="Agent")

    fetch = Fetch(name="FetchSources")
    fetch >> agent
    agent - "publish" >> Publish()
    return AsyncFlow(start=fetch, name="Research")


def main(markdown_file=None) -> str:
    text = to_mermaid(build(), direction="TD")
    print(text, end="")
    if markdown_file:
        Path(markdown_file).write_text(f"```mermaid\n{text}```\n", encoding="utf-8")
    return text


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
