"""The Eviction API (``POST pods/<name>/eviction``, policy/v1 Eviction): a delete that
respects PodDisruptionBudgets, as ``kubectl drain`` uses it.

A pod covered by a budget with no disruption left gets 429 TooManyRequests (drain retries);
otherwise one disruption is spent — recorded in the budget's ``status.disruptedPods`` with a
compare-and-swap on its resourceVersion, so concurrent evictions cannot both take the last
one — and the pod is deleted with the Eviction's deleteOptions. Pods already terminating,
not yet running, or unhealthy while the budget is met are evicted without spending.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from nanokube.api.errors import ApiError, Conflict, bad_request
from nanokube.controllers.base import is_pod_ready
from nanokube.controllers.disruption import budget_status, selected_pods

Obj = dict[str, Any]
SUCCESS = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}


async def evict(registry: Any, name: str, namespace: str, body: Obj | None) -> Obj:
    body = body or {}
    if not isinstance(body, dict):
        raise bad_request("the body of the request was not a JSON object")
    if (body.get("metadata") or {}).get("name") not in (None, name):
        raise bad_request(f"name in URL does not match name in Eviction object")
    opts = body.get("deleteOptions") or {}
    pod = registry.get("pods", name, namespace=namespace)

    async def delete() -> Obj:
        await registry.delete("pods", name, namespace=namespace, grace_period_seconds=opts.get("gracePeriodSeconds"),
                              preconditions=opts.get("preconditions"), dry_run=bool(opts.get("dryRun")))
        return SUCCESS

    if pod["metadata"].get("deletionTimestamp") or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed", "Pending"):
        return await delete()
    pdbs = [p for p in registry.list("poddisruptionbudgets", namespace=namespace)["items"] if selected_pods(p, [pod])]
    if not pdbs:
        return await delete()
    if len(pdbs) > 1:
        raise ApiError(500, "InternalError", "This pod has more than one PodDisruptionBudget, which the eviction "
                                             "subresource does not support.")
    for _ in range(5):  # compare-and-swap on the budget
        pdb = registry.get("poddisruptionbudgets", pdbs[0]["metadata"]["name"], namespace=namespace)
        now = dt.datetime.now(dt.timezone.utc)
        pods = registry.list("pods", namespace=namespace)["items"]

        def scale_of(plural: str, owner: str, ns: str) -> int | None:
            try:
                return (registry.get(plural, owner, namespace=ns).get("spec") or {}).get("replicas", 1)
            except ApiError:
                return None
        st = budget_status(pdb, pods, scale_of, now=now)
        if not is_pod_ready(pod) and st["currentHealthy"] >= st["desiredHealthy"] and st["desiredHealthy"] >= 0:
            return await delete()  # an unhealthy pod, budget met (unhealthyPodEvictionPolicy IfHealthyBudget)
        if st["disruptionsAllowed"] <= 0:
            raise ApiError(429, "TooManyRequests", "Cannot evict pod as it would violate the pod's disruption budget.",
                           details={"causes": [{"reason": "DisruptionBudget", "message":
                                    f"The disruption budget {pdb['metadata']['name']} needs {st['desiredHealthy']} "
                                    f"healthy pods and has {st['currentHealthy']} currently"}]})
        st["disruptionsAllowed"] -= 1
        st.setdefault("disruptedPods", {})[name] = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        if st["disruptionsAllowed"] == 0:
            st["conditions"][0].update(status="False", reason="InsufficientPods")
        try:
            await registry.update("poddisruptionbudgets", dict(pdb, status=st), namespace=namespace,
                                  subresource="status", dry_run=bool(opts.get("dryRun")))
        except Conflict:
            continue
        return await delete()
    raise ApiError(429, "TooManyRequests", "Too many concurrent evictions; try again")
