"""Filter TaintToleration: NoSchedule / NoExecute taints must each be tolerated."""
from __future__ import annotations

from nanokube.scheduler.framework import NodeInfo, Obj


def tolerates(tol: Obj, taint: Obj) -> bool:
    if tol.get("effect") and tol["effect"] != taint.get("effect"):
        return False
    if tol.get("operator", "Equal") == "Exists":
        return not tol.get("key") or tol["key"] == taint.get("key")
    return tol.get("key") == taint.get("key") and (tol.get("value") or "") == (taint.get("value") or "")


def filter(pod: Obj, ni: NodeInfo) -> str | None:
    tols = (pod.get("spec") or {}).get("tolerations") or []
    for taint in (ni.node.get("spec") or {}).get("taints") or []:
        if taint.get("effect") not in ("NoSchedule", "NoExecute"):
            continue
        if not any(tolerates(t, taint) for t in tols):
            return f"node(s) had untolerated taint {{{taint.get('key')}: {taint.get('value') or ''}}}"
    return None
