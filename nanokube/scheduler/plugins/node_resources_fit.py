"""NodeResourcesFit (filter): the pod's requests fit in what the node has left.

Checks, as upstream's ``fitsRequest``: the pod count ("Too many pods"), then cpu, memory and
every extended resource the pod requests ("Insufficient <name>") against allocatable minus
what the node's pods already request. ALL failing reasons are returned, so the
FailedScheduling message counts each. A resource the pod does not request never fails. A
reason is unresolvable (preemption cannot help) when the pod's request alone exceeds the
node's allocatable.

Key design choice: ``pre_filter`` computes the pod's effective request once per cycle
(framework.pod_requests: max(largest init container, sum of app containers) + overhead), so
the per-node filter is a handful of integer compares.
"""
from __future__ import annotations

from typing import Any

from nanokube.scheduler.framework import NodeInfo, Obj, Resources, Unresolvable, pod_requests

NAME = "NodeResourcesFit"


def pre_filter(pod: Obj, snap: Any) -> Resources:
    return pod_requests(pod)


def _reason(text: str, request: int, allocatable: int) -> str:
    return Unresolvable(text) if request > allocatable else text


def insufficient(req: Resources, ni: NodeInfo) -> list[str]:
    """Pure: every reason the node cannot take a pod with these requests."""
    used, alloc = ni.requested, ni.allocatable
    out: list[str] = []
    if len(ni.pods) + 1 > alloc.pods:
        out.append("Too many pods")
    if not (req.cpu or req.memory or req.scalar):
        return out
    if req.cpu > 0 and req.cpu > alloc.cpu - used.cpu:
        out.append(_reason("Insufficient cpu", req.cpu, alloc.cpu))
    if req.memory > 0 and req.memory > alloc.memory - used.memory:
        out.append(_reason("Insufficient memory", req.memory, alloc.memory))
    for name in sorted(req.scalar):
        want = req.scalar[name]
        if want <= 0:
            continue
        have = alloc.scalar.get(name, 0)
        if want > have - used.scalar.get(name, 0):
            out.append(_reason(f"Insufficient {name}", want, have))
    return out


def filter(pod: Obj, ni: NodeInfo, state: Resources | None) -> list[str] | None:
    return insufficient(pod_requests(pod) if state is None else state, ni) or None
