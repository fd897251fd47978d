"""LLM layer benchmarks: every figure is a ratio against a baseline measured in this run.

    python bench/bench_llm.py            # needs the openai and anthropic SDKs (the test extra)
    python bench/bench_llm.py --quick    # a smaller run

1. Adapter cost per chunk, `OpenAIChatAdapter.feed`, against hand-written code reading the
   same fields from the same chunks and making the same deltas; on the SDK's chunk objects
   and on decoded dicts. Target <= 2x both.
2. The whole streamed path (model client -> deltas -> LLMNode -> run_stream) against the bare
   SDK iterating its own stream of the same bytes from the loopback ReplayServer, for the
   OpenAI Chat Completions, Responses and Anthropic Messages clients, sync and async: 2,000
   text deltas, and one tool call whose 20 KB of arguments come in 4,132 fragments.
   Target <= 0.6x.
3. ScriptedModel: time to the first delta of a 100-character turn and of a 1,000,000-character
   turn (lazy streaming: the ratio stays near 1), and `calls` kept by a model reused 10,000
   times.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # measure this checkout

import anyio  # noqa: E402

try:
    import anthropic  # noqa: E402
    import openai  # noqa: E402
except ImportError:  # pragma: no cover - the SDKs are missing
    sys.exit("bench_llm needs the openai and anthropic SDKs: pip install -e .[test]")

from pocketflow_stream import AsyncStreamFlow, StreamFlow  # noqa: E402
from pocketflow_stream.llm import AsyncLLMNode, LLMNode  # noqa: E402
from pocketflow_stream.llm.anthropic_messages import AnthropicAdapter  # noqa: E402
from pocketflow_stream.llm.deltas import TextDelta, ToolCallDelta  # noqa: E402
from pocketflow_stream.llm.models import (  # noqa: E402
    AnthropicModel,
    AsyncAnthropicModel,
    AsyncOpenAIChatModel,
    AsyncOpenAIResponsesModel,
    OpenAIChatModel,
    OpenAIResponsesModel,
)
from pocketflow_stream.llm.openai_chat import OpenAIChatAdapter  # noqa: E402
from pocketflow_stream.llm.openai_responses import OpenAIResponsesAdapter  # noqa: E402
from pocketflow_stream.llm.replay_server import (  # noqa: E402
    ReplayServer,
    event_replay,
    openai_chat_replay,
)
from pocketflow_stream.llm.scripted import ScriptedModel  # noqa: E402

os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
HELLO = [{"role": "user", "content": "Hello"}]


def best_of(repeats: int, measure: Callable[[], float]) -> float:
    return min(measure() for _ in range(repeats))


# CPU time of this process (the loopback server's thread included): on a machine shared with
# other work, wall-clock time mostly measures the neighbours.
clock = time.process_time


def timed(run: Callable[[], Any]) -> float:
    gc.collect()
    start = clock()
    run()
    return clock() - start


def interleaved(repeats: int, *measures: Callable[[], float]) -> List[float]:
    """The best of `repeats` rounds of each measure, the measures taking turns in each round,
    so a slow spell of the machine hits them alike."""
    best = [float("inf")] * len(measures)
    for _ in range(repeats):
        for position, measure in enumerate(measures):
            best[position] = min(best[position], measure())
    return best


# --- the streams measured ------------------------------------------------------------------


def words(count: int) -> List[str]:
    return [f"w{n % 97} " for n in range(count)]


def tool_arguments() -> str:
    rows = [{"id": n, "name": f"item {n}", "done": n % 3 == 0} for n in range(480)]
    return json.dumps({"rows": rows})[:20_000].rsplit(",", 1)[0] + "]}"


def fragments(text: str, count: int) -> List[str]:
    """`text` cut into `count` pieces of (nearly) equal length."""
    cuts = [len(text) * n // count for n in range(count + 1)]
    return [text[start:end] for start, end in zip(cuts, cuts[1:]) if end > start]


def chat_chunk(delta: Dict[str, Any], finish_reason: Any = None) -> Dict[str, Any]:
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1727000000,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_bench",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }


def chat_text_chunks(count: int) -> List[Dict[str, Any]]:
    chunks = [chat_chunk({"role": "assistant", "content": "", "refusal": None})]
    chunks += [chat_chunk({"content": word}) for word in words(count)]
    return chunks + [chat_chunk({}, "stop")]


def chat_tool_chunks(count: int) -> List[Dict[str, Any]]:
    head = {"index": 0, "id": "call_b1", "type": "function"}
    chunks = [
        chat_chunk(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{**head, "function": {"name": "save", "arguments": ""}}],
            }
        )
    ]
    for piece in fragments(tool_arguments(), count):
        chunks.append(chat_chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
    return chunks + [chat_chunk({}, "tool_calls")]


def responses_events(pieces: List[str], tool: bool) -> List[Dict[str, Any]]:
    response = {"id": "resp_b", "object": "response", "created_at": 1, "model": "gpt-5-mini",
                "status": "in_progress", "output": []}  # fmt: skip
    events: List[Dict[str, Any]] = [{"type": "response.created", "response": response}]
    if tool:
        item = {"id": "fc_1", "type": "function_call", "status": "in_progress",
                "call_id": "call_b1", "name": "save", "arguments": ""}  # fmt: skip
        where = {"item_id": "fc_1", "output_index": 0}
        events.append({"type": "response.output_item.added", "output_index": 0, "item": item})
        events += [
            {"type": "response.function_call_arguments.delta", **where, "delta": piece}
            for piece in pieces
        ]
    else:
        item = {"id": "msg_1", "type": "message", "role": "assistant",
                "status": "in_progress", "content": []}  # fmt: skip
        where = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
        events.append({"type": "response.output_item.added", "output_index": 0, "item": item})
        events += [
            {"type": "response.output_text.delta", **where, "delta": piece, "logprobs": []}
            for piece in pieces
        ]
    done = {**response, "status": "completed"}
    events.append({"type": "response.completed", "response": done})
    return [{**event, "sequence_number": n} for n, event in enumerate(events)]


def anthropic_events(pieces: List[str], tool: bool) -> List[Dict[str, Any]]:
    message = {"id": "msg_b", "type": "message", "role": "assistant", "model": "claude",
               "content": [], "stop_reason": None, "stop_sequence": None,
               "usage": {"input_tokens": 5, "output_tokens": 1}}  # fmt: skip
    if tool:
        start = {"type": "tool_use", "id": "toolu_b", "name": "save", "input": {}}
        deltas = [{"type": "input_json_delta", "partial_json": piece} for piece in pieces]
    else:
        start = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": piece} for piece in pieces]
    return [
        {"type": "message_start", "message": message},
        {"type": "content_block_start", "index": 0, "content_block": start},
        *({"type": "content_block_delta", "index": 0, "delta": delta} for delta in deltas),
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
         "usage": {"output_tokens": 9}},
        {"type": "message_stop"},
    ]  # fmt: skip


# --- 1. adapter cost per chunk -------------------------------------------------------------


def hand_written_objects(chunks: List[Any]) -> List[Any]:
    """What a careful hand-written reader of the SDK's chunk objects does: the same fields the
    adapter reads (declared ones as attributes, undeclared ones from `model_extra`), the same
    deltas made."""
    out: List[Any] = []
    for chunk in chunks:
        extra = chunk.model_extra
        if extra and extra.get("error") is not None:
            raise AssertionError("no error in the benchmark")
        for choice in chunk.choices:
            if choice.index != 0:
                continue
            delta = choice.delta
            delta_extra = delta.model_extra or {}
            reasoning = delta_extra.get("reasoning_content") or delta_extra.get("reasoning")
            if reasoning:
                out.append(reasoning)
            if delta.content:
                out.append(TextDelta(delta.content))
            if delta.refusal:
                out.append(delta.refusal)
            for fragment in delta.tool_calls or ():
                function = fragment.function
                _ = (fragment.index, fragment.id, function.name)
                if function.arguments:
                    out.append(ToolCallDelta(0, function.arguments))
            _ = delta.function_call
            _ = (choice.finish_reason, (choice.model_extra or {}).get("usage"))
        _ = chunk.usage
    return out


def hand_written_dicts(chunks: List[Dict[str, Any]]) -> List[Any]:
    """The same reader for decoded dicts."""
    out: List[Any] = []
    for chunk in chunks:
        if chunk.get("error") is not None:
            raise AssertionError("no error in the benchmark")
        for choice in chunk.get("choices") or ():
            if (choice.get("index") or 0) != 0:
                continue
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if reasoning:
                out.append(reasoning)
            content = delta.get("content")
            if content:
                out.append(TextDelta(content))
            if delta.get("refusal"):
                out.append(delta["refusal"])
            for fragment in delta.get("tool_calls") or ():
                function = fragment.get("function") or {}
                _ = (fragment.get("index"), fragment.get("id"), function.get("name"))
                arguments = function.get("arguments")
                if arguments:
                    out.append(ToolCallDelta(0, arguments))
            _ = delta.get("function_call")
            _ = (choice.get("finish_reason"), choice.get("usage"))
        _ = chunk.get("usage")
    return out


def sdk_chunks(server: ReplayServer, chunks: List[Dict[str, Any]]) -> List[Any]:
    """The SDK's own chunk objects for `chunks`, as its stream builds them."""
    server.enqueue(openai_chat_replay(chunks))
    client = openai.OpenAI(base_url=server.openai_base_url, api_key="bench", max_retries=0)
    with client:
        return list(client.chat.completions.create(model="m", messages=HELLO, stream=True))


