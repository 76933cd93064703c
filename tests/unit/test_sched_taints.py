"""TaintToleration: the toleration rule, the NoSchedule/NoExecute filter and the
PreferNoSchedule score (fewest untolerated taints → 100)."""
from __future__ import annotations

import random
from typing import Any

import pytest

from nanokube.scheduler.framework import NodeInfo, Snapshot, Unresolvable, schedule, unschedulable_message
from nanokube.scheduler.plugins import taint_toleration as tt


def taint(key: str, value: str = "", effect: str = "NoSchedule") -> dict[str, Any]:
    t = {"key": key, "effect": effect}
    if value:
        t["value"] = value
    return t


def node(name: str, *taints: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {}}, "spec": {"taints": list(taints)} if taints else {},
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}}


def pod(*tolerations: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "busybox"}]}
    if tolerations:
        spec["tolerations"] = list(tolerations)
    return {"metadata": {"name": "p", "namespace": "default"}, "spec": spec}


@pytest.mark.parametrize("tol, t, ok", [
    ({"key": "k", "operator": "Equal", "value": "v", "effect": "NoSchedule"}, taint("k", "v"), True),
    ({"key": "k", "value": "v"}, taint("k", "v"), True),                          # no operator = Equal, any effect
    ({"key": "k", "operator": "Equal", "value": "w"}, taint("k", "v"), False),
    ({"key": "k", "operator": "Equal"}, taint("k"), True),                        # empty values are equal
    ({"key": "k", "operator": "Exists"}, taint("k", "v"), True),
    ({"key": "j", "operator": "Exists"}, taint("k", "v"), False),
    ({"operator": "Exists"}, taint("k", "v", "NoExecute"), True),                 # tolerate everything
    ({"operator": "Exists", "effect": "NoSchedule"}, taint("k", "v", "NoExecute"), False),
    ({"key": "k", "operator": "Exists", "effect": "NoExecute"}, taint("k"), False),
    ({"key": "k", "operator": "Exists", "effect": "PreferNoSchedule"}, taint("k", effect="PreferNoSchedule"), True),
    ({"key": "k", "operator": "Gt", "value": "1"}, taint("k", "2"), False),      # unknown operator
])
def test_tolerates(tol: dict[str, Any], t: dict[str, Any], ok: bool) -> None:
    assert tt.tolerates(tol, t) is ok


@pytest.mark.parametrize("taints, tols, reason", [
    ([], [], None),
    ([taint("k", "v")], [], "node(s) had untolerated taint {k: v}"),
    ([taint("k")], [], "node(s) had untolerated taint {k: }"),
    ([taint("k", "v", "NoExecute")], [], "node(s) had untolerated taint {k: v}"),
    ([taint("k", "v", "PreferNoSchedule")], [], None),                   # soft: never filters
    ([taint("k", "v")], [{"key": "k", "operator": "Exists"}], None),
    # the first untolerated one is reported
    ([taint("a", "1"), taint("b", "2")], [{"key": "a", "operator": "Exists"}], "node(s) had untolerated taint {b: 2}"),
    ([taint("a", "1"), taint("b", "2")], [], "node(s) had untolerated taint {a: 1}"),
    ([taint("a", "1", "NoExecute")], [{"key": "a", "operator": "Exists", "effect": "NoSchedule"}],
     "node(s) had untolerated taint {a: 1}"),
])
def test_filter(taints: list[dict[str, Any]], tols: list[dict[str, Any]], reason: str | None) -> None:
    got = tt.filter(pod(*tols), NodeInfo(node("n1", *taints)), None)
    assert got == reason
    assert reason is None or isinstance(got, Unresolvable)


def test_failed_scheduling_message() -> None:
    snap = Snapshot([NodeInfo(node("a", taint("dedicated", "gpu"))), NodeInfo(node("b", taint("dedicated", "gpu"))),
                     NodeInfo(node("c", taint("maint", "", "NoExecute")))])
    r = schedule(pod(), snap, [tt], random.Random(0))
    assert r.node is None
    assert unschedulable_message(3, r.reasons) == ("0/3 nodes are available: 1 node(s) had untolerated taint "
                                                   "{maint: }, 2 node(s) had untolerated taint {dedicated: gpu}.")


def scores(p: dict[str, Any], nodes: list[dict[str, Any]]) -> dict[str, int]:
    infos = [NodeInfo(n) for n in nodes]
    st = tt.pre_score(p, Snapshot(infos), infos)
    return tt.normalize({ni.name: tt.score(p, ni, st) for ni in infos}, st)


SOFT = "PreferNoSchedule"


@pytest.mark.parametrize("tols, want", [
    # raw untolerated PreferNoSchedule counts: a 0, b 1, c 2 → reversed 100, 50, 0
    ([], {"a": 100, "b": 50, "c": 0}),
    # tolerating x: a 0, b 0, c 1
    ([{"key": "x", "operator": "Exists", "effect": SOFT}], {"a": 100, "b": 100, "c": 0}),
    ([{"key": "x", "operator": "Exists"}], {"a": 100, "b": 100, "c": 0}),        # empty effect counts too
    # a NoSchedule toleration does not help with PreferNoSchedule taints
    ([{"key": "x", "operator": "Exists", "effect": "NoSchedule"}], {"a": 100, "b": 50, "c": 0}),
    ([{"operator": "Exists"}], {"a": 100, "b": 100, "c": 100}),                   # all zero → all 100
])
def test_prefer_no_schedule_score(tols: list[dict[str, Any]], want: dict[str, int]) -> None:
    nodes = [node("a", taint("hard", "1")),                                      # NoSchedule: not scored
             node("b", taint("x", "1", SOFT)),
             node("c", taint("x", "1", SOFT), taint("y", "2", SOFT))]
    assert scores(pod(*tols), nodes) == want


def test_score_prefers_untainted_node() -> None:
    snap = Snapshot([NodeInfo(node("a", taint("x", "", SOFT))), NodeInfo(node("b"))])
    assert {schedule(pod(), snap, [tt], random.Random(s)).node for s in range(10)} == {"b"}
