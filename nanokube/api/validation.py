"""Validation of objects before they are stored, with upstream's field paths and messages.

Each check appends a cause ``{"reason": "FieldValueInvalid"|..., "message", "field"}``; the
apiserver turns a non-empty list into a 422 Invalid ``Status`` whose message kubectl prints
verbatim (``The Deployment "x" is invalid: spec.template.spec.containers[0].image: Required value``).
"""
from __future__ import annotations

import re
from typing import Any, Callable

Obj = dict[str, Any]
Causes = list[dict[str, str]]

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
C_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")

SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                 "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
                 "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
             "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
             "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
DNS1035_MSG = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
               "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', "
               "regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')")


def _fmt(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


def required(causes: Causes, field: str) -> None:
    causes.append({"reason": "FieldValueRequired", "message": "Required value", "field": field})


def invalid(causes: Causes, field: str, value: Any, detail: str) -> None:
    causes.append({"reason": "FieldValueInvalid", "message": f"Invalid value: {_fmt(value)}: {detail}", "field": field})


def not_supported(causes: Causes, field: str, value: Any, allowed: list[str]) -> None:
    causes.append({"reason": "FieldValueNotSupported",
                   "message": f"Unsupported value: {_fmt(value)}: supported values: " + ", ".join(f'"{a}"' for a in allowed),
                   "field": field})


def duplicate(causes: Causes, field: str, value: Any) -> None:
    causes.append({"reason": "FieldValueDuplicate", "message": f"Duplicate value: {_fmt(value)}", "field": field})


# -- names and metadata --------------------------------------------------------------------
NAME_RULES: dict[str, tuple[re.Pattern[str], str, int]] = {
    "namespaces": (DNS1123_LABEL, LABEL_MSG, 63),
    "services": (DNS1035_LABEL, DNS1035_MSG, 63),
}


# RBAC objects only need to be a valid path segment (ValidatePathSegmentName upstream).
PATH_SEGMENT_NAMES = {"roles", "clusterroles", "rolebindings", "clusterrolebindings"}


def check_name(causes: Causes, resource: str, name: str | None, *, field: str = "metadata.name") -> None:
    if not name:
        return
    if resource in PATH_SEGMENT_NAMES:
        if name in (".", ".."):
            invalid(causes, field, name, f"may not be '{name}'")
        for bad in ("/", "%"):
            if bad in name:
                invalid(causes, field, name, f"may not contain '{bad}'")
        return
    rx, msg, maxlen = NAME_RULES.get(resource, (DNS1123_SUBDOMAIN, SUBDOMAIN_MSG, 253))
    if len(name) > maxlen:
        invalid(causes, field, name, f"must be no more than {maxlen} characters")
    elif not rx.match(name):
        invalid(causes, field, name, msg)


def check_labels(causes: Causes, labels: Any, field: str) -> None:
    if labels is None:
        return
    for k, v in labels.items():
        prefix, _, name = k.rpartition("/")
        if not QUALIFIED_NAME.match(name) or len(name) > 63 or (prefix and not DNS1123_SUBDOMAIN.match(prefix)):
            invalid(causes, field, k, "name part must consist of alphanumeric characters, '-', '_' or '.', and must "
                    "start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', "
                    "regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")
        if isinstance(v, str) and len(v) > 63:  # IsValidLabelValue: the length and the pattern are separate errors
            invalid(causes, field, v, "must be no more than 63 characters")
        if not isinstance(v, str) or not LABEL_VALUE.match(v):
            invalid(causes, f"{field}", v, "a valid label must be an empty string or consist of alphanumeric "
                    "characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. "
                    "'MyValue',  or 'my_value',  or '12345', regex used for validation is "
                    "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")


def check_metadata(causes: Causes, resource: str, obj: Obj) -> None:
    md = obj.get("metadata") or {}
    if not md.get("name") and not md.get("generateName"):
        causes.append({"reason": "FieldValueRequired", "message": "name or generateName is required",
                       "field": "metadata.name"})
    check_name(causes, resource, md.get("name"))
    check_labels(causes, md.get("labels"), "metadata.labels")


# -- pods ----------------------------------------------------------------------------------
RESTART_POLICIES = ["Always", "OnFailure", "Never"]


def _check_container(causes: Causes, c: Obj, path: str, names: set[str]) -> None:
    name = c.get("name")
    if not name:
        required(causes, f"{path}.name")
    elif not DNS1123_LABEL.match(name) or len(name) > 63:
        invalid(causes, f"{path}.name", name, LABEL_MSG)
    elif name in names:
        duplicate(causes, f"{path}.name", name)
    else:
        names.add(name)
    if not c.get("image") or not str(c.get("image")).strip():
        required(causes, f"{path}.image")
    port_names: set[str] = set()
    for i, p in enumerate(c.get("ports") or []):
        cp = p.get("containerPort")
        if not isinstance(cp, int) or not 0 < cp < 65536:
            invalid(causes, f"{path}.ports[{i}].containerPort", cp, "must be between 1 and 65535, inclusive")
        if p.get("name"):  # names are unique per container (same containerPort twice is only a warning upstream)
            if p["name"] in port_names:
                duplicate(causes, f"{path}.ports[{i}].name", p["name"])
            port_names.add(p["name"])
        if p.get("protocol") not in (None, "TCP", "UDP", "SCTP"):
            not_supported(causes, f"{path}.ports[{i}].protocol", p.get("protocol"), ["SCTP", "TCP", "UDP"])
    for i, e in enumerate(c.get("env") or []):
        if not e.get("name"):
            required(causes, f"{path}.env[{i}].name")
        elif not ENV_NAME.match(e["name"]):
            invalid(causes, f"{path}.env[{i}].name", e["name"], "a valid environment variable name must consist of "
                    "alphabetic characters, digits, '_', '-', or '.', and must not start with a digit (e.g. "
                    "'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', regex used for validation is "
                    "'[-._a-zA-Z][-._a-zA-Z0-9]*')")
    if c.get("imagePullPolicy") not in (None, "Always", "IfNotPresent", "Never"):
        not_supported(causes, f"{path}.imagePullPolicy", c.get("imagePullPolicy"), ["Always", "IfNotPresent", "Never"])
    _container_resources(causes, c.get("resources") or {}, f"{path}.resources")


def _container_resources(causes: Causes, res: Obj, path: str) -> None:
    """ValidateResourceRequirements: quantities ≥ 0, and each request ≤ its limit."""
    from nanokube.api.quantity import parse
    n = len(causes)
    _quantities(causes, res.get("limits"), f"{path}.limits")
    _quantities(causes, res.get("requests"), f"{path}.requests")
    if len(causes) > n:
        return
    limits = res.get("limits") or {}
    for k, v in (res.get("requests") or {}).items():
        if k in limits and parse(v) > parse(limits[k]):
            invalid(causes, f"{path}.requests", v, f"must be less than or equal to {k} limit of {limits[k]}")


def check_pod_spec(causes: Causes, spec: Obj, path: str) -> None:
    containers = spec.get("containers")
    if not containers:
        required(causes, f"{path}.containers")
    names: set[str] = set()
    for i, c in enumerate(spec.get("initContainers") or []):
        _check_container(causes, c, f"{path}.initContainers[{i}]", names)
    for i, c in enumerate(containers or []):
        _check_container(causes, c, f"{path}.containers[{i}]", names)
    _check_ephemeral(causes, spec, path, names)
    host_ports: set[str] = set()  # AccumulateUniqueHostPorts: a hostPort/protocol once per pod
    for kind in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(kind) or []):
            for j, p in enumerate(c.get("ports") or []):
                if p.get("hostPort"):
                    key = f"{p['hostPort']}/{p.get('protocol') or 'TCP'}"
                    if key in host_ports:
                        duplicate(causes, f"{path}.{kind}[{i}].ports[{j}].hostPort", key)
                    host_ports.add(key)
    rp = spec.get("restartPolicy")
    if rp is not None and rp not in RESTART_POLICIES:
        not_supported(causes, f"{path}.restartPolicy", rp, RESTART_POLICIES)
    vols: set[str] = set()
    for i, v in enumerate(spec.get("volumes") or []):
        if not v.get("name"):
            required(causes, f"{path}.volumes[{i}].name")
        elif v["name"] in vols:
            duplicate(causes, f"{path}.volumes[{i}].name", v["name"])
        vols.add(v.get("name", ""))


