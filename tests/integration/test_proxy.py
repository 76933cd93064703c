"""The proxy subresources (pods/proxy, services/proxy, nodes/proxy) against a real cluster.

The "Learn Kubernetes Basics" flow exactly: ``kubectl proxy`` runs in the background in the
cluster's host-side namespace (ended by its pid), and curl there asks
``http://localhost:PORT/api/v1/namespaces/default/pods/$POD_NAME:8080/proxy/`` and
``.../services/web:80/proxy/``; plus ``kubectl get --raw`` through the apiserver directly.
Backends are busybox httpd pods on two nodes; a CGI script echoes what reached it, so the
method, query, body and headers forwarded (and the credentials not forwarded) are checked
from inside the pod. RBAC uses the HTTP method's verb on ``pods/proxy`` as upstream.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import textwrap
import time

import pytest

from .conftest import start_cluster, stop_cluster

APP = textwrap.dedent("""
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: web, labels: {app: web}}
    spec:
      replicas: 2
      selector: {matchLabels: {app: web}}
      template:
        metadata: {labels: {app: web}}
        spec:
          containers:
          - name: web
            image: busybox
            command: [sh, -c, 'mkdir -p /www && echo hello-from-$HOSTNAME > /www/index.html && exec httpd -f -p 8080 -h /www']
            ports: [{containerPort: 8080}]
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: web}
    spec:
      selector: {app: web}
      ports: [{port: 80, targetPort: 8080}]
    ---
    apiVersion: v1
    kind: Pod
    metadata: {name: echo}
    spec:
      containers:
      - name: echo
        image: busybox
        command: [sh, -c]
        args:
        - |
          mkdir -p /www/cgi-bin
          printf '#!/bin/sh\\nprintf "Content-Type: text/plain\\\\r\\\\nX-Backend: echo\\\\r\\\\n\\\\r\\\\n"\\n' > /www/cgi-bin/echo
          printf 'echo "method=$REQUEST_METHOD uri=$REQUEST_URI xtest=$HTTP_X_TEST auth=$HTTP_AUTHORIZATION"\\n' >> /www/cgi-bin/echo
          printf '[ -n "$CONTENT_LENGTH" ] && echo "body=$(head -c $CONTENT_LENGTH)"\\nexit 0\\n' >> /www/cgi-bin/echo
          printf '#!/bin/sh\\nprintf "Status: 302 Found\\\\r\\\\nLocation: /index.html\\\\r\\\\n\\\\r\\\\n"\\n' > /www/cgi-bin/moved
          chmod +x /www/cgi-bin/echo /www/cgi-bin/moved
          head -c 300000 /dev/urandom > /www/big
          echo hi > /www/index.html
          exec httpd -f -p 8080 -h /www
    ---
    apiVersion: rbac.authorization.k8s.io/v1
    kind: Role
    metadata: {name: proxy-reader}
    rules:
    - {apiGroups: [""], resources: [pods/proxy], verbs: [get]}
    ---
    apiVersion: rbac.authorization.k8s.io/v1
    kind: RoleBinding
    metadata: {name: proxy-reader}
    roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: proxy-reader}
    subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: paula}]
""")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = start_cluster(tmp_path_factory, nodes=2)
    try:
        c.kubectl("apply", "-f", "-", input=APP)
        c.kubectl("rollout", "status", "deployment/web", "--timeout=90s")
        c.kubectl("wait", "--for=condition=Ready", "pod/echo", "--timeout=60s")
        c.wait_for("endpoints of web", lambda: len((c.kjson("get", "endpoints", "web").get("subsets") or [{}])[0]
                                                   .get("addresses") or []) == 2)
        yield c
    finally:
        stop_cluster(c)


class KubectlProxy:
    """``kubectl proxy --port=0`` in the host-side namespace, in the background (own
    process group, ended by its id); the port is the one it reports."""

    def __init__(self, cluster):
        self.log = cluster.state_dir / f"proxy-{time.monotonic_ns()}.log"
        self.out = open(self.log, "w")
        self.proc = subprocess.Popen(cluster._base("kubectl") + ["--", "proxy", "--port=0"], stdout=self.out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        line = cluster.wait_for("kubectl proxy to listen",
                                lambda: re.search(r"Starting to serve on 127\.0\.0\.1:(\d+)", self.log.read_text()),
                                timeout=30)
        self.port = int(line[1])

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)
        self.out.close()


def curl(cluster, url: str, *args: str) -> subprocess.CompletedProcess:
    """curl in the cluster's host-side namespace (loopback only)."""
    return cluster.host("curl", "-sS", "--max-time", "20", *args, url, timeout=40)


def web_pods(cluster) -> dict[str, str]:
    pods = cluster.kjson("get", "pods", "-l", "app=web")["items"]
    return {p["metadata"]["name"]: p["spec"]["nodeName"] for p in pods}


def test_tutorial_kubectl_proxy_and_curl(cluster):
    pods = web_pods(cluster)
    proxy = KubectlProxy(cluster)
    try:
        base = f"http://localhost:{proxy.port}"
        assert json.loads(curl(cluster, f"{base}/version").stdout)["major"] == "1"
        for name in pods:  # each pod, whichever node it runs on
            r = curl(cluster, f"{base}/api/v1/namespaces/default/pods/{name}:8080/proxy/")
            assert r.returncode == 0 and r.stdout == f"hello-from-{name}\n", r.stderr
        seen = set()
        for _ in range(12):
            r = curl(cluster, f"{base}/api/v1/namespaces/default/services/web:80/proxy/")
            assert r.returncode == 0, r.stderr
            seen.add(r.stdout)
        assert seen <= {f"hello-from-{n}\n" for n in pods} and seen
        # the same with the service port left out (its only port) and with the http: scheme
        assert curl(cluster, f"{base}/api/v1/namespaces/default/services/http:web:/proxy/index.html").stdout \
            in {f"hello-from-{n}\n" for n in pods}
        assert curl(cluster, f"{base}/api/v1/namespaces/default/services/web/proxy/").stdout \
            in {f"hello-from-{n}\n" for n in pods}
        # a big body streams through intact
        want = cluster.kubectl("exec", "echo", "--", "md5sum", "/www/big").stdout.split()[0]
        r = cluster.host("sh", "-c", f"curl -sS --max-time 30 {base}/api/v1/namespaces/default/pods/echo:8080/proxy/big"
                                     " | md5sum", timeout=60)
        assert r.stdout.split()[0] == want, r.stderr
    finally:
        proxy.stop()


