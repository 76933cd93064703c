"""NetworkPolicy (networking.k8s.io/v1) as iptables rules: a pure function from API objects to chains.

``render(policies, pods, namespaces, node_pod_ips, node_ips=...)`` returns the filter-table
chains one node needs to enforce every policy for the pods it hosts; ``policy_agent.py``
applies them. Bridged and routed pod traffic both cross the node's FORWARD chain (br_netfilter
is on), after kube-proxy's DNAT, so policy always sees pod IPs. Layout (like Calico's
workload chains, without ipset):

- ``NKNP-FORWARD`` (jumped from the top of FORWARD): ESTABLISHED/RELATED accepted first,
  traffic from the node itself returns unfiltered (kubelet probes), then a dispatch per local
  pod: ``-s podIP -j NKNP-E-<hash>`` for pods isolated for egress, ``-d podIP -j NKNP-I-<hash>``
  for pods isolated for ingress. Pods selected by no policy for a direction get no rule.
- Per-pod chains ``NKNP-I-``/``NKNP-E-<hash16(ns/name)>`` clear an accept mark, run every rule
  of every policy selecting the pod (policies are additive), RETURN if a rule set the mark,
  else DROP. A pod-to-pod packet on one node passes its source's egress chain and then its
  destination's ingress chain, so both ends are enforced in one traversal.
- Peer chains ``NKNP-P-<hash16(direction, peers[, namespace])>`` mark packets from
  (ingress, ``-s``) or to (egress, ``-d``) each peer: one rule per matching pod IP, or the
  ipBlock CIDR (through ``NKNP-B-`` with RETURNs for ``except``). Peer chains are named by the
  peers' selectors, not by the pods they match, and shared by every rule with the same peers,
  so a relabelled pod rewrites only the few peer chains that gain or lose its IP and the pod
  chains whose selection changed. Ingress named ports resolve on the target
  pod; egress named ports resolve on each destination pod (``NKNP-N-`` chains of
  ``-d IP -p proto --dport N``).

The chain prefix is ``NKNP-``, not ``NANOKUBE-``/``KUBE-``: the proxier owns (and deletes as
stale) every chain with those prefixes. Rules are written exactly as ``iptables-save`` prints
them back, so a restarted agent's diff against the kernel is empty. Also here: defaulting
(``policyTypes``, port protocol) and validation with upstream's field paths.
"""
from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
from typing import Any, Iterable

from nanokube.api.selectors import from_label_selector, matches

Obj = dict[str, Any]
Chains = dict[tuple[str, str], list[str]]

PREFIX = "NKNP-"
FORWARD_CHAIN = "NKNP-FORWARD"
JUMP = ("filter", "FORWARD", '-m comment --comment "nanokube network policies" -j NKNP-FORWARD')
MARK = "0x10000"  # one bit of the packet mark: "some rule of some policy allowed this"
SET_MARK = f"-j MARK --set-xmark {MARK}/{MARK}"
CLEAR_MARK = f"-j MARK --set-xmark 0x0/{MARK}"
PROTOCOLS = ("TCP", "UDP", "SCTP")
NS_NAME_LABEL = "kubernetes.io/metadata.name"


def _hash(s: str) -> str:
    return base64.b32encode(hashlib.sha256(s.encode()).digest()).decode()[:16]


def pod_chain(namespace: str, name: str, direction: str) -> str:
    return f"{PREFIX}{'I' if direction == 'ingress' else 'E'}-{_hash(f'{namespace}/{name}')}"


def peer_chain(namespace: str, direction: str, peers: list[Obj]) -> str:
    """Named by what the peers say (their selectors, and the policy's namespace where a bare
    podSelector makes it matter), not by which pods they match: rules with the same peers
    share a chain, and a relabelled pod changes the chain's rules, never its name."""
    scoped = any(p.get("namespaceSelector") is None and p.get("ipBlock") is None for p in peers)
    text = json.dumps(peers, sort_keys=True, separators=(",", ":"))
    scope = namespace if scoped else ""
    return f"{PREFIX}P-{_hash(f'{scope}/{direction}/{text}')}"


def named_chain(namespace: str, policy: str, index: int) -> str:
    return f"{PREFIX}N-{_hash(f'{namespace}/{policy}/egress/{index}')}"


def block_chain(cidr: str, excepts: Iterable[str], direction: str) -> str:
    return f"{PREFIX}B-{_hash(direction + cidr + ','.join(sorted(excepts)))}"


# ---- defaulting and validation (apiserver side) -------------------------------------------

def policy_types(spec: Obj) -> list[str]:
    """spec.policyTypes, or upstream's implied value: Ingress always, Egress if egress rules exist."""
    if spec.get("policyTypes"):
        return list(spec["policyTypes"])
    return ["Ingress"] + (["Egress"] if spec.get("egress") else [])


