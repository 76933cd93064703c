"""The resource metrics API, ``metrics.k8s.io/v1beta1`` — what metrics-server adds to a real
cluster, served by the apiserver itself so that ``kubectl top nodes|pods`` works.

NodeMetrics and PodMetrics are never stored: each request is answered from the Summary API
(``/stats/summary``) of every Ready node's kubelet, fetched concurrently with a short timeout
and cached for ``ttl`` seconds (the kubelets sample every 5 s, so fetching more often buys
nothing). A node that does not answer is left out, as metrics-server does. The two
resources are not in ``nanokube.api.resources.RESOURCES`` on purpose: that table drives
storage, namespace cleanup and OpenAPI for stored kinds, and its keys are the plurals, which
``nodes`` and ``pods`` already are; discovery adds this group by hand instead.

Pure parts (quantity formatting, Summary → NodeMetrics/PodMetrics, discovery documents) are
separate from the fetching, so they can be tested without a cluster.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from typing import Any, Awaitable, Callable

import aiohttp
from aiohttp import web

from nanokube.api import quantity
from nanokube.api.errors import ApiError, NotFound
from nanokube.api.resources import Resource

log = logging.getLogger("nanokube.apiserver.metrics")
Obj = dict[str, Any]

GROUP, VERSION = "metrics.k8s.io", "v1beta1"
GROUP_VERSION = f"{GROUP}/{VERSION}"
NODE_METRICS = Resource("nodes", "NodeMetrics", GROUP, VERSION, False, verbs=("get", "list"))
POD_METRICS = Resource("pods", "PodMetrics", GROUP, VERSION, True, verbs=("get", "list"))
FETCH_TIMEOUT = 3.0
TTL = 5.0
DEFAULT_WINDOW = 5.0


# -- quantities as resource.Quantity prints them ---------------------------------------------
_DEC_SUFFIX = {-9: "n", -6: "u", -3: "m", 0: "", 3: "k", 6: "M", 9: "G", 12: "T", 15: "P", 18: "E"}
_BIN_SUFFIX = ((60, "Ei"), (50, "Pi"), (40, "Ti"), (30, "Gi"), (20, "Mi"), (10, "Ki"))


def format_cpu(nanocores: int) -> str:
    """Nanocores in canonical decimal form, like ``resource.NewScaledQuantity(n, -9)``:
    the largest SI suffix that keeps the value exact ("12345n", "5m", "2")."""
    n = int(nanocores)
    if n == 0:
        return "0"
    exp = -9
    while exp < 18 and n % 1000 == 0:
        n //= 1000
        exp += 3
    return f"{n}{_DEC_SUFFIX[exp]}"


def format_memory(num_bytes: int) -> str:
    """Bytes in canonical binary form, like ``resource.NewQuantity(b, BinarySI)``: the largest
    power-of-1024 suffix that keeps the value exact ("1234Ki"), plain bytes otherwise."""
    b = int(num_bytes)
    if -1024 < b < 1024:
        return str(b)
    for shift, suf in _BIN_SUFFIX:
        if b % (1 << shift) == 0:
            return f"{b >> shift}{suf}"
    return str(b)


# -- Summary → metrics objects ----------------------------------------------------------------
def _window(cpu: Obj) -> str:
    return f"{cpu.get('windowSeconds', DEFAULT_WINDOW):g}s"


def _usage(stats: Obj) -> Obj | None:
    cpu, mem = stats.get("cpu") or {}, stats.get("memory") or {}
    if "usageNanoCores" not in cpu or "workingSetBytes" not in mem:
        return None
    return {"cpu": format_cpu(cpu["usageNanoCores"]), "memory": format_memory(mem["workingSetBytes"])}


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def node_metrics(node: Obj, summary: Obj) -> Obj | None:
    """A NodeMetrics from one kubelet's Summary (None when it has no complete sample yet)."""
    stats = summary.get("node") or {}
    usage = _usage(stats)
    if usage is None:
        return None
    md = node["metadata"]
    return {"kind": "NodeMetrics", "apiVersion": GROUP_VERSION,
            "metadata": {"name": md["name"], "creationTimestamp": _now(), "labels": dict(md.get("labels") or {})},
            "timestamp": stats["cpu"]["time"], "window": _window(stats["cpu"]), "usage": usage}


