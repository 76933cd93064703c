"""Deployments end to end on a real 3-node cluster, driven only with kubectl.

A 4-replica busybox ``httpd`` Deployment (serving its hostname and version, with a
readiness probe) behind a ClusterIP Service is rolled with ``kubectl set image`` under
maxSurge 1 / maxUnavailable 0 while a client pod requests the Service every 50 ms: not one
request may fail. This needs the order upstream needs: a terminating pod leaves the
Endpoints at once (the endpoints controller drops pods with a deletionTimestamp), but
kube-proxy applies that asynchronously, so the pod keeps serving for a few seconds in a
``preStop: sleep`` — exactly what upstream users put in their manifests for the same reason.
Also: ``rollout status/history/undo [--to-revision]``, a bad image stalling the rollout
with ProgressDeadlineExceeded while the old pods keep serving, proportional scaling in the
middle of a stalled rollout, cascading deletion (background, orphan, foreground) and
namespace deletion.
"""
from __future__ import annotations

import json
import re
import subprocess
import textwrap
import time

import pytest

from .conftest import start_cluster, stop_cluster

pytestmark = pytest.mark.integration

SERVE = ('mkdir -p /www && echo "$(hostname) $VERSION" > /www/index.html && '
         'exec httpd -f -p 8080 -h /www')

WEB = textwrap.dedent(f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 4
  progressDeadlineSeconds: 600
  strategy:
    type: RollingUpdate
    rollingUpdate: {{maxSurge: 1, maxUnavailable: 0}}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 10
      containers:
      - name: web
        image: busybox:1
        imagePullPolicy: Never
        env: [{{name: VERSION, value: v1}}]
        command: ["sh", "-c", {json.dumps(SERVE)}]
        ports: [{{containerPort: 8080}}]
        readinessProbe:
          httpGet: {{path: /, port: 8080}}
          periodSeconds: 1
        lifecycle:
          preStop:
            exec: {{command: ["sleep", "3"]}}
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: client}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox
    command: ["sleep", "3600"]
