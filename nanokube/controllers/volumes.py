"""PersistentVolume binder, local-path provisioner and claim protection (pv_controller.go and
rancher's local-path-provisioner, reduced), plus the default StorageClass.

A claim binds to the smallest available volume that satisfies it (class, access modes,
volume mode, capacity). Claims of a ``WaitForFirstConsumer`` class wait until a pod using
them is scheduled; then a matching static volume on that node is bound, or — for the
``nanokube.io/local-path`` provisioner — a volume ``pvc-<claim uid>`` is created, pre-bound
to the claim, whose ``hostPath`` is ``<node local-path root>/<pv name>`` with node affinity
to that node. The root is the node's data dir (``<agent data dir>/volumes``), published by
the kubelet as the node annotation ``nanokube.io/local-path-root``: local clusters share
one filesystem, so the path must differ per node. The kubelet creates the directory when it
mounts the volume and removes it once its volume object is gone (kubelet/volumes.py): the
data lives on the node, so the node cleans it.

Binding writes the volume's ``claimRef`` first (compare-and-swap on its resourceVersion,
so two claims never take one volume), then the claim's ``volumeName``, then both statuses.
When a bound claim goes away its volume is Released, and deleted if its reclaim policy is
Delete. A claim carries the ``kubernetes.io/pvc-protection`` finalizer (registry admission)
that this controller removes only when no pod uses the claim any more.
"""
from __future__ import annotations

import copy
from typing import Any

from nanokube.api.errors import ApiError
from nanokube.api.quantity import bytes_
from nanokube.client.events import emit
from nanokube.scheduler.plugins.volume_binding import HOSTNAME_LABEL, claim_names, volume_fits_node
from .base import Controller, is_active

Obj = dict[str, Any]
PROVISIONER = "nanokube.io/local-path"
DEFAULT_CLASS = "local-path"
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
ROOT_ANNOTATION = "nanokube.io/local-path-root"
SELECTED_NODE = "volume.kubernetes.io/selected-node"
PVC_PROTECTION = "kubernetes.io/pvc-protection"
COMPONENT = "persistentvolume-controller"


def default_storage_class() -> Obj:
    return {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": DEFAULT_CLASS, "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}},
            "provisioner": PROVISIONER, "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer"}


# -- pure ----------------------------------------------------------------------------------
def _request(pvc: Obj) -> int:
    return bytes_((((pvc.get("spec") or {}).get("resources") or {}).get("requests") or {}).get("storage", "0"))


def volume_satisfies(pv: Obj, pvc: Obj) -> bool:
    """Could ``pv`` serve ``pvc`` (ignoring who else wants it)?"""
    ps, cs = pv.get("spec") or {}, pvc.get("spec") or {}
    if (ps.get("storageClassName") or "") != (cs.get("storageClassName") or ""):
        return False
    if ps.get("volumeMode", "Filesystem") != cs.get("volumeMode", "Filesystem"):
        return False
    if not set(cs.get("accessModes") or []) <= set(ps.get("accessModes") or []):
        return False
    return bytes_((ps.get("capacity") or {}).get("storage", "0")) >= _request(pvc)


def find_volume(pvc: Obj, pvs: list[Obj], *, node: Obj | None = None) -> Obj | None:
    """The smallest available volume for the claim (on ``node`` when given)."""
    uid = pvc["metadata"].get("uid")
    fits = []
    for pv in pvs:
        ref = (pv.get("spec") or {}).get("claimRef")
        if pv["metadata"].get("deletionTimestamp") or (ref and ref.get("uid") not in (None, uid)):
            continue
        if ref and (ref.get("namespace"), ref.get("name")) != (pvc["metadata"]["namespace"], pvc["metadata"]["name"]):
            continue
        if not volume_satisfies(pv, pvc) or (node is not None and not volume_fits_node(pv, node)):
            continue
        fits.append(pv)
    return min(fits, key=lambda p: (bytes_(p["spec"]["capacity"]["storage"]), p["metadata"]["name"]), default=None)


