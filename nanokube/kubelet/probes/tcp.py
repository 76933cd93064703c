"""tcpSocket probes: success when a TCP connection opens within the timeout."""
from __future__ import annotations

import asyncio
import socket

from . import Obj, Target, address


async def run(h: Obj, t: Target, *, timeout: float) -> tuple[bool, str]:
    try:
        host, port = address(h, t)
    except ValueError as e:
        return False, str(e)
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
