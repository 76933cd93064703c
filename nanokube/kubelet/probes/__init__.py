"""Container probes, one handler kind per module (exec.py, http.py, tcp.py, grpc.py), all with the
same shape: ``async run(probe, target) -> (success, message)``. HTTP and TCP probes connect
from the node to the pod's IP, as upstream's kubelet does; exec runs inside the container."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]


@dataclass
class Target:
    pod: Obj
    container: Obj
    pod_ip: str
    pid: int | None  # the container's init, for exec


def resolve_port(port: Any, container: Obj) -> int:
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    raise ValueError(f"port {port!r} not found in the container's ports")


def address(h: Obj, t: Target) -> tuple[str, int]:
    """The (host, port) an httpGet or tcpSocket handler connects to; ValueError if the
    named port does not exist."""
    return h.get("host") or t.pod_ip, resolve_port(h.get("port"), t.container)


async def run(probe: Obj, target: Target) -> tuple[bool, str]:
    from . import exec as exec_, grpc, http, tcp
    timeout = float(probe.get("timeoutSeconds", 1))
    if "httpGet" in probe:
        return await http.run(probe["httpGet"], target, timeout=timeout)
    if "tcpSocket" in probe:
        return await tcp.run(probe["tcpSocket"], target, timeout=timeout)
    if "exec" in probe:
        return await exec_.run(probe["exec"], target, timeout=timeout)
    if "grpc" in probe:
        return await grpc.run(probe["grpc"], target, timeout=timeout)
    return False, "probe has no handler (exec, httpGet, tcpSocket or grpc)"
