"""``kubectl exec`` on the kubelet's side: a WebSocket speaking Kubernetes' channel protocol.

kubectl (client-go's WebSocket executor) asks for ``v5.channel.k8s.io`` and falls back to
``v4.channel.k8s.io``. Every binary message starts with a channel byte: 0 stdin, 1 stdout,
2 stderr, 3 error (one final ``Status`` carrying the exit code), 4 resize (``{"Width": w,
"Height": h}``) and, in v5 only, 255 close (``[255, n]``: the client has no more input for
channel n). The command runs through the runtime's ``shim --exec`` (the container's cgroup,
namespaces, root, environment and capabilities); with ``tty`` it gets a pseudo-terminal as
its controlling terminal, otherwise pipes. The apiserver authenticates the user and relays
the frames unchanged.
"""
from __future__ import annotations

import asyncio
import fcntl
import json
import os
import pty
import signal
import socket
import struct
import termios
from pathlib import Path
from typing import Any, Awaitable, Callable

from aiohttp import WSMsgType, web

PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
DRAIN_AFTER_EXIT = 1.0  # background children may hold the output open; don't wait on them forever


def exit_status(code: int, command: list[str]) -> dict[str, Any]:
    """The error-channel Status upstream's kubelet sends when the command ends."""
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {"metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
            "message": f"command terminated with non-zero exit code: error executing command "
                       f"[{' '.join(command)}], exit code {code}",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


TIOCGPTN, TIOCSPTLCK = 0x80045430, 0x40045431


def open_pty(root: str | None) -> tuple[int, int]:
    """A pseudo-terminal from the container's own devpts (under ``root``), so that inside it
    the terminal has a name (``tty`` prints /dev/pts/0) as with runc; the host's if that fails."""
    if root:
        try:
            master = os.open(f"{root}/dev/pts/ptmx", os.O_RDWR | os.O_NOCTTY)
        except OSError:
            return pty.openpty()
        try:
            fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
            n = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, struct.pack("I", 0)))[0]
            return master, os.open(f"{root}/dev/pts/{n}", os.O_RDWR | os.O_NOCTTY)
        except OSError:
            os.close(master)
    return pty.openpty()


def negotiate(request: web.Request) -> str | None:
    offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")]
    return next((p for p in PROTOCOLS if p in offered), None)


class _Output:
    """Bytes read from one fd (a pipe or a pty master) into a queue, ``None`` at the end."""

    def __init__(self, fd: int, loop: asyncio.AbstractEventLoop):
        self.fd, self.loop = fd, loop
        self.q: asyncio.Queue[bytes | None] = asyncio.Queue()
        os.set_blocking(fd, False)
        loop.add_reader(fd, self._read)

    def _read(self) -> None:
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return
        except OSError:  # EIO: a pty whose other side is closed
            data = b""
        if not data:
            self.close()
        else:
            self.q.put_nowait(data)

    def close(self) -> None:
        if self.fd >= 0:
            self.loop.remove_reader(self.fd)
            self.q.put_nowait(None)
            self.fd = -1


