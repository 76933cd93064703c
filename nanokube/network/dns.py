"""Cluster DNS (kube-dns at 10.96.0.10): the Kubernetes DNS schema over informer caches, on dnslib.

Two halves, as everywhere in nanokube: ``answer(request, view)`` is a pure function from a
parsed query and a ``DnsView`` (indexes over Services, Endpoints and Pods) to the reply, so
every record type is unit-tested without sockets; ``run_dns`` is the thin shell that keeps
the view current from informers over the server's in-process client and serves UDP and TCP
(2-byte length prefix) with asyncio. Records follow upstream's DNS specification
(kubernetes/dns docs/specification.md) and CoreDNS's kubernetes plugin:

- ``<svc>.<ns>.svc.<zone>`` A: the ClusterIP; headless: every ready endpoint (NXDOMAIN if none);
  ExternalName: a CNAME to ``spec.externalName``.
- ``<hostname>.<svc>.<ns>.svc.<zone>`` A: endpoints by ``hostname`` or, without one, by the
  system-assigned name ``a-b-c-d`` (the dashed IP, as CoreDNS does).
- ``_<port>._<proto>.<svc>.<ns>.svc.<zone>`` SRV for named ports (targets' A in additional).
- ``a-b-c-d.<ns>.pod.<zone>`` A (the spec's "pods insecure" record; ``pods="verified"``
  answers only for a pod with that IP in that namespace).
- ``d.c.b.a.in-addr.arpa`` PTR for service IPs, endpoint IPs and pod IPs.
- ``dns-version.<zone>`` TXT; SOA at the apex and in the authority section of NXDOMAIN/NODATA.

The key design choice: answers are computed on every query from the informer-fed indexes
(no record cache, no polling), so a change to a Service or its Endpoints is visible to the
next query. Names outside the cluster domain and the reverse zones of the service and pod
CIDRs are forwarded over UDP to the nameservers of the server's /etc/resolv.conf, with a
bounded timeout and SERVFAIL when none answers.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from dnslib import (A, CNAME, DNSHeader, DNSRecord, EDNS0, PTR, QTYPE, RCODE, RR, SOA, SRV, TXT)

log = logging.getLogger("nanokube.dns")
Obj = dict[str, Any]

TTL = 5
SCHEMA_VERSION = "1.1.0"
DEFAULT_REVERSE_CIDRS = ("10.96.0.0/12", "10.244.0.0/16")
TOLERATE_UNREADY = "service.alpha.kubernetes.io/tolerate-unready-endpoints"
PROTOCOLS = ("tcp", "udp", "sctp")
Key = tuple[str, str]  # (namespace, name), lower-cased


# --------------------------------------------------------------------------------------------
# the view: indexes over Services, Endpoints and Pods (pure data, fed by informer handlers)

@dataclass(frozen=True)
class EndpointAddr:
    ip: str
    hostname: str | None          # the endpoint's own ``hostname`` field, if any
    ready: bool
    ports: tuple[tuple[str, int, str], ...]  # (name, port, protocol), lower-cased name/protocol

    @property
    def name(self) -> str:
        """The spec's *hostname*: the explicit one, else the system-assigned dashed IP."""
        return self.hostname or self.ip.replace(".", "-")


def _key(obj: Obj) -> Key:
    md = obj.get("metadata") or {}
    return (md.get("namespace") or "").lower(), (md.get("name") or "").lower()


def _index_add(index: dict[str, set[Key]], ip: str, key: Key) -> None:
    index.setdefault(ip, set()).add(key)


def _index_del(index: dict[str, set[Key]], ip: str, key: Key) -> None:
    s = index.get(ip)
    if s is not None:
        s.discard(key)
        if not s:
            del index[ip]


def _is_ipv4(ip: Any) -> bool:
    try:
        return isinstance(ip, str) and ipaddress.ip_address(ip).version == 4
    except ValueError:
        return False


