"""kube-proxy's iptables rules as a pure function: (services, endpoints) → chains.

The layout, chain names and rule text follow upstream's iptables proxier, so
``iptables-save`` on a nanokube node reads like one on a Kubernetes node:
nat PREROUTING/OUTPUT → KUBE-SERVICES → KUBE-SVC-<hash> (ClusterIP) or, for local addresses,
KUBE-NODEPORTS → KUBE-EXT-<hash> → KUBE-SVC-<hash>; KUBE-SVC balances over KUBE-SEP-<hash>
chains with ``statistic --mode random --probability 1/(n-i)``; KUBE-SEP DNATs and marks
hairpin traffic; marked packets are masqueraded in KUBE-POSTROUTING. Services without ready
endpoints are rejected in the filter table. externalIPs and load-balancer IPs jump to KUBE-EXT
like NodePorts; ``externalTrafficPolicy: Local`` adds KUBE-SVL-<hash> (local endpoints only, no
SNAT) and drops outside traffic on nodes without one; ClientIP affinity uses ``-m recent``.
Rules are written exactly as ``iptables-save`` prints them back, so a restarted proxier's diff
against the kernel is empty. Also pure: which UDP flows need a conntrack flush (stale_udp)
and which load-balancer IPs this node holds (lb_addresses).
"""
from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from typing import Any

from nanokube.host.iptables import canonical_chains, render_restore

Obj = dict[str, Any]
# (table, chain) → rules (argument strings, without "-A CHAIN")
Chains = dict[tuple[str, str], list[str]]

MASQ_MARK = "0x4000"
BASE_CHAINS = {
    "nat": ["KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ", "NANOKUBE-EGRESS",
            "KUBE-HOSTPORTS"],
    "filter": ["KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-FORWARD"],
}
# Jumps from the built-in chains into ours: (table, builtin chain, rule).
JUMPS = [
    ("nat", "PREROUTING", '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES'),
    ("nat", "OUTPUT", '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES'),
    ("nat", "PREROUTING", '-m comment --comment "kube hostport portals" -m addrtype --dst-type LOCAL -j KUBE-HOSTPORTS'),
    ("nat", "OUTPUT", '-m comment --comment "kube hostport portals" -m addrtype --dst-type LOCAL -j KUBE-HOSTPORTS'),
    ("nat", "POSTROUTING", '-m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING'),
    ("nat", "POSTROUTING", '-m comment --comment "nanokube pod egress" -j NANOKUBE-EGRESS'),
    ("filter", "FORWARD", '-m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD'),
    ("filter", "FORWARD", '-m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES'),
    ("filter", "OUTPUT", '-m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES'),
    ("filter", "INPUT", '-m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES'),
    ("filter", "FORWARD", '-m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES'),
]


def _hash(s: str) -> str:
    # the first 16 base32 characters encode exactly the first 10 bytes of the digest
    return base64.b32encode(hashlib.sha256(s.encode()).digest()[:10]).decode()


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
    # UDP (service address, endpoint) pairs, for conntrack clean-up when one goes away
    udp: set["UdpFlow"] = field(default_factory=set)
    # ``chains`` as iptables-save prints them back (what a diff against the kernel compares)
    canonical: Chains = field(default_factory=dict)
    # With a render cache: the owned chains whose rules may differ from the previous render
    # with the same cache — those of services rendered again or gone, before and after; every
    # other owned chain is the same as last time. None without a cache.
    touched: set[tuple[str, str]] | None = None
    # the chains no service owns (base chains, hostports): compare them every time, together
    # with last time's (which the caller remembers)
    loose: set[tuple[str, str]] = field(default_factory=set)

    def add(self, table: str, chain: str, rule: str | None = None, *, owner: str | None = None) -> None:
        self.chains.setdefault((table, chain), [])
        if rule is not None:
            self.chains[(table, chain)].append(rule)
        if owner:
            self.owners.setdefault(owner, set()).add((table, chain))