def _pod(causes: Causes, o: Obj) -> None:
    check_pod_spec(causes, o.get("spec") or {}, "spec")


# What a debugging container may not have: it adds no ports, no resources, is never probed or restarted.
EPHEMERAL_FORBIDDEN = ("ports", "livenessProbe", "readinessProbe", "startupProbe", "lifecycle", "resources",
                       "resizePolicy", "restartPolicy")


def _check_ephemeral(causes: Causes, spec: Obj, path: str, names: set[str]) -> None:
    """spec.ephemeralContainers (kubectl debug): names unique among all the pod's containers,
    only fields a debugging container may set, a target that is one of the pod's containers."""
    targets = {c.get("name") for k in ("containers", "initContainers") for c in spec.get(k) or []}
    for i, c in enumerate(spec.get("ephemeralContainers") or []):
        p = f"{path}.ephemeralContainers[{i}]"
        _check_container(causes, c, p, names)
        for f in EPHEMERAL_FORBIDDEN:
            if c.get(f):
                _forbidden(causes, f"{p}.{f}", "cannot be set for an Ephemeral Container")
        t = c.get("targetContainerName")
        if t and t not in targets:
            causes.append({"reason": "FieldValueNotFound", "message": f"Not found: {_fmt(t)}",
                           "field": f"{p}.targetContainerName"})


