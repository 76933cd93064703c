"""The scheduling framework: what plugins see (NodeInfo, Snapshot), what they return, and
the pure scheduling cycle that runs them (filter → score → pick).

A plugin is one small module in ``plugins/`` with any of these module-level functions, all
pure (kube-scheduler's extension points, reduced):

- ``pre_filter(pod, snap) -> state``: computed once per pod before filtering (e.g. the
  topology counts InterPodAffinity needs); passed to ``filter`` as ``state``.
- ``filter(pod, ni, state) -> None | str | list[str]``: None when the node fits, otherwise
  the upstream reason(s) summed up in the FailedScheduling message ("Insufficient cpu").
  A reason wrapped in ``Unresolvable`` says preemption cannot help on that node (upstream's
  UnschedulableAndUnresolvable: node affinity, taints, missing topology labels, ...).
- ``pre_score(pod, snap, feasible) -> state``: once per pod before scoring the feasible nodes;
  ``SKIP`` when every node would score the same, so the pass is left out.
- ``score(pod, ni, state) -> float``: a raw score; 0..100 unless ``normalize`` maps it there.
- ``normalize(scores, state) -> dict``: node name → raw score in, node name → 0..100 out.
- ``NAME`` (upstream plugin name) and ``WEIGHT`` (upstream default weight, scores only).

The scheduler keeps NodeInfos current from its informers (pods are added the moment they
are assumed), so a Snapshot is a view of that cache for one cycle, not a copy.
"""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Iterable

from nanokube.api.quantity import bytes_, cpu_milli

Obj = dict[str, Any]
# Requests assumed for containers that set none, for scoring only (upstream's non-zero defaults).
DEFAULT_MILLI_CPU = 100
DEFAULT_MEMORY = 200 * 1024 * 1024
MAX_SCORE = 100
# Resources that are not "scalar" (extended) resources.
NATIVE = {"cpu", "memory", "pods", "ephemeral-storage"}


class Unresolvable(str):
    """A filter reason that preemption cannot resolve on that node."""


def pod_key(pod: Obj) -> str:
    m = pod["metadata"]
    return f"{m.get('namespace', '')}/{m['name']}"


def _scalar_quantity(v: Any) -> int:
    return bytes_(v)


@dataclass
class Resources:
    cpu: int = 0      # milli-cores
    memory: int = 0   # bytes
    pods: int = 0
    scalar: dict[str, int] = field(default_factory=dict)  # extended resources, e.g. example.com/dongle

    def add(self, other: "Resources", sign: int = 1) -> None:
        self.cpu += sign * other.cpu
        self.memory += sign * other.memory
        self.pods += sign * other.pods
        for k, v in other.scalar.items():
            self.scalar[k] = self.scalar.get(k, 0) + sign * v


def pod_requests(pod: Obj, *, non_zero: bool = False) -> Resources:
    """max(largest init container, sum of app containers) + overhead, per resource."""
    spec = pod.get("spec") or {}

    def one(c: Obj) -> tuple[int, int, dict[str, int]]:
        req = (c.get("resources") or {}).get("requests") or {}
        cpu = cpu_milli(req.get("cpu")) if "cpu" in req else (DEFAULT_MILLI_CPU if non_zero else 0)
        mem = bytes_(req.get("memory")) if "memory" in req else (DEFAULT_MEMORY if non_zero else 0)
        scalar = {k: _scalar_quantity(v) for k, v in req.items() if k not in NATIVE}
        return cpu, mem, scalar
    apps = [one(c) for c in spec.get("containers") or []]
    inits = [one(c) for c in spec.get("initContainers") or []]
    cpu = max([sum(a[0] for a in apps)] + [i[0] for i in inits])
    mem = max([sum(a[1] for a in apps)] + [i[1] for i in inits])
    scalar: dict[str, int] = {}
    for a in apps:
        for k, v in a[2].items():
            scalar[k] = scalar.get(k, 0) + v
    for i in inits:
        for k, v in i[2].items():
            scalar[k] = max(scalar.get(k, 0), v)
    over = spec.get("overhead") or {}
    for k, v in over.items():
        if k not in NATIVE:
            scalar[k] = scalar.get(k, 0) + _scalar_quantity(v)
    return Resources(cpu + cpu_milli(over.get("cpu")), mem + bytes_(over.get("memory")), 1, scalar)


def has_affinity(pod: Obj) -> bool:
    aff = (pod.get("spec") or {}).get("affinity") or {}
    return bool(aff.get("podAffinity") or aff.get("podAntiAffinity"))


