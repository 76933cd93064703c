"""LimitRange and ResourceQuota admission, and the usage arithmetic the quota controller shares.

LimitRanger (upstream plugin/pkg/admission/limitranger): on pod create, containers get the
``default`` limits and ``defaultRequest`` requests of every ``type: Container`` item of the
namespace's LimitRanges, then ``min`` / ``max`` / ``maxLimitRequestRatio`` are enforced per
Container and per Pod, with upstream's messages (403 Forbidden).

ResourceQuota (upstream plugin/pkg/admission/resourcequota + pkg/quota/v1/evaluator/core):
a create that would take a quota's usage over ``spec.hard`` is refused with
``exceeded quota: q, requested: ..., used: ..., limited: ...``, and a pod that does not
state a request / limit for a constrained compute resource with ``failed quota: q: must
specify ...``.

Key design choice: there are no usage counters. Usage is recomputed from the store while the
registry holds its write lock (``Registry.create`` calls ``check`` and, after the write,
``refresh_status``), so two concurrent creates cannot both squeeze under a limit, and a
charge whose create then fails is never recorded — there is nothing to leak. A namespace's
objects are few, so a listing per create is cheap. Everything here except the two
store-reading helpers is pure and unit-tested.
"""
from __future__ import annotations

import copy
import datetime as dt
from decimal import Decimal
from typing import Any, Callable, Iterable

from nanokube.api import quantity
from nanokube.api.errors import ApiError
from nanokube.api.resources import RESOURCES

Obj = dict[str, Any]

COMPUTE = ("cpu", "memory", "ephemeral-storage")
# Legacy object-count names (upstream's "resource names that are counted").
COUNT_NAMES = {"pods": "pods", "services": "services", "configmaps": "configmaps", "secrets": "secrets",
               "persistentvolumeclaims": "persistentvolumeclaims", "replicationcontrollers": "replicationcontrollers",
               "resourcequotas": "resourcequotas"}
# Quota names for which every container must state a request or a limit (upstream's validationSet).
MUST_SPECIFY = {"cpu": "requests.cpu", "requests.cpu": "requests.cpu", "memory": "requests.memory",
                "requests.memory": "requests.memory", "limits.cpu": "limits.cpu", "limits.memory": "limits.memory"}


# -- quantities -------------------------------------------------------------------------------
def q(v: Any) -> Decimal:
    return quantity.parse(v) if v is not None else Decimal(0)


