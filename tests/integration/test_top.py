"""The resource metrics API end to end: real kubectl ``top`` against a real 2-node
`nanokube up --isolated` cluster. A pod burning CPU under a 200m limit and a pod holding
~50 MB must show up with those usages, measured by the kubelets from the pods' cgroups and
served by the apiserver as metrics.k8s.io/v1beta1. Tests run in file order on one cluster."""
from __future__ import annotations

import json
import textwrap

import pytest

from nanokube.api.quantity import bytes_, cpu_milli

from .conftest import start_cluster, stop_cluster

pytestmark = pytest.mark.integration

PODS = textwrap.dedent("""\
    apiVersion: v1
    kind: Pod
    metadata: {name: burn, labels: {app: burn}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: burn
        image: busybox
        command: ["sh", "-c", "while :; do :; done"]
        resources: {limits: {cpu: 200m}}
    ---
    apiVersion: v1
    kind: Pod
    metadata: {name: mem, labels: {app: mem}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: hold
        image: busybox
        # tail keeps the whole newline-free input in its heap (~50 MB), then blocks writing it
        # into a pipe that sleep never reads
        command: ["sh", "-c", "head -c 50m /dev/zero | tail | sleep 3600"]
      - name: idle
        image: busybox
        command: ["sleep", "3600"]
    """)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = start_cluster(tmp_path_factory, nodes=2)
    try:
        c.kubectl("apply", "-f", "-", input=PODS)
        yield c
    finally:
        stop_cluster(c)


def table(out: str) -> list[list[str]]:
    """``kubectl top`` output as rows of cells, header first."""
    return [line.split() for line in out.strip().splitlines()]


def top_pods(c, *args: str) -> dict[str, tuple[int, int]]:
    """pod name → (milli-CPU, bytes), from `kubectl top pods`."""
    r = c.kubectl("top", "pods", *args, check=False)
    if r.returncode != 0:
        raise AssertionError(r.stderr)
    rows = table(r.stdout)
    assert rows[0][:3] == ["NAME", "CPU(cores)", "MEMORY(bytes)"], r.stdout
    return {row[0]: (cpu_milli(row[1]), bytes_(row[2])) for row in rows[1:]}


def test_metrics_group_is_discovered(cluster):
    assert "metrics.k8s.io/v1beta1" in cluster.kubectl("api-versions").stdout.split()
    rows = table(cluster.kubectl("api-resources", "--api-group=metrics.k8s.io", "--no-headers").stdout)
    assert sorted((r[0], r[-1]) for r in rows) == [("nodes", "NodeMetrics"), ("pods", "PodMetrics")]


def test_top_pods_shows_throttled_cpu_and_held_memory(cluster):
    def usage_as_expected():
        got = top_pods(cluster)
        burn, mem = got.get("burn"), got.get("mem")
        # the loop wants a whole core; the cgroup's CFS quota holds it to 200m
        if burn and mem and 100 <= burn[0] <= 250 and mem[1] >= 40 * 2**20:
            return got
        raise AssertionError(f"not yet: {got}")
    got = cluster.wait_for("burn at ~200m and mem at >= 40Mi in kubectl top pods", usage_as_expected,
                           timeout=120, interval=2)
    assert got["mem"][1] < 200 * 2**20, got  # the working set, not some host-wide figure


def test_top_nodes_lists_every_node(cluster):
    r = cluster.kubectl("top", "nodes")
    rows = table(r.stdout)
    assert rows[0][:3] == ["NAME", "CPU(cores)", "CPU(%)"] and "MEMORY(bytes)" in rows[0], r.stdout
    usage = {row[0]: (cpu_milli(row[1]), bytes_(row[3])) for row in rows[1:]}
    assert sorted(usage) == ["node1", "node2"], r.stdout
    # a simulated node's usage is the sum of its pods: the burning pod's node shows it
    burn_node = cluster.kjson("get", "pod", "burn")["spec"]["nodeName"]
    mem_node = cluster.kjson("get", "pod", "mem")["spec"]["nodeName"]
    assert usage[burn_node][0] >= 100, r.stdout
    assert usage[mem_node][1] >= 40 * 2**20, r.stdout


def test_top_pod_containers(cluster):
    r = cluster.kubectl("top", "pod", "mem", "--containers")
    rows = table(r.stdout)
    assert rows[0][:4] == ["POD", "NAME", "CPU(cores)", "MEMORY(bytes)"], r.stdout
    by_name = {row[1]: (cpu_milli(row[2]), bytes_(row[3])) for row in rows[1:] if row[0] == "mem"}
    assert sorted(by_name) == ["hold", "idle"], r.stdout
    assert by_name["hold"][1] >= 40 * 2**20 and by_name["idle"][1] < 10 * 2**20, r.stdout


def test_raw_node_metrics_list(cluster):
    lst = json.loads(cluster.kubectl("get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes").stdout)
    assert lst["kind"] == "NodeMetricsList" and lst["apiVersion"] == "metrics.k8s.io/v1beta1"
    assert sorted(i["metadata"]["name"] for i in lst["items"]) == ["node1", "node2"]
    for i in lst["items"]:
        assert i["kind"] == "NodeMetrics" and i["window"].endswith("s") and i["timestamp"].endswith("Z")
        assert cpu_milli(i["usage"]["cpu"]) >= 0 and bytes_(i["usage"]["memory"]) >= 0
    one = json.loads(cluster.kubectl("get", "--raw", "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/burn").stdout)
    assert one["kind"] == "PodMetrics" and one["metadata"]["labels"] == {"app": "burn"}
    assert [c["name"] for c in one["containers"]] == ["burn"]


def test_kubectl_get_metrics_objects(cluster):
    rows = table(cluster.kubectl("get", "podmetrics", "burn").stdout)
    assert rows[0] == ["NAME", "CPU", "MEMORY", "WINDOW"] and rows[1][0] == "burn", rows
    assert 100 <= cpu_milli(rows[1][1]) <= 250, rows
    rows = table(cluster.kubectl("get", "nodes.metrics.k8s.io").stdout)
    assert rows[0] == ["NAME", "CPU", "MEMORY", "WINDOW"] and sorted(r[0] for r in rows[1:]) == ["node1", "node2"], rows


def test_selectors_namespaces_and_not_found(cluster):
    assert sorted(top_pods(cluster, "-l", "app=burn")) == ["burn"]
    rows = table(cluster.kubectl("top", "pods", "-A").stdout)
    assert rows[0][:2] == ["NAMESPACE", "NAME"] and {("default", "burn"), ("default", "mem")} <= {(r[0], r[1]) for r in rows[1:]}
    r = cluster.kubectl("top", "pods", "-n", "kube-system", check=False)
    assert r.returncode == 0 and "No resources found" in r.stderr + r.stdout
    r = cluster.kubectl("top", "pod", "nope", check=False)
    assert r.returncode != 0 and 'podmetrics.metrics.k8s.io "default/nope" not found' in r.stderr


def test_deleted_pod_leaves_top(cluster):
    cluster.kubectl("delete", "pod", "burn", "--wait=true")
    cluster.wait_for("burn gone from kubectl top pods", lambda: "burn" not in top_pods(cluster), timeout=60, interval=2)
