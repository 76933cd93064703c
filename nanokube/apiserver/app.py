"""The HTTP face of the apiserver: Kubernetes REST paths onto the registry.

One catch-all route parses ``/api/v1/...`` and ``/apis/<group>/<version>/...`` paths, so the
URL grammar lives in one readable function (``parse_path``). Content negotiation covers what
kubectl sends: JSON or YAML bodies, the four patch types, ``as=Table`` for ``kubectl get``,
and chunked JSON lines for watches. Errors always leave as ``Status`` objects.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import yaml
from aiohttp import web
from multidict import MultiDict

from nanokube.api import openapi, protobuf, table
from nanokube.api.errors import ApiError, Invalid, bad_request
from nanokube.api.resources import RESOURCES, Resource
from . import metrics as metrics_api
from . import authn, eviction, rbac, reviews
from . import bookmarks, discovery
from . import proxy as proxy_api
from .authn import Authenticator, TokenSigner, UserInfo
from .registry import Registry

log = logging.getLogger("nanokube.apiserver")

VERSION = {
    "major": "1", "minor": "37", "gitVersion": "v1.37.0+nanokube", "gitCommit": "nanokube",
    "gitTreeState": "clean", "buildDate": "2026-11-24T00:00:00Z", "goVersion": "python",
    "compiler": "cpython", "platform": "linux/amd64",
}
PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
}
MAX_BODY = 3 * 1024 * 1024  # kube-apiserver's limit on request bodies
PUBLIC_PATHS = {"/healthz", "/livez", "/readyz"}  # the only paths anonymous requests may see
ADMIN = UserInfo("system:admin", "", ("system:masters", "system:authenticated"))
NODE = UserInfo("system:node:nanokube", "", ("system:nodes", "system:authenticated"))
USER = web.RequestKey("user", UserInfo)


_EVENTS: dict[tuple[int, str], tuple[Any, bytes]] = {}  # (id(obj), type) -> (obj, line)


def _encode_event(ev_type: str, obj: Any, *, cache: bool = False) -> bytes:
    """A watch event line. Every watcher of a change gets the same stored object, so encode it
    once: the cache keeps the object alive (its id cannot be reused while cached)."""
    key = (id(obj), ev_type)
    hit = _EVENTS.get(key) if cache else None
    if hit is not None and hit[0] is obj:
        return hit[1]
    line = json.dumps({"type": ev_type, "object": obj}, separators=(",", ":")).encode() + b"\n"
    if cache:
        if len(_EVENTS) >= 512:
            _EVENTS.pop(next(iter(_EVENTS)))
        _EVENTS[key] = (obj, line)
    return line


@dataclass
class Target:
    resource: Resource
    namespace: str | None
    name: str | None
    subresource: str | None


def parse_path(parts: list[str]) -> Target:
    """``parts`` after the group/version prefix, e.g. ["namespaces", "ns", "pods", "x", "log"]."""
    def res(plural: str, gv: str) -> Resource:
        r = RESOURCES.get(plural)
        if r is None or r.api_version != gv:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return r
    gv = parts[0]
    rest = parts[1:]
    if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in ("status", "finalize"):
        r = res(rest[2], gv)
        if not r.namespaced:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        name = rest[3] if len(rest) > 3 else None
        sub = rest[4] if len(rest) > 4 else None
        if len(rest) > 5:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return Target(r, rest[1], name, sub)
    if not rest or len(rest) > 3:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    r = res(rest[0], gv)
    return Target(r, None, rest[1] if len(rest) > 1 else None, rest[2] if len(rest) > 2 else None)


def status_response(err: ApiError) -> web.Response:
    return web.json_response(err.status(), status=err.code)


def wants_table(request: web.Request) -> bool:
    return "as=Table" in request.headers.get("Accept", "")


def _bool(v: str | None) -> bool:
    return v in ("true", "1", "True")


def field_manager(request: web.Request) -> str:
    """The request's field manager: ``fieldManager``, else the User-Agent's program name
    ("kubectl/v1.37.1 (linux/amd64) ..." → "kubectl"), as upstream."""
    fm = request.query.get("fieldManager") or request.headers.get("User-Agent", "").split("/")[0]
    if len(fm) > 128:
        if request.query.get("fieldManager"):
            raise Invalid("PatchOptions" if request.method == "PATCH" else "CreateOptions" if request.method == "POST"
                          else "UpdateOptions", "", [{"reason": "FieldValueTooLong", "field": "fieldManager",
                                                      "message": "Too long: may not be more than 128 bytes"}],
                          group="meta.k8s.io")
        fm = fm[:128]
    return fm


def check_patch_options(q: Any, ptype: str) -> None:
    """Upstream's ValidatePatchOptions: apply needs a field manager; only apply may force."""
    if ptype == "apply" and not q.get("fieldManager"):
        raise Invalid("PatchOptions", "", [{"reason": "FieldValueRequired", "field": "fieldManager",
                                            "message": "Required value: is required for apply patch"}], group="meta.k8s.io")
    if ptype != "apply" and q.get("force") is not None:
        raise Invalid("PatchOptions", "", [{"reason": "FieldValueForbidden", "field": "force",
                                            "message": "Forbidden: may not be specified for non-apply patch"}],
                      group="meta.k8s.io")


