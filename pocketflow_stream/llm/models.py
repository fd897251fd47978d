"""Model clients: call a provider SDK with streaming on and yield unified deltas.

Every model satisfies a tiny protocol: `stream(messages, *, tools=None, **options)` yields
deltas (`ChatModel`); async models offer `astream` (`AsyncChatModel`). `messages` and `tools`
are in the OpenAI Chat Completions format, the lingua franca here; each client converts them
to its provider's format (the converters are public and small). Provider SDKs are optional
extras, imported only when a client is used. This module knows the SDKs' calls and errors, and
leaves the wire formats to the adapters; it knows nothing of the engine.

Streams are lazy: the request is sent at the first `next()`. When the consumer stops early
(closes the iterator), the HTTP stream is closed.

Reading the body. With the official `openai` and `anthropic` clients the SDK sends the request
through its `with_streaming_response` API — so it still builds the request, authenticates,
applies base URLs, retries and raises its own errors for a rejected request — and the body's
server-sent events are decoded here (`_wire.SSEDecoder`, `json`) into the dicts the adapters
read: no pydantic object is built per chunk, which is most of what the SDK's own stream costs
(see bench/bench_llm.py). `raw_stream=False` (or a client without `with_streaming_response`,
such as a test double) iterates the SDK's own stream objects instead; both paths yield the same
deltas.

Errors: an error the provider reports *inside* a stream (Anthropic's `error` event, an OpenAI-
compatible server's `data: {"error": ...}`, a Responses `error` or `response.failed` event)
becomes a `ProviderError` delta, followed only by the end of any open tool call, and the stream
stops there: exactly what the adapters yield for the same events decoded by hand, so an app
handles one shape. A request
rejected before streaming (HTTP 4xx/5xx) and a broken transport (connection dropped, timeout)
raise the SDK's own exception, so retry logic sees them.
"""

from __future__ import annotations