class DnsView:
    """What the resolver reads: services, parsed endpoints and pod IPs, indexed by name and IP.

    Updated by ``set_*``/``delete_*`` (wired to informer handlers by ``attach``), read by
    ``answer``. ``serial`` (the SOA serial) moves on every change.
    """

    def __init__(self, *, clock: Callable[[], float] = time.time):
        self._clock = clock
        self.services: dict[Key, Obj] = {}
        self.svc_ips: dict[Key, list[str]] = {}
        self.endpoints: dict[Key, tuple[EndpointAddr, ...]] = {}
        self.svc_by_ip: dict[str, set[Key]] = {}
        self.ep_by_ip: dict[str, set[Key]] = {}
        self.pod_ips: dict[Key, str] = {}
        self.pods_by_ip: dict[str, set[Key]] = {}
        self._svc_per_ns: dict[str, int] = {}
        self._pods_per_ns: dict[str, int] = {}
        self.serial = int(clock())

    @classmethod
    def from_objects(cls, *, services: Iterable[Obj] = (), endpoints: Iterable[Obj] = (),
                     pods: Iterable[Obj] = (), clock: Callable[[], float] = time.time) -> "DnsView":
        v = cls(clock=clock)
        for s in services:
            v.set_service(s)
        for e in endpoints:
            v.set_endpoints(e)
        for p in pods:
            v.set_pod(p)
        return v

    def _touch(self) -> None:
        self.serial = max(self.serial + 1, int(self._clock()))

    # services
    def set_service(self, svc: Obj) -> None:
        k = _key(svc)
        if k in self.services:
            self._drop_service(k)
        self.services[k] = svc
        self.svc_ips[k] = ips = service_ips(svc)
        self._svc_per_ns[k[0]] = self._svc_per_ns.get(k[0], 0) + 1
        for ip in ips:
            _index_add(self.svc_by_ip, ip, k)
        self._touch()

    def delete_service(self, svc: Obj) -> None:
        k = _key(svc)
        if k in self.services:
            self._drop_service(k)
            self._touch()

    def _drop_service(self, k: Key) -> None:
        self.services.pop(k)
        for ip in self.svc_ips.pop(k, ()):
            _index_del(self.svc_by_ip, ip, k)
        n = self._svc_per_ns.get(k[0], 0) - 1
        if n > 0:
            self._svc_per_ns[k[0]] = n
        else:
            self._svc_per_ns.pop(k[0], None)

    def has_services_in(self, ns: str) -> bool:
        return ns in self._svc_per_ns

    # endpoints
    def set_endpoints(self, ep: Obj) -> None:
        k = _key(ep)
        self._drop_endpoints(k)
        addrs = parse_endpoints(ep)
        if addrs:
            self.endpoints[k] = addrs
            for a in addrs:
                _index_add(self.ep_by_ip, a.ip, k)
        self._touch()

    def delete_endpoints(self, ep: Obj) -> None:
        self._drop_endpoints(_key(ep))
        self._touch()

    def _drop_endpoints(self, k: Key) -> None:
        for a in self.endpoints.pop(k, ()):
            _index_del(self.ep_by_ip, a.ip, k)

    # pods
    def set_pod(self, pod: Obj) -> None:
        k = _key(pod)
        self._drop_pod(k)
        st = pod.get("status") or {}
        ip = st.get("podIP")
        if _is_ipv4(ip) and not (pod.get("spec") or {}).get("hostNetwork") \
                and st.get("phase") not in ("Succeeded", "Failed"):
            self.pod_ips[k] = ip
            _index_add(self.pods_by_ip, ip, k)
            self._pods_per_ns[k[0]] = self._pods_per_ns.get(k[0], 0) + 1
        self._touch()

    def delete_pod(self, pod: Obj) -> None:
        self._drop_pod(_key(pod))
        self._touch()

    def _drop_pod(self, k: Key) -> None:
        ip = self.pod_ips.pop(k, None)
        if ip is not None:
            _index_del(self.pods_by_ip, ip, k)
            n = self._pods_per_ns.get(k[0], 0) - 1
            if n > 0:
                self._pods_per_ns[k[0]] = n
            else:
                self._pods_per_ns.pop(k[0], None)

    def has_pods_in(self, ns: str) -> bool:
        return ns in self._pods_per_ns

    def attach(self, services: Any, endpoints: Any, pods: Any) -> None:
        """Keep this view current from three informers (services, endpoints, pods)."""
        for inf, put, drop in ((services, self.set_service, self.delete_service),
                               (endpoints, self.set_endpoints, self.delete_endpoints),
                               (pods, self.set_pod, self.delete_pod)):
            inf.add_handler(on_add=put, on_update=lambda _old, new, put=put: put(new), on_delete=drop)


