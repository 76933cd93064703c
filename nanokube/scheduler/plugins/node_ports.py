"""NodePorts: the pod's hostPorts must be free on the node (upstream's plugin).

Two ports conflict when protocol and port are equal and the host IPs overlap: either side
binds 0.0.0.0 (all addresses) or both name the same IP (upstream's HostPortInfo.CheckConflict).
Key design choice: ``pre_filter`` collects the pod's (hostIP, protocol, hostPort) once; a pod
without hostPorts (nearly all) returns at once, and the node side is the NodeInfo's
incrementally kept ``used_ports`` counter, so no pod list is walked per node.
"""
from __future__ import annotations

from typing import Any, Iterable

from nanokube.scheduler.framework import NodeInfo, Obj, host_ports

NAME = "NodePorts"
REASON = "node(s) didn't have free ports for the requested pod ports"
ALL = "0.0.0.0"

Port = tuple[str, str, int]   # (hostIP, protocol, hostPort)


def pre_filter(pod: Obj, snap: Any) -> list[Port]:
    return host_ports(pod)


def conflicts(want: Port, used: Iterable[Port]) -> bool:
    ip, proto, port = want
    if port <= 0:
        return False
    for uip, uproto, uport in used:
        if uport == port and uproto == proto and (ip == ALL or uip == ALL or uip == ip):
            return True
    return False


def filter(pod: Obj, ni: NodeInfo, state: list[Port] | None) -> str | None:
    want = host_ports(pod) if state is None else state
    if not want or not ni.used_ports:
        return None
    used = list(ni.used_ports)
    for p in want:
        if conflicts(p, used):
            return REASON
    return None
