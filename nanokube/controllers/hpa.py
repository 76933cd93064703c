"""The horizontal pod autoscaler controller (autoscaling/v2, Resource metrics).

Every ``sync_period`` seconds (upstream's ``--horizontal-pod-autoscaler-sync-period``,
15 s; ``nanokube server --hpa-sync-period``) each HPA is reconciled as upstream's
podautoscaler/horizontal.go does: read the target's replicas and selector, get the pods'
usage from the resource metrics API, compute ``ceil(ready * utilization / target)`` with the
10 % tolerance and upstream's handling of missing and unready pods, stabilize the
recommendation over the behavior's windows (scale-down default 300 s), limit the rate with
the behavior's policies, clamp to min/max, write the target's ``scale`` subresource and the
HPA's status (currentReplicas, desiredReplicas, currentMetrics, conditions AbleToScale /
ScalingActive / ScalingLimited with upstream's reasons and messages).

Metrics are read in-process: the server hands this controller the metrics API's own
``pods(namespace, label_selector=...)`` coroutine (apiserver/metrics.py), the same code that
answers ``GET /apis/metrics.k8s.io/v1beta1/.../pods`` — no HTTP round-trip, no token, and
its 5 s cache is shared with ``kubectl top``. The decision logic is pure functions
(``replicas_for_cpu``, ``stabilize``, ``limit_rate``) with an injected clock, unit-tested.
Recommendations and scale events live in memory, as upstream's do (a restart forgets them).
"""
from __future__ import annotations

import asyncio
import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from nanokube.api import quantity
from nanokube.api.defaults import hpa_scale_down_rules as scale_down_rules, hpa_scale_up_rules as scale_up_rules
from nanokube.api.errors import ApiError
from nanokube.api.resources import RESOURCES
from nanokube.api.selectors import from_label_selector, matches, to_string
from nanokube.client import events
from .base import Controller, is_pod_ready, now_rfc3339, split_key

Obj = dict[str, Any]
TOLERANCE = 0.1
MetricsFn = Callable[[str, str], Awaitable[list[Obj]]]


# -- metrics → replicas (GetResourceReplicas) ----------------------------------------------------
@dataclass
class CpuResult:
    replicas: int
    utilization: int        # percent of request, over the pods that counted
    raw_average_milli: int  # average usage per pod, milli-cores


class MetricError(Exception):
    pass


def _pod_request_milli(pod: Obj) -> int | None:
    total = 0
    for c in (pod.get("spec") or {}).get("containers") or []:
        req = ((c.get("resources") or {}).get("requests") or {}).get("cpu")
        if req is None:
            return None
        total += quantity.cpu_milli(req)
    return total


def _usage_milli(pm: Obj) -> int:
    return sum(quantity.cpu_milli((c.get("usage") or {}).get("cpu", "0")) for c in pm.get("containers") or [])


def _ratio(metrics: dict[str, int], requests: dict[str, int], target: int) -> tuple[float, int, int]:
    """GetResourceUtilizationRatio: (usage ratio, utilization %, raw average milli)."""
    usage = sum(metrics.values())
    req = 0
    for name in metrics:
        if requests.get(name) is None:
            raise MetricError(f"missing request for cpu in pod {name}")
        req += requests[name]
    if req == 0:
        raise MetricError("no metrics returned matched known pods")
    util = int(usage * 100 / req)
    return util / target, util, usage // len(metrics)


