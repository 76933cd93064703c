"""Cluster DNS: the pure resolver against a view built from plain objects (every record
type of the Kubernetes DNS schema), the view following changes, truncation and error replies,
and the asyncio server over loopback fed by a LocalClient (UDP, TCP, forwarding)."""
from __future__ import annotations

import asyncio
import socket
import struct

import pytest
from dnslib import QTYPE, RCODE, DNSRecord

from nanokube.network import dns
from nanokube.network.dns import DnsView, Zone, answer


def svc(name, ns="default", *, ip="10.96.0.20", ports=(("http", 80, "TCP"),), typ="ClusterIP", ext=None, ann=None):
    spec = {"type": typ, "ports": [{"name": n, "port": p, "protocol": pr} for n, p, pr in ports]}
    if typ == "ExternalName":
        spec["externalName"] = ext
    else:
        spec["clusterIP"] = ip
        if ip != "None":
            spec["clusterIPs"] = [ip]
    md = {"name": name, "namespace": ns, "resourceVersion": "1"}
    if ann:
        md["annotations"] = ann
    return {"metadata": md, "spec": spec}


def eps(name, ns="default", *, ready=(), not_ready=(), ports=(("http", 8080, "TCP"),)):
    def addr(a):
        ip, _, host = a.partition("/")
        return {"ip": ip, **({"hostname": host} if host else {})}
    sub = {"ports": [{"name": n, "port": p, "protocol": pr} for n, p, pr in ports]}
    if ready:
        sub["addresses"] = [addr(a) for a in ready]
    if not_ready:
        sub["notReadyAddresses"] = [addr(a) for a in not_ready]
    return {"metadata": {"name": name, "namespace": ns, "resourceVersion": "1"}, "subsets": [sub]}


def pod(name, ip, ns="default", *, phase="Running"):
    return {"metadata": {"name": name, "namespace": ns, "resourceVersion": "1"}, "spec": {},
            "status": {"podIP": ip, "phase": phase}}


@pytest.fixture
def view():
    return DnsView.from_objects(
        services=[svc("web", ip="10.96.0.20", ports=(("http", 80, "TCP"), ("dns", 53, "UDP"), ("", 81, "TCP"))),
                  svc("db", "prod", ip="10.96.1.5", ports=(("pg", 5432, "TCP"),)),
                  svc("hl", ip="None", ports=(("http", 80, "TCP"),)),
                  svc("empty", ip="None"),
                  svc("pets", ip="None", ports=(("peer", 7000, "TCP"),)),
                  svc("tol", ip="None", ann={dns.TOLERATE_UNREADY: "true"}),
                  svc("ext", typ="ExternalName", ext="db.example.com")],
        endpoints=[eps("web", ready=["10.244.1.5", "10.244.2.6"]),
                   eps("hl", ready=["10.244.1.5", "10.244.2.6"], not_ready=["10.244.3.7"]),
                   eps("pets", ready=["10.244.1.8/pet-0", "10.244.2.9/pet-1"], ports=(("peer", 7000, "TCP"),)),
                   eps("tol", not_ready=["10.244.3.3"])],
        pods=[pod("a", "10.244.1.5"), pod("b", "10.244.2.6"), pod("lone", "10.244.4.4", ns="prod")],
        clock=lambda: 1000.0)


def ask(view, name, qtype="A", *, zone=None):
    return answer(DNSRecord.question(name, qtype), view, zone)


def rdata(reply, rtype=None):
    return [str(r.rdata) for r in reply.rr if rtype is None or r.rtype == getattr(QTYPE, rtype)]


def test_clusterip_service_a_record_with_ttl_and_aa(view):
    r = ask(view, "web.default.svc.cluster.local")
    assert r.header.rcode == RCODE.NOERROR and r.header.aa == 1
    assert rdata(r) == ["10.96.0.20"] and r.rr[0].ttl == 5
    assert str(r.rr[0].rname) == "web.default.svc.cluster.local."
    assert rdata(ask(view, "db.prod.svc.cluster.local.")) == ["10.96.1.5"]


def test_names_are_case_insensitive_and_echo_the_question(view):
    r = ask(view, "WeB.Default.SVC.cluster.LOCAL")
    assert rdata(r) == ["10.96.0.20"] and str(r.rr[0].rname) == "WeB.Default.SVC.cluster.LOCAL."


