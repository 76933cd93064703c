"""Deployment controller: ReplicaSets per pod template, rolled as the strategy says
(deployment_controller.go, rolling.go, recreate.go, sync.go).

Each distinct pod template gets a ReplicaSet ``<deployment>-<pod-template-hash>``; the
newest is scaled up and the old ones down within ``maxSurge`` / ``maxUnavailable``
(RollingUpdate) or all old ones first (Recreate). Revisions are recorded in the
``deployment.kubernetes.io/revision`` annotation, and the status carries what
``kubectl rollout status`` follows.
"""
from __future__ import annotations

import copy
import json
import math
from typing import Any

from nanokube.api.errors import ApiError
from nanokube.api.selectors import from_label_selector, matches
from nanokube.client.events import emit
from .base import Controller, controller_ref, now_rfc3339, split_key

Obj = dict[str, Any]
HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
SAFE = "bcdfghjklmnpqrstvwxz2456789"


def fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def template_hash(template: Obj, collision_count: int = 0) -> str:
    """A stable hash of the pod template, spelled like upstream's (SafeEncodeString)."""
    data = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    if collision_count:
        data += str(collision_count).encode()
    return "".join(SAFE[int(c) % len(SAFE)] for c in str(fnv32a(data)))


def _strip_hash(template: Obj) -> Obj:
    t = copy.deepcopy(template)
    (t.get("metadata") or {}).get("labels", {}).pop(HASH_LABEL, None)
    return t


