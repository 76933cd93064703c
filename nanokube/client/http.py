"""HttpClient: the Client protocol over HTTPS to an apiserver (what agents use).

One aiohttp session per client, TLS verified against the cluster CA, a bearer token, and
watches read as chunked JSON lines. Non-2xx answers are rebuilt into the same ``ApiError``
classes the registry raises, so callers cannot tell the two clients apart.
"""
from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import yaml

from nanokube.api.errors import ApiError
from nanokube.api.resources import resource as lookup

Obj = dict[str, Any]
PATCH_CT = {"merge": "application/merge-patch+json", "strategic": "application/strategic-merge-patch+json",
            "json": "application/json-patch+json"}


class HttpClient:
    def __init__(self, server: str, *, token: str | None = None, ca_file: str | Path | None = None,
                 insecure: bool = False, client_cert: tuple[str | Path, str | Path] | None = None):
        """``client_cert``: (certificate, key) files to authenticate with instead of a token."""
        self.server = server.rstrip("/")
        self.token = token
        if server.startswith("https"):
            if insecure:
                self._ssl: Any = False
            else:
                self._ssl = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
                if client_cert:
                    self._ssl.load_cert_chain(str(client_cert[0]), str(client_cert[1]))
        else:
            self._ssl = None
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_kubeconfig(cls, path: str | Path) -> "HttpClient":
        cfg = yaml.safe_load(Path(path).read_text())
        ctx_name = cfg.get("current-context")
        ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
        user = next(u["user"] for u in cfg["users"] if u["name"] == ctx["user"])
        return cls(cluster["server"], token=user.get("token"), ca_file=cluster.get("certificate-authority"))

    def _sess(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            headers = {"Accept": "application/json", "User-Agent": "nanokube"}
            if self.token:
                headers["Authorization"] = f"Bearer {self.token}"
            self._session = aiohttp.ClientSession(
                headers=headers, connector=aiohttp.TCPConnector(ssl=self._ssl, limit=32),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=5))
        return self._session

    def _url(self, resource: str, namespace: str | None, name: str | None = None, sub: str | None = None) -> str:
        return self.server + lookup(resource).path(namespace, name, sub)

    async def _do(self, method: str, url: str, *, params: dict[str, str] | None = None, body: Any = None,
                  content_type: str = "application/json") -> Obj:
        data = json.dumps(body) if body is not None else None
        headers = {"Content-Type": content_type} if data is not None else {}
        async with self._sess().request(method, url, params=params, data=data, headers=headers,
                                        timeout=aiohttp.ClientTimeout(total=60)) as resp:
            text = await resp.text()
            if resp.status >= 400:
                raise _error(text, resp.status)
            return json.loads(text) if text else {}

    async def get(self, resource: str, name: str, *, namespace: str | None = None) -> Obj:
        return await self._do("GET", self._url(resource, namespace, name))

    async def list(self, resource: str, *, namespace: str | None = None, label_selector: str | None = None,
                   field_selector: str | None = None) -> Obj:
        return await self._do("GET", self._url(resource, namespace), params=_selectors(label_selector, field_selector))

    async def create(self, resource: str, obj: Obj, *, namespace: str | None = None) -> Obj:
        ns = namespace or (obj.get("metadata") or {}).get("namespace")
        return await self._do("POST", self._url(resource, ns), body=obj)

    async def update(self, resource: str, obj: Obj, *, namespace: str | None = None,
                     subresource: str | None = None) -> Obj:
        md = obj["metadata"]
        return await self._do("PUT", self._url(resource, namespace or md.get("namespace"), md["name"], subresource), body=obj)

    async def patch(self, resource: str, name: str, patch: Any, *, namespace: str | None = None,
                    subresource: str | None = None, patch_type: str = "merge") -> Obj:
        return await self._do("PATCH", self._url(resource, namespace, name, subresource), body=patch,
                              content_type=PATCH_CT[patch_type])

    async def delete(self, resource: str, name: str, *, namespace: str | None = None,
                     grace_period_seconds: int | None = None, propagation_policy: str | None = None,
                     preconditions: Obj | None = None) -> Obj:
        opts: Obj = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if grace_period_seconds is not None:
            opts["gracePeriodSeconds"] = grace_period_seconds
        if propagation_policy:
            opts["propagationPolicy"] = propagation_policy
        if preconditions:
            opts["preconditions"] = preconditions
        return await self._do("DELETE", self._url(resource, namespace, name), body=opts)

    async def create_subresource(self, resource: str, name: str, subresource: str, obj: Obj, *,
                                 namespace: str | None = None) -> Obj:
        return await self._do("POST", self._url(resource, namespace, name, subresource), body=obj)

    async def watch(self, resource: str, *, namespace: str | None = None, resource_version: str | None = None,
                    label_selector: str | None = None, field_selector: str | None = None,
                    timeout_seconds: int = 300) -> AsyncIterator[tuple[str, Obj]]:
        params = _selectors(label_selector, field_selector)
        params.update({"watch": "true", "timeoutSeconds": str(timeout_seconds), "allowWatchBookmarks": "true"})
        if resource_version:
            params["resourceVersion"] = resource_version
        async with self._sess().get(self._url(resource, namespace), params=params,
                                    timeout=aiohttp.ClientTimeout(total=None, sock_read=timeout_seconds + 30)) as resp:
            if resp.status >= 400:
                raise _error(await resp.text(), resp.status)
            async for line in resp.content:
                if not line.strip():
                    continue
                ev = json.loads(line)
                if ev["type"] == "ERROR":
                    raise ApiError.from_status(ev["object"])
                yield ev["type"], ev["object"]

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _selectors(label_selector: str | None, field_selector: str | None) -> dict[str, str]:
    p = {}
    if label_selector:
        p["labelSelector"] = label_selector
    if field_selector:
        p["fieldSelector"] = field_selector
    return p


def _error(text: str, status: int) -> ApiError:
    try:
        st = json.loads(text)
        if isinstance(st, dict) and st.get("kind") == "Status":
            return ApiError.from_status(st, status)
    except ValueError:
        pass
    return ApiError(status, "Unknown", text.strip() or f"HTTP {status}")
