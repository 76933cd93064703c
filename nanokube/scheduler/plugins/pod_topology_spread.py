"""Filter + Score PodTopologySpread: ``spec.topologySpreadConstraints`` keep the pods that a
selector picks evenly spread over topology domains (zones, hosts, any node label).

As upstream's plugin of that name. ``whenUnsatisfiable: DoNotSchedule`` constraints filter:
a node fails when placing the pod there would make (matching pods in its domain + 1 if the
pod matches itself − the global minimum) exceed ``maxSkew``; the global minimum counts as 0
while fewer than ``minDomains`` domains exist. ``ScheduleAnyway`` constraints score: fewer
matching pods in a node's domain → higher score, each constraint weighted by log(domains+2).
Domains are the values of the topology key on nodes that carry every constraint's key and
pass the inclusion policies: ``nodeAffinityPolicy`` (Honor by default: only nodes matching
the pod's nodeSelector / required node affinity) and ``nodeTaintsPolicy`` (Ignore by
default; Honor drops nodes with untolerated NoSchedule/NoExecute taints). Only pods in the
incoming pod's namespace count, terminating pods never; ``matchLabelKeys`` adds the pod's
own label values to the selector. The node checks are NodeAffinity's and TaintToleration's
own (``required`` once per cycle + ``node_matches`` per node; ``tolerates``), not copies.

Key design choice: a pod without constraints returns from ``pre_filter`` / ``pre_score`` at
once (None state), so the common case costs nothing. Left out: upstream's system default
constraints for pods owned by a Service/ReplicaSet/StatefulSet (they need listers that the
framework does not pass to plugins).
"""
from __future__ import annotations

import math
from typing import Any

from nanokube.api.selectors import Requirement, from_label_selector
from nanokube.scheduler.framework import MAX_SCORE, NodeInfo, Obj, Snapshot, Unresolvable
from nanokube.scheduler.plugins.inter_pod_affinity import LabelTest, compile_selector
from nanokube.scheduler.plugins.node_affinity import NONE, Required, node_matches, required
from nanokube.scheduler.plugins.taint_toleration import DO_NOT_SCHEDULE, tolerates

NAME = "PodTopologySpread"
WEIGHT = 2
HOSTNAME = "kubernetes.io/hostname"

REASON_SKEW = "node(s) didn't match pod topology spread constraints"
REASON_MISSING_LABEL = "node(s) didn't match pod topology spread constraints (missing required label)"


class Constraint:
    __slots__ = ("topology_key", "max_skew", "min_domains", "selector", "honor_affinity", "honor_taints",
                 "labels_ok")

    def __init__(self, topology_key: str, max_skew: int, min_domains: int, selector: list[Requirement] | None,
                 *, honor_affinity: bool = True, honor_taints: bool = False):
        self.topology_key = topology_key
        self.max_skew = max_skew
        self.min_domains = min_domains
        self.selector = selector  # None: nil labelSelector, matches nothing
        self.honor_affinity = honor_affinity
        self.honor_taints = honor_taints
        self.labels_ok: LabelTest = compile_selector(selector)


def constraints(pod: Obj, when: str) -> list[Constraint]:
    """The pod's constraints with ``whenUnsatisfiable == when`` (pure)."""
    raw = (pod.get("spec") or {}).get("topologySpreadConstraints")
    if not raw:
        return []
    labels = pod["metadata"].get("labels") or {}
    out = []
    for c in raw:
        if (c.get("whenUnsatisfiable") or "DoNotSchedule") != when:
            continue
        sel_obj = c.get("labelSelector")
        selector: list[Requirement] | None = None
        if sel_obj is not None:
            selector = from_label_selector(sel_obj)
            # matchLabelKeys: AND the pod's own values for those keys into the selector.
            for key in c.get("matchLabelKeys") or ():
                if key in labels:
                    selector.append((key, "in", (labels[key],)))
        min_domains = c.get("minDomains")
        out.append(Constraint(
            c.get("topologyKey", ""), int(c.get("maxSkew") or 1),
            1 if min_domains is None else int(min_domains), selector,
            honor_affinity=(c.get("nodeAffinityPolicy") or "Honor") == "Honor",
            honor_taints=(c.get("nodeTaintsPolicy") or "Ignore") == "Honor"))
    return out


def count_matching(ni: NodeInfo, c: Constraint, namespace: str) -> int:
    """Pods on the node in ``namespace``, not terminating, that the constraint's selector
    picks. An empty or nil selector counts nothing (as upstream's countPodsMatchSelector)."""
    if not c.selector:
        return 0
    ok = c.labels_ok
    n = 0
    for p in ni.pods.values():
        meta = p["metadata"]
        if meta.get("namespace", "") != namespace or meta.get("deletionTimestamp"):
            continue
        if ok(meta.get("labels") or {}):
            n += 1
    return n


def _self_match(pod: Obj, c: Constraint) -> bool:
    return c.labels_ok(pod["metadata"].get("labels") or {})


def _untolerated_taint(pod: Obj, ni: NodeInfo) -> bool:
    tols = (pod.get("spec") or {}).get("tolerations") or []
    for taint in ni.taints:
        if taint.get("effect") in DO_NOT_SCHEDULE and not any(tolerates(t, taint) for t in tols):
            return True
    return False


class _Inclusion:
    """Per node: does it count as a domain for a constraint? The node-affinity and taint
    checks are done at most once per node, whatever the number of constraints. ``req`` is the
    pod's required node affinity, reduced once per cycle by NodeAffinity's ``required``."""

    __slots__ = ("pod", "ni", "req", "_aff", "_taint")

    def __init__(self, pod: Obj, ni: NodeInfo, req: Required):
        self.pod, self.ni, self.req = pod, ni, req
        self._aff: bool | None = None
        self._taint: bool | None = None

    def includes(self, c: Constraint) -> bool:
        if c.honor_affinity and self.req is not NONE:
            if self._aff is None:
                self._aff = node_matches(self.req, self.ni.node)
            if not self._aff:
                return False
        if c.honor_taints:
            if self._taint is None:
                self._taint = _untolerated_taint(self.pod, self.ni)
            if self._taint:
                return False
        return True


