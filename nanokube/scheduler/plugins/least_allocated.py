"""Score NodeResourcesFit/LeastAllocated: prefer the node with the most room left, counting
containers without requests at the non-zero defaults (100m CPU, 200Mi), as upstream does."""
from __future__ import annotations

from nanokube.scheduler.framework import NodeInfo, Obj, pod_requests


def score(pod: Obj, ni: NodeInfo) -> int:
    req, used, alloc = pod_requests(pod, non_zero=True), ni.non_zero_requested, ni.allocatable
    parts = []
    for cap, u in ((alloc.cpu, used.cpu + req.cpu), (alloc.memory, used.memory + req.memory)):
        parts.append(0 if cap == 0 or u > cap else (cap - u) * 100 // cap)
    return sum(parts) // len(parts)
