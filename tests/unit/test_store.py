"""The revision-log store: every backend (memory, SQLite, etcd) must give the same answers.

The etcd cases run against a throwaway Debian ``etcd`` (tests/etcdproc.py) on 127.0.0.1 and
are skipped, with the reason, only when the binary is missing. Revisions are asserted
relative to the store's starting revision: a fresh etcd already sits at revision 1.
"""
import asyncio

import pytest

from nanokube.store import Compacted, KeyExists, KeyNotFound, MemoryStore, RevisionMismatch, SqliteStore
from nanokube.store.etcd import EtcdStore
from tests.etcdproc import SKIP_REASON, etcd_binary, local_etcd

needs_etcd = pytest.mark.skipif(etcd_binary() is None, reason=SKIP_REASON)


def set_rv(v, rev):
    v.setdefault("metadata", {})["resourceVersion"] = str(rev)


@pytest.fixture
def etcd_url():
    with local_etcd() as url:
        yield url


@pytest.fixture(params=["memory", "sqlite", pytest.param("etcd", marks=needs_etcd)])
def reopen(request, tmp_path):
    """A factory opening the same backing store again (a server restart); closes them all."""
    opened = []
    url = None
    ctx = None
    if request.param == "etcd":
        ctx = local_etcd()
        url = ctx.__enter__()
    mem = MemoryStore() if request.param == "memory" else None

    def open_store():
        if request.param == "memory":
            return mem  # nothing to reopen: the same object
        s = SqliteStore(tmp_path / "s.db") if request.param == "sqlite" else EtcdStore(url)
        opened.append(s)
        return s
    open_store.kind = request.param
    yield open_store
    for s in opened:
        s.close()
    if ctx is not None:
        ctx.__exit__(None, None, None)


@pytest.fixture
def store(reopen):
    return reopen()


def test_create_update_delete_cas(store):
    r0 = store.revision
    ev = store.create("/r/a", {"x": 1}, set_rv=set_rv)
    assert ev.revision == r0 + 1 and store.get("/r/a")[1] == r0 + 1 and ev.created
    with pytest.raises(KeyExists):
        store.create("/r/a", {"x": 2}, set_rv=set_rv)
    store.update("/r/a", {"x": 2}, expected_revision=r0 + 1, set_rv=set_rv)
    with pytest.raises(RevisionMismatch):
        store.update("/r/a", {"x": 3}, expected_revision=r0 + 1, set_rv=set_rv)
    assert store.get("/r/a")[0]["x"] == 2
    with pytest.raises(RevisionMismatch):
        store.delete("/r/a", expected_revision=r0 + 1)
    store.delete("/r/a")
    assert store.get("/r/a") is None
    with pytest.raises(KeyNotFound):
        store.delete("/r/a")
    with pytest.raises(KeyNotFound):
        store.update("/r/a", {"x": 4}, expected_revision=None, set_rv=set_rv)
    assert store.revision == r0 + 3  # failed writes never use a revision


def test_list_prefix_sorted(store):
    r0 = store.revision
    for k in ("/r/ns/b", "/r/ns/a", "/r/other/c"):
        store.create(k, {}, set_rv=set_rv)
    items, rev = store.list("/r/ns/")
    assert [k for k, _, _ in items] == ["/r/ns/a", "/r/ns/b"] and rev == r0 + 3
    assert store.count("/r/") == 3


async def test_watch_replays_then_follows(store):
    r0 = store.revision
    store.create("/r/a", {"n": 1}, set_rv=set_rv)
    store.update("/r/a", {"n": 2}, expected_revision=r0 + 1, set_rv=set_rv)
    store.create("/q/x", {"n": 9}, set_rv=set_rv)  # another prefix: not in the watch
    got = []

    async def consume():
        async for ev in store.watch("/r/", after=r0 + 1):
            got.append((ev.type, ev.value["n"], ev.revision - r0, ev.created))
            if len(got) == 3:
                return
    task = asyncio.create_task(consume())
    await asyncio.sleep(0.01)
    store.create("/r/b", {"n": 3}, set_rv=set_rv)
    store.delete("/r/a")
    await asyncio.wait_for(task, 5)
    assert got == [("PUT", 2, 2, False), ("PUT", 3, 4, True), ("DELETE", 2, 5, False)]