import inspect
import json
import os
import sys
from typing import (
    Any,
    AsyncIterator,
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

from ._wire import SSEDecoder
from .accumulator import INVALID_ARGUMENTS_KEY
from .deltas import Delta, ProviderError

__all__ = [
    "ChatModel",
    "AsyncChatModel",
    "OpenAIChatModel",
    "AsyncOpenAIChatModel",
    "OpenAIResponsesModel",
    "AsyncOpenAIResponsesModel",
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

    def __init__(
        self, model: str, client: Any = None, *, raw_stream: bool = True, **defaults: Any
    ) -> None:
        self.model = model
        self.defaults = defaults
        self.raw_stream = raw_stream
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
        self,
        model: str,
        client: Any = None,
        *,
        think_tags: bool = False,
        raw_stream: bool = True,
        **defaults: Any,
    ) -> None:
        super().__init__(model, client, raw_stream=raw_stream, **defaults)
        self.think_tags = think_tags

    def _call(
        self, messages: List[Message], tools: Optional[List[Tool]], options: Dict[str, Any]
    ) -> _Call:
        from .openai_chat import OpenAIChatAdapter

        request = _chat_request(self.model, messages, tools, self.defaults, options)
        adapter = OpenAIChatAdapter(think_tags=self.think_tags)
        return _Call(
            lambda: self.client.chat.completions, request, adapter, _OPENAI, self.raw_stream
        )


class OpenAIChatModel(_OpenAIChat):
    """The OpenAI Chat Completions API (and every OpenAI-compatible server: point the client's
    `base_url` at it). `client` defaults to `openai.OpenAI()`, built on first use (it reads
    `OPENAI_API_KEY` and `OPENAI_BASE_URL`). `defaults` and per-call `options` are passed to
    `chat.completions.create` as they are; usage is requested with
    `stream_options={"include_usage": True}` unless you set `stream_options` (None: omit it).
    `think_tags=True` splits `<think>...</think>` reasoning out of the text (local reasoning
    models that inline it). `raw_stream=False` reads the SDK's own stream objects instead of
    decoding the body's events here (same deltas, slower; see the module docstring).

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
        return _drive(self._call(messages, tools, options))


class AsyncOpenAIChatModel(_OpenAIChat):
    """`OpenAIChatModel` for async code: `client` defaults to `openai.AsyncOpenAI()`."""

    _client_class = "AsyncOpenAI"

    def astream(
        self, messages: List[Message], *, tools: Optional[List[Tool]] = None, **options: Any
    ) -> AsyncIterator[Delta]:
        """Yield the reply's deltas; errors as in `OpenAIChatModel.stream`."""
        return _adrive(self._call(messages, tools, options))


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


class _OpenAIResponses(_SDKModel):
    """What the sync and async Responses models share: the request and the adapter."""

    _sdk = "openai"

    def _call(
        self, messages: List[Message], tools: Optional[List[Tool]], options: Dict[str, Any]
    ) -> _Call:
        from .openai_responses import OpenAIResponsesAdapter

        request: Dict[str, Any] = {**self.defaults, **options}
        if tools:
            request["tools"] = to_responses_tools(tools)
        request.update(model=self.model, input=to_responses_input(messages), stream=True)
        adapter = OpenAIResponsesAdapter()
        return _Call(lambda: self.client.responses, request, adapter, _OPENAI, self.raw_stream)


class OpenAIResponsesModel(_OpenAIResponses):
    """The OpenAI Responses API. `messages` and `tools` in Chat Completions format are converted
    (`to_responses_input`, `to_responses_tools`); Responses items pass through. `defaults` and
    `options` go to `responses.create` as they are (e.g. `reasoning={"summary": "auto"}`).
    `raw_stream` as in `OpenAIChatModel`."""

    _client_class = "OpenAI"

    def stream(
        self, messages: List[Message], *, tools: Optional[List[Tool]] = None, **options: Any
    ) -> Iterator[Delta]:
        """Yield the reply's deltas; errors as in `OpenAIChatModel.stream`."""
        return _drive(self._call(messages, tools, options))


class AsyncOpenAIResponsesModel(_OpenAIResponses):
    """`OpenAIResponsesModel` for async code: `client` defaults to `openai.AsyncOpenAI()`."""

    _client_class = "AsyncOpenAI"

    def astream(
        self, messages: List[Message], *, tools: Optional[List[Tool]] = None, **options: Any
    ) -> AsyncIterator[Delta]:
        """Yield the reply's deltas; errors as in `OpenAIChatModel.stream`."""
        return _adrive(self._call(messages, tools, options))


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
        self,
        model: str,
        client: Any = None,
        *,
        max_tokens: int = 4096,
        raw_stream: bool = True,
        **defaults: Any,
    ) -> None:
        super().__init__(model, client, raw_stream=raw_stream, **defaults)
        self.max_tokens = max_tokens

    def _call(
        self, messages: List[Message], tools: Optional[List[Tool]], options: Dict[str, Any]
    ) -> _Call:
        from .anthropic_messages import AnthropicAdapter

        system, converted = to_anthropic_messages(messages)
        request: Dict[str, Any] = {"max_tokens": self.max_tokens, **self.defaults, **options}
        if system is not None:
            request["system"] = system
        if tools:
            request["tools"] = to_anthropic_tools(tools)
        request.update(model=self.model, messages=converted, stream=True)
        return _Call(
            lambda: self.client.messages, request, AnthropicAdapter(), _ANTHROPIC, self.raw_stream
        )


class AnthropicModel(_Anthropic):
    """The Anthropic Messages API. `client` defaults to `anthropic.Anthropic()`, built on first
    use (it reads `ANTHROPIC_API_KEY`). Messages and tools in Chat Completions format are
    converted (`to_anthropic_messages`, `to_anthropic_tools`); `defaults` and `options` go to
    `messages.create` as they are (e.g. `thinking={"type": "enabled", "budget_tokens": 2048}`).
    `raw_stream` as in `OpenAIChatModel`.
    """

    _client_class = "Anthropic"

    def stream(
        self, messages: List[Message], *, tools: Optional[List[Tool]] = None, **options: Any
    ) -> Iterator[Delta]:
        """Yield the reply's deltas; the request is sent when iteration starts. Raises the
        SDK's error if the request is rejected or the connection breaks; an `error` event
        arrives as a final ProviderError delta."""
        return _drive(self._call(messages, tools, options))


class AsyncAnthropicModel(_Anthropic):
    """`AnthropicModel` for async code: `client` defaults to `anthropic.AsyncAnthropic()`."""

    _client_class = "AsyncAnthropic"

    def astream(
        self, messages: List[Message], *, tools: Optional[List[Tool]] = None, **options: Any
    ) -> AsyncIterator[Delta]:
        """Yield the reply's deltas; errors as in `AnthropicModel.stream`."""
        return _adrive(self._call(messages, tools, options))


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
        call = _Call(
            lambda: _LiteLLMResource(_import("litellm", type(self).__name__)),
            request,
            LiteLLMAdapter(),
            _LITELLM,
            raw_stream=False,
        )
        return _drive(call)


