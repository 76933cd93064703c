"""The proxy subresources: ``pods/proxy``, ``services/proxy`` and ``nodes/proxy``.

``/api/v1/namespaces/NS/pods/[scheme:]NAME[:PORT]/proxy/PATH`` and
``/api/v1/namespaces/NS/services/[scheme:]NAME[:PORT]/proxy/PATH`` forward one HTTP request
(method, query, body, end-to-end headers) to a pod — for a service, one ready endpoint of the
named service port picked at random, as upstream does — and stream the answer back;
``/api/v1/nodes/NAME[:PORT]/proxy/PATH`` forwards to the node's kubelet. This is what
``kubectl proxy`` + ``curl .../pods/NAME:8080/proxy/`` in the "Learn Kubernetes Basics"
tutorial needs.

Key design choice: the apiserver never needs a route into the pod network. A pod is reached
through its node's kubelet, over the port-forward tunnel ``kubectl port-forward`` already uses
(SPDY/3.1 streams in a WebSocket to ``/portForward/NS/POD``): one error + data stream pair
per proxied request carries a plain HTTP/1.1 exchange with ``Connection: close``. So proxying
works wherever logs and exec work (the server only has to reach node IPs), like upstream's
old SSH tunnels or konnectivity. The kubelet dials the port on the pod's loopback inside its
network namespace (as for port-forward), where upstream dials the pod IP: the same server for
every pod that listens on all addresses. Only ``http`` is proxied; ``https:`` is refused.

The URL grammar, endpoint choice, request head and response decoding are pure functions and
a small incremental parser (unit-tested); ``Proxy`` is the thin I/O shell.
"""
from __future__ import annotations

import random
import re
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable

import aiohttp
from aiohttp import web
from yarl import URL

from nanokube.api.errors import ApiError, bad_request
from nanokube.kubelet import spdy

Obj = dict[str, Any]
PORTFORWARD_PROTOCOL = "SPDY/3.1+portforward.k8s.io"
# RFC 9110 7.6.1 hop-by-hop headers (plus the legacy ones Go's httputil.ReverseProxy drops),
# and credentials meant for the apiserver: authentication has consumed them (upstream deletes
# Authorization after authenticating), so they never reach a pod.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization",
                        "te", "trailer", "trailers", "transfer-encoding", "upgrade"})
NOT_FORWARDED = HOP_BY_HOP | {"authorization", "host", "content-length", "expect"}

_PATH = re.compile(r"^/api/v1/(?:namespaces/(?P<ns>[^/]+)/(?P<res>pods|services)|(?P<nodes>nodes))"
                   r"/(?P<id>[^/]+)/proxy(?P<rest>/.*)?$")


@dataclass(frozen=True)
class ProxyTarget:
    resource: str  # pods, services or nodes
    namespace: str | None
    name: str
    scheme: str  # "" or "http" or "https"
    port: str  # "" when not given
    path: str  # the path to ask the backend for, still URL-encoded ("" when none was given)
    base: str  # the apiserver path up to and including "/proxy"


def parse_path(raw_path: str) -> ProxyTarget | None:
    """A proxy subresource request (``raw_path`` without the query), or None for any other path."""
    m = _PATH.match(raw_path)
    if m is None:
        return None
    scheme, name, port = split_scheme_name_port(m["id"])
    res = "nodes" if m["nodes"] else m["res"]
    rest = m["rest"] or ""
    return ProxyTarget(res, m["ns"], name, scheme, port, rest, raw_path[: len(raw_path) - len(rest)])


def split_scheme_name_port(ident: str) -> tuple[str, str, str]:
    """``[scheme:]name[:port]`` as upstream's ``net.SplitSchemeNamePort``: one part is a
    name, two are name and port, three are scheme, name and port."""
    parts = ident.split(":")
    if len(parts) == 1:
        scheme, name, port = "", parts[0], ""
    elif len(parts) == 2:
        scheme, name, port = "", parts[0], parts[1]
    elif len(parts) == 3:
        scheme, name, port = parts
    else:
        raise bad_request(f"invalid service request {ident}")
    if not name or scheme not in ("", "http", "https"):
        raise bad_request(f"invalid service request {ident}")
    return scheme, name, port


