"""DaemonSet controller: one pod on every eligible node (daemon_controller.go, reduced).

Eligibility is pure (``should_run``): the template's nodeSelector (the scheduler's
node_affinity plugin), required nodeAffinity terms, and taints against the template's
tolerations plus the ones every daemon pod gets (not-ready, unreachable, unschedulable,
pressure). An untolerated NoSchedule taint stops new pods but keeps running ones; NoExecute
removes them, as upstream. The controller places pods itself: ``spec.nodeName`` plus the
upstream ``matchFields metadata.name`` node affinity, so no scheduler round trip is needed.
Pods carry ``controller-revision-hash`` (a hash of the template); a template change rolls
nodes over at most ``maxUnavailable`` at a time (``plan_rolling_update``). Creations in
flight are remembered until the informer sees them, so watch lag never doubles a pod.
"""
from __future__ import annotations

import copy
import json
import math
import random
import time
from typing import Any

from nanokube.api.errors import ApiError
from nanokube.scheduler.framework import NodeInfo
from nanokube.scheduler.plugins import node_affinity
from nanokube.scheduler.plugins.taint_toleration import tolerates
from .base import Controller, controller_ref, create_pods, delete_pod, is_pod_ready, split_key
from .replicaset import EXPECTATION_TTL, NAME_CHARS, pod_from_template

Obj = dict[str, Any]
HASH_LABEL = "controller-revision-hash"
GENERATION_LABEL = "pod-template-generation"
COMPONENT = "daemonset-controller"
DAEMON_TOLERATIONS = [
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
]
HOST_NETWORK_TOLERATION = {"key": "node.kubernetes.io/network-unavailable", "operator": "Exists", "effect": "NoSchedule"}


# -- pure ----------------------------------------------------------------------------------
def template_hash(template: Obj, collision_count: int = 0) -> str:
    """A short, stable name for a template (upstream: fnv32a, then SafeEncodeString)."""
    h = 0x811C9DC5
    for b in (json.dumps(template, sort_keys=True, separators=(",", ":")) + str(collision_count or "")).encode():
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return "".join(NAME_CHARS[ord(c) % len(NAME_CHARS)] for c in str(h))


def daemon_tolerations(spec: Obj) -> list[Obj]:
    tols = [copy.deepcopy(t) for t in spec.get("tolerations") or []]
    extra = DAEMON_TOLERATIONS + ([HOST_NETWORK_TOLERATION] if spec.get("hostNetwork") else [])
    for t in extra:
        if not any(x.get("key") == t["key"] and x.get("effect") == t["effect"] for x in tols):
            tols.append(dict(t))
    return tols


def _requirement(req: Obj, values: dict[str, str]) -> bool:
    key, op, vals = req.get("key", ""), req.get("operator"), req.get("values") or []
    have = key in values
    v = values.get(key)
    if op == "In":
        return have and v in vals
    if op == "NotIn":
        return not have or v not in vals
    if op == "Exists":
        return have
    if op == "DoesNotExist":
        return not have
    if op in ("Gt", "Lt"):
        try:
            a, b = int(v or ""), int(vals[0])
        except (ValueError, IndexError):
            return False
        return a > b if op == "Gt" else a < b
    return False


def node_affinity_matches(spec: Obj, node: Obj) -> bool:
    """requiredDuringSchedulingIgnoredDuringExecution: the terms are ORed, each term's
    matchExpressions (node labels) and matchFields (metadata.name) are ANDed."""
    req = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
           .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    terms = req.get("nodeSelectorTerms")
    if not terms:
        return True
    labels = node["metadata"].get("labels") or {}
    fields = {"metadata.name": node["metadata"]["name"]}
    for t in terms:
        exprs, flds = t.get("matchExpressions") or [], t.get("matchFields") or []
        if not exprs and not flds:
            continue  # an empty term matches nothing
        if all(_requirement(e, labels) for e in exprs) and all(_requirement(f, fields) for f in flds):
            return True
    return False


def should_run(ds: Obj, node: Obj) -> tuple[bool, bool]:
    """(should run a new pod here, should keep an existing one) — NodeShouldRunDaemonPod."""
    spec = (ds["spec"].get("template") or {}).get("spec") or {}
    if spec.get("nodeName") and spec["nodeName"] != node["metadata"]["name"]:
        return False, False
    pod = {"spec": {**spec, "tolerations": daemon_tolerations(spec)}}
    if node_affinity.filter(pod, NodeInfo(node), None) is not None or not node_affinity_matches(spec, node):
        return False, False
    run, keep = True, True
    for taint in (node.get("spec") or {}).get("taints") or []:
        effect = taint.get("effect")
        if effect not in ("NoSchedule", "NoExecute"):
            continue
        if not any(tolerates(t, taint) for t in pod["spec"]["tolerations"]):
            run = False
            if effect == "NoExecute":
                keep = False
    return run, keep


def _scaled(v: Any, desired: int, *, round_up: bool) -> int:
    if isinstance(v, str) and v.endswith("%"):
        x = desired * int(v[:-1]) / 100
        return math.ceil(x) if round_up else math.floor(x)
    return int(v)


