"""NodeUnschedulable: a cordoned node (``spec.unschedulable``) takes only pods that tolerate
the ``node.kubernetes.io/unschedulable:NoSchedule`` taint (upstream's plugin).

Key design choice: the toleration check is taint_toleration.tolerates against that taint,
the same rule as everywhere else; the reason is unresolvable by preemption.
"""
from __future__ import annotations

from typing import Any

from nanokube.scheduler.framework import NodeInfo, Obj, Unresolvable
from nanokube.scheduler.plugins.taint_toleration import tolerated

NAME = "NodeUnschedulable"
REASON = "node(s) were unschedulable"
UNSCHEDULABLE_TAINT = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}


def filter(pod: Obj, ni: NodeInfo, state: Any) -> Unresolvable | None:
    if not (ni.node.get("spec") or {}).get("unschedulable"):
        return None
    if tolerated((pod.get("spec") or {}).get("tolerations") or [], UNSCHEDULABLE_TAINT):
        return None
    return Unresolvable(REASON)
