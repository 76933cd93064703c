"""Deployment controller: ReplicaSets per pod template, rolled as the strategy says
(deployment_controller.go, sync.go, rolling.go, recreate.go, progress.go and
util/deployment_util.go upstream).

Each distinct pod template gets a ReplicaSet ``<deployment>-<pod-template-hash>``; the
newest is scaled up and the old ones down within ``maxSurge`` / ``maxUnavailable``
(RollingUpdate) or all old ones first (Recreate). Revisions are recorded in the
``deployment.kubernetes.io/revision`` annotation; every scale stamps the ReplicaSet with the
``desired-replicas`` / ``max-replicas`` it was sized for, which is how a later change of
``spec.replicas`` is recognised as a scaling event and spread proportionally over the
ReplicaSets of a rollout in flight. The status carries the Available and Progressing
conditions with upstream's reasons; a rollout that makes no progress for
``progressDeadlineSeconds`` gets ``ProgressDeadlineExceeded``, which is what makes
``kubectl rollout status`` fail.

Key design choice: every decision is a pure function of (deployment, ReplicaSets, now) —
``plan_*``, ``calculate_status``, ``rollout_conditions`` — kept apart from the small shell
that applies them, so the arithmetic (rounding, proportions, deadlines) is unit-tested
against upstream's numbers without an API server.
"""
from __future__ import annotations

import copy
import datetime as dt
import json
import math
from typing import Any, Callable

from nanokube.api.errors import ApiError
from nanokube.api.selectors import from_label_selector, matches
from nanokube.client.events import emit
from .base import Controller, controller_ref, split_key

Obj = dict[str, Any]
HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
DESIRED = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
SAFE = "bcdfghjklmnpqrstvwxz2456789"
MAX_INT32 = 2**31 - 1

# Condition reasons, spelled as upstream's deployment_util.go spells them.
NEW_RS_CREATED = "NewReplicaSetCreated"
FOUND_NEW_RS = "FoundNewReplicaSet"
RS_UPDATED = "ReplicaSetUpdated"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
TIMED_OUT = "ProgressDeadlineExceeded"
PAUSED = "DeploymentPaused"
RESUMED = "DeploymentResumed"
MIN_AVAILABLE = "MinimumReplicasAvailable"
MIN_UNAVAILABLE = "MinimumReplicasUnavailable"


def fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def template_hash(template: Obj, collision_count: int = 0) -> str:
    """A stable hash of the pod template, spelled like upstream's (SafeEncodeString)."""
    data = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    if collision_count:
        data += str(collision_count).encode()
    return "".join(SAFE[int(c) % len(SAFE)] for c in str(fnv32a(data)))


def _strip_hash(template: Obj) -> Obj:
    t = copy.deepcopy(template)
    (t.get("metadata") or {}).get("labels", {}).pop(HASH_LABEL, None)
    return t


# -- fenceposts (util/deployment_util.go, intstr.GetScaledValueFromIntOrPercent) ---------------
def scaled_value(value: Any, total: int, *, round_up: bool) -> int:
    """An int-or-percent against ``total``: percentages round up or down as asked."""
    if isinstance(value, str):
        if not value.endswith("%"):
            raise ValueError(f"invalid value for IntOrString: invalid type: string is not a percentage: {value!r}")
        x = int(value[:-1]) * total / 100
        return math.ceil(x) if round_up else math.floor(x)
    return int(value or 0)



def resolve_fenceposts(max_surge: Any, max_unavailable: Any, desired: int) -> tuple[int, int]:
    """ResolveFenceposts: surge rounds up, unavailable down; both 0 means 1 unavailable."""
    surge = scaled_value(max_surge if max_surge is not None else 0, desired, round_up=True)
    unavail = scaled_value(max_unavailable if max_unavailable is not None else 0, desired, round_up=False)
    if surge == 0 and unavail == 0:
        unavail = 1
    return surge, unavail


def _spec_replicas(d: Obj) -> int:
    return d["spec"].get("replicas", 1)