class _LiteLLMResource:
    """litellm's `completion` in the shape of an SDK resource (`create`)."""

    def __init__(self, litellm: Any) -> None:
        self.create = litellm.completion


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
#
# Two ways to read a reply, chosen at the first next():
#
# - raw (the default with the official SDKs): the SDK sends the request through its
#   `with_streaming_response` API — it still builds the request, authenticates, retries and
#   raises its own errors for a rejected request — and hands back the HTTP response unread;
#   the body's server-sent events are decoded here (`SSEDecoder`, `json.loads`) into the dicts
#   the adapters read. No pydantic object is built per chunk, which is most of what the SDK's
#   own stream costs.
# - the SDK's stream objects (`raw_stream=False`, or a client without
#   `with_streaming_response`, or LiteLLM): the adapters read the objects the SDK yields.
#
# Both end alike: an error event gives a ProviderError delta, then the end of whatever was
# open, and the stream stops there; a transport failure raises (the openai SDK's
# APIConnectionError / APITimeoutError, as its own stream raises them; the anthropic SDK lets
# the HTTP library's error through, and so does this); the HTTP response is closed however
# iteration ends.

StreamError = Callable[[Exception], Optional[ProviderError]]


class _WireFormat:
    """How one provider's streamed body is read on the raw path, and how its SDK reports a
    failure on the SDK path."""

    __slots__ = ("stream_error", "close_stream", "named_events_only", "transport_error")

    def __init__(
        self,
        stream_error: StreamError,
        *,
        close_stream: Optional[Callable[[Any], None]] = None,
        named_events_only: bool = False,
        transport_error: Optional[Callable[[Exception, Any], Optional[Exception]]] = None,
    ) -> None:
        self.stream_error = stream_error
        self.close_stream = close_stream or _close_stream
        # The anthropic SDK skips frames without an `event:` name; so does the raw path.
        self.named_events_only = named_events_only
        self.transport_error = transport_error


class _Call:
    """One model call, ready to send: the SDK resource (got lazily: building the client may
    need a key), the request, the adapter and the provider's wire format."""

    __slots__ = ("resource", "request", "adapter", "wire", "raw_stream")

    def __init__(
        self,
        resource: Callable[[], Any],
        request: Dict[str, Any],
        adapter: Any,
        wire: _WireFormat,
        raw_stream: bool = True,
    ) -> None:
        self.resource = resource
        self.request = request
        self.adapter = adapter
        self.wire = wire
        self.raw_stream = raw_stream

    def raw_opener(self, resource: Any) -> Optional[Any]:
        """The SDK's streaming-response API for this call, or None to use its stream objects."""
        if not self.raw_stream:
            return None
        streaming = getattr(resource, "with_streaming_response", None)
        return None if streaming is None else getattr(streaming, "create", None)


def _close_stream(stream: Any) -> None:
    close = getattr(stream, "close", None)
    if close is not None:
        close()


def _openai_transport_error(error: Exception, http_response: Any) -> Optional[Exception]:
    """The openai SDK's exception for a transport failure while reading a body, as its own
    stream raises it; None for anything else."""
    import openai

    http = sys.modules.get(type(http_response).__module__.partition(".")[0])
    timeout = getattr(http, "TimeoutException", None)
    request_error = getattr(http, "RequestError", None)
    request: Any = getattr(http_response, "request", None)
    if isinstance(timeout, type) and isinstance(error, timeout):
        return openai.APITimeoutError(request=request)
    if isinstance(request_error, type) and isinstance(error, request_error):
        return openai.APIConnectionError(request=request)
    return None


_OPENAI = _WireFormat(_openai_stream_error, transport_error=_openai_transport_error)
_ANTHROPIC = _WireFormat(_anthropic_stream_error, named_events_only=True)
_LITELLM = _WireFormat(_openai_stream_error, close_stream=_close_litellm_stream)

_DONE = b"[DONE]"
_json_text = json.JSONDecoder().decode  # json.loads without its per-call checks


def _drive(call: _Call) -> Iterator[Delta]:
    # The request is sent at the first next(), and the generator that opened the HTTP stream
    # owns it: it is closed however iteration ends (exhausted, raised, or closed by the
    # consumer). A request the provider rejects raises here, before anything is yielded.
    resource = call.resource()
    opener = call.raw_opener(resource)
    if opener is not None:
        yield from _drive_raw(opener(**call.request), call.adapter, call.wire)
        return
    wire = call.wire
    adapter = call.adapter
    stream = resource.create(**call.request)
    try:
        iterator = iter(stream)
        while True:
            try:
                item = next(iterator)
            except StopIteration:
                break
            except Exception as error:
                reported = wire.stream_error(error)
                if reported is None:
                    raise
                # As the adapter reports an error event it reads itself: the error, then the
                # end of whatever was open.
                yield reported
                break
            failed = False
            for delta in adapter.feed(item):
                yield delta
                if type(delta) is ProviderError:
                    failed = True
            if failed:  # an error event the SDK yields (Responses) is the last word too
                break
        yield from adapter.close()
    finally:
        wire.close_stream(stream)


