"""LLMNode: a StreamNode that calls a chat model, streams its unified deltas as chunks and hands
the accumulated AssistantMessage to post. AsyncLLMNode: the same for async flows.

Built on the core's public StreamNode / AsyncStreamNode; knows models only by their
`stream(messages, tools=...)` / `astream(...)` methods, so any provider client (or the
ScriptedModel) fits.
"""

from __future__ import annotations

from typing import Any, AsyncGenerator, Dict, Generator, List, Mapping, Optional, Union

from ..async_driver import Return
from ..async_nodes import AsyncStreamNode
from ..errors import FlowError
from ..nodes import BaseNode, StreamNode
from .accumulator import Accumulator, AssistantMessage
from .deltas import Delta
from .models import AsyncChatModel, ChatModel

__all__ = ["LLMNode", "AsyncLLMNode", "ModelError"]


class ModelError(RuntimeError):
    """The provider reported an error inside the stream. With `max_retries` the node tries
    again (the failed attempt's chunks carry its `attempt` number, so a UI can drop them)."""

    def __init__(self, message: str, code: Optional[str] = None) -> None:
        super().__init__(message if code is None else f"{message} ({code})")
        self.code = code


class _CallsAModel:
    """What both LLM nodes are built with: the model, its tools and its call options."""

    def __init__(
        self,
        model: Union[ChatModel, AsyncChatModel, None] = None,
        *,
        tools: Optional[List[Dict[str, Any]]] = None,
        max_retries: int = 1,
        wait: float = 0,
        name: Optional[str] = None,
        **options: Any,
    ) -> None:
        super().__init__(max_retries, wait, name=name)  # type: ignore[call-arg]
        self.model = model
        self.tools = tools
        self.options = options


class LLMNode(_CallsAModel, StreamNode):
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

    def prep(self, shared: Any) -> Any:
        return _messages_in(shared, self, "prep")

    def exec_stream(self, messages: Any) -> Generator[Delta, None, AssistantMessage]:
        accumulator = Accumulator()
        stream = _chat_model(self).stream(list(messages), tools=self.tools, **self.options)
        try:
            for delta in stream:
                accumulator.add(delta)
                yield delta
        finally:  # stopped early: let the client drop its HTTP stream now, not at collection
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        return _reply(accumulator)

    def post(self, shared: Any, prep_res: Any, exec_res: AssistantMessage) -> Optional[str]:
        shared["messages"].append(exec_res.to_openai())
        return "tool_calls" if exec_res.tool_calls else None


class AsyncLLMNode(_CallsAModel, AsyncStreamNode):
    """LLMNode for async flows: streams `model.astream(...)` (AsyncOpenAIChatModel,
    AsyncAnthropicModel, ScriptedModel), so many conversations stream at once on one event
    loop. Same defaults, as `prep_async` / `post_async`, and the same `ModelError`::

        class Plan(AsyncLLMNode):
            async def post_async(self, shared, messages, reply):
                shared["messages"].append(reply.to_openai())
                return "act" if reply.tool_calls else "done"
    """

    async def prep_async(self, shared: Any) -> Any:
        return _messages_in(shared, self, "prep_async")

    async def exec_stream_async(self, messages: Any) -> AsyncGenerator[Any, None]:
        accumulator = Accumulator()
        stream = _async_chat_model(self).astream(list(messages), tools=self.tools, **self.options)
        try:
            async for delta in stream:
                accumulator.add(delta)
                yield delta
        finally:  # stopped early: the client drops its HTTP stream now
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()
        yield Return(_reply(accumulator))

    async def post_async(
        self, shared: Any, prep_res: Any, exec_res: AssistantMessage
    ) -> Optional[str]:
        shared["messages"].append(exec_res.to_openai())
        return "tool_calls" if exec_res.tool_calls else None


class _NoMessages(FlowError, KeyError):  # a KeyError still, as before it had a message
    __str__ = Exception.__str__  # the message as written, not KeyError's repr of it


def _messages_in(shared: Any, node: BaseNode, hook: str) -> Any:
    """The default prep: `shared["messages"]`, or an error saying how to provide them."""
    error: type[FlowError] = _NoMessages
    try:
        messages = shared["messages"]
    except (KeyError, TypeError):  # TypeError: shared is no mapping at all
        if isinstance(shared, Mapping):
            found = 'shared has no "messages" key'
        else:
            found = f"shared is {type(shared).__name__}, not a dict"
    else:
        if messages is not None and not isinstance(messages, (str, bytes, Mapping)):
            return messages
        found, error = f'shared["messages"] is {type(messages).__name__}, not a list', FlowError
    kind = type(node).__name__
    name = node.name or kind
    raise error(
        f"{name if name == kind else f'{name} ({kind})'} reads the conversation from "
        f'shared["messages"], but {found}. Put the messages there (OpenAI chat format) before '
        'the run, e.g. shared = {"messages": [{"role": "user", "content": "Hello"}]}, or '
        f"override {hook}(self, shared) in a subclass of {kind} to return them from elsewhere."
    ) from None


def _chat_model(node: LLMNode) -> ChatModel:
    if isinstance(node.model, ChatModel):
        return node.model
    raise _wrong_model(node, "stream", "an AsyncLLMNode (in an AsyncFlow)")


def _async_chat_model(node: AsyncLLMNode) -> AsyncChatModel:
    if isinstance(node.model, AsyncChatModel):
        return node.model
    raise _wrong_model(node, "astream", "an LLMNode (in a sync Flow)")


def _wrong_model(node: _CallsAModel, method: str, other_node: str) -> TypeError:
    kind = type(node).__name__
    if node.model is None:
        return TypeError(
            f"{kind} has no model: pass one, e.g. {kind}(ScriptedModel([...])) or "
            f"{kind}(OpenAIChatModel('gpt-4o-mini'))"
        )
    model = type(node.model).__name__
    return TypeError(
        f"{kind}'s model, a {model}, has no {method}() to call: give {kind} a model that "
        f"has one, or run this model in {other_node}"
    )


def _reply(accumulator: Accumulator) -> AssistantMessage:
    """The finished message, or ModelError if the provider reported one in the stream."""
    message = accumulator.message
    if message.error is not None:
        raise ModelError(message.error.message, message.error.code)
    return message
