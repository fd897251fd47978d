"""Recipe: a streamed run as server-sent events, ready for any web framework's streaming
response (Starlette's StreamingResponse, Flask's Response(generator), ...).

    python cookbook/sse_events.py

Every chunk and event has a JSON-ready `to_dict()`; deltas inside chunks are converted too.
"""

from __future__ import annotations

import json
from typing import Iterator

from pocketflow_stream import StreamFlow
from pocketflow_stream.llm import LLMNode, ScriptedModel, Turn


def sse(flow: StreamFlow, shared: dict) -> Iterator[str]:
    """Yield one `data: {...}` frame per chunk or event, then `event: end` with the action."""
    stream = flow.run_stream(shared, events=True)
    try:
        while True:
            item = next(stream)
            yield f"data: {json.dumps(item.to_dict())}\n\n"
    except StopIteration as stop:
        yield f"event: end\ndata: {json.dumps({'action': stop.value})}\n\n"


def main() -> list:
    model = ScriptedModel([Turn(reasoning="Short answer.", text="Hello!")], chunk_size=3)
    flow = StreamFlow(start=LLMNode(model, name="Answer"))
    frames = list(sse(flow, {"messages": [{"role": "user", "content": "hi"}]}))
    for frame in frames:
        print(frame, end="")
    return frames


if __name__ == "__main__":
    main()
