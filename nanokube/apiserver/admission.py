"""Admission that needs the cluster's state or its configuration (plain defaulting is in
api/defaults.py).

DefaultTolerationSeconds: pods tolerate not-ready / unreachable nodes for a while (300 s,
configurable per cluster), after which the taint manager evicts them.

ServiceAccount admission, as upstream's plugin: a pod runs as a ServiceAccount that must
exist (the ``default`` one is waited for briefly, since the controller creates it with its
namespace), and unless automounting is turned off (on the pod or the ServiceAccount) it gets
the ``kube-api-access-<random>`` projected volume — a bound token, the cluster CA
(ConfigMap ``kube-root-ca.crt``) and its namespace — mounted read-only in every container at
/var/run/secrets/kubernetes.io/serviceaccount.

Priority admission, as upstream's plugin: a new pod's ``spec.priority`` and
``spec.preemptionPolicy`` come from its PriorityClass (or the global default class, else 0);
a pod may not name a missing class or carry a different priority of its own, and only one
PriorityClass may be the global default. The decisions are pure functions of the pod and the
list of classes (``admit_priority``, ``check_default_class``); ``priority`` and
``priority_class`` only read that list from the store.
"""
from __future__ import annotations

import asyncio
import random
from typing import Any

from nanokube.api.errors import ApiError

Obj = dict[str, Any]
MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"


def default_tolerations(pod: Obj, seconds: int) -> None:
    """DefaultTolerationSeconds: tolerate not-ready and unreachable nodes for ``seconds``
    (upstream's 300), unless the pod says otherwise."""
    tols = pod["spec"].setdefault("tolerations", [])
    for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
        if not any(t.get("effect") in (None, "", "NoExecute") and (t.get("key") == key or
                   (not t.get("key") and t.get("operator") == "Exists")) for t in tols):
            tols.append({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds})


async def service_account(store: Any, pod: Obj, *, rng: random.Random, wait: float = 2.0) -> None:
    md, spec = pod["metadata"], pod["spec"]
    ns, sa_name = md["namespace"], spec.get("serviceAccountName") or "default"
    key = f"/registry/serviceaccounts/{ns}/{sa_name}"
    got = store.get(key)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + (wait if sa_name == "default" else 0)
    while got is None and loop.time() < deadline:
        await asyncio.sleep(0.05)
        got = store.get(key)
    if got is None:
        raise ApiError(403, "Forbidden", f'pods "{md.get("name", "")}" is forbidden: error looking up service account '
                                         f'{ns}/{sa_name}: serviceaccount "{sa_name}" not found',
                       details={"name": md.get("name", ""), "kind": "pods"})
    automount = spec.get("automountServiceAccountToken")
    if automount is None:
        automount = got[0].get("automountServiceAccountToken")
    if automount is False:
        return
    containers = [c for k in ("initContainers", "containers", "ephemeralContainers") for c in spec.get(k) or []]
    if any(m.get("mountPath") == MOUNT_PATH for c in containers for m in c.get("volumeMounts") or []):
        return
    name = "kube-api-access-" + "".join(rng.choice(NAME_CHARS) for _ in range(5))
    spec.setdefault("volumes", []).append({"name": name, "projected": {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}})
    for c in containers:
        c.setdefault("volumeMounts", []).append({"name": name, "readOnly": True, "mountPath": MOUNT_PATH})


# -- Priority -----------------------------------------------------------------------------------
PRIORITY_CLASSES = "/registry/priorityclasses/"


def _pod_forbidden(pod: Obj, message: str) -> ApiError:
    name = pod["metadata"].get("name", "")
    return ApiError(403, "Forbidden", f'pods "{name}" is forbidden: {message}', details={"name": name, "kind": "pods"})


def default_priority_class(classes: list[Obj]) -> Obj | None:
    """The global default class; if a race left several, the one with the lowest value (as upstream)."""
    defaults = [c for c in classes if c.get("globalDefault")]
    return min(defaults, key=lambda c: (c.get("value", 0), c["metadata"]["name"])) if defaults else None


def admit_priority(pod: Obj, classes: list[Obj]) -> None:
    """Resolve a new pod's priority from its PriorityClass (raises 403 as upstream)."""
    spec = pod["spec"]
    name = spec.get("priorityClassName")
    if not name:
        pc = default_priority_class(classes)
        priority, policy = (pc.get("value", 0), pc.get("preemptionPolicy")) if pc else (0, "PreemptLowerPriority")
        if pc:
            spec["priorityClassName"] = pc["metadata"]["name"]
    else:
        pc = next((c for c in classes if c["metadata"]["name"] == name), None)
        if pc is None:
            raise _pod_forbidden(pod, f"no PriorityClass with name {name} was found")
        priority, policy = pc.get("value", 0), pc.get("preemptionPolicy")
    if spec.get("priority") is not None and spec["priority"] != priority:
        raise _pod_forbidden(pod, f"the integer value of priority ({spec['priority']}) must not be provided in pod "
                                  f"spec; priority admission controller computed {priority} from the given "
                                  "PriorityClass name")
    spec["priority"] = priority
    if policy:
        if spec.get("preemptionPolicy") is not None and spec["preemptionPolicy"] != policy:
            raise _pod_forbidden(pod, f"the string value of PreemptionPolicy ({spec['preemptionPolicy']}) must not be "
                                      f"provided in pod spec; priority admission controller computed {policy} from "
                                      "the given PriorityClass name")
        spec["preemptionPolicy"] = policy


def keep_priority(old: Obj, new: Obj) -> None:
    """On pod update, an omitted priority / preemptionPolicy keeps the admitted one (a changed
    one is refused by the pod update validation)."""
    o, n = old.get("spec") or {}, new.setdefault("spec", {})
    for f in ("priority", "preemptionPolicy"):
        if n.get(f) is None and o.get(f) is not None:
            n[f] = o[f]


def check_default_class(pc: Obj, classes: list[Obj], *, update: bool) -> None:
    """Only one PriorityClass may be the global default (``classes`` as stored before this write)."""
    if not pc.get("globalDefault"):
        return
    dpc = default_priority_class(classes)
    name = pc["metadata"].get("name", "")
    if dpc is not None and (not update or dpc["metadata"]["name"] != name):
        raise ApiError(403, "Forbidden", f'priorityclasses.scheduling.k8s.io "{name}" is forbidden: PriorityClass '
                                         f'{dpc["metadata"]["name"]} is already marked as default. Only one default '
                                         "can exist",
                       details={"name": name, "group": "scheduling.k8s.io", "kind": "priorityclasses"})


def _classes(store: Any) -> list[Obj]:
    items, _ = store.list(PRIORITY_CLASSES)
    return [v for _, v, _ in items]


def priority(store: Any, pod: Obj) -> None:
    admit_priority(pod, _classes(store))


def priority_class(store: Any, pc: Obj, *, update: bool) -> None:
    check_default_class(pc, _classes(store), update=update)


def priority_class_delete(name: str) -> None:
    """The built-in classes cannot be deleted (upstream's priorityclass REST storage says so)."""
    from nanokube.api.validation import SYSTEM_PRIORITY_CLASSES
    if name in SYSTEM_PRIORITY_CLASSES:
        raise ApiError(403, "Forbidden", f'priorityclasses.scheduling.k8s.io "{name}" is forbidden: this is a system '
                                         "priority class and cannot be deleted",
                       details={"name": name, "group": "scheduling.k8s.io", "kind": "priorityclasses"})