class _BodyReader:
    """What the sync and async raw drivers share: the body's bytes, read by `SSEDecoder`, as
    the adapter's deltas; `ended` once the body, `data: [DONE]` or an error event ends it."""

    __slots__ = ("_decoder", "_feed", "_named_only", "_wire", "http_response", "ended")

    def __init__(self, response: Any, adapter: Any, wire: _WireFormat) -> None:
        self.http_response = getattr(response, "http_response", response)
        self._decoder = SSEDecoder()
        self._feed = adapter.feed
        self._named_only = wire.named_events_only
        self._wire = wire
        self.ended = False

    def deltas(self, chunk: Optional[bytes]) -> List[Delta]:
        """The deltas of the events `chunk` completes (None: the body has ended)."""
        if chunk is None:
            events = self._decoder.close()
            self.ended = True
        else:
            events = self._decoder.feed(chunk)
        out: List[Delta] = []
        for name, data in events:
            if name is None and (self._named_only or data.startswith(_DONE)):
                if not self._named_only:  # `data: [DONE]`: the end, whatever follows
                    self.ended = True
                    break
                continue
            if not data:
                continue
            deltas = self._feed(_json_text(data.decode("utf-8")))
            out += deltas
            for delta in deltas:
                if type(delta) is ProviderError:
                    self.ended = True  # the provider's word on a failure is its last
                    return out
        return out

    def transport_error(self, error: Exception) -> Optional[Exception]:
        """The SDK's own exception for an error reading the body, when it has one."""
        translate = self._wire.transport_error
        return None if translate is None else translate(error, self.http_response)


def _drive_raw(manager: Any, adapter: Any, wire: _WireFormat) -> Iterator[Delta]:
    response = manager.__enter__()  # sends the request; raises the SDK's error if rejected
    body: Any = None
    try:
        reader = _BodyReader(response, adapter, wire)
        body = iter(reader.http_response.iter_bytes())
        while not reader.ended:
            try:
                chunk: Optional[bytes] = next(body)
            except StopIteration:
                chunk = None
            except Exception as error:
                translated = reader.transport_error(error)
                if translated is None:
                    raise
                raise translated from error
            yield from reader.deltas(chunk)
        yield from adapter.close()
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
        manager.__exit__(None, None, None)


async def _adrive(call: _Call) -> AsyncIterator[Delta]:
    resource = call.resource()
    opener = call.raw_opener(resource)
    if opener is not None:
        raw: Any = _adrive_raw(opener(**call.request), call.adapter, call.wire)
        try:
            async for delta in raw:
                yield delta
        finally:  # `async for` does not close what it iterates, as `yield from` does
            with anyio.CancelScope(shield=True):
                await raw.aclose()
        return
    wire = call.wire
    adapter = call.adapter
    stream = await resource.create(**call.request)
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
                reported = wire.stream_error(error)
                if reported is None:
                    raise
                yield reported
                break
            failed = False
            for delta in adapter.feed(item):
                yield delta
                if type(delta) is ProviderError:
                    failed = True
            if failed:
                break
        for delta in adapter.close():
            yield delta
    finally:
        # Shielded: a cancelled consumer must still release the connection.
        with anyio.CancelScope(shield=True):
            close = getattr(stream, "close", None) or getattr(stream, "aclose", None)
            closing = close() if close is not None else None
            if inspect.isawaitable(closing):
                await closing


async def _adrive_raw(manager: Any, adapter: Any, wire: _WireFormat) -> AsyncIterator[Delta]:
    response = await manager.__aenter__()
    body: Any = None
    try:
        reader = _BodyReader(response, adapter, wire)
        body = reader.http_response.aiter_bytes().__aiter__()
        while not reader.ended:
            try:
                chunk: Optional[bytes] = await body.__anext__()
            except StopAsyncIteration:
                chunk = None
            except Exception as error:
                translated = reader.transport_error(error)
                if translated is None:
                    raise
                raise translated from error
            for delta in reader.deltas(chunk):
                yield delta
        for delta in adapter.close():
            yield delta
    finally:
        with anyio.CancelScope(shield=True):
            aclose = getattr(body, "aclose", None)
            if aclose is not None:
                await aclose()
            await manager.__aexit__(None, None, None)


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
