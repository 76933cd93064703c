"""NodeResourcesFit score, LeastAllocated strategy (upstream's default): prefer the node with
the most room left.

Per resource (cpu and memory, weight 1 each): ``(allocatable - requested) * 100 //
allocatable`` where requested is what the node's pods request plus this pod, all counted at
upstream's non-zero defaults (100m cpu, 200Mi memory for a container that requests none);
0 when it would not fit; resources the node has none of are skipped. The node score is the
weighted mean, in integers, as upstream.

Key design choice: ``requested_allocatable`` and ``weighted`` are shared with
most_allocated.py (same NAME; the server picks one strategy), and ``pre_score`` computes the
pod's non-zero request once per cycle instead of once per node.
"""
from __future__ import annotations

from typing import Any, Callable

from nanokube.scheduler.framework import MAX_SCORE, NodeInfo, Obj, Resources, pod_requests

NAME = "NodeResourcesFit"
WEIGHT = 1
RESOURCE_WEIGHTS = (("cpu", 1), ("memory", 1))   # upstream's default ScoringStrategy.resources


def pre_score(pod: Obj, snap: Any, feasible: list[NodeInfo]) -> Resources:
    return pod_requests(pod, non_zero=True)


def requested_allocatable(ni: NodeInfo, req: Resources) -> list[tuple[int, int, int]]:
    """(requested incl. the pod, allocatable, weight) for each scored resource, counting the
    node's pods at their non-zero requests."""
    used, alloc = ni.non_zero_requested, ni.allocatable
    return [(used.cpu + req.cpu, alloc.cpu, RESOURCE_WEIGHTS[0][1]),
            (used.memory + req.memory, alloc.memory, RESOURCE_WEIGHTS[1][1])]


def weighted(parts: list[tuple[int, int, int]], one: Callable[[int, int], int]) -> int:
    """Weighted integer mean of ``one(requested, allocatable)``; resources with no
    allocatable are left out (upstream's resourceAllocationScorer)."""
    total = weights = 0
    for requested, allocatable, w in parts:
        if allocatable == 0:
            continue
        total += one(requested, allocatable) * w
        weights += w
    return total // weights if weights else 0


def least_requested(requested: int, capacity: int) -> int:
    if capacity == 0 or requested > capacity:
        return 0
    return (capacity - requested) * MAX_SCORE // capacity


def score_by(one: Callable[[int, int], int], pod: Obj, ni: NodeInfo, state: Resources | None) -> int:
    """The node score with per-resource formula ``one`` (this module's or most_allocated's)."""
    req = pod_requests(pod, non_zero=True) if state is None else state
    used, alloc = ni.non_zero_requested, ni.allocatable
    if alloc.cpu and alloc.memory:   # the common case, straight-line: both weights are 1
        return (one(used.cpu + req.cpu, alloc.cpu) + one(used.memory + req.memory, alloc.memory)) // 2
    return weighted(requested_allocatable(ni, req), one)


def score(pod: Obj, ni: NodeInfo, state: Resources | None) -> int:
    return score_by(least_requested, pod, ni, state)
