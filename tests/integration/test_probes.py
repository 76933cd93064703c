"""Readiness and liveness probes through the real cluster: a pod becomes Ready (and an
endpoint) only when its readiness probe passes; a failing liveness probe restarts it."""
from __future__ import annotations

import re
import textwrap
import time

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(one_node_cluster):
    return one_node_cluster


def test_readiness_gates_ready_and_endpoints(cluster):
    cluster.kubectl("apply", "-f", "-", input=textwrap.dedent("""\
        apiVersion: v1
        kind: Pod
        metadata:
          name: slow
          labels: {app: slow}
        spec:
          containers:
          - name: web
            image: busybox
            command: ["sh", "-c", "mkdir /www; echo ok > /www/x; sleep 4; echo ok > /www/ready; exec httpd -f -p 8080 -h /www"]
            ports: [{containerPort: 8080, name: http}]
            readinessProbe:
              httpGet: {path: /ready, port: http}
              periodSeconds: 1
        ---
        apiVersion: v1
        kind: Service
        metadata:
          name: slow
        spec:
          selector: {app: slow}
          ports: [{port: 80, targetPort: http}]
        """))

    def pod_status():
        return cluster.kjson("get", "pod", "slow")["status"]
    cluster.wait_for("running", lambda: pod_status().get("phase") == "Running")
    st = pod_status()
    ready = {c["type"]: c["status"] for c in st["conditions"]}["Ready"]
    assert ready == "False" and st["containerStatuses"][0]["ready"] is False
    ep = cluster.kjson("get", "endpoints", "slow")
    assert not any(s.get("addresses") for s in ep.get("subsets") or [])
    cluster.wait_for("Ready", lambda: {c["type"]: c["status"] for c in pod_status()["conditions"]}["Ready"] == "True",
                     timeout=30)
    cluster.wait_for("ready endpoint", lambda: any(s.get("addresses") for s in
                                                   cluster.kjson("get", "endpoints", "slow").get("subsets") or []))
    events = cluster.kjson("get", "events", "--field-selector", "involvedObject.name=slow")["items"]
    assert any(e["reason"] == "Unhealthy" and e["message"].startswith("Readiness probe failed") for e in events)


def test_liveness_failure_restarts_container(cluster):
    cluster.kubectl("apply", "-f", "-", input=textwrap.dedent("""\
        apiVersion: v1
        kind: Pod
        metadata:
          name: sick
        spec:
          terminationGracePeriodSeconds: 1
          containers:
          - name: app
            image: busybox
            command: ["sh", "-c", "touch /tmp/healthy; sleep 2; rm /tmp/healthy; sleep 3600"]
            livenessProbe:
              exec: {command: ["cat", "/tmp/healthy"]}
              periodSeconds: 1
              failureThreshold: 2
        """))

    def restarted():
        st = cluster.kjson("get", "pod", "sick")["status"].get("containerStatuses") or [{}]
        return st[0].get("restartCount", 0) >= 1 and st[0].get("lastState", {}).get("terminated")
    term = cluster.wait_for("a liveness restart", restarted, timeout=60)
    assert term["exitCode"] in (137, 143)
    # Healthy for 2 s, then failureThreshold (2) x periodSeconds (1): killed ~4 s after start (±1 period).
    import datetime as dt
    ran = (dt.datetime.fromisoformat(term["finishedAt"].replace("Z", "+00:00"))
           - dt.datetime.fromisoformat(term["startedAt"].replace("Z", "+00:00"))).total_seconds()
    assert 2 <= ran <= 6, ran
    described = cluster.kubectl("describe", "pod", "sick").stdout
    assert re.search(r"Restart Count:\s+[1-9]", described) and "Liveness probe failed" in described, described
    events = cluster.kjson("get", "events", "--field-selector", "involvedObject.name=sick")["items"]
    reasons = {e["reason"]: e["message"] for e in events}
    assert reasons.get("Killing") == "Container app failed liveness probe, will be restarted"
    assert reasons.get("Unhealthy", "").startswith("Liveness probe failed")


def test_tcp_and_startup_probes(cluster):
    cluster.kubectl("apply", "-f", "-", input=textwrap.dedent("""\
        apiVersion: v1
        kind: Pod
        metadata:
          name: slowstart
        spec:
          containers:
          - name: srv
            image: busybox
            command: ["sh", "-c", "sleep 3; exec nc -ll -p 9000 -e echo hi"]
            ports: [{containerPort: 9000, name: svc}]
            startupProbe:
              tcpSocket: {port: svc}
              periodSeconds: 1
              failureThreshold: 10
            livenessProbe:
              tcpSocket: {port: 9000}
              periodSeconds: 1
              failureThreshold: 1
        """))
    def cs():
        return (cluster.kjson("get", "pod", "slowstart")["status"].get("containerStatuses") or [{}])[0]
    cluster.wait_for("running", lambda: "running" in cs().get("state", {}))
    assert cs()["started"] is False and cs()["ready"] is False
    cluster.wait_for("started", lambda: cs().get("started") is True, timeout=30)
    time.sleep(2)
    # The liveness probe would have killed it during the slow start had startup not gated it.
    assert cs()["restartCount"] == 0 and cs()["ready"] is True