def per_chunk(count: int, repeats: int, *runs: Callable[[], Any]) -> List[float]:
    """Each run's best time per chunk, the runs taking turns."""
    best = interleaved(repeats, *(lambda run=run: timed(run) for run in runs))
    return [elapsed / count for elapsed in best]


def bench_adapter(server: ReplayServer, count: int, repeats: int) -> List[List[str]]:
    rows = []
    for label, dicts in (
        ("text deltas", chat_text_chunks(count)),
        ("tool-call fragments", chat_tool_chunks(count * 2)),
    ):
        objects = sdk_chunks(server, dicts)

        def adapter_run(chunks: List[Any]) -> Callable[[], Any]:
            def run() -> None:
                adapter = OpenAIChatAdapter()
                feed = adapter.feed
                for chunk in chunks:
                    feed(chunk)
                adapter.close()

            return run

        for kind, chunks, hand in (
            ("SDK objects", objects, hand_written_objects),
            ("decoded dicts", dicts, hand_written_dicts),
        ):
            ours, baseline = per_chunk(
                len(chunks), repeats, adapter_run(chunks), lambda c=chunks, h=hand: h(c)
            )
            rows.append(
                [
                    f"`OpenAIChatAdapter.feed` per chunk, {len(chunks):,} {label}, {kind}"
                    " / hand-written reading of the same fields",
                    f"{ours / baseline:.2f}x ({ours * 1e6:.2f} µs vs {baseline * 1e6:.2f} µs)",
                    "<= 2x",
                ]
            )
    return rows


