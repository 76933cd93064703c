"""Defaulting, as the apiserver applies it on create and update (upstream ``SetDefaults_*``).

Pure functions over plain dicts: they fill in what Kubernetes would, so ``kubectl get -o yaml``
shows the same fields a real cluster does and the controllers can rely on them.
"""
from __future__ import annotations

from typing import Any, Callable

Obj = dict[str, Any]


def _container(c: Obj) -> None:
    image = c.get("image", "")
    last = image.rsplit("/", 1)[-1]
    untagged = ":" not in last and "@" not in image
    c.setdefault("imagePullPolicy", "Always" if untagged or last.endswith(":latest") else "IfNotPresent")
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    c.setdefault("resources", {})
    for p in c.get("ports") or []:
        p.setdefault("protocol", "TCP")
    for e in c.get("env") or []:
        fr = (e.get("valueFrom") or {}).get("fieldRef")
        if fr is not None:
            fr.setdefault("apiVersion", "v1")
    res = c["resources"]
    # Limits without requests: requests default to the limits (upstream behaviour).
    if res.get("limits"):
        req = res.setdefault("requests", {})
        for k, v in res["limits"].items():
            req.setdefault(k, v)


def pod_spec(spec: Obj) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("enableServiceLinks", True)
    # (priority and preemptionPolicy are set by Priority admission on pod create, never on templates.)
    for c in spec.get("initContainers") or []:
        _container(c)
    for c in spec.get("containers") or []:
        _container(c)
    for c in spec.get("ephemeralContainers") or []:
        _container(c)
    spec.setdefault("tolerations", [])
    if spec.get("serviceAccountName") is None:
        spec["serviceAccountName"] = spec.get("serviceAccount") or "default"
    spec.setdefault("serviceAccount", spec["serviceAccountName"])


def _pod(o: Obj) -> None:
    pod_spec(o.setdefault("spec", {}))
    o.setdefault("status", {}).setdefault("phase", "Pending")
    o["status"].setdefault("qosClass", qos_class(o["spec"]))
    # (DefaultTolerationSeconds is admission, with the cluster's setting: apiserver/admission.py.)


def qos_class(spec: Obj) -> str:
    containers = (spec.get("containers") or []) + (spec.get("initContainers") or [])
    requests = [((c.get("resources") or {}).get("requests") or {}) for c in containers]
    limits = [((c.get("resources") or {}).get("limits") or {}) for c in containers]
    if not any(requests) and not any(limits):
        return "BestEffort"
    guaranteed = all(
        lim.get(r) is not None and req.get(r, lim.get(r)) == lim.get(r)
        for req, lim in zip(requests, limits) for r in ("cpu", "memory"))
    return "Guaranteed" if guaranteed else "Burstable"


def _template(t: Obj) -> None:
    t.setdefault("metadata", {})
    pod_spec(t.setdefault("spec", {}))


def _deployment(o: Obj) -> None:
    s = o.setdefault("spec", {})
    s.setdefault("replicas", 1)
    st = s.setdefault("strategy", {})
    st.setdefault("type", "RollingUpdate")
    if st["type"] == "RollingUpdate":
        ru = st.setdefault("rollingUpdate", {})
        ru.setdefault("maxSurge", "25%")
        ru.setdefault("maxUnavailable", "25%")
    s.setdefault("revisionHistoryLimit", 10)
    s.setdefault("progressDeadlineSeconds", 600)
    _template(s.setdefault("template", {}))
    o.setdefault("status", {})


def _job_spec(s: Obj) -> None:
    """SetDefaults_Job's spec part (also used for a CronJob's jobTemplate by the cronjob controller)."""
    # Neither set: a non-parallel Job. Only parallelism set: a work queue (completions stays unset).
    if s.get("completions") is None and s.get("parallelism") is None:
        s["completions"] = 1
    s.setdefault("parallelism", 1)
    s.setdefault("backoffLimit", 2147483647 if s.get("backoffLimitPerIndex") is not None else 6)
    s.setdefault("completionMode", "NonIndexed")
    s.setdefault("suspend", False)
    s.setdefault("manualSelector", False)
    s.setdefault("podReplacementPolicy", "Failed" if s.get("podFailurePolicy") else "TerminatingOrFailed")
    _template(s.setdefault("template", {}))


JOB_NAME_LABELS = ("job-name", "batch.kubernetes.io/job-name")
CONTROLLER_UID_LABELS = ("controller-uid", "batch.kubernetes.io/controller-uid")


