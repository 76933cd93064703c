"""The registry: what every API verb means, independent of HTTP.

Both the aiohttp handlers and the in-process ``LocalClient`` call this, so kubectl and the
controllers see one set of semantics: defaulting, validation, optimistic concurrency on
resourceVersion, graceful pod deletion, finalizers, status/scale/binding subresources,
ClusterIP and NodePort allocation, and watches with label/field selectors.
"""
from __future__ import annotations

import asyncio
import base64
import copy
import datetime as dt
import ipaddress
import json
import logging
import random
import secrets
import uuid
from typing import Any, AsyncIterator, Callable

from nanokube.api import defaults, validation
from nanokube.api import managedfields as mf
from nanokube.api import patch as patches
from nanokube.api.errors import ApiError, Conflict, Invalid, NotFound, bad_request
from nanokube.api.resources import RESOURCES, Resource, resource as lookup
from nanokube.api.selectors import matches, parse_label_selector
from nanokube.store import Compacted, KeyExists, KeyNotFound, RevisionMismatch, Store
from . import admission, quota

log = logging.getLogger("nanokube.registry")
Obj = dict[str, Any]

# Resources whose status is only written through the /status subresource (and reset on create).
STATUS_SUBRESOURCE = {"pods", "services", "deployments", "replicasets", "namespaces", "nodes", "daemonsets", "jobs",
                      "cronjobs", "statefulsets", "persistentvolumes", "persistentvolumeclaims", "resourcequotas",
                      "horizontalpodautoscalers"}
RESET_STATUS_ON_CREATE = {"pods", "services", "deployments", "replicasets", "daemonsets", "jobs", "cronjobs",
                          "statefulsets", "persistentvolumes", "persistentvolumeclaims", "resourcequotas",
                          "horizontalpodautoscalers"}
HAS_GENERATION = {"deployments", "replicasets", "pods", "services", "daemonsets", "jobs", "cronjobs", "statefulsets",
                  "horizontalpodautoscalers"}
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
PVC_PROTECTION = "kubernetes.io/pvc-protection"
NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"
# The field manager of writes that name none (the in-process controllers and scheduler); HTTP
# requests default to their User-Agent's program name, as upstream.
DEFAULT_MANAGER = "nanokube"
_APPLIED = "\0applied"  # internal: managedFields were computed by an apply, keep them
for _set in (STATUS_SUBRESOURCE, RESET_STATUS_ON_CREATE, HAS_GENERATION):
    _set.update(("poddisruptionbudgets", "replicationcontrollers"))
CSR = "certificatesigningrequests"
STATUS_SUBRESOURCE.add(CSR)
RESET_STATUS_ON_CREATE.add(CSR)


def _keep_conditions(new: Obj, old: Obj, keep: Callable[[str], bool]) -> None:
    """``new``'s status conditions, with those of the types ``keep`` selects taken from ``old``."""
    conds = [c for c in (new.get("status") or {}).get("conditions") or [] if not keep(c.get("type"))]
    conds += [c for c in (old.get("status") or {}).get("conditions") or [] if keep(c.get("type"))]
    if conds or (new.get("status") or {}).get("conditions") is not None:
        new.setdefault("status", {})["conditions"] = conds


