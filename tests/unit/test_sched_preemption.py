"""Preemption, pure: which node is freed and which lower-priority pods are the victims."""
import random

import pytest

from nanokube.scheduler import preemption
from nanokube.scheduler.framework import NodeInfo, Snapshot, schedule, unschedulable_message
from nanokube.scheduler.scheduler import plugins_for


def node(name, cpu="4", labels=None, taints=None):
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
            "spec": {"taints": taints or []},
            "status": {"allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def pod(name, cpu="1", prio=0, node_name=None, policy=None, selector=None, start="2026-01-01T00:00:00Z"):
    spec = {"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": cpu}}}], "priority": prio}
    if node_name:
        spec["nodeName"] = node_name
    if policy:
        spec["preemptionPolicy"] = policy
    if selector:
        spec["nodeSelector"] = selector
    return {"metadata": {"name": name, "namespace": "default", "labels": {"app": name}, "creationTimestamp": start},
            "spec": spec, "status": {"startTime": start}}


def cluster(placement):
    """placement: node name → list of pods on it (each node 4 cpu)."""
    infos = []
    for n, pods in placement.items():
        ni = NodeInfo(node(n))
        for p in pods:
            p["spec"]["nodeName"] = n
            ni.add_pod(p)
        infos.append(ni)
    return Snapshot(infos)


def run(incoming, snap):
    plugins = plugins_for()
    res = schedule(incoming, snap, plugins, random.Random(1))
    assert res.node is None
    return preemption.preempt(incoming, snap, plugins, res.reasons), res


@pytest.mark.parametrize("cpu, placement, want_node, want_victims", [
    # the node whose most important victim is least important
    ("2", {"a": [pod("a1", "3", prio=50)], "b": [pod("b1", "3", prio=10)]}, "b", ["b1"]),
    # reprieve keeps the more important pod where one victim is enough
    ("2", {"a": [pod("a1", "2", prio=10), pod("a2", "2", prio=10)], "b": [pod("b1", "2", prio=10), pod("b2", "2", prio=5)]},
     "b", ["b2"]),
    # same top priority: the lower sum of priorities
    ("4", {"a": [pod("a1", "2", prio=10), pod("a2", "2", prio=10)], "b": [pod("b1", "4", prio=10)]}, "b", ["b1"]),
    # reprieve: only as many victims as needed, the least important go first
    ("2", {"a": [pod("a1", "1", prio=1), pod("a2", "1", prio=2), pod("a3", "2", prio=3)]}, "a", ["a1", "a2"]),
    # equal-or-higher priority pods are never victims
    ("2", {"a": [pod("a1", "3", prio=100)], "b": [pod("b1", "2", prio=1), pod("b2", "2", prio=100)]}, "b", ["b1"]),
])
def test_candidate_and_victims(cpu, placement, want_node, want_victims):
    incoming = pod("vip", cpu, prio=100)
    (cand, msg), _ = run(incoming, cluster(placement))
    assert msg == ""
    assert cand.node == want_node
    assert sorted(v["metadata"]["name"] for v in cand.victims) == want_victims


def test_no_victims_and_not_helpful_in_upstream_words():
    snap = cluster({"a": [pod("a1", "3", prio=200)], "b": [pod("b1", "1", prio=0)]})
    snap.by_name["b"].node["spec"]["taints"] = [{"key": "k", "value": "v", "effect": "NoSchedule"}]
    incoming = pod("vip", "2", prio=100)
    (cand, msg), res = run(incoming, snap)
    assert cand is None
    assert unschedulable_message(2, res.reasons, post_filter=msg) == (
        "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {k: v}. "
        "preemption: 0/2 nodes are available: 1 No preemption victims found for incoming pod, "
        "1 Preemption is not helpful for scheduling.")


def test_preemption_policy_never():
    snap = cluster({"a": [pod("a1", "4", prio=0)]})
    (cand, msg), _ = run(pod("vip", "2", prio=100, policy="Never"), snap)
    assert cand is None and msg == "preemption: not eligible due to preemptionPolicy=Never."


def test_waits_while_a_victim_on_its_nominated_node_terminates():
    victim = pod("a1", "4", prio=0)
    victim["metadata"]["deletionTimestamp"] = "2026-01-01T00:01:00Z"
    snap = cluster({"a": [victim]})
    incoming = pod("vip", "2", prio=100)
    incoming["status"]["nominatedNodeName"] = "a"
    (cand, msg), _ = run(incoming, snap)
    assert cand is None and "terminating pod" in msg


def test_what_if_does_not_touch_the_cache():
    snap = cluster({"a": [pod("a1", "4", prio=0)]})
    before = dict(snap.by_name["a"].pods)
    run(pod("vip", "2", prio=100), snap)
    assert snap.by_name["a"].pods == before and snap.by_name["a"].requested.cpu == 4000
