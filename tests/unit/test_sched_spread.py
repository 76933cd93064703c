"""PodTopologySpread plugin: table-driven filter and score cases over small snapshots."""
from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from nanokube.scheduler.framework import NodeInfo, Snapshot, Unresolvable, schedule
from nanokube.scheduler.plugins import pod_topology_spread as pts

HOST = "kubernetes.io/hostname"
ZONE = "topology.kubernetes.io/zone"
WEB = {"app": "web"}


def node(name: str, zone: str | None = None, *, taints: list | None = None, **labels: str) -> dict[str, Any]:
    lb = {HOST: name, **labels}
    if zone:
        lb[ZONE] = zone
    n: dict[str, Any] = {"metadata": {"name": name, "labels": lb},
                         "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}}
    if taints:
        n["spec"] = {"taints": taints}
    return n


def tsc(key: str = ZONE, *, sel: dict[str, str] | None = WEB, skew: int = 1,
        when: str = "DoNotSchedule", **extra: Any) -> dict[str, Any]:
    c: dict[str, Any] = {"topologyKey": key, "maxSkew": skew, "whenUnsatisfiable": when, **extra}
    if sel is not None:
        c["labelSelector"] = {"matchLabels": sel}
    return c


def pod(name: str, labels: dict[str, str] | None = None, *, ns: str = "default",
        spread: list | None = None, terminating: bool = False, **spec: Any) -> dict[str, Any]:
    md: dict[str, Any] = {"name": name, "namespace": ns, "labels": labels or {}}
    if terminating:
        md["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    s: dict[str, Any] = {"containers": [{"name": "c", "image": "busybox"}], **spec}
    if spread:
        s["topologySpreadConstraints"] = spread
    return {"metadata": md, "spec": s}


def web(name: str, **kw: Any) -> dict[str, Any]:
    return pod(name, WEB, **kw)


def snapshot(nodes: list[dict], placed: dict[str, list[dict]] | None = None) -> Snapshot:
    infos = []
    for n in nodes:
        ni = NodeInfo(n)
        for p in (placed or {}).get(n["metadata"]["name"], []):
            ni.add_pod(p)
        infos.append(ni)
    return Snapshot(infos)


def filter_all(p: dict, snap: Snapshot) -> dict[str, str | None]:
    state = pts.pre_filter(p, snap)
    return {ni.name: pts.filter(p, ni, state) for ni in snap.nodes}


# zone a: n1, n2 (disk=ssd); zone b: n3
THREE = [node("n1", "a", disk="ssd"), node("n2", "a", disk="ssd"), node("n3", "b")]
SKEW = pts.REASON_SKEW
MISSING = Unresolvable(pts.REASON_MISSING_LABEL)
ALL_OK = {"n1": None, "n2": None, "n3": None}

FILTER_CASES = [
    # (id, nodes, incoming pod, placed pods per node, expected per node)
    ("no constraints", THREE, web("p"), {"n1": [web("w1")]}, ALL_OK),
    ("zone maxSkew 1: the empty zone only", THREE, web("p", spread=[tsc()]), {"n1": [web("w1")]},
     {"n1": SKEW, "n2": SKEW, "n3": None}),
    ("zone maxSkew 1: balanced zones accept", THREE, web("p", spread=[tsc()]),
     {"n1": [web("w1")], "n3": [web("w2")]}, ALL_OK),
    ("zone maxSkew 2 tolerates one more", THREE, web("p", spread=[tsc(skew=2)]), {"n1": [web("w1")]}, ALL_OK),
    ("hostname maxSkew 1", THREE, web("p", spread=[tsc(HOST)]), {"n1": [web("w1")], "n2": [web("w2")]},
     {"n1": SKEW, "n2": SKEW, "n3": None}),
    ("a pod outside its own selector adds nothing", THREE, pod("p", {"app": "other"}, spread=[tsc()]),
     {"n1": [web("w1")]}, ALL_OK),
    ("pods of other namespaces do not count", THREE, web("p", spread=[tsc()]),
     {"n1": [web("w1", ns="other")]}, ALL_OK),
    ("terminating pods do not count", THREE, web("p", spread=[tsc()]),
     {"n1": [web("w1", terminating=True)]}, ALL_OK),
    ("pods the selector does not pick do not count", THREE, web("p", spread=[tsc()]),
     {"n1": [pod("x", {"app": "db"})]}, ALL_OK),
    ("nil labelSelector counts nothing", THREE, web("p", spread=[tsc(sel=None)]),
     {"n1": [web("w1"), web("w2")]}, ALL_OK),
    ("ScheduleAnyway does not filter", THREE, web("p", spread=[tsc(when="ScheduleAnyway")]),
     {"n1": [web("w1"), web("w2")]}, ALL_OK),
    ("node without the topology key: unresolvable, and not a domain",
     THREE + [node("n4")], web("p", spread=[tsc()]), {"n1": [web("w1")], "n4": [web("w2"), web("w3")]},
     {"n1": SKEW, "n2": SKEW, "n3": None, "n4": MISSING}),
    ("minDomains above the domain count makes the minimum 0", THREE,
     web("p", spread=[tsc(minDomains=3)]), {"n1": [web("w1")], "n3": [web("w2")]},
     {"n1": SKEW, "n2": SKEW, "n3": SKEW}),
    ("minDomains met: the real minimum", THREE,
     web("p", spread=[tsc(minDomains=2)]), {"n1": [web("w1")], "n3": [web("w2")]}, ALL_OK),
    ("nodeAffinityPolicy Honor: zone b is not a domain of an ssd pod", THREE,
     web("p", spread=[tsc()], nodeSelector={"disk": "ssd"}), {"n1": [web("w1")]}, ALL_OK),
    ("nodeAffinityPolicy Ignore: zone b counts with 0", THREE,
     web("p", spread=[tsc(nodeAffinityPolicy="Ignore")], nodeSelector={"disk": "ssd"}),
     {"n1": [web("w1")]}, {"n1": SKEW, "n2": SKEW, "n3": None}),
    ("required node affinity is honored like nodeSelector", THREE,
     web("p", spread=[tsc()], affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
         "nodeSelectorTerms": [{"matchExpressions": [{"key": ZONE, "operator": "In", "values": ["a"]}]}]}}}),
     {"n1": [web("w1")]}, ALL_OK),
    ("nodeTaintsPolicy Ignore (default): tainted zone counts", [
        node("n1", "a"), node("n2", "b", taints=[{"key": "k", "value": "v", "effect": "NoSchedule"}])],
     web("p", spread=[tsc()]), {"n1": [web("w1")]}, {"n1": SKEW, "n2": None}),
    ("nodeTaintsPolicy Honor: untolerated tainted zone is not a domain", [
        node("n1", "a"), node("n2", "b", taints=[{"key": "k", "value": "v", "effect": "NoSchedule"}])],
     web("p", spread=[tsc(nodeTaintsPolicy="Honor")]), {"n1": [web("w1")]}, {"n1": None, "n2": None}),
    ("nodeTaintsPolicy Honor: tolerated taint keeps the domain", [
        node("n1", "a"), node("n2", "b", taints=[{"key": "k", "value": "v", "effect": "NoSchedule"}])],
     web("p", spread=[tsc(nodeTaintsPolicy="Honor")], tolerations=[{"key": "k", "operator": "Exists"}]),
     {"n1": [web("w1")]}, {"n1": SKEW, "n2": None}),
    ("matchLabelKeys: only pods of the same revision count", THREE,
     pod("p", {"app": "web", "hash": "v2"}, spread=[tsc(matchLabelKeys=["hash"])]),
     {"n1": [pod("old1", {"app": "web", "hash": "v1"}), pod("old2", {"app": "web", "hash": "v1"})]}, ALL_OK),
    ("every constraint must hold", THREE, web("p", spread=[tsc(), tsc(HOST)]),
     {"n1": [web("w1")], "n3": [web("w2")]}, {"n1": SKEW, "n2": None, "n3": SKEW}),
    ("a node lacking any constraint's key is not a domain of the others", [
        node("n1", "a"), node("n2", "b"), node("n3", "c", rack="r1")],
     web("p", spread=[tsc(), tsc("rack", skew=5)]), {"n1": [web("w1")]},
     # only n3 carries both keys: zone c is the only domain, so the minimum is its count, 0
     {"n1": MISSING, "n2": MISSING, "n3": None}),
]


