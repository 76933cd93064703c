"""Filter NodeResourcesFit: the pod's requests fit in what the node has left."""
from __future__ import annotations

from nanokube.scheduler.framework import NodeInfo, Obj, pod_requests


def filter(pod: Obj, ni: NodeInfo) -> str | None:
    req, used, alloc = pod_requests(pod), ni.requested, ni.allocatable
    if used.pods + 1 > alloc.pods:
        return "Too many pods"
    if req.cpu and used.cpu + req.cpu > alloc.cpu:
        return "Insufficient cpu"
    if req.memory and used.memory + req.memory > alloc.memory:
        return "Insufficient memory"
    return None