async def test_watch_replay_from_history_only(store):
    """A watch that starts in the past replays exactly the log, values as they were then."""
    r0 = store.revision
    store.create("/r/a", {"n": 1}, set_rv=set_rv)
    store.update("/r/a", {"n": 2}, expected_revision=r0 + 1, set_rv=set_rv)
    store.delete("/r/a")
    store.create("/r/b", {"n": 4}, set_rv=set_rv)
    got = []

    async def consume():
        async for ev in store.watch("/r/", after=r0):
            got.append((ev.type, ev.key, ev.value["n"], ev.value["metadata"]["resourceVersion"]))
            if len(got) == 4:
                return
    await asyncio.wait_for(consume(), 5)
    assert got == [("PUT", "/r/a", 1, str(r0 + 1)), ("PUT", "/r/a", 2, str(r0 + 2)),
                   ("DELETE", "/r/a", 2, str(r0 + 2)), ("PUT", "/r/b", 4, str(r0 + 4))]


def test_reopen_sees_everything_and_continues_revisions(reopen, monkeypatch):
    if reopen.kind == "memory":
        pytest.skip("a MemoryStore does not outlive its process")
    monkeypatch.setattr("nanokube.store.etcd.PAGE", 7)  # etcd: load in several pages
    s = reopen()
    r0 = s.revision
    s.create("/r/a", {"n": 1}, set_rv=set_rv)
    s.update("/r/a", {"n": 2}, expected_revision=r0 + 1, set_rv=set_rv)
    s.create("/r/b", {"n": 1}, set_rv=set_rv)
    s.delete("/r/b")
    for i in range(30):
        s.create(f"/r/many/{i:03d}", {"i": i}, set_rv=set_rv)
    before = {k: (v, rev) for k, v, rev in s.list("/")[0]}
    s.close()
    s2 = reopen()
    assert s2.revision == r0 + 34
    assert s2.get("/r/a") == ({"n": 2, "metadata": {"resourceVersion": str(r0 + 2)}}, r0 + 2)
    assert s2.get("/r/b") is None
    assert {k: (v, rev) for k, v, rev in s2.list("/")[0]} == before
    ev = s2.create("/r/c", {}, set_rv=set_rv)
    assert ev.revision == r0 + 35
    s2.update("/r/a", {"n": 3}, expected_revision=r0 + 2, set_rv=set_rv)  # CAS against the loaded revision
    assert s2.get("/r/a")[1] == r0 + 36


def test_compaction_bounds_watch_and_survives_reopen(reopen):
    if reopen.kind == "memory":
        pytest.skip("MemoryStore has no compaction")
    s = reopen()
    r0 = s.revision
    s.create("/r/a", {"n": 1}, set_rv=set_rv)
    s.update("/r/a", {"n": 2}, expected_revision=r0 + 1, set_rv=set_rv)
    s.create("/r/b", {"n": 1}, set_rv=set_rv)
    s.delete("/r/b")
    s.compact(r0 + 4)
    s.close()
    s2 = reopen()
    assert s2.get("/r/a") == ({"n": 2, "metadata": {"resourceVersion": str(r0 + 2)}}, r0 + 2)
    assert s2.get("/r/b") is None and s2.revision == r0 + 4
    ev = s2.create("/r/c", {}, set_rv=set_rv)
    assert ev.revision == r0 + 5  # revisions never go back, even after compaction

    async def watch_from(after):
        out = []
        async for e in s2.watch("/r/", after=after):
            out.append(e.key)
            return out
    with pytest.raises(Compacted):
        asyncio.run(watch_from(r0 + 1))
    assert asyncio.run(watch_from(r0 + 4)) == ["/r/c"]  # from the compaction point on: fine


