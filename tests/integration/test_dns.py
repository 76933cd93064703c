"""Cluster DNS through a real 2-node cluster: busybox pods resolve services by short,
namespace-qualified and full names (nslookup, and the libc resolver behind wget), headless
services to their pods, endpoint hostnames, pod A records, PTR and NXDOMAIN; SRV over UDP
and TCP from a node's namespace through the kube-dns ClusterIP; a new Service resolves as
soon as it exists. Only names inside cluster.local are ever asked."""
from __future__ import annotations

import json
import sys
import textwrap

import pytest

from .conftest import start_cluster, stop_cluster

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = start_cluster(tmp_path_factory, nodes=2)
    try:
        yield c
    finally:
        stop_cluster(c)


def apply(c, text: str) -> None:
    c.kubectl("apply", "-f", "-", input=textwrap.dedent(text))


def ready_pods(c, selector: str, n: int) -> list[dict]:
    def check():
        pods = c.kjson("get", "pods", "-l", selector)["items"]
        ok = [p for p in pods if p.get("status", {}).get("podIP") and any(
            x["type"] == "Ready" and x["status"] == "True" for x in p["status"].get("conditions") or [])]
        return ok if len(ok) >= n else None
    return c.wait_for(f"{n} ready pods {selector}", check, timeout=90)


def dig(c, name: str, qtype: str, *, server: str = "10.96.0.10", node: str | None = "node1",
        tcp: bool = False) -> dict:
    """Ask the cluster DNS with dnslib from a node's namespace (or the host side); parsed reply."""
    code = textwrap.dedent(f"""\
        import json
        from dnslib import DNSRecord, QTYPE, RCODE
        r = DNSRecord.parse(DNSRecord.question({name!r}, {qtype!r}).send({server!r}, 53, tcp={tcp!r}, timeout=5))
        sec = lambda rrs: [[str(x.rname), QTYPE[x.rtype], str(x.rdata)] for x in rrs]
        print(json.dumps({{"rcode": RCODE[r.header.rcode], "aa": r.header.aa, "answer": sec(r.rr),
                          "authority": sec(r.auth), "additional": sec(r.ar)}}))
        """)
    r = c.host(sys.executable, "-c", code, node=node)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.fixture(scope="module")
def world(cluster):
    c = cluster
    apply(c, """\
        apiVersion: v1
        kind: Namespace
        metadata: {name: dnsother}
        ---
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: web, namespace: default}
        spec:
          replicas: 2
          selector: {matchLabels: {app: web}}
          template:
            metadata: {labels: {app: web}}
            spec:
              terminationGracePeriodSeconds: 1
              containers:
              - name: httpd
                image: busybox
                command: ["sh", "-c", "mkdir -p /tmp/www && echo hello-from-web > /tmp/www/index.html && exec httpd -f -p 80 -h /tmp/www"]
                readinessProbe: {tcpSocket: {port: 80}, periodSeconds: 1}
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: web, namespace: default}
        spec:
          selector: {app: web}
          ports: [{name: http, port: 80, targetPort: 80, protocol: TCP}]
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: hl, namespace: default}
        spec:
          clusterIP: None
          selector: {app: web}
          ports: [{name: http, port: 80, targetPort: 80, protocol: TCP}]
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: other, namespace: dnsother}
        spec:
          selector: {app: nothing-here}
          ports: [{name: http, port: 8080, protocol: TCP}]
        """)
    pods = ready_pods(c, "app=web", 2)
    ips = sorted(p["status"]["podIP"] for p in pods)
    # a selectorless headless service with a hand-written endpoint hostname (what a
    # StatefulSet's governing service looks like)
    apply(c, f"""\
        apiVersion: v1
        kind: Service
        metadata: {{name: pets, namespace: default}}
        spec:
          clusterIP: None
          ports: [{{name: peer, port: 7000, protocol: TCP}}]
        ---
        apiVersion: v1
        kind: Endpoints
        metadata: {{name: pets, namespace: default}}
        subsets:
        - addresses: [{{ip: "{ips[0]}", hostname: pet-0}}]
          ports: [{{name: peer, port: 7000, protocol: TCP}}]
        """)
    web_ip = c.kjson("get", "svc", "web")["spec"]["clusterIP"]
    other_ip = c.kjson("get", "svc", "other", "-n", "dnsother")["spec"]["clusterIP"]
    c.wait_for("hl endpoints", lambda: len([a for s in c.kjson("get", "endpoints", "hl").get("subsets") or []
                                            for a in s.get("addresses") or []]) == 2, timeout=30)
    return {"pod_ips": ips, "web_ip": web_ip, "other_ip": other_ip}


