"""NodeReady: the node reports condition Ready=True.

Upstream has no such plugin: the node lifecycle controller taints a not-ready node with
``node.kubernetes.io/not-ready`` and TaintToleration rejects it. Key design choice: we read
the condition directly (no wait for the taint) and report upstream's wording for that taint,
so FailedScheduling messages read the same; preemption cannot help (unresolvable).
"""
from __future__ import annotations

from typing import Any

from nanokube.scheduler.framework import NodeInfo, Obj, Unresolvable

NAME = "NodeReady"
REASON = "node(s) had untolerated taint {node.kubernetes.io/not-ready: }"


def filter(pod: Obj, ni: NodeInfo, state: Any) -> Unresolvable | None:
    for c in (ni.node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return None if c.get("status") == "True" else Unresolvable(REASON)
    return Unresolvable(REASON)