def test_request_is_forwarded_and_credentials_are_not(cluster):
    proxy = KubectlProxy(cluster)
    try:
        url = f"http://localhost:{proxy.port}/api/v1/namespaces/default/pods/echo:8080/proxy/cgi-bin/echo?a=1&b=two"
        r = curl(cluster, url, "-i", "-X", "POST", "--data-binary", "payload-123", "-H", "X-Test: yes")
        assert r.returncode == 0, r.stderr
        head, _, body = r.stdout.partition("\n\n")  # (text mode: CRLF read as LF)
        assert head.startswith("HTTP/1.1 200")
        assert "X-Backend: echo" in head  # the backend's own headers come back
        # kubectl proxy sent its bearer token to the apiserver; the pod never sees it
        assert "method=POST uri=/cgi-bin/echo?a=1&b=two xtest=yes auth=\n" in body
        assert "body=payload-123" in body
        # a redirect to an absolute path on the backend stays under the proxy path
        r = curl(cluster, f"http://localhost:{proxy.port}/api/v1/namespaces/default/pods/echo:8080/proxy/cgi-bin/moved",
                 "-i")
        assert "Location: /api/v1/namespaces/default/pods/echo:8080/proxy/index.html" in r.stdout, r.stdout
        # the bare .../proxy redirects to .../proxy/, as upstream
        r = curl(cluster, f"http://localhost:{proxy.port}/api/v1/namespaces/default/pods/echo:8080/proxy", "-i", "-L")
        assert r.stdout.startswith("HTTP/1.1 301") and r.stdout.rstrip().endswith("hi"), r.stdout
    finally:
        proxy.stop()


def test_get_raw_through_the_apiserver(cluster):
    pods = web_pods(cluster)
    out = cluster.kubectl("get", "--raw", "/api/v1/namespaces/default/services/web:80/proxy/").stdout
    assert out in {f"hello-from-{n}\n" for n in pods}
    assert cluster.kubectl("get", "--raw", "/api/v1/nodes/node1/proxy/healthz").stdout == "ok"
    summary = json.loads(cluster.kubectl("get", "--raw", "/api/v1/nodes/node2/proxy/stats/summary").stdout)
    assert summary["node"]["nodeName"] == "node2"
    subs = {r["name"]: r for r in json.loads(cluster.kubectl("get", "--raw", "/api/v1").stdout)["resources"]}
    for name, kind in (("pods/proxy", "PodProxyOptions"), ("services/proxy", "ServiceProxyOptions"),
                       ("nodes/proxy", "NodeProxyOptions")):
        assert subs[name]["kind"] == kind and "get" in subs[name]["verbs"] and "create" in subs[name]["verbs"]


def test_errors_are_statuses(cluster):
    r = cluster.kubectl("get", "--raw", "/api/v1/namespaces/default/services/web:81/proxy/", check=False)
    assert r.returncode == 1 and 'no service port 81 found for service "web"' in r.stderr
    r = cluster.kubectl("get", "--raw", "/api/v1/namespaces/default/pods/echo:9999/proxy/", check=False)
    assert r.returncode == 1 and "error trying to reach service" in r.stderr and "connection refused" in r.stderr
    r = cluster.kubectl("get", "--raw", "/api/v1/namespaces/default/pods/nosuch:8080/proxy/", check=False)
    assert r.returncode == 1 and "NotFound" in r.stderr and '"nosuch" not found' in r.stderr
    cluster.kubectl("create", "service", "clusterip", "empty", "--tcp=80:8080")
    r = cluster.kubectl("get", "--raw", "/api/v1/namespaces/default/services/empty:80/proxy/", check=False)
    assert r.returncode == 1 and 'no endpoints available for service "empty"' in r.stderr
    r = cluster.kubectl("get", "--raw", "/api/v1/namespaces/default/services/https:web:80/proxy/", check=False)
    assert r.returncode == 1 and "ServiceUnavailable" in r.stderr


def test_rbac_uses_the_http_verb(cluster):
    path = "/api/v1/namespaces/default/pods/echo:8080/proxy/cgi-bin/echo"
    r = cluster.kubectl("get", "--raw", path, "--as=paula")
    assert "method=GET" in r.stdout
    assert cluster.kubectl("auth", "can-i", "get", "pods", "--subresource=proxy", "--as=paula").stdout.strip() == "yes"
    body = cluster.state_dir / "body.json"
    body.write_text("{}")
    r = cluster.kubectl("create", "--raw", path, "-f", str(body), "--as=paula", check=False)
    assert r.returncode == 1
    assert 'User "paula" cannot create resource "pods/proxy" in API group "" in the namespace "default"' in r.stderr
    r = cluster.kubectl("get", "--raw", "/api/v1/namespaces/default/services/web:80/proxy/", "--as=paula", check=False)
    assert r.returncode == 1 and 'cannot get resource "services/proxy"' in r.stderr
