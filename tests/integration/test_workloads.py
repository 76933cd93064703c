"""Jobs, CronJobs, DaemonSets and ReplicationControllers on a real 3-node cluster, driven with
the real kubectl.

The CronJob is created as soon as the cluster is up, so its first minute boundary passes
while the other tests run; history pruning over many minutes is unit-tested with an
injected clock (tests/unit/test_jobs.py) instead of waited for here.
"""
from __future__ import annotations

import textwrap
import time

import pytest

from .conftest import start_cluster, stop_cluster

pytestmark = pytest.mark.integration

CRONJOB = """\
    apiVersion: batch/v1
    kind: CronJob
    metadata: {name: tick}
    spec:
      schedule: "*/1 * * * *"
      successfulJobsHistoryLimit: 1
      jobTemplate:
        spec:
          template:
            spec:
              restartPolicy: OnFailure
              containers:
              - {name: c, image: busybox, command: [sh, -c, "echo tick"]}
    """


def apply(c, text: str) -> None:
    c.kubectl("apply", "-f", "-", input=textwrap.dedent(text))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = start_cluster(tmp_path_factory, nodes=3)
    try:
        apply(c, CRONJOB)
        yield c
    finally:
        stop_cluster(c)


def cond(obj: dict, typ: str) -> dict | None:
    return next((x for x in (obj.get("status") or {}).get("conditions") or []
                 if x["type"] == typ and x["status"] == "True"), None)


def row(c, *args: str) -> list[str]:
    lines = c.kubectl("get", *args).stdout.strip().splitlines()
    assert len(lines) == 2, lines
    return lines[1].split()


def test_discovery_and_explain(cluster):
    out = cluster.kubectl("api-resources").stdout
    lines = {ln.split()[0]: ln.split() for ln in out.splitlines()[1:]}
    assert lines["jobs"][1:] == ["batch/v1", "true", "Job"]
    assert lines["cronjobs"][1:] == ["cj", "batch/v1", "true", "CronJob"]
    assert lines["daemonsets"][1:] == ["ds", "apps/v1", "true", "DaemonSet"]
    assert "backoffLimit" in cluster.kubectl("explain", "job.spec").stdout
    assert "concurrencyPolicy" in cluster.kubectl("explain", "cj.spec").stdout
    assert "cronjob.batch/tick" in cluster.kubectl("get", "all").stdout  # categories: all


def test_job_runs_five_completions_two_at_a_time(cluster):
    apply(cluster, """\
        apiVersion: batch/v1
        kind: Job
        metadata: {name: five}
        spec:
          completions: 5
          parallelism: 2
          template:
            spec:
              restartPolicy: Never
              containers:
              - {name: c, image: busybox, command: [sh, -c, "sleep 1; echo done"]}
        """)
    max_active = 0

    def done():
        nonlocal max_active
        pods = cluster.kjson("get", "pods", "-l", "job-name=five")["items"]
        running = [p for p in pods if p["status"].get("phase") not in ("Succeeded", "Failed")]
        max_active = max(max_active, len(running))
        job = cluster.kjson("get", "job", "five")
        return (pods, job) if cond(job, "Complete") else None
    pods, job = cluster.wait_for("job five to complete", done, timeout=120, interval=0.3)
    assert max_active <= 2, f"saw {max_active} active pods with parallelism 2"
    assert max_active >= 1
    cluster.kubectl("wait", "--for=condition=complete", "job/five", "--timeout=30s")
    assert job["status"]["succeeded"] == 5 and "failed" not in job["status"]
    pods = cluster.kjson("get", "pods", "-l", "job-name=five")["items"]
    assert len(pods) == 5 and all(p["status"]["phase"] == "Succeeded" for p in pods)
    assert all(not p["metadata"].get("finalizers") for p in pods)  # tracking finalizers released
    assert cluster.kubectl("logs", pods[0]["metadata"]["name"]).stdout.strip() == "done"
    cells = row(cluster, "jobs", "five")
    assert cells[:3] == ["five", "Complete", "5/5"]
    header = cluster.kubectl("get", "jobs", "five", "-o", "wide").stdout.splitlines()[0].split()
    assert header == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]


def test_job_fails_after_backoff_limit(cluster):
    apply(cluster, """\
        apiVersion: batch/v1
        kind: Job
        metadata: {name: boom}
        spec:
          backoffLimit: 1
          template:
            spec:
              restartPolicy: Never
              containers:
              - {name: c, image: busybox, command: [sh, -c, "exit 3"]}
        """)
    job = cluster.wait_for("job boom to fail", lambda: (lambda j: j if cond(j, "Failed") else None)(
        cluster.kjson("get", "job", "boom")), timeout=120)
    assert cond(job, "Failed")["reason"] == "BackoffLimitExceeded"
    assert job["status"]["failed"] == 2 and not job["status"].get("succeeded")
    assert row(cluster, "jobs", "boom")[:3] == ["boom", "Failed", "0/1"]
    pods = cluster.kjson("get", "pods", "-l", "job-name=boom")["items"]
    assert len(pods) == 2 and all(p["status"]["phase"] == "Failed" for p in pods)


