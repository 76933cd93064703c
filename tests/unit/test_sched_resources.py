"""NodeResourcesFit (filter: all reasons, init containers, overhead, extended resources) and the
resource scores: LeastAllocated, MostAllocated, NodeResourcesBalancedAllocation."""
from __future__ import annotations

import random
from typing import Any

import pytest

from nanokube.scheduler.framework import NodeInfo, Snapshot, Unresolvable, schedule, unschedulable_message
from nanokube.scheduler.plugins import balanced_allocation as ba
from nanokube.scheduler.plugins import least_allocated as la
from nanokube.scheduler.plugins import most_allocated as ma
from nanokube.scheduler.plugins import node_resources_fit as fit

DONGLE = "example.com/dongle"
_n = 0


def ctr(cpu: str | None = None, mem: str | None = None, **extended: str) -> dict[str, Any]:
    req = {k: v for k, v in (("cpu", cpu), ("memory", mem)) if v is not None}
    req.update({k.replace("__", "/").replace("_", "."): v for k, v in extended.items()})
    c: dict[str, Any] = {"name": f"c{len(req)}", "image": "busybox"}
    if req:
        c["resources"] = {"requests": req}
    return c


def pod(*containers: dict[str, Any], init: list[dict[str, Any]] | None = None,
        overhead: dict[str, str] | None = None) -> dict[str, Any]:
    global _n
    _n += 1
    spec: dict[str, Any] = {"containers": list(containers) or [ctr()]}
    if init:
        spec["initContainers"] = init
    if overhead:
        spec["overhead"] = overhead
    return {"metadata": {"name": f"p{_n}", "namespace": "default"}, "spec": spec}


def node(name: str = "n1", *placed: dict[str, Any], cpu: str = "2", mem: str = "4Gi", pods: str = "110",
         **extended: str) -> NodeInfo:
    alloc = {"cpu": cpu, "memory": mem, "pods": pods,
             **{k.replace("__", "/").replace("_", "."): v for k, v in extended.items()}}
    ni = NodeInfo({"metadata": {"name": name, "labels": {}}, "status": {"allocatable": alloc}})
    for p in placed:
        ni.add_pod(p)
    return ni


# example_com__dongle → example.com/dongle
D = "example_com__dongle"


@pytest.mark.parametrize("p, ni, reasons", [
    (pod(ctr("1", "1Gi")), node(), []),
    (pod(ctr("2", "4Gi")), node(), []),                                              # exactly full fits
    (pod(ctr("1")), node("n1", pod(ctr("1500m"))), ["Insufficient cpu"]),
    (pod(ctr(mem="3Gi")), node("n1", pod(ctr(mem="2Gi"))), ["Insufficient memory"]),
    (pod(ctr("1", "3Gi")), node("n1", pod(ctr("1500m", "2Gi"))), ["Insufficient cpu", "Insufficient memory"]),
    # a resource the pod does not request never fails, even on a full node
    (pod(ctr(mem="1Gi")), node("n1", pod(ctr("2"))), []),
    (pod(ctr()), node("n1", pod(ctr("2", "4Gi"))), []),
    # the pod count
    (pod(ctr()), node("n1", pod(), pod(), pods="2"), ["Too many pods"]),
    (pod(ctr("1")), node("n1", pod(ctr("2")), pods="1"), ["Too many pods", "Insufficient cpu"]),
    # init containers: max(largest init, sum of apps)
    (pod(ctr("1"), ctr("1"), init=[ctr("3")]), node(), ["Insufficient cpu"]),
    (pod(ctr("1"), ctr("500m"), init=[ctr("2"), ctr("500m")]), node(), []),
    (pod(ctr("1"), ctr("500m"), init=[ctr("1")]), node("n1", pod(ctr("600m"))), ["Insufficient cpu"]),
    (pod(ctr(mem="1Gi"), init=[ctr(mem="5Gi")]), node(), ["Insufficient memory"]),
    # overhead is added on top
    (pod(ctr("1500m"), overhead={"cpu": "500m"}), node(), []),
    (pod(ctr("1500m"), overhead={"cpu": "600m"}), node(), ["Insufficient cpu"]),
    (pod(ctr(mem="3Gi"), overhead={"memory": "1025Mi"}), node(), ["Insufficient memory"]),
    # extended resources
    (pod(ctr(**{D: "1"})), node(**{D: "2"}), []),
    (pod(ctr(**{D: "1"})), node("n1", pod(ctr(**{D: "1"})), **{D: "2"}), []),
    (pod(ctr(**{D: "1"})), node("n1", pod(ctr(**{D: "2"})), **{D: "2"}), [f"Insufficient {DONGLE}"]),
    (pod(ctr(**{D: "1"})), node(), [f"Insufficient {DONGLE}"]),                     # node has none
    (pod(ctr(**{D: "1"}), ctr(**{D: "1"})), node(**{D: "1"}), [f"Insufficient {DONGLE}"]),
    (pod(ctr(**{D: "1"}), init=[ctr(**{D: "2"})]), node(**{D: "1"}), [f"Insufficient {DONGLE}"]),
    (pod(ctr(**{D: "0"})), node(), []),                                              # zero request
    (pod(ctr("3", **{D: "2"}, nvidia_com__gpu="1")), node(**{D: "1"}),
     ["Insufficient cpu", f"Insufficient {DONGLE}", "Insufficient nvidia.com/gpu"]),
])
def test_fit_filter(p: dict[str, Any], ni: NodeInfo, reasons: list[str]) -> None:
    got = fit.filter(p, ni, fit.pre_filter(p, None))
    assert (got or []) == reasons
    assert fit.filter(p, ni, None) == got


