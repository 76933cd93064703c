"""A node's agent killed with SIGKILL and started again re-adopts its running pods: the same
container processes (their shims outlive the agent), restartCount unchanged, the status
carried on, and the logs continue where they were."""
from __future__ import annotations

import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path

from .conftest import start_cluster, stop_cluster

DEPLOY = textwrap.dedent("""
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: steady}
    spec:
      replicas: 10
      selector: {matchLabels: {app: steady}}
      template:
        metadata: {labels: {app: steady}}
        spec:
          containers:
          - name: c
            image: busybox
            command: [sh, -c, 'i=0; while true; do i=$((i+1)); echo n=$i; sleep 0.5; done']
""")


def container_pids(node_dir: Path) -> dict[str, str]:
    return {d.name: (d / "pid").read_text().split()[0] for d in (node_dir / "containers").iterdir() if (d / "pid").exists()}


def test_agent_sigkill_and_restart_readopts_pods(tmp_path_factory):
    c = start_cluster(tmp_path_factory, nodes=1)
    try:
        c.kubectl("apply", "-f", "-", input=DEPLOY)
        c.kubectl("rollout", "status", "deploy/steady", "--timeout=120s")
        before = {p["metadata"]["name"]: p for p in c.kjson("get", "pods", "-l", "app=steady")["items"]}
        node_dir = c.state_dir / c.name / "nodes" / "node1"
        pids_before = container_pids(node_dir)
        pidfile = c.state_dir / c.name / "pids" / "node1.pid"
        pid = int(pidfile.read_text())
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        some = next(iter(before))
        last_before = c.kubectl("logs", some, "--tail=1").stdout.strip()
        os.kill(pid, signal.SIGKILL)  # the agent this test's cluster started
        time.sleep(2)
        with open(c.state_dir / c.name / "logs" / "node1.log", "ab") as log:
            new = subprocess.Popen([a.decode() for a in argv], stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
        pidfile.write_text(str(new.pid))  # so that `nanokube down` stops it

        def settled():
            pods = {p["metadata"]["name"]: p for p in c.kjson("get", "pods", "-l", "app=steady")["items"]}
            return pods if len(pods) == 10 and all(
                any(x["type"] == "Ready" and x["status"] == "True" for x in p["status"].get("conditions") or [])
                for p in pods.values()) else None
        time.sleep(3)
        after = c.wait_for("the pods to be Ready again", settled, timeout=60)
        assert set(after) == set(before)  # no pod replaced
        for name, p in after.items():
            cs, cs0 = p["status"]["containerStatuses"][0], before[name]["status"]["containerStatuses"][0]
            assert cs["restartCount"] == cs0["restartCount"] == 0
            assert cs["state"]["running"]["startedAt"] == cs0["state"]["running"]["startedAt"]
        assert container_pids(node_dir) == pids_before  # the very same processes
        n_before = int(last_before.split("=")[1])
        logs = c.kubectl("logs", some).stdout.split()
        numbers = [int(x.split("=")[1]) for x in logs if x.startswith("n=")]
        assert numbers == list(range(1, len(numbers) + 1)) and numbers[-1] > n_before  # one run, still going
    finally:
        stop_cluster(c)
