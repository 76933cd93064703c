"""Filter NodeUnschedulable: a cordoned node takes only pods tolerating the unschedulable taint."""
from __future__ import annotations

from nanokube.scheduler.framework import NodeInfo, Obj


def filter(pod: Obj, ni: NodeInfo) -> str | None:
    if not (ni.node.get("spec") or {}).get("unschedulable"):
        return None
    for t in (pod.get("spec") or {}).get("tolerations") or []:
        if t.get("key") == "node.kubernetes.io/unschedulable" and t.get("effect") in (None, "", "NoSchedule") \
                or (not t.get("key") and t.get("operator") == "Exists"):
            return None
    return "node(s) were unschedulable"
