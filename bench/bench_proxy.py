"""Benchmark kube-proxy: sync cost and the data path.

1. Full sync of N services (default 1,000, x 5 endpoints, NodePort) into empty tables: the
   proxier (render + diff + one ``iptables-restore --noflush`` run) vs a bare restore of the
   same rules (one transaction) through the same backend, in the same run; for nft also the
   bare restore of the chunked text the proxier sends; then python-iptables for comparison
   (``--iptc``, legacy only). Also a restarted proxier's sync (re-read + render + empty diff).
2. One endpoint change at that scale -> rules live (the restore has committed: legacy, the
   restore process has exited; nft, the kernel has announced the commit of the restore's
   transaction, see nanokube/host/iptables.py): p50/p99 over many changes; and one service
   added or removed (KUBE-SERVICES and KUBE-NODEPORTS rewritten).
Parts 1-2 run once per iptables backend (``legacy`` and ``nft``; ``--backend legacy|nft`` for
one), each in a fresh network namespace of its own.
3. Requests/s through a NodePort vs directly to the pod IP, from the host side of an
   isolated 1-node local cluster (``--datapath``): a bounded loop of HTTP requests, new
   connection each, from one Python client; best of a few alternating rounds.

Parts 1-2 run in fresh network namespaces with random names (re-executing itself inside
them), deleted afterwards; part 3 in a cluster it starts and removes. The root namespace's
tables are never touched.
Usage: python bench/bench_proxy.py [N] [--backend legacy|nft] [--iptc] [--datapath]   (as root)
"""
from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def world(n: int, eps_per_svc: int = 5, *, bump: int = -1, drop: int = -1, gone: int = -1):
    """``n`` NodePort services; service ``bump`` has one endpoint more, ``drop`` one fewer,
    and service ``gone`` does not exist."""
    svcs, eps = [], []
    for i in range(n):
        if i == gone:
            continue
        name = f"s{i}"
        # resourceVersions as informer objects carry them (the proxier re-renders a service
        # only when its Service or Endpoints version changes)
        svcs.append({"metadata": {"namespace": "bench", "name": name, "resourceVersion": "1"},
                     "spec": {"type": "NodePort", "clusterIP": f"10.96.{i // 250}.{i % 250 + 1}",
                              "ports": [{"name": "http", "port": 80, "nodePort": 30000 + i, "protocol": "TCP"}]}})
        k = eps_per_svc + (1 if i == bump else 0) - (1 if i == drop else 0)
        eps.append({"metadata": {"namespace": "bench", "name": name, "resourceVersion": str(k)},
                    "subsets": [{"addresses": [{"ip": f"10.244.{j}.{i % 250 + 1}"} for j in range(k)],
                                 "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}]})
    return svcs, eps


def _flush_ours() -> None:
    from nanokube.proxy.proxier import Proxier
    Proxier(None, node_name="b", node_ips=[]).cleanup()


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def inner(n: int, *, iptc: bool) -> None:
    from nanokube.host import iptables
    from nanokube.proxy import rules
    from nanokube.proxy.proxier import Proxier

    mode = iptables.mode()
    svcs, eps = world(n)
    rs = rules.render(svcs, eps)
    # baseline: the same rules through a bare restore of the same backend, one transaction (best of 3)
    text = rules.restore_input(rs)
    chunked = iptables.render_restore_chunked(rs.chains, changed=set(rs.chains), delete=set())

    def bare(t: str) -> float:
        best = []
        for _ in range(3):
            _flush_ours()
            t0 = time.perf_counter()
            iptables.restore(t)
            best.append(time.perf_counter() - t0)
        _flush_ours()
        return min(best)

    base = bare(text)
    print(f"[{mode}] bare iptables-{mode}-restore of {n} services x 5 endpoints ({text.count(chr(10) + ':')} chains, "
          f"{text.count(chr(10) + '-A')} rules), one transaction: {base * 1000:8.1f} ms")
    if mode == "nft":
        c = bare(chunked)
        print(f"[{mode}] bare iptables-{mode}-restore, chunked ({chunked.count('COMMIT')} transactions):      "
              f"{c * 1000:8.1f} ms = {c / base:.2f}x")
    full = []
    for _ in range(3):
        _flush_ours()
        p = Proxier(None, node_name="b", node_ips=[])
        t = time.perf_counter()
        p.apply(svcs, eps)
        full.append(time.perf_counter() - t)
    print(f"[{mode}] proxier full sync (read + render + diff + restore):    {min(full) * 1000:8.1f} ms "
          f"= {min(full) / base:.2f}x bare restore (target <= 1.5 s)")
    t = time.perf_counter()
    assert Proxier(None, node_name="b", node_ips=[]).apply(svcs, eps) == 0  # a restart finds nothing to do
    print(f"[{mode}] restarted proxier's sync (re-read + render + diff, no change): {(time.perf_counter() - t) * 1000:6.1f} ms")
    # one endpoint change at a time: one added or removed, then back (both timed), on different services
    lat = []
    for k in range(60):
        i = (k * 37) % n
        s2, e2 = world(n, bump=i) if k % 2 == 0 else world(n, drop=i)
        for s_, e_ in ((s2, e2), (svcs, eps)):
            t = time.perf_counter()
            changed = p.apply(s_, e_)
            lat.append(time.perf_counter() - t)
            assert changed >= 2
    print(f"[{mode}] one endpoint change -> rules live, {len(lat)} changes:  p50 {pct(lat, .5) * 1000:6.1f} ms, "
          f"p99 {pct(lat, .99) * 1000:6.1f} ms, max {max(lat) * 1000:6.1f} ms (target p99 <= 50 ms)")
    # one service removed and added back (KUBE-SERVICES and KUBE-NODEPORTS rewritten)
    lat = []
    for k in range(20):
        s2, e2 = world(n, gone=(k * 37) % n)
        for s_, e_ in ((s2, e2), (svcs, eps)):
            t = time.perf_counter()
            p.apply(s_, e_)
            lat.append(time.perf_counter() - t)
    print(f"[{mode}] one service removed or added, {len(lat)} changes:        p50 {pct(lat, .5) * 1000:6.1f} ms, "
          f"p99 {pct(lat, .99) * 1000:6.1f} ms")
    p.cleanup()
    p.backend.close()
    if iptc and mode == "legacy":
        q = Proxier(None, node_name="b", node_ips=[], backend=iptables.IptcBackend())
        t = time.perf_counter()
        q.apply(svcs, eps)
        print(f"[{mode}] python-iptables full sync:                              {(time.perf_counter() - t) * 1000:8.1f} ms")
        q.cleanup()


HTTP_LOOP = """
import socket, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
req = f"GET / HTTP/1.0\\r\\nHost: {host}\\r\\n\\r\\n".encode()
t = time.perf_counter(); ok = 0
for _ in range(n):
    with socket.create_connection((host, port), timeout=5) as c:
        c.sendall(req)
        while c.recv(4096):
            pass
        ok += 1
print(ok / (time.perf_counter() - t))
"""


def datapath(rounds: int = 3, requests: int = 1500) -> None:
    """Requests/s through a NodePort vs to the pod IP, from the host side of a local cluster."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    name, state = f"hxb{secrets.token_hex(2)}", f"/tmp/nk-bench-{secrets.token_hex(3)}"
    nk = [sys.executable, "-m", "nanokube"]
    run = lambda *a, **kw: subprocess.run([*nk, *a], cwd=repo, capture_output=True, text=True, **kw)  # noqa: E731
    r = run("up", "--isolated", "--detach", "--nodes", "1", "--cluster", name, "--state-dir", state, "--timeout", "90")
    try:
        if r.returncode != 0:
            raise RuntimeError(r.stdout + r.stderr)
        kc = lambda *a, **kw: run("kubectl", "--cluster", name, "--state-dir", state, "--", *a, **kw)  # noqa: E731
        kc("create", "deployment", "web", "--image=busybox", "--", "sh", "-c",
           "mkdir -p /www && echo hello > /www/index.html && exec httpd -f -p 8080 -h /www")
        kc("expose", "deployment", "web", "--type=NodePort", "--port=80", "--target-port=8080")
        pod_ip, np_ = "", ""
        for _ in range(120):
            pod_ip = kc("get", "pods", "-l", "app=web", "-o", "jsonpath={.items[0].status.podIP}").stdout.strip()
            np_ = kc("get", "svc", "web", "-o", "jsonpath={.spec.ports[0].nodePort}").stdout.strip()
            if pod_ip and np_ and run("exec", "--cluster", name, "--state-dir", state, "--", "busybox", "timeout", "3",
                                       "busybox", "wget", "-qO-", f"http://172.30.0.11:{np_}/").returncode == 0:
                break
            time.sleep(0.5)
        else:
            raise RuntimeError("service did not come up")
        pod_cidr = pod_ip.rsplit(".", 1)[0] + ".0/24"
        # inside the cluster's own host-side namespace only: a route to the node's pods
        run("exec", "--cluster", name, "--state-dir", state, "--", "ip", "route", "replace", pod_cidr, "via", "172.30.0.11")
        best: dict[str, float] = {}
        for _ in range(rounds):
            for label, host, port in (("pod IP", pod_ip, "8080"), ("NodePort", "172.30.0.11", np_)):
                out = run("exec", "--cluster", name, "--state-dir", state, "--", sys.executable, "-c", HTTP_LOOP,
                          host, port, str(requests))
                if out.returncode != 0:
                    raise RuntimeError(out.stderr)
                best[label] = max(best.get(label, 0.0), float(out.stdout.strip()))
        print(f"requests/s from the host side, {requests} requests x {rounds} rounds (best): "
              f"pod IP {best['pod IP']:.0f}/s, NodePort {best['NodePort']:.0f}/s, "
              f"ratio {best['NodePort'] / best['pod IP']:.2f} (target >= 0.9)")
    finally:
        run("down", "--cluster", name, "--state-dir", state)
        shutil.rmtree(state, ignore_errors=True)


def main() -> None:
    argv = sys.argv[1:]
    backends = ["legacy", "nft"]
    if "--backend" in argv:
        i = argv.index("--backend")
        backends = [argv[i + 1]]
        argv = argv[:i] + argv[i + 2:]
    args = [a for a in argv if not a.startswith("--")]
    n = int(args[0]) if args else 1000
    if os.environ.get("NK_BENCH_INNER"):
        return inner(n, iptc="--iptc" in argv)
    for backend in backends:  # each backend in a namespace of its own: never both in one
        ns = f"nkb-{secrets.token_hex(3)}"
        subprocess.run(["ip", "netns", "add", ns], check=True)
        try:
            subprocess.run(["ip", "netns", "exec", ns, sys.executable, __file__, *argv], check=True,
                           env={**os.environ, "NK_BENCH_INNER": "1", "NANOKUBE_IPTABLES": backend})
        finally:
            subprocess.run(["ip", "netns", "del", ns])
    if "--datapath" in sys.argv:
        datapath()


if __name__ == "__main__":
    main()
