"""Node lifecycle: notice nodes that stopped reporting, taint them, evict what cannot stay.

As upstream's node lifecycle controller: a node whose kubelet has not renewed its Lease nor
posted status for ``grace_period`` gets its conditions set to Unknown ("Kubelet stopped
posting node status.") and its pods marked not Ready (so Services stop sending them
traffic). Nodes get the ``node.kubernetes.io/unreachable`` (Unknown) or ``not-ready`` (False)
taints, NoSchedule and NoExecute, and lose them when Ready again. The NoExecute taint
manager then deletes pods that do not tolerate a NoExecute taint of their node, at once or
after the toleration's ``tolerationSeconds`` (admission gives every pod 300 s by default,
configurable per cluster); their controllers replace them on other nodes.
"""
from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any, Callable

from nanokube.api.errors import ApiError
from nanokube.client.events import emit
from nanokube.scheduler.plugins.taint_toleration import tolerates
from .base import Controller, Obj, now_rfc3339

UNREACHABLE, NOT_READY = "node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready"
CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")


def _ts(s: str | None) -> dt.datetime | None:
    if not s:
        return None
    return dt.datetime.strptime(s[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.timezone.utc)


def ready_status(node: Obj) -> str:
    return next((c.get("status", "Unknown") for c in (node.get("status") or {}).get("conditions") or []
                 if c.get("type") == "Ready"), "Unknown")


# TaintNodesByCondition: a node reporting pressure takes no new pods without a toleration.
PRESSURE_TAINTS = {"MemoryPressure": "node.kubernetes.io/memory-pressure",
                   "DiskPressure": "node.kubernetes.io/disk-pressure",
                   "PIDPressure": "node.kubernetes.io/pid-pressure"}


def wanted_taints(node: Obj, *, now: str) -> list[Obj]:
    """The node's taints with ours set for its Ready status and pressure conditions (others'
    taints kept as they are)."""
    status = ready_status(node)
    key = {"Unknown": UNREACHABLE, "False": NOT_READY}.get(status)
    old = (node.get("spec") or {}).get("taints") or []
    conds = {c.get("type"): c.get("status") for c in (node.get("status") or {}).get("conditions") or []}
    pressure = {k for c, k in PRESSURE_TAINTS.items() if conds.get(c) == "True"}
    keep = [t for t in old if (t.get("key") not in (UNREACHABLE, NOT_READY) or t.get("key") == key)
            and (t.get("key") not in PRESSURE_TAINTS.values() or t.get("key") in pressure)]
    for k in sorted(pressure):
        if not any(t.get("key") == k and t.get("effect") == "NoSchedule" for t in keep):
            keep.append({"key": k, "effect": "NoSchedule"})
    if key:
        for effect in ("NoSchedule", "NoExecute"):
            if not any(t.get("key") == key and t.get("effect") == effect for t in keep):
                t = {"key": key, "effect": effect}
                if effect == "NoExecute":
                    t["timeAdded"] = now
                keep.append(t)
    return keep


def eviction_time(pod: Obj, taints: list[Obj]) -> dt.datetime | None | bool:
    """When the pod must go because of its node's NoExecute taints: True (now), a time, or
    None (it tolerates them for ever)."""
    due: dt.datetime | None = None
    for t in taints:
        if t.get("effect") != "NoExecute":
            continue
        tols = [tol for tol in pod["spec"].get("tolerations") or [] if tolerates(tol, t)]
        if not tols:
            return True
        secs = [tol["tolerationSeconds"] for tol in tols if tol.get("tolerationSeconds") is not None]
        if len(secs) == len(tols):  # every matching toleration is bounded: the shortest wins
            added = _ts(t.get("timeAdded")) or dt.datetime.now(dt.timezone.utc)
            at = added + dt.timedelta(seconds=max(0, min(secs)))
            due = at if due is None or at < due else due
    return due


class NodeLifecycleController(Controller):
    name = "nodelifecycle"

    def __init__(self, client: Any, *, grace_period: float = 40.0,
                 clock: Callable[[], dt.datetime] | None = None):
        super().__init__(client)
        self.grace_period = grace_period
        self.clock = clock or (lambda: dt.datetime.now(dt.timezone.utc))
        self.nodes = self.informer("nodes")
        self.leases = self.informer("leases", namespace="kube-node-lease")
        self.pods = self.informer("pods")
        self.enqueue_handlers(self.nodes)
        self.leases.add_handler(on_update=lambda o, n: self.queue.add(n["metadata"]["name"]))
        self.pods.add_handler(on_add=self._pod, on_update=lambda o, n: self._pod(n))

    def _pod(self, pod: Obj) -> None:
        if pod["spec"].get("nodeName"):
            self.queue.add(pod["spec"]["nodeName"])

    async def run(self) -> None:
        async def monitor() -> None:  # staleness is the passing of time: look again regularly
            while True:
                await asyncio.sleep(min(5.0, self.grace_period / 4))
                for n in self.nodes.list():
                    self.enqueue(n)
        t = asyncio.create_task(monitor(), name="nodelifecycle-monitor")
        try:
            await super().run()
        finally:
            t.cancel()

    def _last_seen(self, node: Obj) -> dt.datetime | None:
        name = node["metadata"]["name"]
        lease = self.leases.get(f"kube-node-lease/{name}")
        seen = [_ts(((lease or {}).get("spec") or {}).get("renewTime")), _ts(node["metadata"].get("creationTimestamp"))]
        seen += [_ts(c.get("lastHeartbeatTime")) for c in (node.get("status") or {}).get("conditions") or []
                 if c.get("type") == "Ready"]
        seen = [s for s in seen if s]
        return max(seen) if seen else None

    async def sync(self, key: str) -> None:
        node = self.nodes.get(key)
        if node is None:
            return
        now = self.clock()
        last = self._last_seen(node)
        if last and (now - last).total_seconds() > self.grace_period and ready_status(node) != "Unknown":
            node = await self._mark_unknown(node)
        taints = wanted_taints(node, now=now_rfc3339())
        if taints != ((node.get("spec") or {}).get("taints") or []):
            node = dict(node, spec={**(node.get("spec") or {}), "taints": taints})
            if not taints:
                node["spec"].pop("taints")
            node = await self.client.update("nodes", node)
        await self._evict(node, now)

    async def _mark_unknown(self, node: Obj) -> Obj:
        name = node["metadata"]["name"]
        st = dict(node.get("status") or {})
        conds = []
        for c in st.get("conditions") or []:
            if c.get("type") in CONDITIONS:
                c = {**c, "status": "Unknown", "reason": "NodeStatusUnknown", "message": "Kubelet stopped posting node status.",
                     "lastTransitionTime": now_rfc3339()}
            conds.append(c)
        st["conditions"] = conds
        node = await self.client.update("nodes", dict(node, status=st), subresource="status")
        await emit(self.client, node, reason="NodeNotReady", message=f"Node {name} status is now: NodeNotReady",
                   component="node-controller")
        for pod in self.pods.list():  # upstream's MarkPodsNotReady
            if pod["spec"].get("nodeName") != name or pod["metadata"].get("deletionTimestamp"):
                continue
            pst = dict(pod.get("status") or {})
            pst["conditions"] = [({**c, "status": "False", "lastTransitionTime": now_rfc3339()}
                                  if c.get("type") == "Ready" and c.get("status") == "True" else c)
                                 for c in pst.get("conditions") or []]
            if pst != pod.get("status"):
                try:
                    await self.client.update("pods", dict(pod, status=pst), namespace=pod["metadata"]["namespace"],
                                             subresource="status")
                except ApiError as e:
                    if e.code not in (404, 409):
                        raise
        return node

    async def _evict(self, node: Obj, now: dt.datetime) -> None:
        taints = [t for t in (node.get("spec") or {}).get("taints") or [] if t.get("effect") == "NoExecute"]
        if not taints:
            return
        name = node["metadata"]["name"]
        retry: float | None = None
        for pod in self.pods.list():
            if pod["spec"].get("nodeName") != name or pod["metadata"].get("deletionTimestamp"):
                continue
            due = eviction_time(pod, taints)
            if due is None:
                continue
            if due is not True and due > now:
                wait = (due - now).total_seconds()
                retry = wait if retry is None else min(retry, wait)
                continue
            md = pod["metadata"]
            await emit(self.client, pod, reason="TaintManagerEviction", component="taint-eviction-controller",
                       message=f"Marking for deletion Pod {md['namespace']}/{md['name']}")
            try:
                await self.client.delete("pods", md["name"], namespace=md["namespace"])
            except ApiError as e:
                if e.code != 404:
                    raise
        if retry is not None:
            self.queue.add_after(name, retry + 0.1)
