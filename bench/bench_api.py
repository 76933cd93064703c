"""Issue 4's numbers for the apiserver, each against a baseline measured in the same run.

    .venv/bin/python bench/bench_api.py [--creates 1000] [--clients 10] [--list 5000] [--watchers 100]

- creates: --creates pod creates over HTTPS from --clients concurrent clients against a real
  `nanokube server` (controllers off: only the API and the SQLite store are measured), vs a
  minimal aiohttp HTTPS handler doing the same JSON parse + SQLite (WAL) insert + commit.
- LIST: time to GET --list pods (JSON) to the response's last byte, and with the client's own
  json.loads of it (Python's decoder alone takes ~0.4 s for 5,000 pods here); the server's RSS
  holding them.
- watch fan-out: --watchers concurrent watches on pods; 200 updates; delivery latency from
  the moment the update is sent to each watcher's receipt (p50/p99).
Everything listens on 127.0.0.1 ports the benchmark picks; nothing else is touched.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import psutil

ROOT = Path(__file__).resolve().parents[1]
SERVER = """
import asyncio, sys
from pathlib import Path
from nanokube.apiserver.server import ServerConfig, run_server
asyncio.run(run_server(ServerConfig(data_dir=Path(sys.argv[1]), bind=["127.0.0.1"], port=int(sys.argv[2]),
                                    controllers=False, dns_port=0)))
