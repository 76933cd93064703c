"""Issue 8's numbers: Deployments at scale and the ReplicaSet controller's throughput, each
against a baseline measured in the same run.

    sudo .venv/bin/python bench/bench_controllers.py [--replicas 100] [--baseline-replicas 30]
                                                     [--rs-pods 1000] [--skip-cluster]

- In memory (no kubelets, no sockets): the ReplicaSet controller, over Registry(MemoryStore)
  + LocalClient exactly as `nanokube server` wires it, creating --rs-pods pods for one
  ReplicaSet (pods/s, until the ReplicaSet's status counts them all) vs --rs-pods direct
  Registry creates of the same pods (the floor: admission, validation, storage).
- On a local isolated 3-node cluster: a Deployment of --replicas busybox pods from create
  to all Ready (Deployment status availableReplicas), then a rolling update of it (a
  template change, default 25%/25%) until the rollout is complete; both also for
  --baseline-replicas in the same cluster, printed as a per-pod time ratio.
Everything runs in namespaces the benchmark creates and removes; traffic stays inside them.
"""
from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PY = sys.executable


def pod_template(label: str) -> dict:
    return {"metadata": {"labels": {"bench": label}},
            "spec": {"terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]}}


# -- in memory: the ReplicaSet controller ---------------------------------------------------------
async def rs_throughput(n: int) -> tuple[float, float]:
    """Seconds for the ReplicaSet controller to create n pods; seconds for n direct creates."""
    from nanokube.api.schema import load_schemas
    from nanokube.apiserver.registry import Registry
    from nanokube.client.local import LocalClient
    from nanokube.controllers.replicaset import ReplicaSetController
    from nanokube.store import MemoryStore

    schemas = load_schemas(Path(tempfile.mkdtemp(prefix="nkbench-schemas")))

    async def fresh() -> tuple[Registry, LocalClient]:
        reg = Registry(MemoryStore(), schemas=schemas)
        c = LocalClient(reg)
        await c.create("namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})
        # What the serviceaccount controller would add; pod admission requires it.
        await c.create("serviceaccounts", {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}},
                       namespace="default")
        return reg, c

    # Baseline: the same pods created straight through the registry.
    _, c = await fresh()
    t0 = time.perf_counter()
    for i in range(n):
        await c.create("pods", {"apiVersion": "v1", "kind": "Pod",
                                "metadata": {"name": f"direct-{i}", "namespace": "default", "labels": {"bench": "d"}},
                                "spec": copy.deepcopy(pod_template("d")["spec"])}, namespace="default")
    direct = time.perf_counter() - t0

    _, c = await fresh()
    ctl = ReplicaSetController(c)
    task = asyncio.create_task(ctl.run())
    try:
        await asyncio.gather(*(i.wait_synced() for i in ctl.informers))
        t0 = time.perf_counter()
        await c.create("replicasets", {"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                       "metadata": {"name": "rs", "namespace": "default"},
                                       "spec": {"replicas": n, "selector": {"matchLabels": {"bench": "rs"}},
                                                "template": pod_template("rs")}}, namespace="default")
        while True:
            rs = await c.get("replicasets", "rs", namespace="default")
            if (rs.get("status") or {}).get("replicas") == n:
                break
            await asyncio.sleep(0.01)
        controller = time.perf_counter() - t0
        assert len((await c.list("pods", namespace="default"))["items"]) == n
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return controller, direct


# -- on a cluster: Deployments ------------------------------------------------------------------------
def deployment(name: str, replicas: int) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"bench": name}},
                     "template": pod_template(name)}}


async def until_complete(client, name: str, replicas: int, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        d = await client.get("deployments", name, namespace="default")
        st = d.get("status") or {}
        if (st.get("observedGeneration", 0) >= d["metadata"]["generation"] and st.get("replicas") == replicas
                and st.get("updatedReplicas") == replicas and st.get("availableReplicas") == replicas):
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"deployment {name} not complete")


