"""Pod lifecycle through the real cluster: init containers in order over a shared emptyDir,
a failing init blocking the app, restart policies and CrashLoopBackOff, preStop before
SIGTERM, the grace period for a process ignoring SIGTERM, activeDeadlineSeconds."""
from __future__ import annotations

import textwrap
import time

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(one_node_cluster):
    return one_node_cluster


def apply(c, text):
    c.kubectl("apply", "-f", "-", input=textwrap.dedent(text))


def status(c, name):
    return c.kjson("get", "pod", name)["status"]


def test_init_containers_run_in_order_then_app(cluster):
    apply(cluster, """\
        apiVersion: v1
        kind: Pod
        metadata: {name: inits}
        spec:
          restartPolicy: Never
          volumes: [{name: shared, emptyDir: {}}]
          initContainers:
          - {name: first, image: busybox, command: ["sh", "-c", "echo first $(cut -d' ' -f1 /proc/uptime) >> /work/log; sleep 1"],
             volumeMounts: [{name: shared, mountPath: /work}]}
          - {name: second, image: busybox, command: ["sh", "-c", "echo second $(cut -d' ' -f1 /proc/uptime) >> /work/log"],
             volumeMounts: [{name: shared, mountPath: /work}]}
          containers:
          - {name: app, image: busybox, command: ["sh", "-c", "echo app $(cut -d' ' -f1 /proc/uptime) >> /work/log; cat /work/log; head -c 40000 /dev/zero | tr '\\\\0' y; echo"],
             volumeMounts: [{name: shared, mountPath: /work}]}
        """)
    cluster.wait_for("inits pod done", lambda: status(cluster, "inits").get("phase") == "Succeeded", timeout=60)
    lines = [l.split() for l in cluster.kubectl("logs", "inits").stdout.splitlines()]
    assert lines[-1] == ["y" * 40000]  # a long line is logged in 16 KiB pieces; kubectl logs joins them
    lines = lines[:-1]
    assert [l[0] for l in lines] == ["first", "second", "app"]
    stamps = [float(l[1]) for l in lines]
    assert stamps == sorted(stamps) and stamps[1] - stamps[0] >= 1.0
    st = status(cluster, "inits")
    assert [s["state"]["terminated"]["reason"] for s in st["initContainerStatuses"]] == ["Completed", "Completed"]


def test_failing_init_blocks_the_app(cluster):
    apply(cluster, """\
        apiVersion: v1
        kind: Pod
        metadata: {name: badinit}
        spec:
          restartPolicy: Never
          initContainers: [{name: fail, image: busybox, command: ["sh", "-c", "exit 2"]}]
          containers: [{name: app, image: busybox, command: ["sleep", "3600"]}]
        """)
    cluster.wait_for("badinit Failed", lambda: status(cluster, "badinit").get("phase") == "Failed", timeout=60)
    st = status(cluster, "badinit")
    assert st["initContainerStatuses"][0]["state"]["terminated"]["exitCode"] == 2
    assert "running" not in st["containerStatuses"][0]["state"]
    assert "Init:Error" in cluster.kubectl("get", "pod", "badinit").stdout


@pytest.mark.parametrize("policy,code,phase", [("Never", 0, "Succeeded"), ("Never", 1, "Failed"),
                                               ("OnFailure", 0, "Succeeded")])
def test_restart_policies_end_states(cluster, policy, code, phase):
    name = f"end-{policy.lower()}-{code}"
    apply(cluster, f"""\
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}}}
        spec:
          restartPolicy: {policy}
          containers: [{{name: c, image: busybox, command: ["sh", "-c", "exit {code}"]}}]
        """)
    cluster.wait_for(f"{name} {phase}", lambda: status(cluster, name).get("phase") == phase, timeout=60)
    assert status(cluster, name)["containerStatuses"][0]["restartCount"] == 0


