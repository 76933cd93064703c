"""ReplicaSet controller: keep ``spec.replicas`` pods matching the selector (replica_set.go).

A pod counts as available once it has been Ready for ``minReadySeconds`` (measured from its
Ready condition's lastTransitionTime, as upstream); the ReplicaSet looks again when the next
Ready pod crosses that line, since no watch event marks the moment.

Pods are owned through a controller ownerReference; matching orphans are adopted. Creations
and deletions in flight are remembered ("expectations") until the informer has seen them,
so watch lag never makes the controller create or delete twice.
"""
from __future__ import annotations

import copy
import datetime as dt
import random
import time
from typing import Any

from nanokube.api.errors import ApiError
from nanokube.api.selectors import from_label_selector, matches
from nanokube.client.events import emit
from .base import Controller, controller_ref, create_pods, is_active, is_pod_ready, split_key

Obj = dict[str, Any]
NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"
EXPECTATION_TTL = 30.0


def pod_from_template(owner: Obj, template: Obj, *, kind: str, api_version: str, rng: random.Random) -> Obj:
    md = owner["metadata"]
    tmd = template.get("metadata") or {}
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": f"{md['name']}-" + "".join(rng.choice(NAME_CHARS) for _ in range(5)),
            "namespace": md["namespace"],
            "labels": dict(tmd.get("labels") or {}),
            **({"annotations": dict(tmd["annotations"])} if tmd.get("annotations") else {}),
            "ownerReferences": [{"apiVersion": api_version, "kind": kind, "name": md["name"], "uid": md["uid"],
                                 "controller": True, "blockOwnerDeletion": True}],
        },
        "spec": copy.deepcopy(template.get("spec") or {}),
    }


def ready_since(pod: Obj) -> dt.datetime | None:
    """When the pod's Ready condition last turned True, or None if it is not Ready."""
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready" and c.get("status") == "True":
            ts = c.get("lastTransitionTime")
            if not ts:
                return dt.datetime.min.replace(tzinfo=dt.timezone.utc)
            return dt.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
    return None


def available_at(pod: Obj, min_ready_seconds: int) -> dt.datetime | None:
    """When a Ready pod counts as available (podutil.IsPodAvailable), or None if not Ready."""
    since = ready_since(pod)
    if since is None:
        return None
    return since if not min_ready_seconds else since + dt.timedelta(seconds=min_ready_seconds)


def is_pod_available(pod: Obj, min_ready_seconds: int, now: dt.datetime) -> bool:
    """Ready for at least minReadySeconds (upstream: Ready transition + minReadySeconds < now)."""
    at = available_at(pod, min_ready_seconds)
    return at is not None and (not min_ready_seconds or at < now)


def deletion_rank(pod: Obj) -> tuple:
    """Pods deleted first sort first: unscheduled, pending, not ready, then the newest."""
    st = pod.get("status") or {}
    phase_rank = {"Pending": 0, "Unknown": 1, "Running": 2}.get(st.get("phase", ""), 0)
    ts = pod["metadata"].get("creationTimestamp", "")
    return (bool(pod["spec"].get("nodeName")), phase_rank, is_pod_ready(pod), _neg(ts))


def _neg(ts: str) -> tuple:
    return tuple(-ord(c) for c in ts)


