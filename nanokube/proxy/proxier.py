"""kube-proxy's sync loop: watch Services and Endpoints, render, apply what changed.

Bursts of changes are batched (``min_sync_period``); each sync renders the ruleset (rules.py,
pure; a service whose Service and Endpoints resourceVersions are unchanged reuses its cached
rules) and rewrites only the chains whose rules differ from what this proxier last applied,
deleting chains no service owns any more. Between full syncs only the chains the render
reports as touched (services rendered again or gone, and the chains no service owns) are
compared, so one endpoint change costs a walk over the services' resourceVersions, not a
diff of every chain. A periodic full resync re-reads the kernel's state, which repairs drift
and removes stale chains — and on start-up it means live rules are never flushed: the first
sync is a diff against what is already there, so established connections (whose conntrack
entries already carry their NAT) are untouched. The jumps from the built-in chains that the
kernel lacks (checked whenever it is re-read) go into the same restore.

Around the rules: conntrack entries of UDP endpoints that went away are deleted, and the
load-balancer IPs this node owns (rules.lb_addresses) are kept on its lan interface.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

from nanokube.client.informer import shared
from nanokube.host import conntrack, iptables, netlink
from . import rules
from .syncloop import sync_forever

log = logging.getLogger("nanokube.proxy")
OUR_PREFIXES = ("KUBE-", "NANOKUBE-")
LB_LABEL = "nklb"  # label of the load-balancer addresses on the node's lan interface


class Proxier:
    def __init__(self, client: Any, *, node_name: str, node_ips: list[str], cluster_cidr: str = "10.244.0.0/16",
                 min_sync_period: float = 0.2, full_resync_period: float = 60.0,
                 backend: iptables.Backend | None = None,
                 conntrack_delete: Callable[[list[str]], int] | None = None,
                 set_lb_addresses: Callable[[set[str]], set[str]] | None = None):
        self.node_name, self.node_ips, self.cluster_cidr = node_name, node_ips, cluster_cidr
        self.min_sync_period, self.full_resync_period = min_sync_period, full_resync_period
        self.services = shared(client, "services")
        self.endpoints = shared(client, "endpoints")
        self.nodes = shared(client, "nodes")
        # this node's pods, for their hostPorts (the kubelet's hostport manager, folded in here)
        self.pods = shared(client, "pods", field_selector=f"spec.nodeName={node_name}")
        self._dirty = asyncio.Event()
        self.pods.add_handler(on_add=lambda p: self._hostports_changed(None, p),
                              on_update=self._hostports_changed, on_delete=lambda p: self._hostports_changed(None, p))
        for inf in (self.services, self.endpoints):
            inf.add_handler(on_add=self._changed, on_update=lambda o, n: self._changed(n), on_delete=self._changed)
        # nodes matter only for who owns a load-balancer IP: react to readiness, not heartbeats
        self.nodes.add_handler(on_add=self._changed, on_delete=self._changed,
                               on_update=lambda o, n: rules.node_ready(o) != rules.node_ready(n) and self._changed())
        self._applied: rules.Chains | None = None  # what the kernel has, as far as we know
        # the unowned chains (rules.Ruleset.loose) of the last applied render; None: diff everything
        self._loose: set[tuple[str, str]] | None = None
        self.backend = backend or iptables.RestoreBackend()
        self._conntrack_delete = conntrack_delete or conntrack.delete
        self._set_lb = set_lb_addresses or (
            lambda want: netlink.sync_labeled_addresses(node_ips[0], LB_LABEL, want) if node_ips else set())
        self._parts = rules.RenderCache()  # per-service rendered rules, by the objects' resourceVersions
        self._udp: set[rules.UdpFlow] | None = None  # UDP flows of the last applied sync
        self._lb: set[str] | None = None              # LB addresses held after the last sync
        self.syncs = 0

    def _changed(self, _obj: Any = None) -> None:
        self._dirty.set()

    def _hostports_changed(self, old: dict | None, new: dict) -> None:
        """Only pods with hostPorts matter, and only when their IP or phase changes."""
        def view(p: dict | None) -> tuple | None:
            if p is None or not any(port.get("hostPort") for c in (p.get("spec") or {}).get("containers") or []
                                    for port in c.get("ports") or []):
                return None
            st = p.get("status") or {}
            return st.get("podIP"), st.get("phase"), bool(p["metadata"].get("deletionTimestamp"))
        if view(old) != view(new) or old is None:
            if view(new) is not None or view(old) is not None:
                self._dirty.set()

    def sync(self, *, full: bool = False) -> int:
        """Render from the informers' caches and apply; returns the number of chains changed."""
        return self.apply(self.services.list(), self.endpoints.list(), nodes=self.nodes.list(), full=full,
                          pods=self.pods.list())

    def apply(self, services: list[dict], endpoints: list[dict], *, nodes: list[dict] | None = None,
              full: bool = False, pods: list[dict] | None = None) -> int:
        """Render ``services``/``endpoints`` and rewrite only the chains that differ from the
        kernel's (re-read on the first and every full sync); returns chains rewritten or deleted.
        With ``nodes``, also keep this node's load-balancer addresses."""
        kernel = None
        if full or self._applied is None:
            kernel = self.backend.read()
            self._applied = {k: v for k, v in kernel.items() if k[1].startswith(OUR_PREFIXES)}
            self._loose = None
        applied = self._applied
        rs = rules.render(services, endpoints, cluster_cidr=self.cluster_cidr, node_name=self.node_name,
                          cache=self._parts, pods=pods)
        want = rs.chains
        have = rs.canonical  # how the kernel will print them back
        if rs.touched is not None and self._loose is not None:
            # ``applied`` is the previous render: only what it touched can differ
            maybe = rs.touched | rs.loose | self._loose
            changed = {k for k in maybe if k in have and applied.get(k) != have[k]}
            stale = {k for k in maybe if k in applied and k not in want}
        else:
            changed = {k for k, v in have.items() if applied.get(k) != v}
            stale = {k for k in applied if k not in want}
        try:
            jumps = self._missing_jumps(kernel) if kernel is not None else []
            self.backend.apply(want, changed=changed, delete=stale, jumps=jumps)
        except Exception:
            self._applied = self._loose = None  # unknown state: re-read next time
            raise
        self._applied, self._loose = have, rs.loose
        self.syncs += 1
        if self._udp is not None:
            for args in rules.stale_udp(self._udp, rs.udp):
                try:
                    self._conntrack_delete(args)
                except Exception as e:  # noqa: BLE001 - entries time out anyway
                    log.warning("conntrack clean-up failed: %s", e)
        self._udp = rs.udp
        if nodes is not None:
            lb = rules.lb_addresses(services, endpoints, nodes, node_name=self.node_name)
            if lb != self._lb or full:
                self._lb = self._set_lb(lb)
        return len(changed) + len(stale)

    def _missing_jumps(self, kernel: rules.Chains) -> list[tuple[str, str, str]]:
        """rules.JUMPS that the built-in chains of ``kernel`` lack. A jump whose exact text is
        missing while a rule in that chain jumps to the same target is checked with
        ``iptables -C`` instead (and inserted if really missing), so that a difference in how
        some iptables version prints a rule can never insert a copy on every resync."""
        out = []
        for table, chain, rule in rules.JUMPS:
            present = kernel.get((table, chain), [])
            if rule in present:
                continue
            target = rule.rsplit(" -j ", 1)[-1]
            if any(r.endswith(" -j " + target) or r == "-j " + target for r in present):
                self.backend.ensure_jump(table, chain, rule)
            else:
                out.append((table, chain, rule))
        return out

    async def run(self) -> None:
        infs = (self.services, self.endpoints, self.nodes, self.pods)
        tasks = [asyncio.create_task(i.run()) for i in infs]
        try:
            await asyncio.gather(*(i.wait_synced() for i in infs))
            await sync_forever(self.sync, self._dirty, what="proxy", min_sync_period=self.min_sync_period,
                               full_resync_period=self.full_resync_period)
        finally:
            for t in tasks:
                t.cancel()

    def cleanup(self) -> None:
        """Remove every chain and jump this proxier made (in the current netns)."""
        for table, chain, rule in rules.JUMPS:
            self.backend.delete_jump(table, chain, rule)
        ours = {k for k in self.backend.read() if k[1].startswith(OUR_PREFIXES)}
        self.backend.apply({}, changed=set(), delete=ours)
        self._applied = None
        if self._lb:
            self._lb = self._set_lb(set())
