"""StatefulSets and local-path PersistentVolumes on a real 2-node cluster, driven with the
real kubectl: ordered start, stable DNS names through a headless Service (checked from a
busybox pod), a volume per pod that survives the pod, ordered scale-down, a partitioned
rolling update, and a plain claim whose volume and directory go away with it.

The web pods only turn Ready once ``/www/ready`` exists on their own volume; the test
creates it through ``kubectl exec``, so the order is driven, not raced — and a pod that
comes back on its old volume is Ready at once, which is itself proof the data survived.
"""
from __future__ import annotations

import json
import os
import textwrap
import time

import pytest

from .conftest import start_cluster, stop_cluster

pytestmark = pytest.mark.integration

WEB = """\
    apiVersion: v1
    kind: Service
    metadata: {name: nginx, labels: {app: nginx}}
    spec:
      clusterIP: None
      selector: {app: nginx}
      ports: [{port: 80, name: web}]
    ---
    apiVersion: apps/v1
    kind: StatefulSet
    metadata: {name: web}
    spec:
      serviceName: nginx
      replicas: 3
      selector: {matchLabels: {app: nginx}}
      template:
        metadata: {labels: {app: nginx}}
        spec:
          terminationGracePeriodSeconds: 1
          containers:
          - name: web
            image: busybox
            command: [sh, -c, "exec httpd -f -p 80 -h /www"]
            ports: [{containerPort: 80, name: web}]
            readinessProbe:
              exec: {command: [test, -f, /www/ready]}
              periodSeconds: 1
            volumeMounts: [{name: www, mountPath: /www}]
      volumeClaimTemplates:
      - metadata: {name: www}
        spec:
          accessModes: [ReadWriteOnce]
          resources: {requests: {storage: 10Mi}}
    """

CLAIM = """\
    apiVersion: v1
    kind: PersistentVolumeClaim
    metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 5Mi}}
    ---
    apiVersion: v1
    kind: Pod
    metadata: {name: writer}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: busybox
        command: [sh, -c, "echo written-by-writer > /data/file && exec sleep 3600"]
        volumeMounts: [{name: d, mountPath: /data}]
      volumes:
      - name: d
        persistentVolumeClaim: {claimName: data}
    """


def apply(c, text: str) -> None:
    c.kubectl("apply", "-f", "-", input=textwrap.dedent(text))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = start_cluster(tmp_path_factory, nodes=2)
    try:
        c.kubectl("run", "client", "--image=busybox", "--restart=Never", "--", "sleep", "3600")
        yield c
    finally:
        stop_cluster(c)


def pods(c) -> dict[str, dict]:
    return {p["metadata"]["name"]: p for p in c.kjson("get", "pods", "-l", "app=nginx")["items"]}


def ready(p: dict) -> bool:
    return any(x["type"] == "Ready" and x["status"] == "True" for x in p["status"].get("conditions") or [])


def running(c, name: str) -> dict | None:
    p = pods(c).get(name)
    return p if p and p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp") else None


def sts_status(c) -> dict:
    return c.kjson("get", "sts", "web").get("status") or {}


def test_default_storage_class(cluster):
    out = cluster.kubectl("get", "storageclass").stdout.splitlines()
    assert out[0].split() == ["NAME", "PROVISIONER", "RECLAIMPOLICY", "VOLUMEBINDINGMODE", "ALLOWVOLUMEEXPANSION", "AGE"]
    assert out[1].split()[:5] == ["local-path", "(default)", "nanokube.io/local-path", "Delete", "WaitForFirstConsumer"]