class ApiServer:
    def __init__(self, registry: Registry, *, token: str, kubelet_token: str | None = None,
                 kubelet_port: int = 10250, extra_tokens: dict[str, UserInfo] | None = None,
                 signer: TokenSigner | None = None):
        self.registry = registry
        self.signer = signer
        self.authn = Authenticator({token: ADMIN, **(extra_tokens or {})}, signer, self._lookup)
        self.rbac = rbac.Rbac(registry.store)
        self.kubelet_token = kubelet_token
        self.kubelet_port = kubelet_port
        self.requests = 0
        self.started = time.time()
        self._openapi_cache: dict[str, tuple[str, bytes]] = {}
        self._session: aiohttp.ClientSession | None = None
        self.metrics_api = metrics_api.MetricsApi(registry, kubelet_token=kubelet_token, kubelet_port=kubelet_port)
        self.proxy = proxy_api.Proxy(registry, kubelet_headers=self._kubelet_headers, kubelet_port=kubelet_port)
        self.bookmark_interval = bookmarks.interval_from_env()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=MAX_BODY)
        app.router.add_route("*", "/{tail:.*}", self.dispatch)
        app.on_cleanup.append(self._cleanup)
        return app

    async def _cleanup(self, app: web.Application) -> None:
        self.rbac.close()
        if self._session:
            await self._session.close()
        await self.metrics_api.close()
        await self.proxy.close()

    def _lookup(self, plural: str, name: str, namespace: str | None) -> dict[str, Any] | None:
        try:
            return self.registry.get(plural, name, namespace=namespace)
        except (ApiError, KeyError):
            return None

    def may_request_csr(self, user: str, groups: list[str], subresource: str) -> bool:
        """The CSR approver's SubjectAccessReview: may this requestor create
        certificatesigningrequests/<subresource> (nodeclient, selfnodeclient)?"""
        self.rbac.start()
        who = authn.with_authenticated(user, groups)
        a = rbac.Attributes("create", True, "", "certificates.k8s.io", "v1", "certificatesigningrequests", subresource)
        return self.rbac.authorize(who, a)[0]

    @staticmethod
    def _csr_requestor(body: dict[str, Any], user: UserInfo) -> dict[str, Any]:
        """A new CertificateSigningRequest records who asked (spec.username/uid/groups/extra),
        whatever the body said, as upstream's strategy does."""
        spec = body.get("spec")
        if not isinstance(spec, dict):
            return body
        body = {**body, "spec": {k: v for k, v in spec.items() if k not in ("username", "uid", "groups", "extra")}}
        body["spec"].update(username=user.name, groups=list(user.groups))
        if user.uid:
            body["spec"]["uid"] = user.uid
        if user.extra:
            body["spec"]["extra"] = user.extra
        return body

    def _user(self, request: web.Request) -> UserInfo:
        """Authenticate (401 if not), then apply Impersonate-* headers the user may use."""
        auth = request.headers.get("Authorization", "")
        user = authn.x509_user(request.transport.get_extra_info("peercert") if request.transport else None)
        if user is None:
            user = self.authn.authenticate(auth[7:].strip() if auth[:7].lower() == "bearer " else None)
        if user is None:
            raise ApiError(401, "Unauthorized", "Unauthorized")
        name, groups, uid, extra = reviews.impersonate(request.headers)
        if name is None:
            if groups or uid or extra:
                raise ApiError(500, "InternalError", "Internal error occurred: requested "
                               f"{groups or uid or extra} without impersonating a user")
            return user
        sa = authn.parse_service_account(name)
        checks = [rbac.Attributes("impersonate", True, sa[0], "", "v1", "serviceaccounts", "", sa[1]) if sa else
                  rbac.Attributes("impersonate", True, "", "", "v1", "users", "", name)]
        checks += [rbac.Attributes("impersonate", True, "", "", "v1", "groups", "", g) for g in groups]
        if uid:
            checks.append(rbac.Attributes("impersonate", True, "", "authentication.k8s.io", "v1", "uids", "", uid))
        for k, vs in extra.items():
            checks += [rbac.Attributes("impersonate", True, "", "authentication.k8s.io", "v1", f"userextras/{k}", "", v) for v in vs]
        for a in checks:
            if not self.rbac.authorize(user, a)[0]:
                raise ApiError(403, "Forbidden", rbac.describe_forbidden(user, a),
                               details={"name": a.name, "kind": a.resource, "group": a.api_group})
        return reviews.impersonated_user(name, groups, uid, extra)

    @web.middleware
    async def _middleware(self, request: web.Request, handler):
        self.requests += 1
        try:
            if request.path not in PUBLIC_PATHS:
                self.rbac.start()
                user = request[USER] = self._user(request)
                a = rbac.attributes(request.method, request.path, request.query)
                ok, _ = self.rbac.authorize(user, a)
                if not ok:
                    log.info("forbidden: %s %s %s", user.name, request.method, request.path_qs)
                    raise ApiError(403, "Forbidden", rbac.describe_forbidden(user, a),
                                   details={"name": a.name, "kind": a.resource, "group": a.api_group} if a.resource_request else None)
            return await handler(request)
        except ApiError as e:
            return status_response(e)
        except web.HTTPRequestEntityTooLarge:
            return status_response(ApiError(413, "RequestEntityTooLarge", f"Request entity too large: limit is {MAX_BODY}"))
        except (web.HTTPException, asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception as e:  # noqa: BLE001 - every failure leaves as a Status
            log.exception("internal error on %s %s", request.method, request.path)
            return status_response(ApiError(500, "InternalError", f"Internal error occurred: {e}"))

    # -- routing ---------------------------------------------------------------------------
    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        parts = [p for p in path.split("/") if p]
        if path in ("/healthz", "/livez", "/readyz"):
            return web.Response(text="ok")
        pt = proxy_api.parse_path(request.rel_url.raw_path)
        if pt is not None:  # pods/proxy, services/proxy, nodes/proxy: the path after /proxy is the backend's
            return await self.proxy.serve(request, pt)
        if path == "/version":
            return web.json_response(VERSION)
        if path == "/metrics":
            return web.Response(text=self.metrics(), content_type="text/plain")
        if path in ("/api", "/apis") or parts[:1] in (["api"], ["apis"]) and len(parts) <= 3:
            served = discovery.serve(request, parts)
            if served is not None:
                return served
        if parts and parts[0] == "openapi":
            return self.openapi(request, parts)
        if parts[:3] == ["apis", metrics_api.GROUP, metrics_api.VERSION] and len(parts) > 3:
            return await self.metrics_api.serve(request, parts[3:])
        if parts[:1] == ["api"] and len(parts) > 2:
            return await self.rest(request, parse_path(parts[1:]))
        if parts[:1] == ["apis"] and len(parts) > 3:
            return await self.rest(request, parse_path([f"{parts[1]}/{parts[2]}"] + parts[3:]))
        raise ApiError(404, "NotFound", "the server could not find the requested resource")

    def openapi(self, request: web.Request, parts: list[str]) -> web.Response:
        if parts[:2] != ["openapi", "v3"]:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if len(parts) == 2:
            return web.json_response(openapi.v3_root(list(RESOURCES.values()), self._openapi_doc))
        gv = "/".join(parts[2:])
        gv = gv[4:] if gv.startswith("api/") else gv[5:] if gv.startswith("apis/") else gv
        _, body = self._openapi_doc(gv)
        return web.Response(body=body, content_type="application/json",
                            headers={"Cache-Control": "public, immutable", "Etag": f'"{self._openapi_doc(gv)[0]}"'})

    def _openapi_doc(self, gv: str) -> tuple[str, bytes]:
        if gv not in self._openapi_cache:
            if gv not in discovery.groups():
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            doc = openapi.v3_group(self.registry.schemas, gv)
            body = json.dumps(doc, separators=(",", ":")).encode()
            self._openapi_cache[gv] = (openapi.etag(body), body)
        return self._openapi_cache[gv]

    def metrics(self) -> str:
        return (f"# TYPE apiserver_request_total counter\napiserver_request_total {self.requests}\n"
                f"# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds {self.started}\n"
                f"# TYPE etcd_object_revision gauge\nnanokube_store_revision {self.registry.store.revision}\n")

    # -- REST ------------------------------------------------------------------------------
    async def _body(self, request: web.Request) -> Any:
        raw = await request.read()
        if not raw:
            return None
        ctype = request.content_type
        try:
            if ctype == protobuf.CONTENT_TYPE:
                return protobuf.decode(raw)
            if "yaml" in ctype:
                return yaml.safe_load(raw)
            return json.loads(raw)
        except (ValueError, yaml.YAMLError) as e:
            raise bad_request(f"error decoding request body: {e}") from None

    async def rest(self, request: web.Request, t: Target) -> web.StreamResponse:
        q = request.query
        m = request.method
        reg = self.registry
        plural, ns, name, sub = t.resource.plural, t.namespace, t.name, t.subresource
        if t.resource.verbs == ("create",):  # reviews: answered, never stored
            if m != "POST" or name is not None:
                raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
            return web.json_response(reviews.review(plural, await self._body(request), user=request[USER], rbac=self.rbac,
                                                    authn=self.authn, namespace=ns), status=201)
        if plural == "serviceaccounts" and sub == "token" and m == "POST":
            if self.signer is None:
                raise ApiError(503, "ServiceUnavailable", "this apiserver issues no ServiceAccount tokens")
            sa = reg.get("serviceaccounts", name, namespace=ns)
            return web.json_response(reviews.token_request(await self._body(request) or {}, sa=sa, signer=self.signer,
                                                           lookup=self._lookup), status=201)
        dry_run = q.get("dryRun") == "All"
        fv = q.get("fieldValidation", "Ignore") if q.get("fieldValidation") else "Ignore"
        fm = field_manager(request)
        if name is None:
            if m == "GET":
                if _bool(q.get("watch")):
                    return await self.watch(request, t)
                as_table = wants_table(request)
                lst = reg.list(plural, namespace=ns, label_selector=q.get("labelSelector"),
                               field_selector=q.get("fieldSelector"), copy_items=False,
                               limit=int(q["limit"]) if q.get("limit", "").isdigit() else None,
                               continue_token=q.get("continue"), as_json=not as_table)
                if as_table:
                    tbl = table.to_table(plural, lst["items"], include_object=q.get("includeObject", "PartialObjectMetadata"))
                    tbl["metadata"] = lst["metadata"]
                    return web.json_response(tbl)
                # the items are their stored JSON already: join them, encode only the envelope
                head = json.dumps({k: v for k, v in lst.items() if k != "items"}, separators=(",", ":"))
                body = head[:-1] + ',"items":[' + ",".join(lst["items"]) + "]}"
                return web.Response(body=body.encode(), content_type="application/json")
            if m == "POST":
                body = await self._body(request)
                if plural == "certificatesigningrequests" and isinstance(body, dict):
                    body = self._csr_requestor(body, request[USER])
                obj = await reg.create(plural, body or {}, namespace=ns, dry_run=dry_run, field_validation=fv,
                                       field_manager=fm)
                return web.json_response(obj, status=201)
            if m == "DELETE":
                return await self.delete_collection(request, t)
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        if sub == "log" and plural == "pods" and m == "GET":
            return await self.pod_log(request, ns or "default", name)
        if sub == "exec" and plural == "pods" and m in ("GET", "POST"):
            return await self.pod_exec(request, ns or "default", name)
        if sub == "attach" and plural == "pods" and m in ("GET", "POST"):
            pod = reg.get("pods", name, namespace=ns or "default")
            container, base = self._kubelet(pod, q.get("container"))
            params = MultiDict((k, v) for k, v in q.items() if k in ("stdin", "stdout", "stderr", "tty"))
            return await self._relay_ws(request, f"{base}/attach/{ns or 'default'}/{name}/{container}", params)
        if sub == "portforward" and plural == "pods" and m in ("GET", "POST"):
            return await self.pod_portforward(request, ns or "default", name)
        if sub == "eviction" and plural == "pods" and m == "POST":
            return web.json_response(await eviction.evict(reg, name, ns or "default", await self._body(request)), status=201)
        if sub == "binding" and plural == "pods" and m == "POST":
            body = await self._body(request) or {}
            return web.json_response(await reg.bind(name, body, namespace=ns or "default"), status=201)
        if m == "GET":
            obj = reg.get_scale(plural, name, namespace=ns) if sub == "scale" else reg.get(plural, name, namespace=ns)
            if wants_table(request) and sub is None:
                return web.json_response(table.to_table(plural, [obj], include_object=q.get("includeObject", "PartialObjectMetadata")))
            return web.json_response(obj)
        if m == "PUT":
            body = await self._body(request)
            if not isinstance(body, dict):
                raise bad_request("the body of the request was not a JSON object")
            obj = await reg.update(plural, body, namespace=ns, name=name, subresource=sub, dry_run=dry_run,
                                   field_validation=fv, field_manager=fm)
            return web.json_response(obj)
        if m == "PATCH":
            ptype = PATCH_TYPES.get(request.content_type)
            if ptype is None:
                raise ApiError(415, "UnsupportedMediaType",
                               f"the body of the request was in an unknown format - accepted media types include: "
                               f"{', '.join(PATCH_TYPES)}")
            check_patch_options(q, ptype)
            body = await self._body(request)
            if ptype == "apply":  # server-side apply: field managers and conflicts
                created: list[bool] = []
                obj = await reg.apply(plural, name, body, namespace=ns, field_manager=q["fieldManager"],
                                      force=_bool(q.get("force")), subresource=sub, dry_run=dry_run, field_validation=fv,
                                      created=created)
                return web.json_response(obj, status=201 if created else 200)
            obj = await reg.patch(plural, name, body, namespace=ns, patch_type=ptype, subresource=sub, dry_run=dry_run,
                                  field_validation=fv, field_manager=fm)
            return web.json_response(obj)
        if m == "DELETE":
            opts = await self._body(request) or {}
            grace = opts.get("gracePeriodSeconds", q.get("gracePeriodSeconds"))
            policy = opts.get("propagationPolicy", q.get("propagationPolicy"))
            if opts.get("orphanDependents") is True:
                policy = "Orphan"
            obj = await reg.delete(plural, name, namespace=ns, grace_period_seconds=int(grace) if grace is not None else None,
                                   propagation_policy=policy, preconditions=opts.get("preconditions"), dry_run=dry_run)
            still_there = bool(obj["metadata"].get("deletionTimestamp"))
            return web.json_response(obj, status=202 if still_there else 200)
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    async def delete_collection(self, request: web.Request, t: Target) -> web.Response:
        q = request.query
        lst = self.registry.list(t.resource.plural, namespace=t.namespace, label_selector=q.get("labelSelector"),
                                 field_selector=q.get("fieldSelector"))
        for item in lst["items"]:
            try:
                await self.registry.delete(t.resource.plural, item["metadata"]["name"],
                                           namespace=item["metadata"].get("namespace"))
            except ApiError as e:
                if e.code != 404:
                    raise
        return web.json_response(lst)

    async def watch(self, request: web.Request, t: Target) -> web.StreamResponse:
        q = request.query
        as_table = wants_table(request)
        timeout = float(q.get("timeoutSeconds") or 1800)
        initial: list[tuple[str, Any]] = []
        rv = q.get("resourceVersion")
        bookmarks.check_watch_list(q)
        want_bookmarks = _bool(q.get("allowWatchBookmarks"))
        if _bool(q.get("sendInitialEvents")):
            # WatchList (client-go's streaming list): the current objects as ADDED, then a
            # bookmark marking the end of the initial events, then changes.
            lst = self.registry.list(t.resource.plural, namespace=t.namespace, label_selector=q.get("labelSelector"),
                                     field_selector=q.get("fieldSelector"))
            rv = lst["metadata"]["resourceVersion"]
            initial = [("ADDED", o) for o in lst["items"]]
            initial.append(("BOOKMARK", bookmarks.bookmark(t.resource.kind, t.resource.api_version, rv,
                                                          initial_events_end=True)))
        stream = self.registry.watch(t.resource.plural, namespace=t.namespace, resource_version=rv,
                                     label_selector=q.get("labelSelector"), field_selector=q.get("fieldSelector"),
                                     copy_items=False)
        resp = web.StreamResponse(headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
        # One pending __anext__ at a time, awaited with asyncio.wait: cancelling it (as
        # wait_for would on a timeout) would finalise the generator and end the watch.
        nxt: asyncio.Future = asyncio.ensure_future(stream.__anext__())
        done, _ = await asyncio.wait({nxt}, timeout=0.01)
        if nxt in done and isinstance(nxt.exception(), ApiError):
            # An expired revision is answered with a 410 before the stream starts.
            return status_response(nxt.exception())  # type: ignore[arg-type]
        await resp.prepare(request)
        deadline = time.monotonic() + timeout
        sent_rv = int(rv) if rv and rv.isdigit() else 0
        next_bm = bookmarks.next_bookmark(time.monotonic(), deadline=deadline, interval=self.bookmark_interval) \
            if want_bookmarks else None

        async def send(ev_type: str, obj: Any) -> None:
            if as_table and ev_type not in ("ERROR", "BOOKMARK"):
                obj = table.to_table(t.resource.plural, [obj], include_object=q.get("includeObject", "PartialObjectMetadata"))
                await resp.write(_encode_event(ev_type, obj))
                return
            await resp.write(_encode_event(ev_type, obj, cache=ev_type in ("ADDED", "MODIFIED")))

        try:
            for ev in initial:
                await send(*ev)
            while True:
                now = time.monotonic()
                left = deadline - now
                if left <= 0:
                    break
                seen = self.registry.store.revision  # see bookmarks.py: safe once a wait times out
                done, _ = await asyncio.wait({nxt}, timeout=left if next_bm is None else max(0.01, min(left, next_bm - now)))
                if not done:
                    if next_bm is None or time.monotonic() >= deadline:
                        break
                    if time.monotonic() >= next_bm:
                        sent_rv = max(sent_rv, seen)
                        await send("BOOKMARK", bookmarks.bookmark(t.resource.kind, t.resource.api_version, sent_rv))
                        next_bm = bookmarks.next_bookmark(time.monotonic(), deadline=deadline, interval=self.bookmark_interval)
                    continue
                try:
                    ev = nxt.result()
                except StopAsyncIteration:
                    break
                except ApiError as e:
                    await send("ERROR", e.status())
                    break
                await send(*ev)
                ev_rv = ev[1].get("metadata", {}).get("resourceVersion", "")
                if ev_rv.isdigit():
                    sent_rv = max(sent_rv, int(ev_rv))
                nxt = asyncio.ensure_future(stream.__anext__())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            nxt.cancel()
            try:
                await nxt
            except BaseException:  # noqa: BLE001 - it was cancelled or had ended
                pass
            try:
                await stream.aclose()
            except RuntimeError:
                pass
        try:
            await resp.write_eof()
        except ConnectionResetError:
            pass
        return resp

    # -- pod logs and exec: proxied to the kubelet of the pod's node -----------------------
    def _kubelet(self, pod: dict[str, Any], container: str | None) -> tuple[str, str]:
        """The container a log/exec request means, and the kubelet URL base of its node."""
        name = pod["metadata"]["name"]
        containers = [c["name"] for c in pod["spec"].get("containers", [])]
        inits = [c["name"] for c in pod["spec"].get("initContainers") or []]
        ephemeral = [c["name"] for c in pod["spec"].get("ephemeralContainers") or []]
        if not container:
            if len(containers) != 1:
                raise bad_request(f"a container name must be specified for pod {name}, choose one of: "
                                  f"[{' '.join(containers)}]" + (f" or one of the init containers: [{' '.join(inits)}]" if inits else "")
                                  + (f" or one of the ephemeral containers: [{' '.join(ephemeral)}]" if ephemeral else ""))
            container = containers[0]
        elif container not in containers + inits + ephemeral:
            raise bad_request(f"container {container} is not valid for pod {name}")
        if not pod["spec"].get("nodeName"):
            raise bad_request(f'container "{container}" in pod "{name}" is waiting to start: ContainerCreating')
        return container, self._kubelet_base(pod)

    def _kubelet_base(self, pod: dict[str, Any]) -> str:
        node_name = pod["spec"].get("nodeName")
        if not node_name:
            raise bad_request(f"pod {pod['metadata']['name']} does not have a host assigned")
        node = self.registry.get("nodes", node_name)
        ip = next((a["address"] for a in (node.get("status") or {}).get("addresses", []) if a["type"] == "InternalIP"), None)
        port = ((node.get("status") or {}).get("daemonEndpoints") or {}).get("kubeletEndpoint", {}).get("Port", self.kubelet_port)
        if not ip:
            raise ApiError(500, "InternalError", f"node {node_name} has no InternalIP")
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, connect=5))
        return f"http://{ip}:{port}"

    def _kubelet_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.kubelet_token}"} if self.kubelet_token else {}

    async def pod_exec(self, request: web.Request, ns: str, name: str) -> web.StreamResponse:
        """``kubectl exec``: the channel stream, relayed to the node's kubelet."""
        pod = self.registry.get("pods", name, namespace=ns)
        container, base = self._kubelet(pod, request.query.get("container"))
        params = MultiDict((k, v) for k, v in request.query.items() if k in ("command", "stdin", "stdout", "stderr", "tty"))
        return await self._relay_ws(request, f"{base}/exec/{ns}/{name}/{container}", params)

    async def pod_portforward(self, request: web.Request, ns: str, name: str) -> web.StreamResponse:
        """``kubectl port-forward``: SPDY tunnelled in a WebSocket, relayed to the node's kubelet."""
        pod = self.registry.get("pods", name, namespace=ns)
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            raise bad_request(f"cannot port forward a pod in a completed pod; current phase is {phase}")
        return await self._relay_ws(request, f"{self._kubelet_base(pod)}/portForward/{ns}/{name}", MultiDict())

    async def _relay_ws(self, request: web.Request, url: str, params: MultiDict) -> web.StreamResponse:
        """Open the same WebSocket (same offered subprotocols) to the kubelet, then relay
        frames both ways unchanged until either side closes."""
        if request.headers.get("Upgrade", "").lower() != "websocket":
            raise bad_request("Upgrade request required")
        offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        try:
            up = await self._session.ws_connect(url.replace("http://", "ws://", 1), params=params, protocols=offered,
                                                headers=self._kubelet_headers(), max_msg_size=0, autoping=True)
        except aiohttp.WSServerHandshakeError as e:
            raise ApiError(e.status if e.status >= 400 else 500, "BadRequest" if e.status == 400 else "InternalError",
                           f"unable to upgrade connection: {e.message}") from None
        except aiohttp.ClientError as e:
            raise ApiError(500, "InternalError", f"error dialing backend: {e}") from None
        ws = web.WebSocketResponse(protocols=(up.protocol,) if up.protocol else (), max_msg_size=0, autoping=True)
        try:
            await ws.prepare(request)

            async def relay(src: Any, dst: Any) -> None:
                async for msg in src:
                    if msg.type == aiohttp.WSMsgType.BINARY:
                        await dst.send_bytes(msg.data)
                    elif msg.type == aiohttp.WSMsgType.TEXT:
                        await dst.send_str(msg.data)
            tasks = [asyncio.create_task(relay(up, ws)), asyncio.create_task(relay(ws, up))]
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            await up.close()
            await ws.close()
        return ws

    async def pod_log(self, request: web.Request, ns: str, name: str) -> web.StreamResponse:
        pod = self.registry.get("pods", name, namespace=ns)
        container, base = self._kubelet(pod, request.query.get("container"))
        params = {k: v for k, v in request.query.items() if k in ("follow", "tailLines", "timestamps", "previous", "sinceSeconds", "sinceTime", "limitBytes")}
        url = f"{base}/containerLogs/{ns}/{name}/{container}"
        try:
            async with self._session.get(url, params=params, headers=self._kubelet_headers()) as up:
                if up.status != 200:
                    text = await up.text()
                    try:
                        st = json.loads(text)
                        raise ApiError.from_status(st, up.status)
                    except ValueError:
                        raise ApiError(up.status, "BadRequest", text.strip()) from None
                return await proxy_api.relay_body(request, web.StreamResponse(headers={"Content-Type": "text/plain"}), up)
        except aiohttp.ClientError as e:
            raise ApiError(500, "InternalError", f"Get \"{url}\": {e}") from None