def pod_create(o: Obj) -> Causes:
    """What only a pod's creation may not have: ephemeral containers come through their subresource."""
    causes: Causes = []
    if (o.get("spec") or {}).get("ephemeralContainers"):
        _forbidden(causes, "spec.ephemeralContainers", "cannot be set on create")
    return causes


def ephemeral_update(old: Obj, new: Obj) -> Causes:
    """The ephemeralcontainers subresource only adds: an existing one is never removed or changed."""
    causes: Causes = []
    have = {c.get("name"): c for c in (old.get("spec") or {}).get("ephemeralContainers") or []}
    want = (new.get("spec") or {}).get("ephemeralContainers") or []
    names = [c.get("name") for c in want]
    for name, c in have.items():
        if name not in names:
            _forbidden(causes, "spec.ephemeralContainers", f"existing ephemeral containers {_fmt(name)} may not be removed")
        elif want[names.index(name)] != c:
            _forbidden(causes, f"spec.ephemeralContainers[{names.index(name)}]",
                       f"existing ephemeral containers {_fmt(name)} may not be changed")
    return causes


def _selector_matches_template(causes: Causes, o: Obj, *, required_selector: bool) -> None:
    spec = o.get("spec") or {}
    sel = spec.get("selector")
    tmpl_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    if not sel:
        if required_selector:
            required(causes, "spec.selector")
    else:
        ml = sel.get("matchLabels") or {}
        if not ml and not sel.get("matchExpressions"):
            invalid(causes, "spec.selector", sel, "empty selector is invalid for deployment")
        if any(tmpl_labels.get(k) != v for k, v in ml.items()):
            invalid(causes, "spec.template.metadata.labels", tmpl_labels,
                    "`selector` does not match template `labels`")
    reps = spec.get("replicas")
    if reps is not None and (not isinstance(reps, int) or reps < 0):
        invalid(causes, "spec.replicas", reps, "must be greater than or equal to 0")
    check_labels(causes, tmpl_labels, "spec.template.metadata.labels")
    check_pod_spec(causes, (spec.get("template") or {}).get("spec") or {}, "spec.template.spec")
    rp = ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy")
    if rp not in (None, "Always"):
        not_supported(causes, "spec.template.spec.restartPolicy", rp, ["Always"])


def _deployment(causes: Causes, o: Obj) -> None:
    _selector_matches_template(causes, o, required_selector=True)
    st = ((o.get("spec") or {}).get("strategy") or {}).get("type")
    if st not in (None, "RollingUpdate", "Recreate"):
        not_supported(causes, "spec.strategy.type", st, ["Recreate", "RollingUpdate"])


def _replicaset(causes: Causes, o: Obj) -> None:
    _selector_matches_template(causes, o, required_selector=True)


def _replicationcontroller(causes: Causes, o: Obj) -> None:
    """spec.selector is a plain map here; it must select the template's labels."""
    spec = o.get("spec") or {}
    sel = spec.get("selector") or {}
    tmpl_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    if not sel:
        required(causes, "spec.selector")
    elif any(tmpl_labels.get(k) != v for k, v in sel.items()):
        invalid(causes, "spec.template.metadata.labels", tmpl_labels, "`selector` does not match template `labels`")
    reps = spec.get("replicas")
    if reps is not None and (not isinstance(reps, int) or reps < 0):
        invalid(causes, "spec.replicas", reps, "must be greater than or equal to 0")
    check_pod_spec(causes, (spec.get("template") or {}).get("spec") or {}, "spec.template.spec")


def _daemonset(causes: Causes, o: Obj) -> None:
    _selector_matches_template(causes, o, required_selector=True)
    us = ((o.get("spec") or {}).get("updateStrategy") or {})
    if us.get("type") not in (None, "RollingUpdate", "OnDelete"):
        not_supported(causes, "spec.updateStrategy.type", us.get("type"), ["OnDelete", "RollingUpdate"])
    ru = us.get("rollingUpdate") or {}
    for f in ("maxUnavailable", "maxSurge"):
        v = ru.get(f)
        if isinstance(v, int) and v < 0:
            invalid(causes, f"spec.updateStrategy.rollingUpdate.{f}", v, "must be greater than or equal to 0")
    if ru.get("maxUnavailable") in (0, "0%") and ru.get("maxSurge") in (None, 0, "0%"):
        invalid(causes, "spec.updateStrategy.rollingUpdate.maxUnavailable", ru.get("maxUnavailable"),
                "may not be 0 when `maxSurge` is 0")


