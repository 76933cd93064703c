"""OpenAPI v3 documents, one per group/version, as kube-apiserver serves them.

kubectl reads ``/openapi/v3`` (an index of per-group documents, each addressed with a content
hash so it can cache them) and then ``/openapi/v3/apis/<group>/<version>``. What matters to it:
every resource path with operations tagged ``x-kubernetes-group-version-kind``, and the PATCH
operation listing the ``fieldValidation`` query parameter — that is how kubectl learns the
server validates fields itself, so it sends ``fieldValidation=Strict`` instead of validating
client-side. Schemas carry patch merge keys for ``kubectl apply`` and descriptions for
``kubectl explain``.
"""
from __future__ import annotations

import hashlib
from typing import Any, Callable

from nanokube.api.resources import RESOURCES, Resource
from nanokube.api.schema import kind_schema


def etag(body: bytes) -> str:
    return hashlib.sha512(body).hexdigest()[:128].upper()


def _doc_path(gv: str) -> str:
    return f"apis/{gv}" if "/" in gv else f"api/{gv}"


def v3_root(resources: list[Resource], doc_for: Callable[[str], tuple[str, bytes]]) -> dict[str, Any]:
    gvs = sorted({r.api_version for r in resources})
    return {"paths": {_doc_path(gv): {"serverRelativeURL": f"/openapi/v3/{_doc_path(gv)}?hash={doc_for(gv)[0]}"}
                      for gv in gvs}}


def _param(name: str, desc: str, *, where: str = "query", required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": where, "description": desc, "required": required, "schema": {"type": "string"},
            "uniqueItems": True}


_WRITE_PARAMS = [
    _param("dryRun", "When present, indicates that modifications should not be persisted."),
    _param("fieldManager", "fieldManager is a name associated with the actor or entity that is making these changes."),
    _param("fieldValidation", "fieldValidation instructs the server on how to handle objects in the request "
                              "containing unknown or duplicate fields. Valid values are: Ignore, Warn, Strict."),
]


def _op(r: Resource, action: str, ref: str | None, *, body: bool = False, list_ref: str | None = None,
        extra: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    group = r.group
    op: dict[str, Any] = {
        "operationId": f"{action}{r.kind}",
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": group, "version": r.version, "kind": r.kind},
        "parameters": list(extra or []),
        "responses": {"200": {"description": "OK", "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{list_ref or ref}"} if (list_ref or ref) else {}}}}},
    }
    if body:
        ctypes = ["application/json", "application/yaml"]
        if action == "patch":
            ctypes = ["application/json-patch+json", "application/merge-patch+json",
                      "application/strategic-merge-patch+json", "application/apply-patch+yaml"]
            op["requestBody"] = {"content": {c: {"schema": {"type": "object"}} for c in ctypes}, "required": True}
        else:
            op["requestBody"] = {"content": {c: {"schema": {"$ref": f"#/components/schemas/{ref}"}} for c in ctypes},
                                 "required": True}
    return op


def v3_group(schemas: dict[str, Any], gv: str) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    used: set[str] = set()
    for r in RESOURCES.values():
        if r.api_version != gv:
            continue
        ref = kind_schema(schemas, r.api_version, r.kind) if schemas else None
        if ref:
            used.add(ref)
        list_ref = (ref + "List") if ref and ref + "List" in schemas["definitions"] else None
        if list_ref:
            used.add(list_ref)
        base = f"/apis/{gv}" if "/" in gv else f"/api/{gv}"
        coll = f"{base}/namespaces/{{namespace}}/{r.plural}" if r.namespaced else f"{base}/{r.plural}"
        item = coll + "/{name}"
        common = [_param("name", f"name of the {r.kind}", where="path", required=True)]
        if r.namespaced:
            common.append(_param("namespace", "object name and auth scope", where="path", required=True))
        paths[coll] = {
            "get": _op(r, "list", ref, list_ref=list_ref),
            "post": _op(r, "post", ref, body=True, extra=_WRITE_PARAMS),
            "delete": _op(r, "deletecollection", None),
            "parameters": common[1:],
        }
        paths[item] = {
            "get": _op(r, "get", ref),
            "put": _op(r, "put", ref, body=True, extra=_WRITE_PARAMS),
            "patch": _op(r, "patch", ref, body=True, extra=_WRITE_PARAMS + [_param("force", "Force is going to \"force\" Apply requests.")]),
            "delete": _op(r, "delete", None),
            "parameters": common,
        }
        for sub in r.subresources:
            if sub in ("status", "scale"):
                paths[f"{item}/{sub}"] = {"get": _op(r, "get", ref), "put": _op(r, "put", ref, body=True, extra=_WRITE_PARAMS),
                                          "patch": _op(r, "patch", ref, body=True, extra=_WRITE_PARAMS),
                                          "parameters": common}
                # Subresource operations describe a different kind; keep the main kind's
                # PATCH the only one tagged with it, as kubectl looks for the first match.
                for m in ("get", "put", "patch"):
                    paths[f"{item}/{sub}"][m].pop("x-kubernetes-group-version-kind")
    comps: dict[str, Any] = {}
    if schemas:
        defs = schemas["definitions"]
        todo = list(used) + [n for n in defs if n.startswith("io.k8s.apimachinery")]
        while todo:
            n = todo.pop()
            if n in comps or n not in defs:
                continue
            comps[n] = _clean(defs[n], todo)
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.37.0"}, "paths": paths,
            "components": {"schemas": comps}}


def _clean(node: Any, todo: list[str]) -> Any:
    """Copy a schema for publication: drop our private markers, collect references."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "x-nanokube-free":
                continue
            if k == "$ref":
                todo.append(v.rsplit("/", 1)[1])
                out["allOf"] = [{"$ref": v}]
                continue
            out[k] = _clean(v, todo)
        if node.get("x-kubernetes-int-or-string"):
            out.pop("x-kubernetes-int-or-string", None)
            out["x-kubernetes-int-or-string"] = True
        return out
    if isinstance(node, list):
        return [_clean(v, todo) for v in node]
    return node
