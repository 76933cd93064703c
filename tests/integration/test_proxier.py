"""Proxier on the real kernel, in namespaces this test creates (never the root one).

A "node" netns with bridge nk0 (10.244.1.1/24) and a node IP (172.30.0.11),
two pod netns serving their name on TCP 8080 and a client pod. The proxier runs in the node
netns (a child process per sync, so each sync is also a restart that must diff, not flush).
The node IP sits on one end of a veth pair inside the node netns (no dummy module here).
Each backend — iptables-restore and python-iptables on legacy, iptables-restore on nft (one
transaction and chunked) — runs in namespaces of its own: legacy and nft never share one.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.integration
PY = sys.executable
SERVER = textwrap.dedent("""
    import socket, sys
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", 8080)); s.listen(16)
    while True:
        c, _ = s.accept(); c.sendall(sys.argv[1].encode()); c.close()
""")
CLIENT = textwrap.dedent("""
    import socket, sys
    seen = []
    for _ in range(int(sys.argv[3])):
        try:
            with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2) as c:
                seen.append(c.recv(64).decode())
        except OSError as e:
            seen.append("ERR:" + type(e).__name__)
    print(",".join(seen))
""")
APPLY = textwrap.dedent("""
    import json, sys
    from nanokube.host import iptables
    from nanokube.proxy.proxier import Proxier
    svcs, eps, cleanup = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3] == "1"
    iptables.set_mode("nft" if sys.argv[4].startswith("nft") else "legacy")
    backend = iptables.IptcBackend() if sys.argv[4] == "iptc" else iptables.RestoreBackend()
    p = Proxier(None, node_name="n1", node_ips=["172.30.0.11"], backend=backend)
    if cleanup:
        p.cleanup()
    else:
        print(p.apply(svcs, eps))
""")


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=60)


def root_iptables() -> list[str]:
    """The root namespace's legacy tables and nf_tables ruleset (read only)."""
    out = [l for l in sh("iptables-legacy-save").stdout.splitlines() if not l.startswith("#")]
    if shutil.which("nft"):
        out += sh("nft", "list", "ruleset").stdout.splitlines()
    return out


def save_cmd(backend: str) -> str:
    return "iptables-nft-save" if backend.startswith("nft") else "iptables-legacy-save"


