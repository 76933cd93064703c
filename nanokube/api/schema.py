"""Structural schemas of the API types, and the checks built on them.

The field structure of every Kubernetes type comes from the official ``kubernetes`` Python
client's models (``openapi_types``, ``attribute_map``, field descriptions and required
flags), generated from the same OpenAPI spec as kube-apiserver's. Importing those ~800
model classes costs tens of MB, so a *subprocess* (``python -m nanokube.api.schema``) turns
them into plain JSON schemas once, cached per client version; the apiserver only loads JSON.

Used for: strict field validation (``unknown_fields``), the OpenAPI v3 documents kubectl
reads, and strategic-merge-patch merge keys (``merge_key_for``, upstream's struct tags).
"""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

META = "io.k8s.apimachinery.pkg.apis.meta.v1."
META_TYPES = {"ObjectMeta", "ListMeta", "LabelSelector", "LabelSelectorRequirement", "OwnerReference",
              "ManagedFieldsEntry", "Status", "StatusDetails", "StatusCause", "DeleteOptions", "Preconditions",
              "Condition", "APIResource", "APIResourceList", "APIGroup", "APIGroupList", "APIVersions",
              "GroupVersionForDiscovery", "ServerAddressByClientCIDR", "WatchEvent"}
# Top-level kinds we serve, per group, as upstream names them; nested types take the group
# of the first kind (in this order) that reaches them.
KINDS = [("core", "v1", k) for k in ("Namespace", "Node", "Pod", "Service", "Endpoints", "ConfigMap", "Secret",
                                      "Event", "ServiceAccount", "Binding", "ReplicationController")] + \
        [("apps", "v1", "Deployment"), ("apps", "v1", "ReplicaSet"), ("autoscaling", "v1", "Scale"),
         ("coordination", "v1", "Lease"), ("apps", "v1", "DaemonSet"), ("batch", "v1", "Job"),
         ("batch", "v1", "CronJob"), ("apps", "v1", "StatefulSet"), ("apps", "v1", "ControllerRevision"),
         ("core", "v1", "PersistentVolume"), ("core", "v1", "PersistentVolumeClaim"),
         ("storage", "v1", "StorageClass"), ("core", "v1", "LimitRange"), ("core", "v1", "ResourceQuota"),
         ("autoscaling", "v2", "HorizontalPodAutoscaler")] + \
        [("discovery", "v1", "EndpointSlice")] + \
        [("policy", "v1", "PodDisruptionBudget"), ("policy", "v1", "Eviction")] + \
        [("networking", "v1", "NetworkPolicy")] + \
        [("networking", "v1", "Ingress"), ("networking", "v1", "IngressClass")] + \
        [("scheduling", "v1", "PriorityClass")] + \
        [("certificates", "v1", "CertificateSigningRequest")] + \
        [("rbac", "v1", k) for k in ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")] + \
        [("authorization", "v1", k) for k in ("SelfSubjectAccessReview", "SelfSubjectRulesReview",
                                              "SubjectAccessReview", "LocalSubjectAccessReview")] + \
        [("authentication", "v1", k) for k in ("SelfSubjectReview", "TokenReview", "TokenRequest")]
# The short group names above, as the API names them.
FULL_GROUP = {"core": "", "coordination": "coordination.k8s.io", "storage": "storage.k8s.io", "rbac": "rbac.authorization.k8s.io",
              "authorization": "authorization.k8s.io", "authentication": "authentication.k8s.io",
              "networking": "networking.k8s.io", "discovery": "discovery.k8s.io",
              "scheduling": "scheduling.k8s.io", "certificates": "certificates.k8s.io"}
# Model classes of the `kubernetes` client whose names are not "V1" + kind.
CLASS_NAMES = {"Event": "CoreV1Event", "TokenRequest": "AuthenticationV1TokenRequest",
               "HorizontalPodAutoscaler": "V2HorizontalPodAutoscaler"}

# (field name, context) → (merge key, strategy); context is the top kind when it matters.
_MERGE: dict[str, tuple[str | None, str]] = {
    "containers": ("name", "merge"), "initContainers": ("name", "merge"), "ephemeralContainers": ("name", "merge"),
    "env": ("name", "merge"), "volumeMounts": ("mountPath", "merge"), "volumes": ("name", "merge"),
    "volumeDevices": ("devicePath", "merge"), "imagePullSecrets": ("name", "merge"),
    "conditions": ("type", "merge"), "ownerReferences": ("uid", "merge"), "finalizers": (None, "merge"),
    "addresses": ("type", "merge"), "hostAliases": ("ip", "merge"), "taints": ("key", "merge"),
    "topologySpreadConstraints": ("topologyKey", "merge"), "resourceClaims": ("name", "merge"),
}

_MERGE_BY_TYPE: dict[tuple[str, str], tuple[str | None, str]] = {
    ("V1Container", "ports"): ("containerPort", "merge"),
    ("V1EphemeralContainer", "ports"): ("containerPort", "merge"),
    ("V1ServiceSpec", "ports"): ("port", "merge"),
    ("V1EndpointSubset", "addresses"): (None, ""),
}