def resolve(value: Any, total: int, *, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        x = int(value[:-1]) * total / 100
        return math.ceil(x) if round_up else math.floor(x)
    return int(value or 0)


def surge_and_unavailable(d: Obj) -> tuple[int, int]:
    replicas = d["spec"].get("replicas", 1)
    ru = (d["spec"].get("strategy") or {}).get("rollingUpdate") or {}
    surge = resolve(ru.get("maxSurge", "25%"), replicas, round_up=True)
    unavail = resolve(ru.get("maxUnavailable", "25%"), replicas, round_up=False)
    if surge == 0 and unavail == 0:
        unavail = 1
    return surge, unavail


def _replicas(rs: Obj) -> int:
    return rs["spec"].get("replicas", 0)


def _available(rs: Obj) -> int:
    return (rs.get("status") or {}).get("availableReplicas", 0)


def _rev(rs: Obj) -> int:
    try:
        return int((rs["metadata"].get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


class DeploymentController(Controller):
    name = "deployment"

    def __init__(self, client: Any):
        super().__init__(client)
        self.deployments = self.informer("deployments")
        self.rs = self.informer("replicasets")
        self.enqueue_handlers(self.deployments)
        self.rs.add_handler(on_add=self._rs_changed, on_update=lambda o, n: self._rs_changed(n),
                            on_delete=self._rs_changed)

    def _rs_changed(self, rs: Obj) -> None:
        ref = controller_ref(rs)
        if ref and ref.get("kind") == "Deployment":
            self.queue.add(f"{rs['metadata']['namespace']}/{ref['name']}")

    async def sync(self, key: str) -> None:
        d = self.deployments.get(key)
        if d is None or d["metadata"].get("deletionTimestamp"):
            return
        ns, _ = split_key(key)
        uid = d["metadata"]["uid"]
        sel = from_label_selector(d["spec"].get("selector"))
        owned = []
        for rs in self.rs.list():
            if rs["metadata"]["namespace"] != ns:
                continue
            ref = controller_ref(rs)
            if ref and ref.get("uid") == uid:
                owned.append(rs)
            elif ref is None and matches(rs["metadata"].get("labels"), sel):
                owned.append(await self._adopt(d, rs))
        template = d["spec"]["template"]
        new = next((rs for rs in owned if _strip_hash(rs["spec"]["template"]) == _strip_hash(template)), None)
        old = [rs for rs in owned if rs is not new]
        if d["spec"].get("paused"):
            await self._status(d, new, old)
            return
        if new is None:
            new = await self._create_rs(d, old)
            if new is None:
                return
        elif _rev(new) <= max((_rev(r) for r in old), default=0):
            new = await self._set_revision(new, max(_rev(r) for r in old) + 1)
        if (d["metadata"].get("annotations") or {}).get(REVISION) != str(_rev(new)):
            await self._annotate(d, str(_rev(new)))
        if (d["spec"].get("strategy") or {}).get("type") == "Recreate":
            await self._recreate(d, new, old)
        else:
            await self._rolling(d, new, old)
        await self._cleanup(d, old)
        await self._status(d, new, old)

    # -- ReplicaSets -------------------------------------------------------------------------
    async def _adopt(self, d: Obj, rs: Obj) -> Obj:
        refs = list(rs["metadata"].get("ownerReferences") or []) + [{
            "apiVersion": "apps/v1", "kind": "Deployment", "name": d["metadata"]["name"], "uid": d["metadata"]["uid"],
            "controller": True, "blockOwnerDeletion": True}]
        return await self.client.patch("replicasets", rs["metadata"]["name"], {"metadata": {"ownerReferences": refs}},
                                       namespace=rs["metadata"]["namespace"])

    async def _create_rs(self, d: Obj, old: list[Obj]) -> Obj | None:
        collisions = (d.get("status") or {}).get("collisionCount", 0)
        h = template_hash(_strip_hash(d["spec"]["template"]), collisions)
        template = copy.deepcopy(d["spec"]["template"])
        template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = h
        selector = copy.deepcopy(d["spec"]["selector"])
        selector.setdefault("matchLabels", {})[HASH_LABEL] = h
        surge, _ = surge_and_unavailable(d)
        want = d["spec"].get("replicas", 1)
        if (d["spec"].get("strategy") or {}).get("type") == "Recreate" or not old:
            replicas = want if not any(_replicas(r) for r in old) else 0
        else:
            replicas = max(0, min(want + surge - sum(_replicas(r) for r in old), want))
        revision = max((_rev(r) for r in old), default=0) + 1
        rs = {
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": f"{d['metadata']['name']}-{h}", "namespace": d["metadata"]["namespace"],
                         "labels": dict(template["metadata"]["labels"]),
                         "annotations": {REVISION: str(revision),
                                         "deployment.kubernetes.io/desired-replicas": str(want),
                                         "deployment.kubernetes.io/max-replicas": str(want + surge)},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": d["metadata"]["name"],
                                              "uid": d["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]},
            "spec": {"replicas": replicas, "minReadySeconds": d["spec"].get("minReadySeconds", 0),
                     "selector": selector, "template": template},
        }
        try:
            created = await self.client.create("replicasets", rs, namespace=d["metadata"]["namespace"])
        except ApiError as e:
            if e.code == 409:
                # Same name, different template: a hash collision; bump the count and retry.
                existing = self.rs.get(f"{d['metadata']['namespace']}/{rs['metadata']['name']}")
                if existing is not None and controller_ref(existing) and controller_ref(existing)["uid"] == d["metadata"]["uid"]:
                    return existing
                st = copy.deepcopy(d)
                st.setdefault("status", {})["collisionCount"] = collisions + 1
                await self.client.update("deployments", st, namespace=d["metadata"]["namespace"], subresource="status")
                return None
            raise
        await emit(self.client, d, reason="ScalingReplicaSet", component="deployment-controller",
                   message=f"Scaled up replica set {created['metadata']['name']} from 0 to {replicas}")
        return created

    async def _set_revision(self, rs: Obj, revision: int) -> Obj:
        return await self.client.patch("replicasets", rs["metadata"]["name"],
                                       {"metadata": {"annotations": {REVISION: str(revision)}}},
                                       namespace=rs["metadata"]["namespace"])

    async def _annotate(self, d: Obj, revision: str) -> None:
        await self.client.patch("deployments", d["metadata"]["name"], {"metadata": {"annotations": {REVISION: revision}}},
                                namespace=d["metadata"]["namespace"])

    async def _scale(self, d: Obj, rs: Obj, n: int) -> None:
        cur = _replicas(rs)
        if cur == n:
            return
        await self.client.patch("replicasets", rs["metadata"]["name"], {"spec": {"replicas": n}},
                                namespace=rs["metadata"]["namespace"])
        await emit(self.client, d, reason="ScalingReplicaSet", component="deployment-controller",
                   message=f"Scaled {'up' if n > cur else 'down'} replica set {rs['metadata']['name']} from {cur} to {n}")

    # -- strategies --------------------------------------------------------------------------
    async def _recreate(self, d: Obj, new: Obj, old: list[Obj]) -> None:
        for rs in old:
            await self._scale(d, rs, 0)
        if any(_replicas(r) or (r.get("status") or {}).get("replicas", 0) for r in old):
            return  # wait for the old pods to be gone
        await self._scale(d, new, d["spec"].get("replicas", 1))

    async def _rolling(self, d: Obj, new: Obj, old: list[Obj]) -> None:
        want = d["spec"].get("replicas", 1)
        surge, unavail = surge_and_unavailable(d)
        # Scale the new ReplicaSet up as far as maxSurge allows.
        if _replicas(new) > want:
            await self._scale(d, new, want)
        elif _replicas(new) < want:
            total = _replicas(new) + sum(_replicas(r) for r in old)
            room = want + surge - total
            if room > 0:
                await self._scale(d, new, min(want, _replicas(new) + room))
                new = {**new, "spec": {**new["spec"], "replicas": min(want, _replicas(new) + room)}}
        # Scale old ReplicaSets down as far as maxUnavailable allows.
        old_total = sum(_replicas(r) for r in old)
        if not old_total:
            return
        all_total = _replicas(new) + old_total
        min_available = want - unavail
        new_unavailable = _replicas(new) - _available(new)
        budget = all_total - min_available - new_unavailable
        if budget <= 0:
            return
        for rs in sorted(old, key=lambda r: r["metadata"].get("creationTimestamp", "")):
            unhealthy = _replicas(rs) - _available(rs)
            if unhealthy > 0 and budget > 0:
                n = min(unhealthy, budget)
                await self._scale(d, rs, _replicas(rs) - n)
                rs["spec"] = {**rs["spec"], "replicas": _replicas(rs) - n}
                budget -= n
        available = _available(new) + sum(min(_available(r), _replicas(r)) for r in old)
        down = min(budget, available - min_available)
        for rs in sorted(old, key=lambda r: r["metadata"].get("creationTimestamp", "")):
            if down <= 0:
                break
            n = min(_replicas(rs), down)
            if n:
                await self._scale(d, rs, _replicas(rs) - n)
                down -= n

    async def _cleanup(self, d: Obj, old: list[Obj]) -> None:
        limit = d["spec"].get("revisionHistoryLimit", 10)
        idle = sorted((r for r in old if not _replicas(r) and not (r.get("status") or {}).get("replicas")), key=_rev)
        for rs in idle[:max(0, len(idle) - limit)]:
            try:
                await self.client.delete("replicasets", rs["metadata"]["name"], namespace=rs["metadata"]["namespace"])
            except ApiError as e:
                if e.code != 404:
                    raise

    # -- status ------------------------------------------------------------------------------
    async def _status(self, d: Obj, new: Obj | None, old: list[Obj]) -> None:
        rss = ([new] if new else []) + old
        want = d["spec"].get("replicas", 1)
        st = lambda r, k: (r.get("status") or {}).get(k, 0)  # noqa: E731
        replicas = sum(st(r, "replicas") for r in rss)
        available = sum(st(r, "availableReplicas") for r in rss)
        updated = st(new, "replicas") if new else 0
        _, unavail = surge_and_unavailable(d)
        complete = updated == want and replicas == want and available == want and new is not None \
            and st(new, "observedGeneration") >= new["metadata"].get("generation", 1)
        old_conds = {c["type"]: c for c in (d.get("status") or {}).get("conditions") or []}
        now = now_rfc3339()

        def cond(typ: str, status: str, reason: str, message: str) -> Obj:
            prev = old_conds.get(typ)
            same = prev and prev.get("status") == status
            c = {"type": typ, "status": status, "lastUpdateTime": now,
                 "lastTransitionTime": prev["lastTransitionTime"] if same else now, "reason": reason, "message": message}
            if prev and same and prev.get("reason") == reason:
                c["lastUpdateTime"] = prev.get("lastUpdateTime", now)
            return c
        name = f'"{new["metadata"]["name"]}"' if new else ""
        conds = [
            cond("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
            if available >= want - unavail else
            cond("Available", "False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability."),
            cond("Progressing", "True", "NewReplicaSetAvailable", f"ReplicaSet {name} has successfully progressed.")
            if complete else
            cond("Progressing", "True", "ReplicaSetUpdated", f"ReplicaSet {name} is progressing."),
        ]
        status = {
            "observedGeneration": d["metadata"].get("generation", 1),
            "replicas": replicas, "updatedReplicas": updated,
            "readyReplicas": sum(st(r, "readyReplicas") for r in rss),
            "availableReplicas": available,
            "unavailableReplicas": max(0, want - available) if want else 0,
            "conditions": conds,
        }
        for k in ("readyReplicas", "availableReplicas", "unavailableReplicas", "updatedReplicas", "replicas"):
            if not status[k]:
                status.pop(k)
        if (d.get("status") or {}).get("collisionCount"):
            status["collisionCount"] = d["status"]["collisionCount"]
        old_st = copy.deepcopy(d.get("status") or {})
        cmp_new = {**status, "conditions": [{k: v for k, v in c.items() if k not in ("lastUpdateTime",)} for c in conds]}
        cmp_old = {**old_st, "conditions": [{k: v for k, v in c.items() if k not in ("lastUpdateTime",)}
                                            for c in old_st.get("conditions") or []]}
        if cmp_new == cmp_old:
            return
        nd = copy.deepcopy(d)
        nd["status"] = status
        try:
            await self.client.update("deployments", nd, namespace=d["metadata"]["namespace"], subresource="status")
        except ApiError as e:
            if e.code == 409:
                self.queue.add_after(f"{d['metadata']['namespace']}/{d['metadata']['name']}", 0.05)
            elif e.code != 404:
                raise
