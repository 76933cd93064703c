"""NetworkPolicy: render() judged by walking packets through the rendered chains, defaults,
validation, and the agent's incremental sync against a recording backend."""
from __future__ import annotations

import ipaddress
import shlex

import pytest

from nanokube.network import netpol
from nanokube.network.policy_agent import PolicyAgent


# ---- a tiny evaluator for exactly the rule subset render() emits -------------------------

def verdict(chains, src, dst, proto="tcp", dport=80, *, state="NEW") -> str:
    """Walk a packet from FORWARD's jump through NKNP-FORWARD: ACCEPT, DROP or PASS (fell through)."""
    pkt = {"mark": 0}

    def match(toks: list[str]) -> tuple[bool, list[str]]:
        i = 0
        while i < len(toks) and toks[i] != "-j":
            t, v = toks[i], toks[i + 1] if i + 1 < len(toks) else None
            if t in ("-s", "-d"):
                if ipaddress.ip_address(src if t == "-s" else dst) not in ipaddress.ip_network(v):
                    return False, []
                i += 2
            elif t == "-p":
                if v != proto:
                    return False, []
                i += 2
            elif t == "-m":
                i += 2
            elif t == "--dport":
                lo, _, hi = v.partition(":")
                if not int(lo) <= dport <= int(hi or lo):
                    return False, []
                i += 2
            elif t == "--ctstate":
                if state not in v.split(","):
                    return False, []
                i += 2
            elif t == "--mark":
                val, mask = (int(x, 16) for x in v.split("/"))
                if pkt["mark"] & mask != val:
                    return False, []
                i += 2
            elif t == "--comment":
                i += 2
            else:
                raise AssertionError(f"evaluator does not know {t}")
        return True, toks[i + 1:]

    def run(chain: str, depth: int = 0) -> str:
        assert depth < 10
        for rule in chains[("filter", chain)]:
            ok, target = match(shlex.split(rule))
            if not ok:
                continue
            if target[0] == "MARK":
                val, mask = (int(x, 16) for x in target[2].split("/"))
                pkt["mark"] = (pkt["mark"] & ~mask) | val
            elif target[0] in ("ACCEPT", "DROP"):
                return target[0]
            elif target[0] == "RETURN":
                return "RETURN"
            else:
                r = run(target[0], depth + 1)
                if r in ("ACCEPT", "DROP"):
                    return r
        return "RETURN"

    r = run(netpol.FORWARD_CHAIN)
    return "PASS" if r == "RETURN" else r


def pod(name, ip, *, ns="default", labels=None, ports=None, host_network=False, phase="Running"):
    c = {"name": "c", "ports": ports or []}
    return {"metadata": {"name": name, "namespace": ns, "labels": labels or {}},
            "spec": {"containers": [c], "hostNetwork": host_network, "nodeName": "n1"},
            "status": {"podIP": ip, "phase": phase}}


def pol(name, spec, *, ns="default"):
    o = {"metadata": {"name": name, "namespace": ns}, "spec": spec}
    netpol.apply_defaults(o)
    return o


def nsobj(name, **labels):
    return {"metadata": {"name": name, "labels": labels}}


WEB = pod("web", "10.244.1.2", labels={"app": "web"}, ports=[{"name": "http", "containerPort": 8080}])
FE = pod("fe", "10.244.2.3", labels={"role": "frontend"})
OTHER = pod("other", "10.244.1.4", labels={"role": "other"})
BLUE = pod("blue", "10.244.2.5", ns="blue", labels={"role": "frontend"})
PODS = [WEB, FE, OTHER, BLUE]
NSS = [nsobj("default"), nsobj("blue", team="blue")]
LOCAL = {"10.244.1.2", "10.244.1.4"}


def render(policies, pods=PODS, local=LOCAL, **kw):
    return netpol.render(policies, pods, NSS, local, node_ips=["172.30.0.11", "10.244.1.1"], **kw)


def test_no_policy_means_no_isolation_and_established_first():
    ch = render([])
    assert ch[("filter", "NKNP-FORWARD")][0] == "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
    assert verdict(ch, "10.244.2.3", "10.244.1.2") == "PASS"
    assert len(ch) == 1


