"""Store backends side by side in one run: creates/s and updates/s on etcd vs SQLite.

    .venv/bin/python bench/bench_store.py [--n 2000]

Each backend gets --n creates of a pod-sized JSON object (the registry's synchronous write
path: one committed, acknowledged write per call), then --n compare-and-swap updates, then
a watch replay of the whole log from revision 0 plus a reopen (the server-start load).
SQLite is the embedded default (WAL, a file in a temp dir); etcd is Debian's etcd 3.4
started here on 127.0.0.1 with a temp data dir (default fsync durability), reached over its
v3 JSON gateway. The in-memory store is the ceiling. Ratios are against SQLite.
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nanokube.store import MemoryStore, SqliteStore, Store  # noqa: E402
from nanokube.store.etcd import EtcdStore  # noqa: E402
from tests.etcdproc import local_etcd  # noqa: E402


def set_rv(v: dict, rev: int) -> None:
    v["metadata"]["resourceVersion"] = str(rev)


def pod(i: int) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"p-{i}", "namespace": "default", "uid": f"{i:032x}", "labels": {"app": "bench"}},
            "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"],
                                     "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}],
                     "restartPolicy": "Always", "nodeName": "node1"},
            "status": {"phase": "Running", "podIP": "10.244.1.7"}}


def run(name: str, open_store: Callable[[], Store], n: int) -> dict[str, float]:
    s = open_store()
    t0 = time.perf_counter()
    for i in range(n):
        s.create(f"/registry/pods/default/p-{i}", pod(i), set_rv=set_rv)
    t_create = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(n):
        key = f"/registry/pods/default/p-{i}"
        v, rev = s.get(key)
        s.update(key, {**v, "status": {"phase": "Succeeded"}}, expected_revision=rev, set_rv=set_rv)
    t_update = time.perf_counter() - t0

    async def replay() -> int:
        got = 0
        async for _ in s.watch("/registry/pods/", after=0):
            got += 1
            if got == 2 * n:
                return got
        return got
    t0 = time.perf_counter()
    assert asyncio.run(replay()) == 2 * n
    t_replay = time.perf_counter() - t0
    s.close()
    t0 = time.perf_counter()
    if not isinstance(s, MemoryStore):
        s2 = open_store()
        assert s2.count("/registry/pods/") == n
        s2.close()
    t_load = time.perf_counter() - t0
    r = {"creates/s": n / t_create, "updates/s": n / t_update, "replay ev/s": 2 * n / t_replay,
         "load s": t_load}
    print(f"{name:7s} " + "  ".join(f"{k} {v:9.1f}" if not k.endswith(" s") else f"{k} {v:6.3f}"
                                    for k, v in r.items()), flush=True)
    return r


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="nk-bench-store-") as tmp:
        mem = MemoryStore()
        res = {"memory": run("memory", lambda: mem, a.n),
               "sqlite": run("sqlite", lambda: SqliteStore(Path(tmp) / "s.db"), a.n)}
        with local_etcd() as url:
            res["etcd"] = run("etcd", lambda: EtcdStore(url), a.n)
    base = res["sqlite"]
    for name in ("memory", "etcd"):
        print(f"{name} / sqlite: " + ", ".join(f"{k} x{res[name][k] / base[k]:.2f}" for k in ("creates/s", "updates/s", "replay ev/s")))


if __name__ == "__main__":
    main()
