"""Issue 3's acceptance, driven the way a user would: real kubectl against a real 3-node
`nanokube up --isolated` cluster, traffic checked from the cluster's host side and from
inside pods. Tests run in file order and share one cluster; the last one takes it down and
checks that nothing is left behind."""
from __future__ import annotations

import json
import re
import textwrap
from collections import Counter

import pytest

from .conftest import ROOT, snapshot, start_cluster, stop_cluster

pytestmark = pytest.mark.integration

NODE_IPS = ["172.30.0.11", "172.30.0.12", "172.30.0.13"]
MANIFEST = (ROOT / "examples" / "hello.yaml").read_text()


@pytest.fixture(scope="module")
def before():
    return snapshot()


@pytest.fixture(scope="module")
def cluster(before, tmp_path_factory):
    c = start_cluster(tmp_path_factory, nodes=3)
    yield c
    stop_cluster(c)


def ready_pods(c, selector="app=hello"):
    pods = c.kjson("get", "pods", "-l", selector)["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")
            and any(x["type"] == "Ready" and x["status"] == "True" for x in p["status"].get("conditions", []))]


def wait_ready_replicas(c, n):
    return c.wait_for(f"{n} ready hello pods", lambda: (lambda ps: ps if len(ps) == n else None)(ready_pods(c)),
                      timeout=90)


def endpoint_ips(c):
    ep = c.kjson("get", "endpoints", "hello")
    return sorted(a["ip"] for s in ep.get("subsets") or [] for a in s.get("addresses") or [])


def test_three_ready_nodes_with_lan_addresses(cluster):
    out = cluster.kubectl("get", "nodes", "-o", "wide").stdout
    lines = out.strip().splitlines()
    assert lines[0].split()[:2] == ["NAME", "STATUS"] and "INTERNAL-IP" in lines[0]
    rows = [l.split() for l in lines[1:]]
    assert len(rows) == 3
    assert all(r[1] == "Ready" for r in rows), out
    assert sorted(r[5] for r in rows) == NODE_IPS, out


def test_deployment_served_on_every_node_port(cluster):
    r = cluster.kubectl("apply", "-f", "-", input=MANIFEST)
    assert "deployment.apps/hello created" in r.stdout and "service/hello created" in r.stdout
    pods = wait_ready_replicas(cluster, 3)
    nodes = Counter(p["spec"]["nodeName"] for p in pods)
    assert len(nodes) == 3, f"pods not spread over the nodes: {nodes}"
    names = {p["metadata"]["name"] for p in pods}
    table = cluster.kubectl("get", "pods", "-o", "wide").stdout.splitlines()
    assert table[0].split()[:5] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"] and "NODE" in table[0]
    assert sum(1 for l in table[1:] if "1/1" in l and "Running" in l) == 3
    cluster.wait_for("endpoints", lambda: len(endpoint_ips(cluster)) == 3)
    for ip in NODE_IPS:
        body = cluster.wait_for(f"NodePort on {ip}", lambda: cluster.wget(f"http://{ip}:30080/"), timeout=30)
        assert body.startswith("hello from ")
    seen = Counter()
    for _ in range(60):
        body = cluster.wget(f"http://{NODE_IPS[0]}:30080/")
        assert body, "a request to the NodePort failed"
        seen[body.split()[-1]] += 1
    assert set(seen) == names, f"60 requests reached {dict(seen)}, not all of {names}"


def _run_client_pod(c, name, script):
    manifest = textwrap.dedent(f"""\
        apiVersion: v1
        kind: Pod
        metadata:
          name: {name}
        spec:
          restartPolicy: Never
          containers:
          - name: client
            image: busybox
            command: ["sh", "-c", {json.dumps(script)}]
        """)
    c.kubectl("apply", "-f", "-", input=manifest)
    c.wait_for(f"pod {name} to finish", lambda: c.kjson("get", "pod", name)["status"].get("phase") in ("Succeeded", "Failed"),
               timeout=60)
    pod = c.kjson("get", "pod", name)
    logs = c.kubectl("logs", name).stdout
    c.kubectl("delete", "pod", name, "--wait=false")
    return pod, logs


def test_cluster_ip_and_pod_ips_from_inside_a_pod(cluster):
    svc = cluster.kjson("get", "service", "hello")
    cip = svc["spec"]["clusterIP"]
    assert cip.startswith("10.") and svc["spec"]["ports"][0]["nodePort"] == 30080
    pods = ready_pods(cluster)
    script = (f"timeout 5 wget -qO- http://{cip}/ && "
              + " && ".join(f"timeout 5 wget -qO- http://{p['status']['podIP']}:8080/" for p in pods))
    pod, logs = _run_client_pod(cluster, "client", script)
    assert pod["status"]["phase"] == "Succeeded", logs
    my_node = pod["spec"]["nodeName"]
    assert any(p["spec"]["nodeName"] != my_node for p in pods)
    for p in pods:
        assert f"hello from {p['metadata']['name']}" in logs
    assert logs.count("hello from") == 4


def test_deleted_pod_is_replaced_and_service_keeps_answering(cluster):
    pods = ready_pods(cluster)
    victim = pods[0]["metadata"]["name"]
    cluster.kubectl("delete", "pod", victim, "--wait=false")
    new = cluster.wait_for("a replacement pod", lambda: (lambda ps: ps if len(ps) == 3 and victim not in
                           {p["metadata"]["name"] for p in ps} else None)(ready_pods(cluster)), timeout=90)
    want = sorted(p["status"]["podIP"] for p in new)
    cluster.wait_for("endpoints to follow", lambda: endpoint_ips(cluster) == want)
    for ip in NODE_IPS:  # each node's kube-proxy applies the change on its own, a moment later
        cluster.wait_for(f"{ip}:30080 to answer", lambda: (cluster.wget(f"http://{ip}:30080/") or "").startswith(
            "hello from "), timeout=30)


