"""tcpSocket probes: success when a TCP connection opens within the timeout."""
from __future__ import annotations

import asyncio

from . import Obj, Target, resolve_port


async def run(h: Obj, t: Target, *, timeout: float) -> tuple[bool, str]:
    try:
        port = resolve_port(h.get("port"), t.container)
    except ValueError as e:
        return False, str(e)
    host = h.get("host") or t.pod_ip
    try:
        _, w = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        w.close()
        return True, ""
    except asyncio.TimeoutError:
        return False, f"dial tcp {host}:{port}: i/o timeout"
    except OSError as e:
        return False, f"dial tcp {host}:{port}: connect: {e.strerror or e}"
