"""cookbook/research-service: the one command (two web workers, two run workers) on real
Postgres and Redis, driven over HTTP with httpx: a whole run through SSE, per-run tokens,
interrupt ids checked, answers idempotent, Last-Event-ID resume across web workers."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

POSTGRES = os.environ.get("POCKETFLOW_STREAM_POSTGRES_URL", "")
REDIS = os.environ.get("POCKETFLOW_STREAM_REDIS_URL", "")
MAIN = Path(__file__).resolve().parent.parent / "cookbook" / "research-service" / "main.py"
ASKING = "Ask me first, then: what is 6 x 7?"

pytestmark = [
    pytest.mark.skipif(not POSTGRES, reason="POCKETFLOW_STREAM_POSTGRES_URL is not set"),
    pytest.mark.skipif(not REDIS, reason="POCKETFLOW_STREAM_REDIS_URL is not set"),
]

httpx = pytest.importorskip("httpx")
Event = Tuple[str, str, Dict[str, Any]]  # (entry id, event type, data)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def serving(model_delay: str) -> Iterator[List[str]]:
    """The recipe's one command (two web workers, two run workers), until the block ends."""
    ports = [free_port(), free_port()]
    env = {**os.environ, "RESEARCH_SERVICE_MODEL_DELAY": model_delay}
    process = subprocess.Popen(
        [sys.executable, str(MAIN), "serve", "--ports", ",".join(map(str, ports))],
        env=env,
        start_new_session=True,
    )
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        deadline = time.monotonic() + 120
        for base in bases:
            while True:
                assert process.poll() is None, "the service exited while starting"
                try:
                    if httpx.get(base + "/ready", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, f"{base} not ready after 120 s"
                time.sleep(0.1)
        yield bases
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        except ProcessLookupError:
            pass


@pytest.fixture(scope="module")
def service() -> Iterator[List[str]]:
    with serving("0.005") as bases:
        yield bases


def start(base: str, question: str = ASKING) -> Tuple[str, str, Any]:
    response = httpx.post(base + "/runs", json={"question": question}, timeout=30)
    assert response.status_code == 201, response.text
    body = response.json()
    return body["run_id"], body["token"], response


def bearer(token: Optional[str]) -> Dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token}"}


def events(
    base: str,
    run_id: str,
    token: str,
    *,
    after: Optional[str] = None,
    until: Any = None,
    limit: Optional[int] = None,
) -> List[Event]:
    """The run's SSE events from `base`, after `after`, until an event `until` accepts (kept),
    `limit` events, or the stream's end."""
    headers = bearer(token)
    if after:
        headers["Last-Event-ID"] = after
    found: List[Event] = []
    entry, kind, data = "", "message", ""
    with httpx.stream(
        "GET", f"{base}/runs/{run_id}/events", headers=headers, timeout=60
    ) as response:
        assert response.status_code in (200, 204), response.read()
        for line in response.iter_lines():
            if line.startswith("id: "):
                entry = line[4:]
            elif line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
            elif line == "" and data:
                found.append((entry, kind, json.loads(data)))
                data = ""
                if (until is not None and until(found[-1])) or len(found) == limit:
                    break
    return found


def paused(event: Event) -> bool:
    return event[1] == "paused"


def segments(run_id: str) -> int:
    import psycopg

    with psycopg.connect(POSTGRES) as connection:
        row = connection.execute(
            "SELECT count(*) FROM dbos.workflow_status WHERE workflow_uuid LIKE %s",
            (run_id + ":%",),
        ).fetchone()
    assert row is not None
    return int(row[0])


def status(base: str, run_id: str, token: str) -> Dict[str, Any]:
    response = httpx.get(f"{base}/runs/{run_id}", headers=bearer(token), timeout=30)
    assert response.status_code == 200, response.text
    body: Dict[str, Any] = response.json()
    return body


def wait_paused(base: str, run_id: str, token: str) -> Tuple[List[Event], Dict[str, Any]]:
    seen = events(base, run_id, token, until=paused)
    assert seen[-1][1] == "paused", seen[-3:]
    return seen, status(base, run_id, token)


def text_of(seen: List[Event]) -> str:
    parts = []
    for _, kind, data in seen:
        if kind == "chunk":
            value = data.get("data")
            parts.append(value if isinstance(value, str) else json.dumps(value))
    return "".join(parts)


