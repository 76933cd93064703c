"""The scheduler: place each pending pod on a node and bind it (kube-scheduler, reduced).

Informers feed a cache of NodeInfos (every node with the pods on it, sums kept
incrementally) and the scheduling queue (queue.py). One cycle at a time: pop the most
important pod, run the framework's plugins over the cache (framework.schedule: filters,
then scores, ties at random), *assume* the pod on the chosen node at once — so the next
cycle already counts it — and bind through ``pods/binding`` in a background task, as
upstream's binding cycle does; a failed bind forgets the assumption and retries.

A pod no node fits gets PodScheduled=False/Unschedulable with upstream's message and a
FailedScheduling event; then preemption (preemption.py) may evict lower-priority pods and
nominate a node. The pod waits among the unschedulable until a cluster event that could
help (a node added or changed, a pod deleted, ...) moves it back. Pods naming another
``schedulerName`` are left alone.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from types import ModuleType, SimpleNamespace
from typing import Any

from nanokube.api.errors import ApiError
from nanokube.client.events import emit
from nanokube.client.informer import key_of, shared
from nanokube.controllers.base import now_rfc3339
from . import preemption
from .queue import SchedulingQueue
from .framework import NodeInfo, Obj, Snapshot, Unresolvable, pod_priority, schedule, unschedulable_message
from .plugins import (balanced_allocation, image_locality, inter_pod_affinity, least_allocated, most_allocated,
                      node_affinity, node_name, node_ports, node_ready, node_resources_fit, node_unschedulable,
                      pod_topology_spread, taint_toleration, volume_binding)

log = logging.getLogger("nanokube.scheduler")
SCHEDULER_NAME = "default-scheduler"
STRATEGIES = {"LeastAllocated": least_allocated, "MostAllocated": most_allocated}
# Cluster events → the plugins whose rejections they may undo (upstream's queueing hints, reduced).
POD_ADDED = {"InterPodAffinity", "PodTopologySpread"}
NAMESPACE_CHANGED = {"InterPodAffinity", "PodTopologySpread"}
VOLUME_CHANGED = {"VolumeBinding"}


def plugins_for(*, strategy: str = "LeastAllocated", volume_filter: Any = None) -> list[ModuleType]:
    """The default profile: filters in upstream's order, then the score-only plugins."""
    plugins: list[Any] = [node_unschedulable, node_ready, node_name, taint_toleration, node_affinity, node_ports,
                          node_resources_fit]
    if volume_filter is not None:
        plugins.append(volume_filter)
    plugins += [pod_topology_spread, inter_pod_affinity, STRATEGIES[strategy], balanced_allocation, image_locality]
    return plugins


def volume_plugin(check: Any) -> SimpleNamespace:
    """plugins/volume_binding.py's closure as a framework plugin; its reasons are unresolvable
    by preemption."""
    def filter(pod: Obj, ni: NodeInfo, _state: Any) -> str | None:
        why = check(pod, ni)
        return Unresolvable(why) if why else None
    return SimpleNamespace(NAME="VolumeBinding", filter=filter)


def _terminal(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def _sched_fields(node: Obj) -> tuple:
    """What of a node the plugins read: a change here may make pending pods fit."""
    st = node.get("status") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or [])
    return (node["metadata"].get("labels"), node.get("spec"), st.get("allocatable"), ready)


