"""Job controller: run pods to completion (job_controller.go, reduced).

Counting finished pods exactly once is the hard part, solved as upstream does: every pod the
controller creates carries the ``batch.kubernetes.io/job-tracking`` finalizer. A finished
pod still holding it is not counted yet; the controller (1) records its uid in
``status.uncountedTerminatedPods``, (2) removes the finalizer, (3) moves the uid into
``status.succeeded``/``failed``. A restart between any two steps repeats a step harmlessly,
and a pod without the finalizer is never counted again. The decisions (counts, conditions,
how many pods to start or stop, which indexes) are pure functions of the Job, its pods and
the clock; ``sync`` applies them.
"""
from __future__ import annotations

import copy
import datetime as dt
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from nanokube.api.errors import ApiError
from nanokube.client.events import emit
from .base import Controller, controller_ref, create_pods, delete_pod, is_pod_ready, split_key
from .replicaset import EXPECTATION_TTL, NAME_CHARS

Obj = dict[str, Any]
TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
INDEX_LABEL = "batch.kubernetes.io/job-completion-index"
COMPONENT = "job-controller"


def _ts(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_ts(s: str | None) -> dt.datetime | None:
    if not s:
        return None
    return dt.datetime.strptime(s[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.timezone.utc)


# -- pure helpers --------------------------------------------------------------------------
def pod_outcome(pod: Obj, now: dt.datetime) -> str | None:
    """"succeeded", "failed", "terminating" or None (active). A pod deleted before it
    succeeded counts as failed, as upstream counts it, once it has stopped: its containers all
    terminated or its grace period (``deletionTimestamp``) over — our kubelet does not mark
    deleted pods Failed, it only stops them within the grace period."""
    st = pod.get("status") or {}
    phase = st.get("phase")
    if phase == "Succeeded":
        return "succeeded"
    if phase == "Failed":
        return "failed"
    deleted = parse_ts((pod.get("metadata") or {}).get("deletionTimestamp"))
    if deleted is None:
        return None
    cs = st.get("containerStatuses") or []
    if deleted <= now or (cs and all("terminated" in (c.get("state") or {}) for c in cs)):
        return "failed"
    return "terminating"


def pod_index(pod: Obj) -> int | None:
    v = ((pod.get("metadata") or {}).get("annotations") or {}).get(INDEX_ANNOTATION)
    try:
        return int(v) if v is not None else None
    except ValueError:
        return None


def parse_indexes(s: str | None) -> set[int]:
    """``"0-2,5"`` → {0, 1, 2, 5} (status.completedIndexes)."""
    out: set[int] = set()
    for part in (s or "").split(","):
        if not part:
            continue
        a, _, b = part.partition("-")
        out.update(range(int(a), int(b or a) + 1))
    return out


def format_indexes(idx: set[int]) -> str:
    parts, run = [], []
    for i in sorted(idx):
        if run and i == run[-1] + 1:
            run.append(i)
            continue
        if run:
            parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [i]
    if run:
        parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(parts)


def condition(st: Obj, typ: str) -> Obj | None:
    for c in st.get("conditions") or []:
        if c.get("type") == typ and c.get("status") == "True":
            return c
    return None


def pod_failure_action(job: Obj, pod: Obj) -> tuple[str, str] | None:
    """The spec.podFailurePolicy rule a failed pod matches, first match wins: (action,
    upstream's message), or None when no rule matches (the pod counts, as with "Count")."""
    rules = ((job.get("spec") or {}).get("podFailurePolicy") or {}).get("rules") or []
    md, st = pod["metadata"], pod.get("status") or {}
    for i, rule in enumerate(rules):
        action = rule.get("action", "Count")
        codes = rule.get("onExitCodes")
        if codes is not None:
            values = set(codes.get("values") or [])
            for cs in (st.get("initContainerStatuses") or []) + (st.get("containerStatuses") or []):
                if codes.get("containerName") and cs.get("name") != codes["containerName"]:
                    continue
                code = ((cs.get("state") or {}).get("terminated") or {}).get("exitCode")
                if code is None or code == 0:
                    continue
                if (code in values) == (codes.get("operator", "In") == "In"):
                    return action, (f"Container {cs.get('name')} for pod {md.get('namespace')}/{md.get('name')} failed "
                                    f"with exit code {code} matching {action} rule at index {i}")
        for pc in rule.get("onPodConditions") or []:
            if any(c.get("type") == pc.get("type") and c.get("status") == pc.get("status", "True")
                   for c in st.get("conditions") or []):
                return action, (f"Pod {md.get('namespace')}/{md.get('name')} has condition {pc.get('type')} "
                                f"matching {action} rule at index {i}")
    return None


def set_condition(st: Obj, typ: str, status: str, reason: str, message: str, now: dt.datetime) -> None:
    conds = st.setdefault("conditions", [])
    for c in conds:
        if c.get("type") == typ:
            if c.get("status") != status:
                c["lastTransitionTime"] = _ts(now)
            c.update(status=status, reason=reason, message=message, lastProbeTime=_ts(now))
            return
    conds.append({"type": typ, "status": status, "reason": reason, "message": message,
                  "lastProbeTime": _ts(now), "lastTransitionTime": _ts(now)})


def is_finished(job: Obj) -> bool:
    st = job.get("status") or {}
    return condition(st, "Complete") is not None or condition(st, "Failed") is not None


@dataclass
class Manage:
    """What to do about active pods: how many NonIndexed pods to create, which indexes to
    create, which active pods to delete."""
    create: int = 0
    indexes: list[int] = field(default_factory=list)
    delete: list[Obj] = field(default_factory=list)


def plan_pods(job: Obj, active: list[Obj], *, succeeded: int, completed_indexes: set[int]) -> Manage:
    """How to move the active pods toward ``parallelism`` (and no more than remain to succeed)."""
    spec = job["spec"]
    parallelism = spec.get("parallelism", 1) or 0
    completions = spec.get("completions")
    m = Manage()
    if spec.get("completionMode") == "Indexed" and completions is not None:
        seen: set[int] = set()
        keep: list[Obj] = []
        for p in sorted(active, key=lambda p: p["metadata"].get("creationTimestamp", "")):
            i = pod_index(p)
            if i is None or i >= completions or i in completed_indexes or i in seen:
                m.delete.append(p)  # invalid, finished or duplicate index
            else:
                seen.add(i)
                keep.append(p)
        if len(keep) > parallelism:
            extra = sorted(keep, key=lambda p: -(pod_index(p) or 0))[:len(keep) - parallelism]
            m.delete.extend(extra)
            return m
        pending = [i for i in range(completions) if i not in completed_indexes and i not in seen]
        m.indexes = pending[:max(0, parallelism - len(keep))]
        return m
    if completions is None:
        # Work queue: once any pod succeeded, no new pods; the rest finish on their own.
        want = len(active) if succeeded > 0 else parallelism
    else:
        want = max(0, min(parallelism, completions - succeeded))
    if len(active) > want:
        rank = sorted(active, key=lambda p: (bool(p["spec"].get("nodeName")), is_pod_ready(p),
                                             p["metadata"].get("creationTimestamp", "")))
        m.delete = rank[:len(active) - want]
    else:
        m.create = want - len(active)
    return m


def success_reached(job: Obj, *, succeeded: int, active: int, completed_indexes: set[int]) -> bool:
    spec = job["spec"]
    completions = spec.get("completions")
    if completions is None:
        return succeeded > 0 and active == 0
    if spec.get("completionMode") == "Indexed":
        return len({i for i in completed_indexes if i < completions}) >= completions
    return succeeded >= completions


def failure_reason(job: Obj, active: list[Obj], *, failed: int, now: dt.datetime) -> tuple[str, str] | None:
    spec, st = job["spec"], job.get("status") or {}
    limit = spec.get("backoffLimit", 6)
    restarts = 0
    if ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy") == "OnFailure":
        # Container restarts under OnFailure count against the limit (pastBackoffLimitOnFailure).
        restarts = sum(c.get("restartCount", 0) for p in active
                       for c in ((p.get("status") or {}).get("containerStatuses") or []))
    if failed > limit or (restarts and restarts + failed > limit):
        return "BackoffLimitExceeded", "Job has reached the specified backoff limit"
    ads, start = spec.get("activeDeadlineSeconds"), parse_ts(st.get("startTime"))
    if ads is not None and start is not None and not spec.get("suspend") and now >= start + dt.timedelta(seconds=ads):
        return "DeadlineExceeded", "Job was active longer than specified deadline"
    return None


def pod_for_job(job: Obj, *, index: int | None, rng: random.Random) -> Obj:
    md, spec = job["metadata"], job["spec"]
    tmpl = spec.get("template") or {}
    tmd = tmpl.get("metadata") or {}
    labels = dict(tmd.get("labels") or {})
    annotations = dict(tmd.get("annotations") or {})
    pspec = copy.deepcopy(tmpl.get("spec") or {})
    prefix = f"{md['name']}-" if index is None else f"{md['name']}-{index}-"
    if index is not None:
        annotations[INDEX_ANNOTATION] = str(index)
        labels[INDEX_LABEL] = str(index)
        pspec.setdefault("hostname", f"{md['name']}-{index}")
        ref = {"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
            "apiVersion": "v1", "fieldPath": f"metadata.annotations['{INDEX_ANNOTATION}']"}}}
        for c in pspec.get("initContainers", []) + pspec.get("containers", []):
            if not any(e.get("name") == "JOB_COMPLETION_INDEX" for e in c.get("env") or []):
                c.setdefault("env", []).append(copy.deepcopy(ref))
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": prefix + "".join(rng.choice(NAME_CHARS) for _ in range(5)),
            "generateName": prefix,
            "namespace": md["namespace"],
            "labels": labels,
            **({"annotations": annotations} if annotations else {}),
            "finalizers": [TRACKING_FINALIZER],
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": md["name"], "uid": md["uid"],
                                 "controller": True, "blockOwnerDeletion": True}],
        },
        "spec": pspec,
    }


