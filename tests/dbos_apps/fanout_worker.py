"""A DBOS worker for tests/test_dbos_fanout.py: `python fanout_worker.py EXECUTOR_ID`, with
POCKETFLOW_STREAM_POSTGRES_URL, FANOUT_FOLDER and FANOUT_SCHEMA in the environment.

Its flow: one parallel batch node, `square`, fanned out; its items' chunks go to the run's
Redis stream when POCKETFLOW_STREAM_REDIS_URL is set. Each item appends a row to
FANOUT_FOLDER/rows when it starts and when it ends (one JSON line each: the test's events to
kill on and to count runs by); items 10 and up wait for FANOUT_FOLDER/go before they end."""

from __future__ import annotations

import json
import os
import sys
import threading

import anyio

from pocketflow_stream import AsyncFlow, AsyncParallelBatchNode, Return
from pocketflow_stream.scale import PostgresStore
from pocketflow_stream.scale.dbos_runs import DistributedRuns


def _row(**row: object) -> None:
    line = json.dumps({**row, "pid": os.getpid()}) + "\n"
    descriptor = os.open(
        os.path.join(os.environ["FANOUT_FOLDER"], "rows"), os.O_WRONLY | os.O_APPEND | os.O_CREAT
    )
    try:
        os.write(descriptor, line.encode())  # one write, appended whole
    finally:
        os.close(descriptor)


class Square(AsyncParallelBatchNode):
    async def prep_async(self, shared):
        return shared["items"]

    async def exec_stream_async(self, item):
        _row(event="start", item=item)
        yield f"squaring {item}"  # a chunk, to the run's Redis stream when there is one
        go = os.path.join(os.environ["FANOUT_FOLDER"], "go")
        while item >= 10 and not os.path.exists(go):
            await anyio.sleep(0.02)
        _row(event="end", item=item)
        yield Return(item * item)

    async def post_async(self, shared, prep_res, results):
        shared["results"].append(results)


def make_runs(executor_id: str, schema: str) -> DistributedRuns:
    url = os.environ["POCKETFLOW_STREAM_POSTGRES_URL"]
    return DistributedRuns(
        AsyncFlow(start=Square(name="square")),
        PostgresStore(url, schema=schema),
        url,
        events=os.environ.get("POCKETFLOW_STREAM_REDIS_URL"),
        system_schema=f"{schema}_dbos",
        executor_id=executor_id,
        name=schema,
        queue=schema,
        items_queue=f"{schema}_items",
        app_version=schema,  # a version belongs to one app of a system database
        fan_out=True,
        item_concurrency=2,
        polling_interval=0.05,
        ttl=1.0,
    )


if __name__ == "__main__":
    runs = make_runs(sys.argv[1], os.environ["FANOUT_SCHEMA"])
    runs.launch()
    print("launched", flush=True)
    threading.Event().wait()
