"""kubectl verbs a tutorial uses that other modules do not cover, with the real kubectl:
edit (an editor script that sed-edits the file; an invalid edit re-opens the editor with the
server's field errors and saves nothing), explain (upstream's field descriptions, --recursive),
diff (exit code 1 with a diff, 0 without, nothing written), apply --prune -l, replace and
replace --force, wait --for=jsonpath / --for=delete, get -w on pods, events, get all.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import textwrap
import time

import pytest


@pytest.fixture(scope="module")
def cluster(one_node_cluster):
    return one_node_cluster


def kubectl_env(cluster, *args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(cluster._base("kubectl") + ["--", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **env})


def editor(cluster, name: str, sed: str) -> tuple[str, dict[str, str]]:
    """An EDITOR that applies one sed expression and keeps a copy of every file it was given."""
    tmp = cluster.state_dir / f"edit-{name}"
    tmp.mkdir(exist_ok=True)
    script = tmp / "editor.sh"
    script.write_text(f'#!/bin/sh\ncat "$1" >> {tmp}/seen\necho "=====" >> {tmp}/seen\nsed -i "{sed}" "$1"\n')
    script.chmod(0o755)
    return str(tmp), {"EDITOR": str(script), "KUBE_EDITOR": str(script), "TMPDIR": str(tmp)}


def test_edit_saves_a_change(cluster):
    cluster.kubectl("create", "configmap", "ed", "--from-literal=color=blue")
    tmp, env = editor(cluster, "ok", "s/color: blue/color: green/")
    r = kubectl_env(cluster, "edit", "configmap", "ed", env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "configmap/ed edited"
    assert cluster.kjson("get", "configmap", "ed")["data"] == {"color": "green"}
    # the editor was given the live object, with kubectl's header
    seen = open(f"{tmp}/seen").read()
    assert "# Please edit the object below." in seen and "color: blue" in seen and "name: ed" in seen


def test_edit_that_fails_validation_shows_the_error(cluster):
    cluster.kubectl("create", "deployment", "edd", "--image=busybox", "--", "sleep", "3600")
    before = cluster.kjson("get", "deployment", "edd")["metadata"]["resourceVersion"]
    tmp, env = editor(cluster, "bad", "s/replicas: 1$/replicas: -3/")
    r = kubectl_env(cluster, "edit", "deployment", "edd", env=env)
    assert r.returncode == 1
    assert 'error: deployments.apps "edd" is invalid' in r.stderr, r.stderr
    assert "Edit cancelled, no valid changes were saved." in r.stderr
    # kubectl re-opened the editor with the server's field error in the header
    copies = open(f"{tmp}/seen").read().split("=====\n")
    assert len(copies) >= 2
    assert '# deployments.apps "edd" was not valid:' in copies[1]
    assert "# * spec.replicas: Invalid value: -3: must be greater than or equal to 0" in copies[1]
    after = cluster.kjson("get", "deployment", "edd")
    assert after["spec"]["replicas"] == 1 and after["metadata"]["resourceVersion"] == before
    cluster.kubectl("delete", "deployment", "edd")


def test_explain(cluster):
    out = cluster.kubectl("explain", "deployment.spec.replicas").stdout
    assert "KIND:       Deployment" in out and "FIELD: replicas <integer>" in out
    assert ("Number of desired pods. This is a pointer to distinguish between explicit\n"
            "    zero and not specified. Defaults to 1.") in out
    rec = cluster.kubectl("explain", "pods", "--recursive").stdout
    lines = rec.splitlines()
    assert "KIND:       Pod" in rec and len(lines) > 500
    assert "  spec\t<PodSpec>" in lines and "    containers\t<[]Container> -required-" in lines
    assert any(l.strip() == "livenessProbe\t<Probe>" for l in lines)
    out = cluster.kubectl("explain", "pod.spec.restartPolicy").stdout
    assert "Restart policy for all containers within the pod." in out


CM = textwrap.dedent("""
    apiVersion: v1
    kind: ConfigMap
    metadata: {name: dcm}
    data: {k: v1}