def test_a_whole_run_start_interrupt_answer_end_through_sse(service):
    first, second = service
    run_id, token, response = start(first)
    cookie = response.headers["set-cookie"].lower()
    assert f"path=/runs/{run_id.lower()}" in cookie
    assert "httponly" in cookie and "samesite=strict" in cookie
    seen, state = wait_paused(first, run_id, token)
    assert state["status"] == "paused"
    [interrupt] = state["interrupts"]
    assert interrupt["payload"]["question"] == "What should I look into?"
    assert any(kind == "interrupt" and data["id"] == interrupt["id"] for _, kind, data in seen)
    answer = httpx.post(
        f"{second}/runs/{run_id}/answers",
        json={"interrupt_id": interrupt["id"], "answer": "the arithmetic"},
        headers=bearer(token),
        timeout=30,
    )
    assert answer.status_code == 202, answer.text
    rest = events(second, run_id, token, after=seen[-1][0])
    assert rest[-1][1] == "end" and rest[-1][2]["status"] == "done", rest[-3:]
    assert "42" in text_of(rest)
    assert status(first, run_id, token)["status"] == "done"
    # the cookie alone (a browser's EventSource) reads the stream too
    with httpx.Client(cookies={"run_token": token}) as browser:
        replay = browser.get(f"{first}/runs/{run_id}", timeout=30)
        assert replay.status_code == 200


def test_another_clients_token_is_refused_on_every_endpoint(service):
    base = service[0]
    mine, my_token, _ = start(base)
    theirs, their_token, _ = start(base)
    wait_paused(base, mine, my_token)
    before = status(base, mine, my_token)
    unknown = httpx.get(f"{base}/runs/no-such-run", headers=bearer(my_token), timeout=30)
    assert unknown.status_code == 404
    for token in (their_token, None, "x" * 64):  # another run's, none, a made-up one
        attempts = [
            httpx.get(f"{base}/runs/{mine}", headers=bearer(token), timeout=30),
            httpx.get(f"{base}/runs/{mine}/events", headers=bearer(token), timeout=30),
            httpx.post(
                f"{base}/runs/{mine}/answers",
                json={"interrupt_id": before["interrupts"][0]["id"], "answer": "hijack"},
                headers=bearer(token),
                timeout=30,
            ),
        ]
        for attempt in attempts:
            assert attempt.status_code == 404, attempt.text
            assert my_token not in attempt.text
            assert set(attempt.json()) == {"error", "what_to_do"}
    with httpx.Client(cookies={"run_token": their_token}) as other:
        assert other.get(f"{base}/runs/{mine}", timeout=30).status_code == 404
    assert status(base, mine, my_token) == before
    assert segments(mine) == 1


def test_a_wrong_interrupt_id_is_refused_and_changes_nothing(service):
    base = service[0]
    run_id, token, _ = start(base)
    _, before = wait_paused(base, run_id, token)
    for wrong in ("not-an-interrupt", before["interrupts"][0]["id"] + "x"):
        response = httpx.post(
            f"{base}/runs/{run_id}/answers",
            json={"interrupt_id": wrong, "answer": "yes"},
            headers=bearer(token),
            timeout=30,
        )
        assert response.status_code == 409, response.text
        assert "nothing was changed" in response.json()["error"]
        assert response.json()["pending"] == [before["interrupts"][0]["id"]]
    badly_typed = httpx.post(
        f"{base}/runs/{run_id}/answers",
        json={"interrupt_id": before["interrupts"][0]["id"], "answer": {"not": "text"}},
        headers=bearer(token),
        timeout=30,
    )
    assert badly_typed.status_code == 422, badly_typed.text
    assert status(base, run_id, token) == before
    assert segments(run_id) == 1


def test_a_replayed_answer_changes_nothing(service):
    first, second = service
    run_id, token, _ = start(first)
    seen, before = wait_paused(first, run_id, token)
    body = {"interrupt_id": before["interrupts"][0]["id"], "answer": "the arithmetic"}
    responses = [
        httpx.post(f"{base}/runs/{run_id}/answers", json=body, headers=bearer(token), timeout=30)
        for base in (first, second, first)
    ]
    assert [r.status_code for r in responses] == [202, 202, 202]
    assert len({r.text for r in responses}) == 1
    rest = events(first, run_id, token, after=seen[-1][0])
    assert rest[-1][1] == "end"
    again = httpx.post(
        f"{second}/runs/{run_id}/answers", json=body, headers=bearer(token), timeout=30
    )
    assert again.status_code == 202 and again.text == responses[0].text
    different = httpx.post(
        f"{second}/runs/{run_id}/answers",
        json={**body, "answer": "something else"},
        headers=bearer(token),
        timeout=30,
    )
    assert different.status_code == 409, different.text
    assert segments(run_id) == 2  # the start and one resume
    whole = events(first, run_id, token)
    assert [kind for _, kind, _ in whole].count("end") == 1
    assert [kind for _, kind, _ in whole].count("paused") == 1


