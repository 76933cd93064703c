"""StatefulSet controller: pods with stable names, DNS identities and volumes
(stateful_set.go / stateful_set_control.go, reduced).

Pod ``<set>-<ordinal>`` gets hostname ``<set>-<ordinal>`` and subdomain ``serviceName`` (so
the headless Service gives it ``<pod>.<svc>.<ns>.svc.cluster.local``), the labels
``statefulset.kubernetes.io/pod-name``, ``apps.kubernetes.io/pod-index`` and
``controller-revision-hash``, and one claim ``<template>-<set>-<ordinal>`` per
volumeClaimTemplate, created before the pod and never deleted with it (retention policy
Retain, the default; ``whenDeleted``/``whenScaled: Delete`` hand the claims to the garbage
collector through owner references).

``plan`` is pure: given the set and its pods by ordinal it says which ordinals to create
and which pods to delete this round. OrderedReady does one step at a time: create ordinal
i only when 0..i-1 are Running and Ready, scale down from the highest ordinal once all the
others are healthy; Parallel creates and deletes all at once. A RollingUpdate deletes the
highest pod not at the update revision (down to ``partition``) once every pod above it is
healthy at the new revision; the pod comes back from the revision its ordinal should run.
Revisions are ControllerRevisions ``<set>-<hash>`` holding the pod template, so a pod below
the partition that is deleted comes back at the *current* revision. Names are
deterministic, so a stale cache can only cause an AlreadyExists, never a second pod.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from nanokube.api.errors import ApiError
from nanokube.client.events import emit
from .base import Controller, controller_ref, is_pod_ready, split_key
from .daemonset import template_hash

Obj = dict[str, Any]
COMPONENT = "statefulset-controller"
REVISION_LABEL = "controller-revision-hash"
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"


# -- pure ----------------------------------------------------------------------------------
def ordinal_of(sts_name: str, pod_name: str) -> int | None:
    prefix = sts_name + "-"
    if not pod_name.startswith(prefix):
        return None
    rest = pod_name[len(prefix):]
    return int(rest) if rest.isdigit() and (rest == "0" or not rest.startswith("0")) else None


def claim_name(template: Obj, sts_name: str, ordinal: int) -> str:
    return f"{template['metadata']['name']}-{sts_name}-{ordinal}"


def revision_name(sts: Obj) -> str:
    return f"{sts['metadata']['name']}-{template_hash(sts['spec'].get('template') or {})}"


def is_terminating(pod: Obj) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp"))


def is_healthy(pod: Obj) -> bool:
    return (not is_terminating(pod) and (pod.get("status") or {}).get("phase") == "Running"
            and is_pod_ready(pod))


def pod_revision(pod: Obj) -> str:
    return (pod["metadata"].get("labels") or {}).get(REVISION_LABEL, "")


def partition_of(sts: Obj) -> int:
    us = sts["spec"].get("updateStrategy") or {}
    return int((us.get("rollingUpdate") or {}).get("partition") or 0) if us.get("type", "RollingUpdate") == "RollingUpdate" else 0


@dataclass
class Plan:
    create: list[int] = field(default_factory=list)
    delete: list[Obj] = field(default_factory=list)


def plan(sts: Obj, pods: dict[int, Obj], update_revision: str) -> Plan:
    """What to create and delete this round (stateful_set_control.go's updateStatefulSet)."""
    spec = sts["spec"]
    n = spec.get("replicas", 1)
    ordered = spec.get("podManagementPolicy", "OrderedReady") != "Parallel"
    out = Plan()
    for i in range(n):
        pod = pods.get(i)
        if pod is None:
            out.create.append(i)
            if ordered:
                return out
            continue
        if (pod.get("status") or {}).get("phase") in ("Failed", "Succeeded") and not is_terminating(pod):
            out.delete.append(pod)  # recreated next round
            if ordered:
                return out
            continue
        if ordered and not is_healthy(pod):
            return out  # wait: ordinals come up one after the other
    for i in sorted((i for i in pods if i >= n), reverse=True):
        pod = pods[i]
        if is_terminating(pod):
            if ordered:
                return out
            continue
        out.delete.append(pod)
        if ordered:
            return out
    if out.create or out.delete:
        return out
    if (spec.get("updateStrategy") or {}).get("type", "RollingUpdate") != "RollingUpdate":
        return out
    for target in range(n - 1, partition_of(sts) - 1, -1):
        pod = pods.get(target)
        if pod is None or is_terminating(pod):
            return out
        if pod_revision(pod) != update_revision:
            out.delete.append(pod)
            return out
        if not is_healthy(pod):
            return out
    return out


def new_pod(sts: Obj, template: Obj, ordinal: int, revision: str) -> Obj:
    md = sts["metadata"]
    name = f"{md['name']}-{ordinal}"
    tmd = template.get("metadata") or {}
    spec = copy.deepcopy(template.get("spec") or {})
    labels = dict(tmd.get("labels") or {})
    labels.update({POD_NAME_LABEL: name, POD_INDEX_LABEL: str(ordinal), REVISION_LABEL: revision})
    spec["hostname"] = name
    if sts["spec"].get("serviceName"):
        spec["subdomain"] = sts["spec"]["serviceName"]
    vols = [v for v in spec.get("volumes") or []
            if v.get("name") not in {t["metadata"]["name"] for t in sts["spec"].get("volumeClaimTemplates") or []}]
    for t in sts["spec"].get("volumeClaimTemplates") or []:
        vols.append({"name": t["metadata"]["name"],
                     "persistentVolumeClaim": {"claimName": claim_name(t, md["name"], ordinal)}})
    if vols:
        spec["volumes"] = vols
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": md["namespace"], "labels": labels,
                         **({"annotations": dict(tmd["annotations"])} if tmd.get("annotations") else {}),
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": md["name"],
                                              "uid": md["uid"], "controller": True, "blockOwnerDeletion": True}]},
            "spec": spec}