def merge_key_for(path: tuple[str, ...]) -> tuple[str | None, str | None]:
    """Merge key and strategy of the list at ``path`` (top kind first, then field names)."""
    field = path[-1]
    if field == "ports":
        if path[0] == "Service":
            return "port", "merge"
        if "containers" in path or "initContainers" in path:
            return "containerPort", "merge"
        return None, None
    if field == "addresses" and path[0] == "Endpoints":
        return None, None
    return _MERGE.get(field, (None, None))


# -- generation (runs in a subprocess) ---------------------------------------------------------
def _generate() -> dict[str, Any]:
    import kubernetes.client.models as models

    names: dict[str, str] = {}  # model class → definition name
    defs: dict[str, Any] = {}

    def defname(cls_name: str, group: str) -> str:
        short = re.sub(r"^[A-Z][a-z]*V\d(?=[A-Z])|^V\d(?=[A-Z])", "", cls_name)  # V1Pod, CoreV1Event, V2MetricSpec
        if short in META_TYPES:
            return META + short
        ver = m.group(1) if (m := re.match(r"^(?:[A-Z][a-z]*)?V(\d)(?=[A-Z])", cls_name)) else "1"
        return f"io.k8s.api.{group}.v{ver}.{short}"

    def typ(t: str, group: str) -> dict[str, Any]:
        if t.startswith("List["):
            return {"type": "array", "items": typ(t[5:-1], group)}
        if t.startswith("Dict[str, "):
            return {"type": "object", "additionalProperties": typ(t[10:-1], group)}
        if t == "str":
            return {"type": "string"}
        if t in ("bytes", "bytearray"):
            return {"type": "string", "format": "byte"}
        if t == "int":
            return {"type": "integer", "format": "int64"}
        if t == "float":
            return {"type": "number", "format": "double"}
        if t == "bool":
            return {"type": "boolean"}
        if t in ("datetime", "date"):
            return {"type": "string", "format": "date-time"}
        if t in ("object", "Any"):
            return {"x-kubernetes-int-or-string": True, "x-nanokube-free": True}
        return {"$ref": "#/components/schemas/" + visit(t, group)}

    def visit(cls_name: str, group: str) -> str:
        if cls_name in names:
            return names[cls_name]
        cls = getattr(models, cls_name)
        name = defname(cls_name, group)
        names[cls_name] = name
        props: dict[str, Any] = {}
        required = []
        fields = getattr(cls, "model_fields", {})
        for attr, t in cls.openapi_types.items():
            json_name = cls.attribute_map[attr]
            p = typ(t, group)
            f = fields.get(attr)
            if f is not None and f.description:
                p = {**p, "description": f.description}
            key, strategy = _MERGE_BY_TYPE.get((cls_name, json_name)) or _MERGE.get(json_name, (None, None))
            if p.get("type") == "array" and strategy:
                p["x-kubernetes-patch-strategy"] = strategy
                if key:
                    p["x-kubernetes-patch-merge-key"] = key
            props[json_name] = p
            if f is not None and f.is_required():
                required.append(json_name)
        doc = (cls.__doc__ or "").strip().split("\n\n")[0].strip()
        d: dict[str, Any] = {"type": "object", "properties": props}
        if required:
            d["required"] = required
        if doc and not doc.startswith("Attributes"):
            d["description"] = " ".join(doc.split())
        defs[name] = d
        return name

    for group, version, kind in KINDS:
        cls_name = CLASS_NAMES.get(kind, "V1" + kind)
        name = visit(cls_name, group)
        defs[name]["x-kubernetes-group-version-kind"] = [
            {"group": FULL_GROUP.get(group, group), "version": version, "kind": kind}]
        visit(cls_name + "List", group) if hasattr(models, cls_name + "List") else None
    for extra in ("V1Status", "V1DeleteOptions"):
        visit(extra, "core")
    return {"definitions": defs,
            "kinds": {f"{g}/{k}": names[CLASS_NAMES.get(k, "V1" + k)] for g, _, k in KINDS}}


def load_schemas(cache_dir: Path) -> dict[str, Any]:
    try:
        ver = metadata.version("kubernetes")
    except metadata.PackageNotFoundError:
        ver = "none"
    # Keyed by the client's version and by this file, so a change to the generator regenerates.
    mine = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
    cache = cache_dir / f"schemas-{ver}-{mine}.json"
    if cache.exists():
        try:
            return json.loads(cache.read_text())
        except ValueError:  # a cache torn by a crash is made again, never fatal
            pass
    cache_dir.mkdir(parents=True, exist_ok=True)
    out = subprocess.run([sys.executable, "-m", "nanokube.api.schema"], check=True, capture_output=True).stdout
    tmp = cache.with_suffix(".tmp")
    tmp.write_bytes(out)
    tmp.replace(cache)
    return json.loads(out)


def kind_schema(schemas: dict[str, Any], api_version: str, kind: str) -> str | None:
    group = api_version.split("/")[0].split(".")[0] if "/" in api_version else "core"
    return schemas["kinds"].get(f"{group}/{kind}")


