"""Service load balancer: gives ``type: LoadBalancer`` Services an address from a pool.

Like MetalLB's (or k3s' servicelb's) controller half: it only allocates — writes
``status.loadBalancer.ingress[0].ip`` — and kube-proxy does the rest (rules for the address
like a NodePort's, and one node, chosen deterministically, holds the address on its lan
interface; see proxy/rules.py ``lb_addresses``). The pool is a range ``first-last`` (or a
CIDR) given to the server with ``--lb-pool``; local clusters use a range of their lan.
Allocation is a pure function of all Services (lowest free address first, honouring
``spec.loadBalancerIP`` when it is in the pool and free), so it is idempotent and a
restarted server keeps every address where it was.
"""
from __future__ import annotations

import copy
import ipaddress
from typing import Any

from nanokube.api.errors import ApiError
from .base import Controller, split_key

Obj = dict[str, Any]


def parse_pool(spec: str) -> list[str]:
    """``172.30.0.200-172.30.0.250`` or ``172.30.0.192/27`` (all its host addresses) → addresses."""
    if "-" in spec:
        a, b = (ipaddress.IPv4Address(x.strip()) for x in spec.split("-", 1))
        if b < a:
            raise ValueError(f"bad pool {spec!r}: {b} < {a}")
        return [str(ipaddress.IPv4Address(i)) for i in range(int(a), int(b) + 1)]
    return [str(h) for h in ipaddress.IPv4Network(spec.strip(), strict=False).hosts()]


def _ingress_ips(svc: Obj) -> list[str]:
    return [i.get("ip") for i in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or [] if i.get("ip")]


def _key(svc: Obj) -> str:
    return f"{svc['metadata'].get('namespace')}/{svc['metadata']['name']}"


def plan_allocation(services: list[Obj], pool: list[str]) -> dict[str, str | None]:
    """{service key: the IP it should have (None: none)} for every Service whose status must change.
    Services keep a pool address they already hold (first come, by creation order, on conflicts)."""
    pool_set = set(pool)
    used: dict[str, str] = {}
    want: dict[str, str | None] = {}
    ordered = sorted(services, key=lambda s: (s["metadata"].get("creationTimestamp") or "", _key(s)))
    pending = []
    for s in ordered:
        have = _ingress_ips(s)
        if (s.get("spec") or {}).get("type") != "LoadBalancer":
            if have:
                want[_key(s)] = None
            continue
        ip = have[0] if have else None
        if ip and ip in pool_set and ip not in used and len(have) == 1:
            used[ip] = _key(s)
        else:
            pending.append(s)
    for s in pending:
        asked = (s.get("spec") or {}).get("loadBalancerIP")
        free = [ip for ip in pool if ip not in used]
        ip = asked if asked in pool_set and asked not in used else (None if asked else (free[0] if free else None))
        if ip:
            used[ip] = _key(s)
        if _ingress_ips(s) != ([ip] if ip else []):
            want[_key(s)] = ip
    return want


class ServiceLBController(Controller):
    name = "servicelb"

    def __init__(self, client: Any, *, pool: list[str]):
        super().__init__(client)
        self.pool = pool
        self.services = self.informer("services")
        # any change may free or claim an address: re-plan through one key
        self.services.add_handler(on_add=self._all, on_update=lambda o, n: self._all(), on_delete=self._all)

    def _all(self, _obj: Obj | None = None) -> None:
        self.queue.add("all")

    async def sync(self, key: str) -> None:
        plan = plan_allocation(self.services.list(), self.pool)
        for skey, ip in sorted(plan.items()):
            ns, name = split_key(skey)
            cur = self.services.get(skey)
            if cur is None:
                continue
            new = copy.deepcopy(cur)
            new.setdefault("status", {})["loadBalancer"] = {"ingress": [{"ip": ip}]} if ip else {}
            try:
                await self.client.update("services", new, namespace=ns, subresource="status")
            except ApiError as e:
                if e.code not in (404, 409):
                    raise
                if e.code == 409:
                    self.queue.add_after("all", 0.1)
