"""TaintToleration: a node's taints against the pod's tolerations (upstream's plugin).

Filter: every ``NoSchedule`` / ``NoExecute`` taint must be tolerated; the first one that is
not names the reason (``node(s) had untolerated taint {key: value}``), unresolvable by
preemption. Score: the number of ``PreferNoSchedule`` taints the pod does not tolerate,
normalized reversed so the node with the fewest gets 100.

Key design choice: ``tolerates`` is upstream's ``Toleration.ToleratesTaint`` exactly and is the
one toleration rule in nanokube (node lifecycle, DaemonSets and NodeUnschedulable import it).
A node without taints returns at once, so the common case costs one attribute read.
"""
from __future__ import annotations

from typing import Any

from nanokube.scheduler.framework import SKIP, NodeInfo, Obj, Unresolvable
from nanokube.scheduler.plugins.node_affinity import default_normalize_score

NAME = "TaintToleration"
WEIGHT = 3
DO_NOT_SCHEDULE = ("NoSchedule", "NoExecute")


def tolerates(tol: Obj, taint: Obj) -> bool:
    """Does this toleration tolerate this taint? An empty effect matches every effect, an
    empty key with ``Exists`` every key; ``Equal`` (or no operator) compares values."""
    if tol.get("effect") and tol["effect"] != taint.get("effect"):
        return False
    if tol.get("key") and tol["key"] != taint.get("key"):
        return False
    op = tol.get("operator") or "Equal"
    if op == "Exists":
        return True
    if op == "Equal":
        return (tol.get("value") or "") == (taint.get("value") or "")
    return False


def tolerated(tols: list[Obj], taint: Obj) -> bool:
    return any(tolerates(t, taint) for t in tols)


def untolerated_taint(taints: list[Obj], tols: list[Obj], effects: tuple[str, ...] = DO_NOT_SCHEDULE) -> Obj | None:
    """The first taint with one of these effects that no toleration tolerates."""
    for taint in taints:
        if taint.get("effect") in effects and not tolerated(tols, taint):
            return taint
    return None


def filter(pod: Obj, ni: NodeInfo, state: Any) -> Unresolvable | None:
    taints = ni.taints
    if not taints:
        return None
    taint = untolerated_taint(taints, (pod.get("spec") or {}).get("tolerations") or [])
    if taint is None:
        return None
    return Unresolvable(f"node(s) had untolerated taint {{{taint.get('key')}: {taint.get('value') or ''}}}")


def pre_score(pod: Obj, snap: Any, feasible: list[NodeInfo]) -> Any:
    """The tolerations that can matter for scoring: effect PreferNoSchedule or empty; SKIP
    when no feasible node has a PreferNoSchedule taint (all would score the same)."""
    if feasible and not any(t.get("effect") == "PreferNoSchedule" for ni in feasible for t in ni.taints):
        return SKIP
    return [t for t in (pod.get("spec") or {}).get("tolerations") or []
            if t.get("effect") in (None, "", "PreferNoSchedule")]


def score(pod: Obj, ni: NodeInfo, state: list[Obj] | None) -> int:
    taints = ni.taints
    if not taints:
        return 0
    tols = pre_score(pod, None, []) if state is None or state is SKIP else state
    return sum(1 for t in taints if t.get("effect") == "PreferNoSchedule" and not tolerated(tols, t))


def normalize(scores: dict[str, float], state: Any) -> dict[str, int]:
    return default_normalize_score(scores, reverse=True)