"""
BASELINE = """
import asyncio, json, sqlite3, ssl, sys
from aiohttp import web
db = sqlite3.connect(sys.argv[1] + "/base.db", isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
db.execute("CREATE TABLE kv (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, value BLOB)")
async def create(request):
    obj = json.loads(await request.read())
    db.execute("INSERT INTO kv (name, value) VALUES (?, ?)", (obj["metadata"]["name"], json.dumps(obj)))
    return web.json_response(obj, status=201)
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(sys.argv[3], sys.argv[4])
app = web.Application()
app.router.add_post("/api/v1/namespaces/default/pods", create)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[2]), ssl_context=ctx, print=None, access_log=None)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pod(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default", "labels": {"b": "1"}},
            "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]}}


async def wait_up(url: str, ctx: ssl.SSLContext, headers: dict, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(headers=headers) as s:
        while time.monotonic() < deadline:
            try:
                async with s.get(url + "/readyz", ssl=ctx) as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError(url)


async def creates(url: str, ctx: ssl.SSLContext, headers: dict, n: int, clients: int, prefix: str) -> float:
    q: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        q.put_nowait(i)
    conn = aiohttp.TCPConnector(limit=clients, ssl=ctx)
    async with aiohttp.ClientSession(headers=headers, connector=conn) as s:
        async def worker() -> None:
            while not q.empty():
                i = q.get_nowait()
                async with s.post(url + "/api/v1/namespaces/default/pods", json=pod(f"{prefix}-{i}")) as r:
                    if r.status != 201:
                        raise RuntimeError(f"create failed: {r.status} {await r.text()}")
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return time.perf_counter() - t0


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--creates", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--list", type=int, default=5000)
    ap.add_argument("--watchers", type=int, default=100)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="nk-bench-api-"))
    port, base_port = free_port(), free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    srv = subprocess.Popen([sys.executable, "-c", SERVER, str(tmp / "server"), str(port)], env=env,
                           stdout=subprocess.DEVNULL, stderr=open(tmp / "server.log", "w"))
    base = None
    try:
        while not (tmp / "server" / "admin.kubeconfig").exists():
            await asyncio.sleep(0.1)
        token = (tmp / "server" / "token").read_text().strip()
        ctx = ssl.create_default_context(cafile=str(tmp / "server" / "pki" / "ca.crt"))
        headers = {"Authorization": f"Bearer {token}"}
        url = f"https://127.0.0.1:{port}"
        await wait_up(url, ctx, headers)
        async with aiohttp.ClientSession(headers=headers) as s:
            for path, body in (("/api/v1/namespaces", {"metadata": {"name": "default"}}),
                               ("/api/v1/namespaces/default/serviceaccounts", {"metadata": {"name": "default"}})):
                async with s.post(url + path, json=body, ssl=ctx) as r:
                    assert r.status in (201, 409), await r.text()
        base = subprocess.Popen([sys.executable, "-c", BASELINE, str(tmp), str(base_port),
                                 str(tmp / "server" / "pki" / "apiserver.crt"), str(tmp / "server" / "pki" / "apiserver.key")],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base_url = f"https://127.0.0.1:{base_port}"
        bctx = ssl.create_default_context(cafile=str(tmp / "server" / "pki" / "ca.crt"))
        bctx.check_hostname = False
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", base_port), 0.2).close()
                break
            except OSError:
                await asyncio.sleep(0.1)

        t_base = await creates(base_url, bctx, {}, a.creates, a.clients, "b")
        t_nk = await creates(url, ctx, headers, a.creates, a.clients, "c")
        print(f"creates: {a.creates} pods, {a.clients} clients: nanokube {t_nk:.2f} s ({a.creates / t_nk:.0f}/s), "
              f"baseline aiohttp+sqlite {t_base:.2f} s ({a.creates / t_base:.0f}/s), ratio {t_nk / t_base:.2f}x")

        more = a.list - a.creates
        if more > 0:
            await creates(url, ctx, headers, more, a.clients, "l")
        async with aiohttp.ClientSession(headers=headers) as s:
            times, parsed = [], []
            for _ in range(3):
                t0 = time.perf_counter()
                async with s.get(url + "/api/v1/pods", ssl=ctx) as r:
                    body = await r.read()
                times.append(time.perf_counter() - t0)  # the server's answer, to its last byte
                items = json.loads(body)["items"]
                parsed.append(time.perf_counter() - t0)  # and decoded by this (Python) client
        rss = psutil.Process(srv.pid).memory_info().rss / 2**20
        print(f"LIST {len(items)} pods ({len(body) / 1e6:.1f} MB): to the last byte best {min(times):.3f} s, median "
              f"{statistics.median(times):.3f} s; with Python's json.loads on the client {min(parsed):.3f} s; "
              f"server RSS {rss:.0f} MB")

        lat: list[float] = []
        sent: dict[str, float] = {}
        n_updates = 200
        conn = aiohttp.TCPConnector(limit=a.watchers + 5, ssl=ctx)
        async with aiohttp.ClientSession(headers=headers, connector=conn, timeout=aiohttp.ClientTimeout(total=None)) as s:
            async with s.get(url + "/api/v1/namespaces/default/pods/c-0") as r:
                rv = (await r.json())["metadata"]["resourceVersion"]
            started = 0
            all_seen = asyncio.Event()
            counts = [0] * a.watchers

            async def watcher(k: int) -> None:
                nonlocal started
                async with s.get(url + f"/api/v1/namespaces/default/pods?watch=1&resourceVersion={rv}"
                                 f"&fieldSelector=metadata.name%3Dc-0") as r:
                    started += 1
                    async for line in r.content:
                        ev = json.loads(line)
                        mark = ev["object"]["metadata"].get("labels", {}).get("seq")
                        if mark in sent:
                            lat.append(time.perf_counter() - sent[mark])
                            counts[k] += 1
                            if min(counts) >= n_updates:
                                all_seen.set()
                                return
                        if counts[k] >= n_updates:
                            return
            tasks = [asyncio.create_task(watcher(k)) for k in range(a.watchers)]
            while started < a.watchers:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)
            for i in range(n_updates):
                seq = str(i)
                sent[seq] = time.perf_counter()  # from the write's start: includes the PATCH itself
                async with s.patch(url + "/api/v1/namespaces/default/pods/c-0", data=json.dumps({"metadata": {"labels": {"seq": seq}}}),
                                   headers={"Content-Type": "application/merge-patch+json"}) as r:
                    assert r.status == 200, await r.text()
                await asyncio.sleep(0.005)
            try:
                await asyncio.wait_for(all_seen.wait(), 60)
            finally:
                for t in tasks:
                    t.cancel()
        lat.sort()
        p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000  # noqa: E731
        print(f"watch fan-out: {a.watchers} watchers x {n_updates} updates, {len(lat)} deliveries: "
              f"p50 {p(0.5):.1f} ms, p99 {p(0.99):.1f} ms")
    finally:
        for proc in (srv, base):
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        subprocess.run(["rm", "-rf", str(tmp)])


if __name__ == "__main__":
    asyncio.run(main())
