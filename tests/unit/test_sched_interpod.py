"""InterPodAffinity plugin: table-driven filter and score cases over small snapshots."""
from __future__ import annotations

import random
from typing import Any

import pytest

from nanokube.scheduler.framework import NodeInfo, Snapshot, Unresolvable, schedule, unschedulable_message
from nanokube.scheduler.plugins import inter_pod_affinity as ipa

HOST = "kubernetes.io/hostname"
ZONE = "topology.kubernetes.io/zone"


def node(name: str, zone: str | None = None, **labels: str) -> dict[str, Any]:
    lb = {HOST: name, **labels}
    if zone:
        lb[ZONE] = zone
    return {"metadata": {"name": name, "labels": lb},
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}}


def term(sel: dict[str, str] | None, key: str = HOST, **extra: Any) -> dict[str, Any]:
    t: dict[str, Any] = {"topologyKey": key, **extra}
    if sel is not None:
        t["labelSelector"] = {"matchLabels": sel}
    return t


def pod(name: str, labels: dict[str, str] | None = None, *, ns: str = "default",
        aff: list | None = None, anti: list | None = None,
        pref_aff: list | None = None, pref_anti: list | None = None) -> dict[str, Any]:
    affinity: dict[str, Any] = {}
    if aff or pref_aff:
        affinity["podAffinity"] = {}
        if aff:
            affinity["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] = aff
        if pref_aff:
            affinity["podAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"] = [
                {"weight": w, "podAffinityTerm": t} for w, t in pref_aff]
    if anti or pref_anti:
        affinity["podAntiAffinity"] = {}
        if anti:
            affinity["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] = anti
        if pref_anti:
            affinity["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"] = [
                {"weight": w, "podAffinityTerm": t} for w, t in pref_anti]
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "busybox"}]}
    if affinity:
        spec["affinity"] = affinity
    return {"metadata": {"name": name, "namespace": ns, "labels": labels or {}}, "spec": spec}


def snapshot(nodes: list[dict], placed: dict[str, list[dict]] | None = None,
             ns_labels: dict[str, dict[str, str]] | None = None) -> Snapshot:
    infos = []
    for n in nodes:
        ni = NodeInfo(n)
        for p in (placed or {}).get(n["metadata"]["name"], []):
            ni.add_pod(p)
        infos.append(ni)
    return Snapshot(infos, namespace_labels=ns_labels)


def filter_all(p: dict, snap: Snapshot) -> dict[str, str | None]:
    state = ipa.pre_filter(p, snap)
    return {ni.name: ipa.filter(p, ni, state) for ni in snap.nodes}


THREE = [node("n1", "a"), node("n2", "a"), node("n3", "b")]
WEB = {"app": "web"}
ANTI_WEB = [term(WEB)]