@needs_etcd
def test_etcd_prefixes_keep_clusters_apart(etcd_url):
    a = EtcdStore(etcd_url + "/clusterA")
    a.create("/r/x", {"who": "a"}, set_rv=set_rv)
    a.close()
    b = EtcdStore(etcd_url + "/clusterB")
    assert b.list("/")[0] == [] and b.revision == a.revision  # one etcd, one revision counter
    ev = b.create("/r/x", {"who": "b"}, set_rv=set_rv)  # same store key, other cluster
    assert ev.revision == a.revision + 1
    b.close()
    a2 = EtcdStore(etcd_url + "/clusterA")
    assert a2.get("/r/x")[0]["who"] == "a" and a2.revision == ev.revision
    a2.close()


@needs_etcd
def test_etcd_foreign_write_is_detected_not_overwritten(etcd_url):
    """Single-writer guard: if something else changed our key in etcd, CAS fails loudly."""
    a = EtcdStore(etcd_url)
    r0 = a.revision
    a.create("/r/x", {"v": 1}, set_rv=set_rv)
    other = EtcdStore(etcd_url)
    other.update("/r/x", {"v": "other"}, expected_revision=r0 + 1, set_rv=set_rv)
    other.close()
    with pytest.raises(RevisionMismatch):
        a.update("/r/x", {"v": 2}, expected_revision=r0 + 1, set_rv=set_rv)
    a.close()
    assert EtcdStore(etcd_url).get("/r/x")[0]["v"] == "other"


@needs_etcd
def test_etcd_restart_under_a_running_store(tmp_path):
    """etcd restarts (same data, same port): the kept-alive connection is dead, the next write
    reconnects and lands exactly once; a write while etcd is down fails and changes nothing;
    history from before the restarts replays."""
    from tests.etcdproc import _free_port
    port = _free_port()
    with local_etcd(data_dir=tmp_path, client_port=port) as url:
        s = EtcdStore(url)
        r0 = s.revision
        s.create("/r/a", {"n": 1}, set_rv=set_rv)
    with local_etcd(data_dir=tmp_path, client_port=port):
        ev = s.update("/r/a", {"n": 2}, expected_revision=r0 + 1, set_rv=set_rv)  # over a dead connection
        assert ev.revision == r0 + 2 and s.revision == r0 + 2
    with pytest.raises(ConnectionError):
        s.update("/r/a", {"n": 99}, expected_revision=r0 + 2, set_rv=set_rv)
    assert s.get("/r/a")[0]["n"] == 2 and s.revision == r0 + 2
    with local_etcd(data_dir=tmp_path, client_port=port):
        ev = s.update("/r/a", {"n": 3}, expected_revision=r0 + 2, set_rv=set_rv)
        assert ev.revision == r0 + 3
        s.close()
        s2 = EtcdStore(url)
        assert s2.get("/r/a")[1] == r0 + 3 and s2.revision == r0 + 3

        async def replay():
            return [(e.type, e.value["n"]) async for e in _take(s2.watch("/r/", after=r0), 3)]
        assert asyncio.run(replay()) == [("PUT", 1), ("PUT", 2), ("PUT", 3)]
        s2.close()


async def _take(it, n):
    async for x in it:
        yield x
        n -= 1
        if n == 0:
            return


def test_etcd_url_parsing():
    from nanokube.store.etcd import parse_url, prefix_end
    assert parse_url("etcd://127.0.0.1:2399") == ("127.0.0.1", 2399, "/nanokube")
    assert parse_url("etcd://etcd.lan/k8s/prod/") == ("etcd.lan", 2379, "/k8s/prod")
    with pytest.raises(ValueError):
        parse_url("http://127.0.0.1:2379")
    assert prefix_end(b"/nanokube/") == b"/nanokube0" and prefix_end(b"a\xff") == b"b"
