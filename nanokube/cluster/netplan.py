"""A local cluster's network: the lan bridge ("the host") and one namespace per node.

The lan bridge ``nkl<hash10>`` holds 172.30.0.1/24 — in the root namespace by default, so
the user's shell reaches node IPs and NodePorts (like kind's bridge), or with ``isolated``
in its own namespace ``nk-<cluster>``, leaving the host's network untouched. Node k is the
namespace ``nk-<cluster>-node<k>`` with ``eth0`` = 172.30.0.(10+k) on a veth to the bridge.
All names derive from the cluster name, so ``destroy`` finds everything without state.
"""
from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass, field

from nanokube.host import netlink, netns

NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


@dataclass
class NodeNet:
    name: str
    netns: str
    ip: str


@dataclass
class ClusterNet:
    cluster: str
    host_netns: str | None
    bridge: str
    host_ip: str
    nodes: list[NodeNet] = field(default_factory=list)


def _h(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()[:10]


def bridge_name(cluster: str) -> str:
    return "nkl" + _h(cluster)


def lan_veth_name(cluster: str, node: str) -> str:
    return "nkn" + _h(f"{cluster}/{node}")


def host_netns_name(cluster: str) -> str:
    return f"nk-{cluster}"


def node_netns_name(cluster: str, node: str) -> str:
    return f"nk-{cluster}-{node}"


def validate(cluster: str) -> None:
    if not NAME_RE.match(cluster) or len(cluster) > 20:
        raise ValueError(f"invalid cluster name {cluster!r}: use 1-20 lowercase letters, digits and '-'")


def create_cluster_network(cluster: str, nodes: int, *, isolated: bool, lan_cidr: str = "172.30.0.0/24") -> ClusterNet:
    validate(cluster)
    lan = ipaddress.ip_network(lan_cidr)
    host_ip = str(lan.network_address + 1)
    host_ns = host_netns_name(cluster) if isolated else None
    if host_ns:
        if netns.exists(host_ns):
            raise RuntimeError(f"namespace {host_ns} already exists: is cluster {cluster!r} running?")
        netns.create(host_ns)
        netlink.link_up("lo", netns=host_ns)
    br = bridge_name(cluster)
    netlink.ensure_bridge(br, netns=host_ns)
    netlink.ensure_address(br, f"{host_ip}/{lan.prefixlen}", netns=host_ns)
    net = ClusterNet(cluster, host_ns, br, host_ip)
    for k in range(1, nodes + 1):
        node = f"node{k}"
        ns = node_netns_name(cluster, node)
        ip = str(lan.network_address + 10 + k)
        netns.create(ns)
        veth = lan_veth_name(cluster, node)
        netlink.create_veth(veth, "nkm" + veth[3:], peer_netns=ns, peer_name="eth0", master=br, netns=host_ns)
        netlink.ensure_address("eth0", f"{ip}/{lan.prefixlen}", netns=ns)
        netlink.replace_default_route(host_ip, netns=ns)
        netns.run_in(ns, lambda: netns.write_sysctl("net.ipv4.ip_forward", "1"))
        net.nodes.append(NodeNet(node, ns, ip))
    return net


def destroy_cluster_network(cluster: str) -> None:
    """Remove every network object of the cluster, found by its deterministic names."""
    prefix = node_netns_name(cluster, "")
    for ns in netns.list_names(prefix):
        netns.delete(ns)
    host_ns = host_netns_name(cluster)
    if netns.exists(host_ns):
        netns.delete(host_ns)  # takes the bridge and the lan veths with it
    else:
        # Not isolated: the bridge lives in the root namespace; the veths went with the nodes.
        netlink.delete_link(bridge_name(cluster))
