"""The table of API resources nanokube serves.

Every component names a resource by its plural (``"pods"``, ``"deployments"``); this table
maps it to group, version, kind and scope, so discovery, the store's keys, the HTTP paths
and the clients all agree. Plurals are unique across the groups we serve.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Resource:
    plural: str
    kind: str
    group: str  # "" for the core group
    version: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
    categories: tuple[str, ...] = ()
    singular: str = field(default="")

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> str:
        return self.api_version

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        """The REST path of a collection, an object or an object's subresource."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
            if subresource:
                base += f"/{subresource}"
        return base


RESOURCES: dict[str, Resource] = {}


def _add(r: Resource) -> None:
    RESOURCES[r.plural] = r


_add(Resource("namespaces", "Namespace", "", "v1", False, ("ns",), ("status", "finalize")))
_add(Resource("nodes", "Node", "", "v1", False, ("no",), ("status", "proxy")))
_add(Resource("pods", "Pod", "", "v1", True, ("po",), ("status", "binding", "log", "exec", "attach", "portforward", "eviction", "proxy", "ephemeralcontainers"), categories=("all",)))
_add(Resource("services", "Service", "", "v1", True, ("svc",), ("status", "proxy"), categories=("all",)))
_add(Resource("endpoints", "Endpoints", "", "v1", True, ("ep",)))
_add(Resource("endpointslices", "EndpointSlice", "discovery.k8s.io", "v1", True))
_add(Resource("configmaps", "ConfigMap", "", "v1", True, ("cm",)))
_add(Resource("secrets", "Secret", "", "v1", True))
_add(Resource("events", "Event", "", "v1", True, ("ev",)))
_add(Resource("serviceaccounts", "ServiceAccount", "", "v1", True, ("sa",), ("token",)))
_add(Resource("replicationcontrollers", "ReplicationController", "", "v1", True, ("rc",), ("status", "scale"),
              categories=("all",)))
_add(Resource("deployments", "Deployment", "apps", "v1", True, ("deploy",), ("status", "scale"), categories=("all",)))
_add(Resource("replicasets", "ReplicaSet", "apps", "v1", True, ("rs",), ("status", "scale"), categories=("all",)))
_add(Resource("leases", "Lease", "coordination.k8s.io", "v1", True))
_add(Resource("daemonsets", "DaemonSet", "apps", "v1", True, ("ds",), ("status",), categories=("all",)))
_add(Resource("jobs", "Job", "batch", "v1", True, (), ("status",), categories=("all",)))
_add(Resource("cronjobs", "CronJob", "batch", "v1", True, ("cj",), ("status",), categories=("all",)))
_add(Resource("statefulsets", "StatefulSet", "apps", "v1", True, ("sts",), ("status", "scale"), categories=("all",)))
_add(Resource("controllerrevisions", "ControllerRevision", "apps", "v1", True))
_add(Resource("persistentvolumes", "PersistentVolume", "", "v1", False, ("pv",), ("status",)))
_add(Resource("persistentvolumeclaims", "PersistentVolumeClaim", "", "v1", True, ("pvc",), ("status",)))
_add(Resource("storageclasses", "StorageClass", "storage.k8s.io", "v1", False, ("sc",)))
_add(Resource("limitranges", "LimitRange", "", "v1", True, ("limits",)))
_add(Resource("resourcequotas", "ResourceQuota", "", "v1", True, ("quota",), ("status",)))
_add(Resource("horizontalpodautoscalers", "HorizontalPodAutoscaler", "autoscaling", "v2", True, ("hpa",), ("status",),
              categories=("all",)))

_add(Resource("poddisruptionbudgets", "PodDisruptionBudget", "policy", "v1", True, ("pdb",), ("status",)))
_add(Resource("networkpolicies", "NetworkPolicy", "networking.k8s.io", "v1", True, ("netpol",)))
_add(Resource("ingresses", "Ingress", "networking.k8s.io", "v1", True, ("ing",), ("status",)))
_add(Resource("ingressclasses", "IngressClass", "networking.k8s.io", "v1", False))
_add(Resource("certificatesigningrequests", "CertificateSigningRequest", "certificates.k8s.io", "v1", False, ("csr",),
              ("status", "approval")))
_add(Resource("priorityclasses", "PriorityClass", "scheduling.k8s.io", "v1", False, ("pc",)))
_add(Resource("clusterroles", "ClusterRole", "rbac.authorization.k8s.io", "v1", False))
_add(Resource("clusterrolebindings", "ClusterRoleBinding", "rbac.authorization.k8s.io", "v1", False))
_add(Resource("roles", "Role", "rbac.authorization.k8s.io", "v1", True))
_add(Resource("rolebindings", "RoleBinding", "rbac.authorization.k8s.io", "v1", True))
# Reviews are answered, never stored (see apiserver/reviews.py).
_CREATE = ("create",)
_add(Resource("selfsubjectaccessreviews", "SelfSubjectAccessReview", "authorization.k8s.io", "v1", False, verbs=_CREATE))
_add(Resource("selfsubjectrulesreviews", "SelfSubjectRulesReview", "authorization.k8s.io", "v1", False, verbs=_CREATE))
_add(Resource("subjectaccessreviews", "SubjectAccessReview", "authorization.k8s.io", "v1", False, verbs=_CREATE))
_add(Resource("localsubjectaccessreviews", "LocalSubjectAccessReview", "authorization.k8s.io", "v1", True, verbs=_CREATE))
_add(Resource("selfsubjectreviews", "SelfSubjectReview", "authentication.k8s.io", "v1", False, verbs=_CREATE))
_add(Resource("tokenreviews", "TokenReview", "authentication.k8s.io", "v1", False, verbs=_CREATE))

BY_KIND: dict[tuple[str, str], Resource] = {(r.api_version, r.kind): r for r in RESOURCES.values()}


def resource(plural: str) -> Resource:
    try:
        return RESOURCES[plural]
    except KeyError:
        raise KeyError(f"unknown resource {plural!r}") from None


def for_kind(api_version: str, kind: str) -> Resource | None:
    return BY_KIND.get((api_version, kind))