def fmt(name: str, v: Decimal) -> str:
    """A quantity as resource.Quantity would print it: cores or milli-cores for cpu, binary
    suffixes for exact multiples of 1024, plain integers for counts."""
    base = name.rsplit(".", 1)[-1] if name.startswith(("requests.", "limits.")) else name
    if base == "cpu":
        milli = (v * 1000).to_integral_value(rounding="ROUND_CEILING")
        return str(int(milli // 1000)) if milli % 1000 == 0 else f"{int(milli)}m"
    n = int(v.to_integral_value(rounding="ROUND_CEILING"))
    if base in ("memory", "storage", "ephemeral-storage") and n and n % 1024 == 0:
        for shift, suf in ((50, "Pi"), (40, "Ti"), (30, "Gi"), (20, "Mi"), (10, "Ki")):
            if n % (1 << shift) == 0:
                return f"{n >> shift}{suf}"
    if v != int(v):
        return f"{int((v * 1000).to_integral_value(rounding='ROUND_CEILING'))}m"
    return str(n)


def _str(v: Any) -> str:
    return str(v)


# -- LimitRange ---------------------------------------------------------------------------------
def _all_containers(spec: Obj) -> list[Obj]:
    return list(spec.get("initContainers") or []) + list(spec.get("containers") or [])


def apply_limit_defaults(pod: Obj, limit_ranges: Iterable[Obj]) -> None:
    """mergeContainerResources: fill in missing limits and requests of every container from
    the Container items' ``default`` and ``defaultRequest``; a request defaulted above an
    explicit limit is not applied (upstream keeps requests ≤ limits)."""
    default_lim: dict[str, Any] = {}
    default_req: dict[str, Any] = {}
    for lr in limit_ranges:
        for item in (lr.get("spec") or {}).get("limits") or []:
            if item.get("type") == "Container":
                for k, v in (item.get("default") or {}).items():
                    default_lim.setdefault(k, v)
                for k, v in (item.get("defaultRequest") or {}).items():
                    default_req.setdefault(k, v)
    if not default_lim and not default_req:
        return
    for c in _all_containers(pod.get("spec") or {}):
        res = c.setdefault("resources", {})
        lim, req = res.get("limits") or {}, res.get("requests") or {}
        for k, v in default_lim.items():
            lim.setdefault(k, v)
        for k, v in default_req.items():
            if k not in req and not (k in lim and q(v) > q(lim[k])):
                req[k] = v
        if lim:
            res["limits"] = lim
        if req:
            res["requests"] = req
    from nanokube.api.defaults import qos_class
    pod.setdefault("status", {})["qosClass"] = qos_class(pod["spec"])


def _min(kind: str, name: str, enforced: Any, req: Obj, lim: Obj) -> str | None:
    e = q(enforced)
    if name not in req:
        return f"minimum {name} usage per {kind} is {_str(enforced)}.  No request is specified"
    if q(req[name]) < e:
        return f"minimum {name} usage per {kind} is {_str(enforced)}, but request is {_str(req[name])}"
    if name in lim and q(lim[name]) < e:
        return f"minimum {name} usage per {kind} is {_str(enforced)}, but limit is {_str(lim[name])}"
    return None


def _max(kind: str, name: str, enforced: Any, req: Obj, lim: Obj) -> str | None:
    e = q(enforced)
    if name not in lim:
        return f"maximum {name} usage per {kind} is {_str(enforced)}.  No limit is specified"
    if q(lim[name]) > e:
        return f"maximum {name} usage per {kind} is {_str(enforced)}, but limit is {_str(lim[name])}"
    if name in req and q(req[name]) > e:
        return f"maximum {name} usage per {kind} is {_str(enforced)}, but request is {_str(req[name])}"
    return None


def _ratio(kind: str, name: str, enforced: Any, req: Obj, lim: Obj) -> str | None:
    r, l_ = q(req.get(name)), q(lim.get(name))
    if name not in req or r == 0:
        return f"{name} max limit to request ratio per {kind} is {_str(enforced)}, but no request is specified or request is 0"
    if name not in lim or l_ == 0:
        return f"{name} max limit to request ratio per {kind} is {_str(enforced)}, but no limit is specified or limit is 0"
    observed = l_ / r
    if observed > q(enforced):
        return f"{name} max limit to request ratio per {kind} is {_str(enforced)}, but provided ratio is {float(observed):f}"
    return None


def _pod_totals(spec: Obj, field: str) -> Obj:
    """Pod-level requests or limits: the sum over containers, or the largest init container
    if that is more (upstream's PodRequests / PodLimits for LimitRanger)."""
    out: dict[str, Decimal] = {}
    for c in spec.get("containers") or []:
        for k, v in ((c.get("resources") or {}).get(field) or {}).items():
            out[k] = out.get(k, Decimal(0)) + q(v)
    for c in spec.get("initContainers") or []:
        for k, v in ((c.get("resources") or {}).get(field) or {}).items():
            out[k] = max(out.get(k, Decimal(0)), q(v))
    return {k: fmt(k, v) for k, v in out.items()}


def limit_range_errors(pod: Obj, limit_ranges: Iterable[Obj]) -> list[str]:
    """PodValidateLimitFunc: every violated min / max / maxLimitRequestRatio, in upstream's words."""
    errs: list[str] = []
    spec = pod.get("spec") or {}
    for lr in limit_ranges:
        for item in (lr.get("spec") or {}).get("limits") or []:
            typ = item.get("type")
            if typ == "Container":
                targets = [((c.get("resources") or {}).get("requests") or {}, (c.get("resources") or {}).get("limits") or {})
                           for c in _all_containers(spec)]
            elif typ == "Pod":
                targets = [(_pod_totals(spec, "requests"), _pod_totals(spec, "limits"))]
            else:
                continue
            for req, lim in targets:
                for check, key in ((_min, "min"), (_max, "max"), (_ratio, "maxLimitRequestRatio")):
                    for name, enforced in sorted((item.get(key) or {}).items()):
                        e = check(typ, name, enforced, req, lim)
                        if e:
                            errs.append(e)
    return errs


def forbidden(plural: str, name: str, message: str) -> ApiError:
    return ApiError(403, "Forbidden", f'{plural} "{name}" is forbidden: {message}',
                    details={"name": name, "kind": plural})


def _aggregate(errs: list[str]) -> str:
    return errs[0] if len(errs) == 1 else "[" + ", ".join(errs) + "]"


def admit_limit_ranges(store: Any, pod: Obj) -> None:
    """LimitRanger on pod create: default, then validate (raises 403)."""
    ns = pod["metadata"]["namespace"]
    items, _ = store.list(f"/registry/limitranges/{ns}/")
    ranges = [v for _, v, _ in items]
    if not ranges:
        return
    apply_limit_defaults(pod, ranges)
    errs = limit_range_errors(pod, ranges)
    if errs:
        raise forbidden("pods", pod["metadata"].get("name", ""), _aggregate(errs))


# -- ResourceQuota: usage -----------------------------------------------------------------------
def _deadline_passed(pod: Obj, now: dt.datetime | None) -> bool:
    ts = (pod.get("metadata") or {}).get("deletionTimestamp")
    if not ts or now is None:
        return False
    when = dt.datetime.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.timezone.utc)
    return now > when


def pod_counts(pod: Obj, *, now: dt.datetime | None = None) -> bool:
    """QuotaV1Pod: terminal pods, and pods past their deletion deadline, use no quota."""
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return False
    return not _deadline_passed(pod, now)


def _has_compute(spec: Obj) -> bool:
    return any(((c.get("resources") or {}).get(f) or {}).get(r) is not None
               for c in _all_containers(spec) for f in ("requests", "limits") for r in ("cpu", "memory"))


def pod_in_scopes(pod: Obj, scopes: Iterable[str]) -> bool:
    spec = pod.get("spec") or {}
    for s in scopes:
        terminating = spec.get("activeDeadlineSeconds") is not None
        if s == "Terminating" and not terminating or s == "NotTerminating" and terminating:
            return False
        if s == "BestEffort" and _has_compute(spec) or s == "NotBestEffort" and not _has_compute(spec):
            return False
    return True


def pod_usage(pod: Obj) -> dict[str, Decimal]:
    """What one pod charges: pods, count/pods, and requests.* / limits.* (``cpu`` and
    ``memory`` are requests), from the pod-level totals."""
    spec = pod.get("spec") or {}
    out: dict[str, Decimal] = {"pods": Decimal(1), "count/pods": Decimal(1)}
    for field in ("requests", "limits"):
        for k, v in _pod_totals(spec, field).items():
            out[f"{field}.{k}"] = q(v)
            if field == "requests" and k in COMPUTE:
                out[k] = q(v)
    return out


def object_usage(plural: str, obj: Obj) -> dict[str, Decimal]:
    """What one object of ``plural`` charges (pods: see ``pod_usage``)."""
    r = RESOURCES.get(plural)
    if r is None:
        return {}
    if plural == "pods":
        return pod_usage(obj)
    count = f"count/{plural}" + (f".{r.group}" if r.group else "")
    out = {count: Decimal(1)}
    if plural in COUNT_NAMES:
        out[COUNT_NAMES[plural]] = Decimal(1)
    if plural == "services":
        typ = (obj.get("spec") or {}).get("type", "ClusterIP")
        ports = len((obj.get("spec") or {}).get("ports") or [])
        out["services.nodeports"] = Decimal(ports if typ in ("NodePort", "LoadBalancer") else 0)
        out["services.loadbalancers"] = Decimal(1 if typ == "LoadBalancer" else 0)
    if plural == "persistentvolumeclaims":
        st = q((((obj.get("spec") or {}).get("resources") or {}).get("requests") or {}).get("storage"))
        out["requests.storage"] = st
        sc = (obj.get("spec") or {}).get("storageClassName")
        if sc:
            out[f"{sc}.storageclass.storage.k8s.io/requests.storage"] = st
            out[f"{sc}.storageclass.storage.k8s.io/persistentvolumeclaims"] = Decimal(1)
    return out


def plural_for(name: str) -> str | None:
    """The resource a quota name counts (None: it counts nothing we know)."""
    if name.startswith("count/"):
        plural = name[6:].split(".", 1)[0]
        return plural if plural in RESOURCES else None
    if name in COUNT_NAMES:
        return COUNT_NAMES[name]
    if name.startswith("services."):
        return "services"
    if name == "requests.storage" or name.endswith(".storageclass.storage.k8s.io/requests.storage") \
            or name.endswith(".storageclass.storage.k8s.io/persistentvolumeclaims"):
        return "persistentvolumeclaims"
    base = name.split(".", 1)[1] if name.startswith(("requests.", "limits.")) else name
    return "pods" if base in COMPUTE or name.startswith(("requests.", "limits.")) else None


def compute_used(quota: Obj, objects: dict[str, list[Obj]], *, now: dt.datetime | None = None) -> dict[str, Decimal]:
    """Usage of every resource the quota limits, from the namespace's objects by plural."""
    hard = (quota.get("spec") or {}).get("hard") or {}
    scopes = (quota.get("spec") or {}).get("scopes") or []
    used = {k: Decimal(0) for k in hard}
    for plural in {p for k in hard if (p := plural_for(k))}:
        for obj in objects.get(plural) or []:
            if plural == "pods" and (not pod_counts(obj, now=now) or not pod_in_scopes(obj, scopes)):
                continue
            for k, v in object_usage(plural, obj).items():
                if k in used:
                    used[k] += v
    return used


def format_list(values: dict[str, Decimal]) -> dict[str, str]:
    return {k: fmt(k, v) for k, v in sorted(values.items())}


def _pretty(values: dict[str, Decimal]) -> str:
    return ",".join(f"{k}={fmt(k, v)}" for k, v in sorted(values.items()))


def missing_constraints(pod: Obj, hard: Iterable[str]) -> str | None:
    """podEvaluator.Constraints: containers without an explicit request/limit for a
    constrained compute resource (``must specify limits.cpu for: a,b; ...``)."""
    required = {MUST_SPECIFY[h] for h in hard if h in MUST_SPECIFY}
    missing: dict[str, set[str]] = {}
    for c in _all_containers(pod.get("spec") or {}):
        res = c.get("resources") or {}
        have = {f"requests.{k}" for k in (res.get("requests") or {})} | {f"limits.{k}" for k in (res.get("limits") or {})}
        for r in required - have:
            missing.setdefault(r, set()).add(c.get("name", ""))
    if not missing:
        return None
    return "must specify " + "; ".join(f"{r} for: {','.join(sorted(missing[r]))}" for r in sorted(missing))


def check_quota(quota: Obj, plural: str, obj: Obj, used: dict[str, Decimal]) -> str | None:
    """The reason ``obj`` may not be created under ``quota`` (None: it fits)."""
    name = quota["metadata"]["name"]
    spec = quota.get("spec") or {}
    hard = {k: q(v) for k, v in (spec.get("hard") or {}).items()}
    if plural == "pods":
        if not pod_in_scopes(obj, spec.get("scopes") or []) or not pod_counts(obj):
            return None
        missing = missing_constraints(obj, hard)
        if missing:
            return f"failed quota: {name}: {missing}"
    requested = {k: v for k, v in object_usage(plural, obj).items() if k in hard}
    if not any(requested.values()):
        return None
    exceeded = [k for k, v in requested.items() if used.get(k, Decimal(0)) + v > hard[k]]
    if not exceeded:
        return None
    return (f"exceeded quota: {name}, requested: {_pretty({k: requested[k] for k in exceeded})}, "
            f"used: {_pretty({k: used.get(k, Decimal(0)) for k in exceeded})}, "
            f"limited: {_pretty({k: hard[k] for k in exceeded})}")


# -- ResourceQuota: store-reading shell (called under the registry's write lock) -----------------
def _namespace_objects(store: Any, ns: str, quotas: list[Obj]) -> dict[str, list[Obj]]:
    plurals = {p for qu in quotas for k in ((qu.get("spec") or {}).get("hard") or {}) if (p := plural_for(k))}
    out: dict[str, list[Obj]] = {}
    for plural in plurals:
        items, _ = store.list(f"/registry/{plural}/{ns}/")
        out[plural] = [v for _, v, _ in items]
    return out


def _quotas(store: Any, ns: str) -> list[Obj]:
    items, _ = store.list(f"/registry/resourcequotas/{ns}/")
    return [v for _, v, _ in items]


def check(store: Any, plural: str, obj: Obj, *, now: dt.datetime | None = None) -> None:
    """ResourceQuota admission for a create: raises 403 if any quota of the namespace would be
    exceeded (or a constrained pod does not state its resources)."""
    ns = (obj.get("metadata") or {}).get("namespace")
    if not ns or plural not in RESOURCES or not RESOURCES[plural].namespaced:
        return
    quotas = _quotas(store, ns)
    if not quotas:
        return
    objects = _namespace_objects(store, ns, quotas)
    now = now or dt.datetime.now(dt.timezone.utc)
    for qu in sorted(quotas, key=lambda x: x["metadata"]["name"]):
        reason = check_quota(qu, plural, obj, compute_used(qu, objects, now=now))
        if reason:
            raise forbidden(plural, obj["metadata"].get("name", ""), reason)


def desired_status(quota: Obj, objects: dict[str, list[Obj]], *, now: dt.datetime | None = None) -> Obj:
    hard = (quota.get("spec") or {}).get("hard") or {}
    return {"hard": dict(hard), "used": format_list(compute_used(quota, objects, now=now))}


def refresh_status(store: Any, ns: str, plural: str, *, set_rv: Callable[[Obj, int], None],
                   now: dt.datetime | None = None) -> None:
    """After a create: bring ``status.used`` of the namespace's quotas that count ``plural``
    up to date (as upstream's admission does), so ``kubectl describe quota`` is current at once."""
    quotas = [qu for qu in _quotas(store, ns) if plural == "resourcequotas"  # a new quota gets its status at once
              or any(plural_for(k) == plural for k in ((qu.get("spec") or {}).get("hard") or {}))]
    if not quotas:
        return
    objects = _namespace_objects(store, ns, quotas)
    for qu in quotas:
        st = desired_status(qu, objects, now=now or dt.datetime.now(dt.timezone.utc))
        if qu.get("status") != st:
            new = copy.deepcopy(qu)
            new["status"] = st
            key = f"/registry/resourcequotas/{ns}/{qu['metadata']['name']}"
            store.update(key, new, expected_revision=int(qu["metadata"]["resourceVersion"]), set_rv=set_rv)
