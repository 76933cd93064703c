"""Links, addresses and routes through netlink (pyroute2): the few operations nanokube needs.

Every function takes ``netns`` (a name under /run/netns) or acts in the caller's own
namespace when it is None, and every one is idempotent, so callers can re-run a whole setup
after a crash.
"""
from __future__ import annotations

import ipaddress
from contextlib import contextmanager
from typing import Iterator

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError


@contextmanager
def ipr(netns: str | None = None) -> Iterator[IPRoute]:
    r = IPRoute(netns=netns) if netns else IPRoute()
    try:
        yield r
    finally:
        r.close()


def index(r: IPRoute, name: str) -> int | None:
    found = r.link_lookup(ifname=name)
    return found[0] if found else None


def ensure_bridge(name: str, *, netns: str | None = None) -> None:
    with ipr(netns) as r:
        if index(r, name) is None:
            r.link("add", ifname=name, kind="bridge")
        r.link("set", index=index(r, name), state="up")


def ensure_address(ifname: str, cidr: str, *, netns: str | None = None) -> None:
    iface = ipaddress.ip_interface(cidr)
    with ipr(netns) as r:
        i = index(r, ifname)
        have = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in r.get_addr(index=i)}
        if (str(iface.ip), iface.network.prefixlen) not in have:
            r.addr("add", index=i, address=str(iface.ip), prefixlen=iface.network.prefixlen)


def link_up(ifname: str, *, netns: str | None = None) -> None:
    with ipr(netns) as r:
        r.link("set", index=index(r, ifname), state="up")


def delete_link(ifname: str, *, netns: str | None = None) -> None:
    with ipr(netns) as r:
        i = index(r, ifname)
        if i is not None:
            try:
                r.link("del", index=i)
            except NetlinkError as e:
                if e.code != 19:  # ENODEV: gone meanwhile
                    raise


def create_veth(host_if: str, peer_if: str, *, peer_netns: str, peer_name: str, master: str | None = None,
                netns: str | None = None) -> None:
    """A veth pair: ``host_if`` stays here (enslaved to ``master``), the peer moves into
    ``peer_netns`` and is renamed ``peer_name`` there."""
    with ipr(netns) as r:
        if index(r, host_if) is None:
            r.link("add", ifname=host_if, kind="veth", peer=peer_if)
        if index(r, peer_if) is not None:
            r.link("set", index=index(r, peer_if), net_ns_fd=peer_netns)
        if master:
            r.link("set", index=index(r, host_if), master=index(r, master))
        r.link("set", index=index(r, host_if), state="up")
    with ipr(peer_netns) as r:
        i = index(r, peer_if)
        if i is not None:
            r.link("set", index=i, ifname=peer_name)
        r.link("set", index=index(r, peer_name), state="up")
        r.link("set", index=index(r, "lo"), state="up")


def set_hairpin(ifname: str, *, netns: str | None = None) -> None:
    """Hairpin on a bridge port: a pod can reach itself through its own Service."""
    with ipr(netns) as r:
        r.brport("set", index=index(r, ifname), hairpin_mode=1)


def replace_default_route(gateway: str, *, netns: str | None = None) -> None:
    with ipr(netns) as r:
        r.route("replace", dst="0.0.0.0/0", gateway=gateway)


def routes(*, netns: str | None = None) -> dict[str, str]:
    """{dst cidr: gateway} of the main table's gatewayed routes (not the default)."""
    out = {}
    with ipr(netns) as r:
        for rt in r.get_routes(family=2, table=254):
            gw = rt.get_attr("RTA_GATEWAY")
            dst = rt.get_attr("RTA_DST")
            if gw and dst:
                out[f"{dst}/{rt['dst_len']}"] = gw
    return out


def replace_route(dst: str, gateway: str, *, netns: str | None = None) -> None:
    with ipr(netns) as r:
        r.route("replace", dst=dst, gateway=gateway)


def delete_route(dst: str, *, netns: str | None = None) -> None:
    with ipr(netns) as r:
        try:
            r.route("del", dst=dst)
        except NetlinkError as e:
            if e.code != 3:  # ESRCH
                raise
