"""The objects every cluster starts with: the system namespaces and the ``kubernetes`` Service.

The Service (10.96.0.1:443) and its Endpoints point at the apiserver, so pods reach the API
the way they do in any Kubernetes cluster. Re-checked periodically, so a deleted one returns.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from nanokube.api.errors import ApiError

log = logging.getLogger("nanokube.bootstrap")
NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


async def ensure(client: Any, *, apiserver_host: str, apiserver_port: int, service_ip: str = "10.96.0.1") -> None:
    for ns in NAMESPACES:
        await _create(client, "namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    await _create(client, "services", {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"clusterIP": service_ip, "type": "ClusterIP", "sessionAffinity": "None",
                 "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": apiserver_port}]},
    }, namespace="default")
    ep = {"apiVersion": "v1", "kind": "Endpoints",
          "metadata": {"name": "kubernetes", "namespace": "default",
                       "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
          "subsets": [{"addresses": [{"ip": apiserver_host}],
                       "ports": [{"name": "https", "port": apiserver_port, "protocol": "TCP"}]}]}
    try:
        cur = await client.get("endpoints", "kubernetes", namespace="default")
        if cur.get("subsets") != ep["subsets"]:
            cur["subsets"] = ep["subsets"]
            await client.update("endpoints", cur, namespace="default")
    except ApiError as e:
        if e.code != 404:
            raise
        await _create(client, "endpoints", ep, namespace="default")


async def _create(client: Any, resource: str, obj: dict, namespace: str | None = None) -> None:
    try:
        await client.create(resource, obj, namespace=namespace)
    except ApiError as e:
        if e.code != 409:
            raise


async def run(client: Any, **kw: Any) -> None:
    while True:
        try:
            await ensure(client, **kw)
        except Exception as e:  # noqa: BLE001 - try again next round
            log.warning("bootstrap objects: %r", e)
        await asyncio.sleep(30)