class ReplicaSetController(Controller):
    name = "replicaset"
    workers = 2
    resource, kind, api_version, component = "replicasets", "ReplicaSet", "apps/v1", "replicaset-controller"

    def __init__(self, client: Any, *, rng: random.Random | None = None):
        super().__init__(client)
        self.rng = rng or random.Random()
        self.rs = self.informer(self.resource)
        self.pods = self.informer("pods")
        self.enqueue_handlers(self.rs)
        self.pods.add_handler(on_add=self._pod_changed, on_update=lambda o, n: (self._pod_changed(o), self._pod_changed(n)),
                              on_delete=self._pod_changed)
        self._creating: dict[str, dict[str, float]] = {}
        self._deleting: dict[str, dict[str, float]] = {}

    @staticmethod
    def selector(rs: Obj) -> list:
        return from_label_selector(rs["spec"].get("selector"))

    def _pod_changed(self, pod: Obj) -> None:
        ref = controller_ref(pod)
        ns = pod["metadata"].get("namespace")
        if ref and ref.get("kind") == self.kind:
            self.queue.add(f"{ns}/{ref['name']}")
        elif not ref:
            for rs in self.rs.list():
                if rs["metadata"]["namespace"] == ns and matches(pod["metadata"].get("labels"), self.selector(rs)):
                    self.enqueue(rs)

    def _pending(self, key: str, pods_by_name: dict[str, Obj]) -> bool:
        now = time.monotonic()
        c = self._creating.get(key, {})
        for n in [n for n, t in c.items() if n in pods_by_name or now - t > EXPECTATION_TTL]:
            del c[n]
        d = self._deleting.get(key, {})
        for n in [n for n, t in d.items() if n not in pods_by_name or pods_by_name[n]["metadata"].get("deletionTimestamp")
                  or now - t > EXPECTATION_TTL]:
            del d[n]
        return bool(c or d)

    async def sync(self, key: str) -> None:
        rs = self.rs.get(key)
        if rs is None:
            self._creating.pop(key, None)
            self._deleting.pop(key, None)
            return
        ns, _ = split_key(key)
        uid = rs["metadata"]["uid"]
        sel = self.selector(rs)
        in_ns = [p for p in self.pods.list() if p["metadata"].get("namespace") == ns]
        owned: list[Obj] = []
        for p in in_ns:
            ref = controller_ref(p)
            if ref and ref.get("uid") == uid:
                owned.append(p)
            elif ref is None and is_active(p) and matches(p["metadata"].get("labels"), sel) \
                    and not rs["metadata"].get("deletionTimestamp"):
                owned.append(await self._adopt(rs, p))
        active = [p for p in owned if is_active(p)]
        by_name = {p["metadata"]["name"]: p for p in in_ns}
        if not rs["metadata"].get("deletionTimestamp") and not self._pending(key, by_name):
            diff = len(active) - rs["spec"].get("replicas", 1)
            if diff < 0:
                await self._create(key, rs, -diff)
            elif diff > 0:
                victims = sorted(active, key=deletion_rank)[:diff]
                await self._delete(key, rs, victims)
        elif self._creating.get(key) or self._deleting.get(key):
            self.queue.add_after(key, 1.0)
        await self._status(rs, active, sel)

    async def _adopt(self, rs: Obj, pod: Obj) -> Obj:
        refs = list(pod["metadata"].get("ownerReferences") or [])
        refs.append({"apiVersion": self.api_version, "kind": self.kind, "name": rs["metadata"]["name"],
                     "uid": rs["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True})
        return await self.client.patch("pods", pod["metadata"]["name"], {
            "metadata": {"ownerReferences": refs, "uid": pod["metadata"]["uid"]}}, namespace=pod["metadata"]["namespace"])

    async def _create(self, key: str, rs: Obj, n: int) -> None:
        pods = [pod_from_template(rs, rs["spec"]["template"], kind=self.kind, api_version=self.api_version, rng=self.rng)
                for _ in range(n)]
        await create_pods(self.client, rs, pods, self._creating.setdefault(key, {}), component=self.component)

    async def _delete(self, key: str, rs: Obj, victims: list[Obj]) -> None:
        pending = self._deleting.setdefault(key, {})
        for p in victims:
            name = p["metadata"]["name"]
            pending[name] = time.monotonic()
            try:
                await self.client.delete("pods", name, namespace=p["metadata"]["namespace"])
            except ApiError as e:
                pending.pop(name, None)
                if e.code != 404:
                    raise
            await emit(self.client, rs, reason="SuccessfulDelete", component=self.component,
                       message=f"Deleted pod: {name}")

    async def _status(self, rs: Obj, active: list[Obj], sel: list) -> None:
        ready = sum(1 for p in active if is_pod_ready(p))
        mrs = rs["spec"].get("minReadySeconds", 0) or 0
        now = dt.datetime.now(dt.timezone.utc)
        available = sum(1 for p in active if is_pod_available(p, mrs, now))
        if mrs and available < ready:
            # Ready pods become available later: look again when the first of them does.
            first = min(at for p in active if (at := available_at(p, mrs)) is not None and not at < now)
            self.queue.add_after(f"{rs['metadata']['namespace']}/{rs['metadata']['name']}",
                                 max(0.0, (first - now).total_seconds()) + 1.0)
        tmpl_labels = ((rs["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {}
        status = {
            "replicas": len(active),
            "fullyLabeledReplicas": sum(1 for p in active if all(
                (p["metadata"].get("labels") or {}).get(k) == v for k, v in tmpl_labels.items())),
            "readyReplicas": ready,
            "availableReplicas": available,
            "observedGeneration": rs["metadata"].get("generation", 1),
        }
        old = rs.get("status") or {}
        if all(old.get(k, 0) == v for k, v in status.items()):
            return
        new = copy.deepcopy(rs)
        new["status"] = {**old, **status}
        try:
            await self.client.update(self.resource, new, namespace=rs["metadata"]["namespace"], subresource="status")
        except ApiError as e:
            if e.code not in (404, 409):
                raise
            if e.code == 409:
                self.queue.add_after(f"{rs['metadata']['namespace']}/{rs['metadata']['name']}", 0.05)


class ReplicationControllerController(ReplicaSetController):
    """ReplicationControllers: ReplicaSets' elder, with a plain map as selector."""
    name = "replicationcontroller"
    resource, kind, api_version, component = "replicationcontrollers", "ReplicationController", "v1", \
        "replication-controller"

    @staticmethod
    def selector(rs: Obj) -> list:
        return [(k, "=", (v,)) for k, v in (rs["spec"].get("selector") or {}).items()] or [("", "=", ("\0",))]  # none: nothing
