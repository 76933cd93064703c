"""The scheduler: place each unscheduled pod on a node and bind it (kube-scheduler, reduced).

One pod at a time from a queue: run the Filter plugins over every node, score the ones that
fit, pick the best (ties at random) and bind through ``pods/binding``. The pod is "assumed"
on its node at once, so a burst of pods spreads even before the binding comes back through
the watch. A pod that fits nowhere gets PodScheduled=False/Unschedulable with upstream's
message, a FailedScheduling event, and another try when nodes or pods change.
"""
from __future__ import annotations

import asyncio
import copy
import logging
import random
from collections import Counter
from typing import Any, Callable

from nanokube.api.errors import ApiError
from nanokube.client.events import emit
from nanokube.client.informer import Informer, key_of
from nanokube.client.workqueue import WorkQueue, run_workers
from nanokube.controllers.base import now_rfc3339
from .framework import NodeInfo, Obj
from .plugins import (least_allocated, node_ready, node_resources_fit, node_selector, node_unschedulable,
                      taint_toleration, volume_binding)

log = logging.getLogger("nanokube.scheduler")
SCHEDULER_NAME = "default-scheduler"
FILTERS: list[Callable[[Obj, NodeInfo], str | None]] = [
    node_ready.filter, node_unschedulable.filter, node_selector.filter, taint_toleration.filter,
    node_resources_fit.filter,
]
SCORES: list[tuple[Callable[[Obj, NodeInfo], int], int]] = [(least_allocated.score, 1)]


def unschedulable_message(n_nodes: int, reasons: list[str]) -> str:
    counts = Counter(reasons)
    parts = [f"{c} {r}" for r, c in sorted(counts.items())]
    msg = f"0/{n_nodes} nodes are available"
    return msg + (": " + ", ".join(parts) + "." if parts else ".")


def schedule_one(pod: Obj, infos: list[NodeInfo], rng: random.Random, *,
                 extra_filters: list[Callable[[Obj, NodeInfo], str | None]] | None = None
                 ) -> tuple[str | None, list[str]]:
    """The chosen node name, or None and one reason per node (pure)."""
    feasible, reasons = [], []
    filters = FILTERS + (extra_filters or [])
    for ni in infos:
        why = next((r for f in filters if (r := f(pod, ni)) is not None), None)
        if why is None:
            feasible.append(ni)
        else:
            reasons.append(why)
    if not feasible:
        return None, reasons
    scored = [(sum(fn(pod, ni) * w for fn, w in SCORES), ni.name) for ni in feasible]
    best = max(s for s, _ in scored)
    return rng.choice([n for s, n in scored if s == best]), reasons


class Scheduler:
    def __init__(self, client: Any, *, rng: random.Random | None = None):
        self.client = client
        self.rng = rng or random.Random()
        self.pods = Informer(client, "pods")
        self.nodes = Informer(client, "nodes")
        # Volume binding (plugins/volume_binding.py) looks claims, volumes and classes up.
        self.pvcs, self.pvs = Informer(client, "persistentvolumeclaims"), Informer(client, "persistentvolumes")
        self.classes = Informer(client, "storageclasses")
        self.volume_filter = volume_binding.make_filter(*volume_binding.lookups(self.pvcs, self.pvs, self.classes))
        for inf in (self.pvcs, self.pvs):
            inf.add_handler(on_add=self._retry_all, on_update=lambda o, n: self._retry_all(n))
        self.queue = WorkQueue(base_delay=0.5, max_delay=30)
        self.assumed: dict[str, tuple[str, Obj]] = {}  # pod key → (node, pod) until the informer shows the binding
        self.unschedulable: set[str] = set()
        self.pods.add_handler(on_add=self._pod, on_update=lambda o, n: self._pod(n), on_delete=self._pod_gone)
        self.nodes.add_handler(on_add=self._retry_all, on_update=lambda o, n: self._retry_all(n))

    def _wants(self, pod: Obj) -> bool:
        s = pod.get("spec") or {}
        return (not s.get("nodeName") and not pod["metadata"].get("deletionTimestamp")
                and s.get("schedulerName", SCHEDULER_NAME) == SCHEDULER_NAME
                and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"))

    def _pod(self, pod: Obj) -> None:
        k = key_of(pod)
        if self._wants(pod):
            self.queue.add(k)
        elif (pod.get("spec") or {}).get("nodeName"):
            self.assumed.pop(k, None)

    def _pod_gone(self, pod: Obj) -> None:
        self.assumed.pop(key_of(pod), None)
        self._retry_all(pod)

    def _retry_all(self, _obj: Obj) -> None:
        for k in list(self.unschedulable):
            self.queue.add(k)

    def node_infos(self) -> list[NodeInfo]:
        infos = {n["metadata"]["name"]: NodeInfo(n) for n in self.nodes.list()}
        for p in self.pods.list():
            node = (p.get("spec") or {}).get("nodeName")
            if node in infos and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                infos[node].add_pod(p)
        for k, (node, p) in self.assumed.items():
            cur = self.pods.get(k)
            if node in infos and (cur is None or not cur["spec"].get("nodeName")):
                infos[node].add_pod(p)
        return sorted(infos.values(), key=lambda ni: ni.name)

    async def sync(self, key: str) -> None:
        pod = self.pods.get(key)
        if pod is None or not self._wants(pod) or key in self.assumed:
            self.unschedulable.discard(key)
            return
        infos = self.node_infos()
        node, reasons = schedule_one(pod, infos, self.rng, extra_filters=[self.volume_filter])
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        if node is None:
            self.unschedulable.add(key)
            await self._unschedulable(pod, unschedulable_message(len(infos), reasons))
            return
        self.unschedulable.discard(key)
        self.assumed[key] = (node, pod)
        try:
            await self.client.create_subresource("pods", name, "binding", {
                "apiVersion": "v1", "kind": "Binding", "metadata": {"name": name, "namespace": ns},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node}}, namespace=ns)
        except ApiError as e:
            self.assumed.pop(key, None)
            if e.code in (404, 409):
                return
            raise
        await emit(self.client, pod, reason="Scheduled", component="default-scheduler",
                   message=f"Successfully assigned {ns}/{name} to {node}")

    async def _unschedulable(self, pod: Obj, message: str) -> None:
        conds = [c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") != "PodScheduled"]
        prev = next((c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") == "PodScheduled"), None)
        if prev and prev.get("status") == "False" and prev.get("message") == message:
            return
        conds.append({"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
                      "lastProbeTime": None, "lastTransitionTime": now_rfc3339()})
        new = copy.deepcopy(pod)
        new.setdefault("status", {})["conditions"] = conds
        try:
            await self.client.update("pods", new, namespace=pod["metadata"]["namespace"], subresource="status")
        except ApiError as e:
            if e.code not in (404, 409):
                raise
        await emit(self.client, pod, reason="FailedScheduling", type="Warning", component="default-scheduler",
                   message=message)

    async def run(self) -> None:
        infs = [self.pods, self.nodes, self.pvcs, self.pvs, self.classes]
        tasks = [asyncio.create_task(i.run()) for i in infs]
        try:
            await asyncio.gather(*(i.wait_synced() for i in infs))
            for p in self.pods.list():
                self._pod(p)
            await run_workers(self.queue, self.sync, workers=1, name="scheduler")
        finally:
            for t in tasks:
                t.cancel()
