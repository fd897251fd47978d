"""Model clients: call a provider SDK with streaming on and yield unified deltas.

Every model satisfies a tiny protocol: `stream(messages, *, tools=None, **options)` yields
deltas (`ChatModel`); async models offer `astream` (`AsyncChatModel`). `messages` and `tools`
are in the OpenAI Chat Completions format, the lingua franca here; each client converts them
to its provider's format (the converters are public and small). Provider SDKs are optional
extras, imported only when a client is used. This module knows the SDKs' calls and errors, and
leaves the wire formats to the adapters; it knows nothing of the engine.

Streams are lazy: the request is sent at the first `next()`. When the consumer stops early
(closes the iterator), the HTTP stream is closed.

Errors: an error the provider reports *inside* a stream (Anthropic's `error` event, an OpenAI-
compatible server's `data: {"error": ...}`; the SDKs raise both from their iterators) becomes a
`ProviderError` delta, followed only by the end of any open tool call: exactly what the
adapters yield for the same events decoded by hand, so an app handles one shape. A request
rejected before streaming (HTTP 4xx/5xx) and a broken transport (connection dropped, timeout)
raise the SDK's own exception, so retry logic sees them.
"""

from __future__ import annotations

import inspect
import json
import os
from typing import (
    Any,
    AsyncIterator,
    Awaitable,
    Callable,
    Dict,
    Iterator,
    List,
    Optional,
    Protocol,
    Tuple,
    Union,
    runtime_checkable,
)

import anyio

from .accumulator import INVALID_ARGUMENTS_KEY
from .deltas import Delta, ProviderError

__all__ = [
    "ChatModel",
    "AsyncChatModel",
    "OpenAIChatModel",
    "AsyncOpenAIChatModel",
    "OpenAIResponsesModel",
    "AnthropicModel",
    "AsyncAnthropicModel",
    "LiteLLMModel",
    "default_model",
    "to_anthropic_messages",
    "to_anthropic_tools",
    "to_responses_input",
    "to_responses_tools",
]

Message = Dict[str, Any]
Tool = Dict[str, Any]

#: Model names `default_model` uses unless these environment variables say otherwise.
DEFAULT_OPENAI_MODEL = "gpt-4o-mini"
DEFAULT_ANTHROPIC_MODEL = "claude-sonnet-4-6"  # 4-5 is deprecated (end of life 2026-11-30)


@runtime_checkable
class ChatModel(Protocol):
    """Anything that streams a reply as unified deltas."""

    def stream(
        self, messages: List[Message], *, tools: Optional[List[Tool]] = None, **options: Any
    ) -> Iterator[Delta]: ...


@runtime_checkable
class AsyncChatModel(Protocol):
    """Anything that streams a reply as unified deltas to `async for`."""

    def astream(
        self, messages: List[Message], *, tools: Optional[List[Tool]] = None, **options: Any
    ) -> AsyncIterator[Delta]: ...


class _SDKModel:
    """What every SDK-backed model holds: the model name, request defaults and a client that
    is built on first use, so constructing a model never needs a key or a network."""

    _sdk = ""
    _client_class = ""

    def __init__(self, model: str, client: Any = None, **defaults: Any) -> None:
        self.model = model
        self.defaults = defaults
        self._client = client

    @property
    def client(self) -> Any:
        """The SDK client given at construction, or the SDK's default client."""
        if self._client is None:
            self._client = getattr(_import(self._sdk, type(self).__name__), self._client_class)()
        return self._client


# --- OpenAI Chat Completions ---------------------------------------------------------------


class _OpenAIChat(_SDKModel):
    """What the sync and async Chat Completions models share: the request and the adapter."""

    _sdk = "openai"

    def __init__(
        self, model: str, client: Any = None, *, think_tags: bool = False, **defaults: Any
    ) -> None:
        super().__init__(model, client, **defaults)
        self.think_tags = think_tags

    def _call(
        self, messages: List[Message], tools: Optional[List[Tool]], options: Dict[str, Any]
    ) -> Tuple[Callable[[], Any], Any]:
        from .openai_chat import OpenAIChatAdapter

        request = _chat_request(self.model, messages, tools, self.defaults, options)
        adapter = OpenAIChatAdapter(think_tags=self.think_tags)
        return (lambda: self.client.chat.completions.create(**request)), adapter


