"""EndpointSlices (discovery.k8s.io/v1), mirrored from each Service's Endpoints.

The Endpoints controller decides who serves a Service; this one publishes the same answer
as EndpointSlices, the form today's clients read (``kubectl describe service/ingress``,
anything built on client-go's discovery informers). One slice per port set — the Endpoints'
subsets — named ``<service>-<hash of the ports>`` so that a sync is idempotent, labelled
``kubernetes.io/service-name`` and owned by the Service (the garbage collector removes them
with it). Ready addresses become ``ready: true`` endpoints, not-ready ones ``ready: false``.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

from nanokube.api.errors import ApiError
from .base import Controller, Obj, split_key

SERVICE_LABEL = "kubernetes.io/service-name"
MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
MANAGER = "endpointslice-controller.k8s.io"


def plan_slices(svc: Obj, ep: Obj | None) -> list[Obj]:
    """The slices a Service's Endpoints come to (pure)."""
    md = svc["metadata"]
    out = []
    for subset in (ep or {}).get("subsets") or []:
        ports = [{"name": p.get("name", ""), "port": p["port"], "protocol": p.get("protocol", "TCP")}
                 for p in subset.get("ports") or []]
        digest = hashlib.sha256(json.dumps(ports, sort_keys=True).encode()).hexdigest()[:5]
        endpoints = []
        for ready, key in ((True, "addresses"), (False, "notReadyAddresses")):
            for a in subset.get(key) or []:
                e: Obj = {"addresses": [a["ip"]], "conditions": {"ready": ready, "serving": ready, "terminating": False}}
                if a.get("nodeName"):
                    e["nodeName"] = a["nodeName"]
                if a.get("hostname"):
                    e["hostname"] = a["hostname"]
                if a.get("targetRef"):
                    e["targetRef"] = a["targetRef"]
                endpoints.append(e)
        out.append({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": f"{md['name']}-{digest}", "namespace": md["namespace"],
                         "labels": {SERVICE_LABEL: md["name"], MANAGED_BY: MANAGER},
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": md["name"],
                                              "uid": md["uid"], "controller": True, "blockOwnerDeletion": True}]},
            "endpoints": sorted(endpoints, key=lambda e: e["addresses"][0]), "ports": ports,
        })
    return out


class EndpointSliceController(Controller):
    name = "endpointslice"

    def __init__(self, client: Any):
        super().__init__(client)
        self.services = self.informer("services")
        self.endpoints = self.informer("endpoints")
        self.slices = self.informer("endpointslices")
        self.enqueue_handlers(self.services)
        self.enqueue_handlers(self.endpoints)
        self.slices.add_handler(on_delete=lambda s: self.queue.add(
            f"{s['metadata']['namespace']}/{(s['metadata'].get('labels') or {}).get(SERVICE_LABEL, '')}"))

    async def sync(self, key: str) -> None:
        ns, name = split_key(key)
        svc = self.services.get(key)
        have = {s["metadata"]["name"]: s for s in self.slices.list()
                if s["metadata"].get("namespace") == ns and (s["metadata"].get("labels") or {}).get(SERVICE_LABEL) == name
                and (s["metadata"].get("labels") or {}).get(MANAGED_BY) == MANAGER}
        want = {s["metadata"]["name"]: s for s in plan_slices(svc, self.endpoints.get(key))} if svc else {}
        for sname, s in want.items():
            cur = have.get(sname)
            if cur is None:
                try:
                    await self.client.create("endpointslices", s, namespace=ns)
                except ApiError as e:
                    if e.code != 409:
                        raise
            elif (cur.get("endpoints") or []) != s["endpoints"] or cur.get("ports") != s["ports"]:
                await self.client.update("endpointslices", {**cur, "endpoints": s["endpoints"], "ports": s["ports"]},
                                         namespace=ns)
        for sname in set(have) - set(want):
            try:
                await self.client.delete("endpointslices", sname, namespace=ns)
            except ApiError as e:
                if e.code != 404:
                    raise