def sections(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    cur = None
    for line in text.splitlines():
        if line.startswith("== "):
            cur = line[3:].strip()
            out[cur] = ""
        elif cur:
            out[cur] += line + "\n"
    return out


def test_pod_resolves_cluster_names(cluster, world):
    c = cluster
    ip0, ip1 = world["pod_ips"]
    dashed = ip1.replace(".", "-")
    checks = [
        ("short", "nslookup other"),                                    # own namespace, via search path
        ("nsq", "timeout 5 wget -qO- http://web.default/"),             # libc resolver, search path, other ns
        ("fqdn", "nslookup web.default.svc.cluster.local"),
        ("headless", "nslookup hl.default.svc.cluster.local"),
        ("hostname", "nslookup pet-0.pets.default.svc.cluster.local"),
        ("nx", "nslookup nosuch.default.svc.cluster.local"),
        ("pod", f"nslookup {dashed}.default.pod.cluster.local"),
        ("ptr-svc", f"nslookup {world['web_ip']}"),
        ("ptr-pod", f"nslookup {ip0}"),
    ]
    script = "; ".join(f"echo '== {k}'; {cmd}; echo rc=$?" for k, cmd in checks) + "; echo '== done'; sleep 3600"
    apply(c, f"""\
        apiVersion: v1
        kind: Pod
        metadata: {{name: asker, namespace: dnsother}}
        spec:
          terminationGracePeriodSeconds: 1
          containers: [{{name: c, image: busybox, command: ["sh", "-c", {json.dumps(script)}]}}]
        """)
    logs = c.wait_for("asker output", lambda: (lambda t: t if "== done" in t else None)(
        c.kubectl("logs", "asker", "-n", "dnsother", check=False).stdout), timeout=90)
    s = sections(logs)
    assert world["other_ip"] in s["short"] and "other.dnsother.svc.cluster.local" in s["short"], logs
    assert "hello-from-web" in s["nsq"], logs
    assert "Name:\tweb.default.svc.cluster.local" in s["fqdn"] and f"Address: {world['web_ip']}" in s["fqdn"], logs
    assert f"Address: {ip0}" in s["headless"] and f"Address: {ip1}" in s["headless"], logs
    assert world["web_ip"] not in s["headless"], logs
    assert f"Address: {ip0}" in s["hostname"] and ip1 not in s["hostname"], logs
    assert "NXDOMAIN" in s["nx"] and "Address: 10." not in s["nx"], logs
    assert f"Address: {ip1}" in s["pod"], logs
    assert "name = web.default.svc.cluster.local" in s["ptr-svc"], logs
    assert f"name = pet-0.pets.default.svc.cluster.local" in s["ptr-pod"], logs
    assert f"name = {ip0.replace('.', '-')}.hl.default.svc.cluster.local" in s["ptr-pod"], logs


def test_srv_over_udp_and_tcp_through_the_cluster_ip(cluster, world):
    c = cluster
    r = dig(c, "_http._tcp.web.default.svc.cluster.local", "SRV")
    assert r["rcode"] == "NOERROR" and r["aa"] == 1
    assert r["answer"] == [["_http._tcp.web.default.svc.cluster.local.", "SRV", "0 100 80 web.default.svc.cluster.local."]]
    assert ["web.default.svc.cluster.local.", "A", world["web_ip"]] in r["additional"]

    r = dig(c, "_http._tcp.hl.default.svc.cluster.local", "SRV", tcp=True)
    targets = sorted(a[2].split()[3] for a in r["answer"])
    assert targets == sorted(f"{ip.replace('.', '-')}.hl.default.svc.cluster.local." for ip in world["pod_ips"])
    assert sorted(a[2] for a in r["additional"] if a[1] == "A") == world["pod_ips"]

    r = dig(c, "_peer._tcp.pets.default.svc.cluster.local", "SRV", node="node2")
    assert [a[2] for a in r["answer"]] == ["0 100 7000 pet-0.pets.default.svc.cluster.local."]

    r = dig(c, "_nope._tcp.web.default.svc.cluster.local", "SRV", server="172.30.0.1", node=None)
    assert r["rcode"] == "NXDOMAIN" and r["authority"][0][1] == "SOA"

    r = dig(c, "web.default.svc.cluster.local", "AAAA", server="172.30.0.1", node=None)
    assert r["rcode"] == "NOERROR" and r["answer"] == [] and r["authority"][0][1] == "SOA"

    r = dig(c, "kube-dns.kube-system.svc.cluster.local", "A")
    assert r["answer"] == [["kube-dns.kube-system.svc.cluster.local.", "A", "10.96.0.10"]]


def test_new_and_deleted_services_show_up_at_once(cluster, world):
    c = cluster
    code = textwrap.dedent("""\
        import sys, time
        from dnslib import DNSRecord, RCODE
        want = sys.argv[1]
        t0 = time.monotonic()
        while time.monotonic() - t0 < 30:
            r = DNSRecord.parse(DNSRecord.question("late.default.svc.cluster.local", "A").send("172.30.0.1", 53, timeout=2))
            got = [str(x.rdata) for x in r.rr]
            if (want == "NXDOMAIN" and r.header.rcode == RCODE.NXDOMAIN) or got == [want]:
                print(f"{time.monotonic() - t0:.3f}")
                sys.exit(0)
            time.sleep(0.02)
        print("never", got, RCODE[r.header.rcode])
        sys.exit(1)
        """)
    c.kubectl("create", "service", "clusterip", "late", "--tcp=80:80")
    ip = c.kjson("get", "svc", "late")["spec"]["clusterIP"]
    r = c.host(sys.executable, "-c", code, ip, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    print(f"new service resolved {r.stdout.strip()} s after `kubectl create` returned")
    c.kubectl("delete", "service", "late")
    r = c.host(sys.executable, "-c", code, "NXDOMAIN", timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    print(f"deleted service gone {r.stdout.strip()} s after `kubectl delete` returned")