def is_rolling(d: Obj) -> bool:
    return (d["spec"].get("strategy") or {}).get("type", "RollingUpdate") == "RollingUpdate"


def _fenceposts(d: Obj) -> tuple[int, int]:
    ru = (d["spec"].get("strategy") or {}).get("rollingUpdate") or {}
    return resolve_fenceposts(ru.get("maxSurge", "25%"), ru.get("maxUnavailable", "25%"), _spec_replicas(d))


def max_surge(d: Obj) -> int:
    return _fenceposts(d)[0] if is_rolling(d) else 0


def max_unavailable(d: Obj) -> int:
    want = _spec_replicas(d)
    if not is_rolling(d) or want == 0:
        return 0
    return min(_fenceposts(d)[1], want)



# -- ReplicaSet arithmetic -----------------------------------------------------------------------
def _replicas(rs: Obj | None) -> int:
    return rs["spec"].get("replicas", 0) if rs else 0


def _st(rs: Obj | None, k: str) -> int:
    return (rs.get("status") or {}).get(k, 0) if rs else 0


def _available(rs: Obj) -> int:
    return _st(rs, "availableReplicas")


def _rev(rs: Obj) -> int:
    try:
        return int((rs["metadata"].get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def _annotation_int(rs: Obj, name: str) -> int | None:
    try:
        return int((rs["metadata"].get("annotations") or {})[name])
    except (KeyError, ValueError):
        return None


def _created_key(rs: Obj) -> tuple[str, str]:
    return (rs["metadata"].get("creationTimestamp", ""), rs["metadata"]["name"])


def by_creation(rss: list[Obj]) -> list[Obj]:
    """ReplicaSetsByCreationTimestamp: oldest first, name breaks ties."""
    return sorted(rss, key=_created_key)


def by_size_older(rss: list[Obj]) -> list[Obj]:
    """ReplicaSetsBySizeOlder: largest first; among equals, older first."""
    return sorted(by_creation(rss), key=lambda r: -_replicas(r))


def by_size_newer(rss: list[Obj]) -> list[Obj]:
    """ReplicaSetsBySizeNewer: largest first; among equals, newer first."""
    return sorted(list(reversed(by_creation(rss))), key=lambda r: -_replicas(r))


def active(rss: list[Obj | None]) -> list[Obj]:
    return [r for r in rss if r is not None and _replicas(r) > 0]


def round_half_away(x: float) -> int:
    """Go's math.Round (integer.RoundToInt32): halves away from zero, unlike Python's round."""
    return int(math.floor(x + 0.5)) if x >= 0 else -int(math.floor(-x + 0.5))


def new_rs_new_replicas(d: Obj, all_rss: list[Obj], new: Obj) -> int:
    """NewRSNewReplicas: how far the new ReplicaSet may grow now."""
    want = _spec_replicas(d)
    if not is_rolling(d):
        return want
    surge = max_surge(d)
    current = sum(_replicas(r) for r in all_rss)
    if current >= want + surge:
        return _replicas(new)
    return _replicas(new) + min(want + surge - current, want - _replicas(new))


def _fraction(rs: Obj, d: Obj) -> int:
    """getReplicaSetFraction: this ReplicaSet's share of the size change."""
    want = _spec_replicas(d)
    if want == 0:
        return -_replicas(rs)
    max_now = want + max_surge(d)
    before = _annotation_int(rs, MAX_REPLICAS)
    if not before:
        before = _st(d, "replicas")
    if not before:
        return 0
    return round_half_away(_replicas(rs) * max_now / before) - _replicas(rs)


def _proportion(rs: Obj, d: Obj, to_add: int, added: int) -> int:
    if _replicas(rs) == 0 or to_add == 0 or to_add == added:
        return 0
    frac = _fraction(rs, d)
    allowed = to_add - added
    return min(frac, allowed) if to_add > 0 else max(frac, allowed)


def find_active_or_latest(new: Obj | None, old: list[Obj]) -> Obj | None:
    """FindActiveOrLatest: the only active ReplicaSet, or the newest if none is active."""
    if new is None and not old:
        return None
    ordered = sorted(old, key=_created_key, reverse=True)
    act = active(([new] if new else []) + ordered)
    if not act:
        return new if new is not None else ordered[0]
    if len(act) == 1:
        return act[0]
    return None


def is_saturated(d: Obj, rs: Obj | None) -> bool:
    if rs is None:
        return False
    desired = _annotation_int(rs, DESIRED)
    return (_replicas(rs) == _spec_replicas(d) and desired == _spec_replicas(d)
            and _available(rs) == _spec_replicas(d))


def plan_scale(d: Obj, new: Obj | None, old: list[Obj]) -> dict[str, int]:
    """sync.go's scale(): target sizes (by ReplicaSet name) when spec.replicas changed,
    spreading the change proportionally over the ReplicaSets of a rollout in flight."""
    want = _spec_replicas(d)
    one = find_active_or_latest(new, old)
    if one is not None:
        return {} if _replicas(one) == want else {one["metadata"]["name"]: want}
    if is_saturated(d, new):
        return {r["metadata"]["name"]: 0 for r in active(old)}
    if not is_rolling(d):
        return {}
    rss = active(old + ([new] if new else []))
    allowed = want + max_surge(d) if want > 0 else 0
    to_add = allowed - sum(_replicas(r) for r in rss)
    if to_add > 0:
        rss = by_size_newer(rss)
    elif to_add < 0:
        rss = by_size_older(rss)
    sizes: dict[str, int] = {}
    added = 0
    for rs in rss:
        p = _proportion(rs, d, to_add, added) if to_add else 0
        sizes[rs["metadata"]["name"]] = _replicas(rs) + p
        added += p
    if rss and to_add:
        first = rss[0]["metadata"]["name"]
        sizes[first] = max(0, sizes[first] + to_add - added)
    return sizes


def plan_rolling_scale_down(d: Obj, new: Obj, old: list[Obj]) -> dict[str, int]:
    """rolling.go's reconcileOldReplicaSets: first drop unhealthy old replicas, then healthy
    ones as far as maxUnavailable allows. Returns target sizes by ReplicaSet name."""
    old = active(old)
    if not old:
        return {}
    all_rss = old + [new]
    want = _spec_replicas(d)
    min_available = want - max_unavailable(d)
    new_unavailable = _replicas(new) - _available(new)
    max_down = sum(_replicas(r) for r in all_rss) - min_available - new_unavailable
    if max_down <= 0:
        return {}
    sizes = {r["metadata"]["name"]: _replicas(r) for r in old}
    cleaned = 0
    for rs in by_creation(old):
        if cleaned >= max_down:
            break
        name = rs["metadata"]["name"]
        if sizes[name] == 0 or sizes[name] == _available(rs):
            continue
        n = min(max_down - cleaned, sizes[name] - _available(rs))
        sizes[name] -= n
        cleaned += n
    # scaleDownOldReplicaSetsForRollingUpdate (availability counts the whole set).
    avail = sum(_available(r) for r in all_rss)
    if avail > min_available:
        total = avail - min_available
        done = 0
        for rs in by_creation(old):
            if done >= total:
                break
            name = rs["metadata"]["name"]
            if sizes[name] == 0:
                continue
            n = min(sizes[name], total - done)
            sizes[name] -= n
            done += n
    return {k: v for k, v in sizes.items() if v != _replicas(next(r for r in old if r["metadata"]["name"] == k))}


def plan_cleanup(d: Obj, old: list[Obj]) -> list[Obj]:
    """cleanupDeployment: the oldest idle ReplicaSets beyond revisionHistoryLimit."""
    limit = d["spec"].get("revisionHistoryLimit")
    if limit is None:
        return []
    alive = [r for r in old if not r["metadata"].get("deletionTimestamp")]
    diff = len(alive) - limit
    if diff <= 0:
        return []
    out = []
    for rs in sorted(alive, key=lambda r: (_rev(r), _created_key(r)))[:diff]:
        if _st(rs, "replicas") or _replicas(rs) or rs["metadata"].get("generation", 1) > _st(rs, "observedGeneration"):
            continue
        out.append(rs)
    return out


# -- status and conditions (sync.go calculateStatus, progress.go) --------------------------------
def _ts(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_ts(s: str) -> dt.datetime:
    return dt.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)


def get_condition(status: Obj, typ: str) -> Obj | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == typ), None)