def _statefulset(causes: Causes, o: Obj) -> None:
    _selector_matches_template(causes, o, required_selector=True)
    spec = o.get("spec") or {}
    svc = spec.get("serviceName")
    if svc and not DNS1123_LABEL.match(svc):
        invalid(causes, "spec.serviceName", svc, LABEL_MSG)
    pmp = spec.get("podManagementPolicy")
    if pmp not in (None, "OrderedReady", "Parallel"):
        not_supported(causes, "spec.podManagementPolicy", pmp, ["OrderedReady", "Parallel"])
    us = spec.get("updateStrategy") or {}
    if us.get("type") not in (None, "RollingUpdate", "OnDelete"):
        not_supported(causes, "spec.updateStrategy.type", us.get("type"), ["OnDelete", "RollingUpdate"])
    part = (us.get("rollingUpdate") or {}).get("partition")
    if part is not None and (not isinstance(part, int) or part < 0):
        invalid(causes, "spec.updateStrategy.rollingUpdate.partition", part, "must be greater than or equal to 0")
    for i, t in enumerate(spec.get("volumeClaimTemplates") or []):
        if not (t.get("metadata") or {}).get("name"):
            required(causes, f"spec.volumeClaimTemplates[{i}].metadata.name")
        _claim_spec(causes, t.get("spec") or {}, f"spec.volumeClaimTemplates[{i}].spec")


ACCESS_MODES = ["ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"]


def _access_modes(causes: Causes, modes: Any, path: str) -> None:
    if not modes:
        required(causes, path)
    for m in modes or []:
        if m not in ACCESS_MODES:
            not_supported(causes, path, m, ACCESS_MODES)


def _claim_spec(causes: Causes, spec: Obj, path: str) -> None:
    _access_modes(causes, spec.get("accessModes"), f"{path}.accessModes")
    if not ((spec.get("resources") or {}).get("requests") or {}).get("storage"):
        required(causes, f"{path}.resources[storage]")
    vm = spec.get("volumeMode")
    if vm not in (None, "Filesystem", "Block"):
        not_supported(causes, f"{path}.volumeMode", vm, ["Block", "Filesystem"])


def _pvc(causes: Causes, o: Obj) -> None:
    _claim_spec(causes, o.get("spec") or {}, "spec")


def _pv(causes: Causes, o: Obj) -> None:
    spec = o.get("spec") or {}
    _access_modes(causes, spec.get("accessModes"), "spec.accessModes")
    if not (spec.get("capacity") or {}).get("storage"):
        required(causes, "spec.capacity")
    if not any(k in spec for k in ("hostPath", "local", "nfs", "csi")):
        causes.append({"reason": "FieldValueRequired", "message": "Required value: must specify a volume type",
                       "field": "spec"})
    rp = spec.get("persistentVolumeReclaimPolicy")
    if rp not in (None, "Retain", "Delete", "Recycle"):
        not_supported(causes, "spec.persistentVolumeReclaimPolicy", rp, ["Delete", "Recycle", "Retain"])


def _storageclass(causes: Causes, o: Obj) -> None:
    if not o.get("provisioner"):
        required(causes, "provisioner")
    vbm = o.get("volumeBindingMode")
    if vbm not in (None, "Immediate", "WaitForFirstConsumer"):
        not_supported(causes, "volumeBindingMode", vbm, ["Immediate", "WaitForFirstConsumer"])
    rp = o.get("reclaimPolicy")
    if rp not in (None, "Retain", "Delete"):
        not_supported(causes, "reclaimPolicy", rp, ["Delete", "Retain"])


STS_MUTABLE = ("replicas", "ordinals", "template", "updateStrategy", "persistentVolumeClaimRetentionPolicy",
               "minReadySeconds", "revisionHistoryLimit")


def statefulset_update(old: Obj, new: Obj) -> Causes:
    """ValidateStatefulSetUpdate: only a few spec fields may change."""
    o = {k: v for k, v in (old.get("spec") or {}).items() if k not in STS_MUTABLE}
    n = {k: v for k, v in (new.get("spec") or {}).items() if k not in STS_MUTABLE}
    if o == n:
        return []
    return [{"reason": "FieldValueForbidden", "field": "spec",
             "message": "Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', "
                        "'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' "
                        "and 'minReadySeconds' are forbidden"}]


def claim_update(old: Obj, new: Obj) -> Causes:
    """ValidatePersistentVolumeClaimUpdate: the spec is immutable after creation except
    ``resources.requests`` (and ``volumeName``, which the binder sets once)."""
    causes: Causes = []
    o, n = dict(old.get("spec") or {}), dict(new.get("spec") or {})
    for s in (o, n):
        s.pop("resources", None)
    if not o.get("volumeName"):
        o.pop("volumeName", None)
        n.pop("volumeName", None)
    if o != n:
        causes.append({"reason": "FieldValueForbidden", "field": "spec",
                       "message": "Forbidden: spec is immutable after creation except resources.requests and "
                                  "volumeAttributesClassName for bound claims"})
    return causes


