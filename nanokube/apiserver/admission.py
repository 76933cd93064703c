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