@pytest.mark.parametrize("nodes,incoming,placed,want", [c[1:] for c in FILTER_CASES],
                         ids=[c[0] for c in FILTER_CASES])
def test_filter(nodes, incoming, placed, want):
    got = filter_all(incoming, snapshot(nodes, placed))
    assert got == want
    for n, reason in want.items():
        assert isinstance(got[n], Unresolvable) == isinstance(reason, Unresolvable), n


def test_no_constraints_is_free():
    assert pts.pre_filter(web("p"), snapshot(THREE)) is None
    assert pts.pre_score(web("p"), snapshot(THREE), snapshot(THREE).nodes) is None


def test_zone_spread_end_to_end():
    """Six replicas, three zones, maxSkew 1 → two per zone whatever the tie-breaks."""
    nodes = [node(f"n{i}", "abc"[i % 3]) for i in range(6)]
    for seed in range(5):
        snap = snapshot(nodes)
        rng = random.Random(seed)
        for i in range(6):
            p = web(f"w{i}", spread=[tsc()])
            res = schedule(p, snap, [pts], rng)
            assert res.node is not None
            snap.by_name[res.node].add_pod(p)
        assert Counter(ni.labels[ZONE] for ni, _ in snap.pods()) == {"a": 2, "b": 2, "c": 2}