def _non_negative(causes: Causes, spec: Obj, path: str, *fields: str) -> None:
    for f in fields:
        v = spec.get(f)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
            invalid(causes, f"{path}.{f}", v, "must be greater than or equal to 0")


def check_job_spec(causes: Causes, spec: Obj, path: str, *, generated_selector: bool = True) -> None:
    """ValidateJobSpec: counts, completion mode, selector vs template, restartPolicy."""
    _non_negative(causes, spec, path, "parallelism", "completions", "backoffLimit", "ttlSecondsAfterFinished")
    ads = spec.get("activeDeadlineSeconds")
    if ads is not None and (not isinstance(ads, int) or ads <= 0):
        invalid(causes, f"{path}.activeDeadlineSeconds", ads, "must be greater than 0")
    mode = spec.get("completionMode")
    if mode not in (None, "NonIndexed", "Indexed"):
        not_supported(causes, f"{path}.completionMode", mode, ["NonIndexed", "Indexed"])
    if mode == "Indexed" and spec.get("completions") is None:
        required(causes, f"{path}.completions")  # upstream: "when completion mode is Indexed"
    tmpl = spec.get("template") or {}
    tmpl_labels = (tmpl.get("metadata") or {}).get("labels") or {}
    check_labels(causes, tmpl_labels, f"{path}.template.metadata.labels")
    if generated_selector:
        sel = spec.get("selector")
        if not sel:
            required(causes, f"{path}.selector")
        elif any(tmpl_labels.get(k) != v for k, v in (sel.get("matchLabels") or {}).items()):
            invalid(causes, f"{path}.template.metadata.labels", tmpl_labels,
                    "`selector` does not match template `labels`")
    tspec = tmpl.get("spec") or {}
    check_pod_spec(causes, tspec, f"{path}.template.spec")
    rp = tspec.get("restartPolicy")
    if rp not in ("OnFailure", "Never"):
        not_supported(causes, f"{path}.template.spec.restartPolicy", rp, ["OnFailure", "Never"])
    pfp = spec.get("podFailurePolicy")
    if pfp is not None:
        if rp != "Never":
            invalid(causes, f"{path}.template.spec.restartPolicy", rp,
                    'only "Never" is supported when podFailurePolicy is specified')
        for i, rule in enumerate(pfp.get("rules") or []):
            rp_ = f"{path}.podFailurePolicy.rules[{i}]"
            if rule.get("action") not in ("FailJob", "FailIndex", "Ignore", "Count"):
                not_supported(causes, f"{rp_}.action", rule.get("action"), ["Count", "FailIndex", "FailJob", "Ignore"])
            codes, conds = rule.get("onExitCodes"), rule.get("onPodConditions")
            if (codes is None) == (conds is None):
                invalid(causes, rp_, rule, "specifying one of onExitCodes and onPodConditions is required")
            if codes is not None:
                if codes.get("operator") not in ("In", "NotIn"):
                    not_supported(causes, f"{rp_}.onExitCodes.operator", codes.get("operator"), ["In", "NotIn"])
                if codes.get("operator") == "In" and 0 in (codes.get("values") or []):
                    invalid(causes, f"{rp_}.onExitCodes.values[{(codes.get('values') or []).index(0)}]", 0,
                            "must not be 0 for the In operator")


def _job(causes: Causes, o: Obj) -> None:
    check_job_spec(causes, o.get("spec") or {}, "spec")


CONCURRENCY_POLICIES = ["Allow", "Forbid", "Replace"]


def _cronjob(causes: Causes, o: Obj) -> None:
    from nanokube.api.cron import CronError, parse
    spec = o.get("spec") or {}
    name = (o.get("metadata") or {}).get("name") or ""
    if len(name) > 52:
        invalid(causes, "metadata.name", name, "must be no more than 52 characters")
    sched = spec.get("schedule")
    if not sched:
        required(causes, "spec.schedule")
    else:
        try:
            parse(sched)
        except CronError as e:
            invalid(causes, "spec.schedule", sched, str(e))
        if "TZ=" in sched:
            invalid(causes, "spec.schedule", sched, "cannot use TZ or CRON_TZ in schedule, use timeZone field instead")
    tz = spec.get("timeZone")
    if tz is not None:
        import zoneinfo
        try:
            zoneinfo.ZoneInfo(tz)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            invalid(causes, "spec.timeZone", tz, "unknown time zone " + tz)
    cp = spec.get("concurrencyPolicy")
    if cp is not None and cp not in CONCURRENCY_POLICIES:
        not_supported(causes, "spec.concurrencyPolicy", cp, CONCURRENCY_POLICIES)
    _non_negative(causes, spec, "spec", "startingDeadlineSeconds", "successfulJobsHistoryLimit",
                  "failedJobsHistoryLimit")
    jt = spec.get("jobTemplate") or {}
    check_labels(causes, (jt.get("metadata") or {}).get("labels"), "spec.jobTemplate.metadata.labels")
    check_job_spec(causes, jt.get("spec") or {}, "spec.jobTemplate.spec", generated_selector=False)