def has_required_anti_affinity(pod: Obj) -> bool:
    anti = ((pod.get("spec") or {}).get("affinity") or {}).get("podAntiAffinity") or {}
    return bool(anti.get("requiredDuringSchedulingIgnoredDuringExecution"))


def pod_priority(pod: Obj) -> int:
    return int((pod.get("spec") or {}).get("priority") or 0)


class NodeInfo:
    """A node plus the pods placed (or assumed) on it, with their sums kept incrementally."""

    def __init__(self, node: Obj):
        self.node = node
        self.name: str = node["metadata"]["name"]
        self.pods: dict[str, Obj] = {}                 # pod key → pod
        self.requested = Resources()
        self.non_zero_requested = Resources()
        self.used_ports: Counter[tuple[str, str, int]] = Counter()  # (hostIP, protocol, hostPort)
        self.pods_with_affinity: dict[str, Obj] = {}
        self.pods_with_required_anti_affinity: dict[str, Obj] = {}
        self._alloc: tuple[Obj, Resources] | None = None

    @property
    def labels(self) -> dict[str, str]:
        return self.node["metadata"].get("labels") or {}

    @property
    def taints(self) -> list[Obj]:
        return (self.node.get("spec") or {}).get("taints") or []

    @property
    def allocatable(self) -> Resources:
        if self._alloc is None or self._alloc[0] is not self.node:
            a = (self.node.get("status") or {}).get("allocatable") or {}
            self._alloc = (self.node, Resources(
                cpu_milli(a.get("cpu", "0")), bytes_(a.get("memory", "0")), int(a.get("pods", "110")),
                {k: _scalar_quantity(v) for k, v in a.items() if k not in NATIVE}))
        return self._alloc[1]

    def set_node(self, node: Obj) -> None:
        self.node = node

    def add_pod(self, pod: Obj) -> None:
        k = pod_key(pod)
        if k in self.pods:
            self.remove_pod(self.pods[k])
        self.pods[k] = pod
        self._account(pod, 1)

    def remove_pod(self, pod: Obj) -> None:
        k = pod_key(pod)
        old = self.pods.pop(k, None)
        if old is not None:
            self._account(old, -1)

    def _account(self, pod: Obj, sign: int) -> None:
        self.requested.add(pod_requests(pod), sign)
        self.non_zero_requested.add(pod_requests(pod, non_zero=True), sign)
        for port in host_ports(pod):
            self.used_ports[port] += sign
            if self.used_ports[port] <= 0:
                del self.used_ports[port]
        k = pod_key(pod)
        for flag, d in ((has_affinity(pod), self.pods_with_affinity),
                        (has_required_anti_affinity(pod), self.pods_with_required_anti_affinity)):
            if flag and sign > 0:
                d[k] = pod
            else:
                d.pop(k, None)

    def clone(self) -> "NodeInfo":
        """A copy whose pods can be removed without touching this one (preemption's what-if)."""
        c = NodeInfo(self.node)
        for p in self.pods.values():
            c.add_pod(p)
        return c


def host_ports(pod: Obj) -> list[tuple[str, str, int]]:
    """(hostIP, protocol, hostPort) of every container port with a hostPort; hostIP defaults
    to 0.0.0.0 as upstream."""
    out = []
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                out.append((p.get("hostIP") or "0.0.0.0", p.get("protocol") or "TCP", int(p["hostPort"])))
    return out


class Snapshot:
    """The cluster as one scheduling cycle sees it: node infos (sorted by name) and the
    namespaces' labels (for namespaceSelector)."""

    def __init__(self, nodes: Iterable[NodeInfo], *, namespace_labels: dict[str, dict[str, str]] | None = None):
        self.nodes: list[NodeInfo] = sorted(nodes, key=lambda ni: ni.name)
        self.by_name: dict[str, NodeInfo] = {ni.name: ni for ni in self.nodes}
        self.namespace_labels: dict[str, dict[str, str]] = namespace_labels or {}

    def with_node(self, ni: NodeInfo) -> "Snapshot":
        """This snapshot with one node's info replaced (preemption's what-if)."""
        return Snapshot([ni if n.name == ni.name else n for n in self.nodes], namespace_labels=self.namespace_labels)

    def pods(self) -> Iterable[tuple[NodeInfo, Obj]]:
        for ni in self.nodes:
            for p in ni.pods.values():
                yield ni, p

    def have_pods_with_affinity(self) -> list[NodeInfo]:
        return [ni for ni in self.nodes if ni.pods_with_affinity]

    def have_pods_with_required_anti_affinity(self) -> list[NodeInfo]:
        return [ni for ni in self.nodes if ni.pods_with_required_anti_affinity]


# ---- the cycle ------------------------------------------------------------------------------