def apply_defaults(o: Obj) -> None:
    """As upstream's SetDefaults_NetworkPolicy: policyTypes filled in, port protocols TCP."""
    spec = o.setdefault("spec", {})
    spec.setdefault("podSelector", {})
    spec["policyTypes"] = policy_types(spec)
    for direction in ("ingress", "egress"):
        for rule in spec.get(direction) or []:
            for p in (rule or {}).get("ports") or []:
                if isinstance(p, dict):
                    p.setdefault("protocol", "TCP")


def _cause(causes: list[dict[str, str]], reason: str, field: str, message: str) -> None:
    causes.append({"reason": reason, "message": f"{field}: {message}", "field": field})


def _check_cidr(causes: list[dict[str, str]], value: Any, field: str) -> Any:
    """The parsed network, or None after recording why ``value`` is not a CIDR."""
    if not isinstance(value, str) or not value:
        _cause(causes, "FieldValueRequired", field, "Required value")
        return None
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        _cause(causes, "FieldValueInvalid", field,
               f'Invalid value: "{value}": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)')
        return None


def validate(causes: list[dict[str, str]], o: Obj) -> None:
    """Upstream ValidateNetworkPolicySpec: peers, ports, ipBlocks and policyTypes."""
    spec = o.get("spec") or {}
    types = spec.get("policyTypes") or []
    for i, t in enumerate(types):
        if t not in ("Ingress", "Egress"):
            _cause(causes, "FieldValueNotSupported", f"spec.policyTypes[{i}]",
                   f'Unsupported value: "{t}": supported values: "Ingress", "Egress"')
    if len(types) > 2 or len(set(types)) != len(types):
        _cause(causes, "FieldValueInvalid", "spec.policyTypes", f"Invalid value: {types}: may not have more than 2 "
               "elements" if len(types) > 2 else f"Duplicate value: {types}")
    for direction, peers_key in (("ingress", "from"), ("egress", "to")):
        for i, rule in enumerate(spec.get(direction) or []):
            rule = rule or {}
            base = f"spec.{direction}[{i}]"
            for j, p in enumerate(rule.get("ports") or []):
                f = f"{base}.ports[{j}]"
                proto = p.get("protocol", "TCP")
                if proto not in PROTOCOLS:
                    _cause(causes, "FieldValueNotSupported", f"{f}.protocol",
                           f'Unsupported value: "{proto}": supported values: "SCTP", "TCP", "UDP"')
                port, end = p.get("port"), p.get("endPort")
                if isinstance(port, int):
                    if not 1 <= port <= 65535:
                        _cause(causes, "FieldValueInvalid", f"{f}.port",
                               f"Invalid value: {port}: must be between 1 and 65535, inclusive")
                elif isinstance(port, str):
                    if not port or len(port) > 15 or not all(c.isalnum() or c == "-" for c in port) \
                            or not any(c.isalpha() for c in port):
                        _cause(causes, "FieldValueInvalid", f"{f}.port", f'Invalid value: "{port}": must be a '
                               "valid port name (IANA_SVC_NAME)")
                if end is not None:
                    if not isinstance(port, int):
                        _cause(causes, "FieldValueInvalid", f"{f}.endPort",
                               f"Invalid value: {end}: may not be specified when `port` is non-numeric"
                               if port is not None else f"Invalid value: {end}: may not be specified when `port` "
                               "is not specified")
                    elif not isinstance(end, int) or end < port:
                        _cause(causes, "FieldValueInvalid", f"{f}.endPort",
                               f"Invalid value: {end}: must be greater than or equal to `port`")
            for j, peer in enumerate(rule.get(peers_key) or []):
                f = f"{base}.{peers_key}[{j}]"
                peer = peer or {}
                sel = [k for k in ("podSelector", "namespaceSelector") if peer.get(k) is not None]
                if peer.get("ipBlock") is not None:
                    if sel:
                        _cause(causes, "FieldValueForbidden", f, "Forbidden: may not specify more than 1 peer type")
                    b = peer["ipBlock"] or {}
                    net = _check_cidr(causes, b.get("cidr"), f"{f}.ipBlock.cidr")
                    for k, e in enumerate(b.get("except") or []):
                        ex = _check_cidr(causes, e, f"{f}.ipBlock.except[{k}]")
                        if net is not None and ex is not None and (
                                ex.version != net.version or not ex.subnet_of(net) or ex.prefixlen <= net.prefixlen):
                            _cause(causes, "FieldValueInvalid", f"{f}.ipBlock.except[{k}]",
                                   f'Invalid value: "{e}": must be a strict subset of `cidr`')
                elif not sel:
                    _cause(causes, "FieldValueRequired", f, "Required value: must specify a peer")
                for k in sel:
                    for m, e in enumerate((peer[k] or {}).get("matchExpressions") or []):
                        if e.get("operator") not in ("In", "NotIn", "Exists", "DoesNotExist"):
                            _cause(causes, "FieldValueNotSupported", f"{f}.{k}.matchExpressions[{m}].operator",
                                   f'Unsupported value: "{e.get("operator")}": supported values: "In", "NotIn", '
                                   '"Exists", "DoesNotExist"')


