"""NodeResourcesBalancedAllocation: prefer nodes whose cpu and memory would be used in equal
fractions after placing the pod (upstream's current formula).

fraction_r = min(1, (node's requested_r + pod's request_r) / allocatable_r) for cpu and
memory (resources with no allocatable left out); score = int((1 - std) * 100), where std is
the population standard deviation of the fractions (for two: |f1 - f2| / 2).

Key design choice, as upstream (useRequested): the plain requests count, not the non-zero
defaults, and a best-effort pod (requests nothing) is skipped — every node scores 0 — so
best-effort pods are not piled onto one node (kubernetes#129138).
"""
from __future__ import annotations

import math
from typing import Any

from nanokube.scheduler.framework import MAX_SCORE, NodeInfo, Obj, Resources, pod_requests

NAME = "NodeResourcesBalancedAllocation"
WEIGHT = 1


def pre_score(pod: Obj, snap: Any, feasible: list[NodeInfo]) -> Resources:
    """The pod's plain requests (all zero for a best-effort pod: skipped)."""
    return pod_requests(pod)


def balanced(fractions: list[float]) -> int:
    """(1 - standard deviation of the fractions) * 100, truncated."""
    if len(fractions) == 2:
        std = abs(fractions[0] - fractions[1]) / 2
    elif len(fractions) > 2:
        mean = sum(fractions) / len(fractions)
        std = math.sqrt(sum((f - mean) ** 2 for f in fractions) / len(fractions))
    else:
        std = 0.0
    return int((1 - std) * MAX_SCORE)


def score(pod: Obj, ni: NodeInfo, state: Resources | None) -> int:
    req = pod_requests(pod) if state is None else state
    if not (req.cpu or req.memory):
        return 0
    used, alloc = ni.requested, ni.allocatable
    if alloc.cpu and alloc.memory:   # the common case, straight-line: std of two = |f1 - f2| / 2
        fc = min(1.0, (used.cpu + req.cpu) / alloc.cpu)
        fm = min(1.0, (used.memory + req.memory) / alloc.memory)
        return int((1 - abs(fc - fm) / 2) * MAX_SCORE)
    fractions = [min(1.0, (u + r) / a) for u, r, a in ((used.cpu, req.cpu, alloc.cpu),
                                                       (used.memory, req.memory, alloc.memory)) if a]
    return balanced(fractions)
