"""Issue 11's load figures: 500 busybox sleepers across 3 nodes on this machine.

    sudo .venv/bin/python bench/bench_load.py [--pods 500] [--nodes 3]

On an isolated cluster (`nanokube up --isolated --max-pods 200`), one Deployment of --pods
replicas (`sleep 3600`, no requests) is created; the time until every replica is Running is
measured with a watch. Meanwhile a probe client makes mutating requests (ConfigMap create,
patch, delete; one at a time, at most 5 a second, bounded by the run) and records their
latency. Baseline: the same probe on the idle cluster first, in the same run; the ratio is
p99 under load / p99 idle (the upstream SLO for mutating calls is p99 <= 1 s). Then the
server's and agents' memory (RSS and PSS) with every pod running. Everything is removed at
the end (`nanokube down`).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from bench_foundation import mem, pct  # noqa: E402

PY = sys.executable


def deployment(replicas: int) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "load", "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"bench": "load"}},
                     "template": {"metadata": {"labels": {"bench": "load"}},
                                  "spec": {"terminationGracePeriodSeconds": 0,
                                           "containers": [{"name": "c", "image": "busybox",
                                                           "command": ["sleep", "3600"]}]}}}}


async def probe(client, stop: asyncio.Event, limit: int) -> list[float]:
    """Latencies of mutating requests (create, patch, delete), one at a time, <= 5 rounds/s."""
    out: list[float] = []
    for i in range(limit):
        if stop.is_set():
            break
        name = f"probe-{i}"
        for call in (lambda: client.create("configmaps", {"metadata": {"name": name}, "data": {"a": "1"}},
                                           namespace="default"),
                     lambda: client.patch("configmaps", name, {"data": {"a": "2"}}, namespace="default"),
                     lambda: client.delete("configmaps", name, namespace="default")):
            t0 = time.perf_counter()
            await call()
            out.append(time.perf_counter() - t0)
        await asyncio.sleep(0.2)
    return out


async def all_running(client, n: int, timeout: float) -> float:
    lst = await client.list("pods", namespace="default", label_selector="bench=load")
    t0 = time.perf_counter()
    await client.create("deployments", deployment(n), namespace="default")
    running: set[str] = set()
    async for typ, pod in client.watch("pods", namespace="default", label_selector="bench=load",
                                       resource_version=lst["metadata"]["resourceVersion"], timeout_seconds=int(timeout)):
        if typ == "ERROR":
            raise RuntimeError(f"watch ended: {pod}")
        name = (pod.get("metadata") or {}).get("name")
        if not name:  # a bookmark
            continue
        if typ != "DELETED" and (pod.get("status") or {}).get("phase") == "Running":
            running.add(name)
        else:
            running.discard(name)
        if len(running) >= n:
            return time.perf_counter() - t0
    raise TimeoutError(f"{len(running)} of {n} pods Running after {timeout:.0f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pods", type=int, default=500)
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=900)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")
    cluster = "l" + secrets.token_hex(3)
    state = Path(tempfile.mkdtemp(prefix="nkbench"))
    max_pods = max(110, -(-args.pods // args.nodes) + 20)
    r = subprocess.run([PY, "-m", "nanokube", "up", "--isolated", "--detach", "--nodes", str(args.nodes),
                        "--cluster", cluster, "--state-dir", str(state), "--max-pods", str(max_pods)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stdout, r.stderr)
        sys.exit(1)
    try:
        cdir = state / cluster
        info = json.loads((cdir / "cluster.json").read_text())
        from nanokube.client.http import HttpClient
        from nanokube.host import netns

        async def bench() -> tuple[list[float], list[float], float]:
            client = HttpClient.from_kubeconfig(info["kubeconfig"])
            try:
                idle = await probe(client, asyncio.Event(), 60)
                stop = asyncio.Event()
                prober = asyncio.create_task(probe(client, stop, 10_000))
                try:
                    took = await all_running(client, args.pods, args.timeout)
                finally:
                    stop.set()
                    loaded = await prober
                return idle, loaded, took
            finally:
                await client.close()
        idle, loaded, took = netns.run_in(info["host_netns"], lambda: asyncio.run(bench()))
        mems = {}
        for pidfile in sorted((cdir / "pids").glob("*.pid")):
            try:
                mems[pidfile.stem] = mem(int(pidfile.read_text()))
            except Exception:  # noqa: BLE001 - a helper that is gone
                pass
    finally:
        subprocess.run([PY, "-m", "nanokube", "down", "--cluster", cluster, "--state-dir", str(state)],
                       capture_output=True, timeout=900)
        shutil.rmtree(state, ignore_errors=True)
    print(f"{args.pods} pods on {args.nodes} nodes -> all Running: {took:.1f} s ({args.pods / took:.1f} pods/s)")
    print(f"mutating requests, idle (baseline, n={len(idle)}): p50 {pct(idle, 50) * 1000:.1f} ms "
          f"p99 {pct(idle, 99) * 1000:.1f} ms")
    print(f"mutating requests during the rollout (n={len(loaded)}): p50 {pct(loaded, 50) * 1000:.1f} ms "
          f"p99 {pct(loaded, 99) * 1000:.1f} ms (SLO <= 1000 ms) -> ratio p99 loaded/idle "
          f"{pct(loaded, 99) / pct(idle, 99):.1f}x")
    for name, (rss, pss) in mems.items():
        print(f"memory {name}: RSS {rss:.1f} MiB, PSS {pss:.1f} MiB")


if __name__ == "__main__":
    main()
