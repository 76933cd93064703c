"""Benchmark the ingress controller: the data path and the config render.

1. Requests/s through the ingress (the node's nginx on 172.30.0.11:80, routed by Host
   header) vs directly to the same pod IP, from the host side of an isolated 1-node local
   cluster it starts and removes: a bounded loop of HTTP GETs from one Python client, a new
   connection each (what tutorials' curl does), best of a few alternating rounds, same run.
2. Rendering nginx.conf for N Ingresses (default 1,000, one host and two paths each, 3
   endpoints per backend): the pure ``ingress.render``, and ``nginx -t`` of the result.

Only the cluster's own namespaces see traffic (a route to the pod CIDR is added inside the
cluster's host-side namespace). Usage: python bench/bench_ingress.py [N]   (as root)
"""
from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

HTTP_LOOP = """
import http.client, sys, time
host, port, n, vhost = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
t = time.perf_counter()
for _ in range(n):
    c = http.client.HTTPConnection(host, port, timeout=5)
    c.request("GET", "/", headers={"Host": vhost})
    r = c.getresponse(); r.read(); c.close()
    assert r.status == 200, r.status
print(n / (time.perf_counter() - t))
"""

INGRESS = """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec:
  rules:
  - host: bench.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
"""


def datapath(rounds: int = 3, requests: int = 1500) -> None:
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    name, state = f"hgb{secrets.token_hex(2)}", f"/tmp/nk-hg-bench-{secrets.token_hex(3)}"
    nk = [sys.executable, "-m", "nanokube"]
    run = lambda *a, **kw: subprocess.run([*nk, *a], cwd=repo, capture_output=True, text=True, **kw)  # noqa: E731
    r = run("up", "--isolated", "--detach", "--nodes", "1", "--cluster", name, "--state-dir", state, "--timeout", "90")
    try:
        if r.returncode != 0:
            raise RuntimeError(r.stdout + r.stderr)
        kc = lambda *a, **kw: run("kubectl", "--cluster", name, "--state-dir", state, "--", *a, **kw)  # noqa: E731
        hx = lambda *a: run("exec", "--cluster", name, "--state-dir", state, "--", *a)  # noqa: E731
        kc("create", "deployment", "web", "--image=busybox", "--", "sh", "-c",
           "mkdir -p /www && echo hello > /www/index.html && exec httpd -f -p 8080 -h /www")
        kc("expose", "deployment", "web", "--port=80", "--target-port=8080")
        kc("apply", "-f", "-", input=INGRESS)
        pod_ip = ""
        for _ in range(120):
            pod_ip = kc("get", "pods", "-l", "app=web", "-o", "jsonpath={.items[0].status.podIP}").stdout.strip()
            if pod_ip and hx("busybox", "timeout", "3", "busybox", "wget", "-qO-", "--header", "Host: bench.example.com",
                             "http://172.30.0.11/").returncode == 0:
                break
            time.sleep(0.5)
        else:
            raise RuntimeError("ingress did not come up")
        # inside the cluster's own host-side namespace only: a route to the node's pods
        hx("ip", "route", "replace", pod_ip.rsplit(".", 1)[0] + ".0/24", "via", "172.30.0.11")
        best: dict[str, float] = {}
        for _ in range(rounds):
            for label, host, port in (("pod IP", pod_ip, "8080"), ("ingress", "172.30.0.11", "80")):
                out = hx(sys.executable, "-c", HTTP_LOOP, host, port, str(requests), "bench.example.com")
                if out.returncode != 0:
                    raise RuntimeError(out.stderr)
                best[label] = max(best.get(label, 0.0), float(out.stdout.strip()))
        print(f"requests/s from the host side, new connection each, {requests} requests x {rounds} rounds (best): "
              f"pod IP {best['pod IP']:.0f}/s, ingress {best['ingress']:.0f}/s, "
              f"ratio {best['ingress'] / best['pod IP']:.2f}")
    finally:
        run("down", "--cluster", name, "--state-dir", state)
        shutil.rmtree(state, ignore_errors=True)


def render_bench(n: int) -> None:
    from nanokube.network import ingress as ing
    svcs, eps, ings = [], [], []
    for i in range(n):
        svcs.append({"metadata": {"namespace": "b", "name": f"s{i}"}, "spec": {"ports": [{"name": "http", "port": 80}]}})
        eps.append({"metadata": {"namespace": "b", "name": f"s{i}"},
                    "subsets": [{"addresses": [{"ip": f"10.244.{j}.{i % 250 + 1}"} for j in range(3)],
                                 "ports": [{"name": "http", "port": 8080}]}]})
        ings.append({"metadata": {"namespace": "b", "name": f"i{i}", "creationTimestamp": "2026-01-01T00:00:00Z"},
                     "spec": {"ingressClassName": "nginx", "rules": [{"host": f"h{i}.example.com", "http": {"paths": [
                         {"path": p, "pathType": "Prefix", "backend": {"service": {"name": f"s{i}", "port": {"number": 80}}}}
                         for p in ("/", "/api")]}}]}})
    classes = [{"metadata": {"name": "nginx"}, "spec": {"controller": ing.CONTROLLER}}]
    with tempfile.TemporaryDirectory() as td:
        opts = ing.Options(listen=["127.0.0.1"], prefix=td, default_cert=f"{td}/default.pem")
        times = []
        for _ in range(3):
            t = time.perf_counter()
            r = ing.render(ings, svcs, eps, [], classes, opts)
            times.append(time.perf_counter() - t)
        print(f"render nginx.conf for {n} ingresses ({len(r.conf) // 1024} KiB): {min(times) * 1000:.1f} ms")
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        if os.access(nginx, os.X_OK):
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                            "-nodes", "-keyout", f"{td}/k", "-out", f"{td}/c", "-days", "1", "-subj", "/CN=x"],
                           check=True, capture_output=True)
            Path(f"{td}/default.pem").write_bytes(Path(f"{td}/c").read_bytes() + Path(f"{td}/k").read_bytes())
            Path(f"{td}/nginx.conf").write_text(r.conf)
            Path(f"{td}/tmp").mkdir()
            t = time.perf_counter()
            p = subprocess.run([nginx, "-t", "-q", "-c", f"{td}/nginx.conf", "-p", td, "-e", f"{td}/error.log"],
                               capture_output=True, text=True)
            print(f"nginx -t of it: {(time.perf_counter() - t) * 1000:.1f} ms ({'ok' if p.returncode == 0 else p.stderr})")


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    render_bench(int(args[0]) if args else 1000)
    datapath()


if __name__ == "__main__":
    main()
