"""May they do it: request attributes and the RBAC authorizer.

``attributes(method, path, query)`` turns an HTTP request into kube-apiserver's
authorizer attributes (verb, API group, resource, subresource, name, namespace — or a
non-resource path). ``Rbac`` decides from Roles, ClusterRoles and their bindings exactly as
upstream's RBAC authorizer does: a request is allowed if any rule bound to the user, one of
its groups or its ServiceAccount allows it; nothing ever denies. Members of
``system:masters`` are allowed everything without consulting RBAC (upstream's privileged
group). The four RBAC kinds are kept in an in-memory index fed from the store's watch, so a
decision costs a walk over the bindings, never a store scan.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Iterator

from .authn import UserInfo

log = logging.getLogger("nanokube.rbac")
Obj = dict[str, Any]
SUPERUSER_GROUP = "system:masters"
# Connecting to a pod's streams over a WebSocket is a GET, but it is authorized as "create",
# as for SPDY's POST (upstream's AuthorizePodWebsocketUpgradeCreatePermission). The proxy
# subresource is not among them: upstream authorizes it with the HTTP method's verb.
_CONNECT = {"exec", "attach", "portforward"}


@dataclass(frozen=True)
class Attributes:
    verb: str
    resource_request: bool = True
    namespace: str = ""
    api_group: str = ""
    api_version: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    path: str = ""


def attributes(method: str, path: str, query: Any) -> Attributes:
    """kube-apiserver's RequestInfo, for the paths we serve."""
    parts = [p for p in path.split("/") if p]
    http_verb = {"GET": "get", "HEAD": "get", "POST": "create", "PUT": "update", "PATCH": "patch",
                 "DELETE": "delete"}.get(method, method.lower())
    if parts[:1] == ["api"] and len(parts) >= 3:
        group, version, rest = "", parts[1], parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 4:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return Attributes(http_verb, False, path=path or "/")
    ns = ""
    if rest[0] == "namespaces" and len(rest) >= 3:  # /namespaces/{ns}/{resource}...
        ns, rest = rest[1], rest[2:]
    elif rest[0] == "namespaces" and len(rest) == 2:  # the namespace object itself
        ns = rest[1]
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    sub = rest[2] if len(rest) > 2 else ""
    verb = http_verb
    if method in ("GET", "HEAD") and not name:
        verb = "watch" if str(query.get("watch", "")).lower() in ("1", "true") else "list"
        fs = query.get("fieldSelector") or ""
        for term in fs.split(","):
            if term.startswith("metadata.name="):
                name = term.split("=", 1)[1]
    elif method == "DELETE" and not name:
        verb = "deletecollection"
    if sub in _CONNECT:
        verb = "create"
    return Attributes(verb, True, ns, group, version, resource, sub, name)


def describe_forbidden(user: UserInfo, a: Attributes) -> str:
    """Upstream's Forbidden message."""
    if not a.resource_request:
        return f'forbidden: User "{user.name}" cannot {a.verb} path "{a.path}"'
    res = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
    what = f'{res} "{a.name}"' if a.name and a.verb not in ("list", "watch", "create", "deletecollection") else res
    scope = f' in the namespace "{a.namespace}"' if a.namespace else " at the cluster scope"
    return (f'{what} is forbidden: User "{user.name}" cannot {a.verb} resource "{res}" in API group '
            f'"{a.api_group}"{scope}')


def rule_allows(rule: Obj, a: Attributes) -> bool:
    verbs = rule.get("verbs") or []
    if "*" not in verbs and a.verb not in verbs:
        return False
    if not a.resource_request:
        return any(u == "*" or u == a.path or (u.endswith("*") and a.path.startswith(u[:-1]))
                   for u in rule.get("nonResourceURLs") or [])
    groups = rule.get("apiGroups") or []
    if "*" not in groups and a.api_group not in groups:
        return False
    combined = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
    if not any(r == "*" or r == combined or (a.subresource and r == "*/" + a.subresource)
               for r in rule.get("resources") or []):
        return False
    names = rule.get("resourceNames") or []
    return not names or a.name in names