def hand_written_events(events: List[Any], read: Callable[[Any, str], Any]) -> List[Any]:
    """A careful hand-written reader of Anthropic / Responses delta events: the fields the
    adapters read for them (`read` is attribute or key access), the same deltas made."""
    out: List[Any] = []
    for event in events:
        kind = read(event, "type")
        if kind == "content_block_delta":
            _ = read(event, "index")
            delta = read(event, "delta")
            delta_kind = read(delta, "type")
            if delta_kind == "text_delta":
                out.append(TextDelta(read(delta, "text")))
            elif delta_kind == "input_json_delta":
                out.append(ToolCallDelta(0, read(delta, "partial_json")))
        elif kind == "response.output_text.delta":
            _ = (read(event, "item_id"), read(event, "output_index"))
            _ = read(event, "content_index")
            out.append(TextDelta(read(event, "delta")))
        elif kind == "response.function_call_arguments.delta":
            _ = (read(event, "item_id"), read(event, "output_index"))
            out.append(ToolCallDelta(0, read(event, "delta")))
    return out


def sdk_events(server: ReplayServer, anthropic_api: bool, events: List[Any]) -> List[Any]:
    """The SDK's own event objects for `events`, as its stream builds them."""
    server.enqueue(event_replay(events))
    if anthropic_api:
        with anthropic.Anthropic(base_url=server.base_url, api_key="b", max_retries=0) as client:
            return list(
                client.messages.create(model="m", max_tokens=9, messages=HELLO, stream=True)
            )
    with openai.OpenAI(base_url=server.openai_base_url, api_key="b", max_retries=0) as client:
        return list(client.responses.create(model="m", input=HELLO, stream=True))


