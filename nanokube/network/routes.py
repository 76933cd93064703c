"""host-gw routing: which other nodes' pod CIDRs to route via which node address (pure)."""
from __future__ import annotations

from typing import Any


def plan_routes(nodes: list[dict[str, Any]], self_name: str) -> dict[str, str]:
    out = {}
    for n in nodes:
        if n["metadata"]["name"] == self_name:
            continue
        cidr = (n.get("spec") or {}).get("podCIDR")
        ip = next((a["address"] for a in (n.get("status") or {}).get("addresses") or [] if a["type"] == "InternalIP"), None)
        if cidr and ip:
            out[cidr] = ip
    return out