class Scheduler:
    def __init__(self, client: Any, *, rng: random.Random | None = None, strategy: str = "LeastAllocated",
                 bind_concurrency: int = 16):
        self.client = client
        self.rng = rng or random.Random()
        self.pods = shared(client, "pods")
        self.nodes = shared(client, "nodes")
        self.namespaces = shared(client, "namespaces")
        self.pvcs, self.pvs = shared(client, "persistentvolumeclaims"), shared(client, "persistentvolumes")
        self.classes = shared(client, "storageclasses")
        check = volume_binding.make_filter(*volume_binding.lookups(self.pvcs, self.pvs, self.classes))
        self.plugins = plugins_for(strategy=strategy, volume_filter=volume_plugin(check))
        self.queue = SchedulingQueue()
        self.infos: dict[str, NodeInfo] = {}       # node name → info (also for pods on nodes not seen yet)
        self.known: set[str] = set()               # nodes that exist
        self.pod_node: dict[str, str] = {}         # pod key → node it is counted on
        self.assumed: set[str] = set()             # assumed, binding not yet seen
        self.nominated: dict[str, tuple[str, Obj]] = {}  # pod key → (nominated node, pod)
        self.ns_labels: dict[str, dict[str, str]] = {}
        self._snap: Snapshot | None = None
        self._bind_sem = asyncio.Semaphore(bind_concurrency)
        self._binds: set[asyncio.Task] = set()
        self.stats = {"scheduled": 0, "unschedulable": 0, "algorithm_s": 0.0, "bind_s": 0.0, "preemptions": 0}
        self.pods.add_handler(on_add=lambda p: self._pod(None, p), on_update=self._pod, on_delete=self._pod_gone)
        self.nodes.add_handler(on_add=lambda n: self._node(None, n), on_update=self._node, on_delete=self._node_gone)
        self.namespaces.add_handler(on_add=self._namespace, on_update=lambda o, n: self._namespace(n),
                                    on_delete=lambda n: self.ns_labels.pop(n["metadata"]["name"], None))
        for inf in (self.pvcs, self.pvs):
            inf.add_handler(on_add=lambda o: self.queue.move(VOLUME_CHANGED),
                            on_update=lambda o, n: self.queue.move(VOLUME_CHANGED))

    # --- cache -----------------------------------------------------------------------------
    def _info(self, node: str) -> NodeInfo:
        ni = self.infos.get(node)
        if ni is None:
            ni = self.infos[node] = NodeInfo({"metadata": {"name": node}})
        return ni

    def _uncount(self, key: str) -> Obj | None:
        node = self.pod_node.pop(key, None)
        if node is None:
            return None
        ni = self.infos[node]
        old = ni.pods.get(key)
        if old is not None:
            ni.remove_pod(old)
        return old

    def _count(self, key: str, pod: Obj, node: str) -> None:
        if self.pod_node.get(key) not in (None, node):
            self._uncount(key)
        self._info(node).add_pod(pod)
        self.pod_node[key] = node

    def snapshot(self) -> Snapshot:
        if self._snap is None:
            self._snap = Snapshot([self.infos[n] for n in self.known], namespace_labels=self.ns_labels)
        return self._snap

    # --- events ----------------------------------------------------------------------------
    def wants(self, pod: Obj) -> bool:
        s = pod.get("spec") or {}
        return (not s.get("nodeName") and not pod["metadata"].get("deletionTimestamp")
                and (s.get("schedulerName") or SCHEDULER_NAME) == SCHEDULER_NAME and not _terminal(pod))

    def _pod(self, old: Obj | None, pod: Obj) -> None:
        k = key_of(pod)
        node = (pod.get("spec") or {}).get("nodeName")
        if node:
            self.assumed.discard(k)
            self.nominated.pop(k, None)
            self.queue.delete(k)
            if _terminal(pod):
                if self._uncount(k) is not None:
                    self.queue.move(None)   # its resources are free again
                return
            fresh = self.pod_node.get(k) != node or old is None or \
                (old["metadata"].get("labels") != pod["metadata"].get("labels"))
            self._count(k, pod, node)
            if fresh:
                self.queue.move(POD_ADDED)
            return
        if not self.wants(pod):
            self.queue.delete(k)
            self.nominated.pop(k, None)
            return
        nominated = (pod.get("status") or {}).get("nominatedNodeName")
        if nominated:
            self.nominated[k] = (nominated, pod)
        if old is not None and k in self.queue and old.get("spec") == pod.get("spec") and \
                old["metadata"].get("labels") == pod["metadata"].get("labels"):
            return   # a status-only update (ours, say) is no reason to try again
        self.queue.add(k, pod_priority(pod))

    def _pod_gone(self, pod: Obj) -> None:
        k = key_of(pod)
        self.queue.delete(k)
        self.assumed.discard(k)
        self.nominated.pop(k, None)
        if self._uncount(k) is not None:
            self.queue.move(None)

    def _node(self, old: Obj | None, node: Obj) -> None:
        name = node["metadata"]["name"]
        self._info(name).set_node(node)
        if name not in self.known:
            self.known.add(name)
            self._snap = None
            self.queue.move(None)
        elif old is None or _sched_fields(old) != _sched_fields(node):
            self.queue.move(None)

    def _node_gone(self, node: Obj) -> None:
        self.known.discard(node["metadata"]["name"])
        self._snap = None

    def _namespace(self, ns: Obj) -> None:
        name, labels = ns["metadata"]["name"], ns["metadata"].get("labels") or {}
        if self.ns_labels.get(name) != labels:
            self.ns_labels[name] = labels
            self.queue.move(NAMESPACE_CHANGED)

    # --- one cycle -------------------------------------------------------------------------
    def _snapshot_for(self, pod: Obj) -> Snapshot:
        """The cache, plus the pods nominated to a node (by preemption) that are at least as
        important as this one: they get the room they were promised."""
        snap = self.snapshot()
        k, prio = key_of(pod), pod_priority(pod)
        extra: dict[str, NodeInfo] = {}
        for other, (node, p) in self.nominated.items():
            if other == k or pod_priority(p) < prio or node not in snap.by_name:
                continue
            ni = extra.get(node) or snap.by_name[node].clone()
            ni.add_pod(p)
            extra[node] = ni
        for ni in extra.values():
            snap = snap.with_node(ni)
        return snap

    async def schedule_one(self, key: str) -> None:
        pod = self.pods.get(key)
        if pod is None or not self.wants(pod) or key in self.assumed:
            self.queue.done(key)
            return
        t0 = time.perf_counter()
        snap = self._snapshot_for(pod)
        res = schedule(pod, snap, self.plugins, self.rng)
        if res.node is not None:
            self.stats["algorithm_s"] += time.perf_counter() - t0
            self._assume(key, pod, res.node)
            self.queue.done(key)
            task = asyncio.create_task(self._bind(key, pod, res.node))
            self._binds.add(task)
            task.add_done_callback(self._binds.discard)
            return
        cand, post = preemption.preempt(pod, snap, self.plugins, res.reasons) if snap.nodes else (None, "")
        self.stats["algorithm_s"] += time.perf_counter() - t0
        self.stats["unschedulable"] += 1
        message = unschedulable_message(len(snap.nodes), res.reasons, post_filter=post)
        self.queue.unschedulable(key, res.rejected_by)
        if cand is not None:
            await self._preempt(pod, cand)
        await self._unschedulable(pod, message, nominated=cand.node if cand else None)

    def _assume(self, key: str, pod: Obj, node: str) -> None:
        bound = dict(pod, spec=dict(pod["spec"], nodeName=node))
        self._count(key, bound, node)
        self.assumed.add(key)
        self.nominated.pop(key, None)

    async def _bind(self, key: str, pod: Obj, node: str) -> None:
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        async with self._bind_sem:
            t0 = time.perf_counter()
            try:
                await self.client.create_subresource("pods", name, "binding", {
                    "apiVersion": "v1", "kind": "Binding", "metadata": {"name": name, "namespace": ns},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": node}}, namespace=ns)
            except Exception as e:  # forget the assumption; the pod is tried again if it still waits
                if key in self.assumed:
                    self.assumed.discard(key)
                    self._uncount(key)
                if not (isinstance(e, ApiError) and e.code == 404):
                    log.warning("binding %s to %s failed: %s", key, node, e)
                    cur = self.pods.get(key)
                    if cur is not None and self.wants(cur):
                        asyncio.get_running_loop().call_later(1.0, self.queue.add, key, pod_priority(cur))
                return
            finally:
                self.stats["bind_s"] += time.perf_counter() - t0
            self.stats["scheduled"] += 1
            await emit(self.client, pod, reason="Scheduled", component=SCHEDULER_NAME,
                       message=f"Successfully assigned {ns}/{name} to {node}")

    async def _preempt(self, pod: Obj, cand: preemption.Candidate) -> None:
        """Mark and delete the victims (upstream's DisruptionTarget condition and Preempted event)."""
        self.stats["preemptions"] += 1
        uid = pod["metadata"].get("uid", "")
        for v in cand.victims:
            vns, vname = v["metadata"]["namespace"], v["metadata"]["name"]
            try:
                cur = await self.client.get("pods", vname, namespace=vns)
                conds = [c for c in (cur.get("status") or {}).get("conditions") or []
                         if c.get("type") != "DisruptionTarget"]
                conds.append({"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler",
                              "message": f"{SCHEDULER_NAME}: preempting to accommodate a higher priority pod",
                              "lastProbeTime": None, "lastTransitionTime": now_rfc3339()})
                cur.setdefault("status", {})["conditions"] = conds
                await self.client.update("pods", cur, namespace=vns, subresource="status")
            except ApiError as e:
                if e.code == 404:
                    continue
                if e.code != 409:
                    raise
            try:
                await self.client.delete("pods", vname, namespace=vns)
            except ApiError as e:
                if e.code != 404:
                    raise
                continue
            await emit(self.client, v, reason="Preempted", component=SCHEDULER_NAME,
                       message=f"Preempted by pod {uid} on node {cand.node}")

    async def _unschedulable(self, pod: Obj, message: str, *, nominated: str | None = None) -> None:
        status = pod.get("status") or {}
        prev = next((c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"), None)
        changed = not (prev and prev.get("status") == "False" and prev.get("message") == message)
        if changed or (nominated and status.get("nominatedNodeName") != nominated):
            conds = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
            conds.append({"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
                          "lastProbeTime": None, "lastTransitionTime": now_rfc3339()})
            new = dict(pod, status=dict(status, conditions=conds))
            if nominated:
                new["status"]["nominatedNodeName"] = nominated
            try:
                await self.client.update("pods", new, namespace=pod["metadata"]["namespace"], subresource="status")
            except ApiError as e:
                if e.code not in (404, 409):
                    raise
        if changed:
            await emit(self.client, pod, reason="FailedScheduling", type="Warning", component=SCHEDULER_NAME,
                       message=message)

    # --- running ---------------------------------------------------------------------------
    async def run(self) -> None:
        infs = [self.nodes, self.namespaces, self.pvcs, self.pvs, self.classes, self.pods]
        tasks = [asyncio.create_task(i.run()) for i in infs]
        try:
            await asyncio.gather(*(i.wait_synced() for i in infs))
            while True:
                qp = await self.queue.pop()
                try:
                    await self.schedule_one(qp.key)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("scheduling %s failed", qp.key)
                    self.queue.error(qp.key)
        finally:
            for t in tasks + list(self._binds):
                t.cancel()