def bench_event_adapters(server: ReplayServer, count: int, repeats: int) -> List[List[str]]:
    rows = []
    by_attribute = getattr

    def by_key(source: Any, name: str) -> Any:
        return source.get(name)

    for name, make, anthropic_api, adapter_class in (
        ("AnthropicAdapter", anthropic_events, True, AnthropicAdapter),
        ("OpenAIResponsesAdapter", responses_events, False, OpenAIResponsesAdapter),
    ):
        for label, dicts in (
            ("text deltas", make(words(count), tool=False)),
            ("argument fragments", make(fragments(tool_arguments(), count * 2), tool=True)),
        ):
            objects = sdk_events(server, anthropic_api, dicts)
            for kind, events, read in (
                ("SDK objects", objects, by_attribute),
                ("decoded dicts", dicts, by_key),
            ):

                def ours(events: List[Any] = events, adapter_class: Any = adapter_class) -> None:
                    adapter = adapter_class()
                    feed = adapter.feed
                    for event in events:
                        feed(event)
                    adapter.close()

                mine, baseline = per_chunk(
                    len(events),
                    repeats,
                    ours,
                    lambda events=events, read=read: hand_written_events(events, read),
                )
                rows.append(
                    [
                        f"`{name}.feed` per event, {len(events):,} events of {label}, {kind}"
                        " / hand-written reading of the same fields",
                        f"{mine / baseline:.2f}x ({mine * 1e6:.2f} µs vs {baseline * 1e6:.2f} µs)",
                        "<= 2x",
                    ]
                )
    return rows


# --- 2. the whole streamed path against the bare SDK ----------------------------------------


