"""A container's securityContext, resolved into what the shim applies.

As upstream's kubelet and runc: the user is the container's ``runAsUser``, else the pod's,
else the image's ``user`` (a name is looked up in the image's /etc/passwd); the group is
``runAsGroup``, else that user's primary group; supplementary groups are the pod's
``supplementalGroups``, ``fsGroup`` and the primary group (as containerd sets them). Capabilities start from the container runtimes'
default set, then ``drop`` and ``add`` (``ALL`` allowed); ``privileged`` keeps them all.
``no_new_privs`` is set only when ``allowPrivilegeEscalation: false``. ``runAsNonRoot``
refuses to start a container that would run as root, with upstream's messages.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

Obj = dict[str, Any]

CAPS = ["CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
        "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
        "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
        "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
        "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
        "CHECKPOINT_RESTORE"]
DEFAULT_CAPS = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
                "NET_BIND_SERVICE", "NET_RAW", "SYS_CHROOT", "MKNOD", "AUDIT_WRITE", "SETFCAP"]


class SecurityError(KeyError):
    """The container must not start (CreateContainerConfigError)."""


def _cap(name: str) -> str:
    n = name.upper()
    return n[4:] if n.startswith("CAP_") else n


def _lookup(rootfs: Path | None, table: str, key: str, field: int) -> int | None:
    """A name's (or uid's) entry in the image's /etc/passwd or /etc/group: column ``field``."""
    if rootfs is None:
        return None
    try:
        for line in (rootfs / "etc" / table).read_text(errors="replace").splitlines():
            parts = line.split(":")
            if len(parts) > 3 and (parts[0] == key or (key.isdigit() and parts[2] == key)):
                return int(parts[field])
    except (OSError, ValueError):
        pass
    return None


def resolve(pod: Obj, c: Obj, *, image_user: str = "", rootfs: Path | None = None) -> Obj:
    psc = pod["spec"].get("securityContext") or {}
    csc = c.get("securityContext") or {}
    md = pod["metadata"]
    who = f'(pod: "{md.get("name")}_{md.get("namespace")}({md.get("uid")})", container: {c["name"]})'
    uid = csc.get("runAsUser", psc.get("runAsUser"))
    gid = csc.get("runAsGroup", psc.get("runAsGroup"))
    user, _, group = (image_user or "").partition(":")
    if uid is None and user:
        if user.isdigit():
            uid = int(user)
        else:
            uid = _lookup(rootfs, "passwd", user, 2)
            if uid is None:
                if csc.get("runAsNonRoot", psc.get("runAsNonRoot")):
                    raise SecurityError(f"container has runAsNonRoot and image has non-numeric user ({user}), "
                                        f"cannot verify user is non-root {who}")
                raise SecurityError(f'unable to find user {user}: no matching entries in passwd file')
    if gid is None and group:
        gid = int(group) if group.isdigit() else _lookup(rootfs, "group", group, 2)
    if gid is None and uid is not None:
        gid = _lookup(rootfs, "passwd", str(uid), 3)
    uid = int(uid or 0)
    gid = int(gid or 0)
    if csc.get("runAsNonRoot", psc.get("runAsNonRoot")) and uid == 0:
        if csc.get("runAsUser", psc.get("runAsUser")) is not None:
            raise SecurityError(f"container's runAsUser breaks non-root policy {who}")
        raise SecurityError(f"container has runAsNonRoot and image will run as root {who}")
    groups = [int(g) for g in psc.get("supplementalGroups") or []]
    for g in (psc.get("fsGroup"), gid if uid or gid else None):  # containerd adds the primary group too
        if g is not None and int(g) not in groups:
            groups.append(int(g))
    privileged = bool(csc.get("privileged"))
    caps = set(CAPS if privileged else DEFAULT_CAPS)
    capsc = csc.get("capabilities") or {}
    if not privileged:
        drop = {_cap(x) for x in capsc.get("drop") or []}
        caps = set() if "ALL" in drop else caps - drop
        add = {_cap(x) for x in capsc.get("add") or []}
        caps |= set(CAPS) if "ALL" in add else (add & set(CAPS))
    return {"uid": uid, "gid": gid, "groups": groups, "caps": sorted(CAPS.index(x) for x in caps),
            "no_new_privs": csc.get("allowPrivilegeEscalation") is False and not privileged,
            "readonly_root": bool(csc.get("readOnlyRootFilesystem")), "privileged": privileged}