def scores(p: dict, snap: Snapshot, feasible: list[NodeInfo] | None = None) -> dict[str, float]:
    feasible = snap.nodes if feasible is None else feasible
    state = pts.pre_score(p, snap, feasible)
    return pts.normalize({ni.name: pts.score(p, ni, state) for ni in feasible}, state)


SOFT = "ScheduleAnyway"
SCORE_CASES = [
    ("no soft constraints", THREE, web("p", spread=[tsc()]), {"n1": [web("w")]}, {"n1": 0, "n2": 0, "n3": 0}),
    ("zone: emptier zone scores highest", THREE, web("p", spread=[tsc(when=SOFT)]),
     {"n1": [web("w1")], "n2": [web("w2")]}, {"n1": 0, "n2": 0, "n3": 100}),
    ("no matching pods: every node 100", THREE, web("p", spread=[tsc(when=SOFT)]), {},
     {"n1": 100, "n2": 100, "n3": 100}),
    # weight log(3 + 2); counts 1, 0, 2 → round(1.61)=2, 0, round(3.22)=3; 100*(3+0-s)//3
    ("hostname: per-node counts", THREE, web("p", spread=[tsc(HOST, when=SOFT)]),
     {"n1": [web("w1")], "n3": [web("w2"), web("w3")]}, {"n1": 33, "n2": 100, "n3": 0}),
    # maxSkew − 1 is added to every node: 2+2, 0+2, 3+2 → 100*(5+2-s)//5
    ("maxSkew shifts the scores", THREE, web("p", spread=[tsc(HOST, when=SOFT, skew=3)]),
     {"n1": [web("w1")], "n3": [web("w2"), web("w3")]}, {"n1": 60, "n2": 100, "n3": 40}),
    ("a node without the key is ignored (0)", THREE + [node("n4")], web("p", spread=[tsc(when=SOFT)]),
     {"n1": [web("w1")]}, {"n1": 0, "n2": 0, "n3": 100, "n4": 0}),
    ("other namespaces do not count", THREE, web("p", spread=[tsc(when=SOFT)]),
     {"n1": [web("w1", ns="x")]}, {"n1": 100, "n2": 100, "n3": 100}),
]


@pytest.mark.parametrize("nodes,incoming,placed,want", [c[1:] for c in SCORE_CASES], ids=[c[0] for c in SCORE_CASES])
def test_score(nodes, incoming, placed, want):
    assert scores(incoming, snapshot(nodes, placed)) == want


def test_score_counts_pods_on_infeasible_nodes_of_a_feasible_domain():
    """n2 is not feasible, but its pods still crowd zone a, where n1 is."""
    snap = snapshot(THREE, {"n2": [web("w1"), web("w2")]})
    feasible = [snap.by_name["n1"], snap.by_name["n3"]]
    assert scores(web("p", spread=[tsc(when=SOFT)]), snap, feasible) == {"n1": 0, "n3": 100}


def test_plugin_protocol():
    assert pts.NAME == "PodTopologySpread" and pts.WEIGHT == 2
