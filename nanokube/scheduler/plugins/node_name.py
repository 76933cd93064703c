"""NodeName: a pod that names its node (``spec.nodeName``) fits only that node (upstream's
plugin). Key design choice: a plain string compare, unresolvable by preemption."""
from __future__ import annotations

from typing import Any

from nanokube.scheduler.framework import NodeInfo, Obj, Unresolvable

NAME = "NodeName"
REASON = "node(s) didn't match the requested node name"


def filter(pod: Obj, ni: NodeInfo, state: Any) -> Unresolvable | None:
    want = (pod.get("spec") or {}).get("nodeName")
    if not want or want == ni.name:
        return None
    return Unresolvable(REASON)
