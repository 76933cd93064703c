"""LimitRange and ResourceQuota admission and the HorizontalPodAutoscaler, through a real
cluster with the real kubectl: defaults on a pod created without resources, the upstream
Forbidden messages, `kubectl describe quota`, and `kubectl autoscale` scaling a Deployment
up under a CPU burner started with `kubectl exec` and back down once it stops."""
from __future__ import annotations

import textwrap

import pytest

from .conftest import start_cluster, stop_cluster

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = start_cluster(tmp_path_factory, nodes=1, extra=("--hpa-sync-period", "2"))
    yield c
    stop_cluster(c)


def apply(c, text, *ns):
    c.kubectl(*ns, "apply", "-f", "-", input=textwrap.dedent(text))


def test_limit_range_defaults_and_minimum(cluster):
    cluster.kubectl("create", "namespace", "lr")
    apply(cluster, """\
        apiVersion: v1
        kind: LimitRange
        metadata: {name: limits}
        spec:
          limits:
          - type: Container
            default: {cpu: 300m, memory: 64Mi}
            defaultRequest: {cpu: 150m, memory: 32Mi}
            min: {cpu: 100m}
        """, "-n", "lr")
    assert "limits" in cluster.kubectl("-n", "lr", "get", "limitranges").stdout
    cluster.kubectl("-n", "lr", "run", "plain", "--image=busybox", "--restart=Never", "--", "sleep", "3600")
    res = cluster.kjson("-n", "lr", "get", "pod", "plain")["spec"]["containers"][0]["resources"]
    assert res == {"limits": {"cpu": "300m", "memory": "64Mi"}, "requests": {"cpu": "150m", "memory": "32Mi"}}
    r = cluster.kubectl("-n", "lr", "run", "small", "--image=busybox", "--restart=Never", "--overrides",
                        '{"spec":{"containers":[{"name":"small","image":"busybox","args":["sleep","3600"],'
                        '"resources":{"requests":{"cpu":"50m"}}}]}}', check=False)
    assert r.returncode != 0
    assert ('Error from server (Forbidden): pods "small" is forbidden: minimum cpu usage per Container is 100m, '
            'but request is 50m') in r.stderr


def test_quota_rejects_the_third_pod(cluster):
    cluster.kubectl("create", "namespace", "rq")
    cluster.kubectl("-n", "rq", "create", "quota", "q", "--hard=pods=2,configmaps=10")
    for name in ("p1", "p2"):
        cluster.kubectl("-n", "rq", "run", name, "--image=busybox", "--restart=Never", "--", "sleep", "3600")
    r = cluster.kubectl("-n", "rq", "run", "p3", "--image=busybox", "--restart=Never", "--", "sleep", "3600", check=False)
    assert r.returncode != 0
    assert ('pods "p3" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2'
            in r.stderr)
    out = cluster.kubectl("-n", "rq", "describe", "quota", "q").stdout
    lines = {tuple(ln.split()) for ln in out.splitlines()}
    assert ("pods", "2", "2") in lines, out
    assert ("configmaps", "1", "10") in lines, out  # kube-root-ca.crt, counted by the controller
    row = cluster.kubectl("-n", "rq", "get", "quota", "q", "--no-headers").stdout
    assert "pods: 2/2" in row and "configmaps: 1/10" in row
    # A deleted pod gives its unit back (the quota controller recounts), and one more fits.
    cluster.kubectl("-n", "rq", "delete", "pod", "p1", "--grace-period=0", "--force", "--wait=true")
    cluster.wait_for("quota usage to drop", lambda: cluster.kjson("-n", "rq", "get", "quota", "q")
                     ["status"]["used"]["pods"] == "1", timeout=60)
    cluster.kubectl("-n", "rq", "run", "p3", "--image=busybox", "--restart=Never", "--", "sleep", "3600")


def test_quota_requires_limits_for_constrained_resources(cluster):
    cluster.kubectl("create", "namespace", "rq2")
    cluster.kubectl("-n", "rq2", "create", "quota", "compute", "--hard=limits.cpu=1,requests.memory=1Gi")
    r = cluster.kubectl("-n", "rq2", "run", "bare", "--image=busybox", "--restart=Never", "--", "sleep", "3600",
                        check=False)
    assert ('pods "bare" is forbidden: failed quota: compute: must specify limits.cpu for: bare; '
            'requests.memory for: bare') in r.stderr


def _replicas(cluster) -> int:
    row = cluster.kubectl("get", "hpa", "web", "--no-headers").stdout.split()
    return int(row[-2])  # NAME REFERENCE TARGETS... MINPODS MAXPODS REPLICAS AGE


def test_hpa_scales_up_under_load_and_back_down(cluster):
    apply(cluster, """\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: web}
        spec:
          replicas: 1
          selector: {matchLabels: {app: web}}
          template:
            metadata: {labels: {app: web}}
            spec:
              containers:
              - name: c
                image: busybox
                command: ["sh", "-c", "sleep 100000"]
                resources: {requests: {cpu: 100m}, limits: {cpu: 200m}}
        """)
    cluster.kubectl("rollout", "status", "deployment/web", "--timeout=90s", timeout=100)
    cluster.kubectl("autoscale", "deployment", "web", "--cpu-percent=50", "--min=1", "--max=4")
    hpa = cluster.kjson("get", "hpa", "web")
    assert hpa["apiVersion"] == "autoscaling/v2"
    cluster.kubectl("patch", "hpa", "web", "--type=merge",
                    "-p", '{"spec":{"behavior":{"scaleDown":{"stabilizationWindowSeconds":5}}}}')
    # Idle: metrics arrive, the HPA reports a utilization and stays at 1.
    cluster.wait_for("an idle utilization", lambda: "%/50%" in cluster.kubectl("get", "hpa", "web").stdout
                     and "<unknown>" not in cluster.kubectl("get", "hpa", "web").stdout, timeout=90)
    assert _replicas(cluster) == 1
    pod = cluster.kjson("get", "pods", "-l", "app=web")["items"][0]["metadata"]["name"]
    cluster.kubectl("exec", pod, "--", "sh", "-c",
                    'sh -c "while :; do :; done" >/dev/null 2>&1 & echo $! > /tmp/burn.pid')
    cluster.wait_for("the HPA to scale up", lambda: _replicas(cluster) > 1, timeout=120)
    st = cluster.kjson("get", "hpa", "web")["status"]
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["ScalingActive"]["status"] == "True" and conds["ScalingActive"]["reason"] == "ValidMetricFound"
    assert st["desiredReplicas"] > 1 and st["currentMetrics"][0]["resource"]["current"]["averageUtilization"] > 50
    dep = cluster.kjson("get", "deployment", "web")
    assert 1 < dep["spec"]["replicas"] <= 4
    assert "SuccessfulRescale" in cluster.kubectl("describe", "hpa", "web").stdout
    cluster.kubectl("exec", pod, "--", "sh", "-c", "kill $(cat /tmp/burn.pid)")
    cluster.wait_for("the HPA to scale back down", lambda: _replicas(cluster) == 1
                     and cluster.kjson("get", "deployment", "web")["spec"]["replicas"] == 1, timeout=180)