@pytest.mark.parametrize("p, ni, unresolvable", [
    (pod(ctr("1")), node("n1", pod(ctr("1500m"))), [False]),     # evicting pods would help
    (pod(ctr("3")), node(), [True]),                              # bigger than the whole node
    (pod(ctr(mem="5Gi")), node(), [True]),
    (pod(ctr(**{D: "1"})), node(), [True]),
    (pod(ctr(**{D: "1"})), node("n1", pod(ctr(**{D: "1"})), **{D: "1"}), [False]),
    (pod(ctr()), node("n1", pod(), pods="1"), [False]),
])
def test_fit_unresolvable(p: dict[str, Any], ni: NodeInfo, unresolvable: list[bool]) -> None:
    assert [isinstance(r, Unresolvable) for r in fit.filter(p, ni, None)] == unresolvable


def test_fit_message_counts_every_reason() -> None:
    snap = Snapshot([node("a", pod(ctr("2", "4Gi"))), node("b", pod(ctr("1500m"))), node("c", pod(), pods="1")])
    r = schedule(pod(ctr("1", "1Gi")), snap, [fit], random.Random(0))
    assert r.node is None
    assert unschedulable_message(3, r.reasons) == \
        "0/3 nodes are available: 1 Insufficient memory, 1 Too many pods, 2 Insufficient cpu."


# -- scores ---------------------------------------------------------------------------------------

def raw(plugin: Any, p: dict[str, Any], ni: NodeInfo) -> int:
    got = plugin.score(p, ni, plugin.pre_score(p, Snapshot([ni]), [ni]))
    assert plugin.score(p, ni, None) == got
    return got


BIG = {"cpu": "4", "mem": "8Gi"}


@pytest.mark.parametrize("p, placed, alloc, least, most", [
    # empty node, pod 1 cpu / 2Gi: 75% free on both
    (pod(ctr("1", "2Gi")), [], BIG, 75, 25),
    # no requests: counted at 100m / 200Mi → (3900/4000, 7992/8192) → 97, 97
    (pod(ctr()), [], BIG, 97, 2),
    # a best-effort pod already there counts 100m / 200Mi: (2900/4000 → 72, 5944/8192 → 72)
    (pod(ctr("1", "2Gi")), [pod(ctr())], BIG, 72, 27),
    # cpu over capacity: least 0 for cpu, most caps it at 100
    (pod(ctr("5", "2Gi")), [], BIG, 37, 62),
    (pod(ctr("3", "6Gi")), [pod(ctr("1", "2Gi"))], BIG, 0, 100),
    # init containers and overhead count as in the filter: cpu max(init 2, apps 1) + 1 = 3 (25 free),
    # memory max(init 200Mi non-zero default, apps 2Gi) = 2Gi (75 free)
    (pod(ctr("1", "2Gi"), init=[ctr("2")], overhead={"cpu": "1"}), [], BIG, 50, 50),
    (pod(ctr("1", "2Gi"), init=[ctr("2", "6Gi")]), [], BIG, 37, 62),
    # a node without memory allocatable is scored on cpu alone
    (pod(ctr("1", "2Gi")), [], {"cpu": "4", "mem": "0"}, 75, 25),
])
def test_least_and_most_allocated(p: dict[str, Any], placed: list[dict[str, Any]], alloc: dict[str, str],
                                  least: int, most: int) -> None:
    ni = node("n1", *placed, cpu=alloc["cpu"], mem=alloc["mem"])
    assert raw(la, p, ni) == least
    assert raw(ma, p, ni) == most


def test_strategies_pick_opposite_nodes() -> None:
    snap = Snapshot([node("empty", cpu="4", mem="8Gi"), node("half", pod(ctr("2", "4Gi")), cpu="4", mem="8Gi")])
    p = pod(ctr("500m", "512Mi"))
    assert {schedule(p, snap, [la], random.Random(s)).node for s in range(10)} == {"empty"}
    assert {schedule(p, snap, [ma], random.Random(s)).node for s in range(10)} == {"half"}


@pytest.mark.parametrize("p, placed, want", [
    (pod(ctr("1", "2Gi")), [], 100),                    # 0.25 / 0.25
    (pod(ctr("2", "2Gi")), [], 87),                     # 0.5 / 0.25 → std 0.125
    (pod(ctr("1", "2Gi")), [pod(ctr("2"))], 75),        # 0.75 / 0.25 → std 0.25
    (pod(ctr("8")), [], 50),                            # fractions capped at 1: 1 / 0
    (pod(ctr()), [], 0),                                # best-effort: skipped
    # plain requests, not the non-zero defaults: ten best-effort pods change nothing
    (pod(ctr("1", "2Gi")), [pod(ctr()) for _ in range(10)], 100),
    (pod(ctr(mem="4Gi")), [], 75),                      # 0 / 0.5
])
def test_balanced_allocation(p: dict[str, Any], placed: list[dict[str, Any]], want: int) -> None:
    assert raw(ba, p, node("n1", *placed, cpu="4", mem="8Gi")) == want


@pytest.mark.parametrize("fractions, want", [([], 100), ([0.3], 100), ([0.5, 0.5], 100), ([1.0, 0.0], 50),
                                             ([0.0, 0.5, 1.0], 59)])
def test_balanced_formula(fractions: list[float], want: int) -> None:
    assert ba.balanced(fractions) == want


def test_plugin_metadata() -> None:
    assert (la.NAME, la.WEIGHT, ma.NAME, ma.WEIGHT) == ("NodeResourcesFit", 1, "NodeResourcesFit", 1)
    assert (ba.NAME, ba.WEIGHT, fit.NAME) == ("NodeResourcesBalancedAllocation", 1, "NodeResourcesFit")