SERVICE_TYPES = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]


def _service(causes: Causes, o: Obj) -> None:
    spec = o.get("spec") or {}
    t = spec.get("type", "ClusterIP")
    if t not in SERVICE_TYPES:
        not_supported(causes, "spec.type", t, SERVICE_TYPES)
    ports = spec.get("ports") or []
    if not ports and t != "ExternalName" and spec.get("clusterIP") != "None":
        required(causes, "spec.ports")
    seen: set[str] = set()
    for i, p in enumerate(ports):
        path = f"spec.ports[{i}]"
        if len(ports) > 1 and not p.get("name"):
            required(causes, f"{path}.name")
        if p.get("name"):
            if p["name"] in seen:
                duplicate(causes, f"{path}.name", p["name"])
            seen.add(p["name"])
        port = p.get("port")
        if not isinstance(port, int) or not 0 < port < 65536:
            invalid(causes, f"{path}.port", port, "must be between 1 and 65535, inclusive")
        tp = p.get("targetPort")
        if isinstance(tp, int) and not 0 < tp < 65536:
            invalid(causes, f"{path}.targetPort", tp, "must be between 1 and 65535, inclusive")
        if p.get("protocol") not in (None, "TCP", "UDP", "SCTP"):
            not_supported(causes, f"{path}.protocol", p.get("protocol"), ["SCTP", "TCP", "UDP"])
        np_ = p.get("nodePort")
        if np_ not in (None, 0) and t == "ClusterIP":
            causes.append({"reason": "FieldValueForbidden", "field": f"{path}.nodePort",
                           "message": "Forbidden: may not be used when `type` is 'ClusterIP'"})


def _configmap(causes: Causes, o: Obj) -> None:
    for field in ("data", "binaryData"):
        for k in (o.get(field) or {}):
            if not re.match(r"^[-._a-zA-Z0-9]+$", k):
                invalid(causes, f"{field}[{k}]", k, "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')")


def _pdb(causes: Causes, obj: Obj) -> None:
    spec = obj.get("spec") or {}
    if spec.get("minAvailable") is not None and spec.get("maxUnavailable") is not None:
        invalid(causes, "spec", spec, "minAvailable and maxUnavailable cannot be both set")
    for f in ("minAvailable", "maxUnavailable"):
        v = spec.get(f)
        if isinstance(v, int) and v < 0:
            invalid(causes, f"spec.{f}", v, "must be greater than or equal to 0")
        elif isinstance(v, str):
            if not v.endswith("%") or not v[:-1].isdigit():
                invalid(causes, f"spec.{f}", v, "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')")
            elif int(v[:-1]) > 100:
                invalid(causes, f"spec.{f}", v, "must not be greater than 100%")


def _quantities(causes: Causes, values: Any, path: str) -> None:
    """Each value of a ResourceList is a quantity ≥ 0."""
    from nanokube.api.quantity import parse
    for k, v in (values or {}).items():
        try:
            if parse(v) < 0:
                invalid(causes, f"{path}[{k}]", v, "must be greater than or equal to 0")
        except ValueError as e:
            invalid(causes, f"{path}[{k}]", v, str(e).split(": ")[0])


def _resourcequota(causes: Causes, o: Obj) -> None:
    _quantities(causes, (o.get("spec") or {}).get("hard"), "spec.hard")


def _limitrange(causes: Causes, o: Obj) -> None:
    """ValidateLimitRange: valid quantities, and min ≤ default request ≤ default ≤ max."""
    from nanokube.api.quantity import parse
    for i, item in enumerate((o.get("spec") or {}).get("limits") or []):
        path = f"spec.limits[{i}]"
        if item.get("type") not in ("Container", "Pod", "PersistentVolumeClaim"):
            not_supported(causes, f"{path}.type", item.get("type"), ["Container", "PersistentVolumeClaim", "Pod"])
        n = len(causes)
        for f in ("min", "max", "default", "defaultRequest", "maxLimitRequestRatio"):
            _quantities(causes, item.get(f), f"{path}.{f}")
        if len(causes) > n:
            continue
        mn, mx = item.get("min") or {}, item.get("max") or {}
        for k in set(mn) & set(mx):
            if parse(mn[k]) > parse(mx[k]):
                invalid(causes, f"{path}.min[{k}]", mn[k], f"min value {mn[k]} is greater than max value {mx[k]}")
        for f in ("default", "defaultRequest"):
            for k, v in (item.get(f) or {}).items():
                if k in mn and parse(v) < parse(mn[k]):
                    invalid(causes, f"{path}.{f}[{k}]", v, f"min value {mn[k]} is greater than {f} value {v}")
                if k in mx and parse(v) > parse(mx[k]):
                    invalid(causes, f"{path}.{f}[{k}]", v, f"{f} value {v} is greater than max value {mx[k]}")