@dataclass(frozen=True)
class Endpoint:
    addr: str            # "ip:port"
    node: str | None     # nodeName, if the Endpoints carry it

    @property
    def ip(self) -> str:
        return self.addr.rsplit(":", 1)[0]


def _endpoints(ep: Obj | None, port_name_: str, protocol: str) -> list[Endpoint]:
    """Ready endpoints of one service port. (v1 Endpoints carry no terminating state — the
    endpoints controller leaves terminating pods out — so there is no terminating fallback.)"""
    ready = set()
    for s in (ep or {}).get("subsets") or []:
        port = next((p["port"] for p in s.get("ports") or [] if (p.get("name") or "") == port_name_
                     and p.get("protocol", "TCP") == protocol), None)
        if port is None:
            continue
        ready |= {Endpoint(f"{a['ip']}:{port}", a.get("nodeName")) for a in s.get("addresses") or []}
    return sorted(ready, key=lambda e: e.addr)


def svl_chain(spn: str, protocol: str) -> str:
    return "KUBE-SVL-" + _hash(spn + protocol.lower())


def external_ips(svc: Obj) -> list[str]:
    """externalIPs plus, for type LoadBalancer, the allocated ingress IPs (in that order)."""
    spec = svc.get("spec") or {}
    out = list(spec.get("externalIPs") or [])
    if spec.get("type") == "LoadBalancer":
        out += [i["ip"] for i in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or [] if i.get("ip")]
    return out


@dataclass(frozen=True)
class UdpFlow:
    """A (service address, endpoint) pair whose conntrack entries must go when it disappears:
    ``dst`` None means "any local address" (a NodePort)."""
    dst: str | None
    port: int
    endpoint_ip: str | None  # None: the service had no endpoints (entries without DNAT)


def _balance(rs: Ruleset, chain: str, spn: str, p: str, targets: list[Endpoint], *, owner: str,
             affinity: int | None, seps: list[str]) -> None:
    """Rules of a KUBE-SVC/KUBE-SVL chain spreading over ``targets`` (their KUBE-SEP chains
    ``seps``), and ``recent`` affinity."""
    n = len(targets)
    if affinity is not None:
        for t, sep in zip(targets, seps):
            rs.add("nat", chain, f'-m comment --comment "{spn} -> {t.addr}" -m recent --rcheck --seconds {affinity} '
                                 f'--reap --name {sep} --mask 255.255.255.255 --rsource -j {sep}', owner=owner)
    for i, (t, sep) in enumerate(zip(targets, seps)):
        if i < n - 1:
            rs.add("nat", chain, f'-m comment --comment "{spn} -> {t.addr}" -m statistic --mode random '
                                 f'--probability {1.0 / (n - i):.10f} -j {sep}', owner=owner)
        else:
            rs.add("nat", chain, f'-m comment --comment "{spn} -> {t.addr}" -j {sep}', owner=owner)


def _sep(rs: Ruleset, spn: str, p: str, t: Endpoint, sep: str, *, owner: str, affinity: int | None) -> None:
    if ("nat", sep) in rs.chains:
        return
    rs.add("nat", sep, f'-s {t.ip}/32 -m comment --comment "{spn}" -j KUBE-MARK-MASQ', owner=owner)
    rec = f"-m recent --set --name {sep} --mask 255.255.255.255 --rsource " if affinity is not None else ""
    rs.add("nat", sep, f'-p {p} -m comment --comment "{spn}" {rec}-m {p} -j DNAT --to-destination {t.addr}', owner=owner)


@dataclass
class ServicePart:
    """One service's share of the ruleset: the chains it owns and its rules in the shared
    chains. Cached per service by the proxier, so one endpoint change re-renders one service."""
    chains: Chains = field(default_factory=dict)
    canonical: Chains = field(default_factory=dict)   # ``chains`` as iptables-save prints them
    nat_svc: list[str] = field(default_factory=list)
    filt_svc: list[str] = field(default_factory=list)
    filt_ext: list[str] = field(default_factory=list)
    nodeports: list[str] = field(default_factory=list)
    udp: set["UdpFlow"] = field(default_factory=set)
    keys: frozenset[tuple[str, str]] = frozenset()    # the chains it owns


