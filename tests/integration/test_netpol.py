"""NetworkPolicy end to end on a real 2-node cluster: what a user sees of policies.

Servers are busybox ``httpd`` pods labelled ``app=web`` on port 8080 (one per node, with an
HTTP readiness probe); clients are busybox pods on both nodes and in other namespaces, and
every check is a real connection from inside a pod (``kubectl exec`` + ``timeout 3 wget``).
Covered: default-deny ingress (same node and across nodes) with readiness probes still
passing, an allow rule for ``role=frontend`` on port 8080, a namespaceSelector peer,
relabelling a pod (access flips), deleting policies (access returns), egress default-deny
with DNS allowed (nslookup works, wget does not), ipBlock with except, and
``kubectl describe networkpolicy``. Changes take effect asynchronously: every check polls.
"""
from __future__ import annotations

import json
import textwrap

import pytest

from nanokube.host import iptables

from .conftest import start_cluster, stop_cluster

pytestmark = pytest.mark.integration

SERVE = "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"


def pod(name: str, ns: str, node: str, labels: dict[str, str], *, web: bool = False) -> str:
    if web:
        c = (f'{{name: web, image: busybox, command: ["sh", "-c", {json.dumps(SERVE)}], '
             f'ports: [{{name: http, containerPort: 8080}}], '
             f'readinessProbe: {{httpGet: {{port: 8080, path: /}}, periodSeconds: 1}}}}')
    else:
        c = '{name: c, image: busybox, command: ["sleep", "3600"]}'
    return textwrap.dedent(f"""
    apiVersion: v1
    kind: Pod
    metadata: {{name: {name}, namespace: {ns}, labels: {json.dumps(labels)}}}
    spec: {{nodeName: {node}, terminationGracePeriodSeconds: 1, containers: [{c}]}}
    """)


SETUP = [
    "apiVersion: v1\nkind: Namespace\nmetadata: {name: np}",
    "apiVersion: v1\nkind: Namespace\nmetadata: {name: np-blue, labels: {team: blue}}",
    "apiVersion: v1\nkind: Namespace\nmetadata: {name: np-grey}",
    "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: np}\n"
    "spec: {selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}",
    pod("web1", "np", "node1", {"app": "web"}, web=True),
    pod("web2", "np", "node2", {"app": "web"}, web=True),
    pod("fe1", "np", "node1", {"role": "frontend"}),
    pod("fe2", "np", "node2", {"role": "frontend"}),
    pod("other", "np", "node1", {"role": "other"}),
    pod("eg", "np", "node2", {"egress": "locked"}),
    pod("blue", "np-blue", "node2", {"role": "x"}),
    pod("grey", "np-grey", "node1", {"role": "x"}),
]


def apply(c, *docs: str) -> None:
    c.kubectl("apply", "-f", "-", input="\n---\n".join(docs))


def policy(name: str, spec: str) -> str:
    return f"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: np}}\nspec: {spec}"


def ready(p: dict) -> bool:
    return bool(p.get("status", {}).get("podIP")) and any(
        x["type"] == "Ready" and x["status"] == "True" for x in p["status"].get("conditions") or [])


def reaches(c, client: str, ip: str, *, ns: str = "np") -> bool:
    """``ip`` is a pod IP (port 8080) or ``IP:PORT``."""
    addr = ip if ":" in ip else f"{ip}:8080"
    r = c.kubectl("exec", "-n", ns, client, "--", "sh", "-c", f"timeout 3 wget -qO- http://{addr}/",
                  check=False, timeout=30)
    return r.returncode == 0


def expect(c, client: str, ip: str, want: bool, *, ns: str = "np") -> None:
    c.wait_for(f"{ns}/{client} -> {ip} {'allowed' if want else 'blocked'}",
               lambda: reaches(c, client, ip, ns=ns) == want, timeout=30, interval=0.3)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = start_cluster(tmp_path_factory, nodes=2)
    try:
        apply(c, *SETUP)
        names = ["web1", "web2", "fe1", "fe2", "other", "eg"]
        c.wait_for("pods ready", lambda: all(ready(p) for p in c.kjson("get", "pods", "-n", "np")["items"]
                                             if p["metadata"]["name"] in names) and
                   len(c.kjson("get", "pods", "-n", "np")["items"]) == len(names), timeout=120)
        for ns, name in (("np-blue", "blue"), ("np-grey", "grey")):
            c.wait_for(f"{name} ready", lambda: ready(c.kjson("get", "pod", name, "-n", ns)), timeout=60)
        c.ips = {p["metadata"]["name"]: p["status"]["podIP"] for p in c.kjson("get", "pods", "-n", "np")["items"]}
        yield c
    finally:
        stop_cluster(c)


