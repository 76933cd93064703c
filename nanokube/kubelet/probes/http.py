"""httpGet probes: 2xx and 3xx are success (redirects are not followed), as upstream."""
from __future__ import annotations

import asyncio

import aiohttp

from . import Obj, Target, resolve_port


async def run(h: Obj, t: Target, *, timeout: float) -> tuple[bool, str]:
    try:
        port = resolve_port(h.get("port"), t.container)
    except ValueError as e:
        return False, str(e)
    host = h.get("host") or t.pod_ip
    scheme = (h.get("scheme") or "HTTP").lower()
    path = h.get("path") or "/"
    if not path.startswith("/"):
        path = "/" + path
    url = f"{scheme}://{host}:{port}{path}"
    headers = {"User-Agent": "kube-probe/1.37", "Accept": "*/*"}
    for hh in h.get("httpHeaders") or []:
        headers[hh["name"]] = hh["value"]
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as s:
            async with s.get(url, headers=headers, allow_redirects=False, ssl=False) as r:
                body = (await r.content.read(1024)).decode(errors="replace")
                if 200 <= r.status < 400:
                    return True, ""
                return False, f"HTTP probe failed with statuscode: {r.status}" + (f" {body[:100]}" if body else "")
    except asyncio.TimeoutError:
        return False, f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)'
    except aiohttp.ClientError as e:
        return False, f'Get "{url}": {e}'