class OpenAIChatModel(_OpenAIChat):
    """The OpenAI Chat Completions API (and every OpenAI-compatible server: point the client's
    `base_url` at it). `client` defaults to `openai.OpenAI()`, built on first use (it reads
    `OPENAI_API_KEY` and `OPENAI_BASE_URL`). `defaults` and per-call `options` are passed to
    `chat.completions.create` as they are; usage is requested with
    `stream_options={"include_usage": True}` unless you set `stream_options` (None: omit it).
    `think_tags=True` splits `<think>...</think>` reasoning out of the text (local reasoning
    models that inline it).

        model = OpenAIChatModel("gpt-4o-mini", temperature=0)
        for delta in model.stream([{"role": "user", "content": "Hi"}]):
            print(delta)
    """

    _client_class = "OpenAI"

    def stream(
        self, messages: List[Message], *, tools: Optional[List[Tool]] = None, **options: Any
    ) -> Iterator[Delta]:
        """Yield the reply's deltas; the request is sent when iteration starts. Raises the
        SDK's error if the request is rejected or the connection breaks; an in-stream error
        arrives as a final ProviderError delta."""
        return _drive(*self._call(messages, tools, options), _openai_stream_error)


class AsyncOpenAIChatModel(_OpenAIChat):
    """`OpenAIChatModel` for async code: `client` defaults to `openai.AsyncOpenAI()`."""

    _client_class = "AsyncOpenAI"

    def astream(
        self, messages: List[Message], *, tools: Optional[List[Tool]] = None, **options: Any
    ) -> AsyncIterator[Delta]:
        """Yield the reply's deltas; errors as in `OpenAIChatModel.stream`."""
        return _adrive(*self._call(messages, tools, options), _openai_stream_error)


def _chat_request(
    model: str,
    messages: List[Message],
    tools: Optional[List[Tool]],
    defaults: Dict[str, Any],
    options: Dict[str, Any],
) -> Dict[str, Any]:
    request: Dict[str, Any] = {"stream_options": {"include_usage": True}, **defaults, **options}
    if request["stream_options"] is None:
        del request["stream_options"]  # some OpenAI-compatible servers reject the field
    if tools:
        request["tools"] = tools
    request.update(model=model, messages=messages, stream=True)
    return request


def _openai_stream_error(error: Exception) -> Optional[ProviderError]:
    import openai

    if not isinstance(error, openai.APIError) or isinstance(error, openai.APIConnectionError):
        return None
    return ProviderError(error.message, error.code or error.type)


# --- OpenAI Responses ----------------------------------------------------------------------


class OpenAIResponsesModel(_SDKModel):
    """The OpenAI Responses API. `messages` and `tools` in Chat Completions format are converted
    (`to_responses_input`, `to_responses_tools`); Responses items pass through. `defaults` and
    `options` go to `responses.create` as they are (e.g. `reasoning={"summary": "auto"}`)."""

    _sdk = "openai"
    _client_class = "OpenAI"

    def stream(
        self, messages: List[Message], *, tools: Optional[List[Tool]] = None, **options: Any
    ) -> Iterator[Delta]:
        """Yield the reply's deltas; errors as in `OpenAIChatModel.stream`."""
        from .openai_responses import OpenAIResponsesAdapter

        request: Dict[str, Any] = {**self.defaults, **options}
        if tools:
            request["tools"] = to_responses_tools(tools)
        request.update(model=self.model, input=to_responses_input(messages), stream=True)
        return _drive(
            lambda: self.client.responses.create(**request),
            OpenAIResponsesAdapter(),
            _openai_stream_error,
        )