def test_crashloop_backoff_doubles(cluster):
    apply(cluster, """\
        apiVersion: v1
        kind: Pod
        metadata: {name: crash}
        spec:
          containers: [{name: c, image: busybox, command: ["sh", "-c", "exit 1"]}]
        """)
    starts: dict[int, float] = {}
    deadline = time.monotonic() + 110
    saw_backoff = False
    while time.monotonic() < deadline and 4 not in starts:
        cs = (status(cluster, "crash").get("containerStatuses") or [{}])[0]
        starts.setdefault(cs.get("restartCount", -1), time.monotonic())
        saw_backoff |= cs.get("state", {}).get("waiting", {}).get("reason") == "CrashLoopBackOff"
        time.sleep(0.25)
    assert saw_backoff and {1, 2, 3, 4} <= set(starts), starts
    gaps = [starts[n + 1] - starts[n] for n in (1, 2, 3)]
    # The first restart is immediate, then back-off doubles from 10 s (±2 s, plus polling).
    for gap, want in zip(gaps, (10, 20, 40)):
        assert want - 2 <= gap <= want + 2.5, (gaps, starts)
    cluster.kubectl("delete", "pod", "crash", "--wait=false")


def test_prestop_then_sigterm_and_grace_kill(cluster):
    import shutil
    from pathlib import Path
    log = Path("/tmp/nanokube-test-prestop/log")
    shutil.rmtree(log.parent, ignore_errors=True)
    apply(cluster, """\
        apiVersion: v1
        kind: Pod
        metadata: {name: graceful}
        spec:
          terminationGracePeriodSeconds: 3
          volumes: [{name: out, hostPath: {path: /tmp/nanokube-test-prestop, type: DirectoryOrCreate}}]
          containers:
          - name: c
            image: busybox
            command: ["sh", "-c", "t() { read u x < /proc/uptime; echo term $u >> /out/log; }; trap t TERM; while true; do sleep 0.1; done"]
            volumeMounts: [{name: out, mountPath: /out}]
            lifecycle:
              preStop: {exec: {command: ["sh", "-c", "echo prestop $(cut -d' ' -f1 /proc/uptime) >> /out/log"]}}
        """)
    try:
        cluster.wait_for("graceful running", lambda: status(cluster, "graceful").get("phase") == "Running")
        t0 = time.monotonic()
        cluster.kubectl("delete", "pod", "graceful", "--wait=true", timeout=60)
        took = time.monotonic() - t0
        words = [l.split()[0] for l in log.read_text().splitlines()]
        assert words[:2] == ["prestop", "term"], words
        # The shell traps TERM but keeps running: only the SIGKILL at the 3 s grace period ends it.
        assert 2.5 <= took <= 15, took
    finally:
        shutil.rmtree(log.parent, ignore_errors=True)


def test_active_deadline(cluster):
    apply(cluster, """\
        apiVersion: v1
        kind: Pod
        metadata: {name: deadline}
        spec:
          activeDeadlineSeconds: 2
          terminationGracePeriodSeconds: 1
          containers: [{name: c, image: busybox, command: ["sleep", "3600"]}]
        """)
    cluster.wait_for("DeadlineExceeded", lambda: status(cluster, "deadline").get("reason") == "DeadlineExceeded",
                     timeout=30)
    assert status(cluster, "deadline")["phase"] == "Failed"


def test_sidecar_init_container_keeps_running(cluster):
    apply(cluster, """\
        apiVersion: v1
        kind: Pod
        metadata: {name: sidecar}
        spec:
          volumes: [{name: shared, emptyDir: {}}]
          initContainers:
          - {name: logger, image: busybox, restartPolicy: Always,
             command: ["sh", "-c", "while true; do date >> /work/side; sleep 1; done"],
             volumeMounts: [{name: shared, mountPath: /work}]}
          containers:
          - {name: app, image: busybox, command: ["sh", "-c", "sleep 2; wc -l < /work/side; sleep 3600"],
             volumeMounts: [{name: shared, mountPath: /work}]}
        """)
    def both_running():
        st = status(cluster, "sidecar")
        init = (st.get("initContainerStatuses") or [{}])[0]
        app = (st.get("containerStatuses") or [{}])[0]
        return "running" in init.get("state", {}) and "running" in app.get("state", {}) and st.get("phase") == "Running"
    cluster.wait_for("sidecar and app running", both_running, timeout=60)
    cluster.wait_for("app saw the sidecar's output",
                     lambda: cluster.kubectl("logs", "sidecar", "-c", "app").stdout.strip().isdigit(), timeout=20)
    assert int(cluster.kubectl("logs", "sidecar", "-c", "app").stdout) >= 1
    row = cluster.kubectl("get", "pod", "sidecar").stdout.splitlines()[1].split()
    assert row[1:3] == ["2/2", "Running"], row
    cluster.kubectl("delete", "pod", "sidecar", "--wait=false")
