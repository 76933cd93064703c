"""CronJob controller: create Jobs on a cron schedule (cronjob_controllerv2.go, reduced).

Each sync reads the clock once (injected, so tests run schedules without waiting), finds the
most recent scheduled time since ``status.lastScheduleTime`` (or creation), and creates the
Job for it unless the concurrency policy, suspension or ``startingDeadlineSeconds`` say no.
Job names are deterministic — ``<cronjob>-<scheduled minutes since epoch>`` — so a sync that
runs twice for the same time gets AlreadyExists instead of a second Job. Then it requeues
itself for the next scheduled time. Finished Jobs beyond the history limits are deleted
oldest first (``plan_history`` is pure).
"""
from __future__ import annotations

import copy
import datetime as dt
import zoneinfo
from typing import Any, Callable

from nanokube.api.cron import CronError, most_recent, next_after, parse
from nanokube.api.errors import ApiError
from nanokube.client.events import emit
from .base import Controller, controller_ref, split_key
from .job import condition, is_finished, parse_ts

Obj = dict[str, Any]
SCHEDULED_ANNOTATION = "batch.kubernetes.io/cronjob-scheduled-timestamp"
COMPONENT = "cronjob-controller"


def _ts(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def job_name(cronjob_name: str, scheduled: dt.datetime) -> str:
    return f"{cronjob_name}-{int(scheduled.timestamp()) // 60}"


def time_zone(cj: Obj) -> dt.tzinfo:
    tz = (cj.get("spec") or {}).get("timeZone")
    return zoneinfo.ZoneInfo(tz) if tz else dt.timezone.utc


def job_from_template(cj: Obj, scheduled: dt.datetime) -> Obj:
    md, jt = cj["metadata"], cj["spec"].get("jobTemplate") or {}
    jmd = jt.get("metadata") or {}
    local = scheduled.astimezone(time_zone(cj))
    stamp = local.strftime("%Y-%m-%dT%H:%M:%S") + (local.strftime("%z")[:3] + ":" + local.strftime("%z")[3:]
                                                    if local.utcoffset() else "Z")
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {
            "name": job_name(md["name"], scheduled), "namespace": md["namespace"],
            "labels": dict(jmd.get("labels") or {}),
            "annotations": {**(jmd.get("annotations") or {}), SCHEDULED_ANNOTATION: stamp},
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": md["name"], "uid": md["uid"],
                                 "controller": True, "blockOwnerDeletion": True}],
        },
        "spec": copy.deepcopy(jt.get("spec") or {}),
    }


def plan_history(cj: Obj, jobs: list[Obj]) -> list[Obj]:
    """Finished Jobs to delete: the oldest beyond successful/failedJobsHistoryLimit."""
    spec = cj.get("spec") or {}
    out: list[Obj] = []

    def start(j: Obj) -> tuple:
        st = j.get("status") or {}
        t = st.get("startTime")
        return (t is None, t or "", j["metadata"]["name"])
    for typ, field, default in (("Complete", "successfulJobsHistoryLimit", 3), ("Failed", "failedJobsHistoryLimit", 1)):
        limit = spec.get(field, default)
        if limit is None:
            continue
        done = sorted((j for j in jobs if condition(j.get("status") or {}, typ)), key=start)
        out += done[:max(0, len(done) - limit)]
    return out


def job_ref(job: Obj) -> Obj:
    md = job["metadata"]
    return {"apiVersion": "batch/v1", "kind": "Job", "name": md["name"], "namespace": md["namespace"],
            "uid": md["uid"], "resourceVersion": md.get("resourceVersion", "")}


