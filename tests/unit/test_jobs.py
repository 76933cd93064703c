"""Job and CronJob controllers against the real registry over a memory store (no kernel).

A test plays the kubelet by writing pod phases through the status subresource, and drives
CronJob schedules with an injected clock instead of waiting for minutes to pass.
"""
import asyncio
import copy
import datetime as dt

import pytest

from nanokube.apiserver.registry import Registry
from nanokube.client.local import LocalClient
from nanokube.controllers.cronjob import SCHEDULED_ANNOTATION, CronJobController, plan_history
from nanokube.controllers.garbagecollector import GarbageCollector
from nanokube.controllers.job import (TRACKING_FINALIZER, JobController, failure_reason, format_indexes, parse_indexes,
                                     plan_pods)
from nanokube.store import MemoryStore
from .helpers import until

NS = "default"


def job(name="j", **spec):
    s = {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}
    s.update(spec)
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "spec": s}


class Clock:
    def __init__(self, t):
        self.t = t

    def __call__(self):
        return self.t


@pytest.fixture
async def cp(schemas):
    """A registry + client; ``start(*controllers)`` runs them until the test ends."""
    reg = Registry(MemoryStore(), schemas=schemas)
    c = LocalClient(reg)
    await c.create("namespaces", {"metadata": {"name": NS}})
    await c.create("serviceaccounts", {"metadata": {"name": "default"}}, namespace=NS)  # pods need it (admission)
    tasks = []

    def start(*ctls):
        tasks.extend(asyncio.create_task(x.run()) for x in ctls)
    c.start = start
    yield c
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def pods_of(c, name):
    return [p for p in (await c.list("pods", namespace=NS, label_selector=f"job-name={name}"))["items"]]


def active(pods):
    return [p for p in pods if p["status"].get("phase") not in ("Succeeded", "Failed")
            and not p["metadata"].get("deletionTimestamp")]


async def finish(c, pod, phase="Succeeded"):
    p = copy.deepcopy(pod)
    p["status"]["phase"] = phase
    await c.update("pods", p, namespace=NS, subresource="status")


def cond(obj, typ):
    return next((x for x in obj.get("status", {}).get("conditions", []) if x["type"] == typ and x["status"] == "True"),
                None)


async def test_completions_and_parallelism(cp):
    cp.start(JobController(cp))
    await cp.create("jobs", job(completions=5, parallelism=2), namespace=NS)
    max_active = 0
    for _ in range(5):
        pods = await until(lambda: _n_active(cp, "j", 1))
        max_active = max(max_active, len(active(pods)))
        p = active(pods)[0]
        assert p["metadata"]["finalizers"] == [TRACKING_FINALIZER]
        ref = p["metadata"]["ownerReferences"][0]
        assert ref["kind"] == "Job" and ref["controller"] and ref["blockOwnerDeletion"]
        await finish(cp, p)
        await asyncio.sleep(0.05)
    assert max_active == 2

    async def complete():
        j = await cp.get("jobs", "j", namespace=NS)
        return j if cond(j, "Complete") else None
    j = await until(complete)
    st = j["status"]
    assert st["succeeded"] == 5 and "failed" not in st and "active" not in st
    assert cond(j, "SuccessCriteriaMet") and st["completionTime"] and st["startTime"]
    assert st["uncountedTerminatedPods"] == {}
    pods = await pods_of(cp, "j")
    assert len(pods) == 5 and all(not p["metadata"].get("finalizers") for p in pods)


async def _n_active(c, name, n):
    pods = await pods_of(c, name)
    return pods if len(active(pods)) >= n else None


async def test_backoff_limit_fails_job_and_deletes_active_pods(cp):
    cp.start(JobController(cp))
    await cp.create("jobs", job(parallelism=2, completions=4, backoffLimit=1), namespace=NS)
    for _ in range(2):
        pods = await until(lambda: _n_active(cp, "j", 2))
        await finish(cp, active(pods)[0], "Failed")

    async def failed():
        j = await cp.get("jobs", "j", namespace=NS)
        return j if cond(j, "Failed") else None
    j = await until(failed)
    c = cond(j, "Failed")
    assert c["reason"] == "BackoffLimitExceeded"
    assert cond(j, "FailureTarget")["reason"] == "BackoffLimitExceeded"
    # Two failed pods plus the active one the controller removed (counted as failed, as upstream).
    assert j["status"]["failed"] == 3 and "active" not in j["status"]
    assert active(await pods_of(cp, "j")) == []


