"""API discovery: ``/api``, ``/apis``, ``/apis/<group>`` and the group/version resource lists.

Two forms, chosen by the Accept header as upstream does:

- the legacy documents (APIVersions, APIGroupList, APIGroup, APIResourceList), one request per
  group/version;
- aggregated discovery (``apidiscovery.k8s.io/v2``, and ``v2beta1`` for older clients): ``/api``
  and ``/apis`` each answer with every group, version and resource (with subresources) at once,
  so a cold kubectl needs two requests instead of one per group/version.

The aggregated form is derived from the legacy resource lists, so the two never disagree.
"""
from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from nanokube.api.errors import ApiError
from nanokube.api.resources import RESOURCES, Resource
from . import metrics as metrics_api

Obj = dict[str, Any]
AGGREGATED = ("v2", "v2beta1")  # apidiscovery.k8s.io versions we answer, most preferred first


def groups() -> dict[str, list[Resource]]:
    """Group/version → its resources, in registration order."""
    out: dict[str, list[Resource]] = {}
    for r in RESOURCES.values():
        out.setdefault(r.api_version, []).append(r)
    return out


def _not_found() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource")


# -- the legacy documents ------------------------------------------------------------------
def api_versions(host: str) -> Obj:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}]}


def group_list() -> Obj:
    gs = []
    for gv in groups():
        if "/" not in gv:
            continue
        g, v = gv.split("/")
        ver = {"groupVersion": gv, "version": v}
        gs.append({"name": g, "versions": [ver], "preferredVersion": ver})
    gs.append(metrics_api.group_entry())  # served from the kubelets, not stored: not in RESOURCES
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": gs}


# Subresources whose kind is not the parent's: (group, version, kind, verbs); group None = the parent's.
_SUBRESOURCES: dict[str, tuple[str | None, str | None, str | None, list[str]]] = {
    "scale": ("autoscaling", "v1", "Scale", ["get", "patch", "update"]),
    "eviction": ("policy", "v1", "Eviction", ["create"]),  # with its group: kubectl drain looks for exactly this
    "token": ("authentication.k8s.io", "v1", "TokenRequest", ["create"]),
    "binding": (None, None, "Binding", ["create"]),
    "log": (None, None, "Pod", ["get"]),
    "exec": (None, None, "PodExecOptions", ["create", "get"]),
    "attach": (None, None, "PodAttachOptions", ["create", "get"]),
    "portforward": (None, None, "PodPortForwardOptions", ["create", "get"]),
    "finalize": (None, None, None, ["update"]),
}


def resource_list(gv: str) -> Obj:
    if gv == metrics_api.GROUP_VERSION:
        return metrics_api.resource_list()
    rs = groups().get(gv)
    if rs is None:
        raise _not_found()
    out = []
    for r in rs:
        entry: Obj = {"name": r.plural, "singularName": r.singular or r.kind.lower(),
                      "namespaced": r.namespaced, "kind": r.kind, "verbs": list(r.verbs)}
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        if r.categories:
            entry["categories"] = list(r.categories)
        out.append(entry)
        for sub in r.subresources:
            group, version, kind, verbs = _SUBRESOURCES.get(sub, (None, None, None, ["get", "patch", "update"]))
            if sub == "proxy":  # upstream's PodProxyOptions, ServiceProxyOptions, NodeProxyOptions
                kind, verbs = f"{r.kind}ProxyOptions", ["create", "delete", "get", "patch", "update"]
            sub_entry: Obj = {"name": f"{r.plural}/{sub}", "singularName": "", "namespaced": r.namespaced,
                              "kind": kind or r.kind, "verbs": verbs}
            if group is not None:
                sub_entry.update(group=group, version=version)
            out.append(sub_entry)
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out}


# -- aggregated discovery ------------------------------------------------------------------
def _version_discovery(gv: str) -> Obj:
    group, _, version = gv.rpartition("/")
    resources: list[Obj] = []
    by_name: dict[str, Obj] = {}
    for e in resource_list(gv)["resources"]:
        kind = {"group": e.get("group", group), "version": e.get("version", version), "kind": e["kind"]}
        parent, _, sub = e["name"].partition("/")
        if sub:
            by_name[parent].setdefault("subresources", []).append(
                {"subresource": sub, "responseKind": kind, "verbs": e["verbs"]})
            continue
        d: Obj = {"resource": e["name"], "responseKind": kind,
                  "scope": "Namespaced" if e["namespaced"] else "Cluster",
                  "singularResource": e["singularName"] or e["kind"].lower(), "verbs": e["verbs"]}
        for k in ("shortNames", "categories"):
            if e.get(k):
                d[k] = e[k]
        by_name[e["name"]] = d
        resources.append(d)
    return {"version": version, "resources": resources, "freshness": "Current"}


def aggregated(which: str, version: str = "v2") -> Obj:
    """The APIGroupDiscoveryList of ``/api`` (which="api": the core group) or ``/apis``."""
    if which == "api":
        items = [{"metadata": {"creationTimestamp": None}, "versions": [_version_discovery("v1")]}]
    else:
        items = [{"metadata": {"name": g["name"], "creationTimestamp": None},
                  "versions": [_version_discovery(v["groupVersion"]) for v in g["versions"]]}
                 for g in group_list()["groups"]]
    return {"kind": "APIGroupDiscoveryList", "apiVersion": f"apidiscovery.k8s.io/{version}",
            "metadata": {}, "items": items}


def negotiate(accept: str) -> str | None:
    """The apidiscovery version the Accept header asks for first, if it asks for one in JSON
    before plain JSON; None for the legacy documents."""
    for clause in accept.split(","):
        mt, *params = [p.strip() for p in clause.split(";")]
        args = dict(p.split("=", 1) for p in params if "=" in p)
        if mt in ("application/json", "application/*", "*/*") and not args.get("as"):
            return None
        if mt == "application/json" and args.get("g") == "apidiscovery.k8s.io" \
                and args.get("as") == "APIGroupDiscoveryList" and args.get("v") in AGGREGATED:
            return args["v"]
    return None


def serve(request: web.Request, parts: list[str]) -> web.Response | None:
    """Answer a discovery path (``parts`` of /api, /apis, /apis/g, /api/v1, /apis/g/v), or None
    when the path is not one (e.g. /api/v1/pods goes to the REST handler)."""
    if len(parts) == 1:
        version = negotiate(request.headers.get("Accept", ""))
        if version is not None:
            body = json.dumps(aggregated(parts[0], version), separators=(",", ":"))
            return web.Response(body=body.encode(), headers={
                "Content-Type": f"application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList",
                "Vary": "Accept"})
        doc = api_versions(request.host) if parts[0] == "api" else group_list()
        return web.json_response(doc, headers={"Vary": "Accept"})
    if parts[0] == "api" and len(parts) == 2:
        if parts[1] != "v1":
            raise _not_found()
        return web.json_response(resource_list("v1"))
    if parts[0] == "apis" and len(parts) == 2:
        for g in group_list()["groups"]:
            if g["name"] == parts[1]:
                return web.json_response({"kind": "APIGroup", "apiVersion": "v1", **g})
        raise _not_found()
    if parts[0] == "apis" and len(parts) == 3:
        return web.json_response(resource_list(f"{parts[1]}/{parts[2]}"))
    return None