""")

# Bounded: at most 6,000 requests (one per 50 ms) or until /tmp/stop appears.
LOOP = ('i=0; f=0; rm -f /tmp/stop /tmp/count; '
        'while [ ! -e /tmp/stop ] && [ $i -lt 6000 ]; do '
        'if ! timeout 2 wget -qO- http://{ip}/ >/dev/null 2>&1; then f=$((f+1)); echo "FAIL $i"; fi; '
        'i=$((i+1)); echo $i > /tmp/count; usleep 50000; done; echo "TOTAL $i FAILED $f"')


def small(name: str, *, ns: str = "default") -> str:
    return textwrap.dedent(f"""
    apiVersion: apps/v1
    kind: Deployment
    metadata: {{name: {name}, namespace: {ns}}}
    spec:
      replicas: 2
      selector: {{matchLabels: {{app: {name}}}}}
      template:
        metadata: {{labels: {{app: {name}}}}}
        spec:
          terminationGracePeriodSeconds: 2
          containers:
          - name: c
            image: busybox
            command: ["sleep", "3600"]
    """)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = start_cluster(tmp_path_factory, nodes=3)
    try:
        yield c
    finally:
        stop_cluster(c)


def _deploy(c, name: str = "web") -> dict:
    return c.kjson("get", "deploy", name)


def _cond(d: dict, typ: str) -> dict:
    return next((x for x in (d.get("status") or {}).get("conditions") or [] if x["type"] == typ), {})


def _images(c, selector: str) -> set[str]:
    pods = c.kjson("get", "pods", "-l", selector)["items"]
    return {p["spec"]["containers"][0]["image"] for p in pods if not p["metadata"].get("deletionTimestamp")}


def _rollout_ok(c, name: str = "web") -> subprocess.CompletedProcess:
    r = c.kubectl("rollout", "status", f"deploy/{name}", "--timeout=180s", check=False, timeout=200)
    assert r.returncode == 0, r.stderr + r.stdout + c.logs_tail()
    return r


@pytest.fixture(scope="module")
def web(cluster):
    c = cluster
    c.kubectl("apply", "-f", "-", input=WEB)
    _rollout_ok(c)
    c.wait_for("client running", lambda: c.kjson("get", "pod", "client")["status"].get("phase") == "Running", timeout=90)
    ip = c.kjson("get", "svc", "web")["spec"]["clusterIP"]
    c.wait_for("service answers", lambda: c.kubectl("exec", "client", "--", "timeout", "3", "wget", "-qO-",
                                                    f"http://{ip}/", check=False).returncode == 0, timeout=60)
    return ip


def test_rolling_update_drops_no_request_then_history_and_undo(cluster, web):
    c = cluster
    loop = subprocess.Popen(c._base("kubectl") + ["--", "exec", "client", "--", "sh", "-c", LOOP.format(ip=web)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Requests flow before the rollout starts.
        c.wait_for("loop running", lambda: c.kubectl("exec", "client", "--", "test", "-s", "/tmp/count",
                                                     check=False).returncode == 0, timeout=30, interval=0.2)
        before = {p["metadata"]["name"] for p in c.kjson("get", "pods", "-l", "app=web")["items"]}
        c.kubectl("set", "image", "deploy/web", "web=busybox:2")
        r = _rollout_ok(c)
        assert 'deployment "web" successfully rolled out' in r.stdout
        after = {p["metadata"]["name"] for p in c.kjson("get", "pods", "-l", "app=web")["items"]
                 if not p["metadata"].get("deletionTimestamp")}
        assert not (before & after), "every pod was replaced"
        # Keep requesting until every old pod has finished terminating.
        c.wait_for("old pods gone", lambda: not (before & {p["metadata"]["name"] for p in
                                                          c.kjson("get", "pods", "-l", "app=web")["items"]}), timeout=60)
    finally:
        c.kubectl("exec", "client", "--", "touch", "/tmp/stop", check=False)
        try:
            out, err = loop.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            loop.kill()
            out, err = loop.communicate()
    m = re.search(r"TOTAL (\d+) FAILED (\d+)", out)
    assert m, out + err
    total, failed = int(m.group(1)), int(m.group(2))
    print(f"rolling update: {total} requests, {failed} failed")
    assert total > 20 and failed == 0, out

    d = _deploy(c)
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    assert _cond(d, "Progressing")["reason"] == "NewReplicaSetAvailable"
    assert _cond(d, "Available")["reason"] == "MinimumReplicasAvailable"
    assert d["status"]["updatedReplicas"] == d["status"]["availableReplicas"] == 4
    rss = c.kjson("get", "rs", "-l", "app=web")["items"]
    assert sorted(r["spec"]["replicas"] for r in rss) == [0, 4]
    hist = c.kubectl("rollout", "history", "deploy/web").stdout
    assert re.search(r"^1\s", hist, re.M) and re.search(r"^2\s", hist, re.M), hist
    assert "busybox:2" in c.kubectl("rollout", "history", "deploy/web", "--revision=2").stdout

    c.kubectl("rollout", "undo", "deploy/web")
    _rollout_ok(c)
    c.wait_for("old image back", lambda: _images(c, "app=web") == {"busybox:1"}, timeout=60)
    assert _deploy(c)["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    hist = c.kubectl("rollout", "history", "deploy/web").stdout
    assert re.search(r"^2\s", hist, re.M) and re.search(r"^3\s", hist, re.M) and not re.search(r"^1\s", hist, re.M), hist

    c.kubectl("rollout", "undo", "deploy/web", "--to-revision=2")
    _rollout_ok(c)
    c.wait_for("revision 2's image", lambda: _images(c, "app=web") == {"busybox:2"}, timeout=60)
    assert _deploy(c)["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "4"
    r = c.kubectl("rollout", "undo", "deploy/web", "--to-revision=99", check=False)
    assert r.returncode != 0 and "99" in r.stderr


def test_bad_image_exceeds_progress_deadline_while_old_pods_serve(cluster, web):
    c = cluster
    c.kubectl("patch", "deploy/web", "-p", '{"spec": {"progressDeadlineSeconds": 10}}')
    c.kubectl("set", "image", "deploy/web", "web=nanokube-no-such-image:1")
    r = c.kubectl("rollout", "status", "deploy/web", "--timeout=120s", check=False, timeout=150)
    assert r.returncode != 0, r.stdout
    assert 'deployment "web" exceeded its progress deadline' in r.stderr, r.stderr + r.stdout
    d = _deploy(c)
    prog = _cond(d, "Progressing")
    assert (prog["status"], prog["reason"]) == ("False", "ProgressDeadlineExceeded")
    assert "has timed out progressing" in prog["message"]
    assert _cond(d, "Available")["status"] == "True"
    assert d["status"]["availableReplicas"] == 4 and d["status"].get("updatedReplicas") == 1
    # The old pods keep serving through the Service.
    for _ in range(5):
        out = c.kubectl("exec", "client", "--", "timeout", "3", "wget", "-qO-", f"http://{web}/").stdout
        assert out.strip()
    stuck = [p for p in c.kjson("get", "pods", "-l", "app=web")["items"]
             if p["spec"]["containers"][0]["image"] == "nanokube-no-such-image:1"]
    assert len(stuck) == 1
    waiting = (stuck[0]["status"].get("containerStatuses") or [{}])[0].get("state", {}).get("waiting", {})
    assert waiting.get("reason") == "ErrImageNeverPull", stuck[0]["status"]

    # Scaling in the middle of the stalled rollout spreads over both ReplicaSets as upstream:
    # 4 -> 8 (max 9 with surge 1): old 4*9/5 = 7.2 -> 7, new 1*9/5 = 1.8 -> 2.
    c.kubectl("scale", "deploy/web", "--replicas=8")

    def spread():
        rss = c.kjson("get", "rs", "-l", "app=web")["items"]
        by_image = {r["spec"]["template"]["spec"]["containers"][0]["image"]: r["spec"]["replicas"] for r in rss}
        return by_image if by_image.get("nanokube-no-such-image:1") == 2 and by_image.get("busybox:2") == 7 else None
    c.wait_for("proportional scale", spread, timeout=30)
    c.kubectl("scale", "deploy/web", "--replicas=4")
    c.kubectl("rollout", "undo", "deploy/web")
    _rollout_ok(c)
    d = _deploy(c)
    assert _cond(d, "Progressing")["reason"] == "NewReplicaSetAvailable"
    assert _images(c, "app=web") == {"busybox:2"}


def _gone(c, kind: str, selector: str, ns: str = "default") -> bool:
    return not [o for o in c.kjson("get", kind, "-n", ns, "-l", selector)["items"]]


def test_cascading_deletion(cluster):
    c = cluster
    # Background (the default): the ReplicaSet and the pods follow the Deployment.
    c.kubectl("apply", "-f", "-", input=small("bg"))
    _rollout_ok(c, "bg")
    c.kubectl("delete", "deploy", "bg")
    c.wait_for("bg dependents gone", lambda: _gone(c, "rs", "app=bg") and _gone(c, "pods", "app=bg"), timeout=90)

    # Orphan: the ReplicaSet and pods stay, the ReplicaSet loses its ownerReference.
    c.kubectl("apply", "-f", "-", input=small("orph"))
    _rollout_ok(c, "orph")
    pods = {p["metadata"]["name"] for p in c.kjson("get", "pods", "-l", "app=orph")["items"]}
    c.kubectl("delete", "deploy", "orph", "--cascade=orphan")
    assert c.kubectl("get", "deploy", "orph", check=False).returncode != 0
    rss = c.kjson("get", "rs", "-l", "app=orph")["items"]
    assert len(rss) == 1 and not rss[0]["metadata"].get("ownerReferences")
    time.sleep(5)  # give the garbage collector several sweeps to (wrongly) act
    assert {p["metadata"]["name"] for p in c.kjson("get", "pods", "-l", "app=orph")["items"]} == pods
    assert len(c.kjson("get", "rs", "-l", "app=orph")["items"]) == 1
    c.kubectl("delete", "rs", "-l", "app=orph")
    c.wait_for("orph pods gone", lambda: _gone(c, "pods", "app=orph"), timeout=90)

    # Foreground: the Deployment carries foregroundDeletion until its dependents are gone.
    c.kubectl("apply", "-f", "-", input=small("fg"))
    _rollout_ok(c, "fg")
    c.kubectl("delete", "deploy", "fg", "--cascade=foreground", "--wait=false")
    d = c.kjson("get", "deploy", "fg")
    assert d["metadata"].get("deletionTimestamp") and "foregroundDeletion" in d["metadata"].get("finalizers", [])

    def fg_state():
        r = c.kubectl("get", "deploy", "fg", "-o", "json", check=False)
        if r.returncode != 0:
            return "gone"
        # While the Deployment exists its finalizer stays; the dependents go first.
        assert "foregroundDeletion" in json.loads(r.stdout)["metadata"].get("finalizers", [])
        return None
    c.wait_for("fg deployment gone", fg_state, timeout=120)
    assert _gone(c, "rs", "app=fg") and _gone(c, "pods", "app=fg")


def test_namespace_deletion_removes_everything(cluster):
    c = cluster
    c.kubectl("create", "namespace", "doomed")
    c.kubectl("apply", "-f", "-", input=small("ns1", ns="doomed"))
    c.kubectl("create", "service", "clusterip", "ns1", "--tcp=80:8080", "-n", "doomed")
    c.kubectl("create", "configmap", "cm", "--from-literal=a=b", "-n", "doomed")
    r = c.kubectl("rollout", "status", "deploy/ns1", "-n", "doomed", "--timeout=120s", check=False, timeout=150)
    assert r.returncode == 0, r.stderr
    c.kubectl("delete", "namespace", "doomed", "--wait=false")
    assert c.kjson("get", "namespace", "doomed")["status"]["phase"] == "Terminating"
    r = c.kubectl("create", "configmap", "late", "--from-literal=a=b", "-n", "doomed", check=False)
    assert r.returncode != 0 and "being terminated" in r.stderr

    def gone():
        r = c.kubectl("get", "namespace", "doomed", check=False)
        return r.returncode != 0 and "NotFound" in r.stderr
    c.wait_for("namespace gone", gone, timeout=120)
    everything = c.kjson("get", "deploy,rs,pods,svc,cm", "-A")["items"]
    assert not [o for o in everything if o["metadata"].get("namespace") == "doomed"]
