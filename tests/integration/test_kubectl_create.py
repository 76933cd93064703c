"""kubectl's typed commands (create deployment/configmap/secret/namespace/service, run)
against a real cluster. Their request bodies are Kubernetes protobuf, decoded by
nanokube.api.protobuf; each test checks what `kubectl get -o json` returns afterwards. Also
kubectl's chunked LISTs (limit/continue)."""
from __future__ import annotations

import base64
import json
import subprocess

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(one_node_cluster):
    return one_node_cluster


def test_kubectl_sends_protobuf_bodies(cluster):
    r = cluster.kubectl("create", "configmap", "probe-ctype", "--from-literal=a=b", "-v=8")
    assert "Content-Type: application/vnd.kubernetes.protobuf" in r.stderr
    assert cluster.kjson("get", "configmap", "probe-ctype")["data"] == {"a": "b"}


def test_create_deployment_with_command_runs_pods(cluster):
    cluster.kubectl("create", "deployment", "web", "--image=busybox", "--replicas=2", "--", "sleep", "3600")
    d = cluster.kjson("get", "deploy", "web")
    assert d["spec"]["replicas"] == 2
    assert d["spec"]["selector"] == {"matchLabels": {"app": "web"}}
    [c] = d["spec"]["template"]["spec"]["containers"]
    assert c["image"] == "busybox" and c["command"] == ["sleep", "3600"]

    def running():
        pods = cluster.kjson("get", "pods", "-l", "app=web")["items"]
        return len(pods) == 2 and all(p["status"].get("phase") == "Running" for p in pods)
    cluster.wait_for("2 web pods Running", running, timeout=90)


def test_create_deployment_replicas_zero_is_kept(cluster):
    cluster.kubectl("create", "deployment", "idle", "--image=busybox", "--replicas=0")
    assert cluster.kjson("get", "deploy", "idle")["spec"]["replicas"] == 0
    assert cluster.kjson("get", "pods", "-l", "app=idle")["items"] == []


def test_create_deployment_invalid_name_is_422(cluster):
    r = cluster.kubectl("create", "deployment", "Bad_Name", "--image=busybox", check=False)
    assert r.returncode != 0
    assert 'Deployment.apps "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name"' in r.stderr


def test_create_configmaps(cluster, tmp_path):
    (tmp_path / "greeting.txt").write_text("hello\nworld\n")
    (tmp_path / "app.env").write_text("# settings\nMODE=fast\nNAME=a b\n")
    cluster.kubectl("create", "configmap", "lit", "--from-literal=a=1", "--from-literal=b=")
    cluster.kubectl("create", "configmap", "file", f"--from-file={tmp_path / 'greeting.txt'}",
                    f"--from-file=renamed={tmp_path / 'greeting.txt'}")
    cluster.kubectl("create", "configmap", "env", f"--from-env-file={tmp_path / 'app.env'}")
    assert cluster.kjson("get", "configmap", "lit")["data"] == {"a": "1", "b": ""}
    assert cluster.kjson("get", "configmap", "file")["data"] == {"greeting.txt": "hello\nworld\n",
                                                                  "renamed": "hello\nworld\n"}
    assert cluster.kjson("get", "configmap", "env")["data"] == {"MODE": "fast", "NAME": "a b"}


def test_create_secrets(cluster, tmp_path):
    cluster.kubectl("create", "secret", "generic", "creds", "--from-literal=user=admin",
                    "--from-literal=password=s3cr\u00e9t!")
    s = cluster.kjson("get", "secret", "creds")
    assert s["type"] == "Opaque"
    assert {k: base64.b64decode(v).decode() for k, v in s["data"].items()} == {"user": "admin",
                                                                                 "password": "s3cr\u00e9t!"}
    key, crt = tmp_path / "tls.key", tmp_path / "tls.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(crt),
                    "-days", "1", "-subj", "/CN=web.example"], check=True, capture_output=True)
    cluster.kubectl("create", "secret", "tls", "web-tls", f"--cert={crt}", f"--key={key}")
    t = cluster.kjson("get", "secret", "web-tls")
    assert t["type"] == "kubernetes.io/tls"
    assert base64.b64decode(t["data"]["tls.crt"]) == crt.read_bytes()
    assert base64.b64decode(t["data"]["tls.key"]) == key.read_bytes()


