"""The HPA's pure decisions (replica count, stabilization, rate limits) and the controller
against a registry over a memory store, with fake metrics and a fake clock."""
import asyncio
import copy

import pytest

from nanokube.api.errors import ApiError
from nanokube.api.table import to_table
from nanokube.apiserver.registry import Registry
from nanokube.client.local import LocalClient
from nanokube.controllers import hpa as H
from nanokube.store import MemoryStore


def pod(name, cpu_req="100m", ready=True, phase="Running"):
    return {"metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu_req}}}]},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def pm(name, cpu):
    return {"metadata": {"name": name, "namespace": "default"}, "containers": [{"name": "c", "usage": {"cpu": cpu}}]}


def test_replicas_from_utilization_with_tolerance():
    pods = [pod("a"), pod("b")]
    r = H.replicas_for_cpu(2, 50, pods, [pm("a", "100m"), pm("b", "100m")])
    assert (r.replicas, r.utilization, r.raw_average_milli) == (4, 100, 100)
    assert H.replicas_for_cpu(2, 50, pods, [pm("a", "52m"), pm("b", "53m")]).replicas == 2  # within 10 %
    assert H.replicas_for_cpu(2, 50, pods, [pm("a", "10m"), pm("b", "10m")]).replicas == 1


def test_missing_and_unready_pods_as_upstream():
    # Scale-up: an unready pod counts as 0 %, so 2 pods at 100 % with a third unready → ceil(200/3/50*3)=4.
    pods = [pod("a"), pod("b"), pod("c", ready=False)]
    assert H.replicas_for_cpu(3, 50, pods, [pm("a", "100m"), pm("b", "100m")]).replicas == 4
    # Scale-down: a pod without metrics counts as 100 % of its request: ratio (10+10+100)/300/0.5 → 0.8 → 3*0.8=2.4 → 3 → no change.
    pods = [pod("a"), pod("b"), pod("c")]
    assert H.replicas_for_cpu(3, 50, pods, [pm("a", "10m"), pm("b", "10m")]).replicas == 3


def test_stabilization_window_holds_the_highest_recent_recommendation():
    up, down = H.scale_up_rules(None), H.scale_down_rules({"stabilizationWindowSeconds": 60})
    hist = H.History()
    assert H.stabilize(hist, 0, 4, 4, up, down)[0] == 4
    assert H.stabilize(hist, 10, 4, 1, up, down)[:2] == (4, "ScaleDownStabilized")
    assert H.stabilize(hist, 70, 4, 1, up, down)[0] == 1  # the 4 of t=0 has left the 60 s window


def test_rate_limits_and_bounds():
    up, down = H.scale_up_rules(None), H.scale_down_rules(None)
    hist = H.History()
    # From 1: max(1+4, 1*2) = 5 allowed per 15 s; desired 8 with max 10 → ScaleUpLimit.
    assert H.limit_rate(hist, 0, 1, 8, 1, 10, up, down) == (5, "ScaleUpLimit", "the desired replica count is increasing faster than the maximum scale rate")
    assert H.limit_rate(hist, 0, 1, 8, 1, 4, up, down)[:2] == (4, "TooManyReplicas")
    assert H.limit_rate(hist, 0, 3, 0, 1, 4, up, down)[:2] == (1, "TooFewReplicas")
    H.record_scale(hist, 0, 1, 5)
    # Within the period after adding 4, the period started at 1: still max(5, 2) = 5.
    assert H.limit_rate(hist, 5, 5, 9, 1, 10, up, down)[0] == 5
    assert H.limit_rate(hist, 20, 5, 9, 1, 10, up, down)[0] == 9
    pods_only = H.scale_down_rules({"policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]})
    assert H.limit_rate(H.History(), 0, 4, 1, 1, 10, up, pods_only)[:2] == (3, "ScaleDownLimit")


def test_hpa_table():
    h = {"metadata": {"name": "web", "creationTimestamp": "2026-01-01T00:00:00Z"},
         "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 4,
                  "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}]},
         "status": {"currentReplicas": 2, "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 73}}}]}}
    assert to_table("horizontalpodautoscalers", [h])["rows"][0]["cells"][:6] == ["web", "Deployment/web", "cpu: 73%/50%", "1", 4, 2]
    h["status"] = {}
    assert to_table("horizontalpodautoscalers", [h])["rows"][0]["cells"][2] == "cpu: <unknown>/50%"


DEPLOY = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
          "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                   "template": {"metadata": {"labels": {"app": "web"}},
                                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}
HPA = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "web", "namespace": "default"},
       "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "maxReplicas": 4,
                "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 5}}}}


async def test_controller_scales_up_then_down_after_the_window():
    reg = Registry(MemoryStore())
    await reg.create("namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})
    await reg.create("serviceaccounts", {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": "default"}})
    await reg.create("deployments", DEPLOY)
    created = await reg.create("horizontalpodautoscalers", HPA)
    assert created["spec"]["minReplicas"] == 1
    assert created["spec"]["behavior"]["scaleUp"]["policies"][0] == {"type": "Pods", "value": 4, "periodSeconds": 15}
    assert created["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 5
    for name in ("a", "b"):
        p = pod(name)
        p["apiVersion"], p["kind"] = "v1", "Pod"
        p["spec"]["containers"][0]["image"] = "busybox"
        got = await reg.create("pods", p)
        got["status"] = p["status"]
        await reg.update("pods", got, namespace="default", subresource="status")
    load = {"cpu": "100m"}

    async def metrics(ns, sel):
        assert (ns, sel) == ("default", "app=web")
        return [pm("a", load["cpu"]), pm("b", load["cpu"])]
    now = [1000.0]
    ctl = H.HPAController(LocalClient(reg), metrics=metrics, sync_period=3600, clock=lambda: now[0])
    task = asyncio.create_task(ctl.run())

    async def caught_up():  # the informer has seen the latest status write (the test's or its own worker's)
        for _ in range(250):
            want = reg.get("horizontalpodautoscalers", "web", namespace="default")["metadata"]["resourceVersion"]
            if ctl.hpas.get("default/web")["metadata"]["resourceVersion"] == want:
                return
            await asyncio.sleep(0.02)
        raise AssertionError("informer did not catch up")
    try:
        await asyncio.gather(*(i.wait_synced() for i in ctl.informers))
        await ctl.sync("default/web")
        # current 1 (spec), 2 pods at 200 % of request / 50 % target → ratio 2, 2 ready pods → 4.
        assert reg.get("deployments", "web", namespace="default")["spec"]["replicas"] == 4
        st = reg.get("horizontalpodautoscalers", "web", namespace="default")["status"]
        assert st["desiredReplicas"] == 4 and st["currentMetrics"][0]["resource"]["current"]["averageUtilization"] == 100
        conds = {c["type"]: (c["status"], c["reason"]) for c in st["conditions"]}
        assert conds == {"AbleToScale": ("True", "SucceededRescale"), "ScalingActive": ("True", "ValidMetricFound"),
                         "ScalingLimited": ("False", "DesiredWithinRange")}
        # Load gone: held by the 5 s stabilization window, then down to minReplicas.
        load["cpu"] = "0"
        await caught_up()
        now[0] += 1
        await ctl.sync("default/web")
        assert reg.get("deployments", "web", namespace="default")["spec"]["replicas"] == 4
        st = reg.get("horizontalpodautoscalers", "web", namespace="default")["status"]
        assert {c["type"]: c["reason"] for c in st["conditions"]}["AbleToScale"] == "ScaleDownStabilized"
        now[0] += 10
        await caught_up()
        await ctl.sync("default/web")
        assert reg.get("deployments", "web", namespace="default")["spec"]["replicas"] == 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_invalid_hpa_is_422():
    reg = Registry(MemoryStore())
    await reg.create("namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})
    bad = copy.deepcopy(HPA)
    bad["spec"].update(minReplicas=3, maxReplicas=2)
    with pytest.raises(ApiError) as e:
        await reg.create("horizontalpodautoscalers", bad)
    assert e.value.code == 422
    assert e.value.details["causes"] == [{"reason": "FieldValueInvalid", "field": "spec.maxReplicas",
                                          "message": "Invalid value: 2: must be greater than or equal to `minReplicas`"}]