async def serve_exec(request: web.Request, argv: list[str], command: list[str], *, stdin: bool, tty: bool,
                     root: str | None = None) -> web.WebSocketResponse:
    proto = negotiate(request)
    ws = web.WebSocketResponse(protocols=(proto,) if proto else (), max_msg_size=0, autoping=True)
    await ws.prepare(request)
    loop = asyncio.get_running_loop()
    fds: list[int] = []
    if tty:
        master, slave = open_pty(root)
        proc = await asyncio.create_subprocess_exec(*argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
        os.close(slave)
        outs = [(STDOUT, _Output(master, loop))]
        fds.append(master)
        write_in = master if stdin else -1
    else:
        in_r = in_w = -1
        if stdin:
            in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        proc = await asyncio.create_subprocess_exec(*argv, stdin=in_r if stdin else asyncio.subprocess.DEVNULL,
                                                    stdout=out_w, stderr=err_w, start_new_session=True)
        for fd in (in_r, out_w, err_w):
            if fd >= 0:
                os.close(fd)
        outs = [(STDOUT, _Output(out_r, loop)), (STDERR, _Output(err_r, loop))]
        fds += [out_r, err_r]
        write_in = in_w
        if in_w >= 0:
            fds.append(in_w)

    async def pump(channel: int, out: _Output) -> None:
        while (data := await out.q.get()) is not None:
            await ws.send_bytes(bytes([channel]) + data)

    async def read_client() -> None:
        nonlocal write_in
        async for msg in ws:
            if (raw := _frame_bytes(msg)) is None:
                continue
            ch, data = raw[0], raw[1:]
            if ch == STDIN and write_in >= 0 and data:
                await loop.run_in_executor(None, _write_all, write_in, data)
            elif ch == RESIZE and tty:
                try:
                    size = json.loads(data)
                    fcntl.ioctl(fds[0], termios.TIOCSWINSZ, struct.pack("HHHH", int(size["Height"]), int(size["Width"]), 0, 0))
                except (ValueError, KeyError, TypeError, OSError):
                    pass
            elif ch == CLOSE and data[:1] == bytes([STDIN]) and write_in >= 0 and not tty:
                os.close(write_in)
                fds.remove(write_in)
                write_in = -1

    pumps = [asyncio.create_task(pump(ch, o)) for ch, o in outs]
    reader = asyncio.create_task(read_client())
    waiter = asyncio.create_task(proc.wait())
    try:
        await asyncio.wait([waiter, reader], return_when=asyncio.FIRST_COMPLETED)
        if not waiter.done():  # the client went away: end the command
            _signal(proc, signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(waiter), 2)
            except asyncio.TimeoutError:
                _signal(proc, signal.SIGKILL)
                await waiter
        code = waiter.result()
        code = 128 - code if code < 0 else code  # the shim itself was signalled
        _, pending = await asyncio.wait(pumps, timeout=DRAIN_AFTER_EXIT)
        for _, o in outs:
            o.close()
        await asyncio.gather(*pending, return_exceptions=True)
        if not ws.closed:
            await ws.send_bytes(bytes([ERROR]) + json.dumps(exit_status(code, command)).encode())
            await ws.close()
    finally:
        reader.cancel()
        for t in pumps:
            t.cancel()
        for _, o in outs:
            o.close()
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass
    return ws


async def serve_attach(request: web.Request, *, sock_path: Path | None, log_path: Path,
                       running: Callable[[], Awaitable[bool]], exit_code: Callable[[], Awaitable[int | None]]
                       ) -> web.WebSocketResponse:
    """``kubectl attach`` (and ``kubectl run -it``): the container's own streams. An
    interactive container's shim serves them on its attach socket (input, output, window
    size); any other container is attached to its output, followed from its log."""
    proto = negotiate(request)
    ws = web.WebSocketResponse(protocols=(proto,) if proto else (), max_msg_size=0, autoping=True)
    await ws.prepare(request)
    try:
        if sock_path is not None:
            await _attach_socket(ws, sock_path)
        else:
            await _attach_log(ws, log_path, running)
        if not ws.closed:
            code = None
            for _ in range(30):  # the shim records the exit just after its streams close
                code = await exit_code()
                if code is not None or await running():
                    break
                await asyncio.sleep(0.1)
            await ws.send_bytes(bytes([ERROR]) + json.dumps(exit_status(code or 0, ["attach"])).encode())
    finally:
        await ws.close()
    return ws


async def _attach_socket(ws: web.WebSocketResponse, sock_path: Path) -> None:
    # Connect through a short /proc/self/fd alias: socket paths are limited to 107 bytes.
    dfd = os.open(sock_path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, f"/proc/self/fd/{dfd}/{sock_path.name}")
    finally:
        os.close(dfd)
    reader, writer = await asyncio.open_unix_connection(sock=sock)

    def frame(typ: int, data: bytes) -> bytes:
        return struct.pack(">BI", typ, len(data)) + data

    async def from_container() -> None:
        while True:
            try:
                head = await reader.readexactly(5)
                typ, n = struct.unpack(">BI", head)
                data = await reader.readexactly(n)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            await ws.send_bytes(bytes([typ]) + data)

    async def from_client() -> None:
        async for msg in ws:
            if (raw := _frame_bytes(msg)) is None:
                continue
            ch, data = raw[0], raw[1:]
            if ch in (STDIN, RESIZE):
                writer.write(frame(ch, data))
            elif ch == CLOSE and data[:1] == bytes([STDIN]):
                writer.write(frame(CLOSE, b""))
            await writer.drain()

    tasks = [asyncio.create_task(from_container()), asyncio.create_task(from_client())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        writer.close()


async def _attach_log(ws: web.WebSocketResponse, log_path: Path, running: Callable[[], Awaitable[bool]]) -> None:
    reader = asyncio.create_task(ws.receive())  # notices the client leaving
    with open(log_path, "rb") as f:
        f.seek(0, os.SEEK_END)
        while not reader.done():
            line = f.readline()
            if line:
                parts = line.rstrip(b"\n").split(b" ", 3)
                if len(parts) == 4:
                    end = b"" if parts[2] == b"P" else b"\n"
                    await ws.send_bytes(bytes([STDERR if parts[1] == b"stderr" else STDOUT]) + parts[3] + end)
                continue
            if not await running():
                break
            await asyncio.sleep(0.2)
    reader.cancel()


def _frame_bytes(msg: Any) -> bytes | None:
    """A client message's channel byte + payload. Text frames count too: upstream's wsstream
    reads either kind into bytes, and the official Python client sends str stdin as text."""
    if msg.type == WSMsgType.BINARY and msg.data:
        return msg.data
    if msg.type == WSMsgType.TEXT and msg.data:
        return msg.data.encode()
    return None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            import select
            select.select([], [fd], [], 1)
            continue
        except OSError:
            return  # the command stopped reading
        view = view[n:]


def _signal(proc: asyncio.subprocess.Process, sig: int) -> None:
    try:
        proc.send_signal(sig)
    except ProcessLookupError:
        pass
