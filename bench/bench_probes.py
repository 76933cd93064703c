"""Issue 6's numbers: probe cost and timing on one node.

    sudo .venv/bin/python bench/bench_probes.py [--pods 100] [--seconds 20]

One node, --pods busybox httpd pods. Baseline: the agent's CPU with those pods and no
probes. Then the same number of pods with two probes each (httpGet readiness + tcpSocket
liveness, periodSeconds 1): agent CPU (share of one core) and probe start jitter (how late a
probe starts against its schedule, from the agent's /metrics). Prints both and the ratio.
Traffic stays inside the namespaces the benchmark creates.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import re
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

PY = sys.executable


def deployment(name: str, replicas: int, probes: bool) -> dict:
    c = {"name": "web", "image": "busybox", "command": ["httpd", "-f", "-p", "8080", "-h", "/"],
         "ports": [{"containerPort": 8080, "name": "http"}]}
    if probes:
        c["readinessProbe"] = {"httpGet": {"path": "/etc/hostname", "port": "http"}, "periodSeconds": 1}
        c["livenessProbe"] = {"tcpSocket": {"port": 8080}, "periodSeconds": 1}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"b": name}},
                     "template": {"metadata": {"labels": {"b": name}},
                                  "spec": {"terminationGracePeriodSeconds": 1, "containers": [c]}}}}


async def run_all(client, n: int, name: str, probes: bool) -> None:
    await client.create("deployments", deployment(name, n, probes), namespace="default")
    for _ in range(1200):
        pods = (await client.list("pods", namespace="default", label_selector=f"b={name}"))["items"]
        ready = [p for p in pods if any(c["type"] == "Ready" and c["status"] == "True"
                                        for c in (p.get("status") or {}).get("conditions") or [])]
        if len(ready) >= n:
            return
        await asyncio.sleep(0.25)
    raise TimeoutError(f"{name}: pods not Ready")


async def remove(client, name: str) -> None:
    await client.delete("deployments", name, namespace="default")
    for _ in range(1200):
        if not (await client.list("pods", namespace="default", label_selector=f"b={name}"))["items"]:
            return
        await asyncio.sleep(0.25)


def cpu_share(pid: int, seconds: float) -> float:
    p = psutil.Process(pid)
    t0, c0 = time.monotonic(), sum(p.cpu_times()[:2])
    time.sleep(seconds)
    return (sum(p.cpu_times()[:2]) - c0) / (time.monotonic() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pods", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=20)
    args = ap.parse_args()
    cluster = "p" + secrets.token_hex(3)
    state = Path(tempfile.mkdtemp(prefix="nkbench"))
    r = subprocess.run([PY, "-m", "nanokube", "up", "--isolated", "--detach", "--nodes", "1", "--cluster", cluster,
                        "--state-dir", str(state)], capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stdout, r.stderr)
        sys.exit(1)
    try:
        info = json.loads((state / cluster / "cluster.json").read_text())
        agent = int((state / cluster / "pids" / "node1.pid").read_text())
        from nanokube.client.http import HttpClient
        from nanokube.host import netns

        def phase(name: str, probes: bool) -> float:
            async def go() -> None:
                c = HttpClient.from_kubeconfig(info["kubeconfig"])
                try:
                    await run_all(c, args.pods, name, probes)
                finally:
                    await c.close()
            netns.run_in(info["host_netns"], lambda: asyncio.run(go()))
            time.sleep(3)
            return cpu_share(agent, args.seconds)

        def drop(name: str) -> None:
            async def go() -> None:
                c = HttpClient.from_kubeconfig(info["kubeconfig"])
                try:
                    await remove(c, name)
                finally:
                    await c.close()
            netns.run_in(info["host_netns"], lambda: asyncio.run(go()))
        base = phase("plain", False)
        drop("plain")
        probed = phase("probed", True)
        metrics = subprocess.run([PY, "-m", "nanokube", "kubectl", "--cluster", cluster, "--state-dir", str(state), "--",
                                  "get", "--raw", "/api/v1/nodes/node1/proxy/metrics"],  # the kubelet's, via the API
                                 capture_output=True, text=True).stdout
        drop("probed")
    finally:
        subprocess.run([PY, "-m", "nanokube", "down", "--cluster", cluster, "--state-dir", str(state)], capture_output=True)
    q = {m.group(1): float(m.group(2)) for m in re.finditer(r'jitter_seconds\{quantile="([0-9.]+)"\} ([0-9.]+)', metrics)}
    total = sum(int(m.group(1)) for m in re.finditer(r'prober_probe_total\{[^}]*\} (\d+)', metrics))
    print(f"{args.pods} pods, no probes:          agent CPU {base * 100:5.1f}% of a core (baseline)")
    print(f"{args.pods} pods x 2 probes @1s:      agent CPU {probed * 100:5.1f}% of a core (target <= 15%), "
          f"ratio {probed / max(base, 1e-6):.1f}x the baseline; {total} probes run")
    print(f"probe start jitter: p50 {q.get('0.5', 0) * 1000:.1f} ms  p90 {q.get('0.9', 0) * 1000:.1f} ms  "
          f"p99 {q.get('0.99', 0) * 1000:.1f} ms (target p99 <= 100 ms)")


if __name__ == "__main__":
    main()
