"""The scheduling framework's data: NodeInfo (a node plus what is already placed on it) and
the effective resource request of a pod, as kube-scheduler computes them.

Plugins are pure functions of (pod, NodeInfo): a Filter returns None when the node fits or
a reason string (the upstream wording, summed up in the FailedScheduling message); a Score
returns 0..100.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nanokube.api.quantity import bytes_, cpu_milli

Obj = dict[str, Any]
# Requests assumed for containers that set none, for scoring only (upstream's non-zero defaults).
DEFAULT_MILLI_CPU = 100
DEFAULT_MEMORY = 200 * 1024 * 1024


@dataclass
class Resources:
    cpu: int = 0      # milli-cores
    memory: int = 0   # bytes
    pods: int = 0

    def add(self, other: "Resources") -> None:
        self.cpu += other.cpu
        self.memory += other.memory
        self.pods += other.pods


def pod_requests(pod: Obj, *, non_zero: bool = False) -> Resources:
    """max(largest init container, sum of app containers) + overhead."""
    spec = pod.get("spec") or {}

    def one(c: Obj) -> tuple[int, int]:
        req = (c.get("resources") or {}).get("requests") or {}
        cpu = cpu_milli(req.get("cpu")) if "cpu" in req else (DEFAULT_MILLI_CPU if non_zero else 0)
        mem = bytes_(req.get("memory")) if "memory" in req else (DEFAULT_MEMORY if non_zero else 0)
        return cpu, mem
    apps = [one(c) for c in spec.get("containers") or []]
    inits = [one(c) for c in spec.get("initContainers") or []]
    cpu = max([sum(a[0] for a in apps)] + [i[0] for i in inits])
    mem = max([sum(a[1] for a in apps)] + [i[1] for i in inits])
    over = spec.get("overhead") or {}
    return Resources(cpu + cpu_milli(over.get("cpu")), mem + bytes_(over.get("memory")), 1)


@dataclass
class NodeInfo:
    node: Obj
    pods: list[Obj] = field(default_factory=list)
    requested: Resources = field(default_factory=Resources)
    non_zero_requested: Resources = field(default_factory=Resources)

    @property
    def name(self) -> str:
        return self.node["metadata"]["name"]

    @property
    def allocatable(self) -> Resources:
        a = (self.node.get("status") or {}).get("allocatable") or {}
        return Resources(cpu_milli(a.get("cpu", "0")), bytes_(a.get("memory", "0")), int(a.get("pods", "110")))

    def add_pod(self, pod: Obj) -> None:
        self.pods.append(pod)
        self.requested.add(pod_requests(pod))
        self.non_zero_requested.add(pod_requests(pod, non_zero=True))
