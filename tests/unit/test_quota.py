"""LimitRange and ResourceQuota admission: the pure rules, and the registry using them over a
memory store (including concurrent creates racing for the last unit of a quota)."""
import asyncio
from decimal import Decimal

import pytest

from nanokube.api import defaults
from nanokube.api.errors import ApiError
from nanokube.api.table import to_table
from nanokube.apiserver import quota
from nanokube.apiserver.registry import Registry
from nanokube.client.local import LocalClient
from nanokube.controllers.resourcequota import ResourceQuotaController
from nanokube.store import MemoryStore


def pod(name, *containers, phase=None, ns="default"):
    p = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
         "spec": {"containers": [{"name": n, "image": "busybox", **({"resources": r} if r else {})}
                                 for n, r in containers or [("c", None)]]}}
    if phase:
        p["status"] = {"phase": phase}
    return p


def lr(*items, name="lr"):
    return {"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": name, "namespace": "default"},
            "spec": {"limits": list(items)}}


def rq(hard, name="q", scopes=None):
    spec = {"hard": hard}
    if scopes:
        spec["scopes"] = scopes
    return {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": name, "namespace": "default"}, "spec": spec}


# -- pure -----------------------------------------------------------------------------------------
def test_limit_range_item_defaults_as_upstream():
    o = lr({"type": "Container", "max": {"cpu": "1"}, "min": {"memory": "16Mi"}})
    defaults.apply_defaults("limitranges", o)
    item = o["spec"]["limits"][0]
    assert item["default"] == {"cpu": "1"}
    assert item["defaultRequest"] == {"cpu": "1", "memory": "16Mi"}


def test_defaults_fill_only_what_is_missing():
    p = pod("x", ("a", None), ("b", {"limits": {"cpu": "200m"}, "requests": {"cpu": "200m"}}))
    quota.apply_limit_defaults(p, [lr({"type": "Container", "default": {"cpu": "500m", "memory": "64Mi"},
                                       "defaultRequest": {"cpu": "100m", "memory": "32Mi"}})])
    a, b = (c["resources"] for c in p["spec"]["containers"])
    assert a == {"limits": {"cpu": "500m", "memory": "64Mi"}, "requests": {"cpu": "100m", "memory": "32Mi"}}
    assert b == {"limits": {"cpu": "200m", "memory": "64Mi"}, "requests": {"cpu": "200m", "memory": "32Mi"}}
    assert p["status"]["qosClass"] == "Burstable"


def test_min_max_ratio_messages_are_upstreams():
    item = {"type": "Container", "min": {"cpu": "100m"}, "max": {"memory": "1Gi"}, "maxLimitRequestRatio": {"cpu": "2"}}
    errs = quota.limit_range_errors(pod("x", ("c", {"requests": {"cpu": "50m"}, "limits": {"cpu": "500m", "memory": "2Gi"}})),
                                    [lr(item)])
    assert errs == ["minimum cpu usage per Container is 100m, but request is 50m",
                    "maximum memory usage per Container is 1Gi, but limit is 2Gi",
                    "cpu max limit to request ratio per Container is 2, but provided ratio is 10.000000"]
    assert quota.limit_range_errors(pod("y", ("c", None)), [lr({"type": "Container", "max": {"cpu": "1"}})]) == [
        "maximum cpu usage per Container is 1.  No limit is specified"]
    ok = pod("z", ("c", {"requests": {"cpu": "200m"}, "limits": {"cpu": "400m", "memory": "1Gi"}}))
    assert quota.limit_range_errors(ok, [lr(item)]) == []


def test_pod_type_limits_use_the_pod_total():
    p = pod("x", ("a", {"requests": {"cpu": "300m"}, "limits": {"cpu": "300m"}}),
            ("b", {"requests": {"cpu": "300m"}, "limits": {"cpu": "300m"}}))
    assert quota.limit_range_errors(p, [lr({"type": "Pod", "max": {"cpu": "500m"}})]) == [
        "maximum cpu usage per Pod is 500m, but limit is 600m"]


def test_usage_counts_requests_limits_and_skips_terminal_pods():
    q = rq({"pods": "5", "requests.cpu": "1", "limits.memory": "1Gi", "cpu": "2", "count/pods": "5"})
    objs = {"pods": [pod("a", ("c", {"requests": {"cpu": "250m"}, "limits": {"memory": "128Mi"}})),
                     pod("b", ("c", {"requests": {"cpu": "500m"}, "limits": {"memory": "128Mi"}})),
                     pod("done", ("c", {"requests": {"cpu": "900m"}}), phase="Succeeded")]}
    used = quota.compute_used(q, objs)
    assert quota.format_list(used) == {"count/pods": "2", "cpu": "750m", "limits.memory": "256Mi", "pods": "2",
                                       "requests.cpu": "750m"}


def test_exceeded_and_must_specify_messages():
    q = rq({"pods": "2"})
    msg = quota.check_quota(q, "pods", pod("c"), {"pods": Decimal(2)})
    assert msg == "exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"
    assert quota.check_quota(q, "pods", pod("c"), {"pods": Decimal(1)}) is None
    q2 = rq({"limits.cpu": "2", "limits.memory": "1Gi", "requests.cpu": "1"})
    msg = quota.check_quota(q2, "pods", pod("x", ("b", None), ("a", {"requests": {"cpu": "100m"}})), {})
    assert msg == "failed quota: q: must specify limits.cpu for: a,b; limits.memory for: a,b; requests.cpu for: b"
    q3 = rq({"requests.cpu": "1"})
    msg = quota.check_quota(q3, "pods", pod("x", ("c", {"requests": {"cpu": "600m"}})), {"requests.cpu": Decimal("0.5")})
    assert msg == "exceeded quota: q, requested: requests.cpu=600m, used: requests.cpu=500m, limited: requests.cpu=1"


def test_object_counts_and_scopes():
    q = rq({"configmaps": "1", "count/secrets": "1", "services.nodeports": "1"})
    assert quota.plural_for("count/deployments.apps") == "deployments"
    assert quota.check_quota(q, "configmaps", {"metadata": {"name": "c"}}, {"configmaps": Decimal(1)}) == \
        "exceeded quota: q, requested: configmaps=1, used: configmaps=1, limited: configmaps=1"
    svc = {"metadata": {"name": "s"}, "spec": {"type": "NodePort", "ports": [{"port": 1}, {"port": 2}]}}
    assert "services.nodeports=2" in quota.check_quota(q, "services", svc, {"services.nodeports": Decimal(0)})
    be = rq({"pods": "1"}, scopes=["NotBestEffort"])
    assert quota.check_quota(be, "pods", pod("x"), {"pods": Decimal(1)}) is None  # best-effort pod: not in scope


def test_quota_table():
    q = rq({"pods": "2", "limits.cpu": "1"})
    q["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    q["status"] = {"hard": {"pods": "2", "limits.cpu": "1"}, "used": {"pods": "1"}}
    row = to_table("resourcequotas", [q])["rows"][0]["cells"]
    assert row[0] == "q" and row[2:] == ["pods: 1/2", "limits.cpu: 0/1"]


# -- through the registry -------------------------------------------------------------------------
async def _registry():
    reg = Registry(MemoryStore())
    await reg.create("namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})
    await reg.create("serviceaccounts", {"apiVersion": "v1", "kind": "ServiceAccount",
                                         "metadata": {"name": "default", "namespace": "default"},
                                         "automountServiceAccountToken": False})
    return reg


async def test_registry_applies_limit_range_and_rejects_under_min():
    reg = await _registry()
    await reg.create("limitranges", lr({"type": "Container", "default": {"cpu": "300m"}, "defaultRequest": {"cpu": "150m"},
                                        "min": {"cpu": "100m"}}))
    got = await reg.create("pods", pod("plain"))
    assert got["spec"]["containers"][0]["resources"] == {"limits": {"cpu": "300m"}, "requests": {"cpu": "150m"}}
    with pytest.raises(ApiError) as e:
        await reg.create("pods", pod("small", ("c", {"requests": {"cpu": "50m"}})))
    assert e.value.code == 403
    assert e.value.message == 'pods "small" is forbidden: minimum cpu usage per Container is 100m, but request is 50m'


async def test_registry_quota_rejects_third_pod_and_keeps_status():
    reg = await _registry()
    await reg.create("resourcequotas", rq({"pods": "2"}))
    assert reg.get("resourcequotas", "q", namespace="default")["status"] == {"hard": {"pods": "2"}, "used": {"pods": "0"}}
    await reg.create("pods", pod("a"))
    await reg.create("pods", pod("b"))
    with pytest.raises(ApiError) as e:
        await reg.create("pods", pod("c"))
    assert e.value.code == 403
    assert e.value.message == ('pods "c" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, '
                               'limited: pods=2')
    assert reg.get("resourcequotas", "q", namespace="default")["status"]["used"] == {"pods": "2"}
    # A failed create charged nothing: after a delete there is room for exactly one more.
    await reg.delete("pods", "a", namespace="default")
    await reg.create("pods", pod("c"))
    with pytest.raises(ApiError):
        await reg.create("pods", pod("d"))


async def test_concurrent_creates_cannot_overshoot():
    reg = await _registry()
    await reg.create("resourcequotas", rq({"configmaps": "3"}))
    cm = lambda i: {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"cm{i}", "namespace": "default"}}  # noqa: E731
    results = await asyncio.gather(*(reg.create("configmaps", cm(i)) for i in range(10)), return_exceptions=True)
    assert sum(1 for r in results if not isinstance(r, Exception)) == 3
    assert all(isinstance(r, ApiError) and r.code == 403 for r in results if isinstance(r, Exception))
    assert len(reg.list("configmaps", namespace="default")["items"]) == 3
    assert reg.get("resourcequotas", "q", namespace="default")["status"]["used"] == {"configmaps": "3"}


async def test_controller_releases_usage_of_terminal_pods():
    reg = await _registry()
    c = LocalClient(reg)
    await reg.create("resourcequotas", rq({"pods": "1"}))
    p = await reg.create("pods", pod("a"))
    ctl = ResourceQuotaController(c, resync=3600)
    task = asyncio.create_task(ctl.run())
    try:
        p["status"]["phase"] = "Succeeded"
        await reg.update("pods", p, namespace="default", subresource="status")
        for _ in range(200):
            if reg.get("resourcequotas", "q", namespace="default")["status"]["used"] == {"pods": "0"}:
                break
            await asyncio.sleep(0.02)
        assert reg.get("resourcequotas", "q", namespace="default")["status"]["used"] == {"pods": "0"}
        await reg.create("pods", pod("b"))  # the terminal pod no longer counts
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_invalid_quota_and_limit_range_are_422():
    reg = await _registry()
    with pytest.raises(ApiError) as e:
        await reg.create("resourcequotas", rq({"pods": "-1", "cpu": "lots"}))
    assert e.value.code == 422
    assert [c["field"] for c in e.value.details["causes"]] == ["spec.hard[pods]", "spec.hard[cpu]"]
    with pytest.raises(ApiError) as e:
        await reg.create("limitranges", lr({"type": "Container", "min": {"cpu": "2"}, "max": {"cpu": "1"}}))
    assert e.value.code == 422
    assert "min value 2 is greater than max value 1" in e.value.message
