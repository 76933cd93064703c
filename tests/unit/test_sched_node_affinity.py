"""NodeAffinity (nodeSelector + node affinity), NodeName, NodeReady and NodeUnschedulable:
table-driven filter and score cases, plus the matcher shared with VolumeBinding and DaemonSets."""
from __future__ import annotations

import random
from typing import Any

import pytest

from nanokube.controllers.daemonset import should_run
from nanokube.scheduler.framework import NodeInfo, Snapshot, Unresolvable, schedule, unschedulable_message
from nanokube.scheduler.plugins import node_affinity as na
from nanokube.scheduler.plugins import node_name, node_ready, node_unschedulable
from nanokube.scheduler.plugins.volume_binding import volume_fits_node

AFF = "node(s) didn't match Pod's node affinity/selector"


def node(name: str, *, unschedulable: bool = False, ready: str | None = "True", **labels: str) -> dict[str, Any]:
    n: dict[str, Any] = {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **labels}},
                         "spec": {"unschedulable": True} if unschedulable else {},
                         "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}}
    if ready is not None:
        n["status"]["conditions"] = [{"type": "MemoryPressure", "status": "False"},
                                     {"type": "Ready", "status": ready}]
    return n


def expr(key: str, op: str, *values: str) -> dict[str, Any]:
    e: dict[str, Any] = {"key": key, "operator": op}
    if values:
        e["values"] = list(values)
    return e


def pod(*, selector: dict[str, str] | None = None, terms: list[dict[str, Any]] | None = None,
        preferred: list[tuple[int, dict[str, Any]]] | None = None, **spec: Any) -> dict[str, Any]:
    s: dict[str, Any] = {"containers": [{"name": "c", "image": "busybox"}], **spec}
    if selector is not None:
        s["nodeSelector"] = selector
    aff: dict[str, Any] = {}
    if terms is not None:
        aff["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": terms}
    if preferred is not None:
        aff["preferredDuringSchedulingIgnoredDuringExecution"] = [{"weight": w, "preference": t} for w, t in preferred]
    if aff:
        s["affinity"] = {"nodeAffinity": aff}
    return {"metadata": {"name": "p", "namespace": "default"}, "spec": s}


def run_filter(p: dict[str, Any], n: dict[str, Any]) -> Any:
    return na.filter(p, NodeInfo(n), na.pre_filter(p, None))


N1 = node("n1", zone="a", disk="ssd", gen="3")
N2 = node("n2", zone="b", gen="10")