FILTER_CASES = [
    # (id, incoming pod, placed pods per node, namespace labels, expected per node)
    ("no affinity, empty cluster", pod("p"), {}, None, {"n1": None, "n2": None, "n3": None}),
    ("no affinity, pods without affinity", pod("p"), {"n1": [pod("x", WEB)]}, None,
     {"n1": None, "n2": None, "n3": None}),
    ("anti-affinity by hostname", pod("p", WEB, anti=ANTI_WEB), {"n1": [pod("w1", WEB)]}, None,
     {"n1": ipa.REASON_ANTI_AFFINITY, "n2": None, "n3": None}),
    ("anti-affinity by zone", pod("p", WEB, anti=[term(WEB, ZONE)]), {"n1": [pod("w1", WEB)]}, None,
     {"n1": ipa.REASON_ANTI_AFFINITY, "n2": ipa.REASON_ANTI_AFFINITY, "n3": None}),
    ("anti-affinity ignores other namespaces", pod("p", WEB, anti=ANTI_WEB),
     {"n1": [pod("w1", WEB, ns="other")]}, None, {"n1": None, "n2": None, "n3": None}),
    ("anti-affinity with explicit namespaces", pod("p", anti=[term(WEB, namespaces=["other"])]),
     {"n1": [pod("w1", WEB, ns="other")], "n2": [pod("w2", WEB)]}, None,
     {"n1": ipa.REASON_ANTI_AFFINITY, "n2": None, "n3": None}),
    ("existing pod's anti-affinity repels us", pod("p", WEB),
     {"n3": [pod("e", {"app": "db"}, anti=ANTI_WEB)]}, None,
     {"n1": None, "n2": None, "n3": ipa.REASON_EXISTING_ANTI_AFFINITY}),
    ("existing pod's zone anti-affinity repels us from the zone", pod("p", WEB),
     {"n1": [pod("e", {"app": "db"}, anti=[term(WEB, ZONE)])]}, None,
     {"n1": ipa.REASON_EXISTING_ANTI_AFFINITY, "n2": ipa.REASON_EXISTING_ANTI_AFFINITY, "n3": None}),
    ("existing anti-affinity that does not select us", pod("p", {"app": "db"}),
     {"n1": [pod("e", WEB, anti=ANTI_WEB)]}, None, {"n1": None, "n2": None, "n3": None}),
    ("affinity to a zone with a match", pod("p", aff=[term({"app": "db"}, ZONE)]),
     {"n3": [pod("db", {"app": "db"})]}, None,
     {"n1": Unresolvable(ipa.REASON_AFFINITY), "n2": Unresolvable(ipa.REASON_AFFINITY), "n3": None}),
    ("affinity with no match anywhere and no self match", pod("p", aff=[term({"app": "db"})]), {}, None,
     {n: Unresolvable(ipa.REASON_AFFINITY) for n in ("n1", "n2", "n3")}),
    ("first pod of a group: matches its own term", pod("p", WEB, aff=[term(WEB, ZONE)]), {}, None,
     {"n1": None, "n2": None, "n3": None}),
    ("second pod of a group follows the first", pod("p", WEB, aff=[term(WEB, ZONE)]),
     {"n3": [pod("w1", WEB)]}, None,
     {"n1": Unresolvable(ipa.REASON_AFFINITY), "n2": Unresolvable(ipa.REASON_AFFINITY), "n3": None}),
    ("nodes lacking the topology key fail affinity", pod("p", WEB, aff=[term(WEB, "rack")]), {}, None,
     {n: Unresolvable(ipa.REASON_AFFINITY) for n in ("n1", "n2", "n3")}),
    ("nil labelSelector matches nothing", pod("p", WEB, anti=[term(None)]), {"n1": [pod("w", WEB)]}, None,
     {"n1": None, "n2": None, "n3": None}),
    ("empty labelSelector matches every pod", pod("p", anti=[{"topologyKey": HOST, "labelSelector": {}}]),
     {"n1": [pod("w", {"x": "y"})]}, None, {"n1": ipa.REASON_ANTI_AFFINITY, "n2": None, "n3": None}),
    ("namespaceSelector picks labelled namespaces",
     pod("p", anti=[term(WEB, namespaceSelector={"matchLabels": {"team": "a"}})]),
     {"n1": [pod("w1", WEB, ns="ta")], "n2": [pod("w2", WEB, ns="tb")], "n3": [pod("w3", WEB)]},
     {"ta": {"team": "a"}, "tb": {"team": "b"}},
     {"n1": ipa.REASON_ANTI_AFFINITY, "n2": None, "n3": None}),
    ("empty namespaceSelector means all namespaces", pod("p", anti=[term(WEB, namespaceSelector={})]),
     {"n1": [pod("w1", WEB, ns="ta")], "n2": [pod("w2", WEB, ns="tb")]}, {"ta": {}, "tb": {}},
     {"n1": ipa.REASON_ANTI_AFFINITY, "n2": ipa.REASON_ANTI_AFFINITY, "n3": None}),
    ("existing pod's namespaceSelector sees our namespace's labels",
     pod("p", WEB, ns="ta"),
     {"n2": [pod("e", anti=[term(WEB, namespaceSelector={"matchLabels": {"team": "a"}})])]},
     {"ta": {"team": "a"}},
     {"n1": None, "n2": ipa.REASON_EXISTING_ANTI_AFFINITY, "n3": None}),
    ("matchLabelKeys narrows to our own version",
     pod("p", {"app": "web", "v": "2"}, anti=[term(WEB, matchLabelKeys=["v"])]),
     {"n1": [pod("old", {"app": "web", "v": "1"})], "n2": [pod("new", {"app": "web", "v": "2"})]}, None,
     {"n1": None, "n2": ipa.REASON_ANTI_AFFINITY, "n3": None}),
    ("mismatchLabelKeys excludes our own tenant",
     pod("p", {"tenant": "t1"}, anti=[{"topologyKey": HOST, "labelSelector": {"matchExpressions": [
         {"key": "tenant", "operator": "Exists"}]}, "mismatchLabelKeys": ["tenant"]}]),
     {"n1": [pod("a", {"tenant": "t1"})], "n2": [pod("b", {"tenant": "t2"})]}, None,
     {"n1": None, "n2": ipa.REASON_ANTI_AFFINITY, "n3": None}),
    ("affinity checked before anti-affinity",
     pod("p", WEB, aff=[term({"app": "db"})], anti=[term(WEB)]),
     {"n1": [pod("db", {"app": "db"}), pod("w", WEB)]}, None,
     {"n1": ipa.REASON_ANTI_AFFINITY, "n2": Unresolvable(ipa.REASON_AFFINITY),
      "n3": Unresolvable(ipa.REASON_AFFINITY)}),
    ("affinity needs one pod matching all terms",
     pod("p", aff=[term({"app": "db"}, ZONE), term({"tier": "x"}, ZONE)]),
     {"n1": [pod("db", {"app": "db"})], "n3": [pod("both", {"app": "db", "tier": "x"})]}, None,
     {"n1": Unresolvable(ipa.REASON_AFFINITY), "n2": Unresolvable(ipa.REASON_AFFINITY), "n3": None}),
]