def render_service(svc: Obj, ep: Obj | None, *, cluster_cidr: str = "10.244.0.0/16",
                   node_name: str | None = None) -> ServicePart:
    """The rules of one service (pure)."""
    part = ServicePart()
    rs = Ruleset()
    nat_svc, filt_svc, filt_ext, nodeports = part.nat_svc, part.filt_svc, part.filt_ext, part.nodeports
    spec = svc.get("spec") or {}
    ip = spec.get("clusterIP")
    if not ip or ip == "None" or spec.get("type") == "ExternalName":
        return part
    ns, name = svc["metadata"].get("namespace", "default"), svc["metadata"]["name"]
    owner = f"{ns}/{name}"
    ext_ips = external_ips(svc)
    affinity = None
    if spec.get("sessionAffinity") == "ClientIP":
        affinity = int(((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get("timeoutSeconds")
                       or 10800)
    for sp in spec.get("ports") or []:
        proto = sp.get("protocol", "TCP")
        p = proto.lower()
        spn = port_name(ns, name, sp.get("name") or "")
        targets = _endpoints(ep, sp.get("name") or "", proto)
        np_ = sp.get("nodePort") if spec.get("type") in ("NodePort", "LoadBalancer") else None
        external = bool(np_ or ext_ips)
        local_policy = external and spec.get("externalTrafficPolicy") == "Local"
        if p == "udp":
            part.udp |= {UdpFlow(d, port, t.ip) for t in targets for d, port in
                       [(ip, sp["port"]), *((e, sp["port"]) for e in ext_ips), *([(None, np_)] if np_ else [])]}
        if not targets:
            if p == "udp":
                part.udp.add(UdpFlow(ip, sp["port"], None))
            filt_svc.append(f'-d {ip}/32 -p {p} -m comment --comment "{spn} has no endpoints" -m {p} '
                            f'--dport {sp["port"]} -j REJECT --reject-with icmp-port-unreachable')
            for e in ext_ips:
                filt_ext.append(f'-d {e}/32 -p {p} -m comment --comment "{spn} has no endpoints" -m {p} '
                                f'--dport {sp["port"]} -j REJECT --reject-with icmp-port-unreachable')
            if np_:
                filt_ext.append(f'-p {p} -m comment --comment "{spn} has no endpoints" -m addrtype --dst-type LOCAL '
                                f'-m {p} --dport {np_} -j REJECT --reject-with icmp-port-unreachable')
            continue
        svc_c = svc_chain(spn, proto)
        nat_svc.append(f'-d {ip}/32 -p {p} -m comment --comment "{spn} cluster IP" -m {p} --dport {sp["port"]} -j {svc_c}')
        rs.add("nat", svc_c, f'! -s {cluster_cidr} -d {ip}/32 -p {p} -m comment --comment "{spn} cluster IP" '
                             f'-m {p} --dport {sp["port"]} -j KUBE-MARK-MASQ', owner=owner)
        seps = {t.addr: sep_chain(spn, proto.upper(), t.addr) for t in targets}
        _balance(rs, svc_c, spn, p, targets, owner=owner, affinity=affinity, seps=[seps[t.addr] for t in targets])
        for t in targets:
            _sep(rs, spn, p, t, seps[t.addr], owner=owner, affinity=affinity)
        if not external:
            continue
        ext = ext_chain(spn, proto)
        for e in ext_ips:
            kind = "external IP" if e in (spec.get("externalIPs") or []) else "loadbalancer IP"
            nat_svc.append(f'-d {e}/32 -p {p} -m comment --comment "{spn} {kind}" -m {p} --dport {sp["port"]} -j {ext}')
        if np_:
            nodeports.append(f'-p {p} -m comment --comment "{spn}" -m {p} --dport {np_} -j {ext}')
        if not local_policy:
            rs.add("nat", ext, f'-m comment --comment "masquerade traffic for {spn} external destinations" '
                               f'-j KUBE-MARK-MASQ', owner=owner)
            rs.add("nat", ext, f"-j {svc_c}", owner=owner)
            continue
        # externalTrafficPolicy: Local — pods and the node itself still reach every
        # endpoint; outside clients only local ones, unmasqueraded (source IP kept).
        rs.add("nat", ext, f'-s {cluster_cidr} -m comment --comment "pod traffic for {spn} external destinations" '
                           f'-j {svc_c}', owner=owner)
        rs.add("nat", ext, f'-m comment --comment "masquerade LOCAL traffic for {spn} external destinations" '
                           f'-m addrtype --src-type LOCAL -j KUBE-MARK-MASQ', owner=owner)
        rs.add("nat", ext, f'-m comment --comment "route LOCAL traffic for {spn} external destinations" '
                           f'-m addrtype --src-type LOCAL -j {svc_c}', owner=owner)
        local = [t for t in targets if node_name and t.node == node_name]
        if local:
            svl = svl_chain(spn, proto)
            rs.add("nat", ext, f"-j {svl}", owner=owner)
            _balance(rs, svl, spn, p, local, owner=owner, affinity=affinity, seps=[seps[t.addr] for t in local])
        else:
            # no local endpoint: outside traffic is dropped, as upstream
            for e in ext_ips:
                filt_ext.append(f'-d {e}/32 -p {p} -m comment --comment "{spn} has no local endpoints" -m {p} '
                                f'--dport {sp["port"]} -j DROP')
            if np_:
                filt_ext.append(f'-p {p} -m comment --comment "{spn} has no local endpoints" -m addrtype '
                                f'--dst-type LOCAL -m {p} --dport {np_} -j DROP')
    part.chains = rs.chains
    part.canonical = canonical_chains(rs.chains)
    part.keys = frozenset(rs.chains)
    return part


def _cache_key(svc: Obj, ep: Obj | None, cluster_cidr: str, node_name: str | None) -> tuple | None:
    """What decides a service's rules, by resourceVersion (None: objects without one, never cached)."""
    rv = svc["metadata"].get("resourceVersion")
    erv = "-" if ep is None else (ep.get("metadata") or {}).get("resourceVersion")
    if not rv or not erv:
        return None
    return rv, erv, cluster_cidr, node_name


def hostport_chain(pod_key: str, protocol: str, port: int) -> str:
    return "KUBE-HP-" + _hash(f"{pod_key}{protocol.lower()}{port}")


def render_hostports(rs: Ruleset, pods: list[Obj]) -> None:
    """``hostPort``s of this node's running pods, as the kubelet's hostport manager wrote them:
    KUBE-HOSTPORTS matches the port on the node's own addresses (or the given hostIP) and
    jumps to a KUBE-HP chain that DNATs to the pod (and marks the pod's own hairpin traffic
    for masquerade). hostNetwork pods already listen on the node and need nothing."""
    for pod in sorted(pods, key=lambda p: (p["metadata"].get("namespace", ""), p["metadata"]["name"])):
        spec, st = pod.get("spec") or {}, pod.get("status") or {}
        ip = st.get("podIP")
        if spec.get("hostNetwork") or not ip or st.get("phase") in ("Succeeded", "Failed") \
                or pod["metadata"].get("deletionTimestamp"):
            continue
        key = f"{pod['metadata'].get('namespace', '')}_{pod['metadata']['name']}"
        for c in spec.get("containers") or []:
            for port in c.get("ports") or []:
                hp = port.get("hostPort")
                if not hp:
                    continue
                proto = (port.get("protocol") or "TCP").lower()
                chain = hostport_chain(key, proto, hp)
                comment = f'-m comment --comment "{key} hostport {hp}"'
                host_ip = port.get("hostIP")
                dst = f"-d {host_ip}/32 " if host_ip and host_ip != "0.0.0.0" else ""
                rs.add("nat", "KUBE-HOSTPORTS", f"{dst}-p {proto} {comment} -m {proto} --dport {hp} -j {chain}")
                rs.add("nat", chain, f"-s {ip}/32 {comment} -j KUBE-MARK-MASQ")
                rs.add("nat", chain, f"-p {proto} {comment} -m {proto} -j DNAT --to-destination "
                                     f"{ip}:{port.get('containerPort')}")


@dataclass
class RenderCache:
    """What ``render`` keeps between calls (the caller holds it): each service's rendered part
    by its objects' resourceVersions, and the last assembled ruleset, so that a call where k
    services changed costs one pass over the resourceVersions plus the work for those k."""
    parts: dict[tuple[str, str], tuple[tuple | None, ServicePart]] = field(default_factory=dict)
    last: Ruleset | None = None
    # the last ruleset's shared chains (built from every part, in service order) before
    # hostports were added, and their canonical text
    shared: Chains = field(default_factory=dict)
    shared_canonical: Chains = field(default_factory=dict)
    shared_cidr: str | None = None

    def rebuild_shared(self, cluster_cidr: str) -> None:
        """The shared chains from every known part, in service order."""
        self.shared = _shared_chains([self.parts[k][1] for k in sorted(self.parts)], cluster_cidr)
        self.shared_canonical, self.shared_cidr = canonical_chains(self.shared), cluster_cidr


def _shared_view(part: ServicePart) -> tuple:
    return part.nat_svc, part.filt_svc, part.filt_ext, part.nodeports


def _shared_chains(parts: list[ServicePart], cluster_cidr: str) -> Chains:
    """The chains no service owns, from every part in service order (hostports aside)."""
    nat_svc: list[str] = []
    filt_svc: list[str] = []
    filt_ext: list[str] = []
    nodeports: list[str] = []
    for part in parts:
        nat_svc += part.nat_svc
        filt_svc += part.filt_svc
        filt_ext += part.filt_ext
        nodeports += part.nodeports
    shared = Ruleset()
    for table, chains in BASE_CHAINS.items():
        for c in chains:
            shared.add(table, c)
    ch = shared.chains
    ch[("nat", "KUBE-SERVICES")] += nat_svc
    shared.add("nat", "KUBE-SERVICES", '-m comment --comment "kubernetes service nodeports; NOTE: this must be the '
                                       'last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS')
    ch[("nat", "KUBE-NODEPORTS")] += nodeports
    ch[("filter", "KUBE-SERVICES")] += filt_svc
    ch[("filter", "KUBE-EXTERNAL-SERVICES")] += filt_ext
    shared.add("nat", "KUBE-MARK-MASQ", f"-j MARK --set-xmark {MASQ_MARK}/{MASQ_MARK}")
    shared.add("nat", "KUBE-POSTROUTING", f"-m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN")
    shared.add("nat", "KUBE-POSTROUTING", f"-j MARK --set-xmark {MASQ_MARK}/0x0")
    shared.add("nat", "KUBE-POSTROUTING", '-m comment --comment "kubernetes service traffic requiring SNAT" '
                                          '-j MASQUERADE --random-fully')
    shared.add("nat", "NANOKUBE-EGRESS", f'-s {cluster_cidr} ! -d {cluster_cidr} -m comment --comment "pod traffic '
                                         f'leaving the cluster" -j MASQUERADE')
    shared.add("filter", "KUBE-FORWARD", '-m conntrack --ctstate INVALID -j DROP')
    shared.add("filter", "KUBE-FORWARD", f'-m comment --comment "kubernetes forwarding rules" -m mark --mark '
                                         f'{MASQ_MARK}/{MASQ_MARK} -j ACCEPT')
    shared.add("filter", "KUBE-FORWARD", '-m comment --comment "kubernetes forwarding conntrack rule" -m conntrack '
                                         '--ctstate RELATED,ESTABLISHED -j ACCEPT')
    return ch


def render(services: list[Obj], endpoints: list[Obj], *, cluster_cidr: str = "10.244.0.0/16",
           node_name: str | None = None, cache: RenderCache | None = None,
           pods: list[Obj] | None = None) -> Ruleset:
    """All of kube-proxy's chains for ``services``/``endpoints`` as seen from ``node_name``
    (which decides the local endpoints of ``externalTrafficPolicy: Local`` services).
    With ``cache`` (kept by the caller between calls), a service whose object and Endpoints
    have the same resourceVersions as last time is not rendered again, the last ruleset is
    patched rather than assembled anew, and ``touched`` says which chains may have changed
    since the previous call. ``pods`` (this node's) add their hostPort rules. The result's
    dicts and lists are never changed afterwards (the next call copies what it patches)."""
    eps = {(e["metadata"].get("namespace"), e["metadata"]["name"]): e for e in endpoints}
    if cache is None:
        parts = []
        for svc in sorted(services, key=lambda s: (s["metadata"].get("namespace", "default"), s["metadata"]["name"])):
            md = svc["metadata"]
            parts.append(((md.get("namespace", "default"), md["name"]),
                          render_service(svc, eps.get((md.get("namespace", "default"), md["name"])),
                                         cluster_cidr=cluster_cidr, node_name=node_name)))
        rs = _assemble(parts, _shared_chains([p for _, p in parts], cluster_cidr), None, pods)
        return rs
    # which services changed since the last call
    changed: dict[tuple[str, str], tuple[ServicePart | None, ServicePart]] = {}  # key → (old part, new part)
    seen = set()
    known = cache.parts
    for svc in services:
        md = svc["metadata"]
        k = (md.get("namespace", "default"), md["name"])
        ep = eps.get(k)
        key = _cache_key(svc, ep, cluster_cidr, node_name)
        hit = known.get(k)
        seen.add(k)
        if key is not None and hit is not None and hit[0] == key:
            continue
        part = render_service(svc, ep, cluster_cidr=cluster_cidr, node_name=node_name)
        # kept even when it cannot be reused (no resourceVersion), so that its chains are
        # known when it changes or goes
        known[k] = (key, part)
        changed[k] = (hit[1] if hit is not None else None, part)
    gone = {k: known.pop(k)[1] for k in [k for k in known if k not in seen]}
    touched: set[tuple[str, str]] = set()
    for old, new in changed.values():
        if old is not None:
            touched |= old.keys
        touched |= new.keys
    for old in gone.values():
        touched |= old.keys
    last = cache.last
    if last is None:
        cache.rebuild_shared(cluster_cidr)
        rs = _assemble([(k, known[k][1]) for k in sorted(known)], cache.shared, cache.shared_canonical, pods)
    else:
        # patch the last ruleset: the chains of changed and gone services, then the shared ones
        rs = Ruleset(chains=dict(last.chains), canonical=dict(last.canonical), owners=dict(last.owners),
                     udp=last.udp)
        for key in last.loose:
            del rs.chains[key], rs.canonical[key]
        for k, (old, new) in changed.items():
            if old is not None:
                for key in old.keys:
                    del rs.chains[key], rs.canonical[key]
        for k, old in gone.items():
            for key in old.keys:
                del rs.chains[key], rs.canonical[key]
            rs.owners.pop(f"{k[0]}/{k[1]}", None)
        for k, (old, new) in changed.items():
            rs.chains.update(new.chains)
            rs.canonical.update(new.canonical)
            if new.chains:
                rs.owners[f"{k[0]}/{k[1]}"] = new.keys
            else:
                rs.owners.pop(f"{k[0]}/{k[1]}", None)
        if gone or cluster_cidr != cache.shared_cidr or any(
                old is None or _shared_view(old) != _shared_view(new) for old, new in changed.values()):
            cache.rebuild_shared(cluster_cidr)
        if gone or any(old is None or old.udp != new.udp for old, new in changed.values()):
            rs.udp = set().union(*(p.udp for _, p in known.values() if p.udp))
        _add_loose(rs, cache.shared, cache.shared_canonical, pods)
    rs.touched = touched
    cache.last = rs
    return rs


def _assemble(parts: list[tuple[tuple[str, str], ServicePart]], shared: Chains, shared_canonical: Chains | None,
              pods: list[Obj] | None) -> Ruleset:
    rs = Ruleset()
    for (ns, name), part in parts:
        if part.chains:
            rs.chains.update(part.chains)
            rs.canonical.update(part.canonical)
            rs.owners[f"{ns}/{name}"] = part.keys
        if part.udp:
            rs.udp |= part.udp
    _add_loose(rs, shared, shared_canonical if shared_canonical is not None else canonical_chains(shared), pods)
    return rs


def _add_loose(rs: Ruleset, shared: Chains, shared_canonical: Chains, pods: list[Obj] | None) -> None:
    """Add the chains no service owns: ``shared`` (as is: never changed afterwards) and the
    hostport rules of ``pods`` (rendered every time, into copies of what they extend)."""
    rs.chains.update(shared)
    rs.canonical.update(shared_canonical)
    rs.loose = set(shared)
    if pods:
        hp = Ruleset(chains={("nat", "KUBE-HOSTPORTS"): []})
        render_hostports(hp, pods)
        if hp.chains[("nat", "KUBE-HOSTPORTS")]:
            base = ("nat", "KUBE-HOSTPORTS")
            hp.chains[base] = shared[base] + hp.chains[base]
            rs.chains.update(hp.chains)
            rs.canonical.update(canonical_chains(hp.chains))
            rs.loose |= set(hp.chains)


def node_ready(node: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (node.get("status") or {}).get("conditions") or [])


def lb_addresses(services: list[Obj], endpoints: list[Obj], nodes: list[Obj], *, node_name: str) -> set[str]:
    """The load-balancer ingress IPs ``node_name`` must answer for (MetalLB's L2 mode: one
    node owns each IP, so one node answers ARP for it on the lan). The owner is the first
    Ready node by name — for ``externalTrafficPolicy: Local``, the first Ready node with a
    ready endpoint of the service, so traffic lands where it is not dropped."""
    ready = sorted(n["metadata"]["name"] for n in nodes if node_ready(n))
    eps = {(e["metadata"].get("namespace"), e["metadata"]["name"]): e for e in endpoints}
    out = set()
    for svc in services:
        spec = svc.get("spec") or {}
        if spec.get("type") != "LoadBalancer" or not ready:
            continue
        ips = [i["ip"] for i in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or [] if i.get("ip")]
        if not ips:
            continue
        candidates = ready
        if spec.get("externalTrafficPolicy") == "Local":
            ep = eps.get((svc["metadata"].get("namespace"), svc["metadata"]["name"])) or {}
            with_eps = {a.get("nodeName") for s in ep.get("subsets") or [] for a in s.get("addresses") or []}
            candidates = [n for n in ready if n in with_eps] or ready
        if candidates[0] == node_name:
            out |= set(ips)
    return out


def stale_udp(old: set[UdpFlow], new: set[UdpFlow]) -> list[list[str]]:
    """``conntrack`` arguments deleting the entries of UDP flows that no longer exist: an
    endpoint removed (entries DNATed to it), or a service that gained its first endpoint
    (entries made while it had none would otherwise keep bypassing the DNAT)."""
    out = []
    new_svcs = {(f.dst, f.port) for f in new if f.endpoint_ip}
    for f in sorted(old - new, key=lambda f: (f.dst or "", f.port, f.endpoint_ip or "")):
        if f.endpoint_ip is None:
            if (f.dst, f.port) in new_svcs:
                out.append(["-D", "-p", "udp", "--orig-dst", f.dst, "--orig-port-dst", str(f.port)])
            continue
        dst = ["--orig-dst", f.dst] if f.dst else []
        out.append(["-D", "-p", "udp", *dst, "--orig-port-dst", str(f.port), "--dst-nat", f.endpoint_ip])
    return out


def restore_input(rs: Ruleset) -> str:
    """The whole ruleset as ``iptables-restore --noflush`` input (every chain rewritten)."""
    return render_restore(rs.chains, changed=set(rs.chains), delete=set())
