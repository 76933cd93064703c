"""Issue 3's numbers: cluster start-up, pod start-up, and memory, each against a baseline
measured in the same run.

    sudo .venv/bin/python bench/bench_foundation.py [--pods 30] [--trials 10]

- up: `nanokube up --isolated --nodes 3` until every node is Ready, vs the floor of starting
  the same four Python processes that only import their code (interpreter + imports).
- pod start-up: a 1-replica Deployment created → its pod Ready (seen by a watch), p50/p99
  over --trials, vs starting the same busybox container straight through the runtime
  (shim, namespaces, overlay; no API, no scheduling).
- 30 pods across 3 nodes: one Deployment of --pods replicas → all Ready.
- memory: RSS/PSS of the server and of one agent, idle with 10 pods.
Everything runs in namespaces the benchmark creates and removes; traffic stays inside them.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def deployment(name: str, replicas: int) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"bench": name}},
                     "template": {"metadata": {"labels": {"bench": name}},
                                  "spec": {"terminationGracePeriodSeconds": 1,
                                           "containers": [{"name": "c", "image": "busybox",
                                                           "command": ["sleep", "3600"]}]}}}}


async def ready_times(client, name: str, replicas: int, timeout: float = 120) -> float:
    """Create the Deployment; seconds until `replicas` of its pods are Ready (via a watch)."""
    lst = await client.list("pods", namespace="default", label_selector=f"bench={name}")
    t0 = time.perf_counter()
    await client.create("deployments", deployment(name, replicas), namespace="default")
    ready: set[str] = set()
    async for typ, pod in client.watch("pods", namespace="default", label_selector=f"bench={name}",
                                       resource_version=lst["metadata"]["resourceVersion"], timeout_seconds=int(timeout)):
        conds = (pod.get("status") or {}).get("conditions") or []
        if any(c["type"] == "Ready" and c["status"] == "True" for c in conds):
            ready.add(pod["metadata"]["name"])
        if len(ready) >= replicas:
            return time.perf_counter() - t0
    raise TimeoutError(name)


async def wipe(client, name: str) -> None:
    await client.delete("deployments", name, namespace="default")
    for _ in range(300):
        if not (await client.list("pods", namespace="default", label_selector=f"bench={name}"))["items"]:
            return
        await asyncio.sleep(0.1)


def mem(pid: int) -> tuple[float, float]:
    p = psutil.Process(pid)
    full = p.memory_full_info()
    return full.rss / 2**20, full.pss / 2**20


def import_floor() -> float:
    t0 = time.perf_counter()
    procs = [subprocess.Popen([PY, "-c", "import nanokube.apiserver.server, nanokube.controllers.manager, nanokube.scheduler.scheduler"])]
    procs += [subprocess.Popen([PY, "-c", "import nanokube.cli.agent"]) for _ in range(3)]
    for p in procs:
        p.wait()
    return time.perf_counter() - t0


def runtime_floor(trials: int) -> list[float]:
    from nanokube.host import netns
    from nanokube.host.cgroups import detect
    from nanokube.runtime.images import ImageStore
    from nanokube.runtime.runtime import ContainerConfig, Runtime
    name = "nkp-bench" + secrets.token_hex(2)
    netns.create(name)
    out = []
    with tempfile.TemporaryDirectory() as d:
        rt = Runtime(state_dir=Path(d), images=ImageStore(Path("/var/lib/nanokube/images")), cgroups=detect())

        async def go() -> None:
            for i in range(trials):
                cfg = ContainerConfig(id=f"b{i}", pod_uid="bench", namespace="default", pod_name="b", name="c",
                                      image="busybox", argv=["sleep", "3600"], env=[], netns_path=netns.path(name),
                                      cgroup=f"nanokube-bench-{name}/c{i}")
                t0 = time.perf_counter()
                st = await rt.start(cfg)
                out.append(time.perf_counter() - t0)
                assert st.state == "running"
                await rt.remove(cfg.id)
            rt.cgroups.remove(f"nanokube-bench-{name}")
        asyncio.run(go())
    netns.delete(name)
    return out


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pods", type=int, default=30)
    ap.add_argument("--trials", type=int, default=10)
    args = ap.parse_args()
    cluster = "b" + secrets.token_hex(3)
    state = Path(tempfile.mkdtemp(prefix="nkbench"))
    floor = import_floor()
    t0 = time.perf_counter()
    r = subprocess.run([PY, "-m", "nanokube", "up", "--isolated", "--detach", "--nodes", "3", "--cluster", cluster,
                        "--state-dir", str(state)], capture_output=True, text=True)
    up = time.perf_counter() - t0
    if r.returncode != 0:
        print(r.stdout, r.stderr)
        sys.exit(1)
    results: dict[str, object] = {}
    try:
        info = json.loads((state / cluster / "cluster.json").read_text())
        from nanokube.client.http import HttpClient
        from nanokube.host import netns

        async def bench() -> dict:
            client = HttpClient.from_kubeconfig(info["kubeconfig"])
            try:
                singles = []
                for i in range(args.trials):
                    singles.append(await ready_times(client, f"one{i}", 1))
                    await wipe(client, f"one{i}")
                many = await ready_times(client, "many", args.pods)
                await wipe(client, "many")
                await ready_times(client, "idle", 10)
                await asyncio.sleep(5)
                return {"singles": singles, "many": many}
            finally:
                await client.close()
        out = netns.run_in(info["host_netns"], lambda: asyncio.run(bench()))
        server_pid = int((state / cluster / "pids" / "server.pid").read_text())
        agent_pid = int((state / cluster / "pids" / "node1.pid").read_text())
        srv, agt = mem(server_pid), mem(agent_pid)
        # each container's shim: shim.py, which execs the compiled monitor once the container runs
        shims = [p for p in psutil.process_iter(["cmdline"]) if any(a.endswith(("shim.py", "nk-monitor"))
                                                                    for a in (p.info["cmdline"] or [])[:3])
                 and str(state) in " ".join(p.info["cmdline"] or [])]
        shim_mem = [mem(p.pid) for p in shims]
    finally:
        subprocess.run([PY, "-m", "nanokube", "down", "--cluster", cluster, "--state-dir", str(state)], capture_output=True)
        shutil.rmtree(state, ignore_errors=True)
    direct = runtime_floor(args.trials)
    singles = out["singles"]
    print(f"up --nodes 3 to Ready:        {up:6.2f} s   (target <= 10 s; kind 12-17 s)   "
          f"baseline: start+import of the 4 processes {floor:.2f} s -> ratio {up / floor:.2f}x")
    print("pod start-up samples: " + " ".join(f"{x:.2f}" for x in singles))
    print(f"pod start-up (1 pod, n={len(singles)}):  p50 {pct(singles, 50):.3f} s  p99 {pct(singles, 99):.3f} s  "
          f"(target p99 <= 1 s)   baseline: runtime alone p50 {pct(direct, 50):.3f} s -> ratio "
          f"{pct(singles, 50) / pct(direct, 50):.2f}x")
    print(f"{args.pods} pods over 3 nodes Ready:  {out['many']:6.2f} s   (target <= 5 s)   "
          f"baseline: {args.pods} x runtime alone {args.pods * pct(direct, 50):.2f} s -> ratio "
          f"{out['many'] / (args.pods * pct(direct, 50)):.2f}x")
    print(f"server idle, 10 pods:   RSS {srv[0]:6.1f} MB  PSS {srv[1]:6.1f} MB   (target <= 120 MB; k3s server ~500 MB)")
    print(f"one agent idle:         RSS {agt[0]:6.1f} MB  PSS {agt[1]:6.1f} MB   (target <= 60 MB; k3s agent ~275 MB)")
    if shim_mem:
        print(f"per-container shim:     RSS {statistics.mean(m[0] for m in shim_mem):6.1f} MB  "
              f"PSS {statistics.mean(m[1] for m in shim_mem):6.1f} MB   (n={len(shim_mem)}; design target 3 MB)")


if __name__ == "__main__":
    main()
