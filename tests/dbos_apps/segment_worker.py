"""A DBOS worker for tests/test_dbos_runs.py: `python segment_worker.py FOLDER EXECUTOR_ID`.

Its flow: `first` counts, `slow` writes FOLDER/started-<n> when it begins (the test's event
to kill on) and waits for FOLDER/go before it finishes, `last` counts."""

from __future__ import annotations

import os
import sys
import threading
import time

from pocketflow_stream import Flow, Node
from pocketflow_stream.persist import SQLiteStore
from pocketflow_stream.scale.dbos_runs import DistributedRuns


class Count(Node):
    def post(self, shared, prep_res, exec_res):
        shared["log"].append(self.params.get("label", "count"))


class Slow(Node):
    def exec(self, prep_res):
        folder = os.environ["SEGMENT_FOLDER"]
        n = len([name for name in os.listdir(folder) if name.startswith("started-")])
        with open(os.path.join(folder, f"started-{n}"), "w") as marker:
            marker.write(str(os.getpid()))
        while not os.path.exists(os.path.join(folder, "go")):
            time.sleep(0.02)
        return n

    def post(self, shared, prep_res, attempt):
        shared["log"].append(f"slow after {attempt} starts")


def make_runs(folder: str, executor_id: str) -> DistributedRuns:
    first, slow, last = Count(name="first"), Slow(name="slow"), Count(name="last")
    first >> slow >> last
    return DistributedRuns(
        Flow(start=first),
        SQLiteStore(os.path.join(folder, "runs.db")),
        f"sqlite:///{os.path.join(folder, 'dbos.sqlite')}",
        executor_id=executor_id,
        polling_interval=0.05,
        ttl=1.0,
    )


if __name__ == "__main__":
    os.environ["SEGMENT_FOLDER"] = sys.argv[1]
    runs = make_runs(sys.argv[1], sys.argv[2])
    runs.launch()
    print("launched", flush=True)
    threading.Event().wait()
