"""Recipe: summarise several documents at once — the tokens of all three stream in together,
each tagged with the document it belongs to.

    python cookbook/async_parallel.py

An AsyncParallelBatchNode runs `exec_stream_async` once per document, concurrently; the chunks
interleave as the tokens come, each carrying its item's index (`chunk.item`), and post_async gets
the results in the documents' order. Offline with the scripted model; any model with an async
`astream(messages)` (`AsyncOpenAIChatModel`, `AsyncAnthropicModel`) fits in its place.
"""

from __future__ import annotations

import anyio

from pocketflow_stream import AsyncParallelBatchNode, AsyncStreamFlow, Return
from pocketflow_stream.llm import ScriptedModel, TextDelta

DOCUMENTS = {
    "minutes.txt": "Budget approved; hiring freeze lifted in March; next review in June.",
    "release.md": "Version 2.1 adds offline mode, fixes the login loop, drops Python 3.8.",
    "incident.log": "03:12 disk full on db-2; 03:40 old snapshots removed; 03:41 service back.",
}

# What the offline model answers for each document.
SUMMARIES = {
    "minutes.txt": "The budget passed and hiring resumes in March.",
    "release.md": "2.1 brings offline mode and a login fix.",
    "incident.log": "db-2 ran out of disk for half an hour.",
}


def offline_model(messages, tools):
    """The scripted model's reply: the summary of the document named in the prompt."""
    prompt = messages[-1]["content"]
    return next(summary for title, summary in SUMMARIES.items() if title in prompt)


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


async def main(delay: float = 0.02) -> dict:
    model = ScriptedModel(offline_model, chunk_size=6, delay=delay)
    shared = {"documents": DOCUMENTS}
    titles = list(DOCUMENTS)
    flow = AsyncStreamFlow(start=Summarise(model))
    async with flow.run_stream_async(shared) as stream:
        async for chunk in stream:
            print(f"[{titles[chunk.item]:<12}] {chunk.data!r}")
    print()
    for title, summary in shared["summaries"].items():
        print(f"{title}: {summary}")
    return shared["summaries"]


if __name__ == "__main__":
    anyio.run(main)