def _failed_pod(code, name="p", conditions=()):
    return {"metadata": {"name": name, "namespace": NS}, "status": {
        "phase": "Failed", "conditions": list(conditions),
        "containerStatuses": [{"name": "c", "state": {"terminated": {"exitCode": code}}}]}}


def test_pod_failure_policy_rules_first_match_wins():
    from nanokube.controllers.job import pod_failure_action
    j = job(podFailurePolicy={"rules": [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
        {"action": "FailJob", "onExitCodes": {"containerName": "c", "operator": "In", "values": [42]}},
        {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [1, 42]}}]})
    assert pod_failure_action(j, _failed_pod(42)) == (
        "FailJob", "Container c for pod default/p failed with exit code 42 matching FailJob rule at index 1")
    assert pod_failure_action(j, _failed_pod(3))[0] == "Count"
    assert pod_failure_action(j, _failed_pod(1)) is None
    assert pod_failure_action(j, _failed_pod(42, conditions=[{"type": "DisruptionTarget", "status": "True"}]))[0] == "Ignore"


async def test_pod_failure_policy_fail_job_and_ignore(cp):
    cp.start(JobController(cp))
    pfp = {"rules": [{"action": "Ignore", "onExitCodes": {"operator": "In", "values": [7]}},
                     {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]}
    await cp.create("jobs", job(backoffLimit=0, podFailurePolicy=pfp), namespace=NS)
    first = (await until(lambda: _n_active(cp, "j", 1)))[0]
    p = copy.deepcopy(first)
    p["status"].update(phase="Failed", containerStatuses=[{"name": "c", "state": {"terminated": {"exitCode": 7}}}])
    await cp.update("pods", p, namespace=NS, subresource="status")

    async def replaced():  # ignored: not counted (backoffLimit 0 would fail the Job), and replaced
        pods = active(await pods_of(cp, "j"))
        return pods if pods and pods[0]["metadata"]["name"] != first["metadata"]["name"] else None
    second = (await until(replaced))[0]
    assert "failed" not in (await cp.get("jobs", "j", namespace=NS))["status"]
    p = copy.deepcopy(second)
    p["status"].update(phase="Failed", containerStatuses=[{"name": "c", "state": {"terminated": {"exitCode": 42}}}])
    await cp.update("pods", p, namespace=NS, subresource="status")

    async def failed():
        j = await cp.get("jobs", "j", namespace=NS)
        return j if cond(j, "Failed") else None
    c = cond(await until(failed), "Failed")
    assert c["reason"] == "PodFailurePolicy" and "exit code 42 matching FailJob rule at index 1" in c["message"]


async def test_indexed_job(cp):
    cp.start(JobController(cp))
    await cp.create("jobs", job(completions=3, parallelism=3, completionMode="Indexed"), namespace=NS)
    pods = await until(lambda: _n_active(cp, "j", 3))
    idx = sorted(int(p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]) for p in pods)
    assert idx == [0, 1, 2]
    for p in pods:
        i = p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
        assert p["spec"]["hostname"] == f"j-{i}"
        assert p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"] == i
        assert p["metadata"]["name"].startswith(f"j-{i}-")
        env = p["spec"]["containers"][0]["env"]
        assert env == [{"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
            "apiVersion": "v1", "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}}]
    one = next(p for p in pods if p["spec"]["hostname"] == "j-1")
    await finish(cp, one)
    await until(lambda: _field(cp, "completedIndexes", "1"))
    # A failed index is retried with the same index.
    zero = next(p for p in pods if p["spec"]["hostname"] == "j-0")
    await finish(cp, zero, "Failed")

    async def retried():
        ps = active(await pods_of(cp, "j"))
        return sorted(p["spec"]["hostname"] for p in ps) == ["j-0", "j-2"]
    await until(retried)
    for p in active(await pods_of(cp, "j")):
        await finish(cp, p)
    await until(lambda: _field(cp, "completedIndexes", "0-2"))
    j = await cp.get("jobs", "j", namespace=NS)
    await until(lambda: _cond_job(cp, "Complete"))
    j = await cp.get("jobs", "j", namespace=NS)
    assert j["status"]["succeeded"] == 3 and j["status"]["failed"] == 1


async def _field(c, f, v):
    return (await c.get("jobs", "j", namespace=NS))["status"].get(f) == v


async def _cond_job(c, typ, name="j"):
    try:
        return cond(await c.get("jobs", name, namespace=NS), typ)
    except Exception:
        return None


async def test_uncounted_pods_are_counted_exactly_once_after_a_restart(cp):
    """A controller died after recording a pod as uncounted but before removing its finalizer:
    the next one finishes the protocol and counts it once."""
    await cp.create("jobs", job(completions=2, parallelism=1), namespace=NS)
    j = await cp.get("jobs", "j", namespace=NS)
    from nanokube.controllers.job import pod_for_job
    import random
    pod = pod_for_job(j, index=None, rng=random.Random(1))
    pod = await cp.create("pods", pod, namespace=NS)
    await finish(cp, pod)
    j["status"] = {"uncountedTerminatedPods": {"succeeded": [pod["metadata"]["uid"]]}, "startTime": "2026-01-01T00:00:00Z"}
    await cp.update("jobs", j, namespace=NS, subresource="status")
    ctl = JobController(cp)
    cp.start(ctl)
    await until(lambda: _n_active(cp, "j", 1))
    for _ in range(20):  # let it sync many times: the count must not grow
        ctl.queue.add(f"{NS}/j")
        await asyncio.sleep(0.02)
    j = await cp.get("jobs", "j", namespace=NS)
    assert j["status"]["succeeded"] == 1 and j["status"]["uncountedTerminatedPods"] == {}
    assert not (await cp.get("pods", pod["metadata"]["name"], namespace=NS))["metadata"].get("finalizers")
    # A second controller (fresh caches, as after a restart) must not count it again.
    ctl2 = JobController(cp)
    cp.start(ctl2)
    await asyncio.sleep(0.3)
    assert (await cp.get("jobs", "j", namespace=NS))["status"]["succeeded"] == 1


async def test_suspend_and_resume(cp):
    cp.start(JobController(cp))
    await cp.create("jobs", job(parallelism=2, completions=2, suspend=True), namespace=NS)
    c = await until(lambda: _cond_job(cp, "Suspended"))
    assert c["reason"] == "JobSuspended"
    assert await pods_of(cp, "j") == []
    await cp.patch("jobs", "j", {"spec": {"suspend": False}}, namespace=NS)
    await until(lambda: _n_active(cp, "j", 2))
    j = await cp.get("jobs", "j", namespace=NS)
    s = next(x for x in j["status"]["conditions"] if x["type"] == "Suspended")
    assert s["status"] == "False" and s["reason"] == "JobResumed" and j["status"]["startTime"]
    await cp.patch("jobs", "j", {"spec": {"suspend": True}}, namespace=NS)

    async def stopped():
        return active(await pods_of(cp, "j")) == [] and await _cond_job(cp, "Suspended")
    await until(stopped)
    await asyncio.sleep(0.2)
    # Pods removed by suspension are not failures (their finalizer goes before the delete).
    st = (await cp.get("jobs", "j", namespace=NS))["status"]
    assert "failed" not in st and st["uncountedTerminatedPods"] == {}


def test_failure_reason_counts_restarts_under_on_failure():
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    j = {"spec": {"backoffLimit": 2, "template": {"spec": {"restartPolicy": "OnFailure"}}}, "status": {}}
    pod = {"status": {"containerStatuses": [{"restartCount": 2}]}}
    assert failure_reason(j, [pod], failed=0, now=now) is None
    pod["status"]["containerStatuses"][0]["restartCount"] = 3
    assert failure_reason(j, [pod], failed=0, now=now)[0] == "BackoffLimitExceeded"
    j["spec"]["template"]["spec"]["restartPolicy"] = "Never"  # restarts do not count under Never
    assert failure_reason(j, [pod], failed=2, now=now) is None
    assert failure_reason(j, [], failed=3, now=now)[0] == "BackoffLimitExceeded"
    j["spec"]["activeDeadlineSeconds"] = 10
    j["status"]["startTime"] = "2026-01-01T00:00:00Z"
    assert failure_reason(j, [], failed=0, now=now + dt.timedelta(seconds=9)) is None
    assert failure_reason(j, [], failed=0, now=now + dt.timedelta(seconds=10))[0] == "DeadlineExceeded"


async def test_active_deadline_with_injected_clock(cp):
    clock = Clock(dt.datetime.now(dt.timezone.utc))
    ctl = JobController(cp, clock=clock)
    cp.start(ctl)
    await cp.create("jobs", job(activeDeadlineSeconds=30), namespace=NS)
    await until(lambda: _n_active(cp, "j", 1))
    clock.t += dt.timedelta(seconds=31)
    ctl.queue.add(f"{NS}/j")
    c = await until(lambda: _cond_job(cp, "Failed"))
    assert c["reason"] == "DeadlineExceeded"
    assert active(await pods_of(cp, "j")) == []


async def test_ttl_after_finished_deletes_job_and_gc_takes_pods(cp):
    cp.start(JobController(cp), GarbageCollector(cp, period=0.1))
    await cp.create("jobs", job(ttlSecondsAfterFinished=0), namespace=NS)
    pods = await until(lambda: _n_active(cp, "j", 1))
    await finish(cp, pods[0])

    async def gone():
        return (await cp.list("jobs", namespace=NS))["items"] == [] and await pods_of(cp, "j") == []
    await until(gone)


async def test_work_queue_job_completes_when_one_succeeds_and_rest_finish(cp):
    cp.start(JobController(cp))
    await cp.create("jobs", job(parallelism=3), namespace=NS)
    j = await cp.get("jobs", "j", namespace=NS)
    assert "completions" not in j["spec"] and j["spec"]["parallelism"] == 3
    pods = await until(lambda: _n_active(cp, "j", 3))
    await finish(cp, pods[0])
    await asyncio.sleep(0.2)
    assert len(active(await pods_of(cp, "j"))) == 2  # no replacements once one succeeded
    for p in pods[1:]:
        await finish(cp, p)
    await until(lambda: _cond_job(cp, "Complete"))


def test_plan_pods_pure():
    j = {"spec": {"parallelism": 2, "completions": 5}}
    assert plan_pods(j, [], succeeded=0, completed_indexes=set()).create == 2
    assert plan_pods(j, [], succeeded=4, completed_indexes=set()).create == 1
    running = [{"metadata": {"name": f"p{i}", "creationTimestamp": str(i)}, "spec": {}, "status": {}} for i in range(3)]
    assert len(plan_pods(j, running, succeeded=0, completed_indexes=set()).delete) == 1
    ij = {"spec": {"parallelism": 2, "completions": 4, "completionMode": "Indexed"}}
    assert plan_pods(ij, [], succeeded=0, completed_indexes={0}).indexes == [1, 2]
    assert parse_indexes("0-2,5,7-8") == {0, 1, 2, 5, 7, 8} and format_indexes({0, 1, 2, 5, 7, 8}) == "0-2,5,7-8"


async def test_job_validation_and_defaults_as_upstream(schemas):
    c = LocalClient(Registry(MemoryStore(), schemas=schemas))
    await c.create("namespaces", {"metadata": {"name": NS}})
    bad = job()
    bad["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    with pytest.raises(Exception) as e:
        await c.create("jobs", bad, namespace=NS)
    assert e.value.code == 422
    assert 'spec.template.spec.restartPolicy: Unsupported value: "Always"' in str(e.value)
    bad = job(podFailurePolicy={"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [0]}}]})
    bad["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    with pytest.raises(Exception) as e:
        await c.create("jobs", bad, namespace=NS)
    assert 'only "Never" is supported when podFailurePolicy is specified' in str(e.value)
    assert "spec.podFailurePolicy.rules[0].onExitCodes.values[0]" in str(e.value)
    j = await c.create("jobs", job(), namespace=NS)
    uid = j["metadata"]["uid"]
    s = j["spec"]
    assert (s["parallelism"], s["completions"], s["backoffLimit"], s["completionMode"], s["suspend"]) == \
        (1, 1, 6, "NonIndexed", False)
    assert s["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    assert s["template"]["metadata"]["labels"] == {"batch.kubernetes.io/controller-uid": uid, "controller-uid": uid,
                                                  "batch.kubernetes.io/job-name": "j", "job-name": "j"}
    with pytest.raises(Exception) as e:
        await c.patch("jobs", "j", {"spec": {"selector": {"matchLabels": {"a": "b"}}}}, namespace=NS)
    assert e.value.code == 422
    cj = await c.create("cronjobs", {"metadata": {"name": "cj"}, "spec": {"schedule": "@hourly", "jobTemplate": {
        "spec": job()["spec"]}}}, namespace=NS)
    assert (cj["spec"]["concurrencyPolicy"], cj["spec"]["suspend"], cj["spec"]["successfulJobsHistoryLimit"],
            cj["spec"]["failedJobsHistoryLimit"]) == ("Allow", False, 3, 1)
    with pytest.raises(Exception) as e:
        await c.create("cronjobs", {"metadata": {"name": "cj2"}, "spec": {"schedule": "61 * * * *", "timeZone": "Mars/Base",
                                                                        "jobTemplate": {"spec": job()["spec"]}}},
                       namespace=NS)
    assert e.value.code == 422 and "spec.schedule" in str(e.value) and "spec.timeZone" in str(e.value)


# -- CronJob -------------------------------------------------------------------------------
T0 = dt.datetime(2026, 3, 1, 12, 0, 30, tzinfo=dt.timezone.utc)


def cronjob(name="cj", **spec):
    s = {"schedule": "*/1 * * * *", "jobTemplate": {"metadata": {"labels": {"app": "x"}}, "spec": job()["spec"]}}
    s.update(spec)
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name}, "spec": s}


async def jobs(c):
    return sorted((await c.list("jobs", namespace=NS))["items"], key=lambda j: j["metadata"]["name"])


async def complete_job(c, j, typ="Complete"):
    j = await c.get("jobs", j["metadata"]["name"], namespace=NS)
    j["status"]["conditions"] = [{"type": typ, "status": "True"}]
    j["status"]["startTime"] = j["metadata"]["creationTimestamp"]
    if typ == "Complete":
        j["status"]["completionTime"] = j["metadata"]["creationTimestamp"]
    await c.update("jobs", j, namespace=NS, subresource="status")


async def tick(ctl, clock, minutes=1):
    clock.t += dt.timedelta(minutes=minutes)
    ctl.queue.add(f"{NS}/cj")
    await asyncio.sleep(0.05)
    for _ in range(250):  # until the controller has acted on it (bounded: 5 s)
        if ctl.queue.idle():
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.05)


async def cj_setup(cp, **spec):
    cj = await cp.create("cronjobs", cronjob(**spec), namespace=NS)
    created = dt.datetime.strptime(cj["metadata"]["creationTimestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=dt.timezone.utc)
    # a few seconds after creation, but never past the minute (then a schedule would be due)
    clock = Clock(created + dt.timedelta(seconds=min(5, 59 - created.second)))
    ctl = CronJobController(cp, clock=clock)
    cp.start(ctl)
    await asyncio.sleep(0.1)
    return ctl, clock


async def test_cronjob_creates_named_jobs_and_prunes_history(cp):
    ctl, clock = await cj_setup(cp, successfulJobsHistoryLimit=2, failedJobsHistoryLimit=1)
    assert await jobs(cp) == []  # no schedule due yet
    await tick(ctl, clock)
    js = await until(lambda: jobs(cp))
    assert len(js) == 1
    j = js[0]
    sched = clock.t.replace(second=0)
    assert j["metadata"]["name"] == f"cj-{int(sched.timestamp()) // 60}"
    assert j["metadata"]["annotations"][SCHEDULED_ANNOTATION] == sched.strftime("%Y-%m-%dT%H:%M:00Z")
    assert j["metadata"]["labels"] == {"app": "x"}
    assert j["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
    cj = await cp.get("cronjobs", "cj", namespace=NS)
    assert cj["status"]["lastScheduleTime"] == sched.strftime("%Y-%m-%dT%H:%M:00Z")
    assert [a["name"] for a in cj["status"]["active"]] == [j["metadata"]["name"]]
    # The same minute again: no second Job.
    ctl.queue.add(f"{NS}/cj")
    await asyncio.sleep(0.1)
    assert len(await jobs(cp)) == 1
    await complete_job(cp, j)
    for _ in range(3):
        await tick(ctl, clock)
        for x in await jobs(cp):
            if not x["status"].get("conditions"):
                await complete_job(cp, x)
    await tick(ctl, clock, 0)

    async def pruned():
        js = await jobs(cp)
        return js if len(js) == 2 else None
    js = await until(pruned)
    names = [x["metadata"]["name"] for x in js]
    assert names == sorted(names) and names[-1] == f"cj-{int(clock.t.timestamp()) // 60}"  # the newest kept
    cj = await cp.get("cronjobs", "cj", namespace=NS)
    assert "active" not in cj["status"] and cj["status"]["lastSuccessfulTime"]


async def test_cronjob_forbid_replace_suspend(cp):
    ctl, clock = await cj_setup(cp, concurrencyPolicy="Forbid")
    await tick(ctl, clock)
    first = (await until(lambda: jobs(cp)))[0]
    await tick(ctl, clock)
    assert [j["metadata"]["name"] for j in await jobs(cp)] == [first["metadata"]["name"]]  # Forbid: still running
    await cp.patch("cronjobs", "cj", {"spec": {"concurrencyPolicy": "Replace"}}, namespace=NS)
    await tick(ctl, clock)

    async def replaced():
        js = await jobs(cp)
        return js if [j["metadata"]["name"] for j in js] != [first["metadata"]["name"]] and len(js) == 1 else None
    await until(replaced)
    await cp.patch("cronjobs", "cj", {"spec": {"suspend": True}}, namespace=NS)
    before = [j["metadata"]["name"] for j in await jobs(cp)]
    await tick(ctl, clock, 3)
    assert [j["metadata"]["name"] for j in await jobs(cp)] == before


async def test_cronjob_starting_deadline_skips_missed_run(cp):
    ctl, clock = await cj_setup(cp, schedule="0 * * * *", startingDeadlineSeconds=60)
    # The clock jumps well past the top of the hour: the run is too late to start.
    clock.t = clock.t.replace(minute=0, second=0) + dt.timedelta(hours=1, minutes=5)
    ctl.queue.add(f"{NS}/cj")
    await asyncio.sleep(0.2)
    assert await jobs(cp) == []
    clock.t = clock.t.replace(minute=0, second=20) + dt.timedelta(hours=1)  # 20 s late: within the deadline
    ctl.queue.add(f"{NS}/cj")
    await until(lambda: jobs(cp))


async def test_cronjob_time_zone(cp):
    ctl, clock = await cj_setup(cp, schedule="30 * * * *", timeZone="Asia/Kolkata")  # UTC+5:30
    # :30 in Kolkata is :00 UTC.
    clock.t = clock.t.replace(minute=0, second=10) + dt.timedelta(hours=1)
    ctl.queue.add(f"{NS}/cj")
    j = (await until(lambda: jobs(cp)))[0]
    assert j["metadata"]["annotations"][SCHEDULED_ANNOTATION].endswith(":30:00+05:30")


def test_plan_history_pure():
    def j(name, typ, start):
        return {"metadata": {"name": name}, "status": {"startTime": start, "conditions": [{"type": typ, "status": "True"}]}}
    cj = {"spec": {"successfulJobsHistoryLimit": 1, "failedJobsHistoryLimit": 0}}
    js = [j("a", "Complete", "2026-01-01T00:02:00Z"), j("b", "Complete", "2026-01-01T00:01:00Z"),
          j("c", "Failed", "2026-01-01T00:03:00Z"), {"metadata": {"name": "d"}, "status": {}}]
    assert [x["metadata"]["name"] for x in plan_history(cj, js)] == ["b", "c"]