def test_create_namespace(cluster):
    cluster.kubectl("create", "namespace", "team-a")
    ns = cluster.kjson("get", "namespace", "team-a")
    assert ns["metadata"]["name"] == "team-a"
    assert ns["status"]["phase"] == "Active"
    cluster.kubectl("create", "configmap", "inside", "-n", "team-a", "--from-literal=k=v")
    assert cluster.kjson("get", "configmap", "inside", "-n", "team-a")["data"] == {"k": "v"}


def test_create_services(cluster):
    cluster.kubectl("create", "service", "clusterip", "cip", "--tcp=80:8080")
    cluster.kubectl("create", "service", "nodeport", "np", "--tcp=80:8080")
    cip = cluster.kjson("get", "service", "cip")["spec"]
    assert cip["type"] == "ClusterIP" and cip["selector"] == {"app": "cip"}
    assert [(p["name"], p["port"], p["targetPort"], p["protocol"]) for p in cip["ports"]] == [("80-8080", 80, 8080, "TCP")]
    assert cip["clusterIP"].startswith("10.")
    np = cluster.kjson("get", "service", "np")["spec"]
    assert np["type"] == "NodePort"
    [p] = np["ports"]
    assert (p["port"], p["targetPort"]) == (80, 8080) and 30000 <= p["nodePort"] <= 32767


def test_run_pod(cluster):
    cluster.kubectl("run", "solo", "--image=busybox", "--labels=tier=one", "--", "sleep", "3600")
    p = cluster.kjson("get", "pod", "solo")
    assert p["metadata"]["labels"] == {"tier": "one"}
    [c] = p["spec"]["containers"]
    assert c["name"] == "solo" and c["image"] == "busybox" and c["args"] == ["sleep", "3600"]
    cluster.wait_for("solo Running", lambda: cluster.kjson("get", "pod", "solo")["status"].get("phase") == "Running",
                     timeout=90)


def test_chunked_list(cluster):
    for i in range(5):
        cluster.kubectl("create", "configmap", f"chunk-{i}", "--from-literal=a=b")
    names = cluster.kubectl("get", "cm", "--chunk-size=2", "-o", "name").stdout.split()
    assert [n for n in names if "chunk-" in n] == [f"configmap/chunk-{i}" for i in range(5)]
    page = json.loads(cluster.kubectl("get", "--raw", "/api/v1/namespaces/default/configmaps?limit=2").stdout)
    assert len(page["items"]) == 2 and page["metadata"]["continue"] and page["metadata"]["remainingItemCount"] >= 3


def test_endpointslices_follow_services(cluster):
    cluster.kubectl("create", "deployment", "sliced", "--image=busybox", "--replicas=2", "--", "httpd", "-f", "-p", "8080")
    cluster.kubectl("expose", "deployment", "sliced", "--port=80", "--target-port=8080")

    def slice_ips():
        items = cluster.kjson("get", "endpointslices", "-l", "kubernetes.io/service-name=sliced")["items"]
        ips = sorted(a for s in items for e in s.get("endpoints") or [] if e["conditions"]["ready"] for a in e["addresses"])
        return ips if len(ips) == 2 else None
    ips = cluster.wait_for("a slice with both pods", slice_ips)
    pods = sorted(p["status"]["podIP"] for p in cluster.kjson("get", "pods", "-l", "app=sliced")["items"])
    assert ips == pods
    assert f"{ips[0]}:8080" in cluster.kubectl("describe", "service", "sliced").stdout
    cluster.kubectl("delete", "service", "sliced")
    cluster.wait_for("the slice to go", lambda: not cluster.kjson(
        "get", "endpointslices", "-l", "kubernetes.io/service-name=sliced")["items"])