def test_statefulset_ordered_dns_and_stable_volumes(cluster):
    c = cluster
    apply(c, WEB)
    # OrderedReady: web-1 is not created while web-0 is not Ready, and so on.
    for i in range(3):
        c.wait_for(f"web-{i} running", lambda: running(c, f"web-{i}"), timeout=90)
        time.sleep(3)  # give the controller every chance to (wrongly) go ahead
        assert sorted(pods(c)) == [f"web-{j}" for j in range(i + 1)]
        c.kubectl("exec", f"web-{i}", "--", "touch", "/www/ready")
        c.wait_for(f"web-{i} ready", lambda: ready(pods(c)[f"web-{i}"]))
    c.kubectl("rollout", "status", "sts/web", "--timeout=60s")
    assert c.kubectl("get", "sts", "web").stdout.split()[3:5] == ["web", "3/3"]
    ps = pods(c)
    created = [ps[f"web-{i}"]["metadata"]["creationTimestamp"] for i in range(3)]
    assert created == sorted(created)
    for i in range(3):
        p = ps[f"web-{i}"]
        assert p["spec"]["hostname"] == f"web-{i}" and p["spec"]["subdomain"] == "nginx"
        assert p["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] == f"web-{i}"
        assert p["metadata"]["labels"]["apps.kubernetes.io/pod-index"] == str(i)

    # Stable DNS names through the headless Service, resolved from a busybox pod.
    c.kubectl("wait", "--for=condition=Ready", "pod/client", "--timeout=60s")
    for i in range(3):
        ip = ps[f"web-{i}"]["status"]["podIP"]

        def resolves() -> bool:
            r = c.kubectl("exec", "client", "--", "nslookup", f"web-{i}.nginx.default.svc.cluster.local", check=False)
            return r.returncode == 0 and ip in r.stdout.split("Name:", 1)[-1]
        c.wait_for(f"DNS for web-{i}", resolves)
    assert c.kubectl("exec", "web-2", "--", "hostname", "-f").stdout.strip() == "web-2.nginx.default.svc.cluster.local"

    # One claim per pod, each bound to its own volume on the pod's node.
    claims = {x["metadata"]["name"]: x for x in c.kjson("get", "pvc")["items"]}
    vols = set()
    for i in range(3):
        cl = claims[f"www-web-{i}"]
        assert cl["status"]["phase"] == "Bound" and cl["spec"]["storageClassName"] == "local-path"
        pv = c.kjson("get", "pv", cl["spec"]["volumeName"])
        assert pv["status"]["phase"] == "Bound" and pv["spec"]["claimRef"]["name"] == f"www-web-{i}"
        node = ps[f"web-{i}"]["spec"]["nodeName"]
        assert pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == [node]
        assert f"/{node}/" in pv["spec"]["hostPath"]["path"]
        vols.add(pv["metadata"]["name"])
    assert len(vols) == 3

    # Data written in web-1's volume outlives the pod: same name, same node, same file.
    c.kubectl("exec", "web-1", "--", "sh", "-c", "echo kept-across-restarts > /www/index.html")
    old = ps["web-1"]
    c.kubectl("delete", "pod", "web-1")
    new = c.wait_for("web-1 back", lambda: (p := pods(c).get("web-1")) and p["metadata"]["uid"] != old["metadata"]["uid"]
                     and ready(p) and p, timeout=90)
    assert new["spec"]["nodeName"] == old["spec"]["nodeName"]
    assert c.kubectl("exec", "web-1", "--", "cat", "/www/index.html").stdout.strip() == "kept-across-restarts"
    served = c.wait_for("web-1 served over its DNS name", lambda: c.kubectl(
        "exec", "client", "--", "sh", "-c", "timeout 5 wget -qO- http://web-1.nginx/", check=False).stdout.strip())
    assert served == "kept-across-restarts"

    # Scale down to 1: web-2 goes before web-1; the claims stay; scaling up reuses them.
    c.kubectl("scale", "sts", "web", "--replicas=1")
    seen = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        names = sorted(n for n, p in pods(c).items())
        seen.append(names)
        assert not ("web-2" in names and "web-1" not in names), seen
        if names == ["web-0"]:
            break
        time.sleep(0.3)
    assert seen[-1] == ["web-0"], seen
    claims_after = {x["metadata"]["name"]: x["spec"]["volumeName"] for x in c.kjson("get", "pvc")["items"]
                    if x["metadata"]["name"].startswith("www-")}
    assert claims_after == {n: claims[n]["spec"]["volumeName"] for n in claims if n.startswith("www-")}
    c.kubectl("scale", "sts", "web", "--replicas=3")
    # Ready at once: /www/ready is still on the volumes web-1 and web-2 get back.
    c.wait_for("3 ready again", lambda: sts_status(c).get("readyReplicas") == 3, timeout=90)
    assert c.kubectl("exec", "web-1", "--", "cat", "/www/index.html").stdout.strip() == "kept-across-restarts"


def test_partitioned_rolling_update(cluster):
    c = cluster
    c.wait_for("web ready", lambda: sts_status(c).get("readyReplicas") == 3, timeout=90)
    before = sts_status(c)["currentRevision"]
    c.kubectl("patch", "sts", "web", "-p", json.dumps({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 2}}}}))
    c.kubectl("set", "env", "sts/web", "VERSION=2")
    out = c.kubectl("rollout", "status", "sts/web", "--timeout=90s").stdout
    assert "partitioned roll out complete: 1 new pods have been updated" in out
    st = sts_status(c)
    assert st["currentRevision"] == before != st["updateRevision"]
    assert (st["updatedReplicas"], st["currentReplicas"], st["readyReplicas"]) == (1, 2, 3)
    ps = pods(c)
    rev = {n: p["metadata"]["labels"]["controller-revision-hash"] for n, p in ps.items()}
    assert rev == {"web-0": before, "web-1": before, "web-2": st["updateRevision"]}
    env = {n: {e["name"]: e.get("value") for e in p["spec"]["containers"][0].get("env") or []} for n, p in ps.items()}
    assert env["web-2"] == {"VERSION": "2"} and env["web-0"] == {} and env["web-1"] == {}
    revisions = c.kubectl("get", "controllerrevisions", "-o", "name").stdout.split()
    assert sorted(revisions) == sorted(f"controllerrevision.apps/{r}" for r in (before, st["updateRevision"]))