@dataclass(frozen=True)
class Backend:
    """Where a proxied request goes: a pod (reached through its node's kubelet) and a port."""
    namespace: str
    pod: str
    ip: str
    port: int


def pod_backend(pod: Obj, port: str) -> Backend:
    """The backend of ``pods/NAME[:PORT]/proxy`` (no port: 80, as an URL without one)."""
    meta = pod["metadata"]
    ip = (pod.get("status") or {}).get("podIP")
    if not ip or not pod["spec"].get("nodeName"):
        raise ApiError(503, "ServiceUnavailable", f'pod "{meta["name"]}" has no IP address yet')
    if port and not port.isdigit():
        raise bad_request(f'invalid port "{port}" for pod "{meta["name"]}": the pod proxy takes a port number')
    return Backend(meta["namespace"], meta["name"], ip, int(port) if port else 80)


def service_backends(svc: Obj, endpoints: Obj | None, port: str) -> list[Backend]:
    """The candidate backends of ``services/NAME[:PORT]/proxy``, as upstream's service
    ResourceLocation chooses them: a port number is first mapped to the service port's name,
    then the ready endpoint addresses of the endpoint port with that name (the empty name for
    a single unnamed port). Raises 503 as upstream when there are none."""
    name = svc["metadata"]["name"]
    port_name = port
    if port.isdigit():
        for sp in svc["spec"].get("ports") or []:
            if int(sp.get("port", 0)) == int(port):
                port_name = sp.get("name") or ""
                break
        else:
            raise ApiError(503, "ServiceUnavailable", f'no service port {port} found for service "{name}"')
    subsets = (endpoints or {}).get("subsets") or []
    if not subsets:
        raise ApiError(503, "ServiceUnavailable", f'no endpoints available for service "{name}"')
    out = []
    for ss in subsets:
        for p in ss.get("ports") or []:
            if (p.get("name") or "") != port_name:
                continue
            for a in ss.get("addresses") or []:
                ref = a.get("targetRef") or {}
                if ref.get("kind") == "Pod" and ref.get("name"):
                    out.append(Backend(ref.get("namespace") or svc["metadata"]["namespace"], ref["name"], a["ip"],
                                       int(p["port"])))
    if not out:
        raise ApiError(503, "ServiceUnavailable", f'no endpoints available for service "{name}"')
    return out


async def relay_body(request: web.Request, resp: web.StreamResponse, up: aiohttp.ClientResponse
                     ) -> web.StreamResponse:
    """Send ``resp``'s head, then stream an upstream (kubelet) response body through as it comes."""
    await resp.prepare(request)
    async for chunk in up.content.iter_any():
        await resp.write(chunk)
    await resp.write_eof()
    return resp


def node_kubelet_url(node: Obj, *, default_port: int) -> tuple[str, int]:
    """The InternalIP and kubelet port of a node."""
    st = node.get("status") or {}
    ip = next((a["address"] for a in st.get("addresses", []) if a["type"] == "InternalIP"), None)
    if not ip:
        raise ApiError(503, "ServiceUnavailable", f'node "{node["metadata"]["name"]}" has no InternalIP')
    port = (st.get("daemonEndpoints") or {}).get("kubeletEndpoint", {}).get("Port", default_port)
    return ip, int(port)


def forwarded_headers(headers: Any, *, client: str | None) -> list[tuple[str, str]]:
    """The request headers a backend gets: end-to-end ones only (minus those the Connection
    header names), and X-Forwarded-For as Go's ReverseProxy adds it."""
    named = {t.strip().lower() for v in headers.getall("Connection", []) for t in v.split(",")}
    out = [(k, v) for k, v in headers.items()
           if k.lower() not in NOT_FORWARDED and k.lower() not in named and not k.lower().startswith("impersonate-")]
    if client:
        prior = [v for k, v in out if k.lower() == "x-forwarded-for"]
        out = [(k, v) for k, v in out if k.lower() != "x-forwarded-for"]
        out.append(("X-Forwarded-For", ", ".join(prior + [client])))
    return out