def new_claim(sts: Obj, template: Obj, ordinal: int) -> Obj:
    md = sts["metadata"]
    labels = dict((template.get("metadata") or {}).get("labels") or {})
    labels.update(((sts["spec"].get("selector") or {}).get("matchLabels") or {}))
    claim: Obj = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                  "metadata": {"name": claim_name(template, md["name"], ordinal), "namespace": md["namespace"],
                               "labels": labels},
                  "spec": copy.deepcopy(template.get("spec") or {})}
    if (template.get("metadata") or {}).get("annotations"):
        claim["metadata"]["annotations"] = dict(template["metadata"]["annotations"])
    if (sts["spec"].get("persistentVolumeClaimRetentionPolicy") or {}).get("whenDeleted") == "Delete":
        claim["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": md["name"],
                                                 "uid": md["uid"], "blockOwnerDeletion": True}]
    return claim


def compute_status(sts: Obj, pods: dict[int, Obj], *, current: str, update: str) -> Obj:
    n = sts["spec"].get("replicas", 1)
    live = [p for p in pods.values() if not is_terminating(p)]
    st: Obj = {
        "replicas": len(live),
        "readyReplicas": sum(1 for p in live if is_healthy(p)),
        "currentReplicas": sum(1 for p in live if pod_revision(p) == current),
        "updatedReplicas": sum(1 for p in live if pod_revision(p) == update),
        "currentRevision": current, "updateRevision": update,
        "observedGeneration": sts["metadata"].get("generation", 1),
        "collisionCount": (sts.get("status") or {}).get("collisionCount", 0),
    }
    st["availableReplicas"] = st["readyReplicas"]
    # The rollout is complete: the update revision becomes the current one (completeRollingUpdate).
    if (st["updatedReplicas"] == n and st["readyReplicas"] == n and st["replicas"] == n
            and (sts["spec"].get("updateStrategy") or {}).get("type", "RollingUpdate") == "RollingUpdate"):
        st["currentRevision"], st["currentReplicas"] = update, st["updatedReplicas"]
    return st