def pod_metrics(pod: Obj, stats: Obj) -> Obj | None:
    """A PodMetrics from a pod's entry in a Summary: every container must have a complete
    sample, or the pod is left out (as metrics-server does)."""
    containers = []
    for c in stats.get("containers") or []:
        usage = _usage(c)
        if usage is None:
            return None
        containers.append({"name": c["name"], "usage": usage})
    if not containers:
        return None
    cpu = (stats["containers"][0].get("cpu") or {})
    md = pod["metadata"]
    return {"kind": "PodMetrics", "apiVersion": GROUP_VERSION,
            "metadata": {"name": md["name"], "namespace": md.get("namespace"), "creationTimestamp": _now(),
                         "labels": dict(md.get("labels") or {})},
            "timestamp": cpu["time"], "window": _window(cpu), "containers": containers}


def metrics_list(kind: str, items: list[Obj]) -> Obj:
    return {"kind": f"{kind}List", "apiVersion": GROUP_VERSION, "metadata": {}, "items": items}


def is_ready(node: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (node.get("status") or {}).get("conditions") or [])


def kubelet_url(node: Obj, *, default_port: int) -> str | None:
    st = node.get("status") or {}
    ip = next((a["address"] for a in st.get("addresses") or [] if a.get("type") == "InternalIP"), None)
    port = ((st.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port", default_port)
    return f"http://{ip}:{port}" if ip else None


def metrics_table(items: list[Obj], *, include_object: str = "PartialObjectMetadata") -> Obj:
    """``kubectl get nodes.metrics.k8s.io`` / ``podmetrics``: metrics-server's columns (a
    pod's usage is the sum over its containers)."""
    cols = [{"name": n, "type": "string", "format": "name" if n == "Name" else "", "description": "", "priority": 0}
            for n in ("Name", "CPU", "Memory", "Window")]
    rows = []
    for m in items:
        usages = [m["usage"]] if "usage" in m else [c["usage"] for c in m.get("containers") or []]
        cpu = sum(int(quantity.parse(u["cpu"]) * 10**9) for u in usages)
        mem = sum(int(quantity.parse(u["memory"])) for u in usages)
        r: Obj = {"cells": [m["metadata"]["name"], format_cpu(cpu), format_memory(mem), m.get("window", "")]}
        if include_object == "Object":
            r["object"] = m
        elif include_object != "None":
            r["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": m["metadata"]}
        rows.append(r)
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {}, "columnDefinitions": cols, "rows": rows}


# -- discovery --------------------------------------------------------------------------------
def group_entry() -> Obj:
    ver = {"groupVersion": GROUP_VERSION, "version": VERSION}
    return {"name": GROUP, "versions": [ver], "preferredVersion": ver}


def resource_list() -> Obj:
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GROUP_VERSION,
            "resources": [{"name": r.plural, "singularName": "", "namespaced": r.namespaced, "kind": r.kind,
                           "verbs": list(r.verbs)} for r in (NODE_METRICS, POD_METRICS)]}


def _not_found(kind: str, name: str) -> ApiError:
    """metrics-server's wording: ``podmetrics.metrics.k8s.io "default/x" not found``."""
    return NotFound(kind.lower(), name, group=GROUP)