async def deploy_and_roll(client, name: str, replicas: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    await client.create("deployments", deployment(name, replicas), namespace="default")
    await until_complete(client, name, replicas, timeout=600)
    up = time.perf_counter() - t0
    t0 = time.perf_counter()
    await client.patch("deployments", name, {"spec": {"template": {"metadata": {"annotations": {"bench/rev": "2"}}}}},
                       namespace="default", patch_type="merge")
    await until_complete(client, name, replicas, timeout=900)
    roll = time.perf_counter() - t0
    await client.delete("deployments", name, namespace="default")
    for _ in range(1200):
        if not (await client.list("pods", namespace="default", label_selector=f"bench={name}"))["items"]:
            break
        await asyncio.sleep(0.25)
    return up, roll


def cluster_numbers(args: argparse.Namespace) -> dict:
    cluster = args.cluster_prefix + secrets.token_hex(3)
    state = Path(tempfile.mkdtemp(prefix="nkbench"))
    r = subprocess.run([PY, "-m", "nanokube", "up", "--isolated", "--detach", "--nodes", "3", "--cluster", cluster,
                        "--state-dir", str(state), "--timeout", "120"], capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0:
        subprocess.run([PY, "-m", "nanokube", "down", "--cluster", cluster, "--state-dir", str(state)], capture_output=True,
                       cwd=ROOT)
        raise SystemExit(f"nanokube up failed: {r.stdout}{r.stderr}")
    try:
        info = json.loads((state / cluster / "cluster.json").read_text())
        from nanokube.client.http import HttpClient
        from nanokube.host import netns

        async def bench() -> dict:
            client = HttpClient.from_kubeconfig(info["kubeconfig"])
            try:
                base = await deploy_and_roll(client, "base", args.baseline_replicas)
                big = await deploy_and_roll(client, "big", args.replicas)
                return {"base": base, "big": big}
            finally:
                await client.close()
        return netns.run_in(info["host_netns"], lambda: asyncio.run(bench()))
    finally:
        subprocess.run([PY, "-m", "nanokube", "down", "--cluster", cluster, "--state-dir", str(state)], capture_output=True,
                       cwd=ROOT)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--replicas", type=int, default=100)
    ap.add_argument("--baseline-replicas", type=int, default=30)
    ap.add_argument("--rs-pods", type=int, default=1000)
    ap.add_argument("--skip-cluster", action="store_true")
    ap.add_argument("--cluster-prefix", default=os.environ.get("NK_TEST_CLUSTER_PREFIX", "b"))
    args = ap.parse_args()

    controller, direct = asyncio.run(rs_throughput(args.rs_pods))
    print(f"ReplicaSet controller, {args.rs_pods} pods (memory store): {controller:6.2f} s = {args.rs_pods / controller:7.0f} pods/s   "
          f"baseline: {args.rs_pods} direct registry creates {direct:6.2f} s = {args.rs_pods / direct:7.0f} pods/s "
          f"-> ratio {controller / direct:.2f}x")
    if args.skip_cluster:
        return
    out = cluster_numbers(args)
    (bu, br), (gu, gr) = out["base"], out["big"]
    n, b = args.replicas, args.baseline_replicas
    print(f"Deployment {b:4d} replicas, 3 nodes: create -> all available {bu:7.2f} s ({bu / b * 1000:6.1f} ms/pod)   "
          f"rolling update {br:7.2f} s ({br / b * 1000:6.1f} ms/pod)")
    print(f"Deployment {n:4d} replicas, 3 nodes: create -> all available {gu:7.2f} s ({gu / n * 1000:6.1f} ms/pod)   "
          f"rolling update {gr:7.2f} s ({gr / n * 1000:6.1f} ms/pod)")
    print(f"per-pod time ratio {n} vs {b} replicas (baseline: the {b}-replica run in the same cluster): "
          f"create {(gu / n) / (bu / b):.2f}x, rolling update {(gr / n) / (br / b):.2f}x")


if __name__ == "__main__":
    main()