@dataclass
class Result:
    node: str | None
    reasons: dict[str, list[str]]   # node name → reasons it was filtered out
    feasible: int = 0
    rejected_by: set[str] = field(default_factory=set)  # plugins that filtered nodes out


def _as_list(r: None | str | list[str]) -> list[str]:
    if r is None:
        return []
    return [r] if isinstance(r, str) else list(r)


SKIP = object()
"""What ``pre_score`` returns when its plugin would give every node the same score (upstream's
Skip status): the pass is left out."""


@dataclass
class _Compiled:
    filters: list[tuple[str, Any]]               # (plugin name, filter function)
    scores: list[tuple[str, Any, Any, Any, int]]  # (name, score, pre_score, normalize, weight)
    pre_filters: list[tuple[str, Any]]


_COMPILED: dict[tuple[int, ...], _Compiled] = {}


def _compile(plugins: list[ModuleType]) -> _Compiled:
    """The plugins' functions looked up once per profile, not per node."""
    key = tuple(map(id, plugins))
    c = _COMPILED.get(key)
    if c is None:
        c = _COMPILED[key] = _Compiled(
            [(p.NAME, p.filter) for p in plugins if hasattr(p, "filter")],
            [(p.NAME, p.score, getattr(p, "pre_score", None), getattr(p, "normalize", None), getattr(p, "WEIGHT", 1))
             for p in plugins if hasattr(p, "score")],
            [(p.NAME, p.pre_filter) for p in plugins if hasattr(p, "pre_filter")])
        if len(_COMPILED) > 64:
            _COMPILED.clear()
            _COMPILED[key] = c
    return c


def pre_filter_states(pod: Obj, snap: Snapshot, plugins: list[ModuleType]) -> dict[str, Any]:
    return {name: f(pod, snap) for name, f in _compile(plugins).pre_filters}


def first_failure(pod: Obj, ni: NodeInfo, plugins: list[ModuleType], states: dict[str, Any]
                  ) -> tuple[str, list[str]] | None:
    """The first failing filter plugin and its reasons (upstream stops at the first failure)."""
    for name, f in _compile(plugins).filters:
        why = f(pod, ni, states.get(name))
        if why:
            return name, _as_list(why)
    return None


def run_filters(pod: Obj, ni: NodeInfo, plugins: list[ModuleType], states: dict[str, Any]) -> list[str]:
    """This node's reasons from the first failing filter; empty when the pod fits."""
    f = first_failure(pod, ni, plugins, states)
    return f[1] if f else []


def score_nodes(pod: Obj, snap: Snapshot, feasible: list[NodeInfo], plugins: list[ModuleType]) -> dict[str, float]:
    totals = {ni.name: 0.0 for ni in feasible}
    for _name, fn, pre, normalize, w in _compile(plugins).scores:
        state = pre(pod, snap, feasible) if pre is not None else None
        if state is SKIP:
            continue
        raw = {ni.name: fn(pod, ni, state) for ni in feasible}
        if normalize is not None:
            raw = normalize(raw, state)
        for n, s in raw.items():
            totals[n] += s * w
    return totals


def schedule(pod: Obj, snap: Snapshot, plugins: list[ModuleType], rng: random.Random) -> Result:
    """Filter every node, score the feasible ones, pick the best (ties at random). Pure."""
    comp = _compile(plugins)
    states = {name: f(pod, snap) for name, f in comp.pre_filters}
    filters = [(name, f, states.get(name)) for name, f in comp.filters]
    feasible, reasons, rejected = [], {}, set()
    for ni in snap.nodes:
        for name, f, state in filters:
            why = f(pod, ni, state)
            if why:
                rejected.add(name)
                reasons[ni.name] = _as_list(why)
                break
        else:
            feasible.append(ni)
    if not feasible:
        return Result(None, reasons, 0, rejected)
    if len(feasible) == 1:
        return Result(feasible[0].name, reasons, 1, rejected)
    totals = score_nodes(pod, snap, feasible, plugins)
    best = max(totals.values())
    return Result(rng.choice([n for n, s in totals.items() if s == best]), reasons, len(feasible), rejected)


def unschedulable_message(n_nodes: int, reasons: dict[str, list[str]], *, post_filter: str = "") -> str:
    """``0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {...}.``
    — the histogram sorted as strings, as upstream's FitError prints it, then what
    preemption (the PostFilter) found."""
    counts: Counter[str] = Counter()
    for rs in reasons.values():
        counts.update(str(r) for r in rs)
    parts = sorted(f"{c} {r}" for r, c in counts.items())
    msg = f"0/{n_nodes} nodes are available" + (": " + ", ".join(parts) if parts else "") + "."
    return msg + (" " + post_filter if post_filter else "")
