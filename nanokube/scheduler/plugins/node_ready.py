"""Filter: the node reports Ready (upstream taints not-ready nodes; we read the condition)."""
from __future__ import annotations

from nanokube.scheduler.framework import NodeInfo, Obj


def filter(pod: Obj, ni: NodeInfo) -> str | None:
    conds = (ni.node.get("status") or {}).get("conditions") or []
    if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds):
        return None
    return "node(s) had untolerated taint {node.kubernetes.io/not-ready: }"
