"""DaemonSet controller: eligibility predicates (pure) and the controller against the real
registry over a memory store (a test plays the kubelet by marking pods ready)."""
import asyncio
import copy

import pytest

from nanokube.apiserver.registry import Registry
from nanokube.client.local import LocalClient
from nanokube.controllers.daemonset import (HASH_LABEL, DaemonSetController, plan_rolling_update, plan_surge,
                                            should_run, template_hash)
from nanokube.store import MemoryStore
from .helpers import until

NS = "default"


def node(name, labels=None, taints=None):
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
            "spec": {"taints": taints or []},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}}


def ds(name="d", **podspec):
    spec = {"containers": [{"name": "c", "image": "busybox"}], **podspec}
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name, "namespace": NS, "generation": 1},
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": spec}}}


def test_should_run_selector_affinity_taints():
    assert should_run(ds(), node("a")) == (True, True)
    assert should_run(ds(nodeSelector={"disk": "ssd"}), node("a")) == (False, False)
    assert should_run(ds(nodeSelector={"disk": "ssd"}), node("a", {"disk": "ssd"})) == (True, True)
    aff = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1", "z2"]}]},
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["special"]}]}]}}}
    assert should_run(ds(affinity=aff), node("a", {"zone": "z2"}))[0]
    assert not should_run(ds(affinity=aff), node("a", {"zone": "z3"}))[0]
    assert should_run(ds(affinity=aff), node("special"))[0]
    notin = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]}]}}}
    assert should_run(ds(affinity=notin), node("a"))[0] and not should_run(ds(affinity=notin), node("a", {"gpu": "1"}))[0]
    # NoSchedule: no new pod, but a running one stays; NoExecute: it goes.
    assert should_run(ds(), node("a", taints=[{"key": "k", "value": "v", "effect": "NoSchedule"}])) == (False, True)
    assert should_run(ds(), node("a", taints=[{"key": "k", "effect": "NoExecute"}])) == (False, False)
    tol = [{"key": "k", "operator": "Equal", "value": "v", "effect": "NoSchedule"}]
    assert should_run(ds(tolerations=tol), node("a", taints=[{"key": "k", "value": "v", "effect": "NoSchedule"}]))[0]
    # PreferNoSchedule never blocks; the automatic daemon tolerations cover cordoned / not-ready nodes.
    assert should_run(ds(), node("a", taints=[{"key": "k", "effect": "PreferNoSchedule"}]))[0]
    for key, effect in (("node.kubernetes.io/unschedulable", "NoSchedule"), ("node.kubernetes.io/not-ready", "NoExecute"),
                        ("node.kubernetes.io/unreachable", "NoExecute"), ("node.kubernetes.io/disk-pressure", "NoSchedule")):
        assert should_run(ds(), node("a", taints=[{"key": key, "effect": effect}])) == (True, True), key
    assert not should_run(ds(), node("a", taints=[{"key": "node.kubernetes.io/network-unavailable",
                                                  "effect": "NoSchedule"}]))[0]
    assert should_run(ds(hostNetwork=True), node("a", taints=[{"key": "node.kubernetes.io/network-unavailable",
                                                              "effect": "NoSchedule"}]))[0]