def test_headless_service_returns_every_ready_endpoint(view):
    assert sorted(rdata(ask(view, "hl.default.svc.cluster.local"))) == ["10.244.1.5", "10.244.2.6"]


def test_headless_without_ready_endpoints_is_nxdomain_unless_tolerated(view):
    r = ask(view, "empty.default.svc.cluster.local")
    assert r.header.rcode == RCODE.NXDOMAIN
    assert rdata(ask(view, "tol.default.svc.cluster.local")) == ["10.244.3.3"]


def test_endpoint_hostnames_and_system_assigned_names(view):
    assert rdata(ask(view, "pet-0.pets.default.svc.cluster.local")) == ["10.244.1.8"]
    assert rdata(ask(view, "pet-1.pets.default.svc.cluster.local")) == ["10.244.2.9"]
    assert rdata(ask(view, "10-244-2-6.hl.default.svc.cluster.local")) == ["10.244.2.6"]
    assert ask(view, "10-244-3-7.hl.default.svc.cluster.local").header.rcode == RCODE.NXDOMAIN  # not ready
    assert ask(view, "pet-9.pets.default.svc.cluster.local").header.rcode == RCODE.NXDOMAIN


def test_srv_for_named_ports_of_a_clusterip_service(view):
    r = ask(view, "_http._tcp.web.default.svc.cluster.local", "SRV")
    assert rdata(r) == ["0 100 80 web.default.svc.cluster.local."]
    assert [(str(a.rname), str(a.rdata)) for a in r.ar] == [("web.default.svc.cluster.local.", "10.96.0.20")]
    assert rdata(ask(view, "_dns._udp.web.default.svc.cluster.local", "SRV")) == ["0 100 53 web.default.svc.cluster.local."]
    # wrong protocol, unknown port name: no such name
    assert ask(view, "_http._udp.web.default.svc.cluster.local", "SRV").header.rcode == RCODE.NXDOMAIN
    assert ask(view, "_nope._tcp.web.default.svc.cluster.local", "SRV").header.rcode == RCODE.NXDOMAIN
    # the SRV name exists, so an A question for it is NODATA
    r = ask(view, "_http._tcp.web.default.svc.cluster.local", "A")
    assert r.header.rcode == RCODE.NOERROR and not r.rr and r.auth[0].rtype == QTYPE.SOA
    # _proto.svc is an empty non-terminal
    r = ask(view, "_tcp.web.default.svc.cluster.local", "SRV")
    assert r.header.rcode == RCODE.NOERROR and not r.rr


def test_srv_for_a_headless_service_names_each_endpoint(view):
    r = ask(view, "_peer._tcp.pets.default.svc.cluster.local", "SRV")
    assert sorted(rdata(r)) == ["0 50 7000 pet-0.pets.default.svc.cluster.local.",
                                "0 50 7000 pet-1.pets.default.svc.cluster.local."]
    assert sorted((str(a.rname), str(a.rdata)) for a in r.ar) == [
        ("pet-0.pets.default.svc.cluster.local.", "10.244.1.8"), ("pet-1.pets.default.svc.cluster.local.", "10.244.2.9")]
    r = ask(view, "_http._tcp.hl.default.svc.cluster.local", "SRV")
    assert sorted(rdata(r)) == ["0 50 8080 10-244-1-5.hl.default.svc.cluster.local.",
                                "0 50 8080 10-244-2-6.hl.default.svc.cluster.local."]


def test_pod_a_records(view):
    assert rdata(ask(view, "10-244-1-5.default.pod.cluster.local")) == ["10.244.1.5"]
    # the spec's record exists for any dashed address ("pods insecure")...
    assert rdata(ask(view, "10-1-2-3.default.pod.cluster.local")) == ["10.1.2.3"]
    # ...and "verified" answers only for a pod with that address in that namespace
    z = Zone(pods="verified")
    assert rdata(ask(view, "10-244-4-4.prod.pod.cluster.local", zone=z)) == ["10.244.4.4"]
    assert ask(view, "10-244-4-4.default.pod.cluster.local", zone=z).header.rcode == RCODE.NXDOMAIN
    assert ask(view, "10-1-2-3.default.pod.cluster.local", zone=z).header.rcode == RCODE.NXDOMAIN
    assert ask(view, "not-an-ip.default.pod.cluster.local").header.rcode == RCODE.NXDOMAIN


