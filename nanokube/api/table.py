"""Server-side printing: ``meta.k8s.io/v1`` Tables with kube-apiserver's columns.

``kubectl get`` asks for ``as=Table`` and prints whatever columns the server sends, so the
columns (and the ``STATUS`` logic of pods, the ``PORT(S)`` of services, ...) live here, one
small function per resource, mirroring upstream's ``printers.go``. Priority-1 columns appear
only with ``-o wide``.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Callable

Obj = dict[str, Any]


def human_duration(seconds: float) -> str:
    """Upstream's duration.HumanDuration."""
    s = int(seconds)
    if s < 0:
        return "<invalid>"
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = s // 3600
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    d = h // 24
    if h < 24 * 8:
        return f"{d}d{h % 24}h" if h % 24 else f"{d}d"
    if h < 24 * 365 * 2:
        return f"{d}d"
    if h < 24 * 365 * 8:
        y = d // 365
        return f"{y}y{d % 365}d" if d % 365 else f"{y}y"
    return f"{d // 365}y"


def _ts(s: str | None) -> dt.datetime | None:
    if not s:
        return None
    return dt.datetime.strptime(s[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.timezone.utc)


def age(obj: Obj, now: dt.datetime, field: str | None = None) -> str:
    t = _ts(field if field is not None else (obj.get("metadata") or {}).get("creationTimestamp"))
    return "<unknown>" if t is None else human_duration((now - t).total_seconds())


def _col(name: str, typ: str = "string", *, priority: int = 0, fmt: str = "", desc: str = "") -> Obj:
    return {"name": name, "type": typ, "format": fmt, "description": desc or name, "priority": priority}


def _pod(p: Obj, now: dt.datetime) -> list[Any]:
    spec, st = p.get("spec") or {}, p.get("status") or {}
    statuses = st.get("containerStatuses") or []
    sidecar_names = {c["name"] for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"}
    # Sidecars (restartable init containers) count in READY, as upstream prints it.
    total = len(spec.get("containers") or []) + len(sidecar_names)
    ready = sum(1 for c in statuses if c.get("ready")) + sum(
        1 for c in st.get("initContainerStatuses") or [] if c.get("name") in sidecar_names and c.get("ready"))
    restarts = sum(c.get("restartCount", 0) for c in statuses)
    last_restart = None
    reason = st.get("reason") or st.get("phase") or "Unknown"
    for i, c in enumerate(st.get("initContainerStatuses") or []):
        state = c.get("state") or {}
        if "terminated" in state and state["terminated"].get("exitCode") == 0:
            continue
        if c.get("name") in sidecar_names and "running" in state and c.get("started"):
            continue
        if "terminated" in state:
            reason = "Init:" + (state["terminated"].get("reason") or f"Signal:{state['terminated'].get('signal')}")
        elif "waiting" in state and state["waiting"].get("reason") not in (None, "PodInitializing"):
            reason = "Init:" + state["waiting"]["reason"]
        else:
            reason = f"Init:{i}/{len(spec.get('initContainers') or [])}"
        break
    else:
        has_running = False
        for c in reversed(statuses):
            state = c.get("state") or {}
            term = (c.get("lastState") or {}).get("terminated")
            if term and term.get("finishedAt"):
                t = _ts(term["finishedAt"])
                if t and (last_restart is None or t > last_restart):
                    last_restart = t
            if (state.get("waiting") or {}).get("reason"):
                reason = state["waiting"]["reason"]
            elif "terminated" in state:
                reason = state["terminated"].get("reason") or (
                    f"Signal:{state['terminated']['signal']}" if state["terminated"].get("signal")
                    else f"ExitCode:{state['terminated'].get('exitCode')}")
            elif "running" in state and c.get("ready"):
                has_running = True
        if reason == "Completed" and has_running:
            reason = "Running"
        if reason == "Running" and not any("running" in (c.get("state") or {}) for c in statuses) and statuses:
            reason = "NotReady"
    if (p.get("metadata") or {}).get("deletionTimestamp"):
        reason = "Unknown" if st.get("reason") == "NodeLost" else "Terminating"
    rs = str(restarts)
    if last_restart is not None:
        rs = f"{restarts} ({human_duration((now - last_restart).total_seconds())} ago)"
    nominated = st.get("nominatedNodeName") or "<none>"
    gates = spec.get("readinessGates")
    gate_s = "<none>"
    if gates:
        conds = {c["type"]: c["status"] for c in st.get("conditions") or []}
        gate_s = f"{sum(1 for g in gates if conds.get(g['conditionType']) == 'True')}/{len(gates)}"
    return [p["metadata"]["name"], f"{ready}/{total}", reason, rs, age(p, now),
            st.get("podIP") or "<none>", spec.get("nodeName") or "<none>", nominated, gate_s]


POD_COLS = [_col("Name", fmt="name"), _col("Ready"), _col("Status"), _col("Restarts"), _col("Age"),
            _col("IP", priority=1), _col("Node", priority=1), _col("Nominated Node", priority=1),
            _col("Readiness Gates", priority=1)]


def _node(n: Obj, now: dt.datetime) -> list[Any]:
    st = n.get("status") or {}
    conds = {c["type"]: c["status"] for c in st.get("conditions") or []}
    status = "Unknown" if "Ready" not in conds else ("Ready" if conds["Ready"] == "True" else "NotReady")
    if (n.get("spec") or {}).get("unschedulable"):
        status += ",SchedulingDisabled"
    labels = (n.get("metadata") or {}).get("labels") or {}
    roles = sorted(k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/") and "/" in k)
    roles += [v for k, v in labels.items() if k == "kubernetes.io/role"]
    addrs = {a["type"]: a["address"] for a in st.get("addresses") or []}
    info = st.get("nodeInfo") or {}
    return [n["metadata"]["name"], status, ",".join(roles) or "<none>", age(n, now), info.get("kubeletVersion", ""),
            addrs.get("InternalIP", "<none>"), addrs.get("ExternalIP", "<none>"), info.get("osImage", "<unknown>"),
            info.get("kernelVersion", "<unknown>"), info.get("containerRuntimeVersion", "<unknown>")]


NODE_COLS = [_col("Name", fmt="name"), _col("Status"), _col("Roles"), _col("Age"), _col("Version"),
             _col("Internal-IP", priority=1), _col("External-IP", priority=1), _col("OS-Image", priority=1),
             _col("Kernel-Version", priority=1), _col("Container-Runtime", priority=1)]


def _selector_s(sel: dict[str, str] | None) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted((sel or {}).items())) or "<none>"


def _service(s: Obj, now: dt.datetime) -> list[Any]:
    spec = s.get("spec") or {}
    ports = []
    for p in spec.get("ports") or []:
        ports.append(f"{p['port']}:{p['nodePort']}/{p.get('protocol', 'TCP')}" if p.get("nodePort")
                     else f"{p['port']}/{p.get('protocol', 'TCP')}")
    ext = spec.get("externalIPs") or []
    lb = [i.get("ip") or i.get("hostname") for i in ((s.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []]
    if spec.get("type") == "LoadBalancer":
        external = ",".join(lb + ext) or "<pending>"
    elif spec.get("type") == "ExternalName":
        external = spec.get("externalName", "")
    else:
        external = ",".join(ext) or "<none>"
    return [s["metadata"]["name"], spec.get("type", "ClusterIP"), spec.get("clusterIP") or "<none>", external,
            ",".join(ports) or "<none>", age(s, now), _selector_s(spec.get("selector"))]


SERVICE_COLS = [_col("Name", fmt="name"), _col("Type"), _col("Cluster-IP"), _col("External-IP"), _col("Port(s)"),
                _col("Age"), _col("Selector", priority=1)]


def _endpoints(e: Obj, now: dt.datetime) -> list[Any]:
    eps = []
    for s in e.get("subsets") or []:
        ports = s.get("ports") or [{}]
        for a in s.get("addresses") or []:
            for p in ports:
                eps.append(f"{a['ip']}:{p['port']}" if p.get("port") else a["ip"])
    shown = ",".join(eps[:3]) + (f" + {len(eps) - 3} more..." if len(eps) > 3 else "")
    return [e["metadata"]["name"], shown or "<none>", age(e, now)]


def _containers(spec: Obj) -> tuple[str, str]:
    cs = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    return ",".join(c.get("name", "") for c in cs), ",".join(c.get("image", "") for c in cs)


def _deployment(d: Obj, now: dt.datetime) -> list[Any]:
    spec, st = d.get("spec") or {}, d.get("status") or {}
    names, images = _containers(spec)
    return [d["metadata"]["name"], f"{st.get('readyReplicas', 0)}/{spec.get('replicas', 0)}", st.get("updatedReplicas", 0),
            st.get("availableReplicas", 0), age(d, now), names, images,
            _label_selector_s(spec.get("selector"))]


def _label_selector_s(sel: Obj | None) -> str:
    from nanokube.api.selectors import to_string
    return to_string(sel) or "<none>"


def _rc(r: Obj, now: dt.datetime) -> list[Any]:
    spec, st = r.get("spec") or {}, r.get("status") or {}
    names, images = _containers(spec)
    return [r["metadata"]["name"], spec.get("replicas", 0), st.get("replicas", 0), st.get("readyReplicas", 0),
            age(r, now), names, images, _selector_s(spec.get("selector"))]


def _replicaset(r: Obj, now: dt.datetime) -> list[Any]:
    spec, st = r.get("spec") or {}, r.get("status") or {}
    names, images = _containers(spec)
    return [r["metadata"]["name"], spec.get("replicas", 0), st.get("replicas", 0), st.get("readyReplicas", 0),
            age(r, now), names, images, _label_selector_s(spec.get("selector"))]


def _cond_true(st: Obj, typ: str) -> bool:
    return any(c.get("type") == typ and c.get("status") == "True" for c in st.get("conditions") or [])


def _job(j: Obj, now: dt.datetime) -> list[Any]:
    spec, st = j.get("spec") or {}, j.get("status") or {}
    succeeded = st.get("succeeded", 0)
    if spec.get("completions") is not None:
        completions = f"{succeeded}/{spec['completions']}"
    elif (spec.get("parallelism") or 0) > 1:
        completions = f"{succeeded}/1 of {spec['parallelism']}"
    else:
        completions = f"{succeeded}/1"
    start, end = _ts(st.get("startTime")), _ts(st.get("completionTime"))
    duration = "" if start is None else human_duration(((end or now) - start).total_seconds())
    if _cond_true(st, "Complete"):
        status = "Complete"
    elif _cond_true(st, "Failed"):
        status = "Failed"
    elif (j.get("metadata") or {}).get("deletionTimestamp"):
        status = "Terminating"
    elif _cond_true(st, "Suspended"):
        status = "Suspended"
    elif _cond_true(st, "FailureTarget"):
        status = "FailureTarget"
    elif _cond_true(st, "SuccessCriteriaMet"):
        status = "SuccessCriteriaMet"
    else:
        status = "Running"
    names, images = _containers(spec)
    return [j["metadata"]["name"], status, completions, duration, age(j, now), names, images,
            _label_selector_s(spec.get("selector"))]


def _cronjob(c: Obj, now: dt.datetime) -> list[Any]:
    spec, st = c.get("spec") or {}, c.get("status") or {}
    jspec = (spec.get("jobTemplate") or {}).get("spec") or {}
    names, images = _containers(jspec)
    last = age(c, now, st["lastScheduleTime"]) if st.get("lastScheduleTime") else "<none>"
    suspend = spec.get("suspend")
    return [c["metadata"]["name"], spec.get("schedule", ""), spec.get("timeZone") or "<none>",
            "<unset>" if suspend is None else ("True" if suspend else "False"), len(st.get("active") or []), last,
            age(c, now), names, images, _label_selector_s(jspec.get("selector"))]


def _daemonset(d: Obj, now: dt.datetime) -> list[Any]:
    spec, st = d.get("spec") or {}, d.get("status") or {}
    names, images = _containers(spec)
    return [d["metadata"]["name"], st.get("desiredNumberScheduled", 0), st.get("currentNumberScheduled", 0),
            st.get("numberReady", 0), st.get("updatedNumberScheduled", 0), st.get("numberAvailable", 0),
            _selector_s(((spec.get("template") or {}).get("spec") or {}).get("nodeSelector")), age(d, now),
            names, images, _label_selector_s(spec.get("selector"))]


def _statefulset(d: Obj, now: dt.datetime) -> list[Any]:
    spec, st = d.get("spec") or {}, d.get("status") or {}
    names, images = _containers(spec)
    return [d["metadata"]["name"], f"{st.get('readyReplicas', 0)}/{spec.get('replicas', 0)}", age(d, now), names, images]


def _modes(modes: list[str] | None) -> str:
    short = {"ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX", "ReadWriteMany": "RWX", "ReadWriteOncePod": "RWOP"}
    return ",".join(short.get(m, m) for m in modes or [])


def _pvc(c: Obj, now: dt.datetime) -> list[Any]:
    spec, st = c.get("spec") or {}, c.get("status") or {}
    phase = "Terminating" if c["metadata"].get("deletionTimestamp") else st.get("phase", "")
    bound = bool(spec.get("volumeName"))
    return [c["metadata"]["name"], phase, spec.get("volumeName", ""),
            (st.get("capacity") or {}).get("storage", "") if bound else "",
            _modes(st.get("accessModes")) if bound else "", spec.get("storageClassName") or "",
            spec.get("volumeAttributesClassName") or "<unset>", age(c, now), spec.get("volumeMode", "")]


def _pv(v: Obj, now: dt.datetime) -> list[Any]:
    spec, st = v.get("spec") or {}, v.get("status") or {}
    ref = spec.get("claimRef") or {}
    phase = "Terminating" if v["metadata"].get("deletionTimestamp") else st.get("phase", "")
    return [v["metadata"]["name"], (spec.get("capacity") or {}).get("storage", ""), _modes(spec.get("accessModes")),
            spec.get("persistentVolumeReclaimPolicy", ""), phase,
            f"{ref.get('namespace', '')}/{ref.get('name', '')}" if ref else "", spec.get("storageClassName") or "",
            spec.get("volumeAttributesClassName") or "<unset>", st.get("reason", ""), age(v, now),
            spec.get("volumeMode", "")]


def _ingress(o: Obj, now: dt.datetime) -> list[Any]:
    # upstream printers.go printIngress: hosts "*" for none, ports "80" or "80, 443" with TLS
    spec = o.get("spec") or {}
    hosts = [r.get("host") or "*" for r in spec.get("rules") or []] or ["*"]
    lb = ((o.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    addrs = ",".join(i.get("ip") or i.get("hostname") or "" for i in lb)
    return [o["metadata"]["name"], spec.get("ingressClassName") or "<none>", ",".join(hosts), addrs,
            "80, 443" if spec.get("tls") else "80", age(o, now)]


def _ingressclass(o: Obj, now: dt.datetime) -> list[Any]:
    spec = o.get("spec") or {}
    p = spec.get("parameters")
    params = f"{p.get('kind', '')}/{p.get('name', '')}" if p else "<none>"
    return [o["metadata"]["name"], spec.get("controller", ""), params, age(o, now)]


def _priorityclass(o: Obj, now: dt.datetime) -> list[Any]:
    # upstream printers.go printPriorityClass: NAME VALUE GLOBAL-DEFAULT AGE PREEMPTIONPOLICY
    return [o["metadata"]["name"], o.get("value", 0), bool(o.get("globalDefault", False)), age(o, now),
            o.get("preemptionPolicy") or "PreemptLowerPriority"]


def _csr(o: Obj, now: dt.datetime) -> list[Any]:
    # printers.go printCertificateSigningRequest: NAME AGE SIGNERNAME REQUESTOR REQUESTEDDURATION CONDITION
    spec, status = o.get("spec") or {}, o.get("status") or {}
    conds = [c.get("type") for c in status.get("conditions") or [] if c.get("status", "True") == "True"]
    cond = ",".join([t for t in conds if t in ("Approved", "Denied")] + [t for t in conds if t == "Failed"])
    if status.get("certificate"):
        cond = (cond + ",Issued") if cond else "Issued"
    secs = spec.get("expirationSeconds")
    return [o["metadata"]["name"], age(o, now), spec.get("signerName", ""), spec.get("username", ""),
            human_duration(secs) if secs else "<none>", cond or "Pending"]


def _storageclass(c: Obj, now: dt.datetime) -> list[Any]:
    name = c["metadata"]["name"]
    if (c["metadata"].get("annotations") or {}).get("storageclass.kubernetes.io/is-default-class") == "true":
        name += " (default)"
    return [name, c.get("provisioner", ""), c.get("reclaimPolicy", "Delete"), c.get("volumeBindingMode", "Immediate"),
            bool(c.get("allowVolumeExpansion", False)), age(c, now)]


def _event(e: Obj, now: dt.datetime) -> list[Any]:
    io = e.get("involvedObject") or {}
    last = e.get("lastTimestamp") or e.get("eventTime") or (e.get("metadata") or {}).get("creationTimestamp")
    return [age(e, now, last), e.get("type", ""), e.get("reason", ""),
            f"{(io.get('kind') or '').lower()}/{io.get('name', '')}", e.get("message", "").strip()]


def _binding(b: Obj, now: dt.datetime) -> list[Any]:
    subs = b.get("subjects") or []
    pick = lambda kind: ", ".join((f"{s.get('namespace', '')}/{s.get('name', '')}" if kind == "ServiceAccount"  # noqa: E731
                                   else s.get("name", "")) for s in subs if s.get("kind") == kind)
    ref = b.get("roleRef") or {}
    return [b["metadata"]["name"], f"{ref.get('kind', '')}/{ref.get('name', '')}", age(b, now), pick("User"),
            pick("Group"), pick("ServiceAccount")]


ROLE_COLS = ([_col("Name", fmt="name"), _col("Created At", "date")],
             lambda o, now: [o["metadata"]["name"], o["metadata"].get("creationTimestamp") or ""])
BINDING_COLS = ([_col("Name", fmt="name"), _col("Role"), _col("Age"), _col("Users", priority=1),
                 _col("Groups", priority=1), _col("ServiceAccounts", priority=1)], _binding)

def _endpointslice(s: Obj, now: dt.datetime) -> list[Any]:
    """upstream's printEndpointSlice: up to 3 ready addresses, then "+ N more..."."""
    ports = ",".join(str(p.get("port")) for p in s.get("ports") or []) or "<unset>"
    addrs = [a for e in s.get("endpoints") or [] for a in e.get("addresses") or []]
    shown = ",".join(addrs[:3]) + (f" + {len(addrs) - 3} more..." if len(addrs) > 3 else "") if addrs else "<unset>"
    return [s["metadata"]["name"], s.get("addressType", ""), ports, shown, age(s, now)]


def _pdb(p: Obj, now: dt.datetime) -> list[Any]:
    spec, st = p.get("spec") or {}, p.get("status") or {}
    na = lambda v: "N/A" if v is None else str(v)  # noqa: E731
    return [p["metadata"]["name"], na(spec.get("minAvailable")), na(spec.get("maxUnavailable")),
            st.get("disruptionsAllowed", 0), age(p, now)]


def _quota(o: Obj, now: dt.datetime) -> list[Any]:
    """printResourceQuota: ``name: used/hard`` pairs, limits.* in their own column."""
    st = o.get("status") or {}
    hard, used = st.get("hard") or {}, st.get("used") or {}
    req, lim = [], []
    for k in sorted(hard):
        (lim if k.split(".")[0] == "limits" and "." in k else req).append(f"{k}: {used.get(k, '0')}/{hard[k]}")
    return [o["metadata"]["name"], age(o, now), ", ".join(req), ", ".join(lim)]


def _hpa_targets(spec: Obj, st: Obj) -> str:
    """formatHPAMetrics (autoscaling/v2), for Resource metrics; other types by name only."""
    specs, statuses = spec.get("metrics") or [], st.get("currentMetrics") or []
    if not specs:
        return "<none>"
    out = []
    for i, m in enumerate(specs):
        res, cur = m.get("resource") or {}, ((statuses[i] if i < len(statuses) else {}).get("resource") or {}).get("current") or {}
        tgt = res.get("target") or {}
        if m.get("type") != "Resource":
            out.append(f"{m.get('type', '')}: <unknown>")
        elif tgt.get("averageValue") is not None:
            out.append(f"{res.get('name')}: {cur.get('averageValue', '<unknown>')}/{tgt['averageValue']}")
        else:
            c = f"{cur['averageUtilization']}%" if cur.get("averageUtilization") is not None else "<unknown>"
            t = f"{tgt['averageUtilization']}%" if tgt.get("averageUtilization") is not None else "<auto>"
            out.append(f"{res.get('name')}: {c}/{t}")
    return ", ".join(out[:2]) + (f" + {len(out) - 2} more..." if len(out) > 2 else "")


def _hpa(o: Obj, now: dt.datetime) -> list[Any]:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    ref = spec.get("scaleTargetRef") or {}
    mn = spec.get("minReplicas")
    return [o["metadata"]["name"], f"{ref.get('kind', '')}/{ref.get('name', '')}", _hpa_targets(spec, st),
            "<unset>" if mn is None else str(mn), spec.get("maxReplicas", 0), st.get("currentReplicas", 0), age(o, now)]


SIMPLE: dict[str, tuple[list[Obj], Callable[[Obj, dt.datetime], list[Any]]]] = {
    "resourcequotas": ([_col("Name", fmt="name"), _col("Age"), _col("Request"), _col("Limit")], _quota),
    "limitranges": ([_col("Name", fmt="name"), _col("Created At", "date")],
                    lambda o, now: [o["metadata"]["name"], o["metadata"].get("creationTimestamp") or ""]),
    "horizontalpodautoscalers": ([_col("Name", fmt="name"), _col("Reference"), _col("Targets"), _col("MinPods"),
                                  _col("MaxPods", "integer"), _col("Replicas", "integer"), _col("Age")], _hpa),
    "endpointslices": ([_col("Name", fmt="name"), _col("AddressType"), _col("Ports"), _col("Endpoints"), _col("Age")],
                       lambda o, now: _endpointslice(o, now)),
    "poddisruptionbudgets": ([_col("Name", fmt="name"), _col("Min Available"), _col("Max Unavailable"),
                              _col("Allowed Disruptions", "integer"), _col("Age")], _pdb),
    # upstream printers.go: NAME, POD-SELECTOR (an empty selector prints "<none>"), AGE
    "networkpolicies": ([_col("Name", fmt="name"), _col("Pod-Selector"), _col("Age")],
                        lambda o, now: [o["metadata"]["name"],
                                        _label_selector_s((o.get("spec") or {}).get("podSelector")), age(o, now)]),
    "ingresses": ([_col("Name", fmt="name"), _col("Class"), _col("Hosts"), _col("Address"), _col("Ports"),
                   _col("Age")], _ingress),
    "ingressclasses": ([_col("Name", fmt="name"), _col("Controller"), _col("Parameters"), _col("Age")], _ingressclass),
    "certificatesigningrequests": ([_col("Name", fmt="name"), _col("Age"), _col("SignerName"), _col("Requestor"),
                                    _col("RequestedDuration"), _col("Condition")], _csr),
    "priorityclasses": ([_col("Name", fmt="name"), _col("Value", "integer"), _col("Global-Default", "boolean"),
                         _col("Age"), _col("PreemptionPolicy")], _priorityclass),
    "roles": ROLE_COLS, "clusterroles": ROLE_COLS, "rolebindings": BINDING_COLS, "clusterrolebindings": BINDING_COLS,
    "pods": (POD_COLS, _pod),
    "nodes": (NODE_COLS, _node),
    "services": (SERVICE_COLS, _service),
    "endpoints": ([_col("Name", fmt="name"), _col("Endpoints"), _col("Age")], _endpoints),
    "deployments": ([_col("Name", fmt="name"), _col("Ready"), _col("Up-to-date", "integer"), _col("Available", "integer"),
                     _col("Age"), _col("Containers", priority=1), _col("Images", priority=1),
                     _col("Selector", priority=1)], _deployment),
    "replicationcontrollers": ([_col("Name", fmt="name"), _col("Desired", "integer"), _col("Current", "integer"),
                                _col("Ready", "integer"), _col("Age"), _col("Containers", priority=1),
                                _col("Images", priority=1), _col("Selector", priority=1)], lambda o, now: _rc(o, now)),
    "replicasets": ([_col("Name", fmt="name"), _col("Desired", "integer"), _col("Current", "integer"),
                     _col("Ready", "integer"), _col("Age"), _col("Containers", priority=1),
                     _col("Images", priority=1), _col("Selector", priority=1)], _replicaset),
    "jobs": ([_col("Name", fmt="name"), _col("Status"), _col("Completions"), _col("Duration"), _col("Age"),
              _col("Containers", priority=1), _col("Images", priority=1), _col("Selector", priority=1)], _job),
    "cronjobs": ([_col("Name", fmt="name"), _col("Schedule"), _col("Timezone"), _col("Suspend", "boolean"),
                  _col("Active", "integer"), _col("Last Schedule"), _col("Age"), _col("Containers", priority=1),
                  _col("Images", priority=1), _col("Selector", priority=1)], _cronjob),
    "daemonsets": ([_col("Name", fmt="name"), _col("Desired", "integer"), _col("Current", "integer"),
                    _col("Ready", "integer"), _col("Up-to-date", "integer"), _col("Available", "integer"),
                    _col("Node Selector"), _col("Age"), _col("Containers", priority=1), _col("Images", priority=1),
                    _col("Selector", priority=1)], _daemonset),
    "statefulsets": ([_col("Name", fmt="name"), _col("Ready"), _col("Age"), _col("Containers", priority=1),
                      _col("Images", priority=1)], _statefulset),
    "persistentvolumeclaims": ([_col("Name", fmt="name"), _col("Status"), _col("Volume"), _col("Capacity"),
                                _col("Access Modes"), _col("StorageClass"), _col("VolumeAttributesClass"), _col("Age"),
                                _col("VolumeMode", priority=1)], _pvc),
    "persistentvolumes": ([_col("Name", fmt="name"), _col("Capacity"), _col("Access Modes"), _col("Reclaim Policy"),
                           _col("Status"), _col("Claim"), _col("StorageClass"), _col("VolumeAttributesClass"),
                           _col("Reason"), _col("Age"), _col("VolumeMode", priority=1)], _pv),
    "storageclasses": ([_col("Name", fmt="name"), _col("Provisioner"), _col("ReclaimPolicy"),
                        _col("VolumeBindingMode"), _col("AllowVolumeExpansion", "boolean"), _col("Age")], _storageclass),
    "namespaces": ([_col("Name", fmt="name"), _col("Status"), _col("Age")],
                   lambda o, now: [o["metadata"]["name"], (o.get("status") or {}).get("phase", ""), age(o, now)]),
    "configmaps": ([_col("Name", fmt="name"), _col("Data", "integer"), _col("Age")],
                   lambda o, now: [o["metadata"]["name"], len(o.get("data") or {}) + len(o.get("binaryData") or {}),
                                   age(o, now)]),
    "secrets": ([_col("Name", fmt="name"), _col("Type"), _col("Data", "integer"), _col("Age")],
                lambda o, now: [o["metadata"]["name"], o.get("type", ""), len(o.get("data") or {}), age(o, now)]),
    "events": ([_col("Last Seen"), _col("Type"), _col("Reason"), _col("Object"), _col("Message")], _event),
    "leases": ([_col("Name", fmt="name"), _col("Holder"), _col("Age")],
               lambda o, now: [o["metadata"]["name"], (o.get("spec") or {}).get("holderIdentity", ""), age(o, now)]),
    "serviceaccounts": ([_col("Name", fmt="name"), _col("Secrets", "integer"), _col("Age")],
                        lambda o, now: [o["metadata"]["name"], len(o.get("secrets") or []), age(o, now)]),
}
DEFAULT = ([_col("Name", fmt="name"), _col("Age")], lambda o, now: [o["metadata"]["name"], age(o, now)])


def to_table(resource: str, objs: list[Obj], *, include_object: str = "PartialObjectMetadata",
             now: dt.datetime | None = None) -> Obj:
    now = now or dt.datetime.now(dt.timezone.utc)
    cols, row = SIMPLE.get(resource, DEFAULT)
    rows = []
    for o in objs:
        r: Obj = {"cells": row(o, now)}
        if include_object == "Object":
            r["object"] = o
        elif include_object != "None":
            r["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                           "metadata": o.get("metadata") or {}}
        rows.append(r)
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {}, "columnDefinitions": cols, "rows": rows}
