"""Filter NodeAffinity (the ``spec.nodeSelector`` part): every label must match."""
from __future__ import annotations

from nanokube.scheduler.framework import NodeInfo, Obj


def filter(pod: Obj, ni: NodeInfo) -> str | None:
    sel = (pod.get("spec") or {}).get("nodeSelector") or {}
    labels = ni.node["metadata"].get("labels") or {}
    if all(labels.get(k) == v for k, v in sel.items()):
        return None
    return "node(s) didn't match Pod's node affinity/selector"