def request_head(method: str, path: str, query: str, host: str, headers: list[tuple[str, str]], body_len: int) -> bytes:
    """An HTTP/1.1 request head asking the backend to close the connection after answering."""
    target = (path or "/") + (f"?{query}" if query else "")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    lines += [f"{k}: {v}" for k, v in headers]
    if body_len or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {body_len}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def response_headers(headers: list[tuple[str, str]], *, base: str) -> list[tuple[str, str]]:
    """The backend's response headers a client gets: hop-by-hop ones dropped, and a
    ``Location`` that is an absolute path on the backend rewritten under the proxy path (as
    upstream's proxy transport does), so redirects keep going through the apiserver."""
    named = {t.strip().lower() for k, v in headers if k.lower() == "connection" for t in v.split(",")}
    out = []
    for k, v in headers:
        lk = k.lower()
        if lk in HOP_BY_HOP or lk in named:
            continue
        if lk == "location" and v.startswith("/") and not v.startswith("//") and not v.startswith(base + "/"):
            v = base + v
        out.append((k, v))
    return out


class BadResponse(Exception):
    pass


@dataclass
class ResponseParser:
    """Incremental HTTP/1.1 response decoder: ``feed`` bytes, get decoded body chunks back.
    Handles Content-Length, chunked and read-until-close bodies; 1xx interim responses are
    skipped."""
    head_request: bool = False
    status: int = 0
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    head_done: bool = False
    done: bool = False
    _buf: bytearray = field(default_factory=bytearray)
    _mode: str = ""  # "length", "chunked", "close"
    _left: int = 0
    _chunk_state: str = "size"  # size, data, crlf, trailer

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        out: list[bytes] = []
        while not self.done:
            if not self.head_done:
                end = self._buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(self._buf) > 1 << 20:
                        raise BadResponse("response head too large")
                    break
                head = bytes(self._buf[:end]).decode("latin-1")
                del self._buf[:end + 4]
                self._head(head)
                continue
            if self._mode == "close":
                if self._buf:
                    out.append(bytes(self._buf))
                    self._buf.clear()
                break
            if self._mode == "length":
                take = bytes(self._buf[:self._left])
                del self._buf[:len(take)]
                self._left -= len(take)
                if take:
                    out.append(take)
                if self._left == 0:
                    self.done = True
                break
            if not self._chunked(out):
                break
        return out

    def _head(self, head: str) -> None:
        lines = head.split("\r\n")
        m = re.match(r"HTTP/1\.[01] (\d{3})(?: (.*))?$", lines[0])
        if not m:
            raise BadResponse(f"malformed HTTP status line {lines[0][:80]!r}")
        status = int(m[1])
        if 100 <= status < 200:  # interim (100 Continue, 103 Early Hints): the real one follows
            return
        self.status, self.reason = status, m[2] or ""
        for line in lines[1:]:
            k, sep, v = line.partition(":")
            if not sep:
                raise BadResponse(f"malformed HTTP header line {line[:80]!r}")
            self.headers.append((k.strip(), v.strip()))
        self.head_done = True
        te = ",".join(v for k, v in self.headers if k.lower() == "transfer-encoding").lower()
        cl = next((v for k, v in self.headers if k.lower() == "content-length"), None)
        if self.head_request or status in (204, 304):
            self.done = True
        elif "chunked" in te:
            self._mode = "chunked"
        elif cl is not None:
            if not cl.isdigit():
                raise BadResponse(f"bad Content-Length {cl!r}")
            self._mode, self._left = "length", int(cl)
            self.done = self._left == 0
        else:
            self._mode = "close"

    def _chunked(self, out: list[bytes]) -> bool:
        """One step of chunked decoding; False when more input is needed."""
        if self._chunk_state in ("size", "crlf", "trailer"):
            end = self._buf.find(b"\r\n")
            if end < 0:
                return False
            line = bytes(self._buf[:end])
            del self._buf[:end + 2]
            if self._chunk_state == "crlf":
                self._chunk_state = "size"
            elif self._chunk_state == "trailer":
                self.done = line == b""
            else:
                try:
                    size = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    raise BadResponse(f"bad chunk size {line[:40]!r}") from None
                self._left = size
                self._chunk_state = "data" if size else "trailer"
            return True
        take = bytes(self._buf[:self._left])
        if not take:
            return False
        del self._buf[:len(take)]
        self._left -= len(take)
        out.append(take)
        if self._left == 0:
            self._chunk_state = "crlf"
        return True

    def eof(self) -> None:
        """The backend closed the connection: fine for a read-until-close body only."""
        if not self.head_done:
            raise BadResponse("the backend closed the connection before it answered")
        if not self.done and self._mode != "close":
            raise BadResponse("the backend closed the connection in the middle of the body")
        self.done = True


