"""The revision-log store: both backends must give the same answers."""
import asyncio

import pytest

from nanokube.store import Compacted, KeyExists, KeyNotFound, MemoryStore, RevisionMismatch, SqliteStore


def set_rv(v, rev):
    v.setdefault("metadata", {})["resourceVersion"] = str(rev)


@pytest.fixture(params=["memory", "sqlite"])
def store(request, tmp_path):
    s = MemoryStore() if request.param == "memory" else SqliteStore(tmp_path / "s.db")
    yield s
    s.close()


def test_create_update_delete_cas(store):
    ev = store.create("/r/a", {"x": 1}, set_rv=set_rv)
    assert ev.revision == 1 and store.get("/r/a")[1] == 1
    with pytest.raises(KeyExists):
        store.create("/r/a", {"x": 2}, set_rv=set_rv)
    store.update("/r/a", {"x": 2}, expected_revision=1, set_rv=set_rv)
    with pytest.raises(RevisionMismatch):
        store.update("/r/a", {"x": 3}, expected_revision=1, set_rv=set_rv)
    assert store.get("/r/a")[0]["x"] == 2
    store.delete("/r/a")
    assert store.get("/r/a") is None
    with pytest.raises(KeyNotFound):
        store.delete("/r/a")
    assert store.revision == 3


def test_list_prefix_sorted(store):
    for k in ("/r/ns/b", "/r/ns/a", "/r/other/c"):
        store.create(k, {}, set_rv=set_rv)
    items, rev = store.list("/r/ns/")
    assert [k for k, _, _ in items] == ["/r/ns/a", "/r/ns/b"] and rev == 3


async def test_watch_replays_then_follows(store):
    store.create("/r/a", {"n": 1}, set_rv=set_rv)
    store.update("/r/a", {"n": 2}, expected_revision=1, set_rv=set_rv)
    got = []

    async def consume():
        async for ev in store.watch("/r/", after=1):
            got.append((ev.type, ev.value["n"], ev.revision))
            if len(got) == 3:
                return
    task = asyncio.create_task(consume())
    await asyncio.sleep(0.01)
    store.create("/r/b", {"n": 3}, set_rv=set_rv)
    store.delete("/r/a")
    await asyncio.wait_for(task, 2)
    assert got == [("PUT", 2, 2), ("PUT", 3, 3), ("DELETE", 2, 4)]


def test_sqlite_survives_reopen_and_compaction(tmp_path):
    s = SqliteStore(tmp_path / "s.db")
    s.create("/r/a", {"n": 1}, set_rv=set_rv)
    s.update("/r/a", {"n": 2}, expected_revision=1, set_rv=set_rv)
    s.create("/r/b", {"n": 1}, set_rv=set_rv)
    s.delete("/r/b")
    s.compact(4)
    s.close()
    s2 = SqliteStore(tmp_path / "s.db")
    assert s2.get("/r/a") == ({"n": 2, "metadata": {"resourceVersion": "2"}}, 2)
    assert s2.get("/r/b") is None and s2.revision == 4
    ev = s2.create("/r/c", {}, set_rv=set_rv)
    assert ev.revision == 5  # revisions never go back, even after compaction

    async def old_watch():
        async for _ in s2.watch("/r/", after=1):
            pass
    with pytest.raises(Compacted):
        asyncio.run(old_watch())
    s2.close()
