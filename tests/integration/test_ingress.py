"""The ingress controller end to end on a real 2-node cluster, driven with kubectl.

Two busybox ``httpd`` Deployments (``alpha`` and ``beta``, serving distinct text) behind
Services, exposed by Ingresses of the default class (``nginx``, created by the server). Every
request goes from the cluster's host side to a node IP's port 80/443, where that node's
nginx (run by its agent) proxies to pod IPs: routing by host and by path on every node,
``rewrite-target`` with capture groups, TLS from a ``kubernetes.io/tls`` Secret chosen by
SNI (checked by the certificate's fingerprint) with the HTTP → HTTPS redirect, 404 for an
unknown host, ``kubectl get ingress`` showing both node IPs as ADDRESS, and a rolling update
of a backend under a client loop that must see zero failed requests. ``nanokube down``
must leave no nginx behind.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from .conftest import start_cluster, stop_cluster

pytestmark = pytest.mark.integration
NODE_IPS = ["172.30.0.11", "172.30.0.12"]


def serve(name: str) -> str:
    # "/" answers "<name> <hostname> <version>", and /<name>/ the same, so path routing shows
    return (f'mkdir -p /www/{name} && echo "{name} $(hostname) $VERSION" > /www/index.html && '
            f'cp /www/index.html /www/{name}/index.html && exec httpd -f -p 8080 -h /www')


def deployment(name: str) -> str:
    return textwrap.dedent(f"""
    apiVersion: apps/v1
    kind: Deployment
    metadata: {{name: {name}}}
    spec:
      replicas: 2
      strategy: {{type: RollingUpdate, rollingUpdate: {{maxSurge: 1, maxUnavailable: 0}}}}
      selector: {{matchLabels: {{app: {name}}}}}
      template:
        metadata: {{labels: {{app: {name}}}}}
        spec:
          terminationGracePeriodSeconds: 5
          containers:
          - name: web
            image: busybox
            imagePullPolicy: Never
            env: [{{name: VERSION, value: v1}}]
            command: ["sh", "-c", {json.dumps(serve(name))}]
            ports: [{{containerPort: 8080}}]
            readinessProbe: {{httpGet: {{path: /, port: 8080}}, periodSeconds: 1}}
    ---
    """)


APPS = deployment("alpha") + deployment("beta") + textwrap.dedent("""
apiVersion: v1
kind: Service
metadata: {name: alpha}
spec: {selector: {app: alpha}, ports: [{name: http, port: 80, targetPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: beta}
spec: {selector: {app: beta}, ports: [{port: 8000, targetPort: 8080}]}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec:
  rules:
  - host: a.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: alpha, port: {name: http}}}}
      - {path: /beta, pathType: Prefix, backend: {service: {name: beta, port: {number: 8000}}}}
  - host: b.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: beta, port: {number: 8000}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: rewrite
  annotations:
    nginx.ingress.kubernetes.io/use-regex: "true"
    nginx.ingress.kubernetes.io/rewrite-target: /$2
spec:
  ingressClassName: nginx
  rules:
  - host: r.example.com
    http:
      paths:
      - {path: /alpha(/|$)(.*), pathType: ImplementationSpecific, backend: {service: {name: alpha, port: {number: 80}}}}
""")

SECURE = textwrap.dedent("""
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: secure}
spec:
  ingressClassName: nginx
  tls: [{hosts: [secure.example.com], secretName: secure-tls}]
  rules:
  - host: secure.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: beta, port: {number: 8000}}}}
""")

# Run on the host side: one HTTPS request with SNI; prints the server certificate's sha256 and the body.
TLS_GET = textwrap.dedent("""
import hashlib, socket, ssl, sys
ip, name = sys.argv[1], sys.argv[2]
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
with socket.create_connection((ip, 443), timeout=5) as s, ctx.wrap_socket(s, server_hostname=name) as t:
    der = t.getpeercert(binary_form=True)
    t.sendall(f"GET / HTTP/1.1\\r\\nHost: {name}\\r\\nConnection: close\\r\\n\\r\\n".encode())
    data = b""
    while chunk := t.recv(65536):
        data += chunk
