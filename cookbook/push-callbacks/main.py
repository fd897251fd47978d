"""Recipe: push-style consumption — a callback per chunk, only from the nodes you care about.

    python cookbook/push-callbacks/main.py

`flow.run(shared, on_chunk=...)` calls back live and returns the final action. `nodes=` keeps
the chunks of the named nodes (or of every node inside the named sub-flows).
"""

from __future__ import annotations

from pocketflow_stream import Flow, StreamNode


class Draft(StreamNode):
    def exec_stream(self, prep_res):
        yield from ["a", "rough", "draft"]
        return "a rough draft"

    def post(self, shared, prep_res, text):
        shared["draft"] = text


class Polish(StreamNode):
    def prep(self, shared):
        return shared["draft"]

    def exec_stream(self, draft):
        yield from draft.replace("rough", "polished").split()
        return draft.replace("rough", "polished")

    def post(self, shared, prep_res, text):
        shared["final"] = text


def main() -> list:
    draft, polish = Draft(), Polish()
    draft >> polish
    received = []
    shared: dict = {}
    Flow(start=draft).run(
        shared, on_chunk=lambda chunk: received.append(chunk.data), nodes=["Polish"]
    )
    print(" ".join(received))
    return received


if __name__ == "__main__":
    main()