def test_an_sse_client_that_reconnects_with_last_event_id_gets_no_gap_or_duplicate(service):
    first, second = service
    run_id, token, _ = start(first, "What is 17% of 2,340? Save a short note about it.")
    head = events(first, run_id, token, limit=8)
    tail = events(second, run_id, token, after=head[-1][0])
    assert tail[-1][1] == "end", tail[-3:]
    whole = events(first, run_id, token)
    assert [entry for entry, _, _ in head + tail] == [entry for entry, _, _ in whole]
    assert head + tail == whole
    ended = httpx.get(
        f"{second}/runs/{run_id}/events",
        headers={**bearer(token), "Last-Event-ID": whole[-1][0]},
        timeout=30,
    )
    assert ended.status_code == 204


def test_the_page_runs_a_question_and_answers_the_agent_in_chromium(service):
    """The served page in Debian's chromium: start, see the question, answer, see the end."""
    from chromium import chromium

    with chromium() as browser:
        page = browser.new_page()
        page.goto(service[0] + "/")
        page.fill("#question", ASKING)
        page.click("#start button")
        page.wait_for_selector("#ask", state="visible", timeout=60_000)
        assert page.text_content("#ask-question") == "What should I look into?"
        page.fill("#answer", "the arithmetic")
        page.click("#ask button")
        page.wait_for_function(
            "document.getElementById('status').textContent === 'done'", timeout=60_000
        )
        assert "42" in (page.text_content("#transcript") or "")


def lease_holder(run_id: str) -> Optional[str]:
    """Who holds the run's store lease now ("host:pid:suffix"), None when nobody does."""
    from pocketflow_stream.scale.postgres_store import PostgresStore

    store = PostgresStore(POSTGRES)
    try:
        found = [info for info in store.list() if info.run_id == run_id]
    finally:
        store.close()
    return found[0].lease_owner if found else None


def final_answer(run_id: str) -> Any:
    """The agent's last message in the run's saved `shared` (its answer)."""
    from pocketflow_stream.scale.postgres_store import PostgresStore

    store = PostgresStore(POSTGRES)
    try:
        record = store.load(run_id)
    finally:
        store.close()
    assert record is not None and record.status == "done"
    return record.shared["messages"][-1]


def test_a_run_worker_killed_mid_node_comes_back_and_the_run_ends_in_the_same_stream():
    """kill -9 of the run worker that holds the run, while its model streams (a slow model:
    a reply takes seconds, the kill comes at its first chunk): the command restarts the
    worker under its executor id, DBOS gives it the segment back, which waits out the lease
    and resumes from the last checkpoint. The SSE client, moved to the other web worker with
    Last-Event-ID, gets the rest of the run: the node in flight again as a new attempt, then
    the end; the answer is the uninterrupted run's."""
    question = "What is 17% of 2,340? Save a short note about it."
    with serving("0.1") as (first, second):
        quiet_id, quiet_token, _ = start(first, question)
        whole = events(first, quiet_id, quiet_token)
        assert whole[-1][1] == "end" and whole[-1][2]["status"] == "done", whole[-3:]

        run_id, token, _ = start(first, question)
        head = events(first, run_id, token, until=lambda event: event[1] == "chunk")
        owner = lease_holder(run_id)
        assert owner is not None, "the run's first chunk came, yet nobody holds its lease"
        pid = int(owner.split(":")[1])
        os.kill(pid, signal.SIGKILL)
        tail = events(second, run_id, token, after=head[-1][0])
        assert tail[-1][1] == "end" and tail[-1][2]["status"] == "done", tail[-3:]

        chunks = [data for _, kind, data in head + tail if kind == "chunk"]
        again = [data for data in chunks if data.get("attempt", 0) >= 1]
        assert again, "no chunk of a new attempt: the kill did not land mid-node"
        assert len({data["path"][-1] for data in again}) == 1  # only the node in flight
        owner_after = lease_holder(run_id)
        assert owner_after is None or int(owner_after.split(":")[1]) != pid
        assert segments(run_id) == 1  # the same segment workflow, recovered
        assert final_answer(run_id) == final_answer(quiet_id)  # as if nothing had happened