class _ClientSpdy(spdy.Session):
    """The client half the kubelet's port-forward server expects: SYN_STREAM to open."""

    def syn_stream(self, stream_id: int, headers: dict[str, str], *, fin: bool = False) -> bytes:
        block = struct.pack(">I", len(headers)) + b"".join(
            struct.pack(">I", len(k)) + k.encode() + struct.pack(">I", len(v)) + v.encode() for k, v in headers.items())
        packed = self._deflate.compress(block) + self._deflate.flush(zlib.Z_SYNC_FLUSH)
        # stream id, associated-to stream id, priority (3 bits) + unused + slot
        payload = struct.pack(">IIH", stream_id, 0, 0) + packed
        return self._control(spdy.SYN_STREAM, spdy.FLAG_FIN if fin else 0, payload)


class Proxy:
    """Serves the proxy subresources for an ``ApiServer``."""

    def __init__(self, registry: Any, *, kubelet_headers: Callable[[], dict[str, str]], kubelet_port: int,
                 rng: random.Random | None = None):
        self.registry = registry
        self.kubelet_headers = kubelet_headers
        self.kubelet_port = kubelet_port
        self.rng = rng or random.Random()
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, connect=5),
                                                  auto_decompress=False)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def serve(self, request: web.Request, t: ProxyTarget) -> web.StreamResponse:
        if t.resource != "nodes" and t.namespace is not None:
            self.registry.get("namespaces", t.namespace)  # 404 for a missing namespace, as upstream
        if t.scheme == "https":
            raise ApiError(503, "ServiceUnavailable", "nanokube proxies plain http only; https backends are not supported")
        if not t.path and request.method == "GET":
            # upstream redirects the bare .../proxy to .../proxy/ so relative links resolve
            qs = request.rel_url.raw_query_string
            raise web.HTTPMovedPermanently(location=t.base + "/" + (f"?{qs}" if qs else ""))
        body = await request.read()
        client = request.remote
        headers = forwarded_headers(request.headers, client=client)
        query = request.rel_url.raw_query_string
        if t.resource == "nodes":
            return await self._to_kubelet(request, t, headers, query, body)
        if t.resource == "pods":
            pod = self.registry.get("pods", t.name, namespace=t.namespace)
            backend = pod_backend(pod, t.port)
        else:
            svc = self.registry.get("services", t.name, namespace=t.namespace)
            try:
                eps = self.registry.get("endpoints", t.name, namespace=t.namespace)
            except ApiError as e:
                if e.code != 404:
                    raise
                eps = None
            candidates = service_backends(svc, eps, t.port)
            backend = candidates[self.rng.randrange(len(candidates))]
            pod = self.registry.get("pods", backend.pod, namespace=backend.namespace)
        head = request_head(request.method, t.path, query, f"{backend.ip}:{backend.port}", headers, len(body))
        return await self._through_tunnel(request, t, pod, backend, head + body)

    async def _through_tunnel(self, request: web.Request, t: ProxyTarget, pod: Obj, backend: Backend,
                              payload: bytes) -> web.StreamResponse:
        node = self.registry.get("nodes", pod["spec"]["nodeName"])
        ip, port = node_kubelet_url(node, default_port=self.kubelet_port)
        url = f"ws://{ip}:{port}/portForward/{backend.namespace}/{backend.pod}"
        try:
            ws = await self.session.ws_connect(url, protocols=(PORTFORWARD_PROTOCOL,), headers=self.kubelet_headers(),
                                               max_msg_size=0, autoping=True)
        except aiohttp.WSServerHandshakeError as e:
            raise ApiError(503, "ServiceUnavailable",
                           f"error trying to reach service: kubelet answered {e.status}: {e.message}") from None
        except aiohttp.ClientError as e:
            raise ApiError(503, "ServiceUnavailable", f"error trying to reach service: {e}") from None
        sess = _ClientSpdy()
        err_sid, data_sid = 1, 3
        hdr = {"port": str(backend.port), "requestid": "0"}
        parser = ResponseParser(head_request=request.method == "HEAD")
        resp: web.StreamResponse | None = None
        errors = b""
        try:
            await ws.send_bytes(sess.syn_stream(err_sid, {"streamtype": "error", **hdr})
                                + sess.syn_stream(data_sid, {"streamtype": "data", **hdr})
                                + sess.data(data_sid, payload))
            eof = False
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.BINARY:
                    continue
                for f in sess.feed(msg.data):
                    if f.type == 0 and f.stream_id == err_sid:
                        errors += f.data
                    elif f.type == 0 and f.stream_id == data_sid:
                        chunks = parser.feed(f.data) if f.data else []
                        if parser.head_done and resp is None:
                            resp = await self._start(request, t, parser)
                        for c in chunks:
                            await resp.write(c)  # type: ignore[union-attr]
                        eof = eof or f.fin
                    elif f.type == spdy.RST_STREAM and f.stream_id == data_sid:
                        eof = True
                    elif f.type == spdy.PING:
                        await ws.send_bytes(sess.ping(f.value))
                    elif f.type == spdy.GOAWAY:
                        eof = True
                if eof or parser.done:
                    break
            if resp is None and errors:
                raise ApiError(503, "ServiceUnavailable", f"error trying to reach service: {errors.decode(errors='replace')}")
            parser.eof()
        except BadResponse as e:
            if resp is not None:  # mid-body: the status line is gone already, so cut the client off
                raise ConnectionResetError(str(e)) from None
            raise ApiError(503, "ServiceUnavailable", f"error trying to reach service: {e}") from None
        finally:
            await ws.close()
        if resp is None:
            resp = await self._start(request, t, parser)
        await resp.write_eof()
        return resp

    async def _start(self, request: web.Request, t: ProxyTarget, parser: ResponseParser) -> web.StreamResponse:
        resp = web.StreamResponse(status=parser.status, reason=parser.reason or None)
        for k, v in response_headers(parser.headers, base=t.base):
            resp.headers.add(k, v)
        await resp.prepare(request)
        return resp

    async def _to_kubelet(self, request: web.Request, t: ProxyTarget, headers: list[tuple[str, str]], query: str,
                          body: bytes) -> web.StreamResponse:
        node = self.registry.get("nodes", t.name)
        ip, port = node_kubelet_url(node, default_port=self.kubelet_port)
        if t.port:
            if not t.port.isdigit():
                raise bad_request(f'invalid port "{t.port}" for node "{t.name}"')
            port = int(t.port)
        url = f"http://{ip}:{port}{t.path or '/'}" + (f"?{query}" if query else "")
        hdrs = [(k, v) for k, v in headers] + list(self.kubelet_headers().items())
        try:
            async with self.session.request(request.method, URL(url, encoded=True), headers=hdrs,
                                            data=body or None, allow_redirects=False) as up:
                resp = web.StreamResponse(status=up.status, reason=up.reason)
                for k, v in response_headers([(k.decode("latin-1"), v.decode("latin-1")) for k, v in up.raw_headers],
                                                    base=t.base):
                    resp.headers.add(k, v)
                return await relay_body(request, resp, up)
        except aiohttp.ClientError as e:
            raise ApiError(503, "ServiceUnavailable", f"error trying to reach service: {e}") from None