def replicas_for_cpu(current: int, target: int, pods: list[Obj], pod_metrics: list[Obj], *,
                     tolerance: float = TOLERANCE) -> CpuResult:
    """Upstream's replica calculation for a Utilization target: unready pods count as 0 % on
    a scale-up, pods without metrics as 0 % on a scale-up and 100 % of their request on a
    scale-down, and a change that would reverse the direction is not made."""
    if not pod_metrics:
        raise MetricError("unable to get metrics for resource cpu: no metrics returned from resource metrics API")
    by_name = {m["metadata"]["name"]: _usage_milli(m) for m in pod_metrics}
    metrics: dict[str, int] = {}
    requests: dict[str, int] = {}
    unready, missing = set(), set()
    ready = 0
    for p in pods:
        name = p["metadata"]["name"]
        if p["metadata"].get("deletionTimestamp") or (p.get("status") or {}).get("phase") == "Failed":
            continue
        requests[name] = _pod_request_milli(p)  # type: ignore[assignment]
        if (p.get("status") or {}).get("phase") == "Pending" or not is_pod_ready(p):
            unready.add(name)
            continue
        if name not in by_name:
            missing.add(name)
            continue
        metrics[name] = by_name[name]
        ready += 1
    if not metrics:
        raise MetricError("did not receive metrics for targeted pods (pods might be unready)")
    ratio, util, raw = _ratio(metrics, requests, target)
    up_with_unready = bool(unready) and ratio > 1.0
    if not up_with_unready and not missing:
        if abs(1.0 - ratio) <= tolerance:
            return CpuResult(current, util, raw)
        return CpuResult(math.ceil(ratio * ready), util, raw)
    if missing:
        for name in missing:
            if ratio < 1.0:
                metrics[name] = (requests[name] or 0) * max(100, target) // 100
            elif ratio > 1.0:
                metrics[name] = 0
    if up_with_unready:
        for name in unready:
            metrics[name] = 0
    new_ratio, _, _ = _ratio(metrics, requests, target)
    if abs(1.0 - new_ratio) <= tolerance or (ratio < 1.0 < new_ratio) or (ratio > 1.0 > new_ratio):
        return CpuResult(current, util, raw)
    n = math.ceil(new_ratio * len(metrics))
    if (new_ratio < 1.0 and n > current) or (new_ratio > 1.0 and n < current):
        return CpuResult(current, util, raw)
    return CpuResult(n, util, raw)


# -- behavior: stabilization and rate limits ---------------------------------------------------
@dataclass
class History:
    recommendations: list[tuple[float, int]] = field(default_factory=list)  # (time, replicas)
    up_events: list[tuple[float, int]] = field(default_factory=list)        # (time, replicas added)
    down_events: list[tuple[float, int]] = field(default_factory=list)      # (time, replicas removed)


def stabilize(hist: History, now: float, current: int, desired: int, up: Obj, down: Obj) -> tuple[int, str, str]:
    """stabilizeRecommendationWithBehaviors: the lowest recommendation of the scale-up window
    and the highest of the scale-down window bound the result; records ``desired``."""
    up_cut, down_cut = now - up["stabilizationWindowSeconds"], now - down["stabilizationWindowSeconds"]
    up_rec = down_rec = desired
    for t, rec in hist.recommendations:
        if t > up_cut:
            up_rec = min(up_rec, rec)
        if t > down_cut:
            down_rec = max(down_rec, rec)
    keep = max(up["stabilizationWindowSeconds"], down["stabilizationWindowSeconds"])
    hist.recommendations = [(t, r) for t, r in hist.recommendations if t > now - keep] + [(now, desired)]
    out = min(max(current, up_rec), down_rec)
    if desired >= current:
        return out, "ScaleUpStabilized", "recent recommendations were lower than current one, applying the lowest recent recommendation"
    return out, "ScaleDownStabilized", "recent recommendations were higher than current one, applying the highest recent recommendation"


def _changed(period: int, evs: list[tuple[float, int]], now: float) -> int:
    return sum(n for t, n in evs if t > now - period)


def _limit(current: int, hist: History, rules: Obj, now: float, *, up: bool) -> int:
    if rules.get("selectPolicy") == "Disabled":
        return current
    pick_max = (rules.get("selectPolicy") == "Max") == up  # scale-up Max = most growth; scale-down Max = lowest floor
    result: int | None = None
    for p in rules.get("policies") or []:
        start = current - _changed(p["periodSeconds"], hist.up_events, now) + _changed(p["periodSeconds"], hist.down_events, now)
        if up:
            prop = start + p["value"] if p["type"] == "Pods" else math.ceil(start * (1 + p["value"] / 100))
        else:
            prop = start - p["value"] if p["type"] == "Pods" else int(start * (1 - p["value"] / 100))
        result = prop if result is None else (max(result, prop) if pick_max else min(result, prop))
    return current if result is None else result


