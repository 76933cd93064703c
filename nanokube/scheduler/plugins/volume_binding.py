"""Filter VolumeBinding: the pod's PersistentVolumeClaims decide where it may run.

A claim bound to a volume with node affinity (a local-path volume lives on one node) keeps
the pod on that volume's nodes. An unbound claim of a ``WaitForFirstConsumer`` class does
not hold the pod back: the pod is scheduled on resources alone and the volume is then
created on the node it landed on (controllers/volumes.py) — the simplest design that is
still correct, because a node-local volume has no other node to prefer. An unbound claim
of an ``Immediate`` class waits for its binder, as upstream. Missing or terminating claims
make the pod unschedulable with upstream's wording. A volume's node selector terms are
matched by node_affinity.py's shared matcher (the pod's node affinity uses the same rules).

The filter needs lookups the plain ``(pod, NodeInfo)`` plugins do not, so ``make_filter``
closes over them; everything here is pure.
"""
from __future__ import annotations

from typing import Any, Callable

from nanokube.scheduler.framework import NodeInfo, Obj
from nanokube.scheduler.plugins.node_affinity import terms_match

HOSTNAME_LABEL = "kubernetes.io/hostname"


def claim_names(pod: Obj) -> list[str]:
    return [v["persistentVolumeClaim"].get("claimName", "") for v in (pod.get("spec") or {}).get("volumes") or []
            if v.get("persistentVolumeClaim")]


def volume_fits_node(pv: Obj, node: Obj) -> bool:
    """A PersistentVolume's ``spec.nodeAffinity.required``: terms ORed, expressions ANDed."""
    terms = ((((pv.get("spec") or {}).get("nodeAffinity") or {}).get("required") or {}).get("nodeSelectorTerms"))
    return not terms or terms_match(terms, node)


def make_filter(claim: Callable[[str, str], Obj | None], volume: Callable[[str], Obj | None],
                storage_class: Callable[[str], Obj | None]) -> Callable[[Obj, NodeInfo], str | None]:
    """A Filter plugin over the given lookups: claim(namespace, name), volume(name), storage_class(name)."""
    def filter(pod: Obj, ni: NodeInfo) -> str | None:
        ns = pod["metadata"].get("namespace", "")
        for name in claim_names(pod):
            pvc = claim(ns, name)
            if pvc is None:
                return f'persistentvolumeclaim "{name}" not found'
            if pvc["metadata"].get("deletionTimestamp"):
                return f'persistentvolumeclaim "{name}" is being deleted'
            vname = (pvc.get("spec") or {}).get("volumeName")
            if vname:
                pv = volume(vname)
                if pv is None:
                    return "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)"
                if not volume_fits_node(pv, ni.node):
                    return "node(s) had volume node affinity conflict"
                continue
            sc = storage_class((pvc.get("spec") or {}).get("storageClassName") or "")
            if sc is None or sc.get("volumeBindingMode", "Immediate") != "WaitForFirstConsumer":
                return "pod has unbound immediate PersistentVolumeClaims"
        return None
    return filter


def lookups(pvcs: Any, pvs: Any, classes: Any) -> tuple[Callable[[str, str], Obj | None], Callable[[str], Obj | None],
                                                         Callable[[str], Obj | None]]:
    """Lookups over three informers (or anything with ``get(key)``)."""
    return (lambda ns, n: pvcs.get(f"{ns}/{n}")), pvs.get, (lambda n: classes.get(n) if n else None)