""")


def test_diff_exit_codes(cluster, tmp_path):
    f = tmp_path / "cm.yaml"
    f.write_text(CM)
    r = cluster.kubectl("diff", "-f", str(f), check=False)
    assert r.returncode == 1 and "+  k: v1" in r.stdout, r.stderr
    assert cluster.kubectl("get", "configmap", "dcm", check=False).returncode == 1  # a dry run: nothing stored
    cluster.kubectl("apply", "-f", str(f))
    r = cluster.kubectl("diff", "-f", str(f), check=False)
    assert r.returncode == 0 and r.stdout == "", r.stdout + r.stderr
    f.write_text(CM.replace("k: v1", "k: v2"))
    r = cluster.kubectl("diff", "-f", str(f), check=False)
    assert r.returncode == 1 and "-  k: v1" in r.stdout and "+  k: v2" in r.stdout
    assert cluster.kjson("get", "configmap", "dcm")["data"] == {"k": "v1"}
    r = cluster.kubectl("diff", "-f", "-", input="apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Bad_Name}\n",
                        check=False)
    assert r.returncode > 1 and "Invalid value" in r.stderr  # an error is neither 0 nor 1


def test_apply_prune_deletes_what_left_the_file(cluster, tmp_path):
    two = "".join(f"---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: p{i}, labels: {{app: prunex}}}}\n"
                  f"data: {{k: v}}\n" for i in (1, 2))
    keep = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bystander, labels: {app: other}}\n"
    cluster.kubectl("apply", "-f", "-", input=keep)
    f = tmp_path / "p.yaml"
    f.write_text(two)
    out = cluster.kubectl("apply", "-f", str(f), "--prune", "-l", "app=prunex").stdout
    assert "configmap/p1 created" in out and "configmap/p2 created" in out
    f.write_text(two.split("---\n")[1])
    out = cluster.kubectl("apply", "-f", str(f), "--prune", "-l", "app=prunex").stdout
    assert "configmap/p1 unchanged" in out and "configmap/p2 pruned" in out
    names = cluster.kubectl("get", "configmaps", "-o", "name").stdout.split()
    assert "configmap/p1" in names and "configmap/p2" not in names and "configmap/bystander" in names


POD = textwrap.dedent("""
    apiVersion: v1
    kind: Pod
    metadata: {name: rp, labels: {app: rp}}
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{name: main, image: busybox, command: [sleep, "3600"]}]
""")


def test_replace_force_and_wait(cluster, tmp_path):
    f = tmp_path / "pod.yaml"
    f.write_text(POD)
    cluster.kubectl("apply", "-f", str(f))
    r = cluster.kubectl("wait", "--for=jsonpath={.status.phase}=Running", "pod/rp", "--timeout=60s")
    assert r.stdout.strip() == "pod/rp condition met"
    uid = cluster.kjson("get", "pod", "rp")["metadata"]["uid"]
    f.write_text(POD.replace('"3600"', '"3601"'))
    r = cluster.kubectl("replace", "-f", str(f), check=False)  # a pod's command is immutable
    assert r.returncode == 1 and "pod updates may not change fields other than" in r.stderr
    r = cluster.kubectl("replace", "--force", "-f", str(f))
    assert 'pod "rp" deleted' in r.stdout and "pod/rp replaced" in r.stdout
    pod = cluster.kjson("get", "pod", "rp")
    assert pod["metadata"]["uid"] != uid and pod["spec"]["containers"][0]["command"] == ["sleep", "3601"]
    # a jsonpath condition that does not come true times out
    r = cluster.kubectl("wait", "--for=jsonpath={.metadata.labels.app}=other", "pod/rp", "--timeout=2s", check=False)
    assert r.returncode == 1 and "timed out waiting for the condition" in r.stderr
    # --for=delete: a finalizer holds the pod until the test lets it go, so the wait really waits
    cluster.kubectl("patch", "pod", "rp", "--type=merge", "-p", '{"metadata":{"finalizers":["example.com/hold"]}}')
    cluster.kubectl("delete", "pod", "rp", "--wait=false")
    w = subprocess.Popen(cluster._base("kubectl") + ["--", "wait", "--for=delete", "pod/rp", "--timeout=90s"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert cluster.kjson("get", "pod", "rp")["metadata"].get("deletionTimestamp")  # deleting, but held
        time.sleep(3)
        assert w.poll() is None  # kubectl is still waiting: the pod is still there
        cluster.kubectl("patch", "pod", "rp", "--type=json", "-p", '[{"op":"remove","path":"/metadata/finalizers"}]')
        out, err = w.communicate(timeout=60)
    finally:
        if w.poll() is None:
            os.killpg(w.pid, signal.SIGTERM)
            w.wait(timeout=10)
    assert w.returncode == 0 and out.strip() == "pod/rp condition met", err
    assert cluster.kubectl("get", "pod", "rp", check=False).returncode == 1


def test_get_watch_pods_then_killed(cluster):
    # The pod runs before the watch starts (a pod can be Running before a cold kubectl has
    # listed), so what the watch must show is deterministic: the pod, then its deletion.
    cluster.kubectl("run", "gw", "--image=busybox", "--labels=app=gw", "--", "sleep", "3600")
    cluster.kubectl("wait", "pod/gw", "--for=condition=Ready", "--timeout=60s")
    log = cluster.state_dir / "watch-pods.log"

    def shown(status: str):
        return lambda: any(l.split()[:1] == ["gw"] and l.split()[2:3] == [status] for l in log.read_text().splitlines())
    with open(log, "w") as out:
        w = subprocess.Popen(cluster._base("kubectl") + ["--", "get", "pods", "-l", "app=gw", "-w"], stdout=out,
                             stderr=subprocess.STDOUT, start_new_session=True)
        try:
            cluster.wait_for("the watch to list gw Running", shown("Running"), timeout=60)
            cluster.kubectl("delete", "pod", "gw", "--grace-period=1", "--wait=false")
            cluster.wait_for("the watch to show gw Terminating", shown("Terminating"), timeout=60)
            assert w.poll() is None  # still watching
        finally:
            os.killpg(w.pid, signal.SIGTERM)
            w.wait(timeout=10)
    lines = log.read_text().splitlines()
    assert lines[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert [l.split()[0] for l in lines[1:]] == ["gw"] * (len(lines) - 1)
    statuses = [l.split()[2] for l in lines[1:]]
    assert statuses[0] == "Running" and "Terminating" in statuses[1:]  # it saw the pod change, not only a list


def test_events_and_get_all(cluster):
    cluster.kubectl("create", "deployment", "evd", "--image=busybox", "--", "sleep", "3600")
    cluster.kubectl("rollout", "status", "deployment/evd", "--timeout=60s")
    pod = cluster.kjson("get", "pods", "-l", "app=evd")["items"][0]["metadata"]["name"]

    def has_started() -> str | None:
        out = cluster.kubectl("events", "--for", f"pod/{pod}").stdout
        return out if "Started" in out else None
    out = cluster.wait_for("events of the pod", has_started)
    lines = out.splitlines()
    assert lines[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert all(f"Pod/{pod}" in l for l in lines[1:]), out
    assert any("Scheduled" in l and f"Successfully assigned default/{pod} to node1" in l for l in lines)
    out = cluster.kubectl("events").stdout
    assert "ReplicaSet/evd-" in out and "SuccessfulCreate" in out and "Deployment/evd" in out
    cluster.kubectl("run", "badimg", "--image=nosuchimage:1")
    out = cluster.wait_for("a Warning event", lambda: "ErrImagePull" in (o := cluster.kubectl(
        "events", "--types=Warning").stdout) and o)
    rows = out.splitlines()[1:]
    assert rows and all(r.split()[1] == "Warning" for r in rows), out  # only warnings
    assert any('Failed to pull image "nosuchimage:1"' in r for r in rows)
    cluster.kubectl("delete", "pod", "badimg", "--grace-period=0", "--wait=false")
    ev = cluster.kjson("events", "--for", f"pod/{pod}")
    assert ev["kind"] == "EventList" and ev["items"]
    out = cluster.kubectl("get", "all").stdout
    for want in (f"pod/{pod}", "service/kubernetes", "deployment.apps/evd", "replicaset.apps/evd-"):
        assert want in out, out
    names = cluster.kubectl("get", "all", "-o", "name").stdout.split()
    assert "deployment.apps/evd" in names and not any(n.startswith("configmap/") for n in names)
    cluster.kubectl("delete", "deployment", "evd")


def test_cold_kubectl_discovers_with_two_requests(cluster, tmp_path):
    """Aggregated discovery (apidiscovery.k8s.io/v2): with an empty cache, kubectl learns every
    group, version and resource from GET /api and GET /apis alone, and api-resources is complete."""
    r = cluster.kubectl("api-resources", "--cache-dir", str(tmp_path / "cache"), "-v=6")
    urls = re.findall(r'verb="GET" url="https://[^/]+/([^"?]*)', r.stderr)  # kubectl's -v=6 request log
    paths = sorted(set(urls))
    assert paths == ["api", "apis"], r.stderr[-3000:]
    names = {l.split()[0] for l in r.stdout.splitlines()[1:]}
    assert {"pods", "deployments", "horizontalpodautoscalers", "nodes", "events", "leases"} <= names, names
    # and a pods subresource known only through the aggregated document works: kubectl drain's eviction check
    assert cluster.kubectl("api-resources", "--cache-dir", str(tmp_path / "cache"), "--api-group=policy").returncode == 0
