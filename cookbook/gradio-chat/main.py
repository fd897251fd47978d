"""Recipe: the smallest streaming Gradio chat app.

    pip install "pocketflow-stream[gradio]"
    python cookbook/gradio-chat/main.py          # then open http://127.0.0.1:7860

Each message builds a fresh flow and `shared` (so every browser tab has its own run); the
model's thinking shows as a collapsible step, pending while it streams and done with its
duration after, and the answer streams into the reply. Stop closes the running node.
Offline with the scripted model; pass `OpenAIChatModel("gpt-4o-mini")` (extra `openai`) to
`build_app` for a real one.
"""

from __future__ import annotations

from pocketflow_stream import StreamFlow
from pocketflow_stream.llm import LLMNode, ScriptedModel, Turn
from pocketflow_stream.ui.gradio import chat_app


def offline_reply(messages, tools):
    """The scripted model's turn: it thinks about the last message, then answers it."""
    question = messages[-1]["content"]
    return Turn(
        reasoning=f"The user wrote {len(question.split())} words. I will answer briefly.",
        text=f"(offline scripted model) You said: {question}",
    )


def build_app(model=None):
    model = model or ScriptedModel(offline_reply, chunk_size=3, delay=0.02)

    def make_flow(message, history):
        shared = {"messages": history + [{"role": "user", "content": message}]}
        return StreamFlow(start=LLMNode(model, name="Reply")), shared

    return chat_app(make_flow, title="Streaming chat")


if __name__ == "__main__":
    build_app().launch()  # 127.0.0.1 only; server_name="0.0.0.0" opens it to your network