def test_failed_job_stops_its_running_pods(cluster):
    """Index 0 fails at once with backoffLimit 0: the Job stops index 1 (still running), counts
    it as failed once it has stopped, and only then is Failed."""
    apply(cluster, """\
        apiVersion: batch/v1
        kind: Job
        metadata: {name: half}
        spec:
          completions: 2
          parallelism: 2
          completionMode: Indexed
          backoffLimit: 0
          template:
            spec:
              restartPolicy: Never
              terminationGracePeriodSeconds: 2
              containers:
              - {name: c, image: busybox, command: [sh, -c, "[ $JOB_COMPLETION_INDEX = 0 ] && exit 1; sleep 300"]}
        """)
    job = cluster.wait_for("job half to fail", lambda: (lambda j: j if cond(j, "Failed") else None)(
        cluster.kjson("get", "job", "half")), timeout=120)
    assert cond(job, "Failed")["reason"] == "BackoffLimitExceeded"
    assert cond(job, "FailureTarget")
    st = job["status"]
    assert st["failed"] == 2 and not st.get("active") and st["uncountedTerminatedPods"] == {}
    pods = cluster.kjson("get", "pods", "-l", "job-name=half")["items"]
    assert [p["status"]["phase"] for p in pods if not p["metadata"].get("deletionTimestamp")] == ["Failed"]


def test_invalid_restart_policy_is_rejected(cluster):
    r = cluster.kubectl("apply", "-f", "-", check=False, input=textwrap.dedent("""\
        apiVersion: batch/v1
        kind: Job
        metadata: {name: bad}
        spec:
          template:
            spec:
              containers:
              - {name: c, image: busybox}
        """))
    assert r.returncode != 0
    assert 'spec.template.spec.restartPolicy: Unsupported value: "Always"' in r.stderr


def test_indexed_job_sees_its_index_and_hostname(cluster):
    apply(cluster, """\
        apiVersion: batch/v1
        kind: Job
        metadata: {name: idx}
        spec:
          completions: 3
          parallelism: 3
          completionMode: Indexed
          template:
            spec:
              restartPolicy: Never
              containers:
              - {name: c, image: busybox, command: [sh, -c, "echo $JOB_COMPLETION_INDEX $(hostname)"]}
        """)
    cluster.kubectl("wait", "--for=condition=complete", "job/idx", "--timeout=120s", timeout=130)
    job = cluster.kjson("get", "job", "idx")
    assert job["status"]["completedIndexes"] == "0-2" and job["status"]["succeeded"] == 3
    seen = set()
    for p in cluster.kjson("get", "pods", "-l", "job-name=idx")["items"]:
        i = p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
        out = cluster.kubectl("logs", p["metadata"]["name"]).stdout.strip()
        assert out == f"{i} idx-{i}"
        seen.add(i)
    assert seen == {"0", "1", "2"}


