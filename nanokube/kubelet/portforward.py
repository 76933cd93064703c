"""``kubectl port-forward`` on the kubelet's side: SPDY streams tunnelled in a WebSocket.

For every local connection kubectl opens two streams sharing a ``requestID``: an *error*
stream (we write a message there if the port cannot be reached, then close it) and a *data*
stream whose bytes we copy to and from ``localhost:<port>`` inside the pod's network
namespace — like containerd, so a server listening only on the pod's loopback is reachable
too. The socket is created in a thread that entered the pod's namespace (host/netns.run_in);
a socket keeps its namespace for life, so the event loop uses it from here on.
"""
from __future__ import annotations

import asyncio
import os
import socket
from typing import Any

from aiohttp import WSMsgType, web

from nanokube.host import netns
from . import spdy

PROTOCOL = "SPDY/3.1+portforward.k8s.io"


async def _connect(netns_name: str, port: int) -> socket.socket:
    loop = asyncio.get_running_loop()
    errors = []
    for family, addr in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        sock = await loop.run_in_executor(None, netns.run_in, netns_name,
                                          lambda f=family: socket.socket(f, socket.SOCK_STREAM))
        sock.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, (addr, port)), 10)
            return sock
        except (OSError, asyncio.TimeoutError) as e:
            sock.close()
            why = os.strerror(e.errno).lower() if isinstance(e, OSError) and e.errno else "i/o timeout"
            errors.append(f"dial tcp{4 if family == socket.AF_INET else 6} {addr}:{port}: connect: {why}")
    raise OSError(f"failed to connect to localhost:{port} inside namespace \"{netns_name}\", "
                  f"IPv4: {errors[0]} IPv6 {errors[1]} ")


async def serve_portforward(request: web.Request, *, netns_name: str, pod_desc: str) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(protocols=(PROTOCOL,), max_msg_size=0, autoping=True)
    await ws.prepare(request)
    sess = spdy.Session()
    lock = asyncio.Lock()

    async def send(data: bytes) -> None:
        async with lock:
            if not ws.closed:
                await ws.send_bytes(data)

    pairs: dict[str, dict[str, Any]] = {}
    inbox: dict[int, asyncio.Queue[bytes | None]] = {}  # data stream id -> bytes from kubectl (None: FIN)
    tasks: set[asyncio.Task] = set()

    async def forward(port_s: str, err_sid: int, data_sid: int) -> None:
        try:
            try:
                port = int(port_s)
                sock = await _connect(netns_name, port)
            except (OSError, ValueError) as e:
                msg = f"error forwarding port {port_s} to pod {pod_desc}: {e}"
                await send(sess.data(err_sid, msg.encode(), fin=True) + sess.data(data_sid, fin=True))
                return
            reader, writer = await asyncio.open_connection(sock=sock)

            async def upstream() -> None:
                q = inbox[data_sid]
                while (chunk := await q.get()) is not None:
                    writer.write(chunk)
                    await writer.drain()
                if writer.can_write_eof():
                    writer.write_eof()
            up = asyncio.create_task(upstream())
            try:
                while chunk := await reader.read(65536):
                    await send(sess.data(data_sid, chunk))
            except OSError:
                pass
            await send(sess.data(data_sid, fin=True) + sess.data(err_sid, fin=True))
            await asyncio.wait([up], timeout=5)
            up.cancel()
            writer.close()
        finally:
            inbox.pop(data_sid, None)

    try:
        async for msg in ws:
            if msg.type != WSMsgType.BINARY:
                continue
            try:
                frames = sess.feed(msg.data)
            except spdy.ProtocolError:
                break
            for f in frames:
                if f.type == spdy.SYN_STREAM:
                    await send(sess.syn_reply(f.stream_id))
                    h = {k: v[0] for k, v in f.headers.items()}
                    kind, rid = h.get("streamtype"), h.get("requestid", "")
                    if kind not in ("error", "data") or "port" not in h:
                        await send(sess.rst_stream(f.stream_id, 1))  # PROTOCOL_ERROR
                        continue
                    pair = pairs.setdefault(rid, {"port": h["port"]})
                    pair[kind] = f.stream_id
                    if kind == "data":
                        inbox[f.stream_id] = asyncio.Queue()
                    if "error" in pair and "data" in pair:
                        del pairs[rid]
                        t = asyncio.create_task(forward(pair["port"], pair["error"], pair["data"]))
                        tasks.add(t)
                        t.add_done_callback(tasks.discard)
                elif f.type == 0:
                    q = inbox.get(f.stream_id)
                    if q is not None:
                        if f.data:
                            q.put_nowait(f.data)
                        if f.fin:
                            q.put_nowait(None)
                elif f.type == spdy.PING:
                    await send(sess.ping(f.value))
                elif f.type == spdy.RST_STREAM:
                    q = inbox.get(f.stream_id)
                    if q is not None:
                        q.put_nowait(None)
                elif f.type == spdy.GOAWAY:
                    return ws
    finally:
        for t in list(tasks):
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await ws.close()
    return ws
