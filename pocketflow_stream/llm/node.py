"""LLMNode: a StreamNode that calls a chat model, streams its unified deltas as chunks and hands
the accumulated AssistantMessage to post.

Built on the core's public StreamNode; knows models only by their `stream(messages, tools=...)`
method, so any provider client (or the ScriptedModel) fits.
"""

from __future__ import annotations

from typing import Any, Dict, Generator, List, Optional

from ..nodes import StreamNode
from .accumulator import Accumulator, AssistantMessage
from .deltas import Delta
from .models import ChatModel

__all__ = ["LLMNode", "ModelError"]


class ModelError(RuntimeError):
    """The provider reported an error inside the stream. With `max_retries` the node tries
    again (the failed attempt's chunks carry its `attempt` number, so a UI can drop them)."""

    def __init__(self, message: str, code: Optional[str] = None) -> None:
        super().__init__(message if code is None else f"{message} ({code})")
        self.code = code


class LLMNode(StreamNode):
    """Calls `model` on the messages prep returns; every delta is a chunk; post gets the final
    AssistantMessage (content, reasoning, tool calls with parsed arguments, usage, finish).

    Defaults, each meant to be overridden: `prep` reads `shared["messages"]` (OpenAI chat
    format); `post` appends the assistant message to it and returns "tool_calls" when the
    model called tools, else None ("default")::

        class Plan(LLMNode):
            def post(self, shared, messages, reply):
                shared["messages"].append(reply.to_openai())
                return "act" if reply.tool_calls else "done"

        plan = Plan(model, tools=TOOLS)
    """

    def __init__(
        self,
        model: Optional[ChatModel] = None,
        *,
        tools: Optional[List[Dict[str, Any]]] = None,
        max_retries: int = 1,
        wait: float = 0,
        name: Optional[str] = None,
        **options: Any,
    ) -> None:
        super().__init__(max_retries, wait, name=name)
        self.model = model
        self.tools = tools
        self.options = options

    def prep(self, shared: Any) -> Any:
        return shared["messages"]

    def exec_stream(self, messages: Any) -> Generator[Delta, None, AssistantMessage]:
        if self.model is None:
            raise TypeError(
                f"{type(self).__name__} has no model: pass one, e.g. "
                "LLMNode(ScriptedModel([...])) or LLMNode(OpenAIChatModel('gpt-4o-mini'))"
            )
        accumulator = Accumulator()
        stream = self.model.stream(list(messages), tools=self.tools, **self.options)
        try:
            for delta in stream:
                accumulator.add(delta)
                yield delta
        finally:  # stopped early: let the client drop its HTTP stream now, not at collection
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        message = accumulator.message
        if message.error is not None:
            raise ModelError(message.error.message, message.error.code)
        return message

    def post(self, shared: Any, prep_res: Any, exec_res: AssistantMessage) -> Optional[str]:
        shared["messages"].append(exec_res.to_openai())
        return "tool_calls" if exec_res.tool_calls else None