# -- serving ----------------------------------------------------------------------------------
class MetricsApi:
    """Serves ``/apis/metrics.k8s.io/v1beta1/...`` from the kubelets' Summary API."""

    def __init__(self, registry: Any, *, kubelet_token: str | None, kubelet_port: int = 10250,
                 ttl: float = TTL, timeout: float = FETCH_TIMEOUT, clock: Callable[[], float] = time.monotonic,
                 fetch: Callable[[Obj], Awaitable[Obj | None]] | None = None):
        self.registry = registry
        self.kubelet_token, self.kubelet_port = kubelet_token, kubelet_port
        self.ttl, self.timeout, self.clock = ttl, timeout, clock
        self._fetch = fetch or self._fetch_summary
        self._session: aiohttp.ClientSession | None = None
        self._cache: tuple[float, dict[str, Obj]] | None = None
        self._pending: asyncio.Future | None = None

    async def close(self) -> None:
        if self._session:
            await self._session.close()

    async def _fetch_summary(self, node: Obj) -> Obj | None:
        url = kubelet_url(node, default_port=self.kubelet_port)
        if url is None:
            return None
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        headers = {"Authorization": f"Bearer {self.kubelet_token}"} if self.kubelet_token else {}
        async with self._session.get(f"{url}/stats/summary", headers=headers) as r:
            if r.status != 200:
                raise RuntimeError(f"{url}/stats/summary: HTTP {r.status}")
            return await r.json()

    async def summaries(self) -> dict[str, Obj]:
        """node name → Summary, for every Ready node that answered; cached for ``ttl`` seconds,
        and concurrent requests share one round of fetches."""
        if self._cache and self.clock() - self._cache[0] < self.ttl:
            return self._cache[1]
        if self._pending is None:
            self._pending = asyncio.ensure_future(self._fetch_all())
            self._pending.add_done_callback(lambda _f: setattr(self, "_pending", None))
        return await asyncio.shield(self._pending)

    async def _fetch_all(self) -> dict[str, Obj]:
        nodes = [n for n in self.registry.list("nodes")["items"] if is_ready(n)]

        async def one(n: Obj) -> Obj | None:
            try:
                return await asyncio.wait_for(self._fetch(n), self.timeout)
            except Exception as e:  # noqa: BLE001 - a silent node is left out, not an error
                log.warning("metrics: scraping node %s: %r", n["metadata"]["name"], e)
                return None
        got = await asyncio.gather(*(one(n) for n in nodes))
        out = {n["metadata"]["name"]: s for n, s in zip(nodes, got) if s is not None}
        self._cache = (self.clock(), out)
        return out

    async def serve(self, request: web.Request, parts: list[str]) -> web.Response:
        """``parts`` after ``/apis/metrics.k8s.io/v1beta1``."""
        if request.method != "GET":
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        q = request.query
        sel = {"label_selector": q.get("labelSelector"), "field_selector": q.get("fieldSelector")}
        ns, rest = None, parts
        if parts[:1] == ["namespaces"] and len(parts) >= 3:
            ns, rest = parts[1], parts[2:]
        if parts[:1] == ["nodes"] and len(parts) <= 2:
            out = await self.nodes(parts[1] if len(parts) == 2 else None, **sel)
        elif rest[:1] == ["pods"] and len(rest) <= 2:
            out = await self.pods(ns, rest[1] if len(rest) == 2 else None, **sel)
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if "as=Table" in request.headers.get("Accept", ""):
            out = metrics_table(out["items"] if "items" in out else [out],
                                include_object=q.get("includeObject", "PartialObjectMetadata"))
        return web.json_response(out)

    def _get(self, plural: str, name: str, ns: str | None) -> Obj | None:
        try:
            return self.registry.get(plural, name, namespace=ns)
        except ApiError as e:
            if e.code == 404:
                return None
            raise

    async def nodes(self, name: str | None, *, label_selector: str | None = None,
                    field_selector: str | None = None) -> Obj:
        if name is not None:
            node = self._get("nodes", name, None)
            s = (await self.summaries()).get(name)
            m = node_metrics(node, s) if s and node else None
            if m is None:
                raise _not_found("NodeMetrics", name)
            return m
        nodes = self.registry.list("nodes", label_selector=label_selector, field_selector=field_selector)["items"]
        sums = await self.summaries()
        items = [m for n in nodes if n["metadata"]["name"] in sums
                 for m in [node_metrics(n, sums[n["metadata"]["name"]])] if m is not None]
        return metrics_list("NodeMetrics", items)

    async def pods(self, ns: str | None, name: str | None, *, label_selector: str | None = None,
                   field_selector: str | None = None) -> Obj:
        by_uid = {p["podRef"]["uid"]: p for s in (await self.summaries()).values() for p in s.get("pods") or []}
        if name is not None:
            pod = self._get("pods", name, ns or "default")
            stats = by_uid.get(pod["metadata"]["uid"]) if pod else None
            m = pod_metrics(pod, stats) if stats and pod else None
            if m is None:
                raise _not_found("PodMetrics", f"{ns or 'default'}/{name}")
            return m
        pods = self.registry.list("pods", namespace=ns, label_selector=label_selector,
                                  field_selector=field_selector)["items"]
        items = [m for p in pods if p["metadata"]["uid"] in by_uid
                 for m in [pod_metrics(p, by_uid[p["metadata"]["uid"]])] if m is not None]
        return metrics_list("PodMetrics", items)
