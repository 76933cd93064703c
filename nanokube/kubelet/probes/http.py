"""httpGet probes: 2xx and 3xx are success (redirects are not followed), as upstream.

A bare HTTP/1.1 request over asyncio streams — one connection per probe, no keep-alive,
like upstream's prober — because a full HTTP client costs several times the CPU per probe,
and a node runs hundreds of probes a second.
"""
from __future__ import annotations

import asyncio
import socket
import ssl

from . import Obj, Target, address

_TLS = ssl.create_default_context()
_TLS.check_hostname = False
_TLS.verify_mode = ssl.CERT_NONE  # upstream's prober does not verify certificates either


async def run(h: Obj, t: Target, *, timeout: float) -> tuple[bool, str]:
    try:
        host, port = address(h, t)
    except ValueError as e:
        return False, str(e)
    scheme = (h.get("scheme") or "HTTP").lower()
    path = h.get("path") or "/"
    if not path.startswith("/"):
        path = "/" + path
    url = f"{scheme}://{host}:{port}{path}"
    headers = {"Host": f"{host}:{port}", "User-Agent": "kube-probe/1.37", "Accept": "*/*"}
    for hh in h.get("httpHeaders") or []:
        headers[hh["name"]] = hh["value"]
    headers["Connection"] = "close"
    req = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"

    async def probe() -> tuple[bool, str]:
        if scheme == "https":
            r, w = await asyncio.open_connection(host, port, ssl=_TLS)
            try:
                w.write(req.encode())
                await w.drain()
                line = (await r.readline()).decode(errors="replace").split()
            finally:
                w.close()
        else:
            # Plain sockets on the loop: no transport/protocol objects per probe.
            loop = asyncio.get_running_loop()
            with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.setblocking(False)
                await loop.sock_connect(sock, (host, port))
                await loop.sock_sendall(sock, req.encode())
                head = b""
                while b"\r\n" not in head and len(head) < 4096:
                    chunk = await loop.sock_recv(sock, 1024)
                    if not chunk:
                        break
                    head += chunk
            line = head.split(b"\r\n", 1)[0].decode(errors="replace").split()
        if len(line) < 2 or not line[1].isdigit():
            return False, f'Get "{url}": malformed HTTP response'
        code = int(line[1])
        if 200 <= code < 400:
            return True, ""
        return False, f"HTTP probe failed with statuscode: {code}"
    try:
        async with asyncio.timeout(timeout):  # no extra task per probe, unlike wait_for
            return await probe()
    except TimeoutError:
        return False, f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)'
    except OSError as e:
        return False, f'Get "{url}": dial tcp {host}:{port}: connect: {e.strerror or e}'
