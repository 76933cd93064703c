"""Nodes going away, on purpose and not: drain through the Eviction API honouring a
PodDisruptionBudget, and an agent killed with SIGKILL — the node turns NotReady (Unknown)
and tainted, its pods are evicted after their toleration and replaced on the other nodes,
and the Service keeps answering. Short grace periods are configured for the test."""
from __future__ import annotations

import json
import os
import signal
import textwrap
import time

import pytest

from .conftest import snapshot, start_cluster, stop_cluster

APP = textwrap.dedent("""
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: web}
    spec:
      replicas: 4
      selector: {matchLabels: {app: web}}
      template:
        metadata: {labels: {app: web}}
        spec:
          terminationGracePeriodSeconds: 1
          containers:
          - name: web
            image: busybox
            command: [sh, -c, 'mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www']
            readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: web}
    spec:
      type: NodePort
      selector: {app: web}
      ports: [{port: 80, targetPort: 8080, nodePort: 30090}]
    ---
    apiVersion: policy/v1
    kind: PodDisruptionBudget
    metadata: {name: web}
    spec:
      minAvailable: 3
      selector: {matchLabels: {app: web}}
""")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = start_cluster(tmp_path_factory, nodes=3, extra=("--node-monitor-grace-period", "6",
                                                        "--default-toleration-seconds", "3"))
    c.kubectl("apply", "-f", "-", input=APP)
    c.kubectl("rollout", "status", "deploy/web", "--timeout=90s")
    yield c
    stop_cluster(c)


def pods_on(c, node: str) -> list[str]:
    return c.kubectl("get", "pods", "-l", "app=web", "--field-selector", f"spec.nodeName={node},status.phase=Running",
                     "-o", "name").stdout.split()


def ready_web(c) -> int:
    return sum(1 for p in c.kjson("get", "pods", "-l", "app=web")["items"] if not p["metadata"].get("deletionTimestamp")
               and any(x["type"] == "Ready" and x["status"] == "True" for x in p["status"].get("conditions") or []))


def test_pdb_status_and_eviction_refused(cluster):
    c = cluster
    c.wait_for("the budget to count 4 healthy pods", lambda: c.kjson("get", "pdb", "web")["status"].get("currentHealthy") == 4)
    st = c.kjson("get", "pdb", "web")["status"]
    assert (st["desiredHealthy"], st["expectedPods"], st["disruptionsAllowed"]) == (3, 4, 1)
    assert c.kubectl("get", "pdb", "web").stdout.split("\n")[1].split()[:4] == ["web", "3", "N/A", "1"]
    c.kubectl("patch", "pdb", "web", "--type=merge", "-p", '{"spec": {"minAvailable": 4}}')
    c.wait_for("no disruption allowed", lambda: c.kjson("get", "pdb", "web")["status"]["disruptionsAllowed"] == 0)
    node = c.kjson("get", "pods", "-l", "app=web")["items"][0]["spec"]["nodeName"]
    r = c.kubectl("drain", node, "--ignore-daemonsets", "--timeout=6s", check=False, timeout=60)
    assert r.returncode != 0, r.stdout + r.stderr
    assert "Cannot evict pod as it would violate the pod's disruption budget" in r.stdout + r.stderr
    assert ready_web(c) == 4  # nothing was taken
    c.kubectl("uncordon", node)
    c.kubectl("patch", "pdb", "web", "--type=merge", "-p", '{"spec": {"minAvailable": 3}}')


def test_drain_evicts_within_the_budget(cluster):
    c = cluster
    busiest = max(["node1", "node2", "node3"], key=lambda n: len(pods_on(c, n)))
    assert pods_on(c, busiest)
    r = c.kubectl("drain", busiest, "--ignore-daemonsets", "--timeout=120s", timeout=180)
    assert "evicted" in r.stdout and "drained" in r.stdout, r.stdout + r.stderr
    assert c.kjson("get", "node", busiest)["spec"].get("unschedulable") is True
    assert pods_on(c, busiest) == []
    c.wait_for("4 ready pods elsewhere", lambda: ready_web(c) == 4, timeout=90)
    c.kubectl("uncordon", busiest)


def test_killed_agent_node_is_tainted_and_pods_move(cluster):
    c = cluster
    victim = max(["node1", "node2", "node3"], key=lambda n: len(pods_on(c, n)))
    if not pods_on(c, victim):  # after the drain, put something there to move
        c.kubectl("scale", "deploy/web", "--replicas=6")
        c.wait_for("a pod on every node", lambda: all(pods_on(c, n) for n in ("node1", "node2", "node3")), timeout=90)
        victim = "node3"
    moving = pods_on(c, victim)
    pid = int((c.state_dir / c.name / "pids" / f"{victim}.pid").read_text())
    os.kill(pid, signal.SIGKILL)  # the agent this test's cluster started
    t0 = time.monotonic()

    def unknown():
        n = c.kjson("get", "node", victim)
        ready = next(x for x in n["status"]["conditions"] if x["type"] == "Ready")
        keys = {(t["key"], t["effect"]) for t in n["spec"].get("taints") or []}
        return ready["status"] == "Unknown" and ("node.kubernetes.io/unreachable", "NoExecute") in keys
    c.wait_for("the node to be Unknown and tainted unreachable", unknown, timeout=60)
    assert "NotReady" in c.kubectl("get", "node", victim).stdout

    def evicted():
        pods = {f"pod/{p['metadata']['name']}": p for p in c.kjson("get", "pods", "-l", "app=web")["items"]}
        return all(pods.get(m) is None or pods[m]["metadata"].get("deletionTimestamp") for m in moving)
    c.wait_for("its pods to be evicted", evicted, timeout=60)
    want = c.kjson("get", "deploy", "web")["spec"]["replicas"]
    c.wait_for("replacements ready on the other nodes", lambda: ready_web(c) == want, timeout=90)
    others = [n for n in ("node1", "node2", "node3") if n != victim]
    placed = [p["spec"]["nodeName"] for p in c.kjson("get", "pods", "-l", "app=web")["items"]
              if not p["metadata"].get("deletionTimestamp")]
    assert set(placed) <= set(others), placed
    events = c.kjson("get", "events", "--field-selector", "reason=TaintManagerEviction")["items"]
    assert events, "no TaintManagerEviction event"
    # The Service keeps answering on the nodes that are left.
    answers = [c.wget(f"http://{c.kjson('get', 'node', others[0])['status']['addresses'][0]['address']}:30090/")
               for _ in range(10)]
    assert all(a and a.strip().startswith("web-") for a in answers), (answers, c.kjson("get", "endpoints", "web"))
    print(f"node {victim}: Unknown + evicted + replaced in {time.monotonic() - t0:.1f}s")


def test_zz_down_removes_a_dead_nodes_leftovers(cluster):
    c = cluster
    r = stop_cluster(c)
    assert r.returncode == 0, r.stderr
    snap = snapshot()
    mine = lambda items: sorted(i for i in items if c.name in i or str(c.state_dir) in i)  # noqa: E731
    for k in ("netns", "cgroups", "mounts", "processes"):
        assert mine(snap[k]) == [], (k, mine(snap[k]))
