"""kube-proxy's iptables rules as a pure function: (services, endpoints) → chains.

The layout, chain names and rule text follow upstream's iptables proxier, so
``iptables-save`` on a nanokube node reads like one on a Kubernetes node:
nat PREROUTING/OUTPUT → KUBE-SERVICES → KUBE-SVC-<hash> (ClusterIP) or, for local addresses,
KUBE-NODEPORTS → KUBE-EXT-<hash> → KUBE-SVC-<hash>; KUBE-SVC balances over KUBE-SEP-<hash>
chains with ``statistic --mode random --probability 1/(n-i)``; KUBE-SEP DNATs and marks
hairpin traffic; marked packets are masqueraded in KUBE-POSTROUTING. Services without ready
endpoints are rejected in the filter table.
"""
from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from typing import Any

from nanokube.host.iptables import render_restore

Obj = dict[str, Any]
# (table, chain) → rules (argument strings, without "-A CHAIN")
Chains = dict[tuple[str, str], list[str]]

MASQ_MARK = "0x4000"
BASE_CHAINS = {
    "nat": ["KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ", "NANOKUBE-EGRESS"],
    "filter": ["KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-FORWARD"],
}
# Jumps from the built-in chains into ours: (table, builtin chain, rule).
JUMPS = [
    ("nat", "PREROUTING", '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES'),
    ("nat", "OUTPUT", '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES'),
    ("nat", "POSTROUTING", '-m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING'),
    ("nat", "POSTROUTING", '-m comment --comment "nanokube pod egress" -j NANOKUBE-EGRESS'),
    ("filter", "FORWARD", '-m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD'),
    ("filter", "FORWARD", '-m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES'),
    ("filter", "OUTPUT", '-m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES'),
    ("filter", "INPUT", '-m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES'),
]


def _hash(s: str) -> str:
    return base64.b32encode(hashlib.sha256(s.encode()).digest()).decode()[:16]


def port_name(namespace: str, name: str, port: str) -> str:
    """upstream ServicePortName.String()"""
    return f"{namespace}/{name}:{port}" if port else f"{namespace}/{name}"


def svc_chain(spn: str, protocol: str) -> str:
    return "KUBE-SVC-" + _hash(spn + protocol.lower())


def ext_chain(spn: str, protocol: str) -> str:
    return "KUBE-EXT-" + _hash(spn + protocol.lower())


def sep_chain(spn: str, protocol: str, endpoint: str) -> str:
    return "KUBE-SEP-" + _hash(spn + protocol.lower() + endpoint)


@dataclass
class Ruleset:
    chains: Chains = field(default_factory=dict)
    # service "ns/name" → the chains it owns
    owners: dict[str, set[tuple[str, str]]] = field(default_factory=dict)

    def add(self, table: str, chain: str, rule: str | None = None, *, owner: str | None = None) -> None:
        self.chains.setdefault((table, chain), [])
        if rule is not None:
            self.chains[(table, chain)].append(rule)
        if owner:
            self.owners.setdefault(owner, set()).add((table, chain))


def _ready_endpoints(ep: Obj | None, port_name_: str, protocol: str) -> list[str]:
    out = []
    for s in (ep or {}).get("subsets") or []:
        port = next((p["port"] for p in s.get("ports") or [] if (p.get("name") or "") == port_name_
                     and p.get("protocol", "TCP") == protocol), None)
        if port is None:
            continue
        out += [f"{a['ip']}:{port}" for a in s.get("addresses") or []]
    return sorted(set(out))