@pytest.mark.parametrize("incoming,placed,ns_labels,want", [c[1:] for c in FILTER_CASES],
                         ids=[c[0] for c in FILTER_CASES])
def test_filter(incoming, placed, ns_labels, want):
    got = filter_all(incoming, snapshot(THREE, placed, ns_labels))
    assert got == want
    for n, reason in want.items():  # Unresolvable exactly where upstream says so
        assert isinstance(got[n], Unresolvable) == isinstance(reason, Unresolvable), n


def test_pre_filter_skips_when_nothing_to_do():
    snap = snapshot(THREE, {"n1": [pod("x", WEB, pref_aff=[(5, term(WEB))])]})
    assert ipa.pre_filter(pod("p", WEB), snap) is None


def test_fourth_replica_has_no_node():
    """Three replicas with hostname anti-affinity fill three nodes; the fourth pends."""
    snap = snapshot(THREE)
    rng = random.Random(1)
    placed = []
    for i in range(4):
        p = pod(f"web-{i}", WEB, anti=ANTI_WEB)
        res = schedule(p, snap, [ipa], rng)
        if i < 3:
            assert res.node is not None and res.node not in placed
            placed.append(res.node)
            snap.by_name[res.node].add_pod(p)
        else:
            assert res.node is None
            assert unschedulable_message(3, res.reasons) == (
                "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules.")
    assert sorted(placed) == ["n1", "n2", "n3"]


def test_group_with_self_affinity_lands_together():
    snap = snapshot(THREE)
    rng = random.Random(7)
    nodes = set()
    for i in range(4):
        p = pod(f"g-{i}", WEB, aff=[term(WEB, ZONE)])
        res = schedule(p, snap, [ipa], rng)
        assert res.node is not None
        snap.by_name[res.node].add_pod(p)
        nodes.add(snap.by_name[res.node].labels[ZONE])
    assert len(nodes) == 1


def scores(p: dict, snap: Snapshot) -> dict[str, float]:
    feasible = snap.nodes
    state = ipa.pre_score(p, snap, feasible)
    return ipa.normalize({ni.name: ipa.score(p, ni, state) for ni in feasible}, state)


SCORE_CASES = [
    ("nothing to score", pod("p", WEB), {"n1": [pod("x", WEB)]}, {"n1": 0, "n2": 0, "n3": 0}),
    ("preferred affinity to a zone", pod("p", pref_aff=[(10, term(WEB, ZONE))]),
     {"n3": [pod("x", WEB)]}, {"n1": 0, "n2": 0, "n3": 100}),
    ("preferred anti-affinity by host", pod("p", pref_anti=[(10, term(WEB))]),
     {"n1": [pod("x", WEB)]}, {"n1": 0, "n2": 100, "n3": 100}),
    ("affinity and anti-affinity weights add up per domain",
     pod("p", pref_aff=[(4, term(WEB, ZONE))], pref_anti=[(2, term({"app": "db"}))]),
     {"n1": [pod("x", WEB)], "n2": [pod("d", {"app": "db"})]},
     # n1: +4, n2: +4 (zone a) −2, n3: 0 → min 0, max 4
     {"n1": 100, "n2": 50, "n3": 0}),
    ("existing pod's preferred affinity attracts us", pod("p", WEB),
     {"n3": [pod("e", pref_aff=[(5, term(WEB, ZONE))])]}, {"n1": 0, "n2": 0, "n3": 100}),
    ("existing pod's preferred anti-affinity repels us", pod("p", WEB),
     {"n1": [pod("e", pref_anti=[(5, term(WEB, ZONE))])]}, {"n1": 0, "n2": 0, "n3": 100}),
    ("existing pod's required affinity counts with weight 1", pod("p", WEB),
     {"n2": [pod("e", WEB, aff=[term(WEB)])]}, {"n1": 0, "n2": 100, "n3": 0}),
]


