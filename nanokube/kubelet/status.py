"""A pod's status from what the kubelet knows of its containers (pure; upstream's
``generateAPIPodStatus`` and ``getPhase``, reduced).

Each container is described by a ``ContainerView``: its current state (running / waiting /
terminated), the last terminated state, restart count and whether more restarts will come.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]


@dataclass
class ContainerView:
    name: str
    image: str
    image_id: str = ""
    container_id: str | None = None
    state: Obj = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: Obj = field(default_factory=dict)
    restart_count: int = 0
    will_restart: bool = True  # a terminated container the policy will restart
    ready: bool | None = None   # None: running means ready (no readiness probe)
    started: bool | None = None
    sidecar: bool = False       # an init container with restartPolicy Always


def _ready(v: ContainerView) -> bool:
    return _running(v) and (v.ready if v.ready is not None else True)


def _running(v: ContainerView) -> bool:
    return "running" in v.state


def phase(views: list[ContainerView], restart_policy: str) -> str:
    if not views:
        return "Pending"
    # A container that has never run yet keeps the pod Pending.
    if any("waiting" in v.state and not v.last_state for v in views):
        return "Pending"
    terminated = [v for v in views if "terminated" in v.state]
    succeeded = sum(1 for v in terminated if v.state["terminated"].get("exitCode") == 0)
    if any(_running(v) for v in views):
        return "Running"
    if len(terminated) == len(views):
        if restart_policy == "Always":
            return "Running"
        if restart_policy == "OnFailure":
            return "Succeeded" if succeeded == len(views) else "Running"
        return "Succeeded" if succeeded == len(views) else "Failed"
    # Waiting to restart after having run.
    return "Running"


def _cond(old: dict[str, Obj], typ: str, status: str, now: str, reason: str | None = None) -> Obj:
    prev = old.get(typ)
    c = {"type": typ, "status": status, "lastProbeTime": None,
         "lastTransitionTime": prev["lastTransitionTime"] if prev and prev.get("status") == status else now}
    if reason:
        c["reason"] = reason
    return c


def init_done(v: ContainerView) -> bool:
    """An init container lets the next one start: exited 0, or a sidecar that has started."""
    if v.sidecar:
        return _running(v) and v.started is not False
    return (v.state.get("terminated") or {}).get("exitCode") == 0


def compute(pod: Obj, views: list[ContainerView], *, pod_ip: str | None, host_ip: str, now: str,
            start_time: str | None, init_views: list[ContainerView] | None = None,
            ephemeral_views: list[ContainerView] | None = None) -> Obj:
    old = pod.get("status") or {}
    old_conds = {c["type"]: c for c in old.get("conditions") or []}
    init_views = init_views or []
    initialized = all(init_done(v) for v in init_views)
    if any("terminated" in v.state and not v.sidecar and not init_done(v) and not v.will_restart for v in init_views):
        ph = "Failed"
    elif not initialized:
        ph = "Pending"
    else:
        ph = phase(views, pod["spec"].get("restartPolicy", "Always"))
    ready = (bool(views) and all(_ready(v) for v in views) and ph == "Running"
             and all(_ready(v) for v in init_views if v.sidecar))
    not_ready_reason = None if ready else ("PodCompleted" if ph in ("Succeeded", "Failed") else "ContainersNotReady")
    conds = [
        _cond(old_conds, "PodReadyToStartContainers", "True" if pod_ip else "False", now),
        _cond(old_conds, "Initialized", "True" if initialized else "False", now,
              None if initialized else "ContainersNotInitialized"),
        _cond(old_conds, "Ready", "True" if ready else "False", now, not_ready_reason),
        _cond(old_conds, "ContainersReady", "True" if ready else "False", now, not_ready_reason),
        old_conds.get("PodScheduled") or _cond(old_conds, "PodScheduled", "True", now),
    ]
    if not ready:
        names = [v.name for v in views if not _ready(v)]
        for c in conds[2:4]:
            c["message"] = f"containers with unready status: [{' '.join(names)}]"
    if not initialized:
        conds[1]["message"] = ("containers with incomplete status: ["
                               + " ".join(v.name for v in init_views if not init_done(v)) + "]")

    def container_status(v: ContainerView) -> Obj:
        started = _running(v) and (v.started if v.started is not None else True)
        s: Obj = {"name": v.name, "image": v.image, "imageID": v.image_id, "ready": _ready(v),
                  "started": started, "restartCount": v.restart_count, "state": v.state,
                  "lastState": v.last_state}
        if v.container_id:
            s["containerID"] = f"nanokube://{v.container_id}"
        return s
    status: Obj = {
        "phase": ph, "conditions": conds, "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
        "startTime": start_time or now, "containerStatuses": [container_status(v) for v in views],
        "qosClass": old.get("qosClass", "BestEffort"),
    }
    if init_views:
        status["initContainerStatuses"] = [container_status(v) for v in init_views]
        for s_, v in zip(status["initContainerStatuses"], init_views):
            s_["ready"] = _ready(v) if v.sidecar else init_done(v)
    if ephemeral_views:  # never ready: they serve no traffic and are not the pod's readiness
        status["ephemeralContainerStatuses"] = [{**container_status(v), "ready": False} for v in ephemeral_views]
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    return status