# ---- rendering ------------------------------------------------------------------------------

def _ip(pod: Obj) -> str | None:
    """The pod's IP if it takes part in pod networking (running, not hostNetwork)."""
    st = pod.get("status") or {}
    if (pod.get("spec") or {}).get("hostNetwork") or st.get("phase") in ("Succeeded", "Failed"):
        return None
    return st.get("podIP") or None


def _ns_labels(namespaces: dict[str, Obj], name: str) -> dict[str, str]:
    ns = namespaces.get(name) or {}
    return {**((ns.get("metadata") or {}).get("labels") or {}), NS_NAME_LABEL: name}


def _net(cidr: str) -> str:
    n = ipaddress.ip_network(cidr, strict=False)
    return f"{n.network_address}/{n.prefixlen}"


def _port_match(protocol: str, port: int | None, end: int | None, *, dest: str = "") -> str:
    p = protocol.lower()
    dst = f"-d {dest}/32 " if dest else ""
    if port is None:
        return f"{dst}-p {p}"
    rng = f"{port}:{end}" if end is not None and end != port else f"{port}"
    return f"{dst}-p {p} -m {p} --dport {rng}"


def _named_ports(pod: Obj) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("name"):
                out.setdefault((p["name"], p.get("protocol", "TCP")), int(p["containerPort"]))
    return out


class _View:
    """Indexes over the inputs that every rule needs: pods with IPs and namespace labels."""

    def __init__(self, pods: list[Obj], namespaces: list[Obj]):
        self.namespaces = {n["metadata"]["name"]: n for n in namespaces}
        self.pods = [(p, ip) for p in pods if (ip := _ip(p))]
        self.by_ns: dict[str, list[tuple[Obj, str]]] = {}
        for p, ip in self.pods:
            self.by_ns.setdefault(p["metadata"].get("namespace", "default"), []).append((p, ip))
        self._ns_labels: dict[str, dict[str, str]] = {}
        self._peers: dict[tuple[str, str], list[tuple[Obj, str]]] = {}

    def ns_labels(self, name: str) -> dict[str, str]:
        if name not in self._ns_labels:
            self._ns_labels[name] = _ns_labels(self.namespaces, name)
        return self._ns_labels[name]

    def peer_pods(self, peer: Obj, policy_ns: str) -> list[tuple[Obj, str]]:
        """Pods (with IPs) a pod/namespace-selector peer selects (memoized: policies share peers)."""
        key = (policy_ns if peer.get("namespaceSelector") is None else "", repr(
            (peer.get("podSelector"), peer.get("namespaceSelector"))))
        if key in self._peers:
            return self._peers[key]
        pod_sel = from_label_selector(peer["podSelector"]) if peer.get("podSelector") is not None else None
        ns_sel = from_label_selector(peer["namespaceSelector"]) if peer.get("namespaceSelector") is not None else None
        out = []
        for ns, members in self.by_ns.items():
            if (ns != policy_ns) if ns_sel is None else not matches(self.ns_labels(ns), ns_sel):
                continue
            out += members if not pod_sel else [(p, ip) for p, ip in members
                                                 if matches(p["metadata"].get("labels"), pod_sel)]
        self._peers[key] = out
        return out


def _in_block(ip: str, block: Obj) -> bool:
    a = ipaddress.ip_address(ip)
    try:
        net = ipaddress.ip_network(block["cidr"], strict=False)
    except (KeyError, ValueError):
        return False
    if a.version != net.version or a not in net:
        return False
    return not any(a in ipaddress.ip_network(e, strict=False) for e in block.get("except") or []
                   if ipaddress.ip_network(e, strict=False).version == a.version)