head, _, body = data.decode(errors="replace").partition("\\r\\n\\r\\n")
print(hashlib.sha256(der).hexdigest(), head.split("\\r\\n")[0].split()[1], body.strip())
""")

# Run on the host side: GET / with a Host header against the node IPs in turn, a new
# connection each time, until the stop file appears (bounded by a count); prints a summary.
LOOP = textwrap.dedent("""
import http.client, json, os, sys, time
ips, host, stop, limit = sys.argv[1].split(","), sys.argv[2], sys.argv[3], int(sys.argv[4])
ok, failed, seen, errors, i = 0, 0, {}, [], 0
while i < limit and not os.path.exists(stop):
    ip = ips[i % len(ips)]; i += 1
    try:
        c = http.client.HTTPConnection(ip, 80, timeout=5)
        c.request("GET", "/", headers={"Host": host, "Connection": "close"})
        r = c.getresponse(); body = r.read().decode().split(); c.close()
        if r.status == 200:
            ok += 1; seen[body[-1]] = seen.get(body[-1], 0) + 1
        else:
            failed += 1; errors.append(f"{ip}: HTTP {r.status}")
    except Exception as e:
        failed += 1; errors.append(f"{ip}: {e!r}")
    time.sleep(0.01)
print(json.dumps({"ok": ok, "failed": failed, "seen": seen, "errors": errors[:10]}))
""")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = start_cluster(tmp_path_factory, nodes=2)
    try:
        c.kubectl("apply", "-f", "-", input=APPS)
        c.wait_for("both deployments available", lambda: all(
            (c.kjson("get", "deploy", d).get("status") or {}).get("availableReplicas") == 2 for d in ("alpha", "beta")),
            timeout=90)
        yield c
    finally:
        r = stop_cluster(c)
        assert r.returncode == 0, r.stderr
        left = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _nginx_of(p, c)]
        assert not left, f"nginx left behind: {left}"


def _nginx_of(p: Path, c) -> bool:
    try:
        return b"nginx" in (p / "cmdline").read_bytes() and str(c.state_dir / c.name).encode() in (p / "cmdline").read_bytes()
    except OSError:
        return False


def get(c, ip: str, host: str, path: str = "/") -> str:
    r = c.host("busybox", "timeout", "5", "busybox", "wget", "-qO-", "--header", f"Host: {host}", f"http://{ip}{path}")
    return r.stdout.strip() if r.returncode == 0 else f"ERR {r.stderr.strip()}"


def test_default_class_exists(cluster):
    out = cluster.kubectl("get", "ingressclass").stdout
    assert "nginx" in out and "k8s.io/ingress-nginx" in out
    ic = cluster.kjson("get", "ingressclass", "nginx")
    assert ic["metadata"]["annotations"]["ingressclass.kubernetes.io/is-default-class"] == "true"


def test_routes_by_host_and_path_on_every_node(cluster):
    for ip in NODE_IPS:
        cluster.wait_for(f"a.example.com via {ip}", lambda: get(cluster, ip, "a.example.com").startswith("alpha "))
        assert get(cluster, ip, "b.example.com").startswith("beta ")
        assert get(cluster, ip, "a.example.com", "/beta/").startswith("beta ")   # path rule
        assert get(cluster, ip, "a.example.com", "/alpha/").startswith("alpha ")  # falls to "/"
    # both replicas of a backend get traffic (nginx balances over the pod IPs)
    seen = {get(cluster, NODE_IPS[i % 2], "b.example.com").split()[1] for i in range(12)}
    assert len(seen) == 2, seen


def test_rewrite_target_strips_the_prefix(cluster):
    # /alpha/beta/ is rewritten to /beta/, which alpha does not have; /alpha/alpha/ → /alpha/, which it has
    cluster.wait_for("rewrite", lambda: get(cluster, NODE_IPS[1], "r.example.com", "/alpha/alpha/").startswith("alpha "))
    assert get(cluster, NODE_IPS[0], "r.example.com", "/alpha").startswith("alpha ")
    assert "404" in get(cluster, NODE_IPS[0], "r.example.com", "/alpha/beta/")
    assert "404" in get(cluster, NODE_IPS[0], "r.example.com", "/alphabet")


def test_unknown_host_gets_404(cluster):
    for ip in NODE_IPS:
        assert "404" in get(cluster, ip, "nobody.example.com")


def test_address_shows_every_node(cluster):
    cluster.wait_for("ingress status", lambda: [i.get("ip") for i in (cluster.kjson("get", "ingress", "web")
                     .get("status") or {}).get("loadBalancer", {}).get("ingress", [])] == NODE_IPS)
    out = cluster.kubectl("get", "ingress", "web").stdout.splitlines()
    assert out[0].split() == ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"]
    # "web" names no class: admission gave it the default one
    assert out[1].split()[1:5] == ["nginx", "a.example.com,b.example.com", ",".join(NODE_IPS), "80"]


def test_bad_ingress_is_rejected(cluster):
    bad = textwrap.dedent("""
    apiVersion: networking.k8s.io/v1
    kind: Ingress
    metadata: {name: bad}
    spec:
      rules:
      - host: 10.1.2.3
        http:
          paths:
          - {path: relative, pathType: Prefix, backend: {service: {name: alpha, port: {number: 80}}}}
    """)
    r = cluster.kubectl("apply", "-f", "-", input=bad, check=False)
    assert r.returncode != 0
    assert 'The Ingress "bad" is invalid' in r.stderr
    assert 'spec.rules[0].host: Invalid value: "10.1.2.3": must be a DNS name, not an IP address' in r.stderr
    assert 'spec.rules[0].http.paths[0].path: Invalid value: "relative": must be an absolute path' in r.stderr


def test_backend_without_endpoints_is_503_then_served(cluster):
    cluster.kubectl("create", "service", "clusterip", "gamma", "--tcp=80:8080")
    cluster.kubectl("create", "ingress", "gamma", "--rule=g.example.com/*=gamma:80")
    cluster.wait_for("503 for gamma", lambda: "503" in get(cluster, NODE_IPS[0], "g.example.com"))
    # pods appear behind the Service: nginx is reloaded with their IPs
    cluster.kubectl("label", "pods", "-l", "app=beta", "app2=gamma")
    cluster.kubectl("patch", "service", "gamma", "--type", "json",
                    "-p", '[{"op": "replace", "path": "/spec/selector", "value": {"app2": "gamma"}}]')
    cluster.wait_for("gamma served", lambda: get(cluster, NODE_IPS[1], "g.example.com").startswith("beta "))


def test_tls_answers_with_the_secret_for_its_sni(cluster, tmp_path):
    crt, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(crt), "-days", "1", "-subj", "/CN=secure.example.com",
                    "-addext", "subjectAltName=DNS:secure.example.com"], check=True, capture_output=True)
    der = subprocess.run(["openssl", "x509", "-in", str(crt), "-outform", "der"], check=True, capture_output=True).stdout
    want = hashlib.sha256(der).hexdigest()
    cluster.kubectl("create", "secret", "tls", "secure-tls", "--cert", str(crt), "--key", str(key))
    cluster.kubectl("apply", "-f", "-", input=SECURE)

    def tls(ip: str, name: str) -> list[str]:
        r = cluster.host(sys.executable, "-c", TLS_GET, ip, name)
        assert r.returncode == 0, r.stderr
        return r.stdout.split(maxsplit=2)

    for ip in NODE_IPS:
        fp, status, body = cluster.wait_for(f"TLS on {ip}", lambda: (t := tls(ip, "secure.example.com"))[0] == want and t)
        assert status == "200" and body.startswith("beta ")
        # another name gets the controller's default certificate (and a 404)
        other = tls(ip, "nobody.example.com")
        assert other[0] != want and other[1] == "404"
    # plain HTTP to a TLS host is redirected (ssl-redirect defaults to true)
    r = cluster.host("busybox", "timeout", "5", "busybox", "wget", "-S", "-O", "/dev/null", "--header",
                     "Host: secure.example.com", f"http://{NODE_IPS[0]}/")
    assert "308" in r.stderr


def test_rolling_update_drops_no_requests(cluster, tmp_path):
    stop = tmp_path / "stop"
    argv = [sys.executable, "-m", "nanokube", "exec", "--cluster", cluster.name, "--state-dir", str(cluster.state_dir),
            "--", sys.executable, "-c", LOOP, ",".join(NODE_IPS), "a.example.com", str(stop), "6000"]
    loop = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2)
        cluster.kubectl("set", "env", "deploy/alpha", "VERSION=v2")
        cluster.kubectl("rollout", "status", "deploy/alpha", "--timeout=120s", timeout=150)
        cluster.wait_for("v2 through the ingress", lambda: all(
            get(cluster, ip, "a.example.com").endswith(" v2") for ip in NODE_IPS))
        time.sleep(1)
    finally:
        stop.touch()
        out, err = loop.communicate(timeout=60)
    res = json.loads(out.strip().splitlines()[-1])
    assert res["failed"] == 0, res
    assert res["seen"].get("v1") and res["seen"].get("v2"), res  # the loop spanned the update
