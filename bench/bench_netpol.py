"""Benchmark NetworkPolicy rule sync: what one pod label change costs at scale.

World: P pods (default 500) over 10 namespaces and 2 nodes (this node hosts half), N
policies (default 100), each selecting one app label of its namespace and admitting one
tier label from every namespace carrying a team label, on one port, plus a default-deny
per namespace. Measured, in the same run:

1. Full sync: render + one ``iptables-restore --noflush`` of every chain (the agent's first
   sync on an empty node), the chain and rule counts.
2. One pod relabelled (its tier flips): the agent's incremental sync (render + diff + restore
   of only the changed chains), p50/p99 over many flips, split into pure render time and
   kernel time; the ratio against the full restore of the same rules.

Runs in a fresh network namespace with a random name (re-executing itself inside it),
deleted afterwards; the root namespace's tables are never touched.
Usage: python bench/bench_netpol.py [PODS] [POLICIES]   (as root)
"""
from __future__ import annotations

import os
import secrets
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def world(npods: int, npols: int):
    from nanokube.network import netpol
    nss = [{"metadata": {"name": f"ns{i}", "labels": {"team": "t" if i % 2 else "u"}}} for i in range(10)]
    pods = []
    for i in range(npods):
        pods.append({"metadata": {"name": f"p{i}", "namespace": f"ns{i % 10}",
                                  "labels": {"app": f"a{i % 7}", "tier": f"t{i % 4}"}},
                     "spec": {"nodeName": f"node{1 + i // 10 % 2}",
                              "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]},
                     "status": {"podIP": f"10.244.{i // 200}.{10 + i % 200}", "phase": "Running"}})
    pols = [{"metadata": {"name": "deny", "namespace": f"ns{i}"}, "spec": {"podSelector": {}}} for i in range(10)]
    for j in range(npols - len(pols)):
        pols.append({"metadata": {"name": f"n{j}", "namespace": f"ns{j % 10}"},
                     "spec": {"podSelector": {"matchLabels": {"app": f"a{j % 7}"}},
                              "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "t"}},
                                                     "podSelector": {"matchLabels": {"tier": f"t{j % 4}"}}}],
                                           "ports": [{"port": "http" if j % 3 == 0 else 8080 + j % 5}]}]}})
    for p in pols:
        netpol.apply_defaults(p)
    return pols, pods, nss


def inner(npods: int, npols: int) -> None:
    from nanokube.host import iptables
    from nanokube.network import netpol
    from nanokube.network.policy_agent import PolicyAgent

    pols, pods, nss = world(npods, npols)
    local = {p["status"]["podIP"] for p in pods if p["spec"]["nodeName"] == "node1"}
    agent = PolicyAgent(None, node_name="node1", node_ips=["172.30.0.11", "10.244.1.1"],
                        clock=lambda: 1e9)  # past the start-up window: no jump check per sync
    t0 = time.perf_counter()
    chains = netpol.render(pols, pods, nss, local, node_ips=["172.30.0.11", "10.244.1.1"])
    t_render = time.perf_counter() - t0
    t0 = time.perf_counter()
    n = agent.apply(pols, pods, nss, local, full=True)
    t_full = time.perf_counter() - t0
    nrules = sum(len(v) for v in chains.values())
    print(f"world: {npods} pods, {npols} policies; this node: {len(local)} pods -> {len(chains)} chains, "
          f"{nrules} rules")
    print(f"full sync (render + restore of {n} chains): {t_full * 1000:.1f} ms   (render alone {t_render * 1000:.1f} ms)")
    assert agent.apply(pols, pods, nss, local) == 0

    renders, syncs, changed = [], [], []
    # a pod on this node whose namespace other policies admit by tier: peer chains change too
    target = next(i for i, p in enumerate(pods) if p["status"]["podIP"] in local and p["metadata"]["namespace"] == "ns1")
    for k in range(40):
        p = dict(pods[target])
        p["metadata"] = {**p["metadata"], "labels": {**p["metadata"]["labels"], "tier": f"t{k % 4}"}}
        pods = pods[:target] + [p] + pods[target + 1:]
        t0 = time.perf_counter()
        netpol.render(pols, pods, nss, local, node_ips=["172.30.0.11", "10.244.1.1"])
        renders.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        changed.append(agent.apply(pols, pods, nss, local))
        syncs.append(time.perf_counter() - t0)
    q = lambda xs, f: sorted(xs)[min(len(xs) - 1, int(f * len(xs)))] * 1000  # noqa: E731
    print(f"one pod relabelled: {statistics.median(changed):.0f} chains rewritten (median)")
    print(f"  render alone:           p50 {q(renders, .5):7.1f} ms  p99 {q(renders, .99):7.1f} ms")
    print(f"  render + diff + restore: p50 {q(syncs, .5):7.1f} ms  p99 {q(syncs, .99):7.1f} ms")
    print(f"  ratio full sync / incremental p50: {t_full / (q(syncs, .5) / 1000):.1f}x")
    # the kernel agrees with what the agent thinks it applied
    have = {k: v for k, v in iptables.save(("filter",)).items() if k[1].startswith(netpol.PREFIX)}
    assert have == agent._applied, "kernel and agent disagree"
    agent.cleanup()


def main() -> None:
    npods = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    npols = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    if os.environ.get("NK_BENCH_INNER"):
        inner(npods, npols)
        return
    ns = "nkbench-np-" + secrets.token_hex(3)
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", ns, sys.executable, __file__, *sys.argv[1:]], check=True,
                       env={**os.environ, "NK_BENCH_INNER": "1"})
    finally:
        subprocess.run(["ip", "netns", "del", ns])


if __name__ == "__main__":
    main()