def limit_rate(hist: History, now: float, current: int, desired: int, mn: int, mx: int, up: Obj, down: Obj
               ) -> tuple[int, str, str]:
    """convertDesiredReplicasWithBehaviorRate: min/max and the policies' rate limits."""
    if desired > current:
        lim = max(_limit(current, hist, up, now, up=True), current)
        if mx > lim:
            allowed, reason, msg = lim, "ScaleUpLimit", "the desired replica count is increasing faster than the maximum scale rate"
        else:
            allowed, reason, msg = mx, "TooManyReplicas", "the desired replica count is more than the maximum replica count"
        if desired > allowed:
            return allowed, reason, msg
    elif desired < current:
        lim = min(_limit(current, hist, down, now, up=False), current)
        if mn < lim:
            allowed, reason, msg = lim, "ScaleDownLimit", "the desired replica count is decreasing faster than the maximum scale rate"
        else:
            allowed, reason, msg = mn, "TooFewReplicas", "the desired replica count is less than the minimum replica count"
        if desired < allowed:
            return allowed, reason, msg
    return desired, "DesiredWithinRange", "the desired count is within the acceptable range"


def record_scale(hist: History, now: float, old: int, new: int, *, keep: float = 1800.0) -> None:
    if new > old:
        hist.up_events.append((now, new - old))
    elif new < old:
        hist.down_events.append((now, old - new))
    hist.up_events = [e for e in hist.up_events if e[0] > now - keep]
    hist.down_events = [e for e in hist.down_events if e[0] > now - keep]


def set_condition(status: Obj, typ: str, st: str, reason: str, message: str, now: str) -> None:
    conds = status.setdefault("conditions", [])
    for c in conds:
        if c["type"] == typ:
            if c.get("status") != st:
                c["lastTransitionTime"] = now
            c.update(status=st, reason=reason, message=message)
            return
    conds.append({"type": typ, "status": st, "lastTransitionTime": now, "reason": reason, "message": message})