def _has_all_keys(labels: dict[str, str], cons: list[Constraint]) -> bool:
    return all(c.topology_key in labels for c in cons)


# ---- filter ---------------------------------------------------------------------------------

class PreFilterState:
    __slots__ = ("constraints", "counts", "self_match")

    def __init__(self, cons: list[Constraint], counts: list[dict[str, int]], self_match: list[int]):
        self.constraints = cons
        self.counts = counts          # per constraint: domain value → matching pods
        self.self_match = self_match  # per constraint: 1 if the pod matches its own selector


def pre_filter(pod: Obj, snap: Snapshot) -> PreFilterState | None:
    cons = constraints(pod, "DoNotSchedule")
    if not cons:
        return None
    ns = pod["metadata"].get("namespace", "")
    req = required(pod)
    counts: list[dict[str, int]] = [{} for _ in cons]
    for ni in snap.nodes:
        labels = ni.labels
        if not _has_all_keys(labels, cons):
            continue
        inc = _Inclusion(pod, ni, req)
        for i, c in enumerate(cons):
            if not inc.includes(c):
                continue
            value = labels[c.topology_key]
            counts[i][value] = counts[i].get(value, 0) + count_matching(ni, c, ns)
    return PreFilterState(cons, counts, [1 if _self_match(pod, c) else 0 for c in cons])


def min_match(state: PreFilterState, i: int) -> int:
    """The global minimum for constraint i: 0 while there are fewer than minDomains domains."""
    counts = state.counts[i]
    if len(counts) < state.constraints[i].min_domains:
        return 0
    return min(counts.values())


def filter(pod: Obj, ni: NodeInfo, state: PreFilterState | None) -> str | None:
    if state is None:
        return None
    labels = ni.labels
    for i, c in enumerate(state.constraints):
        value = labels.get(c.topology_key)
        if value is None:
            return Unresolvable(REASON_MISSING_LABEL)
        skew = state.counts[i].get(value, 0) + state.self_match[i] - min_match(state, i)
        if skew > c.max_skew:
            return REASON_SKEW
    return None


# ---- score ----------------------------------------------------------------------------------

class PreScoreState:
    __slots__ = ("constraints", "namespace", "ignored", "pair_counts", "weights")

    def __init__(self, cons: list[Constraint], namespace: str):
        self.constraints = cons
        self.namespace = namespace
        self.ignored: set[str] = set()                  # feasible nodes lacking a topology key
        self.pair_counts: dict[tuple[str, str], int] = {}
        self.weights: list[float] = []


def pre_score(pod: Obj, snap: Snapshot, feasible: list[NodeInfo]) -> PreScoreState | None:
    cons = constraints(pod, "ScheduleAnyway")
    if not cons or not feasible or not snap.nodes:
        return None
    s = PreScoreState(cons, pod["metadata"].get("namespace", ""))
    sizes = [0] * len(cons)
    for ni in feasible:
        labels = ni.labels
        if not _has_all_keys(labels, cons):
            s.ignored.add(ni.name)
            continue
        for i, c in enumerate(cons):
            if c.topology_key == HOSTNAME:
                continue  # per-node counts are taken in score()
            pair = (c.topology_key, labels[c.topology_key])
            if pair not in s.pair_counts:
                s.pair_counts[pair] = 0
                sizes[i] += 1
    for i, c in enumerate(cons):
        size = len(feasible) - len(s.ignored) if c.topology_key == HOSTNAME else sizes[i]
        s.weights.append(math.log(size + 2))
    if s.pair_counts:
        req = required(pod)
        for ni in snap.nodes:
            labels = ni.labels
            if not _has_all_keys(labels, cons):
                continue
            inc = _Inclusion(pod, ni, req)
            for c in cons:
                pair = (c.topology_key, labels[c.topology_key])
                if pair not in s.pair_counts or not inc.includes(c):
                    continue  # only domains of feasible nodes matter
                s.pair_counts[pair] += count_matching(ni, c, s.namespace)
    return s


def score(pod: Obj, ni: NodeInfo, state: PreScoreState | None) -> float:
    """Σ over constraints of matching pods in the node's domain × log weight + (maxSkew − 1),
    rounded half away from zero as upstream's math.Round."""
    if state is None or ni.name in state.ignored:
        return 0
    labels = ni.labels
    total = 0.0
    for i, c in enumerate(state.constraints):
        value = labels.get(c.topology_key)
        if value is None:
            continue
        if c.topology_key == HOSTNAME:
            cnt = count_matching(ni, c, state.namespace)
        else:
            cnt = state.pair_counts.get((c.topology_key, value), 0)
        total += cnt * state.weights[i] + (c.max_skew - 1)
    return math.floor(total + 0.5)


def normalize(scores: dict[str, float], state: Any) -> dict[str, float]:
    """Invert so the least crowded domain gets 100: 100 × (max + min − s) // max; ignored
    nodes get 0."""
    if state is None:
        return {n: 0 for n in scores}
    valid = {n: int(s) for n, s in scores.items() if n not in state.ignored}
    out: dict[str, float] = {n: 0 for n in scores}
    if not valid:
        return out
    lo, hi = min(valid.values()), max(max(valid.values()), 0)
    for n, s in valid.items():
        out[n] = MAX_SCORE if hi == 0 else MAX_SCORE * (hi + lo - s) // hi
    return out
