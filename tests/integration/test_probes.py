"""Readiness and liveness probes through the real cluster: a pod becomes Ready (and an
endpoint) only when its readiness probe passes; a failing liveness probe restarts it."""
from __future__ import annotations

import textwrap

import pytest

from .conftest import start_cluster, stop_cluster

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = start_cluster(tmp_path_factory, nodes=1)
    yield c
    stop_cluster(c)


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
    events = cluster.kjson("get", "events", "--field-selector", "involvedObject.name=sick")["items"]
    reasons = {e["reason"]: e["message"] for e in events}
    assert reasons.get("Killing") == "Container app failed liveness probe, will be restarted"
    assert reasons.get("Unhealthy", "").startswith("Liveness probe failed")