def test_ingress_default_deny_allow_frontend_namespace_selector_relabel(cluster):
    c = cluster
    web1, web2 = c.ips["web1"], c.ips["web2"]
    for client, ip in (("fe1", web1), ("other", web1), ("fe2", web1)):
        expect(c, client, ip, True)
    apply(c, policy("deny-all", "{podSelector: {}, policyTypes: [Ingress]}"))
    # same node, other node, other namespace: all blocked
    for client, ip, ns in (("fe1", web1, "np"), ("fe2", web1, "np"), ("fe1", web2, "np"), ("other", web1, "np"),
                           ("blue", web2, "np-blue")):
        expect(c, client, ip, False, ns=ns)
    for node in ("node1", "node2"):  # our jump is FORWARD's first rule, ahead of kube-proxy's
        fwd = [l for l in c.host(iptables.binary("-save"), "-t", "filter", node=node).stdout.splitlines()
               if l.startswith("-A FORWARD ")]
        assert fwd and fwd[0].endswith("-j NKNP-FORWARD"), fwd
    # kubelet readiness probes come from the node itself: still passing under default-deny
    for name in ("web1", "web2"):
        assert ready(c.kjson("get", "pod", name, "-n", "np")), f"{name} lost readiness under default-deny"

    apply(c, policy("allow-frontend", "{podSelector: {matchLabels: {app: web}}, ingress: [{from: [{podSelector: "
                                      "{matchLabels: {role: frontend}}}], ports: [{protocol: TCP, port: 8080}]}]}"))
    expect(c, "fe1", web1, True)
    expect(c, "fe2", web1, True)   # across nodes
    expect(c, "fe1", web2, True)
    expect(c, "other", web1, False)
    expect(c, "blue", web1, False, ns="np-blue")
    # through the ClusterIP: kube-proxy DNATs before FORWARD, so policy sees the pod IPs
    vip = c.kjson("get", "svc", "web", "-n", "np")["spec"]["clusterIP"] + ":80"
    expect(c, "fe2", vip, True)
    expect(c, "other", vip, False)

    apply(c, policy("allow-blue", "{podSelector: {matchLabels: {app: web}}, ingress: [{from: [{namespaceSelector: "
                                  "{matchLabels: {team: blue}}}]}]}"))
    expect(c, "blue", web1, True, ns="np-blue")
    expect(c, "grey", web1, False, ns="np-grey")
    expect(c, "other", web1, False)  # namespaceSelector alone: only the labelled namespace

    # relabelling flips access, both ways
    c.kubectl("label", "pod", "other", "-n", "np", "role=frontend", "--overwrite")
    expect(c, "other", web1, True)
    c.kubectl("label", "pod", "other", "-n", "np", "role=other", "--overwrite")
    expect(c, "other", web1, False)

    d = c.kubectl("describe", "networkpolicy", "allow-frontend", "-n", "np").stdout
    for want in ("PodSelector:     app=web", "Allowing ingress traffic:", "To Port: 8080/TCP",
                 "PodSelector: role=frontend", "Policy Types: Ingress"):
        assert want in d, d
    assert "allow-frontend" in c.kubectl("get", "netpol", "-n", "np").stdout

    c.kubectl("delete", "networkpolicy", "deny-all", "allow-frontend", "allow-blue", "-n", "np")
    expect(c, "other", web1, True)
    expect(c, "grey", web2, True, ns="np-grey")


def test_egress_default_deny_allows_dns_only(cluster):
    c = cluster
    expect(c, "eg", c.ips["web1"], True)
    # As tutorials write it: DNS allowed to the kube-dns pods of kube-system (here the cluster DNS,
    # which runs in the server, stands in for them).
    apply(c, policy("eg-dns-only", "{podSelector: {matchLabels: {egress: locked}}, policyTypes: [Egress], "
                                   "egress: [{to: [{namespaceSelector: {matchLabels: "
                                   "{kubernetes.io/metadata.name: kube-system}}, podSelector: {matchLabels: "
                                   "{k8s-app: kube-dns}}}], ports: [{protocol: UDP, port: 53}, {protocol: TCP, port: 53}]}]}"))
    expect(c, "eg", c.ips["web1"], False)
    expect(c, "eg", c.ips["web2"], False)
    r = c.kubectl("exec", "-n", "np", "eg", "--", "nslookup", "web.np-grey.svc.cluster.local", check=False)
    assert "kubernetes" in c.kubectl("exec", "-n", "np", "eg", "--", "nslookup",
                                     "kubernetes.default.svc.cluster.local").stdout, r
    expect(c, "fe1", c.ips["web1"], True)  # others unaffected
    c.kubectl("delete", "networkpolicy", "eg-dns-only", "-n", "np")
    expect(c, "eg", c.ips["web1"], True)


def test_ip_block_with_except(cluster):
    c = cluster
    apply(c, policy("cidr", "{podSelector: {matchLabels: {app: web}}, ingress: [{from: [{ipBlock: "
                            f"{{cidr: 10.244.0.0/16, except: [{c.ips['fe1']}/32]}}}}]}}]}}"))
    expect(c, "fe1", c.ips["web2"], False)
    expect(c, "fe2", c.ips["web1"], True)
    expect(c, "other", c.ips["web2"], True)
    c.kubectl("delete", "networkpolicy", "cidr", "-n", "np")
    expect(c, "fe1", c.ips["web2"], True)


def test_bad_policy_is_rejected(cluster):
    r = cluster.kubectl("apply", "-f", "-", check=False, input=policy(
        "bad", "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [11.0.0.0/16]}}], "
               "ports: [{protocol: ICMP, port: 1}]}]}"))
    assert r.returncode != 0
    assert "must be a strict subset of `cidr`" in r.stderr and 'Unsupported value: "ICMP"' in r.stderr, r.stderr
