"""Flows drawn as Mermaid flowcharts, from Python and from the command line."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pocketflow_stream import (
    AsyncFlow,
    AsyncNode,
    AsyncParallelBatchFlow,
    AsyncParallelBatchNode,
    AsyncStreamNode,
    BatchFlow,
    BatchNode,
    Flow,
    FlowError,
    Node,
    StreamBatchNode,
    StreamFlow,
    StreamNode,
)
from pocketflow_stream.demo import build_flow
from pocketflow_stream.ui.mermaid import node_kind, to_mermaid

ROOT = Path(__file__).resolve().parent.parent


def test_the_demo_agent_is_a_loop_with_its_action_on_the_edge():
    assert to_mermaid(build_flow(None)) == textwrap.dedent(
        """\
        flowchart TD
            Plan["Plan<br/><small>stream</small>"]
            Act["Act<br/><small>stream</small>"]
            Plan -->|"act"| Act
            Act --> Plan
            classDef start stroke-width:3px
            class Plan start
        """
    )


class Load(Node):
    pass


class Check(Node):
    pass


def test_nested_flows_are_subgraphs_and_edges_can_leave_them():
    load, check, other = Load(), Check(), Check()
    load - "bad input" >> check
    load >> other
    inner = StreamFlow(start=load, name="Validate")
    report = Node(name="Report")
    inner - "failed" >> report
    outer = Flow(start=inner)
    text = to_mermaid(outer, "LR")
    assert text.splitlines() == [
        "flowchart LR",
        '    Report["Report"]',
        '    subgraph Validate["Validate"]',
        '        Validate__Load["Load"]',
        '        Validate__Check["Check"]',
        '        Validate__Check_2["Check#2"]',  # the engine's id for a second unnamed Check
        "    end",
        '    Validate -->|"failed"| Report',
        '    Validate__Load -->|"bad input"| Validate__Check',
        "    Validate__Load --> Validate__Check_2",
        "    classDef start stroke-width:3px",
        "    class Validate,Validate__Load start",
    ]


class Embed(AsyncParallelBatchNode):
    pass


class Fetch(AsyncStreamNode):
    async def exec_stream_async(self, prep_res):
        yield prep_res


class Each(StreamBatchNode):
    pass


@pytest.mark.parametrize(
    "node, kind, shape",
    [
        (Node(), "", '["'),
        (StreamNode(), "stream", '["'),
        (BatchNode(), "batch", '[["'),
        (Each(), "stream batch", '[["'),
        (AsyncNode(), "async", '(["'),
        (Fetch(), "async stream", '(["'),
        (Embed(), "async parallel batch", '[["'),
    ],
)
def test_batch_and_async_kinds_are_marked_by_shape_and_words(node, kind, shape):
    assert node_kind(node) == kind
    line = to_mermaid(node).splitlines()[1]
    assert shape in line and (not kind or f"<small>{kind}</small>" in line)


def test_flow_kinds_are_marked_in_the_subgraph_title():
    inner = AsyncParallelBatchFlow(start=AsyncNode(), name="Fan")
    text = to_mermaid(AsyncFlow(start=BatchFlow(start=inner, name="Outer")))
    assert 'subgraph Outer["Outer (batch flow)"]' in text
    assert 'subgraph Outer__Fan["Fan (async parallel batch flow)"]' in text
    assert text.count("end\n") == 2


def test_quotes_in_actions_are_escaped_and_bad_directions_refused():
    first = Node(name='say "hi"')
    first - 'a "quoted" action' >> Node(name="B")
    text = to_mermaid(Flow(start=first))
    assert '-->|"a #quot;quoted#quot; action"|' in text and '["say #quot;hi#quot;"]' in text
    with pytest.raises(ValueError, match="direction must be one of"):
        to_mermaid(Flow(start=first), "sideways")


def test_two_nodes_given_one_name_are_the_engines_error():
    first = Node(name="Twin")
    first >> Node(name="Twin")
    with pytest.raises(FlowError, match="two nodes named 'Twin'"):
        to_mermaid(Flow(start=first))


def test_flows_nested_deeper_than_the_recursion_limit_draw():
    flow = Node(name="Leaf")
    for level in range(3000):
        flow = Flow(start=flow, name=f"F{level}")
    text = to_mermaid(Flow(start=flow))
    assert text.count("subgraph ") == 3000 and text.count("end\n") == 3000


def test_the_command_line_prints_a_flow_or_what_a_function_builds(tmp_path):
    (tmp_path / "myapp.py").write_text(
        textwrap.dedent(
            """
            from pocketflow_stream import Node, StreamFlow

            def make():
                first = Node(name="First")
                first - "next" >> Node(name="Second")
                return StreamFlow(start=first)

            flow = make()

            def needs_a_model(model):
                return flow
            """
        )
    )

    def mermaid(*args):
        return subprocess.run(
            [sys.executable, "-m", "pocketflow_stream", "mermaid", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )

    by_attribute, by_function = mermaid("myapp:flow"), mermaid("myapp:make", "--markdown")
    assert by_attribute.returncode == 0, by_attribute.stderr
    assert by_attribute.stdout.startswith("flowchart TD\n")
    assert '    First -->|"next"| Second\n' in by_attribute.stdout
    assert by_function.stdout == f"```mermaid\n{by_attribute.stdout}```\n"
    missing = mermaid("myapp:nothing")
    assert missing.returncode == 1 and missing.stderr == (
        "error: 'myapp' has no attribute 'nothing'\n"
    )
    assert "is not module:attribute" in mermaid("myapp").stderr
    assert "builds one without arguments" in mermaid("myapp:needs_a_model").stderr
