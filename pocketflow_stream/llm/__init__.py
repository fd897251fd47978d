"""pocketflow_stream.llm — provider-neutral LLM streaming, built on the core (the core never
imports it).

- deltas: the unified vocabulary every adapter produces (text, reasoning, tool calls, ...).
- openai_chat, openai_responses, anthropic_messages, litellm_chunks, think_tags: adapters
  from each provider's stream to deltas.
- accumulator: deltas folded into the final AssistantMessage, rendered back for any provider.
- partial_json: tool-call arguments parsed while they arrive.
- models, scripted: model clients (OpenAI, Anthropic, LiteLLM) and the offline ScriptedModel.
- node: LLMNode, a StreamNode that calls a model; AsyncLLMNode, its async twin.
- replay_server: a loopback server replaying recorded provider streams, for offline tests.
"""

from .accumulator import Accumulator, AssistantMessage, ReasoningBlock, ToolCall, accumulate
from .anthropic_messages import AnthropicAdapter, anthropic_deltas
from .deltas import (
    FINISH_REASONS,
    Delta,
    Finish,
    ProviderError,
    ReasoningDelta,
    RedactedReasoning,
    RefusalDelta,
    SignatureDelta,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
    delta_from_dict,
)
from .litellm_chunks import LiteLLMAdapter, litellm_deltas
from .models import (
    AnthropicModel,
    AsyncAnthropicModel,
    AsyncChatModel,
    AsyncOpenAIChatModel,
    AsyncOpenAIResponsesModel,
    ChatModel,
    LiteLLMModel,
    OpenAIChatModel,
    OpenAIResponsesModel,
    default_model,
)
from .node import AsyncLLMNode, LLMNode, ModelError
from .openai_chat import OpenAIChatAdapter, openai_chat_deltas
from .openai_responses import OpenAIResponsesAdapter, openai_responses_deltas
from .partial_json import PartialJSON, PartialJSONError, StringWatch, heal_json
from .scripted import ScriptedModel, ScriptExhausted, ToolCallSpec, Turn
from .think_tags import ThinkTagSplitter

__all__ = [
    # deltas
    "FINISH_REASONS",
    "Delta",
    "Finish",
    "ProviderError",
    "ReasoningDelta",
    "RedactedReasoning",
    "RefusalDelta",
    "SignatureDelta",
    "TextDelta",
    "ToolCallDelta",
    "ToolCallEnd",
    "ToolCallStart",
    "Usage",
    "delta_from_dict",
    # adapters
    "OpenAIChatAdapter",
    "openai_chat_deltas",
    "OpenAIResponsesAdapter",
    "openai_responses_deltas",
    "AnthropicAdapter",
    "anthropic_deltas",
    "LiteLLMAdapter",
    "litellm_deltas",
    "ThinkTagSplitter",
    # accumulator and partial JSON
    "Accumulator",
    "AssistantMessage",
    "ReasoningBlock",
    "ToolCall",
    "accumulate",
    "PartialJSON",
    "PartialJSONError",
    "StringWatch",
    "heal_json",
    # models and nodes
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
    "ScriptedModel",
    "ScriptExhausted",
    "ToolCallSpec",
    "Turn",
    "LLMNode",
    "AsyncLLMNode",
    "ModelError",
]