def provisioned_volume(pvc: Obj, sc: Obj, node: str, root: str) -> Obj:
    """The local-path volume for a claim on a node, pre-bound to the claim."""
    md, spec = pvc["metadata"], pvc.get("spec") or {}
    name = f"pvc-{md['uid']}"
    return {
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": name, "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER,
                                                   "local.path.provisioner/selected-node": node}},
        "spec": {
            "capacity": {"storage": ((spec.get("resources") or {}).get("requests") or {}).get("storage", "0")},
            "accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"]),
            "persistentVolumeReclaimPolicy": sc.get("reclaimPolicy", "Delete"),
            "storageClassName": sc["metadata"]["name"],
            "volumeMode": spec.get("volumeMode", "Filesystem"),
            "hostPath": {"path": f"{root.rstrip('/')}/{name}", "type": "DirectoryOrCreate"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": HOSTNAME_LABEL, "operator": "In", "values": [node]}]}]}},
            "claimRef": {"kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": md["namespace"],
                         "name": md["name"], "uid": md["uid"], "resourceVersion": md.get("resourceVersion", "")},
        },
    }


def claim_in_use(pvc: Obj, pods: list[Obj]) -> bool:
    ns, name = pvc["metadata"]["namespace"], pvc["metadata"]["name"]
    return any(p["metadata"].get("namespace") == ns and name in claim_names(p)
               and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed") for p in pods)


def consumer_node(pvc: Obj, pods: list[Obj]) -> str | None:
    """The node of a scheduled, live pod that uses the claim (or the selected-node annotation)."""
    sel = (pvc["metadata"].get("annotations") or {}).get(SELECTED_NODE)
    if sel:
        return sel
    ns, name = pvc["metadata"]["namespace"], pvc["metadata"]["name"]
    for p in sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp", "")):
        if p["metadata"].get("namespace") == ns and name in claim_names(p) and is_active(p) \
                and (p.get("spec") or {}).get("nodeName"):
            return p["spec"]["nodeName"]
    return None


def claim_status(pvc: Obj, pv: Obj) -> Obj:
    return {**(pvc.get("status") or {}), "phase": "Bound", "accessModes": list(pv["spec"].get("accessModes") or []),
            "capacity": dict(pv["spec"].get("capacity") or {})}


# -- the controller ------------------------------------------------------------------------
class VolumeController(Controller):
    name = "persistentvolume"
    workers = 2

    def __init__(self, client: Any):
        super().__init__(client)
        self.pvcs = self.informer("persistentvolumeclaims")
        self.pvs = self.informer("persistentvolumes")
        self.classes = self.informer("storageclasses")
        self.pods = self.informer("pods")
        self.nodes = self.informer("nodes")
        self.pvcs.add_handler(on_add=self._claim, on_update=lambda o, n: self._claim(n), on_delete=self._claim_gone)
        self.pvs.add_handler(on_add=self._volume, on_update=lambda o, n: self._volume(n), on_delete=self._volume)
        self.pods.add_handler(on_add=self._pod, on_update=lambda o, n: self._pod(n), on_delete=self._pod)
        self.nodes.add_handler(on_update=lambda o, n: self._all_pending())
        self._last_event: dict[str, str] = {}  # claim uid -> reason of the last "still pending" event

    # keys: "claim:<ns>/<name>" and "volume:<name>"
    def _claim(self, pvc: Obj) -> None:
        self.queue.add(f"claim:{pvc['metadata']['namespace']}/{pvc['metadata']['name']}")

    def _claim_gone(self, pvc: Obj) -> None:
        self._last_event.pop(pvc["metadata"].get("uid", ""), None)
        if (pvc.get("spec") or {}).get("volumeName"):
            self.queue.add(f"volume:{pvc['spec']['volumeName']}")

    def _volume(self, pv: Obj) -> None:
        self.queue.add(f"volume:{pv['metadata']['name']}")
        if not (pv.get("spec") or {}).get("claimRef"):
            self._all_pending()
        else:
            ref = pv["spec"]["claimRef"]
            self.queue.add(f"claim:{ref.get('namespace')}/{ref.get('name')}")

    def _pod(self, pod: Obj) -> None:
        for name in claim_names(pod):
            self.queue.add(f"claim:{pod['metadata'].get('namespace')}/{name}")

    def _all_pending(self) -> None:
        for pvc in self.pvcs.list():
            if not (pvc.get("spec") or {}).get("volumeName"):
                self._claim(pvc)

    async def sync(self, key: str) -> None:
        kind, _, rest = key.partition(":")
        if kind == "claim":
            await self._sync_claim(rest)
        elif kind == "volume":
            await self._sync_volume(rest)

    # -- claims ----------------------------------------------------------------------------
    async def _sync_claim(self, key: str) -> None:
        pvc = self.pvcs.get(key)
        if pvc is None:
            return
        md = pvc["metadata"]
        if md.get("deletionTimestamp"):
            if PVC_PROTECTION in (md.get("finalizers") or []) and not claim_in_use(pvc, self.pods.list()):
                new = copy.deepcopy(pvc)
                new["metadata"]["finalizers"] = [f for f in md["finalizers"] if f != PVC_PROTECTION]
                try:
                    await self.client.update("persistentvolumeclaims", new, namespace=md["namespace"])
                except ApiError as e:
                    if e.code == 409:
                        self.queue.add_after(f"claim:{key}", 0.1)
                    elif e.code != 404:
                        raise
            return
        vname = (pvc.get("spec") or {}).get("volumeName")
        if vname:
            pv = self.pvs.get(vname)
            if pv is None:
                await self._claim_phase(pvc, {"phase": "Lost"})
                return
            ref = pv["spec"].get("claimRef") or {}
            if not ref:  # pre-bound by the user through volumeName: complete it from the volume's side
                await self._bind_volume(pv, pvc)
                return
            if ref.get("uid") == md["uid"]:
                await self._claim_phase(pvc, claim_status(pvc, pv))
            return
        sc = self.classes.get(pvc["spec"].get("storageClassName") or "") if pvc["spec"].get("storageClassName") else None
        node = None
        if sc is not None and sc.get("volumeBindingMode") == "WaitForFirstConsumer":
            node_name = consumer_node(pvc, self.pods.list())
            if node_name is None:
                await self._waiting(pvc, "WaitForFirstConsumer",
                                    "waiting for first consumer to be created before binding")
                return
            node = self.nodes.get(node_name)
            if node is None:
                return
        pv = find_volume(pvc, self.pvs.list(), node=node)
        if pv is not None:
            await self._bind(pv, pvc)
            return
        if sc is None or sc.get("provisioner") != PROVISIONER:
            if sc is None and pvc["spec"].get("storageClassName"):
                await self._waiting(pvc, "ProvisioningFailed",
                                    f'storageclass.storage.k8s.io "{pvc["spec"]["storageClassName"]}" not found',
                                    type="Warning")
            else:
                await self._waiting(pvc, "FailedBinding",
                                    "no persistent volumes available for this claim and no storage class is set")
            return
        if node is None:
            await self._waiting(pvc, "ProvisioningFailed", "the local-path provisioner needs a node: use a "
                                "WaitForFirstConsumer storage class", type="Warning")
            return
        root = (node["metadata"].get("annotations") or {}).get(ROOT_ANNOTATION)
        if not root:
            await self._waiting(pvc, "ExternalProvisioning",
                                f"waiting for node {node['metadata']['name']} to publish its local-path root")
            self.queue.add_after(f"claim:{key}", 2.0)
            return
        await self._provision(pvc, sc, node["metadata"]["name"], root)

    async def _provision(self, pvc: Obj, sc: Obj, node: str, root: str) -> None:
        pv = provisioned_volume(pvc, sc, node, root)
        await emit(self.client, pvc, reason="Provisioning", component=f"{PROVISIONER}_{node}",
                   message=f'External provisioner is provisioning volume for claim '
                           f'"{pvc["metadata"]["namespace"]}/{pvc["metadata"]["name"]}"')
        try:
            created = await self.client.create("persistentvolumes", pv)
        except ApiError as e:
            if e.code != 409:
                raise
            created = await self.client.get("persistentvolumes", pv["metadata"]["name"])
        await emit(self.client, pvc, reason="ProvisioningSucceeded", component=f"{PROVISIONER}_{node}",
                   message=f"Successfully provisioned volume {pv['metadata']['name']}")
        await self._bind(created, pvc)

    async def _bind(self, pv: Obj, pvc: Obj) -> None:
        md = pvc["metadata"]
        pv = await self._bind_volume(pv, pvc)
        if pv is None:
            return
        new = copy.deepcopy(pvc)
        new["spec"]["volumeName"] = pv["metadata"]["name"]
        ann = new["metadata"].setdefault("annotations", {})
        ann["pv.kubernetes.io/bind-completed"] = "yes"
        ann["pv.kubernetes.io/bound-by-controller"] = "yes"
        if pv["metadata"].get("annotations", {}).get("pv.kubernetes.io/provisioned-by"):
            ann["volume.kubernetes.io/storage-provisioner"] = PROVISIONER
        try:
            updated = await self.client.update("persistentvolumeclaims", new, namespace=md["namespace"])
        except ApiError as e:
            if e.code == 409:
                self.queue.add_after(f"claim:{md['namespace']}/{md['name']}", 0.1)
                return
            raise
        await self._claim_phase(updated, claim_status(updated, pv))

    async def _bind_volume(self, pv: Obj, pvc: Obj) -> Obj | None:
        """The volume's half of a binding: claimRef (CAS on resourceVersion) and status Bound."""
        md = pvc["metadata"]
        new = copy.deepcopy(pv)
        if (new["spec"].get("claimRef") or {}).get("uid") != md["uid"]:
            new["spec"]["claimRef"] = {"kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": md["namespace"],
                                       "name": md["name"], "uid": md["uid"],
                                       "resourceVersion": md.get("resourceVersion", "")}
            new["metadata"].setdefault("annotations", {})["pv.kubernetes.io/bound-by-controller"] = "yes"
            try:
                new = await self.client.update("persistentvolumes", new)
            except ApiError as e:
                if e.code in (404, 409):  # taken or gone meanwhile: try again from the caches
                    self.queue.add_after(f"claim:{md['namespace']}/{md['name']}", 0.1)
                    return None
                raise
        if (new.get("status") or {}).get("phase") != "Bound":
            new = copy.deepcopy(new)
            new["status"] = {"phase": "Bound"}
            new = await self.client.update("persistentvolumes", new, subresource="status")
        return new

    async def _claim_phase(self, pvc: Obj, status: Obj) -> None:
        if {**(pvc.get("status") or {}), **status} == (pvc.get("status") or {}):
            return
        new = copy.deepcopy(pvc)
        new["status"] = {**(pvc.get("status") or {}), **status}
        if status.get("phase") != "Bound":
            new["status"].pop("capacity", None)
            new["status"].pop("accessModes", None)
        md = pvc["metadata"]
        try:
            await self.client.update("persistentvolumeclaims", new, namespace=md["namespace"], subresource="status")
        except ApiError as e:
            if e.code == 409:
                self.queue.add_after(f"claim:{md['namespace']}/{md['name']}", 0.1)
            elif e.code != 404:
                raise

    async def _waiting(self, pvc: Obj, reason: str, message: str, *, type: str = "Normal") -> None:
        """Pending, with one event per distinct reason (not one per sync)."""
        uid = pvc["metadata"]["uid"]
        if self._last_event.get(uid) == reason:
            return
        self._last_event[uid] = reason
        await emit(self.client, pvc, reason=reason, type=type, component=COMPONENT, message=message)

    # -- volumes ---------------------------------------------------------------------------
    async def _sync_volume(self, name: str) -> None:
        pv = self.pvs.get(name)
        if pv is None or pv["metadata"].get("deletionTimestamp"):
            return
        ref = pv["spec"].get("claimRef")
        if not ref:
            await self._volume_phase(pv, "Available")
            return
        pvc = self.pvcs.get(f"{ref.get('namespace')}/{ref.get('name')}")
        if pvc is not None and (not ref.get("uid") or pvc["metadata"]["uid"] == ref["uid"]):
            if pvc["spec"].get("volumeName") == name:
                await self._volume_phase(pv, "Bound")
            return
        if not ref.get("uid"):
            return  # pre-bound by the user to a claim not created yet
        # The claim it was bound to is gone: Released, then reclaimed.
        if pv["spec"].get("persistentVolumeReclaimPolicy") == "Delete":
            try:
                await self.client.delete("persistentvolumes", name)
            except ApiError as e:
                if e.code != 404:
                    raise
            await emit(self.client, pv, reason="VolumeDeleted", component=COMPONENT,
                       message=f"volume {name} deleted: its claim {ref.get('namespace')}/{ref.get('name')} is gone")
            return
        await self._volume_phase(pv, "Released")

    async def _volume_phase(self, pv: Obj, phase: str) -> None:
        if (pv.get("status") or {}).get("phase") == phase:
            return
        new = copy.deepcopy(pv)
        new["status"] = {"phase": phase}
        try:
            await self.client.update("persistentvolumes", new, subresource="status")
        except ApiError as e:
            if e.code == 409:
                self.queue.add_after(f"volume:{pv['metadata']['name']}", 0.1)
            elif e.code != 404:
                raise


async def ensure_default_class(client: Any) -> None:
    """The ``local-path`` StorageClass every cluster starts with (bootstrap pattern: created if missing)."""
    try:
        await client.create("storageclasses", default_storage_class())
    except ApiError as e:
        if e.code != 409:
            raise