def max_surge(ds: Obj, desired: int) -> int:
    us = ds["spec"].get("updateStrategy") or {}
    return _scaled((us.get("rollingUpdate") or {}).get("maxSurge", 0) or 0, desired, round_up=True)


def max_unavailable(ds: Obj, desired: int) -> int:
    us = ds["spec"].get("updateStrategy") or {}
    n = _scaled((us.get("rollingUpdate") or {}).get("maxUnavailable", 1), desired, round_up=False)
    if n == 0 and max_surge(ds, desired) > 0:
        return 0  # surging instead (upstream: both 0 is invalid; with surge, 0 unavailable is allowed)
    return max(n, 1) if desired else n


def plan_surge(ds: Obj, node_pods: dict[str, list[Obj]], want: set[str], hash_: str) -> tuple[list[Obj], list[str]]:
    """With maxSurge: (old pods to delete, nodes to start an updated pod on). A node's old pod
    goes once its new pod is Ready; at most maxSurge nodes run both at a time; an old pod that
    is not Ready anyway is replaced without surging (rollingUpdate in update.go)."""
    budget = max_surge(ds, len(want))
    delete: list[Obj] = []
    start: list[str] = []
    waiting: list[str] = []
    for node in sorted(want):
        pods = [p for p in node_pods.get(node, []) if not p["metadata"].get("deletionTimestamp")]
        new = [p for p in pods if (p["metadata"].get("labels") or {}).get(HASH_LABEL) == hash_]
        old = [p for p in pods if p not in new]
        if not old:
            continue
        if new:
            if is_pod_ready(new[0]):
                delete += old
            else:
                budget -= 1  # surging here already
        elif not is_pod_ready(old[0]):
            delete += old
        else:
            waiting.append(node)
    start = waiting[:max(0, budget)]
    return delete, start


def plan_rolling_update(ds: Obj, node_pods: dict[str, list[Obj]], want: set[str], hash_: str) -> list[Obj]:
    """Old pods to delete this round, keeping at most maxUnavailable nodes without an
    available up-to-date pod (rollingUpdate in update.go, maxSurge 0)."""
    limit = max_unavailable(ds, len(want))
    unavailable = 0
    replace_now: list[Obj] = []
    candidates: list[Obj] = []
    for node in sorted(want):
        pods = [p for p in node_pods.get(node, []) if not p["metadata"].get("deletionTimestamp")]
        new = [p for p in pods if (p["metadata"].get("labels") or {}).get(HASH_LABEL) == hash_]
        old = [p for p in pods if p not in new]
        if len(pods) > 1 or not pods:
            unavailable += 1
        elif new:
            if not is_pod_ready(new[0]):
                unavailable += 1
        elif not is_pod_ready(old[0]):
            replace_now.append(old[0])  # not available anyway: replacing it costs nothing
        else:
            candidates.append(old[0])
    budget = max(0, min(limit - unavailable, len(candidates)))
    return replace_now + candidates[:budget]


