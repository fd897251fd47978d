"""Recipe: flows inside flows — every chunk carries the path of flows it came through, a
sub-flow's last action picks what the outer flow does next, and `nodes=` keeps the chunks of
one sub-flow.

    python cookbook/nested-flows/main.py

    Writer
    ├── Research (a Flow):  Outline -> Draft     Draft's action "review" ends Research ...
    └── Review                                   ... and picks Review in Writer
"""

from __future__ import annotations

from pocketflow_stream import Flow, StreamFlow, StreamNode


class Outline(StreamNode):
    def prep(self, shared):
        return shared["topic"]

    def exec_stream(self, topic):
        points = [f"what {topic} is", f"why {topic} matters"]
        yield from points
        return points

    def post(self, shared, topic, points):
        shared["outline"] = points


class Draft(StreamNode):
    def prep(self, shared):
        return shared["outline"]

    def exec_stream(self, points):
        sentences = [f"This part covers {point}." for point in points]
        yield from sentences
        return " ".join(sentences)

    def post(self, shared, points, text):
        shared["draft"] = text
        return "review"  # the last action inside Research becomes Research's own action


class Review(StreamNode):
    def prep(self, shared):
        return shared["draft"]

    def exec_stream(self, draft):
        verdict = f"Looks good ({len(draft.split())} words)."
        yield verdict
        return verdict

    def post(self, shared, draft, verdict):
        shared["verdict"] = verdict


def build() -> StreamFlow:
    outline = Outline()
    outline >> Draft()
    research = Flow(start=outline, name="Research")
    research - "review" >> Review()
    return StreamFlow(start=research, name="Writer")


def main() -> dict:
    flow = build()
    shared = {"topic": "streaming"}
    everything = []
    for chunk in flow.run_stream(shared):
        everything.append((chunk.path, chunk.data))
        print(f"{' > '.join(chunk.path):<20} {chunk.data}")

    print("\nonly what Research streams:")
    research_only = []
    for chunk in flow.run_stream({"topic": "nesting"}, nodes=["Research"]):
        research_only.append((chunk.path, chunk.data))
        print(f"{' > '.join(chunk.path):<20} {chunk.data}")
    return {"chunks": everything, "research_only": research_only, "verdict": shared["verdict"]}


if __name__ == "__main__":
    main()