def new_condition(typ: str, status: str, reason: str, message: str, now: dt.datetime) -> Obj:
    t = _ts(now)
    return {"type": typ, "status": status, "lastUpdateTime": t, "lastTransitionTime": t,
            "reason": reason, "message": message}


def set_condition(status: Obj, cond: Obj) -> None:
    """SetDeploymentCondition: same status and reason is a no-op; same status keeps the
    transition time."""
    cur = get_condition(status, cond["type"])
    if cur is not None and cur.get("status") == cond["status"] and cur.get("reason") == cond["reason"]:
        return
    if cur is not None and cur.get("status") == cond["status"]:
        cond = {**cond, "lastTransitionTime": cur.get("lastTransitionTime", cond["lastTransitionTime"])}
    status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != cond["type"]] + [cond]


def remove_condition(status: Obj, typ: str) -> None:
    status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != typ]


def has_progress_deadline(d: Obj) -> bool:
    pds = d["spec"].get("progressDeadlineSeconds")
    return pds is not None and pds != MAX_INT32


def calculate_status(d: Obj, new: Obj | None, all_rss: list[Obj], *, now: dt.datetime) -> Obj:
    """calculateStatus: counts from the ReplicaSets, conditions carried over, Available set."""
    rss = [r for r in all_rss if r is not None]
    available = sum(_available(r) for r in rss)
    total = sum(_replicas(r) for r in rss)
    cur = d.get("status") or {}
    status: Obj = {
        "observedGeneration": d["metadata"].get("generation", 1),
        "replicas": sum(_st(r, "replicas") for r in rss),
        "updatedReplicas": _st(new, "replicas"),
        "readyReplicas": sum(_st(r, "readyReplicas") for r in rss),
        "availableReplicas": available,
        "unavailableReplicas": max(0, total - available),
        "conditions": copy.deepcopy(cur.get("conditions") or []),
    }
    for k in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas", "unavailableReplicas"):
        if not status[k]:
            del status[k]  # omitempty, as upstream serialises them
    if cur.get("collisionCount"):
        status["collisionCount"] = cur["collisionCount"]
    if available >= _spec_replicas(d) - max_unavailable(d):
        set_condition(status, new_condition("Available", "True", MIN_AVAILABLE, "Deployment has minimum availability.", now))
    else:
        set_condition(status, new_condition("Available", "False", MIN_UNAVAILABLE,
                                             "Deployment does not have minimum availability.", now))
    return status