def unknown_fields(schemas: dict[str, Any], api_version: str, kind: str, obj: Any) -> list[str]:
    """Paths of fields the type does not have, as the apiserver's strict decoding names them."""
    name = kind_schema(schemas, api_version, kind)
    if name is None:
        return []
    defs = schemas["definitions"]
    out: list[str] = []

    def walk(node: dict[str, Any], value: Any, path: str) -> None:
        if "$ref" in node:
            node = defs[node["$ref"].rsplit("/", 1)[1]]
        if node.get("x-nanokube-free"):
            return
        t = node.get("type")
        if t == "array" and isinstance(value, list):
            for i, v in enumerate(value):
                walk(node["items"], v, f"{path}[{i}]")
        elif t == "object" and isinstance(value, dict):
            if "properties" in node:
                for k, v in value.items():
                    if path == "" and k in ("apiVersion", "kind"):
                        continue
                    sub = node["properties"].get(k)
                    if sub is None:
                        out.append(f"{path}.{k}" if path else k)
                    else:
                        walk(sub, v, f"{path}.{k}" if path else k)
            elif "additionalProperties" in node:
                for k, v in value.items():
                    walk(node["additionalProperties"], v, f"{path}[{k}]")

    walk({"$ref": "#/components/schemas/" + name}, obj, "")
    return out


# Fields of type resource.Quantity: the client models type them as plain strings, but
# upstream's decoder also takes a number there (``cpu: 1``, ``storage: 1e9``).
QUANTITY_FIELDS = frozenset({"limits", "requests", "capacity", "allocatable", "hard", "used", "max", "min",
                             "default", "defaultRequest", "maxLimitRequestRatio", "sizeLimit", "overhead",
                             "podFixed", "averageValue", "divisor", "allocatedResources", "maximumVolumeSize"})
_JSON_TYPE = {dict: "object", list: "array", str: "string", bool: "bool", int: "number", float: "number"}


def drop_nulls(value: Any) -> Any:
    """A copy of a decoded body without ``null`` object members: upstream decodes ``null`` to
    the field's zero value, which for us is the field being absent (``"spec": null`` must not
    reach code that does ``obj.setdefault("spec", {})``)."""
    if isinstance(value, dict):
        return {k: drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_nulls(v) for v in value]
    return value


def type_errors(schemas: dict[str, Any], api_version: str, kind: str, obj: Any) -> list[str]:
    """Fields whose JSON type the type cannot hold, as upstream's decoder reports them
    (``cannot unmarshal string into Go struct field .spec.replicas of type int32``): the
    apiserver answers those 400 before any defaulting or validation code sees the object.
    ``null`` members are accepted (``drop_nulls`` removes them first), ``null`` array items are
    not; unknown fields are ``unknown_fields``' business, not this one's."""
    name = kind_schema(schemas, api_version, kind)
    if name is None:
        return []
    defs = schemas["definitions"]
    out: list[str] = []

    def bad(value: Any, path: str, want: str) -> None:
        got = _JSON_TYPE.get(type(value), type(value).__name__)
        out.append(f"cannot unmarshal {got} into Go struct field {path or '.'} of type {want}")

    def walk(node: dict[str, Any], value: Any, path: str, field: str, parent: str) -> None:
        if "$ref" in node:
            parent = node["$ref"].rsplit("/", 1)[1]
            node = defs[parent]
        if node.get("x-nanokube-free"):
            return
        if value is None:
            if path.endswith("]"):
                out.append(f"cannot unmarshal null into Go struct field {path} of type {node.get('type', 'object')}")
            return
        t = node.get("type")
        if t == "array":
            if not isinstance(value, list):
                return bad(value, path, "array")
            for i, v in enumerate(value):
                walk(node["items"], v, f"{path}[{i}]", field, parent)
        elif t == "object":
            if not isinstance(value, dict):
                return bad(value, path, "object")
            props, extra = node.get("properties"), node.get("additionalProperties")
            for k, v in value.items():
                sub = props.get(k) if props is not None else extra
                if sub is not None:
                    walk(sub, v, (f"{path}.{k}" if path else k) if props is not None else f"{path}[{k}]",
                         k if props is not None else field, parent)
        elif t == "string":
            quantity = field in QUANTITY_FIELDS or (field == "value" and parent.endswith("MetricTarget"))
            if not (isinstance(value, str) or quantity and isinstance(value, (int, float))
                    and not isinstance(value, bool)):
                bad(value, path, "string")
        elif t == "integer":
            if isinstance(value, bool) or not (isinstance(value, int) or isinstance(value, float)
                                               and value.is_integer()):
                bad(value, path, "integer")
        elif t == "number":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                bad(value, path, "number")
        elif t == "boolean" and not isinstance(value, bool):
            bad(value, path, "bool")

    if not isinstance(obj, dict):
        return [f"cannot unmarshal {_JSON_TYPE.get(type(obj), type(obj).__name__)} into Go value of type {kind}"]
    walk({"$ref": "#/components/schemas/" + name}, obj, "", "", name)
    return out


if __name__ == "__main__":
    json.dump(_generate(), sys.stdout, separators=(",", ":"))