def _hpa(causes: Causes, o: Obj) -> None:
    """ValidateHorizontalPodAutoscalerSpec (autoscaling/v2)."""
    spec = o.get("spec") or {}
    ref = spec.get("scaleTargetRef") or {}
    for f in ("kind", "name"):
        if not ref.get(f):
            required(causes, f"spec.scaleTargetRef.{f}")
    mn, mx = spec.get("minReplicas"), spec.get("maxReplicas")
    if mn is not None and mn < 1:
        invalid(causes, "spec.minReplicas", mn, "must be greater than or equal to 1")
    if not isinstance(mx, int) or mx < 1:
        invalid(causes, "spec.maxReplicas", mx, "must be greater than 0")
    elif mn is not None and mx < mn:
        invalid(causes, "spec.maxReplicas", mx, "must be greater than or equal to `minReplicas`")
    for i, m in enumerate(spec.get("metrics") or []):
        tgt = (m.get("resource") or {}).get("target") or {}
        u = tgt.get("averageUtilization")
        if m.get("type") == "Resource" and u is not None and u <= 0:
            invalid(causes, f"spec.metrics[{i}].resource.target.averageUtilization", u, "must be greater than 0")


def _networkpolicy(causes: Causes, o: Obj) -> None:
    from nanokube.network.netpol import validate as check  # the rules live next to the renderer
    check(causes, o)


def _ingress(causes: Causes, o: Obj) -> None:
    from nanokube.network.ingress import validate as check  # the rules live next to the renderer
    check(causes, o)


def _ingressclass(causes: Causes, o: Obj) -> None:
    from nanokube.network.ingress import validate_class as check
    check(causes, o)


# -- scheduling.k8s.io PriorityClass (pkg/apis/scheduling/validation) ---------------------------
HIGHEST_USER_DEFINABLE_PRIORITY = 1_000_000_000
SYSTEM_CRITICAL_PRIORITY = 2 * HIGHEST_USER_DEFINABLE_PRIORITY
# The classes every cluster creates at start (controllers/bootstrap.py): name → (value, description).
SYSTEM_PRIORITY_CLASSES = {
    "system-node-critical": (SYSTEM_CRITICAL_PRIORITY + 1000,
                             "Used for system critical pods that must not be moved from their current node."),
    "system-cluster-critical": (SYSTEM_CRITICAL_PRIORITY,
                                "Used for system critical pods that must run in the cluster, but can be moved to "
                                "another node if necessary."),
}
PREEMPTION_POLICIES = ["PreemptLowerPriority", "Never"]


def _forbidden(causes: Causes, field: str, detail: str) -> None:
    causes.append({"reason": "FieldValueForbidden", "message": f"Forbidden: {detail}", "field": field})


def _known_system_class(name: str, value: Any, global_default: bool) -> str | None:
    """IsKnownSystemPriorityClass: None if it is one, else upstream's error text."""
    if name not in SYSTEM_PRIORITY_CLASSES:
        return f"{name} is not a known system priority class"
    want = SYSTEM_PRIORITY_CLASSES[name][0]
    if value != want:
        return f"value of {name} PriorityClass must be {want}"
    if global_default:
        return f"globalDefault of {name} PriorityClass must be false"
    return None


def _priorityclass(causes: Causes, o: Obj) -> None:
    """ValidatePriorityClass: ``system-`` names are reserved for the built-in classes, user
    classes stay at or below 1,000,000,000, and the preemption policy is a known one."""
    name, value = (o.get("metadata") or {}).get("name") or "", o.get("value", 0)
    if not isinstance(value, int) or isinstance(value, bool) or not -2**31 <= value < 2**31:
        invalid(causes, "value", value, "must be a 32-bit integer")
        return
    if name.startswith("system-"):
        err = _known_system_class(name, value, bool(o.get("globalDefault")))
        if err:
            _forbidden(causes, "metadata.name",
                       f"priority class names with 'system-' prefix are reserved for system use only. error: {err}")
    elif value > HIGHEST_USER_DEFINABLE_PRIORITY:
        _forbidden(causes, "value", f"maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE_PRIORITY}")
    pp = o.get("preemptionPolicy")
    if pp is not None and pp not in PREEMPTION_POLICIES:
        if pp == "":
            required(causes, "preemptionPolicy")
        else:
            not_supported(causes, "preemptionPolicy", pp, PREEMPTION_POLICIES)


def priorityclass_update(old: Obj, new: Obj) -> Causes:
    """ValidatePriorityClassUpdate: ``value`` and ``preemptionPolicy`` never change."""
    causes: Causes = []
    if new.get("value", 0) != old.get("value", 0):
        _forbidden(causes, "value", "may not be changed in an update.")
    if new.get("preemptionPolicy") != old.get("preemptionPolicy"):
        invalid(causes, "preemptionPolicy", new.get("preemptionPolicy"), "field is immutable")
    return causes