def deployment_complete(d: Obj, status: Obj) -> bool:
    want = _spec_replicas(d)
    return (status.get("updatedReplicas", 0) == want and status.get("replicas", 0) == want
            and status.get("availableReplicas", 0) == want
            and status.get("observedGeneration", 0) >= d["metadata"].get("generation", 1))


def deployment_progressing(d: Obj, status: Obj) -> bool:
    old = d.get("status") or {}
    g = lambda s, k: s.get(k, 0)  # noqa: E731
    return (g(status, "updatedReplicas") > g(old, "updatedReplicas")
            or g(status, "replicas") - g(status, "updatedReplicas") < g(old, "replicas") - g(old, "updatedReplicas")
            or g(status, "readyReplicas") > g(old, "readyReplicas")
            or g(status, "availableReplicas") > g(old, "availableReplicas"))


def deployment_timed_out(d: Obj, status: Obj, *, now: dt.datetime) -> bool:
    if not has_progress_deadline(d):
        return False
    cond = get_condition(status, "Progressing")
    if cond is None or cond.get("reason") == NEW_RS_AVAILABLE:
        return False
    if cond.get("reason") == TIMED_OUT:
        return True
    since = _parse_ts(cond["lastUpdateTime"])
    return since + dt.timedelta(seconds=d["spec"]["progressDeadlineSeconds"]) < now