class Provider:
    """One SDK API: how to queue its replay, how the bare SDK streams it, and our models."""

    def __init__(self, name: str, server: ReplayServer, count: int) -> None:
        self.name = name
        self.server = server
        pieces = words(count)
        tool_pieces = fragments(tool_arguments(), count * 2 + count // 15 - 1)  # 4,132
        if name == "OpenAI Chat Completions":
            self.replays = {
                "text": openai_chat_replay(chat_text_chunks(count)),
                "tool": openai_chat_replay(chat_tool_chunks(len(tool_pieces))),
            }
        elif name == "OpenAI Responses":
            self.replays = {
                "text": event_replay(responses_events(pieces, tool=False)),
                "tool": event_replay(responses_events(tool_pieces, tool=True)),
            }
        else:
            self.replays = {
                "text": event_replay(anthropic_events(pieces, tool=False)),
                "tool": event_replay(anthropic_events(tool_pieces, tool=True)),
            }
        self.sizes = {"text": count, "tool": len(tool_pieces)}

    def clients(self) -> Any:
        if self.name == "Anthropic Messages":
            options = {"base_url": self.server.base_url, "api_key": "bench", "max_retries": 0}
            return anthropic.Anthropic(**options), anthropic.AsyncAnthropic(**options)
        options = {"base_url": self.server.openai_base_url, "api_key": "bench", "max_retries": 0}
        return openai.OpenAI(**options), openai.AsyncOpenAI(**options)

    def bare(self, client: Any) -> Any:
        if self.name == "OpenAI Chat Completions":
            return client.chat.completions.create(model="m", messages=HELLO, stream=True)
        if self.name == "OpenAI Responses":
            return client.responses.create(model="m", input=HELLO, stream=True)
        return client.messages.create(model="m", max_tokens=10, messages=HELLO, stream=True)

    def model(self, client: Any, asynchronous: bool) -> Any:
        if self.name == "OpenAI Chat Completions":
            kind: Any = AsyncOpenAIChatModel if asynchronous else OpenAIChatModel
        elif self.name == "OpenAI Responses":
            kind = AsyncOpenAIResponsesModel if asynchronous else OpenAIResponsesModel
        else:
            kind = AsyncAnthropicModel if asynchronous else AnthropicModel
        return kind("m", client=client)


def sync_pair(provider: Provider, shape: str, repeats: int, raw_stream: bool = True) -> List[float]:
    client, _ = provider.clients()
    model = provider.model(client, asynchronous=False)
    model.raw_stream = raw_stream
    flow = StreamFlow(start=LLMNode(model))

    def bare() -> None:
        provider.server.enqueue(provider.replays[shape])
        for _ in provider.bare(client):
            pass

    def ours() -> None:
        provider.server.enqueue(provider.replays[shape])
        for _ in flow.run_stream({"messages": list(HELLO)}):
            pass

    with client:
        bare(), ours()  # warm up: connections, imports, caches
        return interleaved(repeats, lambda: timed(bare), lambda: timed(ours))


def async_pair(provider: Provider, shape: str, repeats: int) -> List[float]:
    async def main() -> List[float]:
        _, client = provider.clients()
        flow = AsyncStreamFlow(start=AsyncLLMNode(provider.model(client, asynchronous=True)))

        async def bare() -> float:
            provider.server.enqueue(provider.replays[shape])
            gc.collect()
            start = clock()
            async for _ in await provider.bare(client):
                pass
            return clock() - start

        async def ours() -> float:
            provider.server.enqueue(provider.replays[shape])
            gc.collect()
            start = clock()
            async with flow.run_stream_async({"messages": list(HELLO)}) as stream:
                async for _ in stream:
                    pass
            return clock() - start

        async with client:
            await bare(), await ours()
            bare_times, our_times = [], []
            for _ in range(repeats):  # taking turns, as `interleaved`
                bare_times.append(await bare())
                our_times.append(await ours())
        return [min(bare_times), min(our_times)]

    return anyio.run(main)  # type: ignore[no-any-return]


def bench_path(server: ReplayServer, count: int, repeats: int) -> List[List[str]]:
    rows = []
    for name in ("OpenAI Chat Completions", "OpenAI Responses", "Anthropic Messages"):
        provider = Provider(name, server, count)
        for shape, label in (("text", "text deltas"), ("tool", "tool-call fragments")):
            for mode, pair in (("sync", sync_pair), ("async", async_pair)):
                bare, ours = pair(provider, shape, repeats)
                size = provider.sizes[shape]
                rows.append(
                    [
                        f"{name}, {mode}, {size:,} {label}: our model -> LLMNode -> run_stream"
                        " / the bare SDK iterating its stream",
                        f"{ours / bare:.2f}x ({ours / size * 1e6:.1f} µs vs"
                        f" {bare / size * 1e6:.1f} µs per delta)",
                        "<= 0.6x",
                    ]
                )
            bare, ours = sync_pair(provider, shape, repeats, raw_stream=False)
            rows.append(
                [
                    "the same, sync, with `raw_stream=False` (the adapter reads the SDK's"
                    " own stream objects)",
                    f"{ours / bare:.2f}x",
                    "—",
                ]
            )
    return rows


# --- 3. ScriptedModel ----------------------------------------------------------------------


def first_delta(model_text: str, repeats: int) -> List[float]:
    """Time to the first delta from `stream()`, and to the first chunk of an LLMNode's
    run_stream, for a one-turn script of `model_text`."""

    def to_delta() -> float:
        model = ScriptedModel([model_text])
        start = time.perf_counter()
        next(iter(model.stream(HELLO)))
        return time.perf_counter() - start

    def to_chunk() -> float:
        flow = StreamFlow(start=LLMNode(ScriptedModel([model_text])))
        start = time.perf_counter()
        stream = flow.run_stream({"messages": list(HELLO)})
        next(stream)
        elapsed = time.perf_counter() - start
        stream.close()
        return elapsed

    return [best_of(repeats, to_delta), best_of(repeats, to_chunk)]


def bench_scripted(repeats: int) -> List[List[str]]:
    small = first_delta("x" * 100, repeats * 5)
    large = first_delta("x" * 1_000_000, repeats)
    model = ScriptedModel(lambda messages, tools: "ok")
    for _ in range(10_000):
        for _ in model.stream(HELLO):
            pass
    return [
        [
            "ScriptedModel, time to the first delta: a 1,000,000-character turn / a 100-character"
            " turn",
            f"{large[0] / small[0]:.2f}x ({large[0] * 1e6:.1f} µs vs {small[0] * 1e6:.1f} µs)",
            "independent of turn size",
        ],
        [
            "the same, to the first chunk of `LLMNode` -> `run_stream`",
            f"{large[1] / small[1]:.2f}x ({large[1] * 1e6:.1f} µs vs {small[1] * 1e6:.1f} µs)",
            "—",
        ],
        [
            "`calls` kept by one ScriptedModel after 10,000 calls (default `record_calls=100`)",
            f"{len(model.calls):,} (call_count {model.call_count:,})",
            "bounded",
        ],
    ]


def print_table(title: str, rows: List[List[str]]) -> None:
    print(f"\n{title}\n")
    print("| figure | measured | target |")
    print("| --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller, faster run")
    arguments = parser.parse_args()
    count = 500 if arguments.quick else 2_000
    repeats = 3 if arguments.quick else 7
    with ReplayServer(timeout=30) as server:
        print_table(
            "1. adapters",
            bench_adapter(server, count, repeats) + bench_event_adapters(server, count, repeats),
        )
        print_table("2. the whole streamed path", bench_path(server, count, repeats))
    print_table("3. ScriptedModel", bench_scripted(repeats))


if __name__ == "__main__":
    main()