def test_plain_claim_binds_and_is_reclaimed(cluster):
    c = cluster
    apply(c, CLAIM)
    c.kubectl("wait", "--for=condition=Ready", "pod/writer", "--timeout=90s")
    claim = c.kjson("get", "pvc", "data")
    assert claim["status"]["phase"] == "Bound" and claim["spec"]["storageClassName"] == "local-path"
    assert claim["status"]["capacity"] == {"storage": "5Mi"}
    row = c.kubectl("get", "pvc", "data").stdout.splitlines()[1].split()
    assert row[:6] == ["data", "Bound", claim["spec"]["volumeName"], "5Mi", "RWO", "local-path"]
    pv = c.kjson("get", "pv", claim["spec"]["volumeName"])
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
    path = pv["spec"]["hostPath"]["path"]
    node = c.kjson("get", "pod", "writer")["spec"]["nodeName"]
    # The data is on the node, in the directory the volume names (local clusters share one filesystem).
    assert c.host("cat", f"{path}/file", node=node).stdout.strip() == "written-by-writer"
    assert c.kubectl("exec", "writer", "--", "cat", "/data/file").stdout.strip() == "written-by-writer"
    # The claim is protected while the pod uses it.
    c.kubectl("delete", "pvc", "data", "--wait=false")
    time.sleep(2)
    assert c.kjson("get", "pvc", "data")["metadata"].get("deletionTimestamp")
    assert c.kjson("get", "pv", pv["metadata"]["name"])["status"]["phase"] == "Bound"
    c.kubectl("delete", "pod", "writer")
    c.wait_for("claim gone", lambda: c.kubectl("get", "pvc", "data", check=False).returncode != 0)
    c.wait_for("volume deleted", lambda: c.kubectl("get", "pv", pv["metadata"]["name"], check=False).returncode != 0)
    c.wait_for("directory removed", lambda: not os.path.exists(path))


def test_parallel_pod_management(cluster):
    c = cluster
    apply(c, """\
        apiVersion: apps/v1
        kind: StatefulSet
        metadata: {name: par}
        spec:
          serviceName: par
          replicas: 3
          podManagementPolicy: Parallel
          selector: {matchLabels: {app: par}}
          template:
            metadata: {labels: {app: par}}
            spec:
              terminationGracePeriodSeconds: 1
              containers:
              - name: c
                image: busybox
                command: [sleep, "3600"]
                readinessProbe: {exec: {command: ["false"]}, periodSeconds: 1}
        """)

    def all_running() -> list[str] | None:
        ps = c.kjson("get", "pods", "-l", "app=par")["items"]
        names = sorted(p["metadata"]["name"] for p in ps if p["status"].get("phase") == "Running")
        return names if len(names) == 3 else None
    # All three start although none ever turns Ready (OrderedReady would stop at par-0).
    assert c.wait_for("par pods running", all_running, timeout=90) == ["par-0", "par-1", "par-2"]
    assert sts_status_of(c, "par").get("readyReplicas", 0) == 0
    c.kubectl("delete", "sts", "par")
    c.wait_for("par pods gone", lambda: not c.kjson("get", "pods", "-l", "app=par")["items"], timeout=90)


def sts_status_of(c, name: str) -> dict:
    return c.kjson("get", "sts", name).get("status") or {}


def test_claim_of_unknown_class_keeps_pod_pending(cluster):
    c = cluster
    apply(c, """\
        apiVersion: v1
        kind: PersistentVolumeClaim
        metadata: {name: nowhere}
        spec:
          storageClassName: no-such-class
          accessModes: [ReadWriteOnce]
          resources: {requests: {storage: 1Mi}}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: waiter}
        spec:
          containers: [{name: c, image: busybox, command: [sleep, "3600"]}]
          volumes: [{name: d, persistentVolumeClaim: {claimName: nowhere}}]
        """)

    def unschedulable() -> str | None:
        p = c.kjson("get", "pod", "waiter")
        cond = next((x for x in p["status"].get("conditions") or [] if x["type"] == "PodScheduled"), None)
        return cond["message"] if cond and cond["status"] == "False" else None
    msg = c.wait_for("pod unschedulable", unschedulable)
    assert msg == ("0/2 nodes are available: 2 pod has unbound immediate PersistentVolumeClaims. "
                   "preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.")
    assert c.kjson("get", "pvc", "nowhere")["status"]["phase"] == "Pending"
    events = c.kubectl("get", "events", "--field-selector", "involvedObject.name=nowhere").stdout
    assert "ProvisioningFailed" in events and 'storageclass.storage.k8s.io "no-such-class" not found' in events
    c.kubectl("delete", "pod", "waiter", "--wait=false")
    c.kubectl("delete", "pvc", "nowhere")