@pytest.mark.parametrize("incoming,placed,want", [c[1:] for c in SCORE_CASES], ids=[c[0] for c in SCORE_CASES])
def test_score(incoming, placed, want):
    assert scores(incoming, snapshot(THREE, placed)) == want


def test_plugin_protocol():
    assert ipa.NAME == "InterPodAffinity" and ipa.WEIGHT == 2


NS_LABELS = {"ta": {"team": "a"}, "tb": {"team": "b"}}
OWNER = pod("owner", {"app": "web", "v": "2", "tenant": "t1"}, ns="ta")
SELECT_CASES = [
    # (id, raw term, candidate pod, selected?)
    ("owner's namespace by default", term(WEB), pod("x", WEB, ns="ta"), True),
    ("other namespace by default", term(WEB), pod("x", WEB, ns="tb"), False),
    ("labels differ", term(WEB), pod("x", {"app": "db"}, ns="ta"), False),
    ("nil selector", term(None), pod("x", WEB, ns="ta"), False),
    ("empty selector", {"topologyKey": HOST, "labelSelector": {}}, pod("x", {"q": "r"}, ns="ta"), True),
    ("explicit namespaces", term(WEB, namespaces=["tb"]), pod("x", WEB, ns="tb"), True),
    ("explicit namespaces exclude the owner's", term(WEB, namespaces=["tb"]), pod("x", WEB, ns="ta"), False),
    ("namespaceSelector", term(WEB, namespaceSelector={"matchLabels": {"team": "b"}}), pod("x", WEB, ns="tb"), True),
    ("namespaceSelector miss", term(WEB, namespaceSelector={"matchLabels": {"team": "b"}}),
     pod("x", WEB, ns="ta"), False),
    ("namespaces OR namespaceSelector", term(WEB, namespaces=["ta"], namespaceSelector={"matchLabels": {"team": "b"}}),
     pod("x", WEB, ns="ta"), True),
    ("empty namespaceSelector", term(WEB, namespaceSelector={}), pod("x", WEB, ns="zz"), True),
    ("matchExpressions", {"topologyKey": HOST, "labelSelector": {"matchExpressions": [
        {"key": "app", "operator": "In", "values": ["web", "api"]}, {"key": "gone", "operator": "DoesNotExist"}]}},
     pod("x", {"app": "api"}, ns="ta"), True),
    ("matchExpressions miss", {"topologyKey": HOST, "labelSelector": {"matchExpressions": [
        {"key": "app", "operator": "NotIn", "values": ["web"]}]}}, pod("x", WEB, ns="ta"), False),
    ("matchLabelKeys same value", term(WEB, matchLabelKeys=["v"]), pod("x", {"app": "web", "v": "2"}, ns="ta"), True),
    ("matchLabelKeys other value", term(WEB, matchLabelKeys=["v"]), pod("x", {"app": "web", "v": "1"}, ns="ta"), False),
    ("matchLabelKeys key the owner lacks is ignored", term(WEB, matchLabelKeys=["zz"]), pod("x", WEB, ns="ta"), True),
    ("mismatchLabelKeys same value", term(WEB, mismatchLabelKeys=["tenant"]),
     pod("x", {"app": "web", "tenant": "t1"}, ns="ta"), False),
    ("mismatchLabelKeys other or no value", term(WEB, mismatchLabelKeys=["tenant"]), pod("x", WEB, ns="ta"), True),
]


@pytest.mark.parametrize("raw,candidate,want", [c[1:] for c in SELECT_CASES], ids=[c[0] for c in SELECT_CASES])
def test_term_selects_agrees_with_parsed_term(raw, candidate, want):
    """The raw fast path (existing pods' terms) and the parsed Term (the incoming pod's) agree."""
    assert ipa.parse_term(OWNER, raw).matches(candidate, NS_LABELS) is want
    assert ipa.term_selects(OWNER, raw, candidate, NS_LABELS) is want
