"""Links, addresses and routes through netlink (pyroute2): the few operations nanokube needs.

Every function takes ``netns`` (a name under /run/netns) or acts in the caller's own
namespace when it is None, and every one is idempotent, so callers can re-run a whole setup
after a crash.
"""
from __future__ import annotations

import ipaddress
import os
from typing import Any, Callable

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from nanokube.host.netns import run_in


def _in(netns: str | None, fn: Callable[[IPRoute], Any]) -> Any:
    """fn(IPRoute) with a netlink socket in ``netns`` (made in a thread that entered it:
    a socket keeps the namespace it was created in)."""
    def run() -> Any:
        r = IPRoute()
        try:
            return fn(r)
        finally:
            r.close()
    return run_in(netns, run)



def index(r: IPRoute, name: str) -> int | None:
    found = r.link_lookup(ifname=name)
    return found[0] if found else None


def ensure_bridge(name: str, *, netns: str | None = None) -> None:
    def op(r: IPRoute) -> None:
        if index(r, name) is None:
            r.link("add", ifname=name, kind="bridge")
        r.link("set", index=index(r, name), state="up")
    _in(netns, op)


def _ensure_address(r: IPRoute, ifname: str, cidr: str) -> None:
    iface = ipaddress.ip_interface(cidr)
    i = index(r, ifname)
    have = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in r.get_addr(index=i)}
    if (str(iface.ip), iface.network.prefixlen) not in have:
        r.addr("add", index=i, address=str(iface.ip), prefixlen=iface.network.prefixlen)


def ensure_address(ifname: str, cidr: str, *, netns: str | None = None) -> None:
    _in(netns, lambda r: _ensure_address(r, ifname, cidr))


def link_up(ifname: str, *, netns: str | None = None) -> None:
    _in(netns, lambda r: r.link("set", index=index(r, ifname), state="up"))


def delete_link(ifname: str, *, netns: str | None = None) -> None:
    def op(r: IPRoute) -> None:
        i = index(r, ifname)
        if i is not None:
            try:
                r.link("del", index=i)
            except NetlinkError as e:
                if e.code != 19:  # ENODEV: gone meanwhile
                    raise
    _in(netns, op)


def create_veth(host_if: str, peer_if: str, *, peer_netns: str, peer_name: str, master: str | None = None,
                netns: str | None = None, hairpin: bool = False, peer_address: str | None = None,
                peer_gateway: str | None = None) -> None:
    """A veth pair: ``host_if`` stays here (enslaved to ``master``, with ``hairpin`` on that
    bridge port), the peer moves into ``peer_netns`` and is renamed ``peer_name`` there, with
    ``peer_address`` (a CIDR) and a default route via ``peer_gateway``. One netlink socket per
    side: a pod's network is set up in two round trips of threads, not six."""
    fd = os.open(f"/run/netns/{peer_netns}", os.O_RDONLY)
    try:
        def here(r: IPRoute) -> None:
            if index(r, host_if) is None:
                r.link("add", ifname=host_if, kind="veth", peer=peer_if)
            if index(r, peer_if) is not None:
                r.link("set", index=index(r, peer_if), net_ns_fd=fd)
            if master:
                r.link("set", index=index(r, host_if), master=index(r, master))
            r.link("set", index=index(r, host_if), state="up")
            if hairpin:  # a pod reaches itself through its own Service. pyroute2 names IFLA_BRPORT_MODE
                r.brport("set", index=index(r, host_if), mode=1)  # (the hairpin flag) "mode"; "hairpin_mode" is ignored
        _in(netns, here)
    finally:
        os.close(fd)

    def there(r: IPRoute) -> None:
        i = index(r, peer_if)
        if i is not None:
            r.link("set", index=i, ifname=peer_name)
        r.link("set", index=index(r, peer_name), state="up")
        r.link("set", index=index(r, "lo"), state="up")
        if peer_address:
            _ensure_address(r, peer_name, peer_address)
        if peer_gateway:
            r.route("replace", dst="0.0.0.0/0", gateway=peer_gateway)
    _in(peer_netns, there)


def replace_default_route(gateway: str, *, netns: str | None = None) -> None:
    _in(netns, lambda r: r.route("replace", dst="0.0.0.0/0", gateway=gateway))


def routes(*, netns: str | None = None) -> dict[str, str]:
    """{dst cidr: gateway} of the main table's gatewayed routes (not the default)."""
    def op(r: IPRoute) -> dict[str, str]:
        out = {}
        for rt in r.get_routes(family=2, table=254):
            gw, dst = rt.get_attr("RTA_GATEWAY"), rt.get_attr("RTA_DST")
            if gw and dst:
                out[f"{dst}/{rt['dst_len']}"] = gw
        return out
    return _in(netns, op)


def replace_route(dst: str, gateway: str, *, netns: str | None = None) -> None:
    _in(netns, lambda r: r.route("replace", dst=dst, gateway=gateway))


def delete_route(dst: str, *, netns: str | None = None) -> None:
    def op(r: IPRoute) -> None:
        try:
            r.route("del", dst=dst)
        except NetlinkError as e:
            if e.code != 3:  # ESRCH
                raise
    _in(netns, op)


def sync_labeled_addresses(owner_ip: str, label_suffix: str, want: set[str], *, netns: str | None = None) -> set[str]:
    """Make the /32 addresses labelled ``<ifname>:<label_suffix>`` on the interface holding
    ``owner_ip`` exactly ``want`` (service load-balancer IPs, like MetalLB's L2 mode): the
    label marks them as ours, so a restarted agent finds and removes stale ones. Returns
    the addresses present afterwards; no-op when no interface holds ``owner_ip``."""
    def op(r: IPRoute) -> set[str]:
        found = [a["index"] for a in r.get_addr(family=2) if a.get_attr("IFA_ADDRESS") == owner_ip]
        if not found:
            return set()
        i = found[0]
        ifname = r.get_links(i)[0].get_attr("IFLA_IFNAME")
        label = f"{ifname}:{label_suffix}"[:15]
        have = {a.get_attr("IFA_ADDRESS") for a in r.get_addr(family=2, index=i)
                if a.get_attr("IFA_LABEL") == label and a["prefixlen"] == 32}
        for ip in sorted(have - want):
            try:
                r.addr("del", index=i, address=ip, prefixlen=32)
            except NetlinkError as e:
                if e.code != 99:  # EADDRNOTAVAIL: gone meanwhile
                    raise
        for ip in sorted(want - have):
            try:
                r.addr("add", index=i, address=ip, prefixlen=32, label=label)
            except NetlinkError as e:
                if e.code != 17:  # EEXIST
                    raise
        return set(want)
    return _in(netns, op)