def test_default_deny_ingress_and_node_and_established_allowed():
    ch = render([pol("deny", {"podSelector": {}})])
    assert verdict(ch, "10.244.2.3", "10.244.1.2") == "DROP"
    assert verdict(ch, "10.244.2.3", "10.244.1.2", state="ESTABLISHED") == "ACCEPT"
    assert verdict(ch, "10.244.1.1", "10.244.1.2", dport=8080) == "PASS"   # kubelet probe from the bridge
    assert verdict(ch, "10.244.1.2", "10.244.2.3") == "PASS"               # egress not isolated
    assert verdict(ch, "10.244.2.3", "10.244.2.5") == "PASS"               # remote pod: the other node's job


def test_allow_frontend_port_and_additive_policies():
    allow = pol("fe", {"podSelector": {"matchLabels": {"app": "web"}},
                       "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "frontend"}}}],
                                    "ports": [{"port": 8080}]}]})
    ch = render([pol("deny", {"podSelector": {}}), allow])
    assert verdict(ch, "10.244.2.3", "10.244.1.2", dport=8080) == "PASS"
    assert verdict(ch, "10.244.2.3", "10.244.1.2", dport=8081) == "DROP"
    assert verdict(ch, "10.244.2.3", "10.244.1.2", proto="udp", dport=8080) == "DROP"
    assert verdict(ch, "10.244.1.4", "10.244.1.2", dport=8080) == "DROP"   # role=other
    assert verdict(ch, "10.244.2.5", "10.244.1.2", dport=8080) == "DROP"   # frontend, other namespace
    assert verdict(ch, "10.244.2.3", "10.244.1.4", dport=8080) == "DROP"   # "other" is only under deny
    more = pol("all80", {"podSelector": {}, "ingress": [{"ports": [{"port": 80}]}]})
    ch = render([allow, more])
    assert verdict(ch, "10.244.2.5", "10.244.1.2", dport=80) == "PASS"
    assert verdict(ch, "10.244.2.5", "10.244.1.2", dport=8080) == "DROP"


def test_namespace_selector_and_and_semantics():
    ns_only = pol("a", {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "blue"}}}]}]})
    ch = render([ns_only])
    assert verdict(ch, "10.244.2.5", "10.244.1.2") == "PASS"
    assert verdict(ch, "10.244.2.3", "10.244.1.2") == "DROP"
    both = pol("b", {"podSelector": {}, "ingress": [{"from": [{
        "namespaceSelector": {"matchLabels": {"team": "blue"}}, "podSelector": {"matchLabels": {"role": "nope"}}}]}]})
    assert verdict(render([both]), "10.244.2.5", "10.244.1.2") == "DROP"
    by_name = pol("c", {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchExpressions": [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["blue"]}]}}]}]})
    assert verdict(render([by_name]), "10.244.2.5", "10.244.1.2") == "PASS"
    every_ns = pol("d", {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}]}]})
    assert verdict(render([every_ns]), "10.244.2.5", "10.244.1.2") == "PASS"
    assert verdict(render([every_ns]), "192.168.1.1", "10.244.1.2") == "DROP"


def test_ip_block_with_except_and_named_ports_and_end_port():
    p = pol("b", {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [
        {"from": [{"ipBlock": {"cidr": "10.244.0.0/16", "except": ["10.244.2.0/24"]}}],
         "ports": [{"port": "http"}, {"port": 9000, "endPort": 9010, "protocol": "UDP"}]}]})
    ch = render([p])
    assert verdict(ch, "10.244.1.4", "10.244.1.2", dport=8080) == "PASS"
    assert verdict(ch, "10.244.2.3", "10.244.1.2", dport=8080) == "DROP"      # in except
    assert verdict(ch, "10.9.0.1", "10.244.1.2", dport=8080) == "DROP"        # outside cidr
    assert verdict(ch, "10.244.1.4", "10.244.1.2", proto="udp", dport=9005) == "PASS"
    assert verdict(ch, "10.244.1.4", "10.244.1.2", proto="udp", dport=9011) == "DROP"
    # a named port the target does not have admits nothing
    q = pol("q", {"podSelector": {}, "ingress": [{"ports": [{"port": "http"}]}]})
    assert verdict(render([q]), "10.244.2.3", "10.244.1.4", dport=8080) == "DROP"