def _job(o: Obj) -> None:
    s = o.setdefault("spec", {})
    _job_spec(s)
    md = o.setdefault("metadata", {})
    tmd = s["template"]["metadata"]
    # generateSelector (job strategy): the uid label makes the selector unique to this Job.
    uid = md.get("uid")
    if not s.get("manualSelector") and uid:
        labels = tmd.setdefault("labels", {})
        for k in JOB_NAME_LABELS:
            labels.setdefault(k, md.get("name", ""))
        for k in CONTROLLER_UID_LABELS:
            labels.setdefault(k, uid)
        sel = s.get("selector") or {}
        s["selector"] = sel
        sel.setdefault("matchLabels", {}).setdefault("batch.kubernetes.io/controller-uid", uid)
    # Upstream defaults again on every read from storage, so a Job ends up with these labels too.
    if tmd.get("labels") and not md.get("labels"):
        md["labels"] = dict(tmd["labels"])
    o.setdefault("status", {})


def _cronjob(o: Obj) -> None:
    s = o.setdefault("spec", {})
    s.setdefault("concurrencyPolicy", "Allow")
    s.setdefault("suspend", False)
    s.setdefault("successfulJobsHistoryLimit", 3)
    s.setdefault("failedJobsHistoryLimit", 1)
    jt = s.setdefault("jobTemplate", {})
    jt.setdefault("metadata", {})
    _template(jt.setdefault("spec", {}).setdefault("template", {}))
    o.setdefault("status", {})


def _daemonset(o: Obj) -> None:
    s = o.setdefault("spec", {})
    us = s.setdefault("updateStrategy", {})
    us.setdefault("type", "RollingUpdate")
    if us["type"] == "RollingUpdate":
        ru = us.setdefault("rollingUpdate", {})
        ru.setdefault("maxUnavailable", 1)
        ru.setdefault("maxSurge", 0)
    s.setdefault("revisionHistoryLimit", 10)
    _template(s.setdefault("template", {}))
    st = o.setdefault("status", {})
    for k in ("currentNumberScheduled", "desiredNumberScheduled", "numberMisscheduled", "numberReady"):
        st.setdefault(k, 0)


def _replicaset(o: Obj) -> None:
    s = o.setdefault("spec", {})
    s.setdefault("replicas", 1)
    _template(s.setdefault("template", {}))
    o.setdefault("status", {}).setdefault("replicas", 0)


def _replicationcontroller(o: Obj) -> None:
    """As upstream: a missing selector (and missing labels) default to the template's labels."""
    s = o.setdefault("spec", {})
    tmpl_labels = ((s.get("template") or {}).get("metadata") or {}).get("labels") or {}
    if not s.get("selector") and tmpl_labels:
        s["selector"] = dict(tmpl_labels)
    if not (o.setdefault("metadata", {}).get("labels")) and tmpl_labels:
        o["metadata"]["labels"] = dict(tmpl_labels)
    _replicaset(o)


def _statefulset(o: Obj) -> None:
    s = o.setdefault("spec", {})
    s.setdefault("replicas", 1)
    s.setdefault("podManagementPolicy", "OrderedReady")
    us = s.setdefault("updateStrategy", {})
    us.setdefault("type", "RollingUpdate")
    if us["type"] == "RollingUpdate":
        us.setdefault("rollingUpdate", {}).setdefault("partition", 0)
    s.setdefault("revisionHistoryLimit", 10)
    rp = s.setdefault("persistentVolumeClaimRetentionPolicy", {})
    rp.setdefault("whenDeleted", "Retain")
    rp.setdefault("whenScaled", "Retain")
    _template(s.setdefault("template", {}))
    for t in s.get("volumeClaimTemplates") or []:
        t.setdefault("apiVersion", "v1")
        t.setdefault("kind", "PersistentVolumeClaim")
        t.setdefault("spec", {}).setdefault("volumeMode", "Filesystem")
        t.setdefault("status", {}).setdefault("phase", "Pending")
    o.setdefault("status", {}).setdefault("replicas", 0)
    o["status"].setdefault("availableReplicas", 0)


def _pvc(o: Obj) -> None:
    o.setdefault("spec", {}).setdefault("volumeMode", "Filesystem")
    o.setdefault("status", {}).setdefault("phase", "Pending")


def _pv(o: Obj) -> None:
    s = o.setdefault("spec", {})
    s.setdefault("persistentVolumeReclaimPolicy", "Retain")
    s.setdefault("volumeMode", "Filesystem")
    o.setdefault("status", {}).setdefault("phase", "Pending")


def _storageclass(o: Obj) -> None:
    o.setdefault("reclaimPolicy", "Delete")
    o.setdefault("volumeBindingMode", "Immediate")


def _priorityclass(o: Obj) -> None:
    """SetDefaults_PriorityClass; ``value`` is a plain int32 upstream, so absent means 0."""
    o.setdefault("value", 0)
    o.setdefault("preemptionPolicy", "PreemptLowerPriority")


