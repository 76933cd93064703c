"""NodeResourcesFit score, MostAllocated strategy: prefer the fullest node (bin packing).

Per resource (cpu and memory, weight 1 each): ``requested * 100 // allocatable`` with
requested capped at allocatable (pods counted at non-zero defaults can exceed it), as
upstream's mostRequestedScore; the node score is the weighted integer mean.

Key design choice: everything but the per-resource formula is least_allocated.py's (same
NAME "NodeResourcesFit"; the server flag picks one of the two modules).
"""
from __future__ import annotations

from typing import Any

from nanokube.scheduler.framework import MAX_SCORE, NodeInfo, Obj, Resources, pod_requests
from nanokube.scheduler.plugins.least_allocated import score_by

NAME = "NodeResourcesFit"
WEIGHT = 1


def pre_score(pod: Obj, snap: Any, feasible: list[NodeInfo]) -> Resources:
    return pod_requests(pod, non_zero=True)


def most_requested(requested: int, capacity: int) -> int:
    if capacity == 0:
        return 0
    return min(requested, capacity) * MAX_SCORE // capacity


def score(pod: Obj, ni: NodeInfo, state: Resources | None) -> int:
    return score_by(most_requested, pod, ni, state)
