"""pocketflow_stream.ui — showing streamed runs to people.

- transcript: a run's stream folded into a renderer-neutral tree of steps (every view draws it).
- terminal: the terminal view.
- mermaid: a flow drawn as a Mermaid flowchart.
- gradio: the Gradio chat view (extra `gradio`; imported on its own, never from here).

Built on the core's chunks and events and the llm layer's deltas; knows no provider format.
"""

from .mermaid import to_mermaid
from .terminal import TerminalRenderer, render
from .transcript import Step, ToolCallView, ToolResult, Transcript, load_item

__all__ = [
    "Transcript",
    "Step",
    "ToolCallView",
    "ToolResult",
    "load_item",
    "TerminalRenderer",
    "render",
    "to_mermaid",
]