def test_scale_reapply_and_rollout(cluster):
    cluster.kubectl("scale", "deployment", "hello", "--replicas=1")
    cluster.wait_for("1 replica", lambda: len(cluster.kjson("get", "pods", "-l", "app=hello")["items"]) == 1, timeout=90)
    cluster.kubectl("scale", "deployment", "hello", "--replicas=3")
    wait_ready_replicas(cluster, 3)
    rs_before = cluster.kjson("get", "replicasets", "-l", "app=hello")["items"]
    r = cluster.kubectl("apply", "-f", "-", input=MANIFEST)
    assert "deployment.apps/hello unchanged" in r.stdout and "service/hello unchanged" in r.stdout, r.stdout
    assert cluster.kjson("get", "replicasets", "-l", "app=hello")["items"] == rs_before
    old_names = {p["metadata"]["name"] for p in ready_pods(cluster)}
    cluster.kubectl("apply", "-f", "-", input=MANIFEST.replace("value: hello", "value: bonjour"))
    def rolled():
        ps = ready_pods(cluster)
        fresh = [p for p in ps if p["metadata"]["name"] not in old_names]
        return len(ps) == 3 and len(fresh) == 3 and all(
            e.get("value") == "bonjour" for p in fresh for e in p["spec"]["containers"][0]["env"])
    cluster.wait_for("the rollout", rolled, timeout=120)
    assert len(cluster.kjson("get", "replicasets", "-l", "app=hello")["items"]) == 2
    cluster.kubectl("rollout", "status", "deployment/hello", "--timeout=60s")


def test_unknown_image_and_taken_node_port(cluster):
    cluster.kubectl("apply", "-f", "-", input=textwrap.dedent("""\
        apiVersion: v1
        kind: Pod
        metadata:
          name: noimage
        spec:
          containers:
          - name: c
            image: registry.example/nothing:1.0
            imagePullPolicy: Never
        """))
    def waiting():
        st = cluster.kjson("get", "pod", "noimage")["status"].get("containerStatuses") or []
        return st and st[0]["state"].get("waiting", {}).get("reason") == "ErrImageNeverPull"
    cluster.wait_for("ErrImageNeverPull", waiting)
    assert "ErrImageNeverPull" in cluster.kubectl("get", "pod", "noimage").stdout
    events = cluster.kjson("get", "events", "--field-selector", "involvedObject.name=noimage")["items"]
    assert any(e["reason"] == "ErrImageNeverPull" and e["type"] == "Warning" for e in events)
    cluster.kubectl("delete", "pod", "noimage", "--wait=false")
    r = cluster.kubectl("apply", "-f", "-", check=False, input=textwrap.dedent("""\
        apiVersion: v1
        kind: Service
        metadata:
          name: clash
        spec:
          type: NodePort
          selector: {app: hello}
          ports:
          - port: 80
            nodePort: 30080
        """))
    assert r.returncode != 0
    assert 'spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated' in r.stderr, r.stderr
    assert cluster.kubectl("get", "service", "clash", check=False).returncode != 0


def test_get_watch_prints_changes(cluster):
    import subprocess
    import time
    argv = cluster._base("kubectl") + ["--", "get", "configmaps", "-w", "--request-timeout=8s"]
    w = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)
        cluster.kubectl("create", "-f", "-", input="apiVersion: v1\nkind: ConfigMap\nmetadata: {name: watched}\ndata: {a: b}\n")
        out, _ = w.communicate(timeout=20)
    finally:
        if w.poll() is None:
            w.kill()
            w.wait()
    lines = out.strip().splitlines()
    assert lines[0].split() == ["NAME", "DATA", "AGE"], out
    assert any(l.split()[:2] == ["watched", "1"] for l in lines[1:]), out
    cluster.kubectl("delete", "configmap", "watched")


BAD = {
    "bad name": ("""apiVersion: v1
kind: ConfigMap
metadata:
  name: Bad_Name
data: {a: b}
""", r'The ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name"'),
    "unknown field": ("""apiVersion: apps/v1
kind: Deployment
metadata:
  name: badfield
spec:
  replicas: 1
  selector: {matchLabels: {app: b}}
  template:
    metadata: {labels: {app: b}}
    spec:
      containers:
      - name: c
        image: busybox
        imagee: oops
""", r'unknown field "spec.template.spec.containers\[0\].imagee"'),
    "missing image": ("""apiVersion: v1
kind: Pod
metadata:
  name: noimage
spec:
  containers:
  - name: c
""", r'The Pod "noimage" is invalid: spec.containers\[0\].image: Required value'),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_rejected_and_nothing_stored(cluster, case):
    manifest, pattern = BAD[case]
    r = cluster.kubectl("apply", "-f", "-", input=manifest, check=False)
    assert r.returncode != 0
    assert re.search(pattern, r.stderr), r.stderr
    kind = re.search(r"kind: (\w+)", manifest).group(1).lower()
    name = re.search(r"name: (\S+)", manifest).group(1)
    got = cluster.kubectl("get", kind, name, check=False)
    assert got.returncode != 0 and "NotFound" in got.stderr


def test_zz_down_leaves_nothing_behind(cluster, before):
    r = stop_cluster(cluster)
    assert r.returncode == 0, r.stderr
    after = snapshot()
    for k in before:
        assert after[k] == before[k], f"{k} differ after down: added {after[k] - before[k]}, removed {before[k] - after[k]}"
