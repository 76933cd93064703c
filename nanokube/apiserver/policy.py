"""The default RBAC policy every cluster starts with (upstream's bootstrap policy, trimmed to
the API we serve): cluster-admin, the user-facing admin / edit / view roles built by
aggregation, discovery and self-review for every authenticated user, and the role our agents
(group ``system:nodes``) act under. Created at server start if missing, and brought back to
these rules if annotated ``rbac.authorization.kubernetes.io/autoupdate: "true"`` (the default),
as kube-apiserver reconciles its own.
"""
from __future__ import annotations

import logging
from typing import Any

from nanokube.api.errors import ApiError

log = logging.getLogger("nanokube.policy")
Obj = dict[str, Any]
RO = ["get", "list", "watch"]
RW = ["create", "delete", "deletecollection", "patch", "update"]
AGG = "rbac.authorization.k8s.io/aggregate-to-"


CSR_NODECLIENT = "system:certificates.k8s.io:certificatesigningrequests:nodeclient"
CSR_SELFNODECLIENT = "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient"


def _rule(groups: list[str], resources: list[str], verbs: list[str]) -> Obj:
    return {"apiGroups": groups, "resources": resources, "verbs": verbs}


def _nonres(urls: list[str], verbs: list[str]) -> Obj:
    return {"nonResourceURLs": urls, "verbs": verbs}


def _role(name: str, rules: list[Obj] | None = None, *, labels: dict[str, str] | None = None,
          aggregate: str | None = None) -> Obj:
    role: Obj = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                 "metadata": {"name": name, "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
                              "labels": {"kubernetes.io/bootstrapping": "rbac-defaults", **(labels or {})}}}
    if aggregate:
        role["aggregationRule"] = {"clusterRoleSelectors": [{"matchLabels": {AGG + aggregate: "true"}}]}
        role["rules"] = []
    else:
        role["rules"] = rules or []
    return role


def _binding(name: str, role: str, groups: list[str]) -> Obj:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": name, "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
                         "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": g} for g in groups]}


WORKLOADS = {"": ["pods", "pods/log", "pods/status", "services", "services/status", "endpoints", "configmaps",
                  "persistentvolumeclaims", "persistentvolumeclaims/status", "replicationcontrollers",
                  "replicationcontrollers/scale", "replicationcontrollers/status", "serviceaccounts", "events",
                  "limitranges", "resourcequotas", "resourcequotas/status"],
             "apps": ["deployments", "deployments/scale", "deployments/status", "replicasets", "replicasets/scale",
                      "replicasets/status", "daemonsets", "daemonsets/status", "statefulsets", "statefulsets/scale",
                      "statefulsets/status", "controllerrevisions"],
             "batch": ["jobs", "jobs/status", "cronjobs", "cronjobs/status"],
             "autoscaling": ["horizontalpodautoscalers", "horizontalpodautoscalers/status"],
             "networking.k8s.io": ["ingresses", "ingresses/status", "networkpolicies"],
             "policy": ["poddisruptionbudgets", "poddisruptionbudgets/status"],
             "discovery.k8s.io": ["endpointslices"],
             "coordination.k8s.io": ["leases"]}