KEY_USAGES = ["signing", "digital signature", "content commitment", "key encipherment", "key agreement",
              "data encipherment", "cert sign", "crl sign", "encipher only", "decipher only", "any", "server auth",
              "client auth", "code signing", "email protection", "s/mime", "ipsec end system", "ipsec tunnel",
              "ipsec user", "timestamping", "ocsp signing", "microsoft sgc", "netscape sgc"]
CSR_DECISIONS = ("Approved", "Denied")


def _csr(causes: Causes, o: Obj) -> None:
    """ValidateCertificateSigningRequestCreate: a PEM CERTIFICATE REQUEST, a qualified signer
    name, known key usages, and at least ten minutes of requested duration."""
    import base64
    import binascii
    spec = o.get("spec") or {}
    try:
        pem = base64.b64decode(spec.get("request") or "", validate=True).decode()
    except (binascii.Error, ValueError, UnicodeDecodeError):
        pem = ""
    if not spec.get("request"):
        required(causes, "spec.request")
    elif "-----BEGIN CERTIFICATE REQUEST-----" not in pem:
        invalid(causes, "spec.request", "[]byte{...}", "PEM block type must be CERTIFICATE REQUEST")
    signer = spec.get("signerName")
    if not signer:
        required(causes, "spec.signerName")
    elif not isinstance(signer, str) or "/" not in signer or not signer.split("/", 1)[0] or not signer.split("/", 1)[1]:
        invalid(causes, "spec.signerName", signer, "must be a fully qualified domain and path of the form 'example.com/signer-name'")
    usages = spec.get("usages") or []
    if not usages:
        required(causes, "spec.usages")
    for i, u in enumerate(usages):
        if u not in KEY_USAGES:
            not_supported(causes, f"spec.usages[{i}]", u, KEY_USAGES)
    secs = spec.get("expirationSeconds")
    if secs is not None and (not isinstance(secs, int) or secs < 600):
        invalid(causes, "spec.expirationSeconds", secs, "may not specify a duration less than 600 seconds (10 minutes)")


def csr_status_update(old: Obj, new: Obj) -> Causes:
    """ValidateCertificateSigningRequestStatusUpdate / ApprovalUpdate: Approved and Denied are
    exclusive and never removed; an issued certificate never changes."""
    causes: Causes = []
    types = [c.get("type") for c in (new.get("status") or {}).get("conditions") or []]
    for i, c in enumerate((new.get("status") or {}).get("conditions") or []):
        if not c.get("type"):
            required(causes, f"status.conditions[{i}].type")
        if c.get("status", "True") not in ("True", "False", "Unknown"):
            not_supported(causes, f"status.conditions[{i}].status", c.get("status"), ["False", "True", "Unknown"])
    if "Approved" in types and "Denied" in types:
        invalid(causes, "status.conditions", "", "Approved and Denied conditions are mutually exclusive")
    for t in CSR_DECISIONS + ("Failed",):
        if types.count(t) > 1:
            duplicate(causes, "status.conditions", t)
        if t in [c.get("type") for c in (old.get("status") or {}).get("conditions") or []] and t not in types:
            _forbidden(causes, "status.conditions", f'updates may not remove a condition of type "{t}"')
    was = (old.get("status") or {}).get("certificate")
    if was and (new.get("status") or {}).get("certificate") != was:
        _forbidden(causes, "status.certificate", "updates may not modify existing certificate content")
    return causes


_BY_RESOURCE: dict[str, Callable[[Causes, Obj], None]] = {
    "resourcequotas": _resourcequota,
    "limitranges": _limitrange,
    "horizontalpodautoscalers": _hpa,
    "poddisruptionbudgets": _pdb,
    "networkpolicies": _networkpolicy,
    "pods": _pod,
    "deployments": _deployment,
    "replicasets": _replicaset,
    "replicationcontrollers": _replicationcontroller,
    "daemonsets": _daemonset,
    "jobs": _job,
    "cronjobs": _cronjob,
    "services": _service,
    "configmaps": _configmap,
    "secrets": _configmap,
    "statefulsets": _statefulset,
    "persistentvolumeclaims": _pvc,
    "persistentvolumes": _pv,
    "storageclasses": _storageclass,
    "ingresses": _ingress,
    "ingressclasses": _ingressclass,
    "priorityclasses": _priorityclass,
    "certificatesigningrequests": _csr,
}


def validate(resource: str, obj: Obj) -> Causes:
    causes: Causes = []
    check_metadata(causes, resource, obj)
    fn = _BY_RESOURCE.get(resource)
    if fn:
        fn(causes, obj)
    return causes
