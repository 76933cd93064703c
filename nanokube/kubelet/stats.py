"""The kubelet's resource sampler and its Summary API (``GET /stats/summary``).

Every ``interval`` seconds (5 by default) the sampler reads, through the cgroup driver, the
cumulative CPU time and the memory working set of the node, of every pod's cgroup and of
every running container's cgroup (``<pod cgroup>/<container>``, as the kubelet names them).
CPU usage is a rate, so it keeps the last two samples of each cgroup and reports nanocores
over the window between them (a counter that went backwards — a restarted container's new
cgroup — starts a new window). Memory is the latest working set.

What "the node" means depends on where the agent runs:
  * a simulated node of a local cluster (``simulated=True``) shares the host's kernel with
    its siblings, so the host's totals are not this node's. Its usage is the sum over this
    node's pod cgroups, which the kernel already keeps hierarchically in the node's cgroup
    (``<cgroup-root>/nanokube-<cluster>/<node>``, holding only this node's pods).
  * a real host reports the machine's totals from /proc/stat and /proc/meminfo.

Pure parts (``targets``, ``nanocores``, ``Series``, ``render_summary``) are separate from
the file reads, which go through ``nanokube.host.cgroups`` (injected, so tests use fake
cgroup files). The clock is injected as well.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from nanokube.host.cgroups import Usage

log = logging.getLogger("nanokube.kubelet.stats")
Obj = dict[str, Any]
DEFAULT_INTERVAL = 5.0


@dataclass(frozen=True)
class ContainerTarget:
    name: str
    cgroup: str
    start_time: str | None = None


@dataclass(frozen=True)
class PodTarget:
    namespace: str
    name: str
    uid: str
    cgroup: str
    start_time: str | None = None
    containers: tuple[ContainerTarget, ...] = ()


@dataclass(frozen=True)
class Sample:
    at: float        # monotonic seconds (for the rate)
    time: str        # RFC 3339 wall time (for the API)
    usage: Usage


@dataclass
class Series:
    """The last two samples of one cgroup."""
    prev: Sample | None = None
    cur: Sample | None = None

    def push(self, s: Sample) -> None:
        if self.cur is not None and s.usage.cpu_ns < self.cur.usage.cpu_ns:
            self.prev = None  # the counter was reset (a new cgroup by the same name)
        else:
            self.prev = self.cur
        self.cur = s


def nanocores(prev: Sample, cur: Sample) -> int | None:
    """CPU usage over the window between two samples, in nanocores (1e9 = one full core)."""
    window = cur.at - prev.at
    if window <= 0 or cur.usage.cpu_ns < prev.usage.cpu_ns:
        return None
    return round((cur.usage.cpu_ns - prev.usage.cpu_ns) / window)


def targets(pods: list[Obj], *, pod_cgroup: Callable[[str], str]) -> list[PodTarget]:
    """The pods to sample and, in each, the containers the kubelet last reported running."""
    out = []
    for p in pods:
        md, st = p["metadata"], p.get("status") or {}
        if st.get("phase") in ("Succeeded", "Failed"):
            continue
        cg = pod_cgroup(md["uid"])
        cs = tuple(ContainerTarget(c["name"], f"{cg}/{c['name']}", (c.get("state") or {}).get("running", {}).get("startedAt"))
                   for c in st.get("containerStatuses") or [] if "running" in (c.get("state") or {}))
        if cs:
            out.append(PodTarget(md.get("namespace", "default"), md["name"], md["uid"], cg, st.get("startTime"), cs))
    return out


def _cpu(s: Series) -> Obj | None:
    if s.cur is None:
        return None
    out: Obj = {"time": s.cur.time, "usageCoreNanoSeconds": s.cur.usage.cpu_ns}
    if s.prev is not None:
        rate = nanocores(s.prev, s.cur)
        if rate is not None:
            out["usageNanoCores"] = rate
            # nanokube's addition: the window the rate was measured over (metrics.k8s.io needs it)
            out["windowSeconds"] = round(s.cur.at - s.prev.at, 3)
    return out


def _memory(s: Series) -> Obj | None:
    if s.cur is None:
        return None
    return {"time": s.cur.time, "usageBytes": s.cur.usage.memory_bytes, "workingSetBytes": s.cur.usage.working_set_bytes}


def _stats(entry: Obj, s: Series | None) -> Obj:
    if s is not None and s.cur is not None:
        entry["cpu"], entry["memory"] = _cpu(s), _memory(s)
    return entry


def render_summary(node_name: str, *, node_start: str | None, pods: list[PodTarget],
                   series: dict[tuple[str, ...], Series]) -> Obj:
    """The Summary API document (``statsapi.Summary``'s fields that metrics need)."""
    node = _stats({"nodeName": node_name, "startTime": node_start}, series.get(("node",)))
    out_pods = []
    for p in pods:
        containers = []
        for c in p.containers:
            s = series.get(("container", p.uid, c.name))
            if s is not None and s.cur is not None:
                containers.append(_stats({"name": c.name, "startTime": c.start_time}, s))
        if not containers:
            continue
        entry = {"podRef": {"name": p.name, "namespace": p.namespace, "uid": p.uid}, "startTime": p.start_time,
                 "containers": containers}
        out_pods.append(_stats(entry, series.get(("pod", p.uid))))
    return {"node": node, "pods": out_pods}


def _rfc3339(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class StatsSampler:
    """Samples cgroups every ``interval`` seconds; ``summary()`` renders the latest state.

    ``read(rel)`` reads one cgroup (the driver's ``usage``), ``read_node()`` the node's
    totals, ``pods()`` returns the pods bound to this node (the kubelet's informer)."""
    node_name: str
    read: Callable[[str], Usage | None]
    read_node: Callable[[], Usage | None]
    pods: Callable[[], list[Obj]]
    pod_cgroup: Callable[[str], str]
    interval: float = DEFAULT_INTERVAL
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    series: dict[tuple[str, ...], Series] = field(default_factory=dict)
    targets: list[PodTarget] = field(default_factory=list)
    started: str = ""
    last_duration: float = 0.0

    def __post_init__(self) -> None:
        self.started = _rfc3339(self.wall())

    def sample(self) -> None:
        """One pass over the node and every running container; rebuilt, then swapped in, so a
        concurrent ``summary()`` sees either the old or the new state."""
        t0 = time.perf_counter()
        ts = targets(self.pods(), pod_cgroup=self.pod_cgroup)
        new: dict[tuple[str, ...], Series] = {}

        def take(key: tuple[str, ...], usage: Usage | None) -> None:
            if usage is None:
                return
            s = self.series.get(key) or Series()
            s = Series(s.prev, s.cur)
            s.push(Sample(self.clock(), _rfc3339(self.wall()), usage))
            new[key] = s

        take(("node",), self.read_node())
        for p in ts:
            take(("pod", p.uid), self.read(p.cgroup))
            for c in p.containers:
                take(("container", p.uid, c.name), self.read(c.cgroup))
        self.series, self.targets = new, ts
        self.last_duration = time.perf_counter() - t0

    def summary(self) -> Obj:
        return render_summary(self.node_name, node_start=self.started, pods=self.targets, series=self.series)

    async def run(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.sample)
            except Exception as e:  # noqa: BLE001 - a bad read must not end sampling
                log.warning("stats sample: %r", e)
            await asyncio.sleep(self.interval)


def for_kubelet(kubelet: Any, *, simulated: bool, interval: float = DEFAULT_INTERVAL) -> StatsSampler:
    """The sampler of a running kubelet: its cgroup driver, its pods, its cgroup names."""
    from nanokube.host.cgroups import host_usage
    cg = kubelet.runtime.cgroups
    if simulated:
        def read_node() -> Usage | None:
            return cg.usage(kubelet.cgroup_prefix) or Usage(0, 0, 0)
    else:
        read_node = host_usage
    return StatsSampler(kubelet.node_name, cg.usage, read_node, kubelet.pods.list, kubelet._pod_cgroup,
                        interval=interval)