def service_ips(svc: Obj) -> list[str]:
    spec = svc.get("spec") or {}
    if spec.get("type") == "ExternalName":
        return []
    ips = list(spec.get("clusterIPs") or []) or [spec.get("clusterIP")]
    return [ip for ip in dict.fromkeys(ips) if _is_ipv4(ip)]


def is_headless(svc: Obj) -> bool:
    spec = svc.get("spec") or {}
    return spec.get("type") != "ExternalName" and spec.get("clusterIP") in (None, "", "None")


def parse_endpoints(ep: Obj) -> tuple[EndpointAddr, ...]:
    out: list[EndpointAddr] = []
    for ss in ep.get("subsets") or []:
        ports = tuple((str(p.get("name") or "").lower(), int(p.get("port") or 0), str(p.get("protocol") or "TCP").lower())
                      for p in ss.get("ports") or [])
        for field_, ready in (("addresses", True), ("notReadyAddresses", False)):
            for a in ss.get(field_) or []:
                if _is_ipv4(a.get("ip")):
                    out.append(EndpointAddr(a["ip"], (a.get("hostname") or "").lower() or None, ready, ports))
    return tuple(out)


# --------------------------------------------------------------------------------------------
# the resolver (pure)

@dataclass(frozen=True)
class Zone:
    """Resolver settings: the cluster domain, TTL, reverse zones we own, the pod record mode."""
    domain: str = "cluster.local"
    ttl: int = TTL
    reverse_cidrs: tuple[str, ...] = DEFAULT_REVERSE_CIDRS
    pods: str = "insecure"                       # "insecure" (the spec), "verified" or "disabled"
    _nets: tuple = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "domain", self.domain.lower().strip("."))
        object.__setattr__(self, "_nets", tuple(ipaddress.ip_network(c, strict=False) for c in self.reverse_cidrs))

    def reverse_zone_of(self, ip: str) -> str | None:
        """The octet-aligned reverse zone (e.g. ``10.in-addr.arpa``) of the CIDR holding ip, if we own one."""
        addr = ipaddress.ip_address(ip)
        for net in self._nets:
            if addr in net:
                octets = str(net.network_address).split(".")[: max(1, net.prefixlen // 8)]
                return ".".join(reversed(octets)) + ".in-addr.arpa"
        return None


def _reverse_ip(name: str) -> str | None:
    """``d.c.b.a.in-addr.arpa`` -> ``a.b.c.d`` (lower-cased name, no trailing dot), else None."""
    if not name.endswith(".in-addr.arpa"):
        return None
    parts = name[: -len(".in-addr.arpa")].split(".")
    if len(parts) != 4 or not all(p.isdigit() and len(p) <= 3 and int(p) <= 255 for p in parts):
        return None
    return ".".join(reversed(parts))


def _dashed_ip(label: str) -> str | None:
    parts = label.split("-")
    if len(parts) != 4 or not all(p.isdigit() and len(p) <= 3 and int(p) <= 255 for p in parts):
        return None
    return ".".join(str(int(p)) for p in parts)


def authoritative(qname: str, view: DnsView, zone: Zone) -> bool:
    """Is this name ours (answer it) rather than the upstream's (forward it)?"""
    name = qname.lower().rstrip(".")
    if name == zone.domain or name.endswith("." + zone.domain):
        return True
    ip = _reverse_ip(name)
    return ip is not None and (zone.reverse_zone_of(ip) is not None or ip in view.svc_by_ip
                               or ip in view.ep_by_ip or ip in view.pods_by_ip)


def answer(request: DNSRecord, view: DnsView, zone: Zone | None = None) -> DNSRecord:
    """The reply to one query, from the view alone.

    Names we are not authoritative for get REFUSED (the server forwards them instead).
    NXDOMAIN and NODATA carry the zone's SOA in the authority section.
    """
    reply = respond(request, view, zone or Zone())
    if reply is None:
        reply = request.reply()
        reply.header.aa = 0
        reply.header.rcode = RCODE.REFUSED
    return reply


def respond(request: DNSRecord, view: DnsView, zone: Zone) -> DNSRecord | None:
    """``answer``, but None for a name we are not authoritative for (so the caller forwards it)."""
    if request.header.opcode == 0 and len(request.questions) == 1:
        name = str(request.q.qname).lower().rstrip(".")
        if not authoritative(name, view, zone):
            return None
    reply = request.reply()
    if any(r.rtype == QTYPE.OPT for r in request.ar):
        reply.add_ar(EDNS0(udp_len=4096))
    if request.header.opcode != 0:
        reply.header.rcode = RCODE.NOTIMP
        return reply
    if len(request.questions) != 1:
        reply.header.rcode = RCODE.FORMERR
        return reply
    q = request.q
    ip = _reverse_ip(name)
    if ip is not None:
        rrs, extra = _ptr_records(ip, view, zone), []
        soa_owner = zone.reverse_zone_of(ip) or "in-addr.arpa"
    else:
        rel = name[: -len(zone.domain)].rstrip(".")
        labels = rel.split(".") if rel else []
        rrs, extra = _zone_records(labels, view, zone)
        soa_owner = zone.domain
    if rrs is None:
        reply.header.rcode = RCODE.NXDOMAIN
        reply.add_auth(_soa(soa_owner, view, zone))
        return reply
    qtype = q.qtype
    cnames = [r for r in rrs if r.rtype == QTYPE.CNAME]
    if cnames and qtype != QTYPE.CNAME:
        picked = cnames                           # a CNAME owns its name for every type
    else:
        picked = [r for r in rrs if qtype == QTYPE.ANY or r.rtype == qtype]
    if not picked:
        reply.add_auth(_soa(soa_owner, view, zone))
        return reply
    for r in picked:
        r.rname = q.qname                         # echo the asker's spelling (case) of the name
        reply.add_answer(r)
    if qtype in (QTYPE.SRV, QTYPE.ANY):
        for r in extra:
            reply.add_ar(r)
    return reply


def _soa(owner: str, view: DnsView, zone: Zone) -> RR:
    return RR(owner + ".", QTYPE.SOA, ttl=zone.ttl,
              rdata=SOA(f"ns.dns.{zone.domain}.", f"hostmaster.{zone.domain}.",
                        (view.serial & 0xFFFFFFFF, 7200, 1800, 86400, zone.ttl)))


def _rr(name: str, rtype: int, rdata: Any, zone: Zone) -> RR:
    return RR(name, rtype, ttl=zone.ttl, rdata=rdata)


def _zone_records(labels: list[str], view: DnsView, zone: Zone) -> tuple[list[RR] | None, list[RR]]:
    """All records of one name under the cluster domain (relative labels), plus additional
    records; None when the name does not exist. Empty non-terminals exist with no records."""
    d = zone.domain
    if not labels:
        return [_soa(d, view, zone)], []
    if labels == ["dns-version"]:
        return [_rr(f"dns-version.{d}.", QTYPE.TXT, TXT(SCHEMA_VERSION), zone)], []
    kind, parts = labels[-1], labels[:-1]
    if kind == "svc":
        return _svc_records(parts, view, zone)
    if kind == "pod":
        return _pod_records(parts, view, zone), []
    return None, []


def _ready_addrs(svc: Obj, view: DnsView, key: Key) -> list[EndpointAddr]:
    tolerate = str(((svc.get("metadata") or {}).get("annotations") or {}).get(TOLERATE_UNREADY, "")).lower() == "true"
    return [a for a in view.endpoints.get(key, ()) if a.ready or tolerate]


def _svc_records(parts: list[str], view: DnsView, zone: Zone) -> tuple[list[RR] | None, list[RR]]:
    d = zone.domain
    n = len(parts)
    if n == 0:
        return [], []
    if n == 1:
        return ([] if view.has_services_in(parts[0]) else None), []
    key = (parts[-1], parts[-2])
    svc = view.services.get(key)
    if svc is None:
        return None, []
    fqdn = f"{key[1]}.{key[0]}.svc.{d}."
    spec = svc.get("spec") or {}
    external = spec.get("type") == "ExternalName"
    if n == 2:
        if external:
            target = str(spec.get("externalName") or "").rstrip(".")
            return ([_rr(fqdn, QTYPE.CNAME, CNAME(target + "."), zone)] if target else []), []
        if not is_headless(svc):
            return [_rr(fqdn, QTYPE.A, A(ip), zone) for ip in view.svc_ips.get(key, ())], []
        ips = list(dict.fromkeys(a.ip for a in _ready_addrs(svc, view, key)))
        return ([_rr(fqdn, QTYPE.A, A(ip), zone) for ip in ips] if ips else None), []
    if external:
        return None, []
    if n == 3:
        label = parts[0]
        if label.startswith("_"):                 # _proto.svc.ns: an empty non-terminal of an SRV name
            proto = label[1:]
            ok = proto in PROTOCOLS and any(str(p.get("name") or "") and str(p.get("protocol") or "TCP").lower() == proto
                                            for p in spec.get("ports") or [])
            return ([] if ok else None), []
        ips = list(dict.fromkeys(a.ip for a in _ready_addrs(svc, view, key) if a.name == label))
        return ([_rr(f"{label}.{fqdn}", QTYPE.A, A(ip), zone) for ip in ips] if ips else None), []
    if n == 4 and parts[0].startswith("_") and parts[1].startswith("_"):
        port_name, proto = parts[0][1:], parts[1][1:]
        if proto not in PROTOCOLS:
            return None, []
        answers: list[RR] = []
        extra: list[RR] = []
        srv_name = f"_{port_name}._{proto}.{fqdn}"
        if not is_headless(svc):
            for p in spec.get("ports") or []:
                if str(p.get("name") or "").lower() == port_name and str(p.get("protocol") or "TCP").lower() == proto:
                    answers.append(_rr(srv_name, QTYPE.SRV, SRV(0, 100, int(p["port"]), fqdn), zone))
            if answers:
                extra = [_rr(fqdn, QTYPE.A, A(ip), zone) for ip in view.svc_ips.get(key, ())]
        else:
            targets: dict[str, list[str]] = {}
            found: list[tuple[int, str]] = []
            for a in _ready_addrs(svc, view, key):
                for pname, pnum, pproto in a.ports:
                    if pname and pname == port_name and pproto == proto:
                        target = f"{a.name}.{fqdn}"
                        found.append((pnum, target))
                        targets.setdefault(target, [])
                        if a.ip not in targets[target]:
                            targets[target].append(a.ip)
            found = list(dict.fromkeys(found))
            weight = max(1, 100 // len(found)) if found else 100
            answers = [_rr(srv_name, QTYPE.SRV, SRV(0, weight, pnum, target), zone) for pnum, target in found]
            extra = [_rr(t, QTYPE.A, A(ip), zone) for t, ips in targets.items() for ip in ips]
        return (answers or None), extra
    return None, []


def _pod_records(parts: list[str], view: DnsView, zone: Zone) -> list[RR] | None:
    if zone.pods == "disabled":
        return None
    n = len(parts)
    if n == 0:
        return []
    if n == 1:
        return [] if zone.pods == "insecure" or view.has_pods_in(parts[0]) else None
    if n != 2:
        return None
    ip = _dashed_ip(parts[0])
    if ip is None:
        return None
    if zone.pods == "verified" and not any(k[0] == parts[1] for k in view.pods_by_ip.get(ip, ())):
        return None
    return [_rr(f"{parts[0]}.{parts[1]}.pod.{zone.domain}.", QTYPE.A, A(ip), zone)]


def _ptr_records(ip: str, view: DnsView, zone: Zone) -> list[RR] | None:
    d = zone.domain
    owner = ".".join(reversed(ip.split("."))) + ".in-addr.arpa."
    targets: list[str] = []
    for ns, name in sorted(view.svc_by_ip.get(ip, ())):
        targets.append(f"{name}.{ns}.svc.{d}.")
    for ns, name in sorted(view.ep_by_ip.get(ip, ())):
        svc = view.services.get((ns, name))
        if svc is None or (svc.get("spec") or {}).get("type") == "ExternalName":
            continue
        for a in _ready_addrs(svc, view, (ns, name)):
            if a.ip == ip:
                targets.append(f"{a.name}.{name}.{ns}.svc.{d}.")
    if not targets and zone.pods != "disabled":
        for ns, _name in sorted(view.pods_by_ip.get(ip, ())):
            targets.append(f"{ip.replace('.', '-')}.{ns}.pod.{d}.")
    targets = list(dict.fromkeys(targets))
    return [_rr(owner, QTYPE.PTR, PTR(t), zone) for t in targets] or None


def fit(reply: DNSRecord, limit: int) -> bytes:
    """Pack a reply for a transport with a size limit: too big -> header + question with TC set."""
    data = reply.pack()
    if len(data) <= limit:
        return data
    short = DNSRecord(DNSHeader(id=reply.header.id, bitmap=reply.header.bitmap, qr=1), q=reply.q)
    short.header.tc = 1
    return short.pack()


def udp_limit(request: DNSRecord) -> int:
    for r in request.ar:
        if r.rtype == QTYPE.OPT:
            return max(512, min(int(r.rclass), 4096))
    return 512


def error_reply(data: bytes, rcode: int) -> bytes | None:
    """A bare reply with this rcode for a query we could not parse (None if not even a header)."""
    if len(data) < 12:
        return None
    qid, flags = struct.unpack("!HH", data[:4])
    flags = (flags | 0x8000) & ~0x000F | rcode       # QR=1, keep opcode/RD, set rcode
    return struct.pack("!HHHHHH", qid, flags & 0xFFFF, 0, 0, 0, 0)


def read_upstreams(path: Path = Path("/etc/resolv.conf"), *, exclude: Iterable[str] = ()) -> list[tuple[str, int]]:
    """The ``nameserver`` lines of a resolv.conf, minus our own address (no forwarding loops)."""
    skip = set(exclude)
    out: list[tuple[str, int]] = []
    try:
        text = path.read_text()
    except OSError:
        return out
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 2 and f[0] == "nameserver" and f[1] not in skip:
            try:
                ipaddress.ip_address(f[1].split("%")[0])
            except ValueError:
                continue
            out.append((f[1], 53))
    return out


def parse_upstream(s: str) -> tuple[str, int]:
    """``1.2.3.4``, ``1.2.3.4:5353``, ``::1`` or ``[::1]:5353`` -> (host, port)."""
    if s.startswith("["):
        host, _, port = s[1:].partition("]:")
        return host.rstrip("]"), int(port or 53)
    if s.count(":") == 1:
        host, port = s.split(":")
        return host, int(port)
    return s, 53


# --------------------------------------------------------------------------------------------
# the server (I/O)

class _Once(asyncio.DatagramProtocol):
    def __init__(self, qid: bytes):
        self.qid, self.fut = qid, asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if data[:2] == self.qid and not self.fut.done():
            self.fut.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.fut.done():
            self.fut.set_exception(exc)


async def forward(data: bytes, upstreams: list[tuple[str, int]], *, timeout: float = 2.0) -> bytes | None:
    """Send a query to each upstream in turn over UDP; the first reply, or None."""
    loop = asyncio.get_running_loop()
    for host, port in upstreams:
        transport = None
        try:
            transport, proto = await loop.create_datagram_endpoint(lambda: _Once(data[:2]), remote_addr=(host, port))
            transport.sendto(data)
            return await asyncio.wait_for(proto.fut, timeout)
        except (OSError, asyncio.TimeoutError) as e:
            log.debug("upstream %s:%d: %r", host, port, e)
        finally:
            if transport is not None:
                transport.close()
    return None


class DnsServer:
    """Decides per query: answer from the view, forward upstream, or refuse."""

    def __init__(self, view: DnsView, zone: Zone, *, upstreams: list[tuple[str, int]], forward_timeout: float = 2.0):
        self.view, self.zone, self.upstreams, self.forward_timeout = view, zone, upstreams, forward_timeout
        self.queries = 0
        self.forwarded = 0

    def local(self, data: bytes, *, tcp: bool) -> tuple[bytes | None, bool]:
        """(reply, needs_forward). Synchronous: the common case never leaves the event loop turn."""
        self.queries += 1
        try:
            req = DNSRecord.parse(data)
        except Exception:  # noqa: BLE001 - dnslib raises several types on garbage
            return error_reply(data, RCODE.FORMERR), False
        if req.header.qr:
            return None, False
        try:
            rep = respond(req, self.view, self.zone)
            if rep is None:
                if self.upstreams:
                    return None, True
                rep = answer(req, self.view, self.zone)
            return (rep.pack() if tcp else fit(rep, udp_limit(req))), False
        except Exception:  # noqa: BLE001 - one bad query must not take the listener down
            log.exception("answering %s", req.q.qname if req.questions else "?")
            return error_reply(data, RCODE.SERVFAIL), False

    async def remote(self, data: bytes) -> bytes | None:
        self.forwarded += 1
        out = await forward(data, self.upstreams, timeout=self.forward_timeout)
        return out if out is not None else error_reply(data, RCODE.SERVFAIL)

    async def handle_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                hdr = await asyncio.wait_for(reader.readexactly(2), 10.0)
                data = await asyncio.wait_for(reader.readexactly(struct.unpack("!H", hdr)[0]), 10.0)
                out, fwd = self.local(data, tcp=True)
                if fwd:
                    out = await self.remote(data)
                if out is None:
                    break
                writer.write(struct.pack("!H", len(out)) + out)
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer):
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: set[asyncio.Task] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        out, fwd = self.server.local(data, tcp=False)
        if fwd:
            t = asyncio.ensure_future(self._forward(data, addr))
            self.pending.add(t)
            t.add_done_callback(self.pending.discard)
        elif out is not None and self.transport is not None:
            self.transport.sendto(out, addr)

    async def _forward(self, data: bytes, addr: Any) -> None:
        out = await self.server.remote(data)
        if out is not None and self.transport is not None:
            self.transport.sendto(out, addr)


async def run_dns(client: Any, *, host: str, port: int = 53, domain: str = "cluster.local",
                  upstream: list[str] | None = None, reverse_cidrs: Iterable[str] = DEFAULT_REVERSE_CIDRS,
                  pods: str = "insecure", ready: asyncio.Event | None = None) -> None:
    """Serve cluster DNS on host:port (UDP and TCP) until cancelled.

    ``upstream`` None reads the nameservers of /etc/resolv.conf; [] forwards nothing
    (outside names get REFUSED). A port we cannot bind is logged, not fatal: the rest of
    the server keeps running.
    """
    from nanokube.client.informer import shared

    view = DnsView()
    infs = [shared(client, r) for r in ("services", "endpoints", "pods")]
    view.attach(*infs)
    tasks = [asyncio.create_task(i.run(), name=f"dns-{i.resource}") for i in infs]
    udp: asyncio.DatagramTransport | None = None
    tcp: asyncio.AbstractServer | None = None
    try:
        await asyncio.gather(*(i.wait_synced() for i in infs))
        ups = ([parse_upstream(u) for u in upstream] if upstream is not None
               else read_upstreams(exclude={host} if port == 53 else ()))
        zone = Zone(domain=domain, reverse_cidrs=tuple(reverse_cidrs), pods=pods)
        server = DnsServer(view, zone, upstreams=ups)
        loop = asyncio.get_running_loop()
        try:
            udp, _ = await loop.create_datagram_endpoint(lambda: _Udp(server), local_addr=(host, port))
            tcp = await asyncio.start_server(server.handle_tcp, host, port, reuse_address=True)
        except OSError as e:
            log.error("cluster DNS disabled: cannot listen on %s port %d: %s", host, port, e)
            await asyncio.Event().wait()
        log.info("cluster DNS for %s on %s port %d (udp, tcp); upstream %s", domain, host, port,
                 ",".join(f"{h}:{p}" for h, p in ups) or "none")
        if ready is not None:
            ready.set()
        await asyncio.Event().wait()
    finally:
        if udp is not None:
            udp.close()
        if tcp is not None:
            tcp.close()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