@pytest.mark.parametrize("p, n, fits", [
    (pod(), N1, True),
    (pod(selector={}), N1, True),
    (pod(selector={"disk": "ssd"}), N1, True),
    (pod(selector={"disk": "ssd"}), N2, False),
    (pod(selector={"disk": "ssd", "zone": "b"}), N1, False),      # every label must match
    (pod(terms=[{"matchExpressions": [expr("zone", "In", "a", "c")]}]), N1, True),
    (pod(terms=[{"matchExpressions": [expr("zone", "In", "a", "c")]}]), N2, False),
    (pod(terms=[{"matchExpressions": [expr("zone", "NotIn", "a")]}]), N1, False),
    (pod(terms=[{"matchExpressions": [expr("zone", "NotIn", "a")]}]), N2, True),
    (pod(terms=[{"matchExpressions": [expr("disk", "NotIn", "ssd")]}]), N2, True),    # absent label
    (pod(terms=[{"matchExpressions": [expr("disk", "Exists")]}]), N1, True),
    (pod(terms=[{"matchExpressions": [expr("disk", "Exists")]}]), N2, False),
    (pod(terms=[{"matchExpressions": [expr("disk", "DoesNotExist")]}]), N2, True),
    (pod(terms=[{"matchExpressions": [expr("disk", "DoesNotExist")]}]), N1, False),
    (pod(terms=[{"matchExpressions": [expr("gen", "Gt", "5")]}]), N2, True),          # 10 > 5 as integers
    (pod(terms=[{"matchExpressions": [expr("gen", "Gt", "5")]}]), N1, False),
    (pod(terms=[{"matchExpressions": [expr("gen", "Lt", "5")]}]), N1, True),
    (pod(terms=[{"matchExpressions": [expr("zone", "Gt", "5")]}]), N1, False),        # non-integer label
    (pod(terms=[{"matchExpressions": [expr("missing", "Lt", "5")]}]), N1, False),
    (pod(terms=[{"matchExpressions": [expr("gen", "Gt", "x")]}]), N1, False),         # malformed value
    (pod(terms=[{"matchExpressions": [expr("zone", "In")]}]), N1, False),             # In without values
    # requirements in a term are ANDed
    (pod(terms=[{"matchExpressions": [expr("zone", "In", "a"), expr("disk", "In", "hdd")]}]), N1, False),
    # terms are ORed
    (pod(terms=[{"matchExpressions": [expr("zone", "In", "x")]},
                {"matchExpressions": [expr("disk", "In", "ssd")]}]), N1, True),
    # an empty term matches nothing, also next to a failing one
    (pod(terms=[{}]), N1, False),
    (pod(terms=[{"matchExpressions": []}, {"matchExpressions": [expr("zone", "In", "x")]}]), N1, False),
    # matchFields on metadata.name
    (pod(terms=[{"matchFields": [expr("metadata.name", "In", "n2")]}]), N2, True),
    (pod(terms=[{"matchFields": [expr("metadata.name", "In", "n2")]}]), N1, False),
    (pod(terms=[{"matchFields": [expr("metadata.name", "NotIn", "n2")]}]), N1, True),
    (pod(terms=[{"matchFields": [expr("metadata.labels", "In", "n1")]}]), N1, False),  # only metadata.name
    (pod(terms=[{"matchFields": [expr("metadata.name", "In", "n1")],
                 "matchExpressions": [expr("zone", "In", "b")]}]), N1, False),
    # nodeSelector AND required affinity
    (pod(selector={"disk": "ssd"}, terms=[{"matchExpressions": [expr("zone", "In", "a")]}]), N1, True),
    (pod(selector={"disk": "ssd"}, terms=[{"matchExpressions": [expr("zone", "In", "b")]}]), N1, False),
    (pod(selector={"zone": "b"}, terms=[{"matchExpressions": [expr("zone", "In", "a")]}]), N2, False),
])
def test_filter(p: dict[str, Any], n: dict[str, Any], fits: bool) -> None:
    got = run_filter(p, n)
    if fits:
        assert got is None
    else:
        assert got == AFF and isinstance(got, Unresolvable)
    assert na.filter(p, NodeInfo(n), None) == got   # the same without pre_filter state


def test_schedule_message_counts_affinity_failures() -> None:
    snap = Snapshot([NodeInfo(node(f"n{i}", zone="a")) for i in range(3)])
    r = schedule(pod(selector={"zone": "b"}), snap, [na], random.Random(1))
    assert r.node is None
    assert unschedulable_message(3, r.reasons) == f"0/3 nodes are available: 3 {AFF}."


def scores(p: dict[str, Any], nodes: list[dict[str, Any]]) -> dict[str, int]:
    infos = [NodeInfo(n) for n in nodes]
    st = na.pre_score(p, Snapshot(infos), infos)
    return na.normalize({ni.name: na.score(p, ni, st) for ni in infos}, st)


@pytest.mark.parametrize("preferred, want", [
    (None, {"n1": 0, "n2": 0, "n3": 0}),
    ([(5, {"matchExpressions": [expr("zone", "In", "a")]})], {"n1": 100, "n2": 0, "n3": 100}),
    # raw n1 = 5 + 15 = 20, n2 = 15, n3 = 5 → 100, 75, 25
    ([(5, {"matchExpressions": [expr("zone", "In", "a")]}),
      (15, {"matchExpressions": [expr("gen", "Gt", "2")]})], {"n1": 100, "n2": 75, "n3": 25}),
    # an empty preference and a zero weight count for nothing
    ([(50, {}), (0, {"matchExpressions": [expr("zone", "In", "b")]}),
      (3, {"matchExpressions": [expr("zone", "In", "b")]})], {"n1": 0, "n2": 100, "n3": 0}),
    ([(7, {"matchFields": [expr("metadata.name", "In", "n3")]})], {"n1": 0, "n2": 0, "n3": 100}),
])
def test_preferred_scores(preferred: Any, want: dict[str, int]) -> None:
    nodes = [node("n1", zone="a", gen="3"), node("n2", zone="b", gen="10"), node("n3", zone="a")]
    assert scores(pod(preferred=preferred), nodes) == want