# -- the controller ------------------------------------------------------------------------
class DaemonSetController(Controller):
    name = "daemonset"

    def __init__(self, client: Any, *, rng: random.Random | None = None):
        super().__init__(client)
        self.rng = rng or random.Random()
        self.dss = self.informer("daemonsets")
        self.pods = self.informer("pods")
        self.nodes = self.informer("nodes")
        self.enqueue_handlers(self.dss)
        self.pods.add_handler(on_add=self._pod_changed, on_update=lambda o, n: self._pod_changed(n),
                              on_delete=self._pod_changed)
        self.nodes.add_handler(on_add=self._all, on_update=lambda o, n: self._all(n), on_delete=self._all)
        self._creating: dict[str, dict[str, float]] = {}

    def _all(self, _node: Obj) -> None:
        for ds in self.dss.list():
            self.enqueue(ds)

    def _pod_changed(self, pod: Obj) -> None:
        ref = controller_ref(pod)
        if ref and ref.get("kind") == "DaemonSet":
            self.queue.add(f"{pod['metadata'].get('namespace')}/{ref['name']}")

    def _pending(self, key: str, names: set[str]) -> bool:
        now = time.monotonic()
        c = self._creating.get(key, {})
        for n in [n for n, t in c.items() if n in names or now - t > EXPECTATION_TTL]:
            del c[n]
        return bool(c)

    async def sync(self, key: str) -> None:
        ds = self.dss.get(key)
        if ds is None:
            self._creating.pop(key, None)
            return
        ns, _ = split_key(key)
        uid = ds["metadata"]["uid"]
        in_ns = [p for p in self.pods.list() if p["metadata"].get("namespace") == ns]
        owned = [p for p in in_ns if (controller_ref(p) or {}).get("uid") == uid]
        nodes = {n["metadata"]["name"]: n for n in self.nodes.list()}
        hash_ = template_hash(ds["spec"].get("template") or {}, ds.get("status", {}).get("collisionCount", 0))
        node_pods: dict[str, list[Obj]] = {}
        for p in owned:
            node_pods.setdefault(p["spec"].get("nodeName") or "", []).append(p)
        for pods in node_pods.values():
            pods.sort(key=lambda p: p["metadata"].get("creationTimestamp", ""))
        verdict = {name: should_run(ds, n) for name, n in nodes.items()}
        want = {n for n, (run, _) in verdict.items() if run}

        if not ds["metadata"].get("deletionTimestamp"):
            to_create: list[str] = []
            to_delete: list[Obj] = []
            rolling = (ds["spec"].get("updateStrategy") or {}).get("type", "RollingUpdate") == "RollingUpdate"
            surging = rolling and max_surge(ds, len(want)) > 0
            for node_name, (run, keep) in verdict.items():
                pods = [p for p in node_pods.get(node_name, []) if not p["metadata"].get("deletionTimestamp")]
                failed = [p for p in pods if (p.get("status") or {}).get("phase") == "Failed"]
                running = [p for p in pods if p not in failed]
                to_delete += failed
                if run and not running:
                    to_create.append(node_name)
                elif (run or keep) and len(running) > 1:
                    if surging:  # an old and an updated pod may share a node: the oldest of each stays
                        new = [p for p in running if (p["metadata"].get("labels") or {}).get(HASH_LABEL) == hash_]
                        old = [p for p in running if p not in new]
                        to_delete += new[1:] + old[1:]
                    else:
                        to_delete += running[1:]  # the oldest stays
                elif not keep:
                    to_delete += running
            for node_name, pods in node_pods.items():
                if node_name not in nodes:  # the node is gone (or the pod was never placed)
                    to_delete += [p for p in pods if not p["metadata"].get("deletionTimestamp")]
            if surging:
                gone, start = plan_surge(ds, node_pods, want, hash_)
                to_delete += [p for p in gone if p not in to_delete]
                to_create += [n for n in start if n not in to_create]
            elif rolling:
                to_delete += [p for p in plan_rolling_update(ds, node_pods, want, hash_) if p not in to_delete]
            names = {p["metadata"]["name"] for p in in_ns}
            if self._pending(key, names):
                self.queue.add_after(key, 1.0)
            else:
                await self._create(key, ds, to_create, hash_)
            for p in to_delete:
                await self._delete(ds, p)
        await self._status(ds, nodes, verdict, node_pods, hash_)

    async def _create(self, key: str, ds: Obj, node_names: list[str], hash_: str) -> None:
        def for_node(node_name: str) -> Obj:
            pod = pod_from_template(ds, ds["spec"]["template"], kind="DaemonSet", api_version="apps/v1", rng=self.rng)
            pod["metadata"]["generateName"] = ds["metadata"]["name"] + "-"
            pod["metadata"]["labels"][HASH_LABEL] = hash_
            pod["metadata"]["labels"][GENERATION_LABEL] = str(ds["metadata"].get("generation", 1))
            spec = pod["spec"]
            spec["tolerations"] = daemon_tolerations(spec)
            aff = spec.setdefault("affinity", {}).setdefault("nodeAffinity", {})
            aff["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": [{"matchFields": [
                {"key": "metadata.name", "operator": "In", "values": [node_name]}]}]}
            spec["nodeName"] = node_name
            return pod
        await create_pods(self.client, ds, [for_node(n) for n in node_names], self._creating.setdefault(key, {}),
                          component=COMPONENT)

    async def _delete(self, ds: Obj, pod: Obj) -> None:
        await delete_pod(self.client, ds, pod, component=COMPONENT)

    async def _status(self, ds: Obj, nodes: dict[str, Obj], verdict: dict[str, tuple[bool, bool]],
                      node_pods: dict[str, list[Obj]], hash_: str) -> None:
        desired = current = ready = updated = mis = 0
        for name in nodes:
            pods = node_pods.get(name) or []
            if verdict[name][0]:
                desired += 1
                if not pods:
                    continue
                current += 1
                pod = pods[0]
                ready += is_pod_ready(pod)
                updated += (pod["metadata"].get("labels") or {}).get(HASH_LABEL) == hash_
            elif pods:
                mis += 1
        status: Obj = {
            "currentNumberScheduled": current, "desiredNumberScheduled": desired, "numberMisscheduled": mis,
            "numberReady": ready, "numberAvailable": ready, "updatedNumberScheduled": updated,
            "observedGeneration": ds["metadata"].get("generation", 1),
        }
        if desired - ready > 0:
            status["numberUnavailable"] = desired - ready
        old = ds.get("status") or {}
        if status["numberAvailable"] == 0:
            status.pop("numberAvailable")
        if status.get("updatedNumberScheduled") == 0:
            status.pop("updatedNumberScheduled")
        new_status = {k: v for k, v in old.items() if k in ("collisionCount", "conditions")}
        new_status.update(status)
        if new_status == old:
            return
        new = copy.deepcopy(ds)
        new["status"] = new_status
        try:
            await self.client.update("daemonsets", new, namespace=ds["metadata"]["namespace"], subresource="status")
        except ApiError as e:
            if e.code not in (404, 409):
                raise
            if e.code == 409:
                self.queue.add_after(f"{ds['metadata']['namespace']}/{ds['metadata']['name']}", 0.05)
