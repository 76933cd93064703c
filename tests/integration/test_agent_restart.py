"""A node's agent killed with SIGKILL and started again re-adopts its running pods: the same
container processes (their shims outlive the agent), restartCount unchanged, the status
carried on, and the logs continue where they were; a pod deleted meanwhile is cleaned up
(processes, network namespace, cgroups). Its kube-proxy restarts with it while a
client keeps requesting a Service: not one request fails."""
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

# kube-proxy lives in the agent: a client hitting a Service across the agent's death and
# restart must see no failure (the kernel keeps the rules; the new proxier replaces them
# atomically). The client starts its bounded loop when /tmp/go appears (busybox's own
# wget -T crashes in Debian 12, hence timeout(1); 250 orphans stay below the pids limit).
TRAFFIC = textwrap.dedent("""
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: web}
    spec:
      replicas: 2
      selector: {matchLabels: {app: web}}
      template:
        metadata: {labels: {app: web}}
        spec:
          containers:
          - name: c
            image: busybox
            command: [sh, -c, 'mkdir -p /www && echo hello > /www/index.html && exec httpd -f -p 8000 -h /www']
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: web}
    spec:
      selector: {app: web}
      ports: [{port: 80, targetPort: 8000}]
    ---
    apiVersion: v1
    kind: Pod
    metadata: {name: client}
    spec:
      containers:
      - name: c
        image: busybox
        command: [sh, -c, 'while [ ! -e /tmp/go ]; do sleep 0.2; done; i=0; while [ $i -lt 250 ]; do
                  if timeout 3 wget -q -O /dev/null http://web/; then echo ok; else echo fail; fi; i=$((i+1));
                  sleep 0.1; done; echo done; exec sleep 3600']
""")


def container_pids(node_dir: Path) -> dict[str, str]:
    return {d.name: (d / "pid").read_text().split()[0] for d in (node_dir / "containers").iterdir() if (d / "pid").exists()}


def test_agent_sigkill_and_restart_readopts_pods(tmp_path_factory):
    c = start_cluster(tmp_path_factory, nodes=1)
    try:
        c.kubectl("apply", "-f", "-", input=DEPLOY)
        c.kubectl("apply", "-f", "-", input=TRAFFIC)
        c.kubectl("rollout", "status", "deploy/steady", "--timeout=120s")
        c.kubectl("rollout", "status", "deploy/web", "--timeout=120s")
        c.kubectl("wait", "pod/client", "--for=condition=Ready", "--timeout=60s")
        c.wait_for("the service to answer", lambda: c.kubectl("exec", "client", "--", "timeout", "3", "wget", "-qO-",
                                                               "http://web/", check=False).stdout.strip() == "hello")
        c.kubectl("run", "doomed", "--image=busybox", "--", "sleep", "3600")
        c.kubectl("wait", "pod/doomed", "--for=condition=Ready", "--timeout=60s")
        doomed_uid = c.kjson("get", "pod", "doomed")["metadata"]["uid"]
        doomed_pids = [p for d, p in container_pids(c.state_dir / c.name / "nodes" / "node1").items()
                       if d.startswith(doomed_uid)]
        assert doomed_pids
        c.kubectl("exec", "client", "--", "touch", "/tmp/go")  # the traffic starts now
        time.sleep(2)
        before = {p["metadata"]["name"]: p for p in c.kjson("get", "pods", "-l", "app=steady")["items"]}
        node_dir = c.state_dir / c.name / "nodes" / "node1"
        pids_before = container_pids(node_dir)
        pidfile = c.state_dir / c.name / "pids" / "node1.pid"
        pid = int(pidfile.read_text())
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        some = next(iter(before))
        last_before = c.kubectl("logs", some, "--tail=1").stdout.strip()
        os.kill(pid, signal.SIGKILL)  # the agent this test's cluster started
        c.kubectl("delete", "pod", "doomed", "--wait=false")  # while its node's agent is down
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
        # the pod deleted while the agent was down: gone, and so are its processes and kernel objects
        c.wait_for("the deleted pod to go", lambda: c.kubectl("get", "pod", "doomed", check=False).returncode != 0)
        assert not [p for p in doomed_pids if Path(f"/proc/{p}").exists()]
        assert f"nkp-{doomed_uid.replace('-', '')[:12]}" not in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                                                             text=True).stdout
        assert not [d for base in Path("/sys/fs/cgroup").iterdir() for d in base.rglob(f"pod{doomed_uid}")]
        assert not [d for d in container_pids(node_dir) if d.startswith(doomed_uid)]
        for name, p in after.items():
            cs, cs0 = p["status"]["containerStatuses"][0], before[name]["status"]["containerStatuses"][0]
            assert cs["restartCount"] == cs0["restartCount"] == 0
            assert cs["state"]["running"]["startedAt"] == cs0["state"]["running"]["startedAt"]
        assert container_pids(node_dir) == {d: p for d, p in pids_before.items()  # the very same processes
                                            if not d.startswith(doomed_uid)}
        n_before = int(last_before.split("=")[1])
        logs = c.kubectl("logs", some).stdout.split()
        numbers = [int(x.split("=")[1]) for x in logs if x.startswith("n=")]
        assert numbers == list(range(1, len(numbers) + 1)) and numbers[-1] > n_before  # one run, still going
        # the client's requests through the Service, across the agent's (and kube-proxy's) restart
        out = c.wait_for("the client's loop to end", lambda: (lambda o: o if "done" in o.split() else None)(
            c.kubectl("logs", "client").stdout), timeout=120).split()
        assert out.count("ok") == 250 and "fail" not in out, f"{out.count('fail')} of 250 requests failed"
    finally:
        stop_cluster(c)
