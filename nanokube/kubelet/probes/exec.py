"""exec probes: the command runs inside the container (its mount, pid, uts, ipc and network
namespaces, entered with util-linux's nsenter); exit code 0 is success."""
from __future__ import annotations

import asyncio
import os
import signal

from . import Obj, Target


def nsenter_argv(pid: int, command: list[str]) -> list[str]:
    return ["nsenter", "-t", str(pid), "-m", "-u", "-i", "-n", "-p", "-r", "-w", "--", *command]


async def run(h: Obj, t: Target, *, timeout: float) -> tuple[bool, str]:
    cmd = h.get("command") or []
    if not cmd:
        return False, "exec probe has no command"
    if not t.pid:
        return False, "container is not running"
    proc = await asyncio.create_subprocess_exec(*nsenter_argv(t.pid, cmd), stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        # nsenter forks to enter the pid namespace: end the whole session, not just nsenter.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        await proc.wait()
        return False, f"command {cmd!r} timed out"
    text = out.decode(errors="replace").strip()
    return (proc.returncode == 0), text
