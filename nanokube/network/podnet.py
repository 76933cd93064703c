"""Pod networking on a node: bridge ``nk0``, one veth per pod, host-gw routes.

Runs in the node's network namespace (the agent entered it). Each pod gets a named netns
``nkp-<uid12>`` holding ``lo`` and ``eth0``, whose peer ``nkv<hex10>`` sits on the bridge
with hairpin on; its address comes from the node's pod CIDR (IPAM in the state dir). Every
step is idempotent, so a restarted agent can re-run setup for pods it already has.
"""
from __future__ import annotations

import hashlib
import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path

from nanokube.host import netlink, netns
from .ipam import Ipam


def pod_netns_name(uid: str) -> str:
    return "nkp-" + uid.replace("-", "")[:12]


def host_veth_name(uid: str) -> str:
    return "nkv" + hashlib.sha256(uid.encode()).hexdigest()[:10]


@dataclass
class PodNet:
    uid: str
    netns: str
    netns_path: str
    ip: str
    gateway: str
    host_veth: str


class PodNetwork:
    def __init__(self, *, state_dir: Path, bridge: str = "nk0"):
        self.state_dir = state_dir
        self.bridge = bridge
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._ipam: Ipam | None = None
        cfg = self.state_dir / "node.json"
        if cfg.exists():
            self._ipam = Ipam(self.state_dir / "ipam", json.loads(cfg.read_text())["podCIDR"])

    @property
    def ipam(self) -> Ipam:
        if self._ipam is None:
            raise RuntimeError("node network not set up yet (no pod CIDR)")
        return self._ipam

    def setup_node(self, pod_cidr: str) -> None:
        net = ipaddress.ip_network(pod_cidr)
        (self.state_dir / "node.json").write_text(json.dumps({"podCIDR": pod_cidr}))
        self._ipam = Ipam(self.state_dir / "ipam", pod_cidr)
        netlink.ensure_bridge(self.bridge)
        netlink.ensure_address(self.bridge, f"{net.network_address + 1}/{net.prefixlen}")
        netns.write_sysctl("net.ipv4.ip_forward", "1")
        netns.write_sysctl("net.bridge.bridge-nf-call-iptables", "1")

    def setup_pod(self, uid: str) -> PodNet:
        name = pod_netns_name(uid)
        ip = self.ipam.allocate(uid)
        veth = host_veth_name(uid)
        netns.create(name)
        netlink.create_veth(veth, "nkt" + veth[3:], peer_netns=name, peer_name="eth0", master=self.bridge, hairpin=True,
                            peer_address=f"{ip}/{self.ipam.net.prefixlen}", peer_gateway=self.ipam.gateway)
        (self.state_dir / "pods").mkdir(exist_ok=True)
        (self.state_dir / "pods" / uid).write_text(name)
        return PodNet(uid, name, netns.path(name), ip, self.ipam.gateway, veth)

    def get_pod(self, uid: str) -> PodNet | None:
        if not (self.state_dir / "pods" / uid).exists() or self._ipam is None:
            return None
        ip = self.ipam.lookup(uid)
        name = pod_netns_name(uid)
        if ip is None or not netns.exists(name):
            return None
        return PodNet(uid, name, netns.path(name), ip, self.ipam.gateway, host_veth_name(uid))

    def teardown_pod(self, uid: str) -> None:
        netns.delete(pod_netns_name(uid))  # takes eth0 and with it the veth peer
        netlink.delete_link(host_veth_name(uid))
        if self._ipam is not None:
            self.ipam.release(uid)
        (self.state_dir / "pods" / uid).unlink(missing_ok=True)

    def pods(self) -> list[str]:
        d = self.state_dir / "pods"
        return sorted(p.name for p in d.iterdir()) if d.exists() else []

    def sync_routes(self, want: dict[str, str]) -> None:
        """Make the routes to other nodes' pod CIDRs exactly ``want`` ({cidr: node ip}).
        Only routes this agent added before (recorded in routes.json) are ever removed."""
        record = self.state_dir / "routes.json"
        managed = set(json.loads(record.read_text())) if record.exists() else set()
        have = netlink.routes()
        for dst, gw in want.items():
            if have.get(dst) != gw:
                netlink.replace_route(dst, gw)
        for dst in managed - set(want):
            if dst in have:
                netlink.delete_route(dst)
        record.write_text(json.dumps(sorted(want)))

    def teardown_node(self) -> None:
        for uid in self.pods():
            self.teardown_pod(uid)
        netlink.delete_link(self.bridge)


def teardown_all_in_state(state_dir: Path) -> None:
    """Delete the pod namespaces recorded in an agent's network state (for ``down``),
    from any namespace: a pod netns is a named mount, removed by name."""
    d = state_dir / "pods"
    if d.exists():
        for f in d.iterdir():
            netns.delete(f.read_text().strip())
            f.unlink()
