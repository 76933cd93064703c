"""shareProcessNamespace: the containers of a pod see each other's processes (pid 1 is the
pod's pause process, which lives in the pod's cgroups), and nothing of it is left when the
pod goes."""
from __future__ import annotations

import textwrap
from pathlib import Path


def test_containers_share_one_pid_namespace(one_node_cluster):
    c = one_node_cluster
    c.kubectl("apply", "-f", "-", input=textwrap.dedent("""
        apiVersion: v1
        kind: Pod
        metadata: {name: shared-pid}
        spec:
          shareProcessNamespace: true
          terminationGracePeriodSeconds: 1
          containers:
          - {name: a, image: busybox, command: [sleep, "3601"]}
          - {name: b, image: busybox, command: [sleep, "3602"]}
    """))
    c.kubectl("wait", "--for=condition=Ready", "pod/shared-pid", "--timeout=60s")
    ps = c.kubectl("exec", "shared-pid", "-c", "b", "--", "ps", "-o", "pid,args").stdout
    assert "sleep 3601" in ps and "sleep 3602" in ps, ps  # b sees a's process
    assert ps.splitlines()[1].split()[0] == "1" and "sleep" not in ps.splitlines()[1]  # pid 1: the pause process
    # a signal across containers, as the upstream walkthrough does (kill a's sleep from b)
    pid_a = next(l.split()[0] for l in ps.splitlines() if "sleep 3601" in l)
    c.kubectl("exec", "shared-pid", "-c", "b", "--", "kill", pid_a)
    c.wait_for("a to restart", lambda: next(s["restartCount"] for s in c.kjson("get", "pod", "shared-pid")["status"]
                                              ["containerStatuses"] if s["name"] == "a") >= 1, timeout=60)
    node_dir = c.state_dir / c.name / "nodes" / "node1" / "containers"
    # the pause process is the pod's: in its cgroups (memory, cpu, pids), not the agent's
    uid = c.kjson("get", "pod", "shared-pid")["metadata"]["uid"]
    pause_pid = (node_dir / f"pause-{uid}" / "pid").read_text().strip()
    lines = Path(f"/proc/{pause_pid}/cgroup").read_text().splitlines()
    for ctl in ("memory", "pids") if any(":memory:" in l for l in lines) else ("",):
        line = next(l for l in lines if l.split(":")[1] == ctl)
        assert f"/pod{uid}" in line, lines
    c.kubectl("delete", "pod", "shared-pid")
    assert not list(node_dir.glob("pause-*"))
