"""Endpoints controller: for each Service with a selector, the addresses of its pods
(endpoints_controller.go).

Ready pods go to ``addresses``, the others to ``notReadyAddresses``; named target ports are
resolved per pod from its container ports, and pods whose ports resolve alike share a
subset. Terminating pods are left out. Writes happen only when something changed.
"""
from __future__ import annotations

import copy
from typing import Any

from nanokube.api.errors import ApiError
from nanokube.api.selectors import matches
from .base import Controller, is_pod_ready, split_key

Obj = dict[str, Any]


def _target_port(pod: Obj, sp: Obj) -> int | None:
    tp = sp.get("targetPort", sp.get("port"))
    if isinstance(tp, int):
        return tp
    if isinstance(tp, str) and tp.isdigit():
        return int(tp)
    for c in pod["spec"].get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("name") == tp and p.get("protocol", "TCP") == sp.get("protocol", "TCP"):
                return p["containerPort"]
    return None


def plan_endpoints(svc: Obj, pods: list[Obj]) -> list[Obj]:
    """The Endpoints subsets for a service from the pods it selects (pure)."""
    sel = svc["spec"].get("selector") or {}
    publish = svc["spec"].get("publishNotReadyAddresses", False)
    groups: dict[tuple, dict[str, list]] = {}
    for pod in pods:
        md, st = pod["metadata"], pod.get("status") or {}
        if md.get("namespace") != svc["metadata"]["namespace"] or not matches(md.get("labels"), [(k, "=", (v,)) for k, v in sel.items()]):
            continue
        if not st.get("podIP") or md.get("deletionTimestamp") or st.get("phase") in ("Succeeded", "Failed"):
            continue
        ports = []
        for sp in svc["spec"].get("ports") or []:
            port = _target_port(pod, sp)
            if port is None:
                continue
            p = {"port": port, "protocol": sp.get("protocol", "TCP")}
            if sp.get("name"):
                p["name"] = sp["name"]
            ports.append(p)
        key = tuple(sorted((p.get("name", ""), p["port"], p["protocol"]) for p in ports))
        g = groups.setdefault(key, {"addresses": [], "notReadyAddresses": [], "ports": ports})
        addr = {"ip": st["podIP"], "nodeName": pod["spec"].get("nodeName"),
                "targetRef": {"kind": "Pod", "namespace": md["namespace"], "name": md["name"], "uid": md.get("uid")}}
        if not addr["nodeName"]:
            addr.pop("nodeName")
        # A pod with a hostname in this service's subdomain gets a DNS name of its own
        # (<hostname>.<service>.<ns>.svc.<domain>), as upstream's endpoints controller does.
        if pod["spec"].get("hostname") and pod["spec"].get("subdomain") == svc["metadata"]["name"]:
            addr["hostname"] = pod["spec"]["hostname"]
        (g["addresses"] if publish or is_pod_ready(pod) else g["notReadyAddresses"]).append(addr)
    subsets = []
    for key in sorted(groups):
        g = groups[key]
        s: Obj = {}
        for k in ("addresses", "notReadyAddresses"):
            if g[k]:
                s[k] = sorted(g[k], key=lambda a: a["ip"])
        if g["ports"]:
            s["ports"] = sorted(g["ports"], key=lambda p: (p.get("name", ""), p["port"]))
        subsets.append(s)
    return subsets


class EndpointsController(Controller):
    name = "endpoints"
    workers = 2

    def __init__(self, client: Any):
        super().__init__(client)
        self.services = self.informer("services")
        self.pods = self.informer("pods")
        self.endpoints = self.informer("endpoints")
        self.enqueue_handlers(self.services)
        self.pods.add_handler(on_add=self._pod, on_update=lambda o, n: (self._pod(o), self._pod(n)), on_delete=self._pod)
        self.endpoints.add_handler(on_delete=self.enqueue)

    def _pod(self, pod: Obj) -> None:
        labels = pod["metadata"].get("labels") or {}
        for svc in self.services.list():
            sel = svc["spec"].get("selector")
            if sel and svc["metadata"]["namespace"] == pod["metadata"].get("namespace") and \
                    all(labels.get(k) == v for k, v in sel.items()):
                self.enqueue(svc)

    async def sync(self, key: str) -> None:
        svc = self.services.get(key)
        ns, name = split_key(key)
        if svc is None or not svc["spec"].get("selector"):
            if svc is None and self.endpoints.get(key) is not None:
                try:
                    await self.client.delete("endpoints", name, namespace=ns)
                except ApiError as e:
                    if e.code != 404:
                        raise
            return
        subsets = plan_endpoints(svc, self.pods.list())
        labels = dict(svc["metadata"].get("labels") or {})
        cur = self.endpoints.get(key)
        if cur is None:
            ep = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name, "namespace": ns, "labels": labels},
                  "subsets": subsets}
            try:
                await self.client.create("endpoints", ep, namespace=ns)
            except ApiError as e:
                if e.code != 409:
                    raise
                self.queue.add_after(key, 0.1)
            return
        if (cur.get("subsets") or []) == subsets and (cur["metadata"].get("labels") or {}) == labels:
            return
        new = copy.deepcopy(cur)
        new["subsets"] = subsets
        new["metadata"]["labels"] = labels
        await self.client.update("endpoints", new, namespace=ns)
