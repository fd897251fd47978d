"""Recipe: many things streaming at once — the tokens of several documents' summaries arrive
together, each tagged with the item it belongs to; then the same with a whole sub-flow run
once per language, concurrently.

    python cookbook/parallel-batch-streaming/main.py

An AsyncParallelBatchNode runs `exec_stream_async` once per item, concurrently: the chunks
interleave as the tokens come, each carrying its item's index (`chunk.item`), and post_async
gets the results in the items' order. An AsyncParallelBatchFlow runs its sub-flow once per
param dict, concurrently: the chunks carry that dict (`chunk.batch`). `max_concurrency=N`
would run at most N at a time. Offline with the scripted model; any model with an async
`astream(messages)` (`AsyncOpenAIChatModel`, `AsyncAnthropicModel`) fits in its place.
"""

from __future__ import annotations

import anyio

from pocketflow_stream import (
    AsyncParallelBatchFlow,
    AsyncParallelBatchNode,
    AsyncStreamFlow,
    AsyncStreamNode,
    Return,
)
from pocketflow_stream.llm import ScriptedModel, TextDelta

DOCUMENTS = {
    "minutes.txt": "Budget approved; hiring freeze lifted in March; next review in June.",
    "release.md": "Version 2.1 adds offline mode, fixes the login loop, drops Python 3.8.",
    "incident.log": "03:12 disk full on db-2; 03:40 old snapshots removed; 03:41 service back.",
}

# What the offline model answers for each prompt.
SUMMARIES = {
    "minutes.txt": "The budget passed and hiring resumes in March.",
    "release.md": "2.1 brings offline mode and a login fix.",
    "incident.log": "db-2 ran out of disk for half an hour.",
}
GREETINGS = {"French": "Bonjour tout le monde", "Quechua": "Allinllachu llapan runakuna"}


def offline_model(messages, tools):
    """The scripted model's reply: the canned answer for what the prompt names."""
    prompt = messages[-1]["content"]
    canned = {**SUMMARIES, **GREETINGS}
    return next(answer for key, answer in canned.items() if key in prompt)


class Summarise(AsyncParallelBatchNode):
    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    async def prep_async(self, shared):
        return list(shared["documents"].items())

    async def exec_stream_async(self, document):
        title, text = document
        prompt = f"Summarise {title} in one sentence:\n{text}"
        summary = ""
        async for delta in self.model.astream([{"role": "user", "content": prompt}]):
            if isinstance(delta, TextDelta):
                summary += delta.text
                yield delta.text  # reaches the consumer now, tagged with this item
        yield Return(summary)  # the result for post_async

    async def post_async(self, shared, documents, summaries):
        shared["summaries"] = {title: summary for (title, _), summary in zip(documents, summaries)}


class Greet(AsyncStreamNode):
    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    async def exec_stream_async(self, prep_res):
        prompt = f"Say hello to everyone in {self.params['language']}."  # this run's params
        greeting = ""
        async for delta in self.model.astream([{"role": "user", "content": prompt}]):
            if isinstance(delta, TextDelta):
                greeting += delta.text
                yield delta.text
        yield Return(greeting)

    async def post_async(self, shared, prep_res, greeting):
        shared.setdefault("greetings", {})[self.params["language"]] = greeting


class EachLanguage(AsyncParallelBatchFlow):
    async def prep_async(self, shared):
        return [{"language": language} for language in shared["languages"]]


async def main(delay: float = 0.02) -> dict:
    model = ScriptedModel(offline_model, chunk_size=6, delay=delay)

    shared = {"documents": DOCUMENTS}
    titles = list(DOCUMENTS)
    async with AsyncStreamFlow(start=Summarise(model)).run_stream_async(shared) as stream:
        async for chunk in stream:  # `async with`: a parallel batch runs in a task group
            print(f"[{titles[chunk.item]:<12}] {chunk.data!r}")
    for title, summary in shared["summaries"].items():
        print(f"{title}: {summary}")

    print()
    greetings = {"languages": list(GREETINGS)}
    flow = AsyncStreamFlow(start=EachLanguage(start=Greet(model)))
    async with flow.run_stream_async(greetings) as stream:
        async for chunk in stream:
            print(f"[{chunk.batch['language']:<12}] {chunk.data!r}")
    for language, greeting in greetings["greetings"].items():
        print(f"{language}: {greeting}")
    return {"summaries": shared["summaries"], "greetings": greetings["greetings"]}


if __name__ == "__main__":
    anyio.run(main)