def render(services: list[Obj], endpoints: list[Obj], *, cluster_cidr: str = "10.244.0.0/16") -> Ruleset:
    rs = Ruleset()
    for table, chains in BASE_CHAINS.items():
        for c in chains:
            rs.add(table, c)
    eps = {(e["metadata"].get("namespace"), e["metadata"]["name"]): e for e in endpoints}
    nat_svc, filt_svc, filt_ext, nodeports = [], [], [], []
    for svc in sorted(services, key=lambda s: (s["metadata"].get("namespace", ""), s["metadata"]["name"])):
        spec = svc.get("spec") or {}
        ip = spec.get("clusterIP")
        if not ip or ip == "None" or spec.get("type") == "ExternalName":
            continue
        ns, name = svc["metadata"].get("namespace", "default"), svc["metadata"]["name"]
        owner = f"{ns}/{name}"
        for sp in spec.get("ports") or []:
            proto = sp.get("protocol", "TCP")
            p = proto.lower()
            spn = port_name(ns, name, sp.get("name") or "")
            targets = _ready_endpoints(eps.get((ns, name)), sp.get("name") or "", proto)
            np_ = sp.get("nodePort") if spec.get("type") in ("NodePort", "LoadBalancer") else None
            if not targets:
                filt_svc.append(f'-d {ip}/32 -p {p} -m comment --comment "{spn} has no endpoints" -m {p} '
                                f'--dport {sp["port"]} -j REJECT --reject-with icmp-port-unreachable')
                if np_:
                    filt_ext.append(f'-p {p} -m comment --comment "{spn} has no endpoints" -m addrtype --dst-type LOCAL '
                                    f'-m {p} --dport {np_} -j REJECT --reject-with icmp-port-unreachable')
                continue
            svc_c = svc_chain(spn, proto)
            nat_svc.append(f'-d {ip}/32 -p {p} -m comment --comment "{spn} cluster IP" -m {p} --dport {sp["port"]} -j {svc_c}')
            rs.add("nat", svc_c, f'! -s {cluster_cidr} -d {ip}/32 -p {p} -m comment --comment "{spn} cluster IP" '
                                 f'-m {p} --dport {sp["port"]} -j KUBE-MARK-MASQ', owner=owner)
            n = len(targets)
            for i, t in enumerate(targets):
                sep = sep_chain(spn, proto, t)
                if i < n - 1:
                    rs.add("nat", svc_c, f'-m comment --comment "{spn} -> {t}" -m statistic --mode random '
                                         f'--probability {1.0 / (n - i):.10f} -j {sep}', owner=owner)
                else:
                    rs.add("nat", svc_c, f'-m comment --comment "{spn} -> {t}" -j {sep}', owner=owner)
                rs.add("nat", sep, f'-s {t.rsplit(":", 1)[0]}/32 -m comment --comment "{spn}" -j KUBE-MARK-MASQ', owner=owner)
                rs.add("nat", sep, f'-p {p} -m comment --comment "{spn}" -m {p} -j DNAT --to-destination {t}', owner=owner)
            if np_:
                ext = ext_chain(spn, proto)
                nodeports.append(f'-p {p} -m comment --comment "{spn}" -m {p} --dport {np_} -j {ext}')
                rs.add("nat", ext, f'-m comment --comment "masquerade traffic for {spn} external destinations" '
                                   f'-j KUBE-MARK-MASQ', owner=owner)
                rs.add("nat", ext, f"-j {svc_c}", owner=owner)
    for r in nat_svc:
        rs.add("nat", "KUBE-SERVICES", r)
    rs.add("nat", "KUBE-SERVICES", '-m comment --comment "kubernetes service nodeports; NOTE: this must be the last '
                                   'rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS')
    for r in nodeports:
        rs.add("nat", "KUBE-NODEPORTS", r)
    for r in filt_svc:
        rs.add("filter", "KUBE-SERVICES", r)
    for r in filt_ext:
        rs.add("filter", "KUBE-EXTERNAL-SERVICES", r)
    rs.add("nat", "KUBE-MARK-MASQ", f"-j MARK --set-xmark {MASQ_MARK}/{MASQ_MARK}")
    rs.add("nat", "KUBE-POSTROUTING", f"-m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN")
    rs.add("nat", "KUBE-POSTROUTING", f"-j MARK --set-xmark {MASQ_MARK}/0x0")
    rs.add("nat", "KUBE-POSTROUTING", '-m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully')
    rs.add("nat", "NANOKUBE-EGRESS", f'-s {cluster_cidr} ! -d {cluster_cidr} -m comment --comment "pod traffic leaving '
                                     f'the cluster" -j MASQUERADE')
    rs.add("filter", "KUBE-FORWARD", '-m conntrack --ctstate INVALID -j DROP')
    rs.add("filter", "KUBE-FORWARD", f'-m comment --comment "kubernetes forwarding rules" -m mark --mark {MASQ_MARK}/{MASQ_MARK} -j ACCEPT')
    rs.add("filter", "KUBE-FORWARD", '-m comment --comment "kubernetes forwarding conntrack rule" -m conntrack '
                                     '--ctstate RELATED,ESTABLISHED -j ACCEPT')
    return rs


def restore_input(rs: Ruleset) -> str:
    """The whole ruleset as ``iptables-restore --noflush`` input (every chain rewritten)."""
    return render_restore(rs.chains, changed=set(rs.chains), delete=set())
