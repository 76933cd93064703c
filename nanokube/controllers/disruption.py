"""PodDisruptionBudgets: how many of the selected pods may be disrupted right now.

``budget_status`` is upstream's disruption controller arithmetic, pure: expected pods (the
selected pods, or for percentages and maxUnavailable the replica counts of the controllers
that own them), healthy pods (Ready, not terminating), desired healthy, and
``disruptionsAllowed``. The controller writes it to ``status``; the Eviction API
(apiserver/eviction.py) reads it and spends one disruption per eviction it grants, recording
the pod in ``status.disruptedPods`` until the pod is gone, so two evictions cannot both spend
the last one.
"""
from __future__ import annotations

import datetime as dt
import math
from typing import Any, Callable

from nanokube.api.selectors import from_label_selector, matches
from .base import Controller, Obj, is_pod_ready, now_rfc3339, split_key

# Kinds whose replica count gives the expected scale, and where it lives.
SCALE_KINDS = {"ReplicaSet": "replicasets", "Deployment": "deployments", "StatefulSet": "statefulsets",
               "ReplicationController": "replicationcontrollers"}
DISRUPTED_TTL = 120.0  # upstream's DeletionTimeout: a granted eviction that never happened expires


def _scaled(value: Any, total: int, *, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        x = int(value[:-1]) * total / 100
        return math.ceil(x) if round_up else math.floor(x)
    return int(value)


def selected_pods(pdb: Obj, pods: list[Obj]) -> list[Obj]:
    sel = (pdb.get("spec") or {}).get("selector")
    if sel is None:
        return []
    reqs = from_label_selector(sel)
    ns = pdb["metadata"]["namespace"]
    return [p for p in pods if p["metadata"].get("namespace") == ns and matches(p["metadata"].get("labels"), reqs)]


def expected_count(pdb: Obj, pods: list[Obj], scale_of: Callable[[str, str, str], int | None]) -> int:
    spec = pdb.get("spec") or {}
    min_av = spec.get("minAvailable")
    if spec.get("maxUnavailable") is None and not (isinstance(min_av, str) and min_av.endswith("%")):
        return len(pods)
    owners: dict[tuple[str, str], int] = {}
    bare = 0
    for p in pods:
        ref = next((o for o in p["metadata"].get("ownerReferences") or [] if o.get("controller")), None)
        if ref is None or ref.get("kind") not in SCALE_KINDS:
            bare += 1
            continue
        key = (ref["kind"], ref["name"])
        if key not in owners:
            owners[key] = scale_of(SCALE_KINDS[ref["kind"]], ref["name"], p["metadata"]["namespace"]) or 0
    return sum(owners.values()) + bare


def budget_status(pdb: Obj, pods: list[Obj], scale_of: Callable[[str, str, str], int | None], *,
                  now: dt.datetime) -> Obj:
    spec = pdb.get("spec") or {}
    mine = selected_pods(pdb, pods)
    expected = expected_count(pdb, mine, scale_of)
    old = (pdb.get("status") or {}).get("disruptedPods") or {}
    live = {p["metadata"]["name"] for p in mine if not p["metadata"].get("deletionTimestamp")}
    disrupted = {name: ts for name, ts in old.items()
                 if name in live and (now - _parse(ts)).total_seconds() < DISRUPTED_TTL}
    healthy = sum(1 for p in mine if is_pod_ready(p) and not p["metadata"].get("deletionTimestamp")
                  and p["metadata"]["name"] not in disrupted)
    if spec.get("maxUnavailable") is not None:
        desired = max(0, expected - _scaled(spec["maxUnavailable"], expected, round_up=True))
    elif spec.get("minAvailable") is not None:
        desired = _scaled(spec["minAvailable"], expected, round_up=True)
    else:
        desired = expected  # no budget given: nothing may go (upstream requires one of them)
    allowed = max(0, healthy - desired) if expected > 0 or spec.get("minAvailable") is not None else 0
    st: Obj = {"observedGeneration": pdb["metadata"].get("generation", 1), "currentHealthy": healthy,
               "desiredHealthy": desired, "expectedPods": expected, "disruptionsAllowed": allowed}
    if disrupted:
        st["disruptedPods"] = disrupted
    reason = "SufficientPods" if allowed > 0 else "InsufficientPods"
    cond = {"type": "DisruptionAllowed", "status": "True" if allowed > 0 else "False", "reason": reason,
            "message": "", "observedGeneration": st["observedGeneration"]}
    prev = next((c for c in (pdb.get("status") or {}).get("conditions") or [] if c.get("type") == "DisruptionAllowed"), None)
    cond["lastTransitionTime"] = prev["lastTransitionTime"] if prev and prev.get("status") == cond["status"] else now_rfc3339()
    st["conditions"] = [cond]
    return st


def _parse(ts: str) -> dt.datetime:
    return dt.datetime.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.timezone.utc)


class DisruptionController(Controller):
    name = "disruption"

    def __init__(self, client: Any, *, clock: Callable[[], dt.datetime] | None = None):
        super().__init__(client)
        self.clock = clock or (lambda: dt.datetime.now(dt.timezone.utc))
        self.pdbs = self.informer("poddisruptionbudgets")
        self.pods = self.informer("pods")
        self.scales = {k: self.informer(k) for k in ("replicasets", "deployments")}
        self.enqueue_handlers(self.pdbs)
        self.pods.add_handler(on_add=self._pod, on_update=lambda o, n: self._pod(n), on_delete=self._pod)
        for inf in self.scales.values():
            inf.add_handler(on_update=lambda o, n: self._ns_all(n["metadata"]["namespace"]))

    def _pod(self, pod: Obj) -> None:
        for pdb in self.pdbs.list():
            if selected_pods(pdb, [pod]):
                self.enqueue(pdb)

    def _ns_all(self, ns: str) -> None:
        for pdb in self.pdbs.list():
            if pdb["metadata"]["namespace"] == ns:
                self.enqueue(pdb)

    def scale_of(self, plural: str, name: str, ns: str) -> int | None:
        inf = self.scales.get(plural)
        obj = inf.get(f"{ns}/{name}") if inf else None
        return ((obj or {}).get("spec") or {}).get("replicas", 1) if obj else None

    async def sync(self, key: str) -> None:
        pdb = self.pdbs.get(key)
        if pdb is None:
            return
        ns, _ = split_key(key)
        pods = [p for p in self.pods.list() if p["metadata"]["namespace"] == ns]
        st = budget_status(pdb, pods, self.scale_of, now=self.clock())
        if st != pdb.get("status"):
            await self.client.update("poddisruptionbudgets", dict(pdb, status=st), namespace=ns, subresource="status")
        if st.get("disruptedPods"):
            self.queue.add_after(key, DISRUPTED_TTL / 4)  # expire stale grants