@pytest.fixture
def lab():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    sfx = secrets.token_hex(3)
    node, pods = f"nkt-node-{sfx}", {n: f"nkt-{n}-{sfx}" for n in ("podA", "podB", "client")}
    before = root_iptables()
    procs: list[subprocess.Popen] = []
    try:
        sh("ip", "netns", "add", node)
        n = ["ip", "-n", node]
        sh(*n, "link", "set", "lo", "up")
        sh(*n, "link", "add", "nk0", "type", "bridge")
        sh(*n, "addr", "add", "10.244.1.1/24", "dev", "nk0")
        sh(*n, "link", "set", "nk0", "up")
        sh(*n, "link", "add", "lan0", "type", "veth", "peer", "name", "lan1")
        sh(*n, "link", "set", "lan1", "up")
        sh(*n, "addr", "add", "172.30.0.11/24", "dev", "lan0")
        sh(*n, "link", "set", "lan0", "up")
        sh(*n, "route", "add", "default", "via", "172.30.0.1", "dev", "lan0")
        sh("ip", "netns", "exec", node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for i, (name, ns) in enumerate(pods.items()):
            ip = f"10.244.1.{i + 2}"
            sh("ip", "netns", "add", ns)
            sh(*n, "link", "add", f"v{i}", "type", "veth", "peer", "name", "eth0", "netns", ns)
            sh(*n, "link", "set", f"v{i}", "master", "nk0", "up")
            sh(*n, "link", "set", f"v{i}", "type", "bridge_slave", "hairpin", "on")
            p = ["ip", "-n", ns]
            sh(*p, "link", "set", "lo", "up")
            sh(*p, "addr", "add", f"{ip}/24", "dev", "eth0")
            sh(*p, "link", "set", "eth0", "up")
            sh(*p, "route", "add", "default", "via", "10.244.1.1")
            if name != "client":
                procs.append(subprocess.Popen(["ip", "netns", "exec", ns, PY, "-c", SERVER, name]))
        yield node, pods
    finally:
        for p in procs:
            p.kill()
            p.wait(timeout=10)
        for ns in [node, *pods.values()]:
            sh("ip", "netns", "del", ns, check=False)
        assert root_iptables() == before, "root netns iptables changed"


def connect(ns: str, ip: str, port: int, tries: int = 30) -> list[str]:
    r = sh("ip", "netns", "exec", ns, PY, "-c", CLIENT, ip, str(port), str(tries))
    return r.stdout.strip().split(",")


def run_proxier(node: str, svcs: list, eps: list, *, cleanup: bool = False, backend: str = "restore") -> str:
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))}
    r = subprocess.run(["ip", "netns", "exec", node, PY, "-c", APPLY, json.dumps(svcs), json.dumps(eps),
                        "1" if cleanup else "0", backend], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


@pytest.mark.parametrize("backend", ["restore", "iptc", "nft"])
def test_clusterip_nodeport_and_endpoint_removal(lab, backend):
    node, pods = lab

    def run(svcs, eps_, **kw):
        return run_proxier(node, svcs, eps_, backend=backend, **kw)

    svc = {"metadata": {"namespace": "default", "name": "web"},
           "spec": {"type": "NodePort", "clusterIP": "10.96.0.50",
                    "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080, "protocol": "TCP"}]}}

    def eps(*ips):
        return {"metadata": {"namespace": "default", "name": "web"},
                "subsets": [{"addresses": [{"ip": i} for i in ips],
                             "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}]}

    # servers up?
    assert set(connect(node, "10.244.1.2", 8080, 3)) == {"podA"}
    assert set(connect(node, "10.244.1.3", 8080, 3)) == {"podB"}
    assert int(run([svc], [eps("10.244.1.2", "10.244.1.3")])) > 0
    assert run([svc], [eps("10.244.1.2", "10.244.1.3")]) == "0"  # restart: nothing to rewrite
    assert set(connect(node, "10.96.0.50", 80)) == {"podA", "podB"}
    assert set(connect(node, "172.30.0.11", 30080)) == {"podA", "podB"}
    assert set(connect(pods["client"], "10.96.0.50", 80)) == {"podA", "podB"}  # PREROUTING, through the bridge

    saved = sh("ip", "netns", "exec", node, save_cmd(backend)).stdout
    assert "-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES" in saved
    assert saved.count("-j DNAT") == 2

    assert int(run([svc], [eps("10.244.1.3")])) > 0
    assert set(connect(node, "10.96.0.50", 80, 10)) == {"podB"}
    assert set(connect(node, "172.30.0.11", 30080, 10)) == {"podB"}
    saved = sh("ip", "netns", "exec", node, save_cmd(backend)).stdout
    assert saved.count("KUBE-SEP-") == 4  # one chain (declaration, 2 rules) + the jump

    run([svc], [eps()])  # no endpoints → REJECT (connection refused)
    assert set(connect(node, "10.96.0.50", 80, 3)) == {"ERR:ConnectionRefusedError"}

    run([], [], cleanup=True)
    saved = sh("ip", "netns", "exec", node, save_cmd(backend)).stdout
    assert "KUBE-" not in saved and "NANOKUBE-" not in saved


FULL_WORLD = textwrap.dedent("""
    import json, subprocess, sys
    from nanokube.host import iptables
    from nanokube.proxy.proxier import Proxier

    def svc(name, ip, **spec):
        lb = spec.get("type") == "LoadBalancer"
        return {"metadata": {"namespace": "d", "name": name},
                "spec": {"clusterIP": ip, "type": "ClusterIP",
                         "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30000 + int(ip.split(".")[-1])},
                                   {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 31000 + int(ip.split(".")[-1])}],
                         **spec},
                "status": {"loadBalancer": {"ingress": [{"ip": "172.30.0.20" + ip[-1]}]}} if lb else {}}

    def ep(name, *ips):
        return {"metadata": {"namespace": "d", "name": name},
                "subsets": [{"addresses": [{"ip": i, "nodeName": "n1" if i.endswith("2") else "n2"} for i in ips],
                             "ports": [{"name": "http", "port": 8080, "protocol": "TCP"},
                                       {"name": "dns", "port": 5353, "protocol": "UDP"}]}]}

    svcs = [svc("a", "10.96.0.1"), svc("b", "10.96.0.2", type="NodePort", externalTrafficPolicy="Local"),
            svc("c", "10.96.0.3", type="LoadBalancer", sessionAffinity="ClientIP",
                sessionAffinityConfig={"clientIP": {"timeoutSeconds": 30}}),
            svc("d", "10.96.0.4", type="NodePort", externalTrafficPolicy="Local"),
            svc("e", "10.96.0.5", externalIPs=["192.0.2.5"]), {**svc("h", "10.96.0.8"), "spec": {"clusterIP": "None"}},
            svc("f", "10.96.0.6", type="LoadBalancer", externalTrafficPolicy="Local", sessionAffinity="ClientIP"),
            svc("g", "10.96.0.7", type="NodePort")]
    eps = [ep("a", "10.244.1.2", "10.244.2.3"), ep("b", "10.244.1.2", "10.244.2.3"), ep("h", "10.244.1.2"),
           ep("c", "10.244.1.2", "10.244.2.3", "10.244.2.4"), ep("d", "10.244.2.3"), ep("f", "10.244.1.2"), ep("e", "10.244.2.5")]
    kind = sys.argv[1]
    iptables.set_mode("nft" if kind.startswith("nft") else "legacy")
    backend = (iptables.IptcBackend() if kind == "iptc" else
               iptables.RestoreBackend(chunk_chains=0, chunk_lines=7) if kind == "nft-chunked" else
               iptables.RestoreBackend())
    p = Proxier(None, node_name="n1", node_ips=[], backend=backend)
    # first without one service, then with it: an incremental change on top of the first sync
    assert p.apply(svcs[1:], eps) > 0
    assert p.apply(svcs, eps) > 0
    if kind == "nft":
        assert backend._restorer.watch is not None  # small changes: the long-lived restore, on the commit notification
        # a failed commit is an error, not a wait: nothing notifies, the process exits non-zero
        try:
            backend.apply({("nat", "KUBE-BAD"): ["-j KUBE-NO-SUCH-CHAIN"]}, changed={("nat", "KUBE-BAD")}, delete=set())
            raise AssertionError("a jump to a missing chain was accepted")
        except RuntimeError as e:
            assert "iptables-restore failed" in str(e)
        assert p.apply(svcs[1:], eps) > 0 and p.apply(svcs, eps) > 0  # and the next one starts afresh
        backend.close()
    # a restarted proxier (every backend of this mode) finds the kernel exactly as it would write it
    assert Proxier(None, node_name="n1", node_ips=[]).apply(svcs, eps) == 0
    if kind in ("restore", "iptc"):
        assert Proxier(None, node_name="n1", node_ips=[], backend=iptables.IptcBackend()).apply(svcs, eps) == 0
    save = "iptables-nft-save" if kind.startswith("nft") else "iptables-legacy-save"
    for table in ("filter", "nat"):
        out = subprocess.run([save, "-t", table], capture_output=True, text=True, check=True).stdout
        print("\\n".join(l for l in out.splitlines() if not l.startswith("#")))
""")


def test_backends_produce_identical_iptables_save():
    """The same state through iptables-restore and python-iptables on legacy, and through
    iptables-nft-restore (one transaction per table, and chunked into many), each in a fresh
    namespace: byte-identical ``iptables-save`` / ``iptables-nft-save`` (every feature:
    NodePort, ETP Local, affinity, LoadBalancer, externalIPs, UDP, headless, no endpoints)."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))}
    saves = {}
    before = root_iptables()
    for backend in ("restore", "iptc", "nft", "nft-chunked"):
        ns = f"nkt-be-{secrets.token_hex(3)}"
        sh("ip", "netns", "add", ns)
        try:
            r = subprocess.run(["ip", "netns", "exec", ns, PY, "-c", FULL_WORLD, backend], capture_output=True,
                               text=True, timeout=60, env=env)
            assert r.returncode == 0, r.stderr
            saves[backend] = r.stdout
        finally:
            sh("ip", "netns", "del", ns, check=False)
    assert root_iptables() == before, "root netns tables changed"
    assert saves["restore"] == saves["iptc"] == saves["nft"] == saves["nft-chunked"]
    for needle in ("KUBE-SVL-", "--rcheck --seconds 30 --reap", "has no local endpoints", "loadbalancer IP",
                   "external IP", "-m udp", "--reject-with icmp-port-unreachable"):
        assert needle in saves["restore"], needle