def test_daemonset_one_pod_per_node_and_taints(cluster):
    ds = """\
        apiVersion: apps/v1
        kind: DaemonSet
        metadata: {name: NAME}
        spec:
          selector: {matchLabels: {app: NAME}}
          template:
            metadata: {labels: {app: NAME}}
            spec:
              containers:
              - {name: c, image: busybox, command: [sleep, "3600"]}
        """
    apply(cluster, ds.replace("NAME", "agent"))

    def running(app, n):
        pods = cluster.kjson("get", "pods", "-l", f"app={app}")["items"]
        ok = [p for p in pods if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")]
        return ok if len(ok) == n and len(pods) == n else None
    pods = cluster.wait_for("a Running agent on each node", lambda: running("agent", 3), timeout=90)
    assert sorted(p["spec"]["nodeName"] for p in pods) == ["node1", "node2", "node3"]
    cluster.wait_for("ds status", lambda: row(cluster, "ds", "agent")[1:6] == ["3"] * 5, timeout=30)
    header = cluster.kubectl("get", "ds", "agent").stdout.splitlines()[0].split()
    assert header == ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE", "SELECTOR", "AGE"]
    cluster.kubectl("taint", "nodes", "node2", "k=v:NoSchedule")
    try:
        apply(cluster, ds.replace("NAME", "late"))
        pods = cluster.wait_for("late agents on untainted nodes", lambda: running("late", 2), timeout=90)
        assert sorted(p["spec"]["nodeName"] for p in pods) == ["node1", "node3"]
        cluster.wait_for("late ds status", lambda: row(cluster, "ds", "late")[1:3] == ["2", "2"], timeout=30)
        # NoSchedule keeps pods already running there.
        assert "node2" in [p["spec"]["nodeName"] for p in running("agent", 3)]
    finally:
        cluster.kubectl("taint", "nodes", "node2", "k=v:NoSchedule-", check=False)
    # Taint gone: the late DaemonSet fills node2 too.
    pods = cluster.wait_for("late agent on node2", lambda: running("late", 3), timeout=90)
    assert sorted(p["spec"]["nodeName"] for p in pods) == ["node1", "node2", "node3"]


def test_cronjob_creates_a_job_that_completes(cluster):
    def completed():
        for j in cluster.kjson("get", "jobs")["items"]:
            refs = j["metadata"].get("ownerReferences") or []
            if refs and refs[0]["kind"] == "CronJob" and refs[0]["name"] == "tick" and cond(j, "Complete"):
                return j
        return None
    job = cluster.wait_for("a Job from the CronJob to complete", completed, timeout=150, interval=1)
    name = job["metadata"]["name"]
    stamp = job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
    assert name.startswith("tick-") and stamp.endswith(":00Z")
    import datetime as dt
    t = dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
    assert name == f"tick-{int(t.timestamp()) // 60}"
    cj = cluster.wait_for("lastSuccessfulTime", lambda: (lambda o: o if o["status"].get("lastSuccessfulTime") else None)(
        cluster.kjson("get", "cj", "tick")), timeout=30)
    assert cj["status"]["lastScheduleTime"]
    cells = row(cluster, "cj", "tick")
    assert cells[:4] == ["tick", "*/1", "*", "*"] and cells[6:8] == ["<none>", "False"]
    pods = cluster.kjson("get", "pods", "-l", f"job-name={name}")["items"]
    assert pods and cluster.kubectl("logs", pods[0]["metadata"]["name"]).stdout.strip() == "tick"
    # At most successfulJobsHistoryLimit (1) finished Jobs are kept, plus one that may be running.
    owned = [j for j in cluster.kjson("get", "jobs")["items"]
             if (j["metadata"].get("ownerReferences") or [{}])[0].get("name") == "tick"]
    assert len([j for j in owned if cond(j, "Complete")]) <= 2


def test_replication_controller_scales_and_owns_its_pods(cluster):
    c = cluster
    apply(c, """
        apiVersion: v1
        kind: ReplicationController
        metadata: {name: rc1}
        spec:
          replicas: 3
          template:
            metadata: {labels: {app: rc1}}
            spec:
              containers: [{name: c, image: busybox, command: [sleep, "3600"]}]
        """)
    rc = c.kjson("get", "rc", "rc1")
    assert rc["spec"]["selector"] == {"app": "rc1"} and rc["metadata"]["labels"] == {"app": "rc1"}  # defaulted
    c.wait_for("3 ready replicas", lambda: row(c, "rc", "rc1")[1:4] == ["3", "3", "3"], timeout=90)
    pods = c.kjson("get", "pods", "-l", "app=rc1")["items"]
    assert {p["metadata"]["ownerReferences"][0]["kind"] for p in pods} == {"ReplicationController"}
    c.kubectl("scale", "rc", "rc1", "--replicas=1")
    c.wait_for("one pod left", lambda: len([p for p in c.kjson("get", "pods", "-l", "app=rc1")["items"]
                                            if not p["metadata"].get("deletionTimestamp")]) == 1, timeout=60)
    assert "replicationcontroller/rc1" in c.kubectl("get", "all", "-o", "name").stdout
    c.kubectl("delete", "rc", "rc1")
    c.wait_for("its pods to go", lambda: not c.kjson("get", "pods", "-l", "app=rc1")["items"], timeout=90)


def test_daemonset_surge_update_keeps_every_node_served(cluster):
    c = cluster
    apply(c, """
        apiVersion: apps/v1
        kind: DaemonSet
        metadata: {name: surge}
        spec:
          selector: {matchLabels: {app: surge}}
          updateStrategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}
          template:
            metadata: {labels: {app: surge}}
            spec:
              terminationGracePeriodSeconds: 1
              containers:
              - {name: c, image: busybox, command: [sleep, "3600"], readinessProbe: {exec: {command: ["true"]}, periodSeconds: 1}}
        """)
    c.kubectl("rollout", "status", "ds/surge", "--timeout=90s")
    c.kubectl("set", "env", "ds/surge", "ROUND=2")
    most_on_a_node, unserved = 0, []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        pods = [p for p in c.kjson("get", "pods", "-l", "app=surge")["items"] if not p["metadata"].get("deletionTimestamp")]
        per_node: dict[str, int] = {}
        ready_nodes = set()
        for p in pods:
            per_node[p["spec"]["nodeName"]] = per_node.get(p["spec"]["nodeName"], 0) + 1
            if any(x["type"] == "Ready" and x["status"] == "True" for x in p["status"].get("conditions") or []):
                ready_nodes.add(p["spec"]["nodeName"])
        most_on_a_node = max([most_on_a_node, *per_node.values()])
        unserved += [n for n in ("node1", "node2", "node3") if n not in ready_nodes]
        done = len(pods) == 3 and all(any(e.get("name") == "ROUND" for e in p["spec"]["containers"][0].get("env") or [])
                                      for p in pods)
        if done:
            break
        time.sleep(0.3)
    assert done, pods
    assert most_on_a_node == 2  # it surged: a new pod beside the old one
    assert unserved == []  # maxUnavailable 0: every node kept a ready pod throughout
    c.kubectl("rollout", "status", "ds/surge", "--timeout=60s")