def test_egress_default_deny_dns_only_and_named_egress_ports():
    p = pol("eg", {"podSelector": {"matchLabels": {"role": "other"}}, "policyTypes": ["Egress"],
                   "egress": [{"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
                              {"to": [{"podSelector": {"matchLabels": {"app": "web"}}}], "ports": [{"port": "http"}]}]})
    ch = render([p])
    assert verdict(ch, "10.244.1.4", "172.30.0.1", proto="udp", dport=53) == "PASS"
    assert verdict(ch, "10.244.1.4", "10.244.2.3", dport=80) == "DROP"
    assert verdict(ch, "10.244.1.4", "10.244.1.2", dport=8080) == "PASS"     # http resolved on web
    assert verdict(ch, "10.244.1.4", "10.244.2.3", dport=8080) == "DROP"     # fe has no "http"
    assert verdict(ch, "10.244.2.3", "10.244.1.4") == "PASS"                 # ingress not isolated
    assert p["spec"]["policyTypes"] == ["Egress"]


def test_same_node_both_ends_checked():
    deny_egress = pol("e", {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Egress"]})
    allow_in = pol("i", {"podSelector": {"matchLabels": {"role": "other"}}, "ingress": [{}]})
    ch = render([deny_egress, allow_in])
    assert verdict(ch, "10.244.1.2", "10.244.1.4") == "DROP"   # the source's egress says no
    deny_in = pol("d", {"podSelector": {"matchLabels": {"role": "other"}}})
    allow_out = pol("o", {"podSelector": {"matchLabels": {"app": "web"}}, "egress": [{}], "policyTypes": ["Egress"]})
    assert verdict(render([deny_in, allow_out]), "10.244.1.2", "10.244.1.4") == "DROP"
    assert verdict(render([allow_in, allow_out]), "10.244.1.2", "10.244.1.4") == "PASS"


def test_host_network_finished_and_ipless_pods_are_ignored():
    hn = pod("hn", "172.30.0.13", labels={"role": "frontend"}, host_network=True)
    done = pod("done", "10.244.1.9", labels={"role": "frontend"}, phase="Succeeded")
    p = pol("fe", {"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "frontend"}}}]}]})
    ch = render([p], pods=PODS + [hn, done], local=LOCAL | {"10.244.1.9"})
    text = "\n".join(r for rules in ch.values() for r in rules)
    assert "172.30.0.13" not in text and "10.244.1.9" not in text


def test_defaults_and_validation():
    o = pol("x", {"podSelector": {}, "egress": [{"ports": [{"port": 53}]}]})
    assert o["spec"]["policyTypes"] == ["Ingress", "Egress"] and o["spec"]["egress"][0]["ports"][0]["protocol"] == "TCP"
    causes: list = []
    netpol.validate(causes, {"spec": {"policyTypes": ["Sideways"], "ingress": [
        {"from": [{}, {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.0.0.0/8"]}, "podSelector": {}}],
         "ports": [{"port": 80, "endPort": 79}, {"port": "http", "endPort": 90}, {"port": 0, "protocol": "ICMP"}]}]}})
    fields = sorted(c["field"] for c in causes)
    assert fields == sorted(["spec.policyTypes[0]", "spec.ingress[0].from[0]", "spec.ingress[0].from[1]",
                             "spec.ingress[0].from[1].ipBlock.except[0]", "spec.ingress[0].ports[0].endPort",
                             "spec.ingress[0].ports[1].endPort", "spec.ingress[0].ports[2].port",
                             "spec.ingress[0].ports[2].protocol"]), causes
    ok: list = []
    netpol.validate(ok, pol("y", {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8",
                                                                                    "except": ["10.1.0.0/16"]}}]}]}))
    assert ok == []


def test_chain_names_are_deterministic_and_short():
    a = netpol.pod_chain("default", "web", "ingress")
    assert a == netpol.pod_chain("default", "web", "ingress") and a.startswith("NKNP-I-") and len(a) <= 28
    assert netpol.pod_chain("default", "web", "egress").startswith("NKNP-E-")
    assert not a.startswith(("KUBE-", "NANOKUBE-"))  # the proxier deletes those as its own


# ---- the agent against a recording backend -----------------------------------------------

class RecordingBackend:
    def __init__(self):
        self.tables: dict = {("filter", "FORWARD"): ['-m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD']}
        self.applies: list[tuple[set, set]] = []
        self.jumps: list[tuple[str, str]] = []

    def read(self):
        return {k: list(v) for k, v in self.tables.items()}

    def apply(self, chains, *, changed, delete):
        self.applies.append((set(changed), set(delete)))
        for k in changed:
            self.tables[k] = list(chains[k])
        for k in delete:
            del self.tables[k]

    def ensure_jump(self, table, chain, rule):
        self.jumps.append(("ensure", rule))
        if rule not in self.tables[(table, chain)]:
            self.tables[(table, chain)].insert(0, rule)

    def delete_jump(self, table, chain, rule):
        self.jumps.append(("delete", rule))
        self.tables[(table, chain)] = [r for r in self.tables[(table, chain)] if r != rule]


def test_agent_applies_only_changes_removes_stale_and_keeps_jump_first():
    be = RecordingBackend()
    now = [0.0]
    agent = PolicyAgent(None, node_name="n1", node_ips=["172.30.0.11"], backend=be, clock=lambda: now[0])
    allow = pol("fe", {"podSelector": {"matchLabels": {"app": "web"}},
                       "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "frontend"}}}]}]})
    pods = [dict(p) for p in PODS]
    agent.apply([allow], pods, NSS, LOCAL)
    assert be.tables[("filter", "FORWARD")][0] == netpol.JUMP[2]
    assert agent.apply([allow], pods, NSS, LOCAL) == 0               # nothing changed, nothing written
    # relabel "other" to frontend: only the one peer chain changes
    other = {**OTHER, "metadata": {**OTHER["metadata"], "labels": {"role": "frontend"}}}
    n = agent.apply([allow], [WEB, FE, other, BLUE], NSS, LOCAL)
    assert n == 1 and be.applies[-1] == ({("filter", netpol.peer_chain("default", "ingress", allow["spec"]["ingress"][0]["from"]))}, set())
    assert verdict(be.tables, "10.244.1.4", "10.244.1.2") == "PASS"
    # the proxier inserts its jump above ours: the next check moves ours back to the top
    be.tables[("filter", "FORWARD")].insert(0, "-j KUBE-FORWARD")
    agent.apply([allow], [WEB, FE, other, BLUE], NSS, LOCAL)
    assert be.tables[("filter", "FORWARD")][0] == netpol.JUMP[2]
    # policy deleted: every per-pod and peer chain goes, NKNP-FORWARD stays
    now[0] = 1000.0
    agent.apply([], [WEB, FE, other, BLUE], NSS, LOCAL, full=True)
    assert [k[1] for k in be.tables if k[1].startswith("NKNP-")] == ["NKNP-FORWARD"]
    agent.cleanup()
    assert not [k for k in be.tables if k[1].startswith("NKNP-")]
    assert netpol.JUMP[2] not in be.tables[("filter", "FORWARD")]


@pytest.mark.parametrize("npods,npols", [(60, 12)])
def test_many_pods_many_policies(npods, npols):
    pods = [pod(f"p{i}", f"10.244.{1 + i % 2}.{10 + i}", labels={"app": f"a{i % 5}", "tier": f"t{i % 3}"})
            for i in range(npods)]
    pols = [pol(f"n{j}", {"podSelector": {"matchLabels": {"app": f"a{j % 5}"}},
                          "ingress": [{"from": [{"podSelector": {"matchLabels": {"tier": f"t{j % 3}"}}}],
                                       "ports": [{"port": 8080}]}]}) for j in range(npols)]
    ch = netpol.render(pols, pods, NSS, {p["status"]["podIP"] for p in pods[::2]})
    # every local pod selected by some policy has an ingress chain, dispatched from NKNP-FORWARD
    assert sum(1 for k in ch if k[1].startswith("NKNP-I-")) == npods // 2
    src = pods[1]["status"]["podIP"]   # tier t1
    dst = pods[6]["status"]["podIP"]   # app a1: policies n1, n6, n11 → tiers t1, t0, t2
    assert verdict(ch, src, dst, dport=8080) == "PASS"
