"""The store contract: every store (memory, SQLite; Postgres next) keeps the same rules.

A new store joins by adding a param to the `stores` fixture: a factory `make(history=0,
clock=...)` and `peer(store)`, another handle on the same data (what a second process would
open). Postgres (pocketflow_stream.scale) runs when POCKETFLOW_STREAM_POSTGRES_URL is set
(scripts/servers.sh starts a server), each test on a schema of its own, dropped after it.
"""

from __future__ import annotations

import os
import secrets
import threading

import anyio
import pytest

from pocketflow_stream.persist import (
    AsyncStore,
    LeaseLost,
    MemoryStore,
    Record,
    RunBusy,
    RunNotFound,
    SequenceConflict,
    SQLiteStore,
    Store,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Stores:
    def __init__(self, kind: str, tmp_path) -> None:
        self.kind = kind
        self.path = tmp_path / "runs.db"
        self.clock = Clock()
        self.opened: list = []

    def make(self, history: int = 0) -> Store:
        if self.kind == "memory":
            store: Store = MemoryStore(history=history, clock=self.clock)
        else:
            store = self._open(history)
        self.opened.append(store)
        return store

    def peer(self, store: Store) -> Store:
        if self.kind == "memory":
            return store
        other = self._open(store.history)  # type: ignore[attr-defined]
        self.opened.append(other)
        return other

    def _open(self, history: int) -> Store:
        if self.kind == "postgres":
            from pocketflow_stream.scale import PostgresStore

            return PostgresStore(self.url, schema=self.schema, history=history, clock=self.clock)
        return SQLiteStore(self.path, history=history, clock=self.clock)


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def stores(request, tmp_path):
    made = Stores(request.param, tmp_path)
    if request.param == "postgres":
        made.url = os.environ.get("POCKETFLOW_STREAM_POSTGRES_URL", "")
        if not made.url:
            pytest.skip(
                "POCKETFLOW_STREAM_POSTGRES_URL is not set: start a throwaway server with "
                'eval "$(scripts/servers.sh start DIR)" to run the Postgres store too'
            )
        made.schema = f"pfs_test_{secrets.token_hex(6)}"
    yield made
    for store in made.opened:
        store.close()
    if request.param == "postgres" and made.opened:
        from pocketflow_stream.scale import PostgresStore

        with PostgresStore(made.url, schema=made.schema) as store:
            store.drop_schema()


def record(run_id: str = "r1", status: str = "running", **fields) -> Record:
    fields.setdefault("shared", {"n": 1})
    return Record(run_id, status, **fields)


def test_a_new_run_has_no_checkpoint_until_its_first_save(stores):
    store = stores.make()
    assert store.load("r1") is None
    lease = store.claim("r1", "worker-a", ttl=30)
    assert (lease.run_id, lease.owner, lease.ttl) == ("r1", "worker-a", 30)
    assert store.load("r1") is None and store.list() == [] and store.seqs("r1") == []
    assert store.save(lease, 0, record(shared={"n": 1})) == 1
    assert store.seqs("r1") == [1]


def test_load_gives_back_every_field_with_the_stores_seq_and_time(stores):
    store = stores.make()
    lease = store.claim("r1", "a")
    saved = Record(
        "r1",
        "paused",
        position={"version": 1, "frames": [{"node": "Ask", "item": None}]},
        shared={"text": "héllo \U0001f600", "nested": [1, 2.5, True, None, {"k": []}]},
        interrupts=[{"id": "i-1", "payload": {"question": "ok?"}}],
        fingerprint="abc",
        at="Agent > Ask",
        meta={"flow": "Agent"},
    )
    store.save(lease, 0, saved)
    stores.clock.now += 5
    loaded = stores.peer(store).load("r1")
    assert loaded is not None
    assert (loaded.seq, loaded.updated_at) == (1, 1_000_000.0)
    for name in ("run_id", "status", "position", "shared", "interrupts", "fingerprint", "at"):
        assert getattr(loaded, name) == getattr(saved, name), name
    assert loaded.meta == {"flow": "Agent"} and loaded.error is None


def test_a_saved_checkpoint_does_not_change_when_the_app_changes_its_values(stores):
    store = stores.make()
    lease = store.claim("r1", "a")
    shared = {"items": [1]}
    store.save(lease, 0, record(shared=shared))
    shared["items"].append(2)
    assert store.load("r1").shared == {"items": [1]}


def test_a_held_lease_makes_the_run_busy_for_everyone_else(stores):
    store = stores.make()
    store.claim("r1", "worker-a", ttl=30)
    with pytest.raises(RunBusy, match=r"run 'r1' is busy: worker-a holds its lease") as caught:
        stores.peer(store).claim("r1", "worker-b")
    assert caught.value.owner == "worker-a"


def test_only_one_of_many_simultaneous_claims_wins(stores):
    store = stores.make()
    handles = [stores.peer(store) for _ in range(6)]
    barrier = threading.Barrier(len(handles))
    outcomes: list = []

    def claim(handle):
        barrier.wait()
        try:
            outcomes.append(handle.claim("r1", "w"))
        except RunBusy as busy:
            outcomes.append(busy)

    threads = [threading.Thread(target=claim, args=(h,)) for h in handles]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(not isinstance(o, RunBusy) for o in outcomes) == 1


def test_a_released_lease_can_be_claimed_at_once(stores):
    store = stores.make()
    lease = store.claim("r1", "a")
    store.save(lease, 0, record())
    store.release(lease)
    other = stores.peer(store).claim("r1", "b")
    assert stores.peer(store).save(other, 1, record(shared={"n": 2})) == 2


def test_an_expired_lease_can_be_claimed_and_its_old_owner_can_never_write(stores):
    store = stores.make()
    old = store.claim("r1", "a", ttl=10)
    store.save(old, 0, record(shared={"n": 1}))
    stores.clock.now += 11
    peer = stores.peer(store)
    new = peer.claim("r1", "b", ttl=10)
    with pytest.raises(LeaseLost, match=r"lease of a is no longer valid \(b holds it now\)"):
        store.save(old, 1, record(shared={"n": "stale"}))
    with pytest.raises(LeaseLost):
        store.renew(old)
    store.release(old)  # a stale release leaves the new owner's lease alone
    with pytest.raises(RunBusy):
        store.claim("r1", "c")
    assert peer.load("r1").shared == {"n": 1}
    assert peer.save(new, 1, record(shared={"n": 2})) == 2


def test_a_stale_owner_cannot_write_even_at_the_right_sequence_number(stores):
    store = stores.make()
    old = store.claim("r1", "a", ttl=1)
    stores.clock.now += 2
    new = stores.peer(store).claim("r1", "b", ttl=30)
    with pytest.raises(LeaseLost):
        store.save(old, 0, record(shared={"n": "stale"}))
    assert store.load("r1") is None
    assert stores.peer(store).save(new, 0, record()) == 1


def test_a_save_at_the_wrong_sequence_number_changes_nothing(stores):
    store = stores.make()
    lease = store.claim("r1", "a")
    store.save(lease, 0, record(shared={"n": 1}))
    with pytest.raises(SequenceConflict, match="expected sequence number 0 but the run is at 1"):
        store.save(lease, 0, record(shared={"n": 2}))
    assert store.load("r1").shared == {"n": 1} and store.load("r1").seq == 1


def test_saving_and_renewing_extend_the_lease(stores):
    store = stores.make()
    lease = store.claim("r1", "a", ttl=10)
    stores.clock.now += 8
    store.save(lease, 0, record())
    stores.clock.now += 8  # 16 s after the claim, 8 after the save
    with pytest.raises(RunBusy):
        stores.peer(store).claim("r1", "b")
    renewed = store.renew(lease)
    assert renewed.expires_at == stores.clock.now + 10
    stores.clock.now += 9
    with pytest.raises(RunBusy):
        stores.peer(store).claim("r1", "b")
    stores.clock.now += 2
    stores.peer(store).claim("r1", "b")


def test_head_only_by_default(stores):
    store = stores.make()
    lease = store.claim("r1", "a")
    for seq in range(5):
        store.save(lease, seq, record(shared={"n": seq}))
    assert store.seqs("r1") == [5]
    with pytest.raises(RunNotFound, match="has no checkpoint 3 .*history=N"):
        store.load("r1", 3)


def test_history_keeps_the_last_n_and_an_old_one_forks_into_a_new_run(stores):
    store = stores.make(history=3)
    lease = store.claim("r1", "a")
    for seq in range(6):
        store.save(lease, seq, record(shared={"n": seq}))
    assert store.seqs("r1") == [4, 5, 6]
    assert store.load("r1", 4).shared == {"n": 3}
    assert store.load("r1").shared == {"n": 5}
    with pytest.raises(RunNotFound):
        store.load("r1", 3)
    old = store.load("r1", 4)
    fork = store.claim("r1-fork", "a")
    old.run_id = "r1-fork"
    store.save(fork, 0, old)
    assert store.load("r1-fork").shared == {"n": 3} and store.load("r1").seq == 6


def test_list_gives_summaries_newest_first_filtered_by_status(stores):
    store = stores.make()
    for index, (run_id, status) in enumerate([("a", "done"), ("b", "paused"), ("c", "paused")]):
        stores.clock.now += 1
        lease = store.claim(run_id, "w")
        asks = [{"id": f"{run_id}-1", "payload": {"q": index}}] if status == "paused" else []
        store.save(lease, 0, record(run_id, status, interrupts=asks, at=f"Flow > {run_id}"))
        store.release(lease)
    store.claim("never-saved", "w")
    listed = stores.peer(store).list()
    assert [info.run_id for info in listed] == ["c", "b", "a"]
    assert [info.run_id for info in store.list(status="paused")] == ["c", "b"]
    assert [info.run_id for info in store.list(limit=1)] == ["c"]
    c = listed[0]
    assert (c.status, c.at, c.seq, c.updated_at) == ("paused", "Flow > c", 1, 1_000_003.0)
    assert c.interrupts == [{"id": "c-1", "payload": {"q": 2}}]
    assert c.lease_owner is None and not hasattr(c, "shared")


def test_list_shows_who_holds_a_lease(stores):
    store = stores.make()
    lease = store.claim("r1", "worker-a", ttl=30)
    store.save(lease, 0, record())
    (info,) = store.list()
    assert info.lease_owner == "worker-a" and info.lease_expires == stores.clock.now + 30


def test_delete_removes_a_run_and_its_owner_can_no_longer_write(stores):
    store = stores.make(history=2)
    lease = store.claim("r1", "a")
    store.save(lease, 0, record())
    store.save(lease, 1, record())
    assert stores.peer(store).delete("r1") is True
    assert store.load("r1") is None and store.seqs("r1") == [] and store.list() == []
    with pytest.raises(LeaseLost, match="it was deleted"):
        store.save(lease, 2, record())
    assert store.delete("r1") is False


def test_run_ids_are_data_never_sql(stores):
    store = stores.make()
    run_id = "x'); DROP TABLE pfs_runs; --\"\n\u00e9"
    lease = store.claim(run_id, "o'w")
    store.save(lease, 0, record(run_id, at="'; --"))
    assert store.load(run_id).run_id == run_id
    assert [info.run_id for info in stores.peer(store).list()] == [run_id]


# -- the async twins ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_async_twin_keeps_the_same_rules(stores):
    store = AsyncStore.wrap(stores.make(history=2))
    other = AsyncStore.wrap(stores.peer(store.store))  # type: ignore[attr-defined]
    lease = await store.claim("r1", "a", 10)
    assert await store.save(lease, 0, record(shared={"n": 1})) == 1
    with pytest.raises(RunBusy):
        await other.claim("r1", "b")
    with pytest.raises(SequenceConflict):
        await store.save(lease, 0, record())
    assert (await other.load("r1")).shared == {"n": 1}
    assert [info.run_id for info in await other.list()] == ["r1"]
    assert await other.seqs("r1") == [1]
    lease = await store.renew(lease)
    await store.release(lease)
    taken = await other.claim("r1", "b")
    with pytest.raises(LeaseLost):
        await store.save(lease, 1, record())
    await other.save(taken, 1, record(shared={"n": 2}))
    assert (await store.load("r1", 1)).shared == {"n": 1}
    assert await store.delete("r1") is True


class BlockingStore(MemoryStore):
    """A store whose save blocks its thread until told to go on (like a slow disk)."""

    blocking = True

    def __init__(self) -> None:
        super().__init__()
        self.go_on = threading.Event()
        self.saving_in: list = []

    def save(self, lease, seq_expected, record):
        self.saving_in.append(threading.get_ident())
        if not self.go_on.wait(timeout=10):
            raise AssertionError("the event loop was blocked while the store wrote")
        return super().save(lease, seq_expected, record)


@pytest.mark.anyio
async def test_a_blocking_store_never_blocks_the_event_loop():
    sync = BlockingStore()
    store = AsyncStore.wrap(sync)
    lease = await store.claim("r1", "a")
    seqs = []

    async def save():
        seqs.append(await store.save(lease, 0, record()))

    async with anyio.create_task_group() as group:
        group.start_soon(save)
        while not sync.saving_in:  # bounded by the save's own timeout
            await anyio.sleep(0.001)
        sync.go_on.set()  # only possible because the loop is still running
    assert seqs == [1] and sync.saving_in != [threading.get_ident()]
