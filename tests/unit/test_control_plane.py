"""The control plane without kernels: registry + controllers + scheduler over a memory store,
driven through the LocalClient exactly as `nanokube server` runs them."""
import asyncio
import json
from pathlib import Path

import pytest

from nanokube.apiserver.registry import Registry
from nanokube.client.local import LocalClient
from nanokube.controllers.manager import ControllerManager
from nanokube.scheduler.scheduler import Scheduler, plugins_for
from nanokube.scheduler.framework import NodeInfo, Snapshot, schedule, unschedulable_message
from nanokube.store import MemoryStore
from .helpers import until

DEPLOY = {
    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
    "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
             "template": {"metadata": {"labels": {"app": "web"}},
                          "spec": {"containers": [{"name": "c", "image": "busybox", "env": [{"name": "V", "value": "1"}]}]}}},
}


def node(name, cpu="2", ready=True):
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {"allocatable": {"cpu": cpu, "memory": "4Gi", "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


async def mark_ready(c, pods):
    for p in pods:
        if not any(x["type"] == "Ready" for x in p["status"].get("conditions", [])):
            p["status"]["conditions"] = p["status"].get("conditions", []) + [{"type": "Ready", "status": "True"}]
            p["status"]["phase"] = "Running"
            p["status"]["podIP"] = "10.244.1." + str(abs(hash(p["metadata"]["name"])) % 200 + 2)
            await c.update("pods", p, namespace="default", subresource="status")


async def test_deployment_to_scheduled_pods_and_rollout(schemas):
    reg = Registry(MemoryStore(), schemas=schemas)
    c = LocalClient(reg)
    cm = ControllerManager(c, apiserver_host="172.30.0.1", apiserver_port=6443)
    tasks = [asyncio.create_task(cm.run()), asyncio.create_task(Scheduler(c).run())]
    try:
        await until(lambda: _has(c, "namespaces", "default"))
        for n in ("node1", "node2", "node3"):
            await c.create("nodes", node(n))
        await until(lambda: _all_cidrs(c))
        await c.create("deployments", DEPLOY, namespace="default")
        await c.create("services", {"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}},
                       namespace="default")

        async def scheduled():
            pods = (await c.list("pods", namespace="default"))["items"]
            return pods if len(pods) == 3 and all(p["spec"].get("nodeName") for p in pods) else None
        pods = await until(scheduled)
        assert len({p["spec"]["nodeName"] for p in pods}) == 3, "pods not spread"
        await mark_ready(c, pods)

        async def endpoints():
            ep = await c.get("endpoints", "web", namespace="default")
            return len((ep.get("subsets") or [{}])[0].get("addresses", [])) == 3
        await until(endpoints)

        async def complete():
            d = await c.get("deployments", "web", namespace="default")
            st = d.get("status", {})
            return st.get("availableReplicas") == 3 and st.get("updatedReplicas") == 3 and st.get("observedGeneration") == d["metadata"]["generation"]
        await until(complete)
        # A template change rolls to a second ReplicaSet.
        await c.patch("deployments", "web", {"spec": {"template": {"spec": {"containers": [{"name": "c", "env": [{"name": "V", "value": "2"}]}]}}}},
                      namespace="default", patch_type="strategic")

        async def rolled():
            pods = [p for p in (await c.list("pods", namespace="default"))["items"] if not p["metadata"].get("deletionTimestamp")]
            await mark_ready(c, [p for p in pods if p["spec"].get("nodeName")])
            # Deleted pods on nodes wait for a kubelet: finish them as a kubelet would.
            for p in (await c.list("pods", namespace="default"))["items"]:
                if p["metadata"].get("deletionTimestamp"):
                    await c.delete("pods", p["metadata"]["name"], namespace="default", grace_period_seconds=0)
            return len(pods) == 3 and all(p["spec"]["containers"][0]["env"][0]["value"] == "2" for p in pods)
        await until(rolled, timeout=10)
        rss = (await c.list("replicasets", namespace="default"))["items"]
        assert len(rss) == 2 and sorted(r["spec"]["replicas"] for r in rss) == [0, 3]
        d = await c.get("deployments", "web", namespace="default")
        assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _has(c, res, name):
    try:
        await c.get(res, name)
        return True
    except Exception:
        return False


async def _all_cidrs(c):
    nodes = (await c.list("nodes"))["items"]
    cidrs = sorted(n.get("spec", {}).get("podCIDR", "") for n in nodes)
    return cidrs == ["10.244.1.0/24", "10.244.2.0/24", "10.244.3.0/24"]


def test_unschedulable_message_as_upstream():
    import random
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "3"}}}]}}
    infos = [NodeInfo(node("a")), NodeInfo(node("b", ready=False)), NodeInfo(node("c"))]
    infos[2].node["spec"] = {"unschedulable": True}
    res = schedule(pod, Snapshot(infos), plugins_for(), random.Random(1))
    assert res.node is None
    assert unschedulable_message(3, res.reasons) == (
        "0/3 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint "
        "{node.kubernetes.io/not-ready: }, 1 node(s) were unschedulable.")


async def test_shared_informers_one_cache_per_client_and_arguments():
    import asyncio
    from nanokube.apiserver.registry import Registry
    from nanokube.client.informer import shared
    from nanokube.client.local import LocalClient
    from nanokube.store import MemoryStore
    reg = Registry(MemoryStore())
    await reg.create("namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})
    c = LocalClient(reg)
    a, b = shared(c, "configmaps"), shared(c, "configmaps")
    assert a is b and shared(c, "configmaps", label_selector="x=y") is not a
    assert shared(LocalClient(reg), "configmaps") is not a  # per client
    seen_a, seen_b = [], []
    a.add_handler(on_add=lambda o: seen_a.append(o["metadata"]["name"]))
    t1, t2 = asyncio.create_task(a.run()), asyncio.create_task(b.run())
    await a.wait_synced()
    await reg.create("configmaps", {"metadata": {"name": "one", "namespace": "default"}})
    for _ in range(100):
        if a.get("default/one"):
            break
        await asyncio.sleep(0.01)
    # a handler added late hears of what is cached, as client-go's AddEventHandler
    b.add_handler(on_add=lambda o: seen_b.append(o["metadata"]["name"]))
    assert seen_a == ["one"] and seen_b == ["one"]
    # one user gone: still running for the other; the last one gone: stopped
    t1.cancel()
    await asyncio.gather(t1, return_exceptions=True)
    await reg.create("configmaps", {"metadata": {"name": "two", "namespace": "default"}})
    for _ in range(100):
        if b.get("default/two"):
            break
        await asyncio.sleep(0.01)
    assert b.get("default/two") is not None
    t2.cancel()
    await asyncio.gather(t2, return_exceptions=True)
    await asyncio.sleep(0)
    assert a._loop_task.done()
