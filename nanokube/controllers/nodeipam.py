"""Node IPAM: give each node a pod CIDR, the lowest free /24 of the cluster CIDR (k ≥ 1).

Node k's pods then live in 10.244.k.0/24, which the kubelet puts on its bridge and every
other node routes to that node's address (host-gw).
"""
from __future__ import annotations

import ipaddress
from typing import Any

from .base import Controller


def plan_cidr(nodes: list[dict], cluster_cidr: str, prefix: int = 24) -> str:
    net = ipaddress.ip_network(cluster_cidr)
    used = {(n.get("spec") or {}).get("podCIDR") for n in nodes}
    for i, sub in enumerate(net.subnets(new_prefix=prefix)):
        if i == 0:
            continue  # 10.244.0.0/24 is left out, as in the design's address plan
        if str(sub) not in used:
            return str(sub)
    raise RuntimeError(f"no free pod CIDR left in {cluster_cidr}")


class NodeIpamController(Controller):
    name = "nodeipam"

    def __init__(self, client: Any, *, cluster_cidr: str = "10.244.0.0/16"):
        super().__init__(client)
        self.cluster_cidr = cluster_cidr
        self.nodes = self.informer("nodes")
        self.enqueue_handlers(self.nodes)
        self._given: dict[str, str] = {}

    async def sync(self, key: str) -> None:
        node = self.nodes.get(key)
        if node is None or (node.get("spec") or {}).get("podCIDR"):
            self._given.pop(key, None)
            return
        # Count CIDRs handed out but not yet seen in the cache, so two new nodes never share one.
        known = self.nodes.list() + [{"spec": {"podCIDR": c}} for c in self._given.values()]
        cidr = plan_cidr(known, self.cluster_cidr)
        await self.client.patch("nodes", key, {"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}})
        self._given[key] = cidr
