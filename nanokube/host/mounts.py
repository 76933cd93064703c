"""Mounts the kubelet makes on the node itself: the tmpfs behind secret and projected volumes.

As upstream, a Secret handed to a pod lives in memory only (a tmpfs at the volume's
directory), never on the node's disk. Everything mounted here is found again from
/proc/self/mountinfo by path prefix, so a restarted agent and ``nanokube down`` can remove
what a crashed one left. Plain libc calls through ctypes; paths are whole-component
prefixes, so ``/a/b`` never matches ``/a/bc``.
"""
from __future__ import annotations

import ctypes
import os
from pathlib import Path

MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8
MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (\\040 ...)."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mount_points(mountinfo: str) -> list[str]:
    """The mount points listed in a /proc/<pid>/mountinfo text, in mount order."""
    return [_unescape(line.split()[4]) for line in mountinfo.splitlines() if len(line.split()) > 4]


def below(points: list[str], prefix: str) -> list[str]:
    """The mount points at or under ``prefix``, deepest first (the order to unmount them)."""
    p = prefix.rstrip("/")
    hits = [m for m in points if m == p or m.startswith(p + "/")]
    return sorted(set(hits), key=lambda m: (-m.count("/"), m))


def _current() -> list[str]:
    return mount_points(Path("/proc/self/mountinfo").read_text())


def is_mount_point(path: Path | str) -> bool:
    return os.path.realpath(path) in set(_current())


def mount_tmpfs(path: Path | str, *, size: str = "64m", mode: int = 0o755) -> None:
    """A tmpfs at ``path`` (created if missing) unless one is already there."""
    Path(path).mkdir(parents=True, exist_ok=True)
    if is_mount_point(path):
        return
    if _libc.mount(b"tmpfs", os.fsencode(os.path.realpath(path)), b"tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                   f"size={size},mode={mode:o}".encode()) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"mount tmpfs at {path}: {os.strerror(e)}")


def unmount_below(prefix: Path | str) -> list[str]:
    """Detach every mount at or under ``prefix``; returns what was unmounted."""
    done = []
    for m in below(_current(), os.path.realpath(prefix)):
        if _libc.umount2(os.fsencode(m), MNT_DETACH) == 0:
            done.append(m)
    return done