def _service(o: Obj) -> None:
    s = o.setdefault("spec", {})
    s.setdefault("type", "ClusterIP")
    s.setdefault("sessionAffinity", "None")
    if s["type"] in ("NodePort", "LoadBalancer"):
        s.setdefault("externalTrafficPolicy", "Cluster")
    s.setdefault("internalTrafficPolicy", "Cluster")
    s.setdefault("ipFamilies", ["IPv4"])
    s.setdefault("ipFamilyPolicy", "SingleStack")
    for p in s.get("ports") or []:
        p.setdefault("protocol", "TCP")
        if "targetPort" not in p and "port" in p:
            p["targetPort"] = p["port"]
    o.setdefault("status", {}).setdefault("loadBalancer", {})


def _namespace(o: Obj) -> None:
    o.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    o.setdefault("status", {}).setdefault("phase", "Active")
    md = o["metadata"]
    labels = md.setdefault("labels", {})
    # A missing or malformed name or labels is validation's to reject (422), not a crash here.
    if isinstance(md.get("name"), str) and isinstance(labels, dict):
        labels["kubernetes.io/metadata.name"] = md["name"]


def _secret(o: Obj) -> None:
    o.setdefault("type", "Opaque")


def _limitrange(lr: Obj) -> None:
    """SetDefaults_LimitRangeItem for ``type: Container``: default limit ← max, default
    request ← default limit, else ← min."""
    for item in (lr.get("spec") or {}).get("limits") or []:
        if item.get("type") != "Container":
            continue
        d = item.setdefault("default", {})
        dr = item.setdefault("defaultRequest", {})
        for k, v in (item.get("max") or {}).items():
            d.setdefault(k, v)
        for k, v in d.items():
            dr.setdefault(k, v)
        for k, v in (item.get("min") or {}).items():
            dr.setdefault(k, v)
        if not d:
            item.pop("default")
        if not dr:
            item.pop("defaultRequest")


def hpa_scale_up_rules(r: Obj | None) -> Obj:
    """GenerateHPAScaleUpRules: no window, the faster of +4 pods and +100 % per 15 s."""
    r = dict(r or {})
    r.setdefault("stabilizationWindowSeconds", 0)
    r.setdefault("selectPolicy", "Max")
    r.setdefault("policies", [{"type": "Pods", "value": 4, "periodSeconds": 15},
                              {"type": "Percent", "value": 100, "periodSeconds": 15}])
    return r


def hpa_scale_down_rules(r: Obj | None) -> Obj:
    """GenerateHPAScaleDownRules: a 300 s window, then down to anything per 15 s."""
    r = dict(r or {})
    r.setdefault("stabilizationWindowSeconds", 300)
    r.setdefault("selectPolicy", "Max")
    r.setdefault("policies", [{"type": "Percent", "value": 100, "periodSeconds": 15}])
    return r


def _hpa(o: Obj) -> None:
    """SetDefaults_HorizontalPodAutoscaler (autoscaling/v2): minReplicas 1, cpu at 80 %, and a
    given behavior completed with upstream's default scaling rules."""
    spec = o.setdefault("spec", {})
    spec.setdefault("minReplicas", 1)
    if not spec.get("metrics"):
        spec["metrics"] = [{"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Utilization", "averageUtilization": 80}}}]
    if spec.get("behavior") is not None:
        b = spec["behavior"]
        b["scaleUp"], b["scaleDown"] = hpa_scale_up_rules(b.get("scaleUp")), hpa_scale_down_rules(b.get("scaleDown"))


def _networkpolicy(o: Obj) -> None:
    from nanokube.network.netpol import apply_defaults as fill  # next to the renderer that reads it
    fill(o)


_BY_RESOURCE: dict[str, Callable[[Obj], None]] = {
    "horizontalpodautoscalers": _hpa,
    "networkpolicies": _networkpolicy,
    "limitranges": _limitrange,
    "pods": _pod,
    "deployments": _deployment,
    "replicasets": _replicaset,
    "replicationcontrollers": _replicationcontroller,
    "jobs": _job,
    "cronjobs": _cronjob,
    "daemonsets": _daemonset,
    "services": _service,
    "namespaces": _namespace,
    "secrets": _secret,
    "statefulsets": _statefulset,
    "persistentvolumeclaims": _pvc,
    "persistentvolumes": _pv,
    "storageclasses": _storageclass,
    "priorityclasses": _priorityclass,
}


def apply_defaults(resource: str, obj: Obj) -> None:
    fn = _BY_RESOURCE.get(resource)
    if fn:
        fn(obj)
