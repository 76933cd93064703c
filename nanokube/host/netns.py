"""Named network namespaces (``/run/netns/<name>``, the ``ip netns`` convention).

``enter`` moves the *calling thread* into a namespace with setns(2); the agent calls it once
at start-up, before it creates any thread, so everything it does afterwards (netlink,
iptables, /proc/sys/net) happens in its node's namespace. ``run_in`` runs a function in a
fresh thread inside a namespace. Namespaces are made and removed with iproute2's ``ip
netns``: pyroute2's helpers fork, and a forked child of an asyncio program shares its
signal wake-up fd (we saw an agent stop on a SIGTERM that was never sent to it).
"""
from __future__ import annotations

import ctypes
import os
from pathlib import Path

import subprocess
import threading
from typing import Any, Callable

RUN_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def path(name: str) -> str:
    return str(RUN_DIR / name)


def exists(name: str) -> bool:
    return (RUN_DIR / name).exists()


def create(name: str) -> None:
    if not exists(name):
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)


def delete(name: str) -> None:
    if exists(name):
        subprocess.run(["ip", "netns", "delete", name], check=True, capture_output=True)


def list_names(prefix: str = "") -> list[str]:
    if not RUN_DIR.exists():
        return []
    return sorted(p.name for p in RUN_DIR.iterdir() if p.name.startswith(prefix))


def enter(name: str) -> None:
    fd = os.open(path(name), os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({name}): {os.strerror(err)}")
    finally:
        os.close(fd)


def write_sysctl(key: str, value: str) -> bool:
    """Write /proc/sys/<key> (dots as slashes) in the caller's netns; False if it does not exist."""
    p = Path("/proc/sys") / key.replace(".", "/")
    if not p.exists():
        return False
    p.write_text(value)
    return True


def run_in(name: str | None, fn: Callable[[], Any]) -> Any:
    """fn() in a new thread that has entered netns ``name`` (or here, if None)."""
    if name is None:
        return fn()
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            enter(name)
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller
            box["error"] = e
    t = threading.Thread(target=target, name=f"netns-{name}")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")