def subject_matches(s: Obj, user: UserInfo, binding_ns: str) -> bool:
    kind = s.get("kind")
    if kind == "User":
        return s.get("name") == user.name
    if kind == "Group":
        return s.get("name") in user.groups
    if kind == "ServiceAccount":
        return user.name == f"system:serviceaccount:{s.get('namespace') or binding_ns}:{s.get('name')}"
    return False


class Rbac:
    PLURALS = ("clusterroles", "clusterrolebindings", "roles", "rolebindings")

    def __init__(self, store: Any):
        self.store = store
        self.index: dict[str, dict[str, Obj]] = {p: {} for p in self.PLURALS}
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        """Load the index and follow the store; idempotent, needs a running loop."""
        if self._task is None or self._task.done():
            rev = self._load()
            self._task = asyncio.get_running_loop().create_task(self._follow(rev), name="rbac-index")

    def _load(self) -> int:
        rev = 0
        for p in self.PLURALS:
            items, rev = self.store.list(f"/registry/{p}/")
            self.index[p] = {k: v for k, v, _ in items}
        return rev

    async def _follow(self, rev: int) -> None:
        while True:
            try:
                streams = [self._one(p, rev) for p in self.PLURALS]
                await asyncio.gather(*streams)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - e.g. compacted away: reload and go on
                log.warning("rbac index watch: %r; reloading", e)
                await asyncio.sleep(0.5)
                rev = self._load()

    async def _one(self, plural: str, rev: int) -> None:
        async for ev in self.store.watch(f"/registry/{plural}/", after=rev):
            if ev.type == "DELETE":
                self.index[plural].pop(ev.key, None)
            else:
                self.index[plural][ev.key] = ev.value

    def close(self) -> None:
        if self._task:
            self._task.cancel()

    # -- decisions -----------------------------------------------------------------------
    def _role_rules(self, ref: Obj, namespace: str) -> list[Obj]:
        if ref.get("kind") == "ClusterRole":
            role = self.index["clusterroles"].get(f"/registry/clusterroles/{ref.get('name')}")
        elif ref.get("kind") == "Role":
            role = self.index["roles"].get(f"/registry/roles/{namespace}/{ref.get('name')}")
        else:
            role = None
        return (role or {}).get("rules") or []

    def bound_rules(self, user: UserInfo, namespace: str) -> Iterator[tuple[Obj, str]]:
        """Every rule that applies to ``user`` in ``namespace`` ("" = cluster scope only),
        with upstream's description of where it comes from."""
        for b in self.index["clusterrolebindings"].values():
            subj = next((s for s in b.get("subjects") or [] if subject_matches(s, user, "")), None)
            if subj is not None:
                ref = b.get("roleRef") or {}
                for r in self._role_rules(ref, ""):
                    yield r, (f'ClusterRoleBinding "{b["metadata"]["name"]}" of ClusterRole "{ref.get("name")}" '
                              f'to {subj.get("kind")} "{subj.get("name")}"')
        if not namespace:
            return
        prefix = f"/registry/rolebindings/{namespace}/"
        for key, b in self.index["rolebindings"].items():
            if not key.startswith(prefix):
                continue
            subj = next((s for s in b.get("subjects") or [] if subject_matches(s, user, namespace)), None)
            if subj is not None:
                ref = b.get("roleRef") or {}
                for r in self._role_rules(ref, namespace):
                    yield r, (f'RoleBinding "{b["metadata"]["name"]}/{namespace}" of {ref.get("kind")} '
                              f'"{ref.get("name")}" to {subj.get("kind")} "{subj.get("name")}"')

    def authorize(self, user: UserInfo, a: Attributes) -> tuple[bool, str]:
        if SUPERUSER_GROUP in user.groups:
            return True, ""
        for rule, source in self.bound_rules(user, a.namespace if a.resource_request else ""):
            if rule_allows(rule, a):
                return True, f"RBAC: allowed by {source}"
        return False, ""