# -- the controller ------------------------------------------------------------------------
class StatefulSetController(Controller):
    name = "statefulset"
    workers = 2

    def __init__(self, client: Any):
        super().__init__(client)
        self.sets = self.informer("statefulsets")
        self.pods = self.informer("pods")
        self.claims = self.informer("persistentvolumeclaims")
        self.revisions = self.informer("controllerrevisions")
        self.enqueue_handlers(self.sets)
        self.pods.add_handler(on_add=self._pod, on_update=lambda o, n: self._pod(n), on_delete=self._pod)

    def _pod(self, pod: Obj) -> None:
        ref = controller_ref(pod)
        if ref and ref.get("kind") == "StatefulSet":
            self.queue.add(f"{pod['metadata'].get('namespace')}/{ref['name']}")

    async def sync(self, key: str) -> None:
        sts = self.sets.get(key)
        if sts is None or sts["metadata"].get("deletionTimestamp"):
            return
        ns, name = split_key(key)
        uid = sts["metadata"]["uid"]
        pods: dict[int, Obj] = {}
        for p in self.pods.list():
            if p["metadata"].get("namespace") != ns or (controller_ref(p) or {}).get("uid") != uid:
                continue
            i = ordinal_of(name, p["metadata"]["name"])
            if i is not None:
                pods[i] = p
        update = await self._ensure_revision(sts)
        current = (sts.get("status") or {}).get("currentRevision") or update
        if current != update and self._revision(ns, current) is None:
            current = update
        step = plan(sts, pods, update)
        for pod in step.delete:
            await self._delete(sts, pod)
        for i in step.create:
            await self._create(sts, i, current if i < partition_of(sts) else update)
        await self._status(sts, compute_status(sts, pods, current=current, update=update))

    def _revision(self, ns: str | None, name: str) -> Obj | None:
        return self.revisions.get(f"{ns}/{name}")

    async def _ensure_revision(self, sts: Obj) -> str:
        md = sts["metadata"]
        name = revision_name(sts)
        if self._revision(md["namespace"], name) is not None:
            return name
        owned = [r for r in self.revisions.list() if r["metadata"].get("namespace") == md["namespace"]
                 and (controller_ref(r) or {}).get("uid") == md["uid"]]
        cr = {"apiVersion": "apps/v1", "kind": "ControllerRevision",
              "metadata": {"name": name, "namespace": md["namespace"],
                           "labels": dict(((sts["spec"].get("selector") or {}).get("matchLabels") or {})),
                           "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": md["name"],
                                                "uid": md["uid"], "controller": True, "blockOwnerDeletion": True}]},
              "data": {"spec": {"template": copy.deepcopy(sts["spec"].get("template") or {})}},
              "revision": max((r.get("revision", 0) for r in owned), default=0) + 1}
        try:
            await self.client.create("controllerrevisions", cr, namespace=md["namespace"])
        except ApiError as e:
            if e.code != 409:
                raise
        # Keep revisionHistoryLimit old revisions (plus the live ones).
        live = {name, (sts.get("status") or {}).get("currentRevision")}
        old = sorted((r for r in owned if r["metadata"]["name"] not in live), key=lambda r: r.get("revision", 0))
        for r in old[:max(0, len(old) - sts["spec"].get("revisionHistoryLimit", 10))]:
            try:
                await self.client.delete("controllerrevisions", r["metadata"]["name"], namespace=md["namespace"])
            except ApiError as e:
                if e.code != 404:
                    raise
        return name

    async def _create(self, sts: Obj, ordinal: int, revision: str) -> None:
        md = sts["metadata"]
        cr = self._revision(md["namespace"], revision)
        template = ((cr or {}).get("data") or {}).get("spec", {}).get("template") or sts["spec"]["template"]
        pod = new_pod(sts, template, ordinal, revision)
        for t in sts["spec"].get("volumeClaimTemplates") or []:
            claim = new_claim(sts, t, ordinal)
            if self.claims.get(f"{md['namespace']}/{claim['metadata']['name']}") is not None:
                continue
            try:
                await self.client.create("persistentvolumeclaims", claim, namespace=md["namespace"])
            except ApiError as e:
                if e.code != 409:
                    await emit(self.client, sts, reason="FailedCreate", type="Warning", component=COMPONENT,
                               message=f"create Claim {claim['metadata']['name']} for Pod {pod['metadata']['name']} "
                                       f"in StatefulSet {md['name']} failed error: {e.message}")
                    raise
                continue
            await emit(self.client, sts, reason="SuccessfulCreate", component=COMPONENT,
                       message=f"create Claim {claim['metadata']['name']} Pod {pod['metadata']['name']} "
                               f"in StatefulSet {md['name']} success")
        try:
            await self.client.create("pods", pod, namespace=md["namespace"])
        except ApiError as e:
            if e.code == 409:
                return  # our cache is behind: the pod is there
            await emit(self.client, sts, reason="FailedCreate", type="Warning", component=COMPONENT,
                       message=f"create Pod {pod['metadata']['name']} in StatefulSet {md['name']} failed error: {e.message}")
            raise
        await emit(self.client, sts, reason="SuccessfulCreate", component=COMPONENT,
                   message=f"create Pod {pod['metadata']['name']} in StatefulSet {md['name']} successful")

    async def _delete(self, sts: Obj, pod: Obj) -> None:
        md = sts["metadata"]
        name = pod["metadata"]["name"]
        n = sts["spec"].get("replicas", 1)
        i = ordinal_of(md["name"], name)
        if i is not None and i >= n and \
                (sts["spec"].get("persistentVolumeClaimRetentionPolicy") or {}).get("whenScaled") == "Delete":
            await self._claims_follow_pod(sts, pod, i)
        try:
            await self.client.delete("pods", name, namespace=md["namespace"], preconditions={"uid": pod["metadata"]["uid"]})
        except ApiError as e:
            if e.code in (404, 409):
                return
            raise
        await emit(self.client, sts, reason="SuccessfulDelete", component=COMPONENT,
                   message=f"delete Pod {name} in StatefulSet {md['name']} successful")

    async def _claims_follow_pod(self, sts: Obj, pod: Obj, ordinal: int) -> None:
        """whenScaled: Delete — the condemned pod owns its claims, so they go with it."""
        ns = sts["metadata"]["namespace"]
        ref = {"apiVersion": "v1", "kind": "Pod", "name": pod["metadata"]["name"], "uid": pod["metadata"]["uid"]}
        for t in sts["spec"].get("volumeClaimTemplates") or []:
            cn = claim_name(t, sts["metadata"]["name"], ordinal)
            claim = self.claims.get(f"{ns}/{cn}")
            if claim is None or any(o.get("uid") == ref["uid"] for o in claim["metadata"].get("ownerReferences") or []):
                continue
            refs = list(claim["metadata"].get("ownerReferences") or []) + [ref]
            try:
                await self.client.patch("persistentvolumeclaims", cn, {"metadata": {"ownerReferences": refs}}, namespace=ns)
            except ApiError as e:
                if e.code != 404:
                    raise

    async def _status(self, sts: Obj, status: Obj) -> None:
        old = sts.get("status") or {}
        new_status = {**{k: v for k, v in old.items() if k == "conditions"}, **status}
        if new_status == old:
            return
        new = copy.deepcopy(sts)
        new["status"] = new_status
        try:
            await self.client.update("statefulsets", new, namespace=sts["metadata"]["namespace"], subresource="status")
        except ApiError as e:
            if e.code not in (404, 409):
                raise
            if e.code == 409:
                self.queue.add_after(f"{sts['metadata']['namespace']}/{sts['metadata']['name']}", 0.05)
