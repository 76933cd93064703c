"""Node allocatable and memory-pressure eviction, as the kubelet's eviction manager does it.

- **Allocatable** = capacity − kube-reserved − system-reserved − the hard eviction threshold
  (memory), so the scheduler never packs a node to the point where the kubelet must evict.
- **Signal** ``memory.available`` = capacity − the node's memory working set (the stats
  sampler's node series: this node's pod cgroups on a simulated node, the machine's totals on
  a real one).
- **Hard threshold** (``--eviction-hard memory.available<100Mi``, upstream's default; also as a
  percentage of capacity): when the signal drops below it, the node reports MemoryPressure and
  one pod is evicted per monitoring pass, ranked as upstream: pods using more than they
  requested first, then lower priority first, then the largest usage above request. The
  pressure condition stays for ``transition_period`` after the signal recovers (upstream's
  --eviction-pressure-transition-period, 5 min), so a node does not flap.

Pure: parsing, allocatable, ranking and the messages; the kubelet feeds it numbers and acts.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from nanokube.api.quantity import bytes_, cpu_milli

Obj = dict[str, Any]
DEFAULT_EVICTION_HARD = "memory.available<100Mi"
SIGNALS = {"memory.available"}


@dataclass(frozen=True)
class Threshold:
    signal: str
    quantity: int | None = None     # bytes
    percent: float | None = None    # of capacity
    text: str = ""                  # as given ("100Mi", "10%")

    def value(self, capacity: int) -> int:
        return self.quantity if self.quantity is not None else int(capacity * (self.percent or 0) / 100)


def parse_thresholds(spec: str) -> list[Threshold]:
    """``memory.available<100Mi[,memory.available<5%]`` → thresholds; ValueError on nonsense."""
    out = []
    for part in filter(None, (p.strip() for p in (spec or "").split(","))):
        signal, sep, value = part.partition("<")
        if not sep or signal not in SIGNALS or not value:
            raise ValueError(f"invalid eviction threshold {part!r}: expected memory.available<QUANTITY or <PERCENT%")
        if value.endswith("%"):
            pct = float(value[:-1])
            if not 0 <= pct <= 100:
                raise ValueError(f"invalid eviction threshold {part!r}: percentage must be 0-100")
            out.append(Threshold(signal, percent=pct, text=value))
        else:
            out.append(Threshold(signal, quantity=bytes_(value), text=value))
    return out


def parse_reserved(spec: str) -> dict[str, str]:
    """``cpu=100m,memory=256Mi`` → {"cpu": "100m", "memory": "256Mi"} (validated)."""
    out = {}
    for part in filter(None, (p.strip() for p in (spec or "").split(","))):
        k, sep, v = part.partition("=")
        if not sep or k not in ("cpu", "memory", "pods", "ephemeral-storage"):
            raise ValueError(f"invalid reservation {part!r}: expected cpu=, memory=, pods= or ephemeral-storage=")
        (cpu_milli if k == "cpu" else bytes_)(v)  # raises on a bad quantity
        out[k] = v
    return out


def allocatable(capacity: dict[str, str], *, reserved: list[dict[str, str]] = (),  # type: ignore[assignment]
                thresholds: list[Threshold] = ()) -> dict[str, str]:  # type: ignore[assignment]
    """capacity − reservations − the memory eviction threshold, never below zero."""
    out = dict(capacity)
    cpu = cpu_milli(capacity.get("cpu", "0")) - sum(cpu_milli(r["cpu"]) for r in reserved if "cpu" in r)
    out["cpu"] = f"{max(cpu, 0)}m"
    cap_mem = bytes_(capacity.get("memory", "0"))
    mem = cap_mem - sum(bytes_(r["memory"]) for r in reserved if "memory" in r)
    mem -= max((t.value(cap_mem) for t in thresholds if t.signal == "memory.available"), default=0)
    out["memory"] = f"{max(mem, 0) // 1024}Ki"
    if "pods" in capacity:
        out["pods"] = str(max(int(capacity["pods"]) - sum(int(r["pods"]) for r in reserved if "pods" in r), 0))
    return out


def memory_request(pod: Obj) -> int:
    return sum(bytes_(((c.get("resources") or {}).get("requests") or {}).get("memory", "0"))
               for c in (pod.get("spec") or {}).get("containers") or [])


def rank(candidates: list[tuple[Obj, int]]) -> list[tuple[Obj, int]]:
    """(pod, memory working set) ranked for eviction, first to go first (upstream's
    rankMemoryPressure: exceeds requests, then priority, then usage above request)."""
    def key(item: tuple[Obj, int]) -> tuple[int, int, int]:
        pod, usage = item
        req = memory_request(pod)
        return (0 if usage > req else 1, int((pod.get("spec") or {}).get("priority") or 0), -(usage - req))
    return sorted(candidates, key=key)


def _ki(n: int) -> str:
    return f"{n // 1024}Ki"


def message(threshold: Threshold, available: int, pod: Obj, containers: dict[str, int]) -> str:
    """Upstream's eviction message: the threshold, what was left, and the biggest consumers."""
    msg = (f"The node was low on resource: memory. Threshold quantity: {threshold.text}, "
           f"available: {_ki(max(available, 0))}. ")
    reqs = {c["name"]: bytes_(((c.get("resources") or {}).get("requests") or {}).get("memory", "0"))
            for c in (pod.get("spec") or {}).get("containers") or []}
    for name, used in sorted(containers.items()):
        if used > reqs.get(name, 0):
            req = reqs.get(name, 0)
            msg += (f"Container {name} was using {_ki(used)}, request is {_ki(req) if req else '0'}, "
                    f"has larger consumption of memory. ")
    return msg


@dataclass
class EvictionManager:
    thresholds: list[Threshold]
    capacity_memory: int
    transition_period: float = 300.0
    clock: Callable[[], float] = time.monotonic
    last_pressure: float | None = field(default=None)
    available: int | None = None

    def observe(self, working_set: int) -> Threshold | None:
        """Record the node's memory working set; the threshold crossed, if any."""
        self.available = self.capacity_memory - working_set
        for t in self.thresholds:
            if self.available < t.value(self.capacity_memory):
                self.last_pressure = self.clock()
                return t
        return None

    @property
    def memory_pressure(self) -> bool:
        return self.last_pressure is not None and self.clock() - self.last_pressure < self.transition_period

    def pick(self, candidates: list[tuple[Obj, int]]) -> Obj | None:
        """The pod to evict now (one per pass, as upstream), skipping pods already going."""
        live = [(p, u) for p, u in candidates if not p["metadata"].get("deletionTimestamp")
                and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
        ranked = rank(live)
        return ranked[0][0] if ranked else None