def has_finalizer(pod: Obj) -> bool:
    return TRACKING_FINALIZER in ((pod.get("metadata") or {}).get("finalizers") or [])


# -- the controller ------------------------------------------------------------------------
class JobController(Controller):
    name = "job"
    workers = 2

    def __init__(self, client: Any, *, clock: Callable[[], dt.datetime] | None = None,
                 rng: random.Random | None = None):
        super().__init__(client)
        self.clock = clock or (lambda: dt.datetime.now(dt.timezone.utc))
        self.rng = rng or random.Random()
        self.jobs = self.informer("jobs")
        self.pods = self.informer("pods")
        self.enqueue_handlers(self.jobs)
        self.pods.add_handler(on_add=self._pod_changed, on_update=lambda o, n: self._pod_changed(n),
                              on_delete=self._pod_changed)
        self._creating: dict[str, dict[str, float]] = {}
        self._fin_removed: dict[str, float] = {}  # pod uid → when we removed its finalizer
        self._written: dict[str, int] = {}  # job key → resourceVersion of our last status write

    def _pod_changed(self, pod: Obj) -> None:
        ref = controller_ref(pod)
        if ref and ref.get("kind") == "Job" and ref.get("apiVersion", "").startswith("batch/"):
            self.queue.add(f"{pod['metadata'].get('namespace')}/{ref['name']}")

    # -- finalizers --------------------------------------------------------------------------
    def _finalizer_gone(self, pod: Obj) -> bool:
        uid = pod["metadata"]["uid"]
        if not has_finalizer(pod):
            self._fin_removed.pop(uid, None)
            return True
        t = self._fin_removed.get(uid)
        if t is not None and time.monotonic() - t > EXPECTATION_TTL:
            del self._fin_removed[uid]
            return False
        return t is not None

    async def _remove_finalizer(self, pod: Obj) -> None:
        md = pod["metadata"]
        fins = [f for f in md.get("finalizers") or [] if f != TRACKING_FINALIZER]
        try:
            await self.client.patch("pods", md["name"], [
                {"op": "test", "path": "/metadata/uid", "value": md["uid"]},
                {"op": "replace", "path": "/metadata/finalizers", "value": fins}],
                namespace=md["namespace"], patch_type="json")
        except ApiError as e:
            if e.code not in (404, 409, 422):
                raise
        self._fin_removed[md["uid"]] = time.monotonic()

    async def _release_orphans(self, ns: str | None, name: str, uid: str | None) -> None:
        """Pods of a Job that is gone (or was replaced by a namesake) must not stay stuck."""
        for p in self.pods.list():
            ref = controller_ref(p)
            if p["metadata"].get("namespace") == ns and ref and ref.get("kind") == "Job" \
                    and ref.get("name") == name and ref.get("uid") != uid and has_finalizer(p) \
                    and not self._finalizer_gone(p):
                await self._remove_finalizer(p)

    # -- sync --------------------------------------------------------------------------------
    async def sync(self, key: str) -> None:
        ns, name = split_key(key)
        job = self.jobs.get(key)
        if job is None:
            self._creating.pop(key, None)
            self._written.pop(key, None)
            await self._release_orphans(ns, name, None)
            return
        if int(job["metadata"].get("resourceVersion") or 0) < self._written.get(key, 0):
            # Our last status write is not in the cache yet: acting on the older copy only conflicts.
            self.queue.add_after(key, 0.05)
            return
        uid = job["metadata"]["uid"]
        await self._release_orphans(ns, name, uid)
        if job["metadata"].get("deletionTimestamp"):
            # Going away (foreground deletion): start nothing, hold no pod back.
            await self._release_orphans(ns, name, None)
            return
        now = self.clock()
        pods = [p for p in self.pods.list()
                if p["metadata"].get("namespace") == ns and (controller_ref(p) or {}).get("uid") == uid]
        by_uid = {p["metadata"]["uid"]: p for p in pods}
        status = copy.deepcopy(job.get("status") or {})
        unc = status.setdefault("uncountedTerminatedPods", {})
        unc_s, unc_f = list(unc.get("succeeded") or []), list(unc.get("failed") or [])
        completed = parse_indexes(status.get("completedIndexes"))
        indexed = job["spec"].get("completionMode") == "Indexed"

        # (1) finished pods still holding the finalizer → uncounted (one status write).
        new_s, new_f, ignored = [], [], []
        fail_job: str | None = None
        for p in pods:
            out = pod_outcome(p, now)
            puid = p["metadata"]["uid"]
            if out not in ("succeeded", "failed") or self._finalizer_gone(p) or puid in unc_s or puid in unc_f:
                continue
            if out == "failed":
                act = pod_failure_action(job, p)
                if act and act[0] == "Ignore":  # not counted against backoffLimit: replaced
                    ignored.append(p)
                    continue
                if act and act[0] == "FailJob" and fail_job is None:
                    fail_job = act[1]
            (new_s if out == "succeeded" else new_f).append(puid)
            if out == "succeeded" and indexed and pod_index(p) is not None:
                completed.add(pod_index(p))  # type: ignore[arg-type]
        if new_s or new_f:
            unc_s += new_s
            unc_f += new_f
            unc.update(succeeded=unc_s, failed=unc_f)
            if indexed:
                status["completedIndexes"] = format_indexes(completed)
            job = await self._write_status(job, status)
            if job is None:
                return
            status = copy.deepcopy(job["status"])
        for p in ignored:
            await self._remove_finalizer(p)
        if fail_job and not condition(status, "FailureTarget") and not condition(status, "SuccessCriteriaMet"):
            set_condition(status, "FailureTarget", "True", "PodFailurePolicy", fail_job, now)
        # (2) remove their finalizers; (3) count them.
        for puid in unc_s + unc_f:
            p = by_uid.get(puid)
            if p is not None and has_finalizer(p) and not self._finalizer_gone(p):
                await self._remove_finalizer(p)
        counted_s = [u for u in unc_s if u not in by_uid or self._finalizer_gone(by_uid[u])]
        counted_f = [u for u in unc_f if u not in by_uid or self._finalizer_gone(by_uid[u])]
        status["succeeded"] = status.get("succeeded", 0) + len(counted_s)
        status["failed"] = status.get("failed", 0) + len(counted_f)
        unc_s = [u for u in unc_s if u not in counted_s]
        unc_f = [u for u in unc_f if u not in counted_f]
        status["uncountedTerminatedPods"] = {k: v for k, v in (("succeeded", unc_s), ("failed", unc_f)) if v}
        if indexed:
            status["succeeded"] = len({i for i in completed if i < (job["spec"].get("completions") or 0)})

        active = [p for p in pods if pod_outcome(p, now) is None]
        terminating = [p for p in pods if pod_outcome(p, now) == "terminating"]
        succeeded = status["succeeded"] + len(unc_s)
        failed = status["failed"] + len(unc_f)
        job_view = {**job, "status": status}
        deleted: set[str] = set()  # pods this sync deleted
        if not is_finished(job):
            deleted = await self._reconcile(key, job, job_view, status, active, now, succeeded=succeeded,
                                            failed=failed, completed=completed,
                                            terminating=[p for p in terminating if not self._finalizer_gone(p)])
        else:
            # Finished: nothing runs any more.
            for p in active:
                await self._delete_pod(job, p)
                deleted.add(p["metadata"]["uid"])
        if terminating:
            first = min(parse_ts(p["metadata"]["deletionTimestamp"]) for p in terminating)  # type: ignore[type-var]
            self.queue.add_after(key, max(0.0, (first - now).total_seconds()) + 0.5)  # type: ignore[operator]
        active = [p for p in active if p["metadata"]["uid"] not in deleted]
        status["active"] = len(active)
        status["ready"] = sum(1 for p in active if is_pod_ready(p))
        status["terminating"] = len(terminating) + len(deleted)
        for k in ("active", "succeeded", "failed"):
            if not status.get(k):
                status.pop(k, None)
        finished_before = is_finished(job)
        job = await self._write_status(job, status)
        if job is None:
            return
        if not finished_before and is_finished(job):
            if condition(job["status"], "Complete"):
                await emit(self.client, job, reason="Completed", component=COMPONENT, message="Job completed")
            else:
                c = condition(job["status"], "Failed") or {}
                await emit(self.client, job, reason=c.get("reason", "Failed"), type="Warning", component=COMPONENT,
                           message=c.get("message", ""))
        if is_finished(job):
            await self._ttl(key, job, now)
        if unc_s or unc_f:
            self.queue.add_after(key, 0.5)

    async def _reconcile(self, key: str, job: Obj, job_view: Obj, status: Obj, active: list[Obj], now: dt.datetime,
                         *, succeeded: int, failed: int, completed: set[int], terminating: list[Obj]) -> set[str]:
        """Conditions, suspension and pod creation/deletion for an unfinished Job; returns
        the uids of the pods it deleted."""
        spec = job["spec"]
        deleted: set[str] = set()
        uncounted = bool((status.get("uncountedTerminatedPods") or {}).get("succeeded")
                         or (status.get("uncountedTerminatedPods") or {}).get("failed"))
        # A decision already taken (FailureTarget / SuccessCriteriaMet) sticks.
        target = condition(status, "FailureTarget")
        met = condition(status, "SuccessCriteriaMet")
        if not target and not met:
            fail = failure_reason(job_view, active, failed=failed, now=now)
            if fail:
                set_condition(status, "FailureTarget", "True", fail[0], fail[1], now)
                target = condition(status, "FailureTarget")
            elif success_reached(job, succeeded=succeeded, active=len(active), completed_indexes=completed):
                set_condition(status, "SuccessCriteriaMet", "True", "CompletionsReached",
                              "Reached expected number of succeeded pods", now)
                met = condition(status, "SuccessCriteriaMet")
        if target or met:
            for p in active:
                await self._delete_pod(job, p)
                deleted.add(p["metadata"]["uid"])
            # Finished only once every pod has stopped and been counted.
            if not uncounted and not active and not terminating:
                if target:
                    set_condition(status, "Failed", "True", target["reason"], target["message"], now)
                else:
                    set_condition(status, "Complete", "True", "CompletionsReached",
                                  "Reached expected number of succeeded pods", now)
                    status["completionTime"] = _ts(now)
            elif active:
                self.queue.add_after(key, 0.5)
            return deleted
        if spec.get("suspend"):
            for p in active:
                await self._delete_pod(job, p, count=False)
                deleted.add(p["metadata"]["uid"])
            if not condition(status, "Suspended"):
                set_condition(status, "Suspended", "True", "JobSuspended", "Job suspended", now)
                status.pop("startTime", None)
                await emit(self.client, job, reason="Suspended", component=COMPONENT, message="Job suspended")
            return deleted
        if condition(status, "Suspended"):
            set_condition(status, "Suspended", "False", "JobResumed", "Job resumed", now)
            status["startTime"] = _ts(now)
            await emit(self.client, job, reason="Resumed", component=COMPONENT, message="Job resumed")
        if not status.get("startTime"):
            status["startTime"] = _ts(now)
        ads = spec.get("activeDeadlineSeconds")
        if ads is not None:
            left = (parse_ts(status["startTime"]) + dt.timedelta(seconds=ads) - now).total_seconds()  # type: ignore[operator]
            self.queue.add_after(key, max(left, 0) + 0.05)
        names = {p["metadata"]["name"] for p in self.pods.list() if p["metadata"].get("namespace") == job["metadata"]["namespace"]}
        if self._pending(key, names):
            self.queue.add_after(key, 1.0)
            return deleted
        m = plan_pods(job, active, succeeded=succeeded, completed_indexes=completed)
        for p in m.delete:
            await self._delete_pod(job, p, count=False)
            deleted.add(p["metadata"]["uid"])
        todo: list[int | None] = list(m.indexes) if m.indexes else [None] * m.create
        if todo:
            await self._create(key, job, todo)
        return deleted

    def _pending(self, key: str, names: set[str]) -> bool:
        now = time.monotonic()
        c = self._creating.get(key, {})
        for n in [n for n, t in c.items() if n in names or now - t > EXPECTATION_TTL]:
            del c[n]
        return bool(c)

    async def _create(self, key: str, job: Obj, todo: list[int | None]) -> None:
        pods = [pod_for_job(job, index=i, rng=self.rng) for i in todo]
        await create_pods(self.client, job, pods, self._creating.setdefault(key, {}), component=COMPONENT)

    async def _delete_pod(self, job: Obj, pod: Obj, *, count: bool = True) -> None:
        """Delete an active pod. With ``count`` its finalizer stays, so the next sync counts it
        as failed (a Job that failed or met its goal removes the rest: deleteActivePods);
        without, the finalizer goes first and the pod is never counted (suspension and excess
        pods: deleteJobPods)."""
        md = pod["metadata"]
        if md.get("deletionTimestamp"):
            return
        if not count and has_finalizer(pod) and not self._finalizer_gone(pod):
            await self._remove_finalizer(pod)
        await delete_pod(self.client, job, pod, component=COMPONENT)

    async def _write_status(self, job: Obj, status: Obj) -> Obj | None:
        if status == (job.get("status") or {}):
            return job
        new = copy.deepcopy(job)
        new["status"] = status
        try:
            got = await self.client.update("jobs", new, namespace=job["metadata"]["namespace"], subresource="status")
            self._written[f"{job['metadata']['namespace']}/{job['metadata']['name']}"] = \
                int(got["metadata"].get("resourceVersion") or 0)
            return got
        except ApiError as e:
            if e.code == 404:
                return None
            raise  # 409: the queue retries against a fresher cache

    async def _ttl(self, key: str, job: Obj, now: dt.datetime) -> None:
        ttl = job["spec"].get("ttlSecondsAfterFinished")
        if ttl is None or job["metadata"].get("deletionTimestamp"):
            return
        st = job["status"]
        c = condition(st, "Complete") or condition(st, "Failed") or {}
        finished = parse_ts(st.get("completionTime") or c.get("lastTransitionTime"))
        if finished is None:
            return
        left = (finished + dt.timedelta(seconds=ttl) - now).total_seconds()
        if left > 0:
            self.queue.add_after(key, left + 0.05)
            return
        try:
            await self.client.delete("jobs", job["metadata"]["name"], namespace=job["metadata"]["namespace"],
                                     propagation_policy="Foreground",
                                     preconditions={"uid": job["metadata"]["uid"]})
        except ApiError as e:
            if e.code not in (404, 409):
                raise