def now_rfc3339(clock: Callable[[], dt.datetime] | None = None) -> str:
    t = clock() if clock else dt.datetime.now(dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _set_rv(value: Obj, rev: int) -> None:
    value.setdefault("metadata", {})["resourceVersion"] = str(rev)


def _dig(obj: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def parse_field_selector(sel: str | None) -> list[tuple[str, str, str]]:
    """``a=b,c!=d`` → [(field, op, value)]; op is "=" or "!="."""
    out = []
    for term in (sel or "").split(","):
        term = term.strip()
        if not term:
            continue
        if "!=" in term:
            f, v = term.split("!=", 1)
            out.append((f.strip(), "!=", v.strip()))
        elif "==" in term:
            f, v = term.split("==", 1)
            out.append((f.strip(), "=", v.strip()))
        elif "=" in term:
            f, v = term.split("=", 1)
            out.append((f.strip(), "=", v.strip()))
        else:
            raise bad_request(f'invalid selector: \'{sel}\'; can\'t understand \'{term}\'')
    return out


# The field labels each resource can be selected by, beyond metadata.name (and metadata.namespace
# for namespaced ones): upstream's per-type GetAttrs / field label conversion funcs. A label maps
# to (path in the object, the value an unset field selects as).
_EVENT_FIELDS = {f"involvedObject.{f}": (f"involvedObject.{f}", "") for f in
                 ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")}
_EVENT_FIELDS.update({"reason": ("reason", ""), "reportingComponent": ("reportingComponent", ""),
                      "source": ("source.component", ""), "type": ("type", "")})
FIELD_LABELS: dict[str, dict[str, tuple[str, str]]] = {
    "pods": {"spec.nodeName": ("spec.nodeName", ""), "spec.restartPolicy": ("spec.restartPolicy", ""),
             "spec.schedulerName": ("spec.schedulerName", ""),
             "spec.serviceAccountName": ("spec.serviceAccountName", ""),
             "spec.hostNetwork": ("spec.hostNetwork", "false"), "status.phase": ("status.phase", ""),
             "status.podIP": ("status.podIP", ""), "status.podIPs": ("status.podIPs", ""),
             "status.nominatedNodeName": ("status.nominatedNodeName", "")},
    "events": _EVENT_FIELDS,
    "secrets": {"type": ("type", "")},
    "nodes": {"spec.unschedulable": ("spec.unschedulable", "false")},
    "namespaces": {"status.phase": ("status.phase", "")},
    "replicasets": {"status.replicas": ("status.replicas", "0")},
    "replicationcontrollers": {"status.replicas": ("status.replicas", "0")},
    "jobs": {"status.successful": ("status.successful", "0")},
    "services": {"spec.clusterIP": ("spec.clusterIP", ""), "spec.type": ("spec.type", "")},
    "certificatesigningrequests": {"spec.signerName": ("spec.signerName", "")},
}


def field_labels(r: Resource) -> dict[str, tuple[str, str]]:
    labels = {"metadata.name": ("metadata.name", "")}
    if r.namespaced:
        labels["metadata.namespace"] = ("metadata.namespace", "")
    labels.update(FIELD_LABELS.get(r.plural, {}))
    return labels


def _field_value(obj: Obj, path: str, default: str) -> str:
    actual = _dig(obj, path)
    if path == "status.podIPs":  # the primary address, as upstream selects it
        actual = (actual or [{}])[0].get("ip") if isinstance(actual, list) else None
    if actual is None:
        return default
    return str(actual).lower() if isinstance(actual, bool) else str(actual)


def field_matches(obj: Obj, terms: list[tuple[str, str, str]]) -> bool:
    for path, op, v, default in terms:
        if (_field_value(obj, path, default) == v) != (op == "="):
            return False
    return True


class Filter:
    """A compiled label + field selector for one resource; a field the resource cannot be
    selected by is a 400, as upstream ("field label not supported")."""

    def __init__(self, label_selector: str | None, field_selector: str | None, r: Resource):
        try:
            self.labels = parse_label_selector(label_selector) if label_selector else None
        except ValueError as e:
            raise bad_request(f"unable to parse requirement: {e}") from None
        known = field_labels(r)
        self.fields = []
        for f, op, v in parse_field_selector(field_selector):
            if f not in known:
                raise bad_request(f"field label not supported: {f}")
            self.fields.append((known[f][0], op, v, known[f][1]))

    def __call__(self, obj: Obj | None) -> bool:
        if obj is None:
            return False
        if self.labels is not None and not matches((obj.get("metadata") or {}).get("labels") or {}, self.labels):
            return False
        return field_matches(obj, self.fields)


class Registry:
    default_toleration_seconds = 300  # DefaultTolerationSeconds admission; the server may change it
    def __init__(self, store: Store, *, schemas: Any = None, service_cidr: str = "10.96.0.0/12",
                 node_port_range: tuple[int, int] = (30000, 32767), clock: Callable[[], dt.datetime] | None = None,
                 rng: random.Random | None = None):
        self.store = store
        self.schemas = schemas
        self.service_net = ipaddress.ip_network(service_cidr)
        self.node_ports = node_port_range
        self.clock = clock
        self.rng = rng or random.Random()
        self._lock = asyncio.Lock()
        self._bg: set[asyncio.Task] = set()

    # -- keys ------------------------------------------------------------------------------
    @staticmethod
    def key(r: Resource, namespace: str | None, name: str) -> str:
        return f"/registry/{r.plural}/{namespace}/{name}" if r.namespaced else f"/registry/{r.plural}/{name}"

    @staticmethod
    def prefix(r: Resource, namespace: str | None) -> str:
        return f"/registry/{r.plural}/{namespace}/" if (r.namespaced and namespace) else f"/registry/{r.plural}/"

    def _now(self) -> str:
        return now_rfc3339(self.clock)

    @staticmethod
    def _res(plural: str) -> Resource:
        try:
            return lookup(plural)
        except KeyError:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({plural})") from None

    def _ns(self, r: Resource, namespace: str | None) -> str | None:
        if not r.namespaced:
            return None
        if not namespace:
            raise bad_request("a namespace is required for namespaced resources")
        return namespace

    def _notfound(self, r: Resource, name: str) -> NotFound:
        return NotFound(r.plural, name, group=r.group)

    # -- reads -----------------------------------------------------------------------------
    def get(self, plural: str, name: str, *, namespace: str | None = None) -> Obj:
        r = self._res(plural)
        got = self.store.get(self.key(r, self._ns(r, namespace), name))
        if got is None:
            raise self._notfound(r, name)
        return copy.deepcopy(got[0])

    def list(self, plural: str, *, namespace: str | None = None, label_selector: str | None = None,
             field_selector: str | None = None, copy_items: bool = True, limit: int | None = None,
             continue_token: str | None = None, as_json: bool = False) -> Obj:
        """The matching objects. ``copy_items=False`` hands out the stored objects themselves,
        for callers that only serialize them: they must not change them. ``as_json=True`` gives
        each item as its stored compact JSON text instead (the HTTP handler's LIST).

        ``limit``/``continue_token`` page through the list in key order, as kubectl's chunked
        LISTs do. A continuation lists what exists *now* after the last key served (upstream
        serves the snapshot of the first page's revision while it is not compacted; we keep no
        snapshots, so pages may reflect changes made in between)."""
        r = self._res(plural)
        flt = Filter(label_selector, field_selector, r)
        items, rev = self.store.list(self.prefix(r, namespace), as_json=as_json)
        if continue_token:
            try:
                start = json.loads(base64.urlsafe_b64decode(continue_token.encode()))["start"]
            except (ValueError, KeyError, TypeError):
                raise bad_request("continue key is not valid: incorrect encoded start resourceVersion "
                                  "(version meta.k8s.io/v1)") from None
            items = [it for it in items if it[0] > start]
        matched = [(k, third if as_json else v) for k, v, third in items if flt(v)]
        md: Obj = {"resourceVersion": str(rev)}
        if limit and limit > 0 and len(matched) > limit:
            md["continue"] = base64.urlsafe_b64encode(json.dumps({"rv": rev, "start": matched[limit - 1][0]}).encode()).decode()
            md["remainingItemCount"] = len(matched) - limit
            matched = matched[:limit]
        return {
            "kind": r.list_kind, "apiVersion": r.api_version, "metadata": md,
            "items": [(copy.deepcopy(v) if copy_items else v) for _, v in matched],
        }

    # -- create ----------------------------------------------------------------------------
    def _check_kind(self, r: Resource, obj: Obj) -> None:
        if not isinstance(obj, dict):
            raise bad_request("the body of the request was not a JSON object")
        kind, av = obj.get("kind"), obj.get("apiVersion")
        if kind and kind != r.kind or av and av != r.api_version:
            raise bad_request(f"the API version in the data ({av}) does not match the expected API version "
                              f"({r.api_version})" if av != r.api_version else
                              f"{kind} in version \"{r.version}\" cannot be handled as a {r.kind}: "
                              f"expected kind {r.kind}")
        obj["kind"], obj["apiVersion"] = r.kind, r.api_version

    def check_unknown_fields(self, r: Resource, obj: Obj, directive: str) -> list[str]:
        """Strict field validation: returns warnings for "Warn", raises 400 for "Strict"."""
        if self.schemas is None or directive == "Ignore":
            return []
        from nanokube.api.schema import unknown_fields
        unknown = unknown_fields(self.schemas, r.api_version, r.kind, obj)
        if not unknown:
            return []
        msgs = [f'unknown field "{f}"' for f in unknown]
        if directive == "Strict":
            raise bad_request(f"{r.kind} in version \"{r.version}\" cannot be handled as a {r.kind}: "
                              f"strict decoding error: {', '.join(msgs)}")
        return msgs

    def decoded(self, r: Resource, obj: Any) -> Obj:
        """A copy of a request body as upstream's decoder would see it: ``null`` members gone,
        400 for a field of the wrong JSON type, before any defaulting or validation code reads it."""
        from nanokube.api.schema import drop_nulls, type_errors
        obj = drop_nulls(obj)
        if self.schemas is None:
            return obj
        errs = type_errors(self.schemas, r.api_version, r.kind, obj)
        if errs:
            raise bad_request(f'{r.kind} in version "{r.version}" cannot be handled as a {r.kind}: json: '
                              + "; ".join(errs[:5]))
        return obj

    def _validate(self, r: Resource, obj: Obj, *, create: bool = False) -> None:
        causes = validation.validate(r.plural, obj)
        if create and r.plural == "pods":
            causes += validation.pod_create(obj)
        if causes:
            raise Invalid(r.kind, (obj.get("metadata") or {}).get("name") or "", causes, group=r.group)

    async def create(self, plural: str, obj: Obj, *, namespace: str | None = None, dry_run: bool = False,
                     field_validation: str = "Ignore", field_manager: str | None = None) -> Obj:
        r = self._res(plural)
        self._check_kind(r, obj)
        obj = self.decoded(r, obj)
        md = obj.setdefault("metadata", {})
        if not isinstance(md, dict):
            raise bad_request("metadata must be an object")
        ns = self._ns(r, namespace or md.get("namespace"))
        if r.namespaced:
            if md.get("namespace") and md["namespace"] != ns:
                raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
            md["namespace"] = ns
        else:
            md.pop("namespace", None)
        self.check_unknown_fields(r, obj, field_validation)
        if not md.get("name") and md.get("generateName"):
            md["name"] = md["generateName"] + "".join(self.rng.choice(NAME_CHARS) for _ in range(5))
        if plural in RESET_STATUS_ON_CREATE:
            obj.pop("status", None)
        # The uid first: defaulting derives from it (a Job's generated selector).
        md["uid"] = str(uuid.uuid4())
        defaults.apply_defaults(plural, obj)
        if plural == "pods":
            await admission.service_account(self.store, obj, rng=self.rng)
            admission.priority(self.store, obj)
            admission.default_tolerations(obj, self.default_toleration_seconds)
            quota.admit_limit_ranges(self.store, obj)
        if plural == "persistentvolumeclaims":
            self._admit_claim(obj)
        if plural == "ingresses":
            self._admit_ingress(obj)
        self._validate(r, obj, create=True)
        if plural == CSR:
            self._check_csr(r, obj)
        async with self._lock:
            if r.namespaced:
                nsobj = self.store.get(f"/registry/namespaces/{ns}")
                if nsobj is None:
                    raise NotFound("namespaces", ns)
                if nsobj[0].get("metadata", {}).get("deletionTimestamp"):
                    raise ApiError(403, "Forbidden", f'{r.plural} "{md["name"]}" is forbidden: unable to create new '
                                   f"content in namespace {ns} because it is being terminated")
            if self.store.get(self.key(r, ns, md["name"])) is not None:
                raise Conflict(r.plural, md["name"], group=r.group, already_exists=True)
            if plural == "services":
                self._allocate_service(obj, None)
            if plural == "priorityclasses":
                admission.priority_class(self.store, obj, update=False)  # under the lock: one default
            md["creationTimestamp"] = self._now()
            md.pop("resourceVersion", None)
            md.pop("deletionTimestamp", None)
            if plural in HAS_GENERATION:
                md["generation"] = 1
            if r.namespaced:
                # Under the lock, from the store: concurrent creates cannot both fit.
                quota.check(self.store, plural, obj)
            if field_manager != _APPLIED:
                mf.record_update(None, obj, manager=field_manager or DEFAULT_MANAGER, api_version=r.api_version,
                                 kind=r.kind, now=md["creationTimestamp"], ignore=self._ignored(r, None))
            if dry_run:
                return obj
            try:
                self.store.create(self.key(r, ns, md["name"]), obj, set_rv=_set_rv)
            except KeyExists:
                raise Conflict(r.plural, md["name"], group=r.group, already_exists=True) from None
            if r.namespaced:
                quota.refresh_status(self.store, ns, plural, set_rv=_set_rv)
        return copy.deepcopy(obj)

    # -- update ----------------------------------------------------------------------------
    async def update(self, plural: str, obj: Obj, *, namespace: str | None = None, name: str | None = None,
                     subresource: str | None = None, dry_run: bool = False, field_validation: str = "Ignore",
                     field_manager: str | None = None) -> Obj:
        r = self._res(plural)
        if not isinstance(obj, dict) or not isinstance(obj.get("metadata") or {}, dict):
            raise bad_request("the body of the request must be a JSON object whose metadata is an object")
        obj = copy.deepcopy(obj)
        md = obj["metadata"] = obj.get("metadata") or {}  # null or empty: nothing to keep
        name = name or md.get("name")
        if not name:
            raise bad_request("name is required")
        if md.get("name") and md["name"] != name:
            raise bad_request(f"the name of the object ({md['name']}) does not match the name on the URL ({name})")
        ns = self._ns(r, namespace or md.get("namespace"))
        if subresource == "scale":
            return await self._update_scale(r, ns, name, obj, dry_run=dry_run, field_manager=field_manager)
        self._check_kind(r, obj)
        self.check_unknown_fields(r, obj, field_validation)
        async with self._lock:
            return self._update_locked(r, ns, name, obj, subresource=subresource, dry_run=dry_run,
                                       manager=field_manager)

    def _update_locked(self, r: Resource, ns: str | None, name: str, obj: Obj, *, subresource: str | None,
                       dry_run: bool, manager: str | None = None, manager_subresource: str | None = None) -> Obj:
        obj = self.decoded(r, obj)
        key = self.key(r, ns, name)
        got = self.store.get(key)
        if got is None:
            raise self._notfound(r, name)
        old, rev = got
        md = obj.setdefault("metadata", {})
        want_rv = md.get("resourceVersion")
        if want_rv and str(want_rv) != str(rev):
            raise Conflict(r.plural, name, group=r.group)
        if subresource == "status":
            new = copy.deepcopy(old)
            new["status"] = obj.get("status") or {}
            if r.plural == CSR:  # the decision is the approval subresource's alone
                _keep_conditions(new, old, lambda t: t in validation.CSR_DECISIONS)
        elif subresource == "approval" and r.plural == CSR:
            new = copy.deepcopy(old)
            new.setdefault("status", {})["conditions"] = (obj.get("status") or {}).get("conditions") or []
            _keep_conditions(new, old, lambda t: t not in validation.CSR_DECISIONS)
        elif subresource == "ephemeralcontainers" and r.plural == "pods":
            new = copy.deepcopy(old)  # only the list of ephemeral containers changes here
            new["spec"]["ephemeralContainers"] = (obj.get("spec") or {}).get("ephemeralContainers") or []
            defaults.pod_spec(new["spec"])
            causes = validation.ephemeral_update(old, new)
            if causes:
                raise Invalid(r.kind, name, causes, group=r.group)
            self._validate(r, new)
        elif subresource not in (None, ""):
            raise ApiError(405, "MethodNotAllowed", f"the server does not allow this method on the requested resource")
        else:
            new = obj
            # Immutable and system-owned metadata is kept from the stored object.
            for f in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"):
                if f in old["metadata"]:
                    new["metadata"][f] = old["metadata"][f]
                else:
                    new["metadata"].pop(f, None)
            if r.namespaced:
                new["metadata"]["namespace"] = ns
            if r.plural in STATUS_SUBRESOURCE:
                if "status" in old:
                    new["status"] = old["status"]
                else:
                    new.pop("status", None)
            defaults.apply_defaults(r.plural, new)
            if r.plural == "pods":
                admission.keep_priority(old, new)
            if r.plural in HAS_GENERATION and new.get("spec") != old.get("spec"):
                new["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
            self._check_immutable(r, old, new)
            self._validate(r, new)
            if r.plural == "services":
                self._allocate_service(new, old)
            if r.plural == "priorityclasses":
                admission.priority_class(self.store, new, update=True)
            if r.plural == CSR:  # the request never changes after creation
                new["spec"] = old.get("spec")
        if r.plural == CSR and subresource:
            causes = validation.csr_status_update(old, new)
            if causes:
                raise Invalid(r.kind, name, causes, group=r.group)
        if manager == _APPLIED:
            if subresource == "status":
                new["metadata"]["managedFields"] = obj["metadata"].get("managedFields")
        else:
            mf.record_update(old, new, manager=manager or DEFAULT_MANAGER, api_version=r.api_version, kind=r.kind,
                             now=self._now(), subresource=manager_subresource or subresource or "",
                             ignore=self._ignored(r, subresource))
        if new == old:
            return copy.deepcopy(old)
        # The last finalizer removed from an object being deleted: it goes away now.
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            if dry_run:
                return new
            try:
                self.store.delete(key, expected_revision=rev)
            except (KeyNotFound, RevisionMismatch):
                raise Conflict(r.plural, name, group=r.group) from None
            return new
        if dry_run:
            return new
        try:
            self.store.update(key, new, expected_revision=rev, set_rv=_set_rv)
        except RevisionMismatch:
            raise Conflict(r.plural, name, group=r.group) from None
        return copy.deepcopy(new)

    @staticmethod
    def _check_csr(r: Resource, obj: Obj) -> None:
        """The request must parse as a CSR whose self-signature verifies (x509.ParseCertificateRequest)."""
        from .certs import csr_subject
        try:
            pem = base64.b64decode(obj["spec"]["request"]).decode()
        except (ValueError, UnicodeDecodeError):
            pem = ""
        if csr_subject(pem) is None:
            raise Invalid(r.kind, obj["metadata"].get("name") or "", [{
                "reason": "FieldValueInvalid", "field": "spec.request",
                "message": "Invalid value: []byte{...}: the certificate request does not parse or its signature "
                           "does not verify"}], group=r.group)

    def _check_immutable(self, r: Resource, old: Obj, new: Obj) -> None:
        causes: list[dict[str, str]] = []
        if r.plural in ("deployments", "replicasets", "daemonsets", "jobs", "statefulsets"):
            if (old.get("spec") or {}).get("selector") != (new.get("spec") or {}).get("selector"):
                causes.append({"reason": "FieldValueInvalid", "field": "spec.selector",
                               "message": f"Invalid value: {json.dumps(new['spec'].get('selector'))}: field is immutable"})
        if r.plural == "pods":
            # Only the image of containers and a few fields may change on a pod.
            o, n = copy.deepcopy(old.get("spec") or {}), copy.deepcopy(new.get("spec") or {})
            for s in (o, n):
                for c in (s.get("containers") or []) + (s.get("initContainers") or []):
                    c.pop("image", None)
                for f in ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds"):
                    s.pop(f, None)
            if o.get("nodeName") and o != n or (not o.get("nodeName") and {**o, "nodeName": None} != {**n, "nodeName": None}):
                causes.append({"reason": "FieldValueForbidden", "field": "spec",
                               "message": "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
                                          "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
                                          "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
                                          "(allow it to be set to 1 if it was previously negative)"})
        if r.plural == "persistentvolumeclaims":
            causes += validation.claim_update(old, new)
        if r.plural == "statefulsets" and not causes:
            causes += validation.statefulset_update(old, new)
        if r.plural == "priorityclasses":
            causes += validation.priorityclass_update(old, new)
        if causes:
            raise Invalid(r.kind, new["metadata"]["name"], causes, group=r.group)

    def _admit_claim(self, pvc: Obj) -> None:
        """DefaultStorageClass and StorageObjectInUseProtection admission: a claim without
        ``storageClassName`` gets the default class (if one is marked), and every claim gets
        the pvc-protection finalizer, so it outlives the pods that use it."""
        spec = pvc.setdefault("spec", {})
        if spec.get("storageClassName") is None:
            items, _ = self.store.list("/registry/storageclasses/")
            default = sorted((v["metadata"].get("creationTimestamp", ""), v["metadata"]["name"]) for _, v, _ in items
                             if (v["metadata"].get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION) == "true")
            if default:
                spec["storageClassName"] = default[-1][1]
        fins = pvc["metadata"].setdefault("finalizers", [])
        if PVC_PROTECTION not in fins:
            fins.append(PVC_PROTECTION)

    def _admit_ingress(self, ing: Obj) -> None:
        """DefaultIngressClass admission: an Ingress with neither ``ingressClassName`` nor the
        legacy class annotation gets the default IngressClass (the newest, if several)."""
        spec = ing.setdefault("spec", {})
        if spec.get("ingressClassName") is None and \
                "kubernetes.io/ingress.class" not in (ing["metadata"].get("annotations") or {}):
            items, _ = self.store.list("/registry/ingressclasses/")
            default = sorted((v["metadata"].get("creationTimestamp", ""), v["metadata"]["name"]) for _, v, _ in items
                             if (v["metadata"].get("annotations") or {}).get(
                                 "ingressclass.kubernetes.io/is-default-class") == "true")
            if default:
                spec["ingressClassName"] = default[-1][1]

    # -- patch -----------------------------------------------------------------------------
    async def patch(self, plural: str, name: str, body: Any, *, namespace: str | None = None,
                    patch_type: str = "merge", subresource: str | None = None, dry_run: bool = False,
                    field_validation: str = "Ignore", field_manager: str | None = None) -> Obj:
        r = self._res(plural)
        ns = self._ns(r, namespace)
        for _ in range(5):
            if subresource == "scale":
                current = self.get_scale(plural, name, namespace=ns)
            else:
                current = self.get(plural, name, namespace=ns)
            rv = current["metadata"].get("resourceVersion")
            patched = self._apply_patch(r, current, body, patch_type)
            if not isinstance(patched, dict):
                raise bad_request("the patch produced something that is not an object")
            if subresource == "scale":
                return await self._update_scale(r, ns, name, patched, dry_run=dry_run, field_manager=field_manager)
            # A patch that carries its own resourceVersion is a precondition; otherwise we
            # apply to the latest and retry on a concurrent write.
            explicit_rv = isinstance(body, dict) and (body.get("metadata") or {}).get("resourceVersion")
            if not explicit_rv:
                patched.setdefault("metadata", {})["resourceVersion"] = rv
            if field_validation != "Ignore" and patch_type != "json":
                self.check_unknown_fields(r, patched, field_validation)
            try:
                async with self._lock:
                    return self._update_locked(r, ns, name, patched, subresource=subresource, dry_run=dry_run,
                                               manager=field_manager)
            except Conflict:
                if explicit_rv:
                    raise
        raise Conflict(r.plural, name, group=r.group)

    def _apply_patch(self, r: Resource, current: Obj, body: Any, patch_type: str) -> Any:
        try:
            if patch_type == "json":
                if not isinstance(body, list):
                    raise bad_request("json patch must be a list of operations")
                return patches.json_patch(current, body)
            if not isinstance(body, dict):
                raise bad_request("patch body must be a JSON object")
            if patch_type == "merge":
                return patches.json_merge_patch(current, body)
            if patch_type == "strategic":
                return patches.strategic_merge_patch(current, body, self.schemas, current.get("apiVersion", r.api_version),
                                                     current.get("kind", r.kind))
        except ApiError:
            raise
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise ApiError(422, "Invalid", f"the server rejected our request due to an error in our request: {e}") from None
        raise ApiError(415, "UnsupportedMediaType", f"the patch type {patch_type!r} is not supported")

    # -- server-side apply -----------------------------------------------------------------
    @staticmethod
    def _ignored(r: Resource, subresource: str | None) -> tuple[str, ...]:
        """Top-level fields a write cannot own (upstream's reset fields): a main-resource write
        never sets the status of a resource that has a status subresource."""
        return ("status",) if r.plural in STATUS_SUBRESOURCE and not subresource else ()

    async def apply(self, plural: str, name: str, body: Any, *, namespace: str | None = None, field_manager: str,
                    force: bool = False, subresource: str | None = None, dry_run: bool = False,
                    field_validation: str = "Ignore", created: list[bool] | None = None) -> Obj:
        """PATCH with application/apply-patch+yaml: merge the partial object ``body`` into the
        live one (or create it), with field ownership and conflicts (see managedfields).
        ``created`` (if given) gets True appended when the apply created the object."""
        r = self._res(plural)
        ns = self._ns(r, namespace)
        if subresource not in (None, "", "status") or (subresource == "status" and r.plural not in STATUS_SUBRESOURCE):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if not isinstance(body, dict):
            raise bad_request("the body of the request was not a JSON object")
        cfg = copy.deepcopy(body)
        self._check_kind(r, cfg)
        md = cfg.setdefault("metadata", {})
        if not isinstance(md, dict):
            raise bad_request("metadata must be an object")
        if md.get("managedFields") is not None:
            raise bad_request("metadata.managedFields must be nil")
        if md.get("name") and md["name"] != name:
            raise bad_request(f"the name of the object ({md['name']}) does not match the name on the URL ({name})")
        if r.namespaced and md.get("namespace") and md["namespace"] != ns:
            raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
        md["name"] = name
        self.check_unknown_fields(r, cfg, field_validation)
        want_rv = md.pop("resourceVersion", None)
        if subresource == "status":
            cfg = {"apiVersion": cfg["apiVersion"], "kind": cfg["kind"], "metadata": {"name": name},
                   "status": cfg.get("status") or {}}
        ignore = self._ignored(r, subresource)
        key = self.key(r, ns, name)
        for _ in range(5):
            got = self.store.get(key)
            live = copy.deepcopy(got[0]) if got else None
            if live is None and subresource:
                raise self._notfound(r, name)
            if want_rv and str(want_rv) != ((live or {}).get("metadata") or {}).get("resourceVersion"):
                raise Conflict(r.plural, name, group=r.group)
            new = self._merge_applied(r, live, cfg, manager=field_manager, force=force,
                                      subresource=subresource or "", ignore=ignore)
            if field_manager == mf.CSA_SSA_MANAGER:
                mf.set_last_applied(new, body)
            if live is None:
                try:
                    obj = await self.create(plural, new, namespace=ns, dry_run=dry_run, field_manager=_APPLIED)
                    if created is not None:
                        created.append(True)
                    return obj
                except Conflict as e:
                    if e.reason != "AlreadyExists":
                        raise
                    continue  # created meanwhile: apply to it
            new["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
            try:
                async with self._lock:
                    return self._update_locked(r, ns, name, new, subresource=subresource, dry_run=dry_run,
                                               manager=_APPLIED)
            except Conflict:
                if want_rv:
                    raise
        raise Conflict(r.plural, name, group=r.group)

    def _merge_applied(self, r: Resource, live: Obj | None, config: Obj, *, manager: str, force: bool,
                       subresource: str, ignore: tuple[str, ...]) -> Obj:
        def run(force: bool) -> Obj:
            return mf.apply(live, config, manager=manager, api_version=r.api_version, kind=r.kind, now=self._now(),
                            force=force, subresource=subresource, ignore=ignore).obj
        try:
            try:
                return run(force)
            except mf.ApplyConflict as e:
                conflicts = e.conflicts
                if manager == mf.CSA_SSA_MANAGER and live is not None:
                    # kubectl's move from client-side apply: fields still as last applied are its own.
                    allowed = mf.last_applied_allowed(live, kind=r.kind)
                    conflicts = [(m, p) for m, p in conflicts if p not in allowed]
                    if not conflicts:
                        return run(True)
                raise ApiError(409, "Conflict", mf.conflict_message(conflicts),
                               details={"causes": mf.conflict_causes(conflicts)}) from None
        except mf.ApplyError as e:
            raise bad_request(f"failed to create typed patch object ({r.api_version}, Kind={r.kind}): {e}") from None

    # -- scale -----------------------------------------------------------------------------
    def get_scale(self, plural: str, name: str, *, namespace: str | None = None) -> Obj:
        obj = self.get(plural, name, namespace=namespace)
        md = obj["metadata"]
        sel = (obj.get("spec") or {}).get("selector") or {}
        sel = sel if plural == "replicationcontrollers" else (sel.get("matchLabels") or {})  # a plain map on RCs
        return {
            "kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {"name": md["name"], "namespace": md.get("namespace"), "uid": md.get("uid"),
                         "resourceVersion": md.get("resourceVersion"), "creationTimestamp": md.get("creationTimestamp")},
            "spec": {"replicas": obj["spec"].get("replicas", 0)},
            "status": {"replicas": (obj.get("status") or {}).get("replicas", 0),
                       "selector": ",".join(f"{k}={v}" for k, v in sel.items())},
        }

    async def _update_scale(self, r: Resource, ns: str | None, name: str, scale: Obj, *, dry_run: bool,
                            field_manager: str | None = None) -> Obj:
        if r.plural not in ("deployments", "replicasets", "statefulsets", "replicationcontrollers"):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        replicas = (scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise Invalid("Scale", name, [{"reason": "FieldValueInvalid", "field": "spec.replicas",
                                           "message": f"Invalid value: {replicas}: must be greater than or equal to 0"}],
                          group="autoscaling")
        async with self._lock:
            obj = self.get(r.plural, name, namespace=ns)
            want_rv = (scale.get("metadata") or {}).get("resourceVersion")
            if want_rv and want_rv != obj["metadata"]["resourceVersion"]:
                raise Conflict(r.plural, name, group=r.group)
            obj["spec"]["replicas"] = replicas
            self._update_locked(r, ns, name, obj, subresource=None, dry_run=dry_run, manager=field_manager,
                                manager_subresource="scale")
        return self.get_scale(r.plural, name, namespace=ns)

    # -- binding ---------------------------------------------------------------------------
    async def bind(self, name: str, binding: Obj, *, namespace: str) -> Obj:
        target = (binding.get("target") or {}).get("name")
        if not target:
            raise Invalid("Binding", name, [{"reason": "FieldValueRequired", "field": "target.name",
                                             "message": "Required value"}])
        async with self._lock:
            pod = self.get("pods", name, namespace=namespace)
            if pod["metadata"].get("deletionTimestamp"):
                raise Conflict("pods", name, message=f"pod {name} is being deleted, cannot be assigned to a host")
            if pod["spec"].get("nodeName"):
                raise Conflict("pods", name, message=f"pod {name} is already assigned to node \"{pod['spec']['nodeName']}\"")
            pod["spec"]["nodeName"] = target
            conds = [c for c in pod.setdefault("status", {}).get("conditions", []) if c.get("type") != "PodScheduled"]
            conds.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                          "lastTransitionTime": self._now()})
            pod["status"]["conditions"] = conds
            key = self.key(lookup("pods"), namespace, name)
            self.store.update(key, pod, expected_revision=int(pod["metadata"]["resourceVersion"]), set_rv=_set_rv)
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}

    # -- delete ----------------------------------------------------------------------------
    async def delete(self, plural: str, name: str, *, namespace: str | None = None,
                     grace_period_seconds: int | None = None, propagation_policy: str | None = None,
                     preconditions: Obj | None = None, dry_run: bool = False) -> Obj:
        r = self._res(plural)
        ns = self._ns(r, namespace)
        if plural == "priorityclasses":
            admission.priority_class_delete(name)
        async with self._lock:
            key = self.key(r, ns, name)
            got = self.store.get(key)
            if got is None:
                raise self._notfound(r, name)
            obj, rev = copy.deepcopy(got[0]), got[1]
            md = obj["metadata"]
            pre = preconditions or {}
            if pre.get("uid") and pre["uid"] != md.get("uid"):
                raise Conflict(r.plural, name, group=r.group, message=(
                    f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: {md.get('uid')}"))
            if pre.get("resourceVersion") and pre["resourceVersion"] != md.get("resourceVersion"):
                raise Conflict(r.plural, name, group=r.group, message=(
                    f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, "
                    f"ResourceVersion in object meta: {md.get('resourceVersion')}"))
            if dry_run:
                return obj
            graceful = self._grace(r, obj, grace_period_seconds)
            if propagation_policy == "Orphan":
                self._orphan_dependents(md.get("uid"))
            finalizers = list(md.get("finalizers") or [])
            if propagation_policy == "Foreground" and "foregroundDeletion" not in finalizers and self._has_dependents(md.get("uid")):
                finalizers.append("foregroundDeletion")
            if plural == "namespaces":
                return self._delete_namespace(key, obj, rev)
            if graceful is not None or finalizers:
                if not md.get("deletionTimestamp") or (graceful is not None and graceful < (md.get("deletionGracePeriodSeconds") or 0)):
                    when = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=graceful or 0)
                    md["deletionTimestamp"] = when.strftime("%Y-%m-%dT%H:%M:%SZ")
                    md["deletionGracePeriodSeconds"] = graceful or 0
                    md["finalizers"] = finalizers
                    if "generation" in md:
                        md["generation"] += 1
                    self.store.update(key, obj, expected_revision=rev, set_rv=_set_rv)
                return obj
            self.store.delete(key, expected_revision=rev)
            return obj

    def _grace(self, r: Resource, obj: Obj, grace: int | None) -> int | None:
        """Seconds of graceful deletion, or None for immediate removal (upstream: pods only,
        and only once bound to a node — an unscheduled pod has no kubelet to wait for)."""
        if r.plural != "pods":
            return None
        if not obj["spec"].get("nodeName") or (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return None
        if grace is None:
            grace = obj["spec"].get("terminationGracePeriodSeconds", 30)
        if grace == 0:
            return None
        # A pod already marked keeps going; the kubelet finalises it with grace 0.
        return max(grace, 1)

    def _dependents(self, uid: str | None) -> list[tuple[str, Obj, int]]:
        if not uid:
            return []
        items, _ = self.store.list("/registry/")
        return [(k, v, rv) for k, v, rv in items
                if any(o.get("uid") == uid for o in (v.get("metadata") or {}).get("ownerReferences") or [])]

    def _has_dependents(self, uid: str | None) -> bool:
        return bool(self._dependents(uid))

    def _orphan_dependents(self, uid: str | None) -> None:
        for key, v, rv in self._dependents(uid):
            v = copy.deepcopy(v)
            v["metadata"]["ownerReferences"] = [o for o in v["metadata"]["ownerReferences"] if o.get("uid") != uid]
            if not v["metadata"]["ownerReferences"]:
                del v["metadata"]["ownerReferences"]
            self.store.update(key, v, expected_revision=rv, set_rv=_set_rv)

    def _delete_namespace(self, key: str, obj: Obj, rev: int) -> Obj:
        name = obj["metadata"]["name"]
        if name in ("default", "kube-system", "kube-public", "kube-node-lease"):
            raise ApiError(403, "Forbidden", f'namespaces "{name}" is forbidden: this namespace may not be deleted')
        if not obj["metadata"].get("deletionTimestamp"):
            obj["metadata"]["deletionTimestamp"] = self._now()
            obj["metadata"]["deletionGracePeriodSeconds"] = 0
            obj.setdefault("status", {})["phase"] = "Terminating"
            self.store.update(key, obj, expected_revision=rev, set_rv=_set_rv)
            t = asyncio.get_running_loop().create_task(self._finalize_namespace(name))
            self._bg.add(t)
            t.add_done_callback(self._bg.discard)
        return obj

    async def _finalize_namespace(self, ns: str) -> None:
        """The namespace controller's job, done here: delete everything inside, wait for the
        pods to be gone (kubelets stop them gracefully), then remove the namespace."""
        try:
            for r in RESOURCES.values():
                if not r.namespaced:
                    continue
                items, _ = self.store.list(self.prefix(r, ns))
                for _, v, _ in items:
                    try:
                        await self.delete(r.plural, v["metadata"]["name"], namespace=ns)
                    except ApiError:
                        pass
            for _ in range(3600):
                if not any(self.store.count(self.prefix(r, ns)) for r in RESOURCES.values() if r.namespaced):
                    break
                await asyncio.sleep(0.5)
            async with self._lock:
                got = self.store.get(f"/registry/namespaces/{ns}")
                if got:
                    self.store.delete(f"/registry/namespaces/{ns}")
        except Exception:  # noqa: BLE001 - a background task must log, not vanish
            log.exception("finalizing namespace %s", ns)

    # -- services --------------------------------------------------------------------------
    def _allocate_service(self, svc: Obj, old: Obj | None) -> None:
        spec = svc["spec"]
        name = svc["metadata"]["name"]
        items, _ = self.store.list("/registry/services/")
        others = [v for k, v, _ in items if not old or v["metadata"]["uid"] != old["metadata"]["uid"]]
        causes: list[dict[str, str]] = []
        if spec["type"] == "ExternalName":
            spec.pop("clusterIP", None)
        else:
            old_ip = (old or {}).get("spec", {}).get("clusterIP")
            ip = spec.get("clusterIP")
            if old and ip and old_ip and ip != old_ip:
                causes.append({"reason": "FieldValueInvalid", "field": "spec.clusterIPs[0]",
                               "message": f"Invalid value: []string{{\"{ip}\"}}: may not change once set"})
            elif old and not ip and old_ip:
                spec["clusterIP"] = old_ip
            elif not ip:
                used = {v["spec"].get("clusterIP") for v in others}
                spec["clusterIP"] = self._free_ip(used)
            elif ip != "None" and not old:
                try:
                    addr = ipaddress.ip_address(ip)
                except ValueError:
                    addr = None
                if addr is None or addr not in self.service_net:
                    causes.append({"reason": "FieldValueInvalid", "field": "spec.clusterIPs",
                                   "message": f"Invalid value: []string{{\"{ip}\"}}: failed to allocate IP {ip}: the "
                                              f"provided IP ({ip}) is not in the valid range. The range of valid IPs is {self.service_net}"})
                elif any(v["spec"].get("clusterIP") == ip for v in others):
                    causes.append({"reason": "FieldValueInvalid", "field": "spec.clusterIPs",
                                   "message": f"Invalid value: []string{{\"{ip}\"}}: failed to allocate IP {ip}: provided IP is already allocated"})
            if spec.get("clusterIP"):
                spec["clusterIPs"] = [spec["clusterIP"]]
        used_ports = {p.get("nodePort") for v in others for p in v["spec"].get("ports") or []}
        old_ports = {(p.get("port"), p.get("protocol")): p.get("nodePort") for p in ((old or {}).get("spec") or {}).get("ports") or []}
        lo, hi = self.node_ports
        for i, p in enumerate(spec.get("ports") or []):
            if spec["type"] not in ("NodePort", "LoadBalancer"):
                p.pop("nodePort", None)
                continue
            np_ = p.get("nodePort")
            if not np_:
                np_ = old_ports.get((p.get("port"), p.get("protocol")))
            if not np_:
                free = [n for n in range(lo, hi + 1) if n not in used_ports]
                if not free:
                    causes.append({"reason": "FieldValueInvalid", "field": f"spec.ports[{i}].nodePort",
                                   "message": "Invalid value: 0: range is full"})
                    continue
                np_ = self.rng.choice(free)
            elif not lo <= np_ <= hi:
                causes.append({"reason": "FieldValueInvalid", "field": f"spec.ports[{i}].nodePort",
                               "message": f"Invalid value: {np_}: provided port is not in the valid range. The range of valid ports is {lo}-{hi}"})
            elif np_ in used_ports:
                causes.append({"reason": "FieldValueInvalid", "field": f"spec.ports[{i}].nodePort",
                               "message": f"Invalid value: {np_}: provided port is already allocated"})
            used_ports.add(np_)
            p["nodePort"] = np_
        if causes:
            raise Invalid("Service", name, causes)

    def _free_ip(self, used: set[Any]) -> str:
        net = self.service_net
        # Dynamic allocation from the upper part of the range, as upstream, leaving the
        # lower band for addresses users ask for (kubernetes .1, DNS .10).
        lo = int(net.network_address) + min(256, net.num_addresses // 16)
        hi = int(net.broadcast_address) - 1
        for _ in range(1000):
            ip = str(ipaddress.ip_address(self.rng.randint(lo, hi)))
            if ip not in used:
                return ip
        raise ApiError(500, "InternalError", "the service IP range is full")

    # -- watch -----------------------------------------------------------------------------
    async def watch(self, plural: str, *, namespace: str | None = None, resource_version: str | None = None,
                    label_selector: str | None = None, field_selector: str | None = None,
                    copy_items: bool = True) -> AsyncIterator[tuple[str, Obj]]:
        """Events for the matching objects. With ``copy_items=False`` added and modified
        objects are the stored ones, shared by every watcher (read-only: serialize only)."""
        cp = copy.deepcopy if copy_items else (lambda o: o)
        r = self._res(plural)
        flt = Filter(label_selector, field_selector, r)
        prefix = self.prefix(r, namespace)
        after: int | None
        if resource_version in (None, "", "0"):
            # No revision: the current state as ADDED events, then changes (upstream semantics).
            items, rev = self.store.list(prefix)
            initial = [copy.deepcopy(v) for _, v, _ in items if flt(v)]
            after = rev
        else:
            # ParseResourceVersion: an unsigned decimal (so "-5", "+5", "1_0" are 400, not 410).
            if not (resource_version.isascii() and resource_version.isdigit()):
                raise bad_request(f"invalid resource version: {resource_version}")
            after = int(resource_version)
            initial = []
        try:
            stream = self.store.watch(prefix, after=after)
            for obj in initial:
                yield "ADDED", obj
            async for ev in stream:
                new_ok = flt(ev.value)
                if ev.type == "DELETE":
                    if new_ok:
                        obj = copy.deepcopy(ev.value)
                        obj["metadata"]["resourceVersion"] = str(ev.revision)
                        yield "DELETED", obj
                    continue
                old_ok = flt(ev.prev_value) if ev.prev_value is not None else None
                if ev.created:
                    if new_ok:
                        yield "ADDED", cp(ev.value)
                elif new_ok:
                    yield ("ADDED" if old_ok is False else "MODIFIED"), cp(ev.value)
                elif old_ok:
                    # Left the selection: to this watcher it is gone.
                    obj = copy.deepcopy(ev.value)
                    yield "DELETED", obj
        except Compacted as e:
            raise ApiError(410, "Expired", f"too old resource version: {resource_version} ({e.oldest})") from None
