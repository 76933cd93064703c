"""Issue 7's number: pods scheduled and bound per second, 5,000 pods onto 100 nodes that exist
only as API objects (no agents), with the pure plugin time and the API time separated.

    sudo .venv/bin/python bench/bench_scheduler.py [--pods 5000] [--nodes 100] [--store sqlite|memory]
                                                   [--affinity]

Everything runs in this process, wired as `nanokube server` wires it: Registry over the
store + LocalClient + Scheduler. The pods are created first (not timed), then the scheduler
starts and the clock runs until every pod is bound.

- **scheduler**: wall time for all pods; of it, the scheduling algorithm (filters + scores +
  preemption) and the binding calls (the API: admission, validation, storage, watch fan-out),
  as the scheduler measures them itself.
- **baseline** (same run, same store): the same number of bindings issued directly, one after
  the other, through the same client — the API floor a scheduler cannot beat. The ratio is
  scheduler / baseline wall time.
- **pure**: framework.schedule() alone over an in-memory snapshot of the same nodes, pods
  assumed as they are placed (no API at all).
`--affinity` gives every pod a preferred pod anti-affinity and a topology spread constraint
(ScheduleAnyway) over a zone label, so the cluster-wide plugins do real work.
"""
from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_node(i: int) -> dict:
    name = f"bench-node-{i:03d}"
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "topology.kubernetes.io/zone": f"z{i % 3}"}},
            "status": {"allocatable": {"cpu": "32", "memory": "128Gi", "pods": "110"},
                       "capacity": {"cpu": "32", "memory": "128Gi", "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def make_pod(i: int, *, affinity: bool) -> dict:
    app = f"app{i % 50}"
    spec: dict = {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"],
                                  "resources": {"requests": {"cpu": "100m", "memory": "100Mi"}}}]}
    if affinity:
        spec["affinity"] = {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 100, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": app}},
                                                "topologyKey": "kubernetes.io/hostname"}}]}}
        spec["topologySpreadConstraints"] = [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                              "whenUnsatisfiable": "ScheduleAnyway",
                                              "labelSelector": {"matchLabels": {"app": app}}}]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"p-{i:05d}", "namespace": "default", "labels": {"app": app}}, "spec": spec}


async def setup(store_kind: str, n_nodes: int, n_pods: int, *, affinity: bool, schemas):
    from nanokube.apiserver.registry import Registry
    from nanokube.client.local import LocalClient
    from nanokube.store import MemoryStore, SqliteStore
    store = MemoryStore() if store_kind == "memory" else SqliteStore(Path(tempfile.mkdtemp(prefix="nkbench-sched")) / "s.db")
    reg = Registry(store, schemas=schemas)
    c = LocalClient(reg)
    await c.create("namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})
    await c.create("serviceaccounts", {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}},
                   namespace="default")
    for i in range(n_nodes):
        await c.create("nodes", make_node(i))
    for i in range(n_pods):
        await c.create("pods", make_pod(i, affinity=affinity), namespace="default")
    return c


async def run_scheduler(c, n_pods: int) -> dict:
    from nanokube.scheduler.scheduler import Scheduler
    s = Scheduler(c, rng=random.Random(1))
    t0 = time.perf_counter()
    task = asyncio.create_task(s.run())
    deadline = t0 + 600
    while s.stats["scheduled"] < n_pods and time.perf_counter() < deadline:
        await asyncio.sleep(0.01)
    wall = time.perf_counter() - t0
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    pods = (await c.list("pods", namespace="default"))["items"]
    bound = sum(1 for p in pods if p["spec"].get("nodeName"))
    per_node: dict[str, int] = {}
    for p in pods:
        per_node[p["spec"].get("nodeName")] = per_node.get(p["spec"].get("nodeName"), 0) + 1
    return {"wall": wall, "bound": bound, "algorithm": s.stats["algorithm_s"], "bind": s.stats["bind_s"],
            "spread": (min(per_node.values()), max(per_node.values()))}


async def run_direct(c, n_pods: int, n_nodes: int) -> float:
    """The API floor: the same bindings, issued one after the other."""
    t0 = time.perf_counter()
    for i in range(n_pods):
        name = f"p-{i:05d}"
        await c.create_subresource("pods", name, "binding", {
            "apiVersion": "v1", "kind": "Binding", "metadata": {"name": name, "namespace": "default"},
            "target": {"apiVersion": "v1", "kind": "Node", "name": f"bench-node-{i % n_nodes:03d}"}}, namespace="default")
    return time.perf_counter() - t0


def run_pure(n_pods: int, n_nodes: int, *, affinity: bool) -> float:
    from nanokube.scheduler.framework import NodeInfo, Snapshot, schedule
    from nanokube.scheduler.scheduler import plugins_for
    snap = Snapshot([NodeInfo(make_node(i)) for i in range(n_nodes)], namespace_labels={"default": {}})
    plugins, rng = plugins_for(), random.Random(1)
    pods = []
    for i in range(n_pods):
        p = make_pod(i, affinity=affinity)
        p["spec"].update(schedulerName="default-scheduler", priority=0)
        pods.append(p)
    t0 = time.perf_counter()
    for p in pods:
        res = schedule(p, snap, plugins, rng)
        snap.by_name[res.node].add_pod(dict(p, spec=dict(p["spec"], nodeName=res.node)))
    return time.perf_counter() - t0


async def main_async(args) -> None:
    from nanokube.api.schema import load_schemas
    schemas = load_schemas(Path(tempfile.mkdtemp(prefix="nkbench-schemas")))
    print(f"{args.pods} pods onto {args.nodes} API-only nodes, store={args.store}, affinity={args.affinity}")
    pure = run_pure(args.pods, args.nodes, affinity=args.affinity)
    print(f"pure plugins:  {pure:6.2f} s  {args.pods / pure:8.0f} pods/s  ({pure / args.pods * 1e3:.2f} ms/pod)")
    c = await setup(args.store, args.nodes, args.pods, affinity=args.affinity, schemas=schemas)
    r = await run_scheduler(c, args.pods)
    print(f"scheduler:     {r['wall']:6.2f} s  {r['bound'] / r['wall']:8.0f} pods/s  bound {r['bound']}/{args.pods}; "
          f"algorithm {r['algorithm']:.2f} s, binding API {r['bind']:.2f} s (summed over concurrent binds); "
          f"pods per node min/max {r['spread'][0]}/{r['spread'][1]}")
    c2 = await setup(args.store, args.nodes, args.pods, affinity=args.affinity, schemas=schemas)
    direct = await run_direct(c2, args.pods, args.nodes)
    print(f"baseline:      {direct:6.2f} s  {args.pods / direct:8.0f} bindings/s  (direct bindings, no scheduler)")
    print(f"ratio scheduler/baseline wall time: {r['wall'] / direct:.2f}  "
          f"(target: >= 300 pods/s scheduled and bound: {'met' if r['bound'] / r['wall'] >= 300 else 'MISSED'})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pods", type=int, default=5000)
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--store", choices=("sqlite", "memory"), default="sqlite")
    ap.add_argument("--affinity", action="store_true")
    args = ap.parse_args()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