def cluster_roles() -> list[Obj]:
    view = [_rule([g], res, RO) for g, res in WORKLOADS.items()] + [
        _rule([""], ["namespaces", "namespaces/status", "bindings"], RO),
        _rule(["metrics.k8s.io"], ["pods", "nodes"], RO)]
    edit = [_rule([g], [r for r in res if "/status" not in r and r != "pods/log"], RW) for g, res in WORKLOADS.items()] + [
        _rule([""], ["secrets"], RO + RW),
        _rule([""], ["pods/exec", "pods/attach", "pods/portforward", "pods/proxy", "services/proxy"], ["create", "get"]),
        _rule([""], ["pods/eviction", "serviceaccounts/token"], ["create"]),
        _rule([""], ["serviceaccounts"], ["impersonate"])]
    admin = [_rule(["rbac.authorization.k8s.io"], ["roles", "rolebindings"], RO + RW),
             _rule(["authorization.k8s.io"], ["localsubjectaccessreviews"], ["create"])]
    return [
        _role("cluster-admin", [_rule(["*"], ["*"], ["*"]), _nonres(["*"], ["*"])]),
        _role("admin", aggregate="admin"), _role("edit", aggregate="edit", labels={AGG + "admin": "true"}),
        _role("view", aggregate="view", labels={AGG + "admin": "true", AGG + "edit": "true"}),
        _role("system:aggregate-to-admin", admin, labels={AGG + "admin": "true"}),
        _role("system:aggregate-to-edit", edit, labels={AGG + "admin": "true", AGG + "edit": "true"}),
        _role("system:aggregate-to-view", view, labels={AGG + "admin": "true", AGG + "edit": "true", AGG + "view": "true"}),
        _role("system:discovery", [_nonres(["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi",
                                            "/openapi/*", "/readyz", "/version", "/version/"], ["get"])]),
        _role("system:public-info-viewer", [_nonres(["/healthz", "/livez", "/readyz", "/version", "/version/"], ["get"])]),
        _role("system:basic-user", [
            _rule(["authorization.k8s.io"], ["selfsubjectaccessreviews", "selfsubjectrulesreviews"], ["create"]),
            _rule(["authentication.k8s.io"], ["selfsubjectreviews"], ["create"])]),
        # nanokube's agents (kubelet + kube-proxy): system:node:<name> in group system:nodes.
        _role("system:node", [
            _rule([""], ["nodes", "nodes/status"], RO + ["create", "update", "patch", "delete"]),
            _rule([""], ["pods"], RO + ["create", "delete"]),
            _rule([""], ["pods/status"], ["update", "patch"]),
            _rule([""], ["pods/eviction", "serviceaccounts/token"], ["create"]),
            _rule([""], ["events"], ["get", "create", "update", "patch"]),
            _rule([""], ["services", "endpoints", "configmaps", "secrets", "persistentvolumeclaims",
                         "persistentvolumes", "serviceaccounts", "namespaces"], RO),
            _rule(["coordination.k8s.io"], ["leases"], RO + ["create", "update", "patch", "delete"]),
            _rule(["discovery.k8s.io"], ["endpointslices"], RO),
            _rule(["networking.k8s.io"], ["networkpolicies", "ingresses", "ingressclasses"], RO),
            _rule(["networking.k8s.io"], ["ingresses/status"], ["update", "patch"]),
            _rule(["certificates.k8s.io"], ["certificatesigningrequests"], ["create", "get", "list", "watch"])]),
        _role("system:monitoring", [_nonres(["/metrics", "/healthz", "/livez", "/readyz"], ["get"])]),
        # Joining agents (bootstrap tokens) ask for their client certificate with a CSR; the
        # approver grants node client certificates to whoever may create these subresources.
        _role("system:node-bootstrapper", [
            _rule(["certificates.k8s.io"], ["certificatesigningrequests"], ["create", "get", "list", "watch"])]),
        _role(CSR_NODECLIENT, [_rule(["certificates.k8s.io"], ["certificatesigningrequests/nodeclient"], ["create"])]),
        _role(CSR_SELFNODECLIENT, [
            _rule(["certificates.k8s.io"], ["certificatesigningrequests/selfnodeclient"], ["create"])]),
    ]


def cluster_role_bindings() -> list[Obj]:
    return [_binding("cluster-admin", "cluster-admin", ["system:masters"]),
            _binding("system:discovery", "system:discovery", ["system:authenticated"]),
            _binding("system:basic-user", "system:basic-user", ["system:authenticated"]),
            _binding("system:public-info-viewer", "system:public-info-viewer", ["system:authenticated", "system:unauthenticated"]),
            _binding("system:node", "system:node", ["system:nodes"]),
            _binding("system:monitoring", "system:monitoring", ["system:monitoring"]),
            _binding("system:node-bootstrapper", "system:node-bootstrapper", ["system:bootstrappers"]),
            _binding("system:node-autoapprove-bootstrap", CSR_NODECLIENT, ["system:bootstrappers"]),
            _binding("system:node-autoapprove-certificate-rotation", CSR_SELFNODECLIENT, ["system:nodes"])]


async def ensure(registry: Any) -> None:
    for plural, objs in (("clusterroles", cluster_roles()), ("clusterrolebindings", cluster_role_bindings())):
        for obj in objs:
            name = obj["metadata"]["name"]
            try:
                cur = registry.get(plural, name)
            except ApiError as e:
                if e.code != 404:
                    raise
                await registry.create(plural, obj)
                continue
            if (cur["metadata"].get("annotations") or {}).get("rbac.authorization.kubernetes.io/autoupdate") != "true":
                continue
            fields = ("roleRef", "subjects") if plural == "clusterrolebindings" else ("rules", "aggregationRule")
            if obj.get("aggregationRule"):
                fields = ("aggregationRule",)  # the aggregation controller owns the rules
            if any(cur.get(f) != obj.get(f) for f in fields):
                for f in fields:
                    cur[f] = obj.get(f)
                await registry.update(plural, cur, name=name)
                log.info("reconciled %s %s", plural, name)