def _pod(name, node_name, h, ready=True):
    return {"metadata": {"name": name, "labels": {HASH_LABEL: h}}, "spec": {"nodeName": node_name},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def test_plan_rolling_update():
    d = ds()
    d["spec"]["updateStrategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}
    pods = {n: [_pod(f"p-{n}", n, "old")] for n in ("a", "b", "c")}
    assert len(plan_rolling_update(d, pods, {"a", "b", "c"}, "new")) == 1
    pods["a"] = [_pod("p-a2", "a", "new", ready=False)]  # one replaced, not ready yet: no budget left
    assert plan_rolling_update(d, pods, {"a", "b", "c"}, "new") == []
    pods["a"] = [_pod("p-a2", "a", "new")]
    pods["b"] = [_pod("p-b", "b", "old", ready=False)]  # an unavailable old pod is replaced for free
    assert [p["metadata"]["name"] for p in plan_rolling_update(d, pods, {"a", "b", "c"}, "new")] == ["p-b", "p-c"]
    d["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] = "100%"
    pods = {n: [_pod(f"p-{n}", n, "old")] for n in ("a", "b", "c")}
    assert len(plan_rolling_update(d, pods, {"a", "b", "c"}, "new")) == 3
    assert template_hash({"a": 1}) == template_hash({"a": 1}) != template_hash({"a": 2})


def test_plan_surge_starts_new_pods_before_removing_old_ones():
    d = ds()
    d["spec"]["updateStrategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    want = {"a", "b", "c"}
    pods = {n: [_pod(f"p-{n}", n, "old")] for n in ("a", "b", "c")}
    assert plan_surge(d, pods, want, "new") == ([], ["a"])  # one node at a time, nothing deleted yet
    pods["a"].append(_pod("p-a2", "a", "new", ready=False))
    assert plan_surge(d, pods, want, "new") == ([], [])  # surging on a: no budget left
    pods["a"][1] = _pod("p-a2", "a", "new")
    gone, start = plan_surge(d, pods, want, "new")
    assert [p["metadata"]["name"] for p in gone] == ["p-a"] and start == ["b"]  # a is done: the next node surges
    pods["a"] = [pods["a"][1]]
    pods["b"] = [_pod("p-b", "b", "old", ready=False)]  # not available anyway: replaced without surging
    gone, start = plan_surge(d, pods, want, "new")
    assert [p["metadata"]["name"] for p in gone] == ["p-b"] and start == ["c"]
    d["spec"]["updateStrategy"]["rollingUpdate"]["maxSurge"] = "100%"
    pods = {n: [_pod(f"p-{n}", n, "old")] for n in ("a", "b", "c")}
    assert plan_surge(d, pods, want, "new")[1] == ["a", "b", "c"]


async def live_pods(c):
    return [p for p in (await c.list("pods", namespace=NS))["items"] if not p["metadata"].get("deletionTimestamp")]


async def kubelet(c):
    """Mark pods ready and finish deletions, as kubelets would."""
    for p in (await c.list("pods", namespace=NS))["items"]:
        if p["metadata"].get("deletionTimestamp"):
            await c.delete("pods", p["metadata"]["name"], namespace=NS, grace_period_seconds=0)
        elif not any(x["type"] == "Ready" for x in p["status"].get("conditions", [])):
            p = copy.deepcopy(p)
            p["status"].update(phase="Running", conditions=[{"type": "Ready", "status": "True"}])
            await c.update("pods", p, namespace=NS, subresource="status")


async def test_daemonset_controller(schemas):
    c = LocalClient(Registry(MemoryStore(), schemas=schemas))
    await c.create("namespaces", {"metadata": {"name": NS}})
    await c.create("serviceaccounts", {"metadata": {"name": "default"}}, namespace=NS)  # pods need it (admission)
    for n in ("n1", "n2", "n3"):
        await c.create("nodes", node(n))
    task = asyncio.create_task(DaemonSetController(c).run())
    try:
        d = ds()
        del d["metadata"]["generation"]
        await c.create("daemonsets", d, namespace=NS)

        async def on_nodes(names):
            pods = await live_pods(c)
            return pods if sorted(p["spec"].get("nodeName") for p in pods) == sorted(names) else None
        pods = await until(lambda: on_nodes(["n1", "n2", "n3"]))
        p = pods[0]
        assert p["metadata"]["ownerReferences"][0]["kind"] == "DaemonSet"
        assert p["metadata"]["labels"][HASH_LABEL] and p["metadata"]["labels"]["pod-template-generation"] == "1"
        assert p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] == {
            "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In",
                                                    "values": [p["spec"]["nodeName"]]}]}]}
        assert {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"} in \
            p["spec"]["tolerations"]
        await kubelet(c)

        async def status(**want):
            st = (await c.get("daemonsets", "d", namespace=NS))["status"]
            return st if all(st.get(k, 0) == v for k, v in want.items()) else None
        await until(lambda: status(desiredNumberScheduled=3, currentNumberScheduled=3, numberReady=3,
                                   numberAvailable=3, updatedNumberScheduled=3, numberMisscheduled=0,
                                   observedGeneration=1))
        # A new node gets a pod; a removed node's pod goes; NoExecute evicts.
        await c.create("nodes", node("n4"))
        await until(lambda: on_nodes(["n1", "n2", "n3", "n4"]))
        await c.delete("nodes", "n4")
        await until(lambda: on_nodes(["n1", "n2", "n3"]))
        await c.patch("nodes", "n3", {"spec": {"taints": [{"key": "k", "value": "v", "effect": "NoExecute"}]}})
        await until(lambda: on_nodes(["n1", "n2"]))
        await kubelet(c)
        await until(lambda: status(desiredNumberScheduled=2, currentNumberScheduled=2))
        # Template change: a rolling update, never more than one node without a ready new pod.
        await c.patch("daemonsets", "d", {"spec": {"template": {"metadata": {"labels": {"app": "d", "v": "2"}}}}},
                      namespace=NS)
        new_hash = None
        for _ in range(200):
            pods = await live_pods(c)
            ready_new = 0
            for p in pods:
                if p["metadata"]["labels"].get("v") == "2":
                    new_hash = p["metadata"]["labels"][HASH_LABEL]
            # at most one node lacks a ready pod at any time
            ready = [p for p in pods if any(x["type"] == "Ready" and x["status"] == "True"
                                            for x in p["status"].get("conditions", []))]
            assert len({p["spec"]["nodeName"] for p in ready}) >= 1
            ready_new = sum(1 for p in ready if p["metadata"]["labels"].get("v") == "2")
            if ready_new == 2 and len(pods) == 2:
                break
            await kubelet(c)
            await asyncio.sleep(0.03)
        else:
            raise AssertionError("rolling update did not finish")
        st = await until(lambda: status(updatedNumberScheduled=2, numberReady=2, observedGeneration=2))
        assert new_hash
        assert st["desiredNumberScheduled"] == 2
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
