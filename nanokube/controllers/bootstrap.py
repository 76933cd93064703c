"""The objects every cluster starts with: the system namespaces, the ``kubernetes`` Service
and the ``kube-dns`` Service.

The ``kubernetes`` Service (10.96.0.1:443) and its Endpoints point at the apiserver, so pods
reach the API the way they do in any Kubernetes cluster. ``kube-system/kube-dns``
(10.96.0.10, ports 53/UDP and 53/TCP, no selector) has Endpoints pointing at the cluster DNS
that runs inside the server (network/dns.py), so kube-proxy DNATs the pods' nameserver to it.
The IngressClass ``nginx`` (the default class) names the controller every agent runs
(network/ingress_agent.py).
The PriorityClasses ``system-cluster-critical`` and ``system-node-critical`` are the two
built-in classes kube-apiserver creates (validation reserves the ``system-`` prefix for them).
Re-checked periodically, so a deleted one returns.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from nanokube.api.errors import ApiError
from nanokube.api.validation import SYSTEM_PRIORITY_CLASSES

log = logging.getLogger("nanokube.bootstrap")
NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


async def ensure(client: Any, *, apiserver_host: str, apiserver_port: int, service_ip: str = "10.96.0.1",
                 dns_ip: str = "10.96.0.10", dns_port: int = 53) -> None:
    for ns in NAMESPACES:
        await _create(client, "namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    for name, (value, description) in SYSTEM_PRIORITY_CLASSES.items():
        await _create(client, "priorityclasses", {
            "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name},
            "value": value, "description": description})
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
    await _ensure_endpoints(client, ep)
    await _create(client, "ingressclasses", {
        "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
        "metadata": {"name": "nginx", "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"},
                     "labels": {"app.kubernetes.io/component": "controller"}},
        "spec": {"controller": "k8s.io/ingress-nginx"}})
    if dns_port:
        await _create(client, "services", {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": "kube-system",
                         "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"}},
            "spec": {"clusterIP": dns_ip, "type": "ClusterIP", "sessionAffinity": "None",
                     "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": dns_port},
                               {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": dns_port}]},
        }, namespace="kube-system")
        await _ensure_endpoints(client, {
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}},
            "subsets": [{"addresses": [{"ip": apiserver_host}],
                         "ports": [{"name": "dns", "port": dns_port, "protocol": "UDP"},
                                   {"name": "dns-tcp", "port": dns_port, "protocol": "TCP"}]}]})


async def _ensure_endpoints(client: Any, ep: dict) -> None:
    ns, name = ep["metadata"]["namespace"], ep["metadata"]["name"]
    try:
        cur = await client.get("endpoints", name, namespace=ns)
        if cur.get("subsets") != ep["subsets"]:
            cur["subsets"] = ep["subsets"]
            await client.update("endpoints", cur, namespace=ns)
    except ApiError as e:
        if e.code != 404:
            raise
        await _create(client, "endpoints", ep, namespace=ns)


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