def test_ptr_for_service_endpoint_and_pod_ips(view):
    assert rdata(ask(view, "20.0.96.10.in-addr.arpa", "PTR")) == ["web.default.svc.cluster.local."]
    assert sorted(rdata(ask(view, "5.1.244.10.in-addr.arpa", "PTR"))) == [
        "10-244-1-5.hl.default.svc.cluster.local.", "10-244-1-5.web.default.svc.cluster.local."]
    assert rdata(ask(view, "8.1.244.10.in-addr.arpa", "PTR")) == ["pet-0.pets.default.svc.cluster.local."]
    assert rdata(ask(view, "4.4.244.10.in-addr.arpa", "PTR")) == ["10-244-4-4.prod.pod.cluster.local."]
    r = ask(view, "99.9.244.10.in-addr.arpa", "PTR")
    assert r.header.rcode == RCODE.NXDOMAIN and str(r.auth[0].rname) == "244.10.in-addr.arpa."
    r = ask(view, "99.9.96.10.in-addr.arpa", "PTR")
    assert r.header.rcode == RCODE.NXDOMAIN and str(r.auth[0].rname) == "10.in-addr.arpa."


def test_unknown_names_are_nxdomain_with_soa(view):
    for name in ("nosuch.default.svc.cluster.local", "web.nons.svc.cluster.local", "a.b.c.web.default.svc.cluster.local",
                 "foo.cluster.local", "nons.svc.cluster.local"):
        r = ask(view, name)
        assert r.header.rcode == RCODE.NXDOMAIN, name
        assert not r.rr and r.auth[0].rtype == QTYPE.SOA and str(r.auth[0].rname) == "cluster.local."
        assert str(r.auth[0].rdata).startswith("ns.dns.cluster.local. hostmaster.cluster.local. ")


def test_aaaa_for_an_existing_name_is_nodata(view):
    for name in ("web.default.svc.cluster.local", "hl.default.svc.cluster.local", "10-244-1-5.default.pod.cluster.local"):
        r = ask(view, name, "AAAA")
        assert r.header.rcode == RCODE.NOERROR and not r.rr and r.auth[0].rtype == QTYPE.SOA, name


def test_empty_non_terminals_exist(view):
    for name in ("svc.cluster.local", "default.svc.cluster.local", "pod.cluster.local"):
        r = ask(view, name)
        assert r.header.rcode == RCODE.NOERROR and not r.rr, name


def test_externalname_is_a_cname_for_every_type(view):
    for qt in ("A", "AAAA", "CNAME"):
        r = ask(view, "ext.default.svc.cluster.local", qt)
        assert [(QTYPE[x.rtype], str(x.rdata)) for x in r.rr] == [("CNAME", "db.example.com.")], qt


def test_apex_soa_and_schema_version(view):
    r = ask(view, "cluster.local", "SOA")
    assert r.rr[0].rtype == QTYPE.SOA and r.rr[0].rdata.times[0] == view.serial
    assert rdata(ask(view, "dns-version.cluster.local", "TXT")) == ['"1.1.0"']


def test_custom_domain_and_refused_outside(view):
    z = Zone(domain="k8s.test")
    assert rdata(ask(view, "web.default.svc.k8s.test", zone=z)) == ["10.96.0.20"]
    r = ask(view, "web.default.svc.cluster.local", zone=z)
    assert r.header.rcode == RCODE.REFUSED and r.header.aa == 0
    assert not dns.authoritative("example.com", view, Zone())
    assert not dns.authoritative("1.1.168.192.in-addr.arpa", view, Zone())
    assert dns.authoritative("1.1.96.10.in-addr.arpa", view, Zone())