def test_preferred_affinity_picks_the_node() -> None:
    snap = Snapshot([NodeInfo(node("n1", zone="a")), NodeInfo(node("n2", zone="b"))])
    p = pod(preferred=[(10, {"matchExpressions": [expr("zone", "In", "b")]})])
    assert {schedule(p, snap, [na], random.Random(s)).node for s in range(10)} == {"n2"}


@pytest.mark.parametrize("scores_in, reverse, want", [
    ({"a": 0, "b": 0}, False, {"a": 0, "b": 0}),
    ({"a": 0, "b": 0}, True, {"a": 100, "b": 100}),
    ({"a": 1, "b": 3}, False, {"a": 33, "b": 100}),
    ({"a": 1, "b": 3}, True, {"a": 67, "b": 0}),
    ({}, False, {}),
])
def test_default_normalize_score(scores_in: dict[str, int], reverse: bool, want: dict[str, int]) -> None:
    assert na.default_normalize_score(scores_in, reverse=reverse) == want


# -- the same matcher in VolumeBinding and DaemonSets ---------------------------------------------

@pytest.mark.parametrize("terms, n, fits", [
    (None, N1, True),
    ([], N1, True),                      # a volume without node affinity fits everywhere
    ([{"matchExpressions": [expr("kubernetes.io/hostname", "In", "n1")]}], N1, True),
    ([{"matchExpressions": [expr("kubernetes.io/hostname", "In", "n1")]}], N2, False),
    ([{}], N1, False),
    ([{"matchFields": [expr("metadata.name", "In", "n2")]}], N2, True),
    ([{"matchExpressions": [expr("gen", "Gt", "4")]}], N2, True),
])
def test_volume_node_affinity(terms: Any, n: dict[str, Any], fits: bool) -> None:
    pv = {"spec": {} if terms is None else {"nodeAffinity": {"required": {"nodeSelectorTerms": terms}}}}
    assert volume_fits_node(pv, n) is fits


def test_daemonset_uses_node_selector() -> None:
    ds = {"spec": {"template": {"spec": {"nodeSelector": {"disk": "ssd"}, "containers": []}}}}
    assert should_run(ds, N1) == (True, True)
    assert should_run(ds, N2) == (False, False)


# -- NodeName, NodeReady, NodeUnschedulable -------------------------------------------------------

@pytest.mark.parametrize("want, n, reason", [
    (None, "n1", None),
    ("n1", "n1", None),
    ("n2", "n1", "node(s) didn't match the requested node name"),
])
def test_node_name(want: str | None, n: str, reason: str | None) -> None:
    p = pod(**({"nodeName": want} if want else {}))
    got = node_name.filter(p, NodeInfo(node(n)), None)
    assert got == reason
    assert reason is None or isinstance(got, Unresolvable)


NOT_READY = "node(s) had untolerated taint {node.kubernetes.io/not-ready: }"


@pytest.mark.parametrize("ready, reason", [("True", None), ("False", NOT_READY), ("Unknown", NOT_READY),
                                           (None, NOT_READY)])
def test_node_ready(ready: str | None, reason: str | None) -> None:
    got = node_ready.filter(pod(), NodeInfo(node("n1", ready=ready)), None)
    assert got == reason
    assert reason is None or isinstance(got, Unresolvable)


UNSCHED = "node(s) were unschedulable"


@pytest.mark.parametrize("cordoned, tolerations, reason", [
    (False, [], None),
    (True, [], UNSCHED),
    (True, [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}], None),
    (True, [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists"}], None),   # any effect
    (True, [{"operator": "Exists"}], None),                                              # tolerates everything
    (True, [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoExecute"}], UNSCHED),
    (True, [{"key": "node.kubernetes.io/unschedulable", "operator": "Equal", "value": "x"}], UNSCHED),
    (True, [{"key": "other", "operator": "Exists"}], UNSCHED),
])
def test_node_unschedulable(cordoned: bool, tolerations: list[dict[str, Any]], reason: str | None) -> None:
    got = node_unschedulable.filter(pod(tolerations=tolerations), NodeInfo(node("n1", unschedulable=cordoned)), None)
    assert got == reason
    assert reason is None or isinstance(got, Unresolvable)
