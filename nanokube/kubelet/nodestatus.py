"""The kubelet's Node: registration, status heartbeats and the node Lease.

Capacity comes from the machine (psutil); the node reports Ready with upstream's reason and
message, its InternalIP and the kubelet endpoint the apiserver uses for logs. Status is
written every 10 s and the Lease in ``kube-node-lease`` renewed every 10 s, as upstream.
``status.images`` lists the runtime's local images (``NodeImages``): each image's on-disk size
is computed once per image version (keyed by its config.json's mtime), not on every beat.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import platform
from pathlib import Path
from typing import Any

import psutil

from nanokube.api.errors import ApiError
from nanokube.runtime.images import tree_size

Obj = dict[str, Any]
KUBELET_VERSION = "v1.37.0-nanokube"
MAX_IMAGES = 50   # upstream kubelet's --node-status-max-images default


def _now(micro: bool = False) -> str:
    t = dt.datetime.now(dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if micro else t.strftime("%Y-%m-%dT%H:%M:%SZ")


def default_capacity(max_pods: int = 110) -> dict[str, str]:
    return {"cpu": str(os.cpu_count() or 1), "memory": f"{psutil.virtual_memory().total // 1024}Ki",
            "pods": str(max_pods), "ephemeral-storage": f"{psutil.disk_usage('/').total // 1024}Ki"}


def os_image() -> str:
    try:
        for line in open("/etc/os-release"):
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


def image_names(name: str, tag: str) -> list[str]:
    """The names a local image is reported under: the fully qualified reference first, then
    the familiar one (``busybox`` → docker.io/library/busybox:latest, busybox:latest)."""
    first = name.split("/", 1)[0]
    if "/" in name and ("." in first or ":" in first or first == "localhost"):
        return [f"{name}:{tag}"]
    full = f"docker.io/{name}" if "/" in name else f"docker.io/library/{name}"
    return [f"{full}:{tag}", f"{name}:{tag}"]


def images_status(images: list[tuple[str, str, int]], *, limit: int = MAX_IMAGES) -> list[Obj]:
    """``status.images`` from (name, tag, size) triples: largest first, at most ``limit``, as
    upstream's kubelet reports them."""
    ordered = sorted(images, key=lambda t: (-t[2], t[0]))[:limit]
    return [{"names": image_names(n, tag), "sizeBytes": size} for n, tag, size in ordered]


class NodeImages:
    """The local image store as ``status.images``; sizes cached per image version."""

    def __init__(self, store: Any):
        self.store = store
        self._seen: dict[str, tuple[int, str, int]] = {}   # name → (config mtime_ns, tag, size)

    def status(self) -> list[Obj]:
        out: list[tuple[str, str, int]] = []
        seen: dict[str, tuple[int, str, int]] = {}
        for name in self.store.list():
            d = Path(self.store.root) / name
            try:
                stamp = (d / "config.json").stat().st_mtime_ns
                hit = self._seen.get(name)
                if hit is None or hit[0] != stamp:
                    tag = json.loads((d / "config.json").read_text()).get("tag") or "latest"
                    hit = (stamp, tag, tree_size(d / "rootfs"))
            except (OSError, ValueError):
                continue  # removed or being rewritten: the next beat sees it
            seen[name] = hit
            out.append((name, hit[1], hit[2]))
        self._seen = seen
        return images_status(out)


def node_status(*, node_ip: str, node_name: str, capacity: dict[str, str], kubelet_port: int,
                old: Obj | None = None, images: list[Obj] | None = None, allocatable: dict[str, str] | None = None,
                memory_pressure: bool = False) -> Obj:
    now = _now()
    old_conds = {c["type"]: c for c in (old or {}).get("conditions") or []}

    def cond(typ: str, status: str, reason: str, message: str) -> Obj:
        prev = old_conds.get(typ)
        return {"type": typ, "status": status, "lastHeartbeatTime": now,
                "lastTransitionTime": prev["lastTransitionTime"] if prev and prev["status"] == status else now,
                "reason": reason, "message": message}
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    extra = {} if images is None else {"images": images}
    return {
        **extra,
        "capacity": capacity, "allocatable": allocatable or capacity,
        "conditions": [
            cond("MemoryPressure", "True", "KubeletHasInsufficientMemory", "kubelet has insufficient memory available")
            if memory_pressure else
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ],
        "addresses": [{"type": "InternalIP", "address": node_ip}, {"type": "Hostname", "address": node_name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
        "nodeInfo": {"machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": platform.release(),
                     "osImage": os_image(), "containerRuntimeVersion": "nanokube://0.1.0",
                     "kubeletVersion": KUBELET_VERSION, "kubeProxyVersion": KUBELET_VERSION,
                     "operatingSystem": "linux", "architecture": arch},
    }


async def register(client: Any, *, node_name: str, node_ip: str, capacity: dict[str, str], kubelet_port: int,
                   allocatable: dict[str, str] | None = None) -> Obj:
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    node = {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": node_name, "labels": {"kubernetes.io/hostname": node_name, "kubernetes.io/os": "linux",
                                                       "kubernetes.io/arch": arch, "beta.kubernetes.io/os": "linux",
                                                       "beta.kubernetes.io/arch": arch}},
            "spec": {},
            "status": node_status(node_ip=node_ip, node_name=node_name, capacity=capacity, kubelet_port=kubelet_port,
                                  allocatable=allocatable)}
    try:
        return await client.create("nodes", node)
    except ApiError as e:
        if e.code != 409:
            raise
    return await heartbeat(client, node_name=node_name, node_ip=node_ip, capacity=capacity, kubelet_port=kubelet_port,
                           allocatable=allocatable)


async def heartbeat(client: Any, *, node_name: str, node_ip: str, capacity: dict[str, str], kubelet_port: int,
                    images: list[Obj] | None = None, allocatable: dict[str, str] | None = None,
                    memory_pressure: bool = False) -> Obj:
    for _ in range(5):
        node = await client.get("nodes", node_name)
        node["status"] = {**node.get("status", {}), **node_status(
            node_ip=node_ip, node_name=node_name, capacity=capacity, kubelet_port=kubelet_port, old=node.get("status"),
            images=images, allocatable=allocatable, memory_pressure=memory_pressure)}
        try:
            return await client.update("nodes", node, subresource="status")
        except ApiError as e:
            if e.code != 409:
                raise
    raise RuntimeError("node status: too many conflicts")


async def renew_lease(client: Any, node_name: str, *, duration: int = 40) -> None:
    now = _now(micro=True)
    try:
        lease = await client.get("leases", node_name, namespace="kube-node-lease")
        lease["spec"]["renewTime"] = now
        lease["spec"]["holderIdentity"] = node_name
        await client.update("leases", lease, namespace="kube-node-lease")
    except ApiError as e:
        if e.code != 404:
            raise
        await client.create("leases", {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                       "metadata": {"name": node_name, "namespace": "kube-node-lease"},
                                       "spec": {"holderIdentity": node_name, "leaseDurationSeconds": duration,
                                                "renewTime": now, "acquireTime": now}}, namespace="kube-node-lease")