class CronJobController(Controller):
    name = "cronjob"

    def __init__(self, client: Any, *, clock: Callable[[], dt.datetime] | None = None):
        super().__init__(client)
        self.clock = clock or (lambda: dt.datetime.now(dt.timezone.utc))
        self.cronjobs = self.informer("cronjobs")
        self.jobs = self.informer("jobs")
        self.enqueue_handlers(self.cronjobs)
        self.jobs.add_handler(on_add=self._job_changed, on_update=lambda o, n: self._job_changed(n),
                              on_delete=self._job_changed)

    def _job_changed(self, job: Obj) -> None:
        ref = controller_ref(job)
        if ref and ref.get("kind") == "CronJob":
            self.queue.add(f"{job['metadata'].get('namespace')}/{ref['name']}")

    async def sync(self, key: str) -> None:
        cj = self.cronjobs.get(key)
        if cj is None or cj["metadata"].get("deletionTimestamp"):
            return
        ns, name = split_key(key)
        now = self.clock()
        uid = cj["metadata"]["uid"]
        jobs = [j for j in self.jobs.list()
                if j["metadata"].get("namespace") == ns and (controller_ref(j) or {}).get("uid") == uid]
        status = copy.deepcopy(cj.get("status") or {})
        await self._sync_active(cj, status, jobs)
        for j in plan_history(cj, jobs):
            await self._delete_job(cj, j, reason="SuccessfulDelete")
        await self._schedule(key, cj, status, now)
        await self._write_status(cj, status)

    async def _sync_active(self, cj: Obj, status: Obj, jobs: list[Obj]) -> None:
        by_uid = {j["metadata"]["uid"]: j for j in jobs}
        active = []
        for ref in status.get("active") or []:
            j = by_uid.get(ref.get("uid"))
            if j is None:
                try:
                    got = await self.client.get("jobs", ref["name"], namespace=cj["metadata"]["namespace"])
                    if got["metadata"]["uid"] == ref.get("uid") and not is_finished(got):
                        active.append(ref)
                except ApiError as e:
                    if e.code != 404:
                        raise
            elif not is_finished(j):
                active.append(ref)
        known = {r.get("uid") for r in active}
        for j in jobs:
            if not is_finished(j) and j["metadata"]["uid"] not in known and not j["metadata"].get("deletionTimestamp"):
                active.append(job_ref(j))
            c = condition(j.get("status") or {}, "Complete")
            if c:
                done = j["status"].get("completionTime") or c.get("lastTransitionTime")
                if done and (not status.get("lastSuccessfulTime") or done > status["lastSuccessfulTime"]):
                    status["lastSuccessfulTime"] = done
                if ref_was_active(cj, j):
                    await emit(self.client, cj, reason="SawCompletedJob", component=COMPONENT,
                               message=f"Saw completed job: {j['metadata']['name']}, condition: Complete")
        if active:
            status["active"] = active
        else:
            status.pop("active", None)

    async def _schedule(self, key: str, cj: Obj, status: Obj, now: dt.datetime) -> None:
        spec = cj["spec"]
        if spec.get("suspend"):
            return
        try:
            sched = parse(spec.get("schedule", ""))
            tz = time_zone(cj)
        except (CronError, zoneinfo.ZoneInfoNotFoundError, ValueError) as e:
            await emit(self.client, cj, reason="UnparseableSchedule", type="Warning", component=COMPONENT,
                       message=f"unparseable schedule: {spec.get('schedule')!r} : {e}")
            return
        earliest = parse_ts(status.get("lastScheduleTime") or cj["metadata"].get("creationTimestamp")) or now
        sds = spec.get("startingDeadlineSeconds")
        if sds is not None:
            earliest = max(earliest, now - dt.timedelta(seconds=sds))
        scheduled, missed = most_recent(sched, earliest, now, tz=tz)
        nxt = next_after(sched, now, tz=tz)
        if nxt is not None:
            self.queue.add_after(key, (nxt - now).total_seconds() + 0.1)
        if scheduled is None:
            return
        if missed > 100:
            await emit(self.client, cj, reason="TooManyMissedTimes", type="Warning", component=COMPONENT,
                       message="too many missed start times. Set or decrease .spec.startingDeadlineSeconds or "
                               "check clock skew")
        if sds is not None and scheduled < now - dt.timedelta(seconds=sds):
            return
        name = job_name(cj["metadata"]["name"], scheduled)
        if any(r.get("name") == name for r in status.get("active") or []):
            return
        policy = spec.get("concurrencyPolicy", "Allow")
        if policy == "Forbid" and status.get("active"):
            await emit(self.client, cj, reason="JobAlreadyActive", component=COMPONENT,
                       message="Not starting job because prior execution is running and concurrency policy is Forbid")
            return
        if policy == "Replace":
            for ref in status.get("active") or []:
                await self._delete_job(cj, {"metadata": {"name": ref["name"], "namespace": cj["metadata"]["namespace"],
                                                         "uid": ref.get("uid")}}, reason="SuccessfulDelete")
            status.pop("active", None)
        try:
            job = await self.client.create("jobs", job_from_template(cj, scheduled), namespace=cj["metadata"]["namespace"])
        except ApiError as e:
            if e.code != 409:
                await emit(self.client, cj, reason="FailedCreate", type="Warning", component=COMPONENT,
                           message=f"Error creating job: {e.message}")
                raise
            # Created by an earlier run of this sync whose status write was lost.
            job = await self.client.get("jobs", name, namespace=cj["metadata"]["namespace"])
            if (controller_ref(job) or {}).get("uid") != cj["metadata"]["uid"]:
                return
        else:
            await emit(self.client, cj, reason="SuccessfulCreate", component=COMPONENT,
                       message=f"Created job {name}")
        if not is_finished(job) and not any(r.get("uid") == job["metadata"]["uid"] for r in status.get("active") or []):
            status.setdefault("active", []).append(job_ref(job))
        status["lastScheduleTime"] = _ts(scheduled)

    async def _delete_job(self, cj: Obj, job: Obj, *, reason: str) -> None:
        md = job["metadata"]
        try:
            await self.client.delete("jobs", md["name"], namespace=md["namespace"], propagation_policy="Background",
                                     **({"preconditions": {"uid": md["uid"]}} if md.get("uid") else {}))
        except ApiError as e:
            if e.code not in (404, 409):
                raise
            return
        await emit(self.client, cj, reason=reason, component=COMPONENT, message=f"Deleted job {md['name']}")

    async def _write_status(self, cj: Obj, status: Obj) -> None:
        if status == (cj.get("status") or {}):
            return
        new = copy.deepcopy(cj)
        new["status"] = status
        try:
            await self.client.update("cronjobs", new, namespace=cj["metadata"]["namespace"], subresource="status")
        except ApiError as e:
            if e.code != 404:
                raise


def ref_was_active(cj: Obj, job: Obj) -> bool:
    return any(r.get("uid") == job["metadata"]["uid"] for r in (cj.get("status") or {}).get("active") or [])
