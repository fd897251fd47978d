"""Recipe: a BatchFlow of a streaming sub-flow — every chunk says which batch item made it.

python cookbook/batch-streams/main.py
"""

from __future__ import annotations

from pocketflow_stream import BatchFlow, StreamFlow, StreamNode


class Translate(StreamNode):
    def exec_stream(self, prep_res):
        text = f"{self.params['word']} in {self.params['language']}"
        yield from text.split()
        return text

    def post(self, shared, prep_res, text):
        shared.setdefault("done", []).append(text)


class EachLanguage(BatchFlow):
    def prep(self, shared):
        return [{"language": language} for language in shared["languages"]]


def main() -> dict:
    flow = StreamFlow(start=EachLanguage(start=Translate(), name="Languages"))
    flow.params = {"word": "hello"}
    shared = {"languages": ["French", "Quechua"]}
    by_language: dict = {}
    for chunk in flow.run_stream(shared):
        by_language.setdefault(chunk.batch["language"], []).append(chunk.data)
        print(" > ".join(chunk.path), dict(chunk.batch), chunk.data)
    return by_language


if __name__ == "__main__":
    main()