def to_responses_input(messages: List[Message]) -> List[Dict[str, Any]]:
    """Convert Chat Completions messages to Responses `input` items: an assistant's
    `tool_calls` become `function_call` items, `tool` messages `function_call_output` items,
    text and image parts `input_text`/`output_text` and `input_image`. Items without a `role`
    (already in Responses form) pass through."""
    items: List[Dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        content = message.get("content")
        if role is None:
            items.append(message)
        elif role == "tool":
            items.append(
                {
                    "type": "function_call_output",
                    "call_id": message["tool_call_id"],
                    "output": _plain_text(content),
                }
            )
        else:
            if content:
                text_type = "output_text" if role == "assistant" else "input_text"
                parts = (
                    content
                    if isinstance(content, str)
                    else [_responses_part(part, text_type) for part in content]
                )
                items.append({"role": role, "content": parts})
            for call in message.get("tool_calls") or ():
                items.append(
                    {
                        "type": "function_call",
                        "call_id": call["id"],
                        "name": call["function"]["name"],
                        "arguments": call["function"].get("arguments") or "{}",
                    }
                )
    return items


def to_responses_tools(tools: List[Tool]) -> List[Tool]:
    """Flatten Chat Completions function tools (`{"type": "function", "function": {...}}`) to
    the Responses form (`{"type": "function", "name", "description", "parameters"}`); other
    tools pass through."""
    return [
        {"type": "function", **tool["function"]} if "function" in tool else tool for tool in tools
    ]


def _responses_part(part: Dict[str, Any], text_type: str) -> Dict[str, Any]:
    if part.get("type") == "text":
        return {"type": text_type, "text": part["text"]}
    if part.get("type") == "image_url":
        return {"type": "input_image", "image_url": _image_url(part)}
    return part


# --- Anthropic -----------------------------------------------------------------------------


class _Anthropic(_SDKModel):
    """What the sync and async Messages models share: the request and the adapter."""

    _sdk = "anthropic"

    def __init__(
        self, model: str, client: Any = None, *, max_tokens: int = 4096, **defaults: Any
    ) -> None:
        super().__init__(model, client, **defaults)
        self.max_tokens = max_tokens

    def _call(
        self, messages: List[Message], tools: Optional[List[Tool]], options: Dict[str, Any]
    ) -> Tuple[Callable[[], Any], Any]:
        from .anthropic_messages import AnthropicAdapter

        system, converted = to_anthropic_messages(messages)
        request: Dict[str, Any] = {"max_tokens": self.max_tokens, **self.defaults, **options}
        if system is not None:
            request["system"] = system
        if tools:
            request["tools"] = to_anthropic_tools(tools)
        request.update(model=self.model, messages=converted, stream=True)
        return (lambda: self.client.messages.create(**request)), AnthropicAdapter()


class AnthropicModel(_Anthropic):
    """The Anthropic Messages API. `client` defaults to `anthropic.Anthropic()`, built on first
    use (it reads `ANTHROPIC_API_KEY`). Messages and tools in Chat Completions format are
    converted (`to_anthropic_messages`, `to_anthropic_tools`); `defaults` and `options` go to
    `messages.create` as they are (e.g. `thinking={"type": "enabled", "budget_tokens": 2048}`).
    """

    _client_class = "Anthropic"

    def stream(
        self, messages: List[Message], *, tools: Optional[List[Tool]] = None, **options: Any
    ) -> Iterator[Delta]:
        """Yield the reply's deltas; the request is sent when iteration starts. Raises the
        SDK's error if the request is rejected or the connection breaks; an `error` event
        arrives as a final ProviderError delta."""
        return _drive(*self._call(messages, tools, options), _anthropic_stream_error)


class AsyncAnthropicModel(_Anthropic):
    """`AnthropicModel` for async code: `client` defaults to `anthropic.AsyncAnthropic()`."""

    _client_class = "AsyncAnthropic"

    def astream(
        self, messages: List[Message], *, tools: Optional[List[Tool]] = None, **options: Any
    ) -> AsyncIterator[Delta]:
        """Yield the reply's deltas; errors as in `AnthropicModel.stream`."""
        return _adrive(*self._call(messages, tools, options), _anthropic_stream_error)


def to_anthropic_messages(messages: List[Message]) -> Tuple[Optional[str], List[Message]]:
    """Convert Chat Completions messages to Anthropic's `(system, messages)`.

    System and developer messages are joined into the system prompt; an assistant's
    `tool_calls` become `tool_use` blocks (arguments parsed from JSON); consecutive `tool`
    messages become one user message of `tool_result` blocks (Anthropic wants every result of
    a parallel call together); `image_url` parts become `image` blocks. Content already in
    Anthropic block form (thinking, tool_use, ...) passes through unchanged.

    Tool-call arguments that are not a JSON object become `{INVALID_ARGUMENTS_KEY: raw_text}`,
    as in `AssistantMessage.to_anthropic()`. Raises ValueError for an unknown role.
    """
    system: List[str] = []
    converted: List[Message] = []
    open_results: Optional[List[Dict[str, Any]]] = None  # the user message collecting results
    for position, message in enumerate(messages):
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            system.append(_plain_text(content))
            continue
        if role == "tool":
            result = {
                "type": "tool_result",
                "tool_use_id": message["tool_call_id"],
                "content": content if isinstance(content, str) else _anthropic_blocks(content),
            }
            if open_results is None:
                open_results = [result]
                converted.append({"role": "user", "content": open_results})
            else:
                open_results.append(result)
            continue
        if role not in ("user", "assistant"):
            raise ValueError(
                f"messages[{position}] has role {role!r}; expected system, developer, user, "
                "assistant or tool"
            )
        open_results = None
        blocks: Union[str, List[Dict[str, Any]]] = (
            content if isinstance(content, str) else _anthropic_blocks(content)
        )
        calls = message.get("tool_calls") or ()
        if calls:
            blocks = [{"type": "text", "text": blocks}] if isinstance(blocks, str) else blocks
            blocks = [block for block in blocks if block.get("text") != ""]
            blocks += [_tool_use_block(call) for call in calls]
        converted.append({"role": role, "content": blocks})
    return ("\n\n".join(system) if system else None), converted


def to_anthropic_tools(tools: List[Tool]) -> List[Tool]:
    """Convert Chat Completions function tools to Anthropic's `{name, description,
    input_schema}`; tools already in Anthropic form pass through."""
    converted = []
    for tool in tools:
        function = tool.get("function")
        if function is None:
            converted.append(tool)
            continue
        anthropic_tool = {
            "name": function["name"],
            "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
        }
        if function.get("description"):
            anthropic_tool["description"] = function["description"]
        converted.append(anthropic_tool)
    return converted


def _anthropic_blocks(content: Optional[List[Dict[str, Any]]]) -> List[Dict[str, Any]]:
    blocks = []
    for part in content or ():
        if part.get("type") == "image_url":
            url = _image_url(part)
            if url.startswith("data:"):
                header, _, data = url.partition(",")
                media_type = header[len("data:") :].split(";")[0]
                source = {"type": "base64", "media_type": media_type, "data": data}
            else:
                source = {"type": "url", "url": url}
            blocks.append({"type": "image", "source": source})
        else:
            blocks.append(part)  # text parts are the same in both formats
    return blocks


def _tool_use_block(call: Dict[str, Any]) -> Dict[str, Any]:
    function = call["function"]
    arguments = function.get("arguments") or "{}"
    try:
        parsed = json.loads(arguments) if isinstance(arguments, str) else arguments
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        # Anthropic needs an object, and the tool_result answering this call needs its
        # tool_use; the accumulator renders invalid arguments the same way.
        parsed = {INVALID_ARGUMENTS_KEY: arguments}
    return {"type": "tool_use", "id": call["id"], "name": function["name"], "input": parsed}


def _anthropic_stream_error(error: Exception) -> Optional[ProviderError]:
    import anthropic

    if not isinstance(error, anthropic.APIStatusError):
        return None  # a broken connection is not the provider's word
    body = error.body
    detail = body.get("error") if isinstance(body, dict) else None
    if isinstance(detail, dict):
        return ProviderError(str(detail.get("message") or error), detail.get("type"))
    return ProviderError(str(error), None)


# --- LiteLLM -------------------------------------------------------------------------------


class LiteLLMModel:
    """Any provider LiteLLM supports, through `litellm.completion(..., stream=True)`.
    `defaults` and `options` are passed as they are (e.g. `api_base`, `api_key`).

    LiteLLM wraps every failure inside a stream in its `MidStreamFallbackError` (a provider's
    error event and a dropped connection alike), so with LiteLLM both arrive as a final
    ProviderError delta. LiteLLM (1.106) also drops OpenAI's `refusal` deltas.
    """

    def __init__(self, model: str, **defaults: Any) -> None:
        self.model = model
        self.defaults = defaults

    def stream(
        self, messages: List[Message], *, tools: Optional[List[Tool]] = None, **options: Any
    ) -> Iterator[Delta]:
        """Yield the reply's deltas; errors as in `OpenAIChatModel.stream` (LiteLLM raises
        subclasses of the openai SDK's errors)."""
        from .litellm_chunks import LiteLLMAdapter

        request = _chat_request(self.model, messages, tools, self.defaults, options)
        return _drive(
            lambda: _import("litellm", type(self).__name__).completion(**request),
            LiteLLMAdapter(),
            _openai_stream_error,
            _close_litellm_stream,
        )


def _close_litellm_stream(stream: Any) -> None:
    # LiteLLM's sync stream wrapper has no close(); the provider's own stream, which holds the
    # connection, is its `completion_stream`.
    if hasattr(stream, "close"):
        stream.close()
    else:
        _close_stream(getattr(stream, "completion_stream", None))


# --- choosing a model ----------------------------------------------------------------------


def default_model(
    asynchronous: bool = False,
) -> Optional[Union[OpenAIChatModel, AnthropicModel, AsyncOpenAIChatModel, AsyncAnthropicModel]]:
    """The real model the environment allows, or None (then use a ScriptedModel).

    `OpenAIChatModel` if `OPENAI_API_KEY` is set (model `POCKETFLOW_STREAM_OPENAI_MODEL`,
    default "gpt-4o-mini"; `OPENAI_BASE_URL` points it at a compatible server), else
    `AnthropicModel` if `ANTHROPIC_API_KEY` is set (model `POCKETFLOW_STREAM_ANTHROPIC_MODEL`,
    default "claude-sonnet-4-6"); with `asynchronous=True`, their async twins (for
    AsyncLLMNode). No client is built and nothing is sent until the first call.
    """
    if os.environ.get("OPENAI_API_KEY"):
        name = os.environ.get("POCKETFLOW_STREAM_OPENAI_MODEL") or DEFAULT_OPENAI_MODEL
        return AsyncOpenAIChatModel(name) if asynchronous else OpenAIChatModel(name)
    if os.environ.get("ANTHROPIC_API_KEY"):
        name = os.environ.get("POCKETFLOW_STREAM_ANTHROPIC_MODEL") or DEFAULT_ANTHROPIC_MODEL
        return AsyncAnthropicModel(name) if asynchronous else AnthropicModel(name)
    return None


# --- driving a stream ----------------------------------------------------------------------

StreamError = Callable[[Exception], Optional[ProviderError]]


def _close_stream(stream: Any) -> None:
    close = getattr(stream, "close", None)
    if close is not None:
        close()


def _drive(
    open_stream: Callable[[], Any],
    adapter: Any,
    stream_error: StreamError,
    close_stream: Callable[[Any], None] = _close_stream,
) -> Iterator[Delta]:
    # The request is sent at the first next(), and the generator that opened the HTTP stream
    # owns it: it is closed however iteration ends (exhausted, raised, or closed by the
    # consumer). A request the provider rejects raises here, before anything is yielded.
    stream = open_stream()
    try:
        iterator = iter(stream)
        while True:
            try:
                item = next(iterator)
            except StopIteration:
                break
            except Exception as error:
                reported = stream_error(error)
                if reported is None:
                    raise
                # As the adapter reports an error event it reads itself: the error, then the
                # end of whatever was open.
                yield reported
                break
            yield from adapter.feed(item)
        yield from adapter.close()
    finally:
        close_stream(stream)


async def _adrive(
    open_stream: Callable[[], Awaitable[Any]], adapter: Any, stream_error: StreamError
) -> AsyncIterator[Delta]:
    stream = await open_stream()
    try:
        # The SDKs' async streams are their own iterators; iterating a fresh __aiter__ would
        # leave a second generator behind that only the garbage collector closes.
        iterator = stream if hasattr(stream, "__anext__") else stream.__aiter__()
        while True:
            try:
                item = await iterator.__anext__()
            except StopAsyncIteration:
                break
            except Exception as error:
                reported = stream_error(error)
                if reported is None:
                    raise
                yield reported
                break
            for delta in adapter.feed(item):
                yield delta
        for delta in adapter.close():
            yield delta
    finally:
        # Shielded: a cancelled consumer must still release the connection.
        with anyio.CancelScope(shield=True):
            close = getattr(stream, "close", None) or getattr(stream, "aclose", None)
            closing = close() if close is not None else None
            if inspect.isawaitable(closing):
                await closing


def _import(module: str, user: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        raise ImportError(
            f"{user} needs the {module!r} package, which is not installed; "
            f"install it with: pip install 'pocketflow-stream[{module}]'"
        ) from None


def _plain_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))


def _image_url(part: Dict[str, Any]) -> str:
    image = part.get("image_url")
    return str(image.get("url") if isinstance(image, dict) else image)
