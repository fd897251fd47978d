"""Recipe: stream a model's answer to the terminal; press Enter to stop it mid-sentence.

    python cookbook/llm-streaming/main.py

Enter is read in another thread, which sets a `StopSignal`; the run checks it before each
chunk and closes the running node there: its `finally` runs, the model's HTTP stream is dropped
and `post` never runs. (Breaking out of the `for` loop does the same from the loop itself.)
Offline with the scripted model; pass `OpenAIChatModel("gpt-4o-mini")` (extra `openai`) or
`AnthropicModel("claude-sonnet-4-6")` (extra `anthropic`) to `main` for a real one.
"""

from __future__ import annotations

import sys
import threading

from pocketflow_stream import StopSignal, StreamFlow
from pocketflow_stream.llm import LLMNode, ScriptedModel, TextDelta

QUESTION = "Why do LLM apps stream their answers?"
ANSWER = (
    "Because people read faster than models write. A reply of four hundred tokens can take "
    "ten seconds to generate, and a blank screen for ten seconds feels broken, while text "
    "that appears word by word feels alive. Streaming also lets the reader stop an answer "
    "that went the wrong way, which saves tokens, money and patience. And tool calls can be "
    "shown while their arguments are still arriving, so an agent's work is visible as it "
    "happens rather than all at once at the end."
)


class Answer(LLMNode):
    def exec_stream(self, messages):
        try:
            reply = yield from super().exec_stream(messages)
        finally:  # runs when the answer ends and when the run is stopped
            print("\n[stream closed]", flush=True)
        return reply

    def post(self, shared, messages, reply):
        shared["answer"] = reply.content


def stop_on_enter(stop: StopSignal) -> None:
    """Asks the run to stop when a line arrives on stdin (Enter); end of input stops nothing."""
    if sys.stdin.readline().endswith("\n"):
        stop.set()


def main(model=None) -> str:
    """Streams the answer until it ends or Enter is pressed; returns the text shown."""
    model = model or ScriptedModel([ANSWER], chunk_size=3, delay=0.03)
    stop = StopSignal()
    threading.Thread(target=stop_on_enter, args=(stop,), daemon=True).start()
    print(f"{QUESTION}  (press Enter to stop)", flush=True)

    shared = {"messages": [{"role": "user", "content": QUESTION}]}
    shown = ""
    for chunk in StreamFlow(start=Answer(model)).run_stream(shared, stop=stop):
        if isinstance(chunk.data, TextDelta):
            shown += chunk.data.text
            print(chunk.data.text, end="", flush=True)
    if "answer" not in shared:  # post never ran: the run was stopped
        print("[stopped]", flush=True)
    return shown


if __name__ == "__main__":
    main()
