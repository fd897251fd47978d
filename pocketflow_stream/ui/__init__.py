"""pocketflow_stream.ui — showing streamed runs to people (terminal; Gradio later).

Built on the core's chunks and events and the llm layer's deltas; knows no provider format.
"""

from .terminal import TerminalRenderer, render

__all__ = ["TerminalRenderer", "render"]
