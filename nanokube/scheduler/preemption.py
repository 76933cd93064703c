"""Preemption (upstream's DefaultPreemption PostFilter), pure: which node to free for a pod
no node fits, and which lower-priority pods to evict there.

For every node that failed for a reason preemption can resolve: remove all pods of lower
priority; if the pod then fits, add them back one by one, highest priority first, keeping
each that still lets the pod fit ("reprieve"); the rest are the victims. Of the candidate
nodes, pick the one whose most important victim is least important, then the lowest sum of
victim priorities, then the fewest victims (upstream's pickOneNodeForPreemption, without
its PodDisruptionBudget step). Filters that need cluster-wide state (pod affinity, topology
spread) are re-run on a snapshot with that node's what-if info.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

from .framework import (NodeInfo, Obj, Snapshot, Unresolvable, pod_priority, pre_filter_states, run_filters,
                        unschedulable_message)

NOT_HELPFUL = "Preemption is not helpful for scheduling"
NO_VICTIMS = "No preemption victims found for incoming pod"


@dataclass
class Candidate:
    node: str
    victims: list[Obj]


def eligible(pod: Obj, snap: Snapshot) -> str | None:
    """None if the pod may preempt, else why not (upstream's PodEligibleToPreemptOthers)."""
    spec = pod.get("spec") or {}
    if spec.get("preemptionPolicy") == "Never":
        return "not eligible due to preemptionPolicy=Never."
    nominated = (pod.get("status") or {}).get("nominatedNodeName")
    ni = snap.by_name.get(nominated or "")
    if ni is not None:
        prio = pod_priority(pod)
        if any(p["metadata"].get("deletionTimestamp") and pod_priority(p) < prio for p in ni.pods.values()):
            return "not eligible due to a terminating pod on the nominated node."
    return None


def _fits(pod: Obj, snap: Snapshot, ni: NodeInfo, plugins: list[ModuleType]) -> bool:
    return not run_filters(pod, ni, plugins, pre_filter_states(pod, snap, plugins))


def _start(p: Obj) -> str:
    return (p.get("status") or {}).get("startTime") or p["metadata"].get("creationTimestamp") or ""


def victims_on(pod: Obj, snap: Snapshot, ni: NodeInfo, plugins: list[ModuleType]) -> list[Obj] | None:
    """The fewest lower-priority pods on ``ni`` whose removal lets ``pod`` fit, or None."""
    prio = pod_priority(pod)
    lower = [p for p in ni.pods.values() if pod_priority(p) < prio]
    if not lower:
        return None
    what_if = ni.clone()
    for p in lower:
        what_if.remove_pod(p)
    trial = snap.with_node(what_if)
    if not _fits(pod, trial, what_if, plugins):
        return None
    victims = []
    # Most important first; among equals the one running longest is kept (upstream's order).
    for p in sorted(lower, key=lambda p: (-pod_priority(p), _start(p))):
        what_if.add_pod(p)
        if not _fits(pod, snap.with_node(what_if), what_if, plugins):
            what_if.remove_pod(p)
            victims.append(p)
    return victims


def pick(candidates: list[Candidate]) -> Candidate:
    def cost(c: Candidate) -> tuple[int, int, int]:
        prios = [pod_priority(v) for v in c.victims] or [0]
        return max(prios), sum(p + 2 ** 31 for p in prios), len(c.victims)
    return min(candidates, key=cost)


def preempt(pod: Obj, snap: Snapshot, plugins: list[ModuleType], reasons: dict[str, list[str]]
            ) -> tuple[Candidate | None, str]:
    """The chosen candidate (or None) and the PostFilter message for FailedScheduling."""
    why = eligible(pod, snap)
    if why:
        return None, "preemption: " + why
    candidates: list[Candidate] = []
    outcome: dict[str, list[str]] = {}
    for ni in snap.nodes:
        rs = reasons.get(ni.name)
        if not rs or any(isinstance(r, Unresolvable) for r in rs):
            outcome[ni.name] = [NOT_HELPFUL]
            continue
        v = victims_on(pod, snap, ni, plugins)
        if v is None:
            outcome[ni.name] = [NO_VICTIMS]
        else:
            candidates.append(Candidate(ni.name, v))
    if candidates:
        return pick(candidates), ""
    return None, "preemption: " + unschedulable_message(len(snap.nodes), outcome)