def rollout_status(d: Obj, new: Obj | None, all_rss: list[Obj], *, now: dt.datetime) -> Obj:
    """syncRolloutStatus's status: calculateStatus plus the Progressing condition."""
    status = calculate_status(d, new, all_rss, now=now)
    if not has_progress_deadline(d):
        remove_condition(status, "Progressing")
        return status
    cur = get_condition(d.get("status") or {}, "Progressing")
    complete_before = (status.get("replicas", 0) == status.get("updatedReplicas", 0) and cur is not None
                       and cur.get("reason") == NEW_RS_AVAILABLE)
    if complete_before:
        return status
    name = d["metadata"]["name"]
    if deployment_complete(d, status):
        msg = f'ReplicaSet "{new["metadata"]["name"]}" has successfully progressed.' if new else \
            f'Deployment "{name}" has successfully progressed.'
        set_condition(status, new_condition("Progressing", "True", NEW_RS_AVAILABLE, msg, now))
    elif deployment_progressing(d, status):
        msg = f'ReplicaSet "{new["metadata"]["name"]}" is progressing.' if new else f'Deployment "{name}" is progressing.'
        cond = new_condition("Progressing", "True", RS_UPDATED, msg, now)
        # Progress refreshes lastUpdateTime (the deadline runs from there), keeps the transition.
        if cur is not None:
            if cur.get("status") == "True":
                cond["lastTransitionTime"] = cur.get("lastTransitionTime", cond["lastTransitionTime"])
            remove_condition(status, "Progressing")
        set_condition(status, cond)
    elif deployment_timed_out(d, status, now=now):
        msg = f'ReplicaSet "{new["metadata"]["name"]}" has timed out progressing.' if new else \
            f'Deployment "{name}" has timed out progressing.'
        set_condition(status, new_condition("Progressing", "False", TIMED_OUT, msg, now))
    return status