def render(policies: list[Obj], pods: list[Obj], namespaces: list[Obj], node_pod_ips: set[str], *,
           node_ips: Iterable[str] = ()) -> Chains:
    """Every NKNP-* chain of the filter table for a node whose pods have ``node_pod_ips``.

    ``policies``/``pods``/``namespaces`` are the cluster's objects (peers may live anywhere);
    only pods whose IP is in ``node_pod_ips`` get dispatch rules and per-pod chains here.
    ``node_ips`` are this node's own addresses, always allowed (kubelet probes)."""
    view = _View(pods, namespaces)
    chains: Chains = {}
    fwd = ["-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"]
    fwd += [f"-s {ip}/32 -j RETURN" for ip in sorted(set(node_ips))]
    chains[("filter", FORWARD_CHAIN)] = fwd

    pols = sorted(policies, key=lambda p: (p["metadata"].get("namespace", "default"), p["metadata"]["name"]))
    # Peer chains, rendered once per (policy, direction, rule) whatever the number of targets.
    for pol in pols:
        md, spec = pol["metadata"], pol.get("spec") or {}
        pns, pname = md.get("namespace", "default"), md["name"]
        types = policy_types(spec)
        for direction, key, flag in (("ingress", "from", "-s"), ("egress", "to", "-d")):
            if direction.capitalize() not in types:
                continue
            for i, rule in enumerate(spec.get(direction) or []):
                rule = rule or {}
                peers = rule.get(key) or []
                if peers and ("filter", peer_chain(pns, direction, peers)) not in chains:
                    rules: list[str] = []
                    for peer in peers:
                        if peer.get("ipBlock") is not None:
                            b = peer["ipBlock"]
                            cidr, ex = _net(b["cidr"]), [_net(e) for e in b.get("except") or []]
                            if ex:
                                bc = block_chain(cidr, ex, direction)
                                chains[("filter", bc)] = [f"{flag} {e} -j RETURN" for e in ex] + [SET_MARK]
                                rules.append(f"{flag} {cidr} -j {bc}")
                            else:
                                rules.append(f"{flag} {cidr} {SET_MARK}")
                        else:
                            rules += [f"{flag} {ip}/32 {SET_MARK}" for _, ip in view.peer_pods(peer, pns)]
                    chains[("filter", peer_chain(pns, direction, peers))] = list(dict.fromkeys(rules))
                if direction == "egress" and any(isinstance(p.get("port"), str) for p in rule.get("ports") or []):
                    # named ports are the destination pod's: one rule per (pod, port) the peers allow
                    selected = {id(q) for p in peers if p.get("ipBlock") is None for q, _ in view.peer_pods(p, pns)}
                    blocks = [p["ipBlock"] for p in peers if p.get("ipBlock") is not None]
                    dests = [(pod, ip) for pod, ip in view.pods
                             if not peers or id(pod) in selected or any(_in_block(ip, b) for b in blocks)]
                    nrules = []
                    for pod, ip in dests:
                        named = _named_ports(pod)
                        for p in rule.get("ports") or []:
                            proto = p.get("protocol", "TCP")
                            if isinstance(p.get("port"), str) and (p["port"], proto) in named:
                                nrules.append(f"{_port_match(proto, named[(p['port'], proto)], None, dest=ip)} {SET_MARK}")
                    chains[("filter", named_chain(pns, pname, i))] = list(dict.fromkeys(nrules))

    # Per local pod: which policies select it, per direction.
    by_ns: dict[str, list[tuple[Obj, list, list[str]]]] = {}
    for p in pols:
        spec = p.get("spec") or {}
        by_ns.setdefault(p["metadata"].get("namespace", "default"), []).append(
            (p, from_label_selector(spec.get("podSelector")), policy_types(spec)))
    egress_dispatch, ingress_dispatch = [], []
    for pod, ip in sorted(view.pods, key=lambda x: x[1]):
        if ip not in node_pod_ips:
            continue
        md = pod["metadata"]
        ns, name = md.get("namespace", "default"), md["name"]
        named = _named_ports(pod)
        for direction, key in (("ingress", "from"), ("egress", "to")):
            selecting = [p for p, sel, types in by_ns.get(ns, ())
                         if direction.capitalize() in types and matches(md.get("labels"), sel)]
            if not selecting:
                continue  # not isolated in this direction
            chain = pod_chain(ns, name, direction)
            body = [CLEAR_MARK]
            for pol in selecting:
                pname, spec = pol["metadata"]["name"], pol.get("spec") or {}
                for i, rule in enumerate(spec.get(direction) or []):
                    rule = rule or {}
                    target = f"-j {peer_chain(ns, direction, rule[key])}" if rule.get(key) else SET_MARK
                    ports = rule.get("ports") or []
                    if not ports:
                        body.append(target)
                        continue
                    for p in ports:
                        proto, port = p.get("protocol", "TCP"), p.get("port")
                        if isinstance(port, str):
                            if direction == "egress":
                                body.append(f"-j {named_chain(ns, pname, i)}")
                                continue
                            if (port, proto) not in named:
                                continue  # the pod has no such port: this entry admits nothing
                            port = named[(port, proto)]
                        body.append(f"{_port_match(proto, port, p.get('endPort'))} {target}")
            body = list(dict.fromkeys(body))
            body += [f"-m mark --mark {MARK}/{MARK} -j RETURN", "-j DROP"]
            chains[("filter", chain)] = body
            if direction == "egress":
                egress_dispatch.append(f"-s {ip}/32 -j {chain}")
            else:
                ingress_dispatch.append(f"-d {ip}/32 -j {chain}")
    fwd += egress_dispatch + ingress_dispatch
    return chains