# -- the controller -------------------------------------------------------------------------------
class HPAController(Controller):
    name = "horizontal-pod-autoscaler"

    def __init__(self, client: Any, *, metrics: MetricsFn, sync_period: float = 15.0,
                 clock: Callable[[], float] = time.monotonic):
        super().__init__(client)
        self.metrics, self.sync_period, self.clock = metrics, sync_period, clock
        self.hpas = self.informer("horizontalpodautoscalers")
        self.hpas.add_handler(on_add=self.enqueue, on_delete=self._forget)
        self.pods = self.informer("pods")
        self.history: dict[str, History] = {}

    def _forget(self, obj: Obj) -> None:
        self.history.pop(f"{obj['metadata'].get('namespace')}/{obj['metadata']['name']}", None)

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.sync_period)
            for h in self.hpas.list():
                self.enqueue(h)

    async def run(self) -> None:
        await asyncio.gather(super().run(), self._ticker())

    async def sync(self, key: str) -> None:
        hpa = self.hpas.get(key)
        if hpa is None:
            return
        ns, _ = split_key(key)
        hpa = copy.deepcopy(hpa)
        spec = hpa.get("spec") or {}
        status = hpa.setdefault("status", {})
        old_status = copy.deepcopy(status)
        now_s = now_rfc3339()
        ref = spec.get("scaleTargetRef") or {}
        plural = next((r.plural for r in RESOURCES.values()
                       if r.kind == ref.get("kind") and "scale" in r.subresources
                       and (not ref.get("apiVersion") or ref["apiVersion"] == r.api_version)), None)
        try:
            if plural is None:
                raise ApiError(404, "NotFound", f"no scale subresource for {ref.get('apiVersion')}/{ref.get('kind')}")
            target = await self.client.get(plural, ref.get("name", ""), namespace=ns)
        except ApiError as e:
            set_condition(status, "AbleToScale", "False", "FailedGetScale",
                          f"the HPA controller was unable to get the target's current scale: {e.message}", now_s)
            await self._write(hpa, old_status, ns)
            return
        current = int((target.get("spec") or {}).get("replicas", 1))
        status["currentReplicas"] = int((target.get("status") or {}).get("replicas", current))
        set_condition(status, "AbleToScale", "True", "SucceededGetScale",
                      "the HPA controller was able to get the target's current scale", now_s)
        mn, mx = int(spec.get("minReplicas", 1)), int(spec.get("maxReplicas", 1))
        behavior = spec.get("behavior") or {}
        up, down = scale_up_rules(behavior.get("scaleUp")), scale_down_rules(behavior.get("scaleDown"))
        hist = self.history.setdefault(key, History())
        now = self.clock()
        desired = current
        reason = ""
        if current == 0 and mn != 0:
            desired = 0
            set_condition(status, "ScalingActive", "False", "ScalingDisabled",
                          "scaling is disabled since the replica count of the target is zero", now_s)
        elif current > mx or current < mn:
            desired = mx if current > mx else mn
            set_condition(status, "ScalingLimited", "True", *(
                ("TooManyReplicas", "the desired replica count is more than the maximum replica count") if current > mx
                else ("TooFewReplicas", "the desired replica count is less than the minimum replica count")), now_s)
        else:
            proposal, metric_status, err = await self._compute(spec, ns or "", target, current)
            if err is not None:
                set_condition(status, "ScalingActive", "False", "FailedGetResourceMetric",
                              f"the HPA was unable to compute the replica count: {err}", now_s)
                status.setdefault("currentMetrics", None)
                status.setdefault("desiredReplicas", current)
                await self._write(hpa, old_status, ns)
                return
            status["currentMetrics"] = metric_status
            set_condition(status, "ScalingActive", "True", "ValidMetricFound",
                          "the HPA was able to successfully calculate a replica count from cpu resource "
                          "utilization (percentage of request)", now_s)
            stabilized, st_reason, st_msg = stabilize(hist, now, current, proposal, up, down)
            if stabilized != proposal:
                set_condition(status, "AbleToScale", "True", st_reason, st_msg, now_s)
            else:
                set_condition(status, "AbleToScale", "True", "ReadyForNewScale", "recommended size matches current size", now_s)
            desired, lim_reason, lim_msg = limit_rate(hist, now, current, stabilized, mn, mx, up, down)
            set_condition(status, "ScalingLimited", "False" if desired == stabilized else "True", lim_reason, lim_msg, now_s)
            reason = "cpu resource utilization (percentage of request) " + ("above" if desired > current else "below") + " target"
        if desired != current:
            try:
                await self.client.patch(plural, ref["name"], {"spec": {"replicas": desired}}, namespace=ns,
                                        subresource="scale")
            except ApiError as e:
                set_condition(status, "AbleToScale", "False", "FailedUpdateScale",
                              f"the HPA controller was unable to update the target scale: {e.message}", now_s)
                await self._write(hpa, old_status, ns)
                raise
            set_condition(status, "AbleToScale", "True", "SucceededRescale",
                          f"the HPA controller was able to update the target scale to {desired}", now_s)
            record_scale(hist, now, current, desired)
            status["lastScaleTime"] = now_s
            await events.emit(self.client, hpa, reason="SuccessfulRescale",
                              message=f"New size: {desired}; reason: {reason or 'Current number of replicas out of range'}",
                              component="horizontal-pod-autoscaler")
        status["desiredReplicas"] = desired
        await self._write(hpa, old_status, ns)

    async def _compute(self, spec: Obj, ns: str, target: Obj, current: int) -> tuple[int, list[Obj], str | None]:
        """The largest proposal over the HPA's metrics (Resource cpu/memory are supported)."""
        sel = (target.get("spec") or {}).get("selector")
        reqs = from_label_selector(sel)
        pods = [p for p in self.pods.list() if p["metadata"].get("namespace") == ns
                and matches(p["metadata"].get("labels") or {}, reqs)]
        try:
            pms = await self.metrics(ns, to_string(sel))
        except Exception as e:  # noqa: BLE001 - reported as a condition, like upstream
            return current, [], f"failed to get cpu utilization: {e}"
        best, statuses = 0, []
        for m in spec.get("metrics") or []:
            res = m.get("resource") or {}
            tgt = res.get("target") or {}
            if m.get("type") != "Resource" or res.get("name") != "cpu" or tgt.get("type", "Utilization") != "Utilization":
                return current, [], f"unsupported metric {m.get('type')} {res.get('name')} ({tgt.get('type')})"
            try:
                r = replicas_for_cpu(current, int(tgt.get("averageUtilization", 80)), pods, pms)
            except MetricError as e:
                return current, [], f"failed to get cpu utilization: {e}"
            best = max(best, r.replicas)
            statuses.append({"type": "Resource", "resource": {"name": "cpu", "current": {
                "averageUtilization": r.utilization, "averageValue": f"{r.raw_average_milli}m"}}})
        return best, statuses, None

    async def _write(self, hpa: Obj, old_status: Obj, ns: str | None) -> None:
        hpa["status"]["observedGeneration"] = hpa["metadata"].get("generation", 1)
        if hpa["status"] == old_status:
            return
        try:
            await self.client.update("horizontalpodautoscalers", hpa, namespace=ns, subresource="status")
        except ApiError as e:
            if e.code not in (404, 409):
                raise
