"""tcpSocket probes: success when a TCP connection opens within the timeout."""
from __future__ import annotations

import asyncio
import socket

from . import Obj, Target, resolve_port


async def run(h: Obj, t: Target, *, timeout: float) -> tuple[bool, str]:
    try:
        port = resolve_port(h.get("port"), t.container)
    except ValueError as e:
        return False, str(e)
    host = h.get("host") or t.pod_ip
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setblocking(False)
            async with asyncio.timeout(timeout):
                await asyncio.get_running_loop().sock_connect(sock, (host, port))
        return True, ""
    except TimeoutError:
        return False, f"dial tcp {host}:{port}: i/o timeout"
    except OSError as e:
        return False, f"dial tcp {host}:{port}: connect: {e.strerror or e}"