def stuck_requeue_after(d: Obj, status: Obj, *, now: dt.datetime) -> float | None:
    """requeueStuckDeployment: seconds until the deadline should be checked again, or None."""
    cur = get_condition(d.get("status") or {}, "Progressing")
    if not has_progress_deadline(d) or cur is None:
        return None
    if deployment_complete(d, status) or cur.get("reason") == TIMED_OUT:
        return None
    after = (_parse_ts(cur["lastUpdateTime"]) + dt.timedelta(seconds=d["spec"]["progressDeadlineSeconds"])
             - now).total_seconds()
    return max(after, 0.0) + 1.0


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class DeploymentController(Controller):
    name = "deployment"

    def __init__(self, client: Any, *, clock: Callable[[], dt.datetime] = _utcnow):
        super().__init__(client)
        self.now = clock
        self.deployments = self.informer("deployments")
        self.rs = self.informer("replicasets")
        self.enqueue_handlers(self.deployments)
        self.rs.add_handler(on_add=self._rs_changed, on_update=lambda o, n: self._rs_changed(n),
                            on_delete=self._rs_changed)

    def _rs_changed(self, rs: Obj) -> None:
        ref = controller_ref(rs)
        if ref and ref.get("kind") == "Deployment":
            self.queue.add(f"{rs['metadata']['namespace']}/{ref['name']}")

    def _key(self, d: Obj) -> str:
        return f"{d['metadata']['namespace']}/{d['metadata']['name']}"

    async def sync(self, key: str) -> None:
        d = self.deployments.get(key)
        if d is None:
            return
        d = copy.deepcopy(d)
        ns, _ = split_key(key)
        uid = d["metadata"]["uid"]
        sel = from_label_selector(d["spec"].get("selector"))
        owned = []
        for rs in self.rs.list():
            if rs["metadata"]["namespace"] != ns:
                continue
            ref = controller_ref(rs)
            if ref and ref.get("uid") == uid:
                owned.append(copy.deepcopy(rs))
            elif ref is None and matches(rs["metadata"].get("labels"), sel) and not d["metadata"].get("deletionTimestamp"):
                owned.append(await self._adopt(d, rs))
        if d["metadata"].get("deletionTimestamp"):
            new, _ = self._split(d, owned)
            await self._write_status(d, calculate_status(d, new, owned, now=self.now()))
            return
        d = await self._check_paused(d)
        if d is None:
            return
        if d["spec"].get("paused"):
            await self._sync_scale_only(d, owned)
            return
        new, old = self._split(d, owned)
        if new is not None and any(_annotation_int(r, DESIRED) not in (None, _spec_replicas(d)) for r in active([new] + old)):
            await self._sync_scale_only(d, owned)
            return
        if not is_rolling(d):
            await self._recreate(d, owned)
        else:
            await self._rolling(d, owned)

    # -- ReplicaSets -------------------------------------------------------------------------
    @staticmethod
    def _split(d: Obj, owned: list[Obj]) -> tuple[Obj | None, list[Obj]]:
        template = _strip_hash(d["spec"]["template"])
        new = next((rs for rs in by_creation(owned) if _strip_hash(rs["spec"]["template"]) == template), None)
        return new, [rs for rs in owned if rs is not new]

    async def _adopt(self, d: Obj, rs: Obj) -> Obj:
        refs = list(rs["metadata"].get("ownerReferences") or []) + [{
            "apiVersion": "apps/v1", "kind": "Deployment", "name": d["metadata"]["name"], "uid": d["metadata"]["uid"],
            "controller": True, "blockOwnerDeletion": True}]
        return await self.client.patch("replicasets", rs["metadata"]["name"], {"metadata": {"ownerReferences": refs}},
                                       namespace=rs["metadata"]["namespace"])

    async def _new_and_old(self, d: Obj, owned: list[Obj], *, create: bool) -> tuple[Obj, Obj | None, list[Obj]]:
        """getAllReplicaSetsAndSyncRevision: the new ReplicaSet (created if asked), its revision
        synced, the Deployment's revision annotation and Progressing condition kept up."""
        new, old = self._split(d, owned)
        revision = max((_rev(r) for r in old), default=0) + 1
        ns = d["metadata"]["namespace"]
        if new is not None:
            patch: Obj = {}
            if _rev(new) < revision:
                patch.setdefault("metadata", {})["annotations"] = {REVISION: str(revision)}
            if new["spec"].get("minReadySeconds", 0) != d["spec"].get("minReadySeconds", 0):
                patch["spec"] = {"minReadySeconds": d["spec"].get("minReadySeconds", 0)}
            if patch:
                new = await self.client.patch("replicasets", new["metadata"]["name"], patch, namespace=ns)
            d = await self._sync_revision(d, new)
            if has_progress_deadline(d) and get_condition(d.get("status") or {}, "Progressing") is None:
                st = copy.deepcopy(d.get("status") or {})
                set_condition(st, new_condition("Progressing", "True", FOUND_NEW_RS,
                                                f'Found new replica set "{new["metadata"]["name"]}"', self.now()))
                d = await self._write_status(d, st)
            return d, new, old
        if not create:
            return d, None, old
        created = await self._create_rs(d, old, revision)
        if created is None:
            return d, None, old
        d = await self._sync_revision(d, created)
        if has_progress_deadline(d):
            st = copy.deepcopy(d.get("status") or {})
            set_condition(st, new_condition("Progressing", "True", NEW_RS_CREATED,
                                            f'Created new replica set "{created["metadata"]["name"]}"', self.now()))
            d = await self._write_status(d, st)
        return d, created, old

    async def _sync_revision(self, d: Obj, new: Obj) -> Obj:
        if (d["metadata"].get("annotations") or {}).get(REVISION) == str(_rev(new)):
            return d
        return await self.client.patch("deployments", d["metadata"]["name"],
                                       {"metadata": {"annotations": {REVISION: str(_rev(new))}}},
                                       namespace=d["metadata"]["namespace"])

    async def _create_rs(self, d: Obj, old: list[Obj], revision: int) -> Obj | None:
        collisions = (d.get("status") or {}).get("collisionCount", 0)
        h = template_hash(_strip_hash(d["spec"]["template"]), collisions)
        template = copy.deepcopy(d["spec"]["template"])
        template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = h
        selector = copy.deepcopy(d["spec"]["selector"])
        selector.setdefault("matchLabels", {})[HASH_LABEL] = h
        want = _spec_replicas(d)
        shell = {"spec": {"replicas": 0}, "metadata": {"name": ""}}
        replicas = new_rs_new_replicas(d, old + [shell], shell)
        rs = {
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": f"{d['metadata']['name']}-{h}", "namespace": d["metadata"]["namespace"],
                         "labels": dict(template["metadata"]["labels"]),
                         "annotations": {REVISION: str(revision), DESIRED: str(want),
                                         MAX_REPLICAS: str(want + max_surge(d))},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": d["metadata"]["name"],
                                              "uid": d["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]},
            "spec": {"replicas": replicas, "minReadySeconds": d["spec"].get("minReadySeconds", 0),
                     "selector": selector, "template": template},
        }
        try:
            created = await self.client.create("replicasets", rs, namespace=d["metadata"]["namespace"])
        except ApiError as e:
            if e.code == 409:
                # Same name, different template: a hash collision; bump the count and retry.
                existing = self.rs.get(f"{d['metadata']['namespace']}/{rs['metadata']['name']}")
                if existing is not None and controller_ref(existing) and controller_ref(existing)["uid"] == d["metadata"]["uid"]:
                    return copy.deepcopy(existing)
                st = copy.deepcopy(d.get("status") or {})
                st["collisionCount"] = collisions + 1
                await self._write_status(d, st)
                return None
            raise
        if replicas:
            await emit(self.client, d, reason="ScalingReplicaSet", component="deployment-controller",
                       message=f"Scaled up replica set {created['metadata']['name']} from 0 to {replicas}")
        return created

    async def _scale(self, d: Obj, rs: Obj, n: int) -> bool:
        """scaleReplicaSet: set the size and stamp the desired/max annotations it was sized for."""
        cur = _replicas(rs)
        want, mx = str(_spec_replicas(d)), str(_spec_replicas(d) + max_surge(d))
        ann = rs["metadata"].get("annotations") or {}
        if cur == n and ann.get(DESIRED) == want and ann.get(MAX_REPLICAS) == mx:
            return False
        got = await self.client.patch("replicasets", rs["metadata"]["name"],
                                      {"spec": {"replicas": n}, "metadata": {"annotations": {DESIRED: want, MAX_REPLICAS: mx}}},
                                      namespace=rs["metadata"]["namespace"])
        rs.clear()
        rs.update(got)
        if cur != n:
            await emit(self.client, d, reason="ScalingReplicaSet", component="deployment-controller",
                       message=f"Scaled {'up' if n > cur else 'down'} replica set {rs['metadata']['name']} from {cur} to {n}")
        return cur != n

    # -- sync paths ----------------------------------------------------------------------------
    async def _check_paused(self, d: Obj) -> Obj | None:
        """checkPausedConditions: Progressing Unknown while paused, so a resume never times out."""
        if not has_progress_deadline(d):
            return d
        cond = get_condition(d.get("status") or {}, "Progressing")
        if cond is not None and cond.get("reason") == TIMED_OUT:
            return d
        paused_cond = cond is not None and cond.get("reason") == PAUSED
        st = copy.deepcopy(d.get("status") or {})
        if d["spec"].get("paused") and not paused_cond:
            set_condition(st, new_condition("Progressing", "Unknown", PAUSED, "Deployment is paused", self.now()))
        elif not d["spec"].get("paused") and paused_cond:
            set_condition(st, new_condition("Progressing", "Unknown", RESUMED, "Deployment is resumed", self.now()))
        else:
            return d
        return await self._write_status(d, st)

    async def _sync_scale_only(self, d: Obj, owned: list[Obj]) -> None:
        """sync(): a scaling event or a paused Deployment — resize, never roll."""
        d, new, old = await self._new_and_old(d, owned, create=False)
        by_name = {r["metadata"]["name"]: r for r in old + ([new] if new else [])}
        for name, n in plan_scale(d, new, old).items():
            await self._scale(d, by_name[name], n)
        if d["spec"].get("paused"):
            await self._cleanup(d, old)
        await self._write_status(d, calculate_status(d, new, old + ([new] if new else []), now=self.now()))

    async def _rolling(self, d: Obj, owned: list[Obj]) -> None:
        d, new, old = await self._new_and_old(d, owned, create=True)
        if new is None:
            return
        all_rss = old + [new]
        want = _spec_replicas(d)
        if _replicas(new) != want:
            target = want if _replicas(new) > want else new_rs_new_replicas(d, all_rss, new)
            if await self._scale(d, new, target):
                await self._sync_rollout_status(d, new, all_rss)
                return
        by_name = {r["metadata"]["name"]: r for r in old}
        down = plan_rolling_scale_down(d, new, old)
        for name, n in sorted(down.items()):
            await self._scale(d, by_name[name], n)
        if not down and deployment_complete(d, d.get("status") or {}):
            await self._cleanup(d, old)
        await self._sync_rollout_status(d, new, all_rss)

    async def _recreate(self, d: Obj, owned: list[Obj]) -> None:
        d, new, old = await self._new_and_old(d, owned, create=False)
        all_rss = old + ([new] if new else [])
        scaled = False
        for rs in active(old):
            scaled = await self._scale(d, rs, 0) or scaled
        if scaled:
            await self._sync_rollout_status(d, new, all_rss)
            return
        if any(_replicas(r) or _st(r, "replicas") for r in old):
            await self._sync_rollout_status(d, new, all_rss)
            return  # wait for the old pods to be gone
        if new is None:
            d, new, old = await self._new_and_old(d, owned, create=True)
            if new is None:
                return
            all_rss = old + [new]
        if await self._scale(d, new, _spec_replicas(d)):
            await self._sync_rollout_status(d, new, all_rss)
            return
        if deployment_complete(d, d.get("status") or {}):
            await self._cleanup(d, old)
        await self._sync_rollout_status(d, new, all_rss)

    async def _cleanup(self, d: Obj, old: list[Obj]) -> None:
        for rs in plan_cleanup(d, old):
            try:
                await self.client.delete("replicasets", rs["metadata"]["name"], namespace=rs["metadata"]["namespace"])
            except ApiError as e:
                if e.code != 404:
                    raise

    # -- status ------------------------------------------------------------------------------
    async def _sync_rollout_status(self, d: Obj, new: Obj | None, all_rss: list[Obj]) -> None:
        now = self.now()
        status = rollout_status(d, new, all_rss, now=now)
        if status == (d.get("status") or {}):
            after = stuck_requeue_after(d, status, now=now)
            if after is not None:
                self.queue.add_after(self._key(d), after)
            return
        await self._write_status(d, status)

    async def _write_status(self, d: Obj, status: Obj) -> Obj:
        if status == (d.get("status") or {}):
            return d
        nd = copy.deepcopy(d)
        nd["status"] = status
        try:
            return await self.client.update("deployments", nd, namespace=d["metadata"]["namespace"], subresource="status")
        except ApiError as e:
            if e.code == 409:
                self.queue.add_after(self._key(d), 0.05)
            elif e.code != 404:
                raise
            return nd
