"""Benchmark: a full kube-proxy sync of N services via iptables-restore vs python-iptables,
and an incremental sync (one endpoint changed) vs a full restore of the same rules.

Runs in a fresh network namespace with a random name (re-executing itself inside it), which
is deleted afterwards; the root namespace's tables are never touched.
Usage: python bench/bench_proxy.py [N]   (as root)
"""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def world(n: int, eps_per_svc: int = 3, *, bump: int = -1):
    svcs, eps = [], []
    for i in range(n):
        name = f"s{i}"
        svcs.append({"metadata": {"namespace": "bench", "name": name},
                     "spec": {"type": "NodePort", "clusterIP": f"10.96.{i // 250}.{i % 250 + 1}",
                              "ports": [{"name": "http", "port": 80, "nodePort": 30000 + i, "protocol": "TCP"}]}})
        k = eps_per_svc + (1 if i == bump else 0)
        eps.append({"metadata": {"namespace": "bench", "name": name},
                    "subsets": [{"addresses": [{"ip": f"10.244.{j}.{i % 250 + 1}"} for j in range(k)],
                                 "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}]})
    return svcs, eps


def inner(n: int) -> None:
    from nanokube.host import iptables
    from nanokube.proxy.proxier import Proxier

    def timed(backend, *args, **kw) -> tuple[float, int]:
        p = Proxier(None, node_name="b", node_ips=[], backend=backend)
        t = time.perf_counter()
        changed = p.apply(*args, **kw)
        dt = time.perf_counter() - t
        return dt, changed, p

    svcs, eps = world(n)
    for label, backend in (("iptables-restore", iptables.RestoreBackend()), ("python-iptables", iptables.IptcBackend())):
        dt, changed, p = timed(backend, svcs, eps)
        # a fresh proxier diffing against the kernel must find nothing to do: same rules either way
        assert Proxier(None, node_name="b", node_ips=[]).apply(svcs, eps) == 0, label
        s2, e2 = world(n, bump=n // 2)
        t = time.perf_counter()
        inc = p.apply(s2, e2)
        dti = time.perf_counter() - t
        print(f"{label:17s} full sync of {n} services ({changed} chains): {dt * 1000:8.1f} ms; "
              f"incremental (1 endpoint added, {inc} chains): {dti * 1000:7.1f} ms")
        p.cleanup()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    if os.environ.get("NK_BENCH_INNER"):
        return inner(n)
    ns = f"nkb-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", ns, sys.executable, __file__, str(n)], check=True,
                       env={**os.environ, "NK_BENCH_INNER": "1"})
    finally:
        subprocess.run(["ip", "netns", "del", ns])


if __name__ == "__main__":
    main()
