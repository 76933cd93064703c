"""The node's NetworkPolicy agent: watch policies, pods and namespaces, render, apply what changed.

Built like the proxier (proxy/proxier.py): bursts of changes are batched (``min_sync_period``);
each sync renders every NKNP-* chain with the pure ``netpol.render`` and rewrites through one
``iptables-restore --noflush`` only the chains whose rules differ from what this agent last
applied, deleting chains nothing references any more. A periodic full resync re-reads the
kernel (repairing drift, removing stale chains), and the first sync is a diff against what is
already there, so a restarted agent never opens a window without policy.

The agent runs in its node's network namespace (the agent process lives there), so it never
touches the host's firewall. Its jump must be the FIRST rule of FORWARD, ahead of
kube-proxy's KUBE-FORWARD (which ACCEPTs masquerade-marked packets, e.g. NodePort traffic):
the position is checked on the first syncs, while the proxier may still be inserting its own
jumps at the top, and on every full resync.

Pod updates that cannot change any rule (status heartbeats, conditions) are ignored: only
labels, IP, phase, node, hostNetwork and container ports wake the loop.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

from nanokube.client.informer import shared
from nanokube.host import iptables
from nanokube.proxy.syncloop import sync_forever
from . import netpol


def _pod_key(p: dict) -> Any:
    spec, st = p.get("spec") or {}, p.get("status") or {}
    return ((p.get("metadata") or {}).get("labels"), st.get("podIP"), st.get("phase"), spec.get("nodeName"),
            spec.get("hostNetwork"), [c.get("ports") for c in spec.get("containers") or []])


def dns_pods(endpoints: list[dict]) -> list[dict]:
    """The cluster DNS's endpoint addresses as the pods policies expect it to be: namespace
    kube-system, label k8s-app=kube-dns, ports dns (UDP) and dns-tcp (TCP)."""
    out = []
    for ep in endpoints:
        for subset in ep.get("subsets") or []:
            ports = [{"name": p.get("name", ""), "containerPort": p["port"], "protocol": p.get("protocol", "TCP")}
                     for p in subset.get("ports") or []]
            for i, a in enumerate(subset.get("addresses") or []):
                out.append({"metadata": {"name": f"cluster-dns-{i}", "namespace": "kube-system",
                                         "labels": {"k8s-app": "kube-dns"}, "uid": f"cluster-dns-{a['ip']}"},
                            "spec": {"nodeName": "", "containers": [{"name": "dns", "ports": ports}]},
                            "status": {"phase": "Running", "podIP": a["ip"]}})
    return out


class PolicyAgent:
    def __init__(self, client: Any, *, node_name: str, node_ips: Callable[[], list[str]] | list[str] = (),
                 min_sync_period: float = 0.2, full_resync_period: float = 60.0, first_check_period: float = 30.0,
                 backend: iptables.Backend | None = None, clock: Callable[[], float] = time.monotonic):
        self.node_name = node_name
        self._node_ips = node_ips if callable(node_ips) else (lambda: list(node_ips))
        self.min_sync_period, self.full_resync_period = min_sync_period, full_resync_period
        self.policies = shared(client, "networkpolicies")
        self.pods = shared(client, "pods")
        self.namespaces = shared(client, "namespaces")
        # The cluster DNS runs in the server, not in a pod: policies that allow egress to the
        # kube-dns pods (as every tutorial writes them) must reach it all the same.
        self.dns = shared(client, "endpoints", namespace="kube-system", field_selector="metadata.name=kube-dns")
        self._dirty = asyncio.Event()
        self.policies.add_handler(on_add=self._changed, on_update=lambda o, n: self._changed(), on_delete=self._changed)
        self.pods.add_handler(on_add=self._changed, on_delete=self._changed,
                              on_update=lambda o, n: _pod_key(o) != _pod_key(n) and self._changed())
        self.dns.add_handler(on_add=self._changed, on_update=lambda o, n: self._changed(), on_delete=self._changed)
        self.namespaces.add_handler(on_add=self._changed, on_delete=self._changed,
                                    on_update=lambda o, n: o["metadata"].get("labels") != n["metadata"].get("labels")
                                    and self._changed())
        self.backend = backend or iptables.RestoreBackend()
        self._applied: iptables.Chains | None = None
        self._clock = clock
        self._started = clock()
        self.first_check_period = first_check_period
        self.syncs = 0

    def _changed(self, _obj: Any = None) -> None:
        self._dirty.set()

    def local_pod_ips(self, pods: list[dict]) -> set[str]:
        return {ip for p in pods if (p.get("spec") or {}).get("nodeName") == self.node_name
                and (ip := netpol._ip(p))}

    def sync(self, *, full: bool = False) -> int:
        """Render from the informers' caches and apply; returns the number of chains changed."""
        pods = self.pods.list()
        return self.apply(self.policies.list(), pods + dns_pods(self.dns.list()), self.namespaces.list(),
                          self.local_pod_ips(pods), full=full)

    def apply(self, policies: list[dict], pods: list[dict], namespaces: list[dict], node_pod_ips: set[str], *,
              full: bool = False) -> int:
        """Render and rewrite only the chains that differ from the kernel's (re-read on the first
        and every full sync); keep the FORWARD jump first. Returns chains rewritten or deleted."""
        check = full or self._applied is None or self._clock() - self._started < self.first_check_period
        kernel = self.backend.read() if check else None
        if kernel is not None and (full or self._applied is None):
            self._applied = {k: v for k, v in kernel.items() if k[1].startswith(netpol.PREFIX)}
        applied = self._applied or {}
        want = netpol.render(policies, pods, namespaces, node_pod_ips, node_ips=self._node_ips())
        changed = {k for k, v in want.items() if applied.get(k) != v}
        stale = {k for k in applied if k not in want}
        try:
            self.backend.apply(want, changed=changed, delete=stale)
            if kernel is not None:
                table, chain, rule = netpol.JUMP
                if kernel.get((table, chain), [None])[:1] != [rule]:
                    self.backend.delete_jump(table, chain, rule)
                    self.backend.ensure_jump(table, chain, rule)  # inserts at position 1
        except Exception:
            self._applied = None  # unknown state: re-read next time
            raise
        self._applied = want
        self.syncs += 1
        return len(changed) + len(stale)

    async def run(self) -> None:
        infs = (self.policies, self.pods, self.namespaces, self.dns)
        tasks = [asyncio.create_task(i.run()) for i in infs]
        try:
            await asyncio.gather(*(i.wait_synced() for i in infs))
            # While the proxier starts (and inserts its own jumps), look at the jump's position often.
            await sync_forever(self.sync, self._dirty, what="network policy", min_sync_period=self.min_sync_period,
                               full_resync_period=self.full_resync_period,
                               wait_timeout=lambda: 2.0 if self._clock() - self._started < self.first_check_period
                               else self.full_resync_period)
        finally:
            for t in tasks:
                t.cancel()

    def cleanup(self) -> None:
        """Remove the jump and every NKNP-* chain (in the current netns)."""
        self.backend.delete_jump(*netpol.JUMP)
        ours = {k for k in self.backend.read() if k[1].startswith(netpol.PREFIX)}
        self.backend.apply({}, changed=set(), delete=ours)
        self._applied = None