def test_view_follows_informer_events():
    class FakeInformer:
        def __init__(self):
            self.h = None

        def add_handler(self, *, on_add, on_update, on_delete):
            self.h = (on_add, on_update, on_delete)

    s, e, p = FakeInformer(), FakeInformer(), FakeInformer()
    v = DnsView(clock=lambda: 0.0)
    v.attach(s, e, p)
    s.h[0](svc("late", ip="10.96.0.77"))
    assert rdata(ask(v, "late.default.svc.cluster.local")) == ["10.96.0.77"]
    assert rdata(ask(v, "77.0.96.10.in-addr.arpa", "PTR")) == ["late.default.svc.cluster.local."]
    serial = v.serial
    s.h[1](svc("late", ip="10.96.0.77"), svc("late", ip="10.96.0.78"))
    assert rdata(ask(v, "late.default.svc.cluster.local")) == ["10.96.0.78"] and v.serial > serial
    assert ask(v, "77.0.96.10.in-addr.arpa", "PTR").header.rcode == RCODE.NXDOMAIN
    s.h[0](svc("hs", ip="None"))
    e.h[0](eps("hs", ready=["10.244.1.1"]))
    assert rdata(ask(v, "hs.default.svc.cluster.local")) == ["10.244.1.1"]
    e.h[1](eps("hs", ready=["10.244.1.1"]), eps("hs", ready=["10.244.1.2"]))
    assert rdata(ask(v, "hs.default.svc.cluster.local")) == ["10.244.1.2"]
    e.h[2](eps("hs"))
    assert ask(v, "hs.default.svc.cluster.local").header.rcode == RCODE.NXDOMAIN
    p.h[0](pod("x", "10.244.9.9"))
    assert rdata(ask(v, "9.9.244.10.in-addr.arpa", "PTR")) == ["10-244-9-9.default.pod.cluster.local."]
    p.h[1](pod("x", "10.244.9.9"), pod("x", "10.244.9.9", phase="Succeeded"))
    assert ask(v, "9.9.244.10.in-addr.arpa", "PTR").header.rcode == RCODE.NXDOMAIN
    s.h[2](svc("late"))
    assert ask(v, "late.default.svc.cluster.local").header.rcode == RCODE.NXDOMAIN
    assert not v.has_services_in("nope") and v.has_services_in("default")


def test_big_udp_answers_are_truncated_and_edns_raises_the_limit():
    v = DnsView.from_objects(services=[svc("big", ip="None")],
                             endpoints=[eps("big", ready=[f"10.244.{i // 200}.{i % 200 + 1}" for i in range(100)])])
    req = DNSRecord.question("big.default.svc.cluster.local", "A")
    full = answer(req, v)
    assert len(full.rr) == 100 and len(full.pack()) > 512
    short = DNSRecord.parse(dns.fit(full, dns.udp_limit(req)))
    assert short.header.tc == 1 and not short.rr and short.header.id == req.header.id
    edns = DNSRecord.parse(DNSRecord.question("big.default.svc.cluster.local", "A").pack())
    from dnslib import EDNS0
    edns.add_ar(EDNS0(udp_len=4096))
    assert dns.udp_limit(edns) == 4096
    assert len(DNSRecord.parse(dns.fit(answer(edns, v), 4096)).rr) == 100