def test_readiness_failure_takes_pod_out_of_service_and_back(cluster):
    cluster.kubectl("apply", "-f", "-", input=textwrap.dedent("""\
        apiVersion: v1
        kind: Pod
        metadata:
          name: flappy
          labels: {app: flappy}
        spec:
          containers:
          - name: web
            image: busybox
            command: ["sh", "-c", "mkdir /www; echo ok > /www/ready; httpd -p 8080 -h /www; sleep 6; rm /www/ready; sleep 6; echo ok > /www/ready; sleep 3600"]
            ports: [{containerPort: 8080}]
            readinessProbe:
              httpGet: {path: /ready, port: 8080}
              periodSeconds: 1
              failureThreshold: 1
        ---
        apiVersion: v1
        kind: Service
        metadata:
          name: flappy
        spec:
          type: NodePort
          selector: {app: flappy}
          ports: [{port: 80, targetPort: 8080, nodePort: 30090}]
        """))

    def ready_addrs():
        return [a["ip"] for s in cluster.kjson("get", "endpoints", "flappy").get("subsets") or [] for a in s.get("addresses") or []]
    cluster.wait_for("in service", lambda: ready_addrs() and cluster.wget("http://172.30.0.11:30090/ready"), timeout=30)
    cluster.wait_for("out of service", lambda: not ready_addrs(), timeout=20)
    assert cluster.wget("http://172.30.0.11:30090/ready") is None  # rejected: no ready endpoints
    cluster.wait_for("back in service", lambda: ready_addrs() and cluster.wget("http://172.30.0.11:30090/ready"),
                     timeout=20)


def test_force_delete_stops_the_pod_at_once(cluster):
    cluster.kubectl("apply", "-f", "-", input=textwrap.dedent("""\
        apiVersion: v1
        kind: Pod
        metadata: {name: stubborn}
        spec:
          terminationGracePeriodSeconds: 300
          containers: [{name: c, image: busybox, command: ["sh", "-c", "trap '' TERM; sleep 3600"]}]
        """))
    cluster.wait_for("running", lambda: cluster.kjson("get", "pod", "stubborn")["status"].get("phase") == "Running")
    uid = cluster.kjson("get", "pod", "stubborn")["metadata"]["uid"]
    r = cluster.kubectl("delete", "pod", "stubborn", "--force", "--grace-period=0")
    assert "force deleted" in r.stdout + r.stderr
    netns = "nkp-" + uid.replace("-", "")[:12]
    import subprocess
    cluster.wait_for("pod network gone", lambda: netns not in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                                                             text=True).stdout, timeout=20)


GRPC_SERVER = """
import signal, sys
from concurrent import futures
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
h = health.HealthServicer()
h.set("", health_pb2.HealthCheckResponse.SERVING)
health_pb2_grpc.add_HealthServicer_to_server(h, server)
server.add_insecure_port("0.0.0.0:9555")
server.start()
print("up", flush=True)
signal.signal(signal.SIGUSR1, lambda *a: h.set("", health_pb2.HealthCheckResponse.NOT_SERVING))
server.wait_for_termination()
"""


def test_grpc_readiness_probe(cluster):
    import signal
    import subprocess
    import sys
    cluster.kubectl("apply", "-f", "-", input=textwrap.dedent("""\
        apiVersion: v1
        kind: Pod
        metadata: {name: grpcpod}
        spec:
          containers:
          - name: c
            image: busybox
            command: ["sleep", "3600"]
            readinessProbe:
              grpc: {port: 9555}
              periodSeconds: 1
              failureThreshold: 1
        """))
    pod = cluster.wait_for("running", lambda: (lambda p: p if p["status"].get("phase") == "Running" else None)(
        cluster.kjson("get", "pod", "grpcpod")))
    assert pod["status"]["containerStatuses"][0]["ready"] is False  # nothing serves health yet
    # The gRPC health server runs in the pod's own network namespace (made by the cluster).
    ns = "nkp-" + pod["metadata"]["uid"].replace("-", "")[:12]
    srv = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", GRPC_SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert srv.stdout.readline().strip() == "up"
        ready = lambda: cluster.kjson("get", "pod", "grpcpod")["status"]["containerStatuses"][0]["ready"]  # noqa: E731
        cluster.wait_for("ready via grpc", ready, timeout=20)
        srv.send_signal(signal.SIGUSR1)
        cluster.wait_for("not ready via grpc", lambda: not ready(), timeout=20)
    finally:
        srv.kill()
        srv.wait()
    cluster.kubectl("delete", "pod", "grpcpod", "--wait=false")