def test_error_replies_and_upstream_parsing(tmp_path):
    q = DNSRecord.question("x.cluster.local").pack()
    bad = q[:14]
    out = dns.error_reply(bad, RCODE.FORMERR)
    qid, flags = struct.unpack("!HH", out[:4])
    assert qid == struct.unpack("!H", q[:2])[0] and flags & 0x8000 and flags & 0xF == RCODE.FORMERR
    assert dns.error_reply(b"\x01", RCODE.FORMERR) is None
    rc = tmp_path / "resolv.conf"
    rc.write_text("search example.com\nnameserver 10.0.0.2\nnameserver 172.30.0.1\nnameserver ::1\nnameserver bogus\n")
    assert dns.read_upstreams(rc, exclude={"172.30.0.1"}) == [("10.0.0.2", 53), ("::1", 53)]
    assert dns.read_upstreams(tmp_path / "missing") == []
    assert dns.parse_upstream("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert dns.parse_upstream("[::1]:5353") == ("::1", 5353)
    assert dns.parse_upstream("10.0.0.2") == ("10.0.0.2", 53)


# --- the server over loopback, fed by the in-process client -------------------------------

def free_port() -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            try:
                t.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue


class FixedUpstream(asyncio.DatagramProtocol):
    """A stand-in upstream on loopback: answers every A question with 192.0.2.1."""

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        from dnslib import A, RR
        req = DNSRecord.parse(data)
        rep = req.reply()
        rep.add_answer(RR(req.q.qname, QTYPE.A, ttl=60, rdata=A("192.0.2.1")))
        self.transport.sendto(rep.pack(), addr)


async def query(port, name, qtype="A", *, tcp=False):
    data = DNSRecord.question(name, qtype).pack()
    if tcp:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(struct.pack("!H", len(data)) + data)
        n = struct.unpack("!H", await r.readexactly(2))[0]
        out = await r.readexactly(n)
        w.close()
        return DNSRecord.parse(out)
    loop = asyncio.get_running_loop()
    fut = loop.create_future()

    class P(asyncio.DatagramProtocol):
        def datagram_received(self, d, a):
            if not fut.done():
                fut.set_result(d)
    t, _ = await loop.create_datagram_endpoint(P, remote_addr=("127.0.0.1", port))
    try:
        t.sendto(data)
        return DNSRecord.parse(await asyncio.wait_for(fut, 5))
    finally:
        t.close()


async def test_server_over_loopback_udp_tcp_updates_and_forwarding(tmp_path):
    from nanokube.api.schema import load_schemas
    from nanokube.apiserver.registry import Registry
    from nanokube.client.local import LocalClient
    from nanokube.store import MemoryStore

    c = LocalClient(Registry(MemoryStore(), schemas=load_schemas(tmp_path)))
    await c.create("namespaces", {"metadata": {"name": "default"}})
    await c.create("services", {"metadata": {"name": "web", "namespace": "default"},
                                "spec": {"clusterIP": "10.96.0.50", "ports": [{"name": "http", "port": 80}]}},
                   namespace="default")
    loop = asyncio.get_running_loop()
    up_t, _ = await loop.create_datagram_endpoint(FixedUpstream, local_addr=("127.0.0.1", 0))
    up_port = up_t.get_extra_info("sockname")[1]
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)   # bound, never answers
    silent.bind(("127.0.0.1", 0))
    port = free_port()
    ready = asyncio.Event()
    task = asyncio.create_task(dns.run_dns(c, host="127.0.0.1", port=port, upstream=[f"127.0.0.1:{up_port}"],
                                           ready=ready))
    try:
        await asyncio.wait_for(ready.wait(), 5)
        assert [str(r.rdata) for r in (await query(port, "web.default.svc.cluster.local")).rr] == ["10.96.0.50"]
        r = await query(port, "_http._tcp.web.default.svc.cluster.local", "SRV", tcp=True)
        assert [str(x.rdata) for x in r.rr] == ["0 100 80 web.default.svc.cluster.local."]
        # a change through the API is in the next answer: no polling, no cache
        await c.create("services", {"metadata": {"name": "late", "namespace": "default"},
                                    "spec": {"clusterIP": "10.96.0.51", "ports": [{"port": 80}]}}, namespace="default")
        for _ in range(100):
            r = await query(port, "late.default.svc.cluster.local")
            if r.rr:
                break
            await asyncio.sleep(0.01)
        assert [str(x.rdata) for x in r.rr] == ["10.96.0.51"]
        await c.delete("services", "late", namespace="default")
        for _ in range(100):
            r = await query(port, "late.default.svc.cluster.local")
            if r.header.rcode == RCODE.NXDOMAIN:
                break
            await asyncio.sleep(0.01)
        assert r.header.rcode == RCODE.NXDOMAIN
        # outside names go to the (loopback) upstream, over UDP and TCP
        r = await query(port, "example.test")
        assert [str(x.rdata) for x in r.rr] == ["192.0.2.1"]
        r = await query(port, "example.test", tcp=True)
        assert [str(x.rdata) for x in r.rr] == ["192.0.2.1"]
        # garbage gets FORMERR, or nothing when there is not even a header
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setblocking(False)
        s.connect(("127.0.0.1", port))
        s.send(b"\x12\x34" + b"\xff" * 14)
        out = await asyncio.wait_for(loop.sock_recv(s, 512), 5)
        s.close()
        assert out[:2] == b"\x12\x34" and out[3] & 0xF == RCODE.FORMERR
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        up_t.close()

    # an upstream that never answers: SERVFAIL after the bounded timeout
    srv = dns.DnsServer(DnsView(), Zone(), upstreams=[silent.getsockname()], forward_timeout=0.2)
    data = DNSRecord.question("example.test").pack()
    out, fwd = srv.local(data, tcp=False)
    assert out is None and fwd
    rep = DNSRecord.parse(await srv.remote(data))
    assert rep.header.rcode == RCODE.SERVFAIL and rep.header.id == DNSRecord.parse(data).header.id
    silent.close()
    # no upstream at all: outside names are refused
    out, fwd = dns.DnsServer(DnsView(), Zone(), upstreams=[]).local(data, tcp=False)
    assert not fwd and DNSRecord.parse(out).header.rcode == RCODE.REFUSED
