"""The container runtime the kubelet drives: start, inspect, stop and remove containers.

Each container is a directory ``<state>/<id>`` (config, overlay upper/work dirs, the
mountpoint, the CRI-format log, ``pid`` and ``exit.json`` written by its shim) and one
detached shim process (shim.py). Everything the runtime knows is on disk, so a new Runtime
over the same directory — a restarted agent — sees the same containers, running or not.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nanokube.host.cgroups import CgroupDriver, kill_all
from nanokube.host.process import alive
from . import monitor
from .images import Image, ImageStore

SHIM = Path(__file__).with_name("shim.py")


class ImageNotFound(Exception):
    pass


@dataclass
class Mount:
    source: str
    target: str
    readonly: bool = False
    within: str | None = None  # a subPath's volume: the shim refuses a source that resolves outside


@dataclass
class ContainerConfig:
    id: str
    pod_uid: str
    namespace: str
    pod_name: str
    name: str
    image: str
    argv: list[str]
    env: list[tuple[str, str]]
    working_dir: str | None = None
    netns_path: str | None = None
    hostname: str = ""
    mounts: list[Mount] = field(default_factory=list)
    cgroup: str = ""
    cpu_request_milli: int | None = None
    cpu_limit_milli: int | None = None
    memory_limit_bytes: int | None = None
    stdin: bool = False       # interactive containers (kubectl run -it): the shim keeps attach.sock
    stdin_once: bool = False
    tty: bool = False
    security: dict = field(default_factory=dict)
    oom_score_adj: int | None = None
    log_max_bytes: int = 10 << 20   # the kubelet's containerLogMaxSize (10Mi) and MaxFiles (5)
    log_max_files: int = 5
    pid_ns: str | None = None   # join this pid namespace (the pod's pause process) instead of a new one  # kubelet/security.py: uid, gid, groups, caps, ...


@dataclass
class ContainerStatus:
    id: str
    state: str  # running | exited | unknown
    pid: int | None = None
    exit_code: int | None = None
    started_at: str | None = None
    finished_at: str | None = None
    reason: str | None = None
    signal: int | None = None


def _rfc3339(nano: str | None) -> str | None:
    return nano[:19] + "Z" if nano else None


class Runtime:
    def __init__(self, *, state_dir: Path, images: ImageStore, cgroups: CgroupDriver):
        self.state_dir = Path(state_dir)
        self.images = images
        self.cgroups = cgroups
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._shims: dict[str, subprocess.Popen] = {}
        self.monitor = monitor.binary(self.state_dir)  # the shim's compiled half (None: Python only)

    def dir(self, id: str) -> Path:
        return self.state_dir / id

    def log_path(self, id: str) -> Path:
        return self.dir(id) / "container.log"

    def resolve_image(self, ref: str) -> Image:
        img = self.images.resolve(ref)
        if img is None:
            raise ImageNotFound(ref)
        return img

    def resolve_argv(self, image: str, command: list[str] | None, args: list[str] | None) -> list[str]:
        """Kubernetes' rules: command replaces the entrypoint (and drops the image's cmd);
        args replace the cmd."""
        cfg = self.resolve_image(image).config
        if command:
            return list(command) + list(args or [])
        return list(cfg.entrypoint) + list(args if args else cfg.cmd)

    def image_env(self, image: str) -> list[tuple[str, str]]:
        return [tuple(e.split("=", 1)) for e in self.resolve_image(image).config.env if "=" in e]  # type: ignore[misc]

    async def start(self, cfg: ContainerConfig) -> ContainerStatus:
        img = self.resolve_image(cfg.image)
        d = self.dir(cfg.id)
        if d.exists():
            shutil.rmtree(d)
        for sub in ("upper", "work", "rootfs"):
            (d / sub).mkdir(parents=True)
        procs, ooms = [], []
        if cfg.cgroup:
            self.cgroups.create(cfg.cgroup)
            self.cgroups.set_resources(cfg.cgroup, cpu_request_milli=cfg.cpu_request_milli,
                                       cpu_limit_milli=cfg.cpu_limit_milli, memory_limit_bytes=cfg.memory_limit_bytes)
            procs = self.cgroups.procs_files(cfg.cgroup)
            ooms = self.cgroups.oom_files(cfg.cgroup)
        shim_cfg = {
            "argv": cfg.argv, "env": [list(e) for e in cfg.env], "cwd": cfg.working_dir or img.config.working_dir,
            "lower": str(img.rootfs), "netns": cfg.netns_path, "hostname": cfg.hostname,
            "mounts": [asdict(m) for m in cfg.mounts], "log": str(d / "container.log"),
            "cgroup_procs": procs, "oom_files": ooms,
            "stdin": cfg.stdin, "stdinOnce": cfg.stdin_once, "tty": cfg.tty, "security": cfg.security,
            "oom_score_adj": cfg.oom_score_adj, "log_max_bytes": cfg.log_max_bytes, "log_max_files": cfg.log_max_files,
            "pid_ns": cfg.pid_ns, "monitor": self.monitor,
        }
        (d / "config.json").write_text(json.dumps(shim_cfg))
        (d / "meta.json").write_text(json.dumps({k: v for k, v in asdict(cfg).items() if k not in ("env", "mounts")}))
        err = open(d / "shim.err", "wb")
        p = subprocess.Popen([sys.executable, "-S", str(SHIM), str(d)], stdin=subprocess.DEVNULL,
                             stdout=err, stderr=err, start_new_session=True, close_fds=True)
        err.close()
        self._shims[cfg.id] = p
        (d / "shim.pid").write_text(str(p.pid))
        deadline = time.monotonic() + 10
        while not (d / "pid").exists():
            if p.poll() is not None and not (d / "pid").exists():
                raise RuntimeError(f"shim failed: {(d / 'shim.err').read_text()[-500:]}")
            if time.monotonic() > deadline:
                raise RuntimeError("shim did not start the container in 10s")
            await asyncio.sleep(0.005)
        return await self.status(cfg.id)

    async def status(self, id: str) -> ContainerStatus:
        d = self.dir(id)
        pidf, exitf = d / "pid", d / "exit.json"
        if not pidf.exists():
            return ContainerStatus(id, "unknown")
        pid_s, started = pidf.read_text().split(" ", 1)
        pid = int(pid_s)
        self._reap(id)
        if exitf.exists():
            ex = json.loads(exitf.read_text())
            code = ex["exitCode"]
            reason = "OOMKilled" if ex.get("oomKilled") else ("Completed" if code == 0 else "Error")
            return ContainerStatus(id, "exited", pid, code, _rfc3339(started), _rfc3339(ex["finishedAt"]), reason,
                                   ex.get("signal"))
        if alive(pid):
            return ContainerStatus(id, "running", pid, None, _rfc3339(started))
        # The container is gone but its shim recorded nothing (the shim was killed): unknown end.
        shim_pid = int((d / "shim.pid").read_text()) if (d / "shim.pid").exists() else 0
        if shim_pid and alive(shim_pid):
            return ContainerStatus(id, "running", pid, None, _rfc3339(started))
        return ContainerStatus(id, "exited", pid, 255, _rfc3339(started), _rfc3339(started), "Error")

    def _reap(self, id: str) -> None:
        p = self._shims.get(id)
        if p is not None and p.poll() is not None:
            self._shims.pop(id, None)

    async def stop(self, id: str, *, grace_seconds: float) -> None:
        st = await self.status(id)
        if st.state != "running" or not st.pid:
            return
        try:
            os.kill(st.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + max(0.0, grace_seconds)
        while time.monotonic() < deadline:
            if (await self.status(id)).state != "running":
                return
            await asyncio.sleep(0.05)
        try:
            os.kill(st.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 5
        while (await self.status(id)).state == "running" and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    async def remove(self, id: str) -> None:
        d = self.dir(id)
        if not d.exists():
            return
        st = await self.status(id)
        if st.state == "running":
            await self.stop(id, grace_seconds=0)
        shim_pid = int((d / "shim.pid").read_text()) if (d / "shim.pid").exists() else 0
        deadline = time.monotonic() + 5
        while shim_pid and alive(shim_pid) and time.monotonic() < deadline:
            self._reap(id)
            await asyncio.sleep(0.02)
        meta = json.loads((d / "meta.json").read_text()) if (d / "meta.json").exists() else {}
        if meta.get("cgroup"):
            kill_all(self.cgroups, meta["cgroup"])
            self.cgroups.remove(meta["cgroup"])
        shutil.rmtree(d, ignore_errors=True)

    def exec_argv(self, id: str, command: list[str]) -> list[str]:
        """The command line that runs ``command`` inside running container ``id`` (shim --exec)."""
        return [sys.executable, "-S", str(SHIM), "--exec", str(self.dir(id)), "--", *command]

    def pause_pid_ns(self, pod_uid: str, netns_path: str | None, *, cgroup: str = "") -> str:
        """The pod's shared pid namespace (shareProcessNamespace): its pause process's, started
        on first use. Returns the namespace's /proc path."""
        d = self.state_dir / f"pause-{pod_uid}"
        pidf = d / "pid"
        if not (pidf.exists() and alive(int(pidf.read_text()))):
            d.mkdir(parents=True, exist_ok=True)
            pidf.unlink(missing_ok=True)
            subprocess.run([sys.executable, "-S", str(SHIM), "--pause", str(d), netns_path or "", self.monitor or ""],
                           check=True, stdin=subprocess.DEVNULL, capture_output=True, timeout=10, start_new_session=True)
        if cgroup:  # in the pod's cgroup, so that tearing the pod (or the cluster) down ends it too
            self.cgroups.create(cgroup)
            self.cgroups.add_process(cgroup, int(pidf.read_text()))
        return f"/proc/{pidf.read_text().strip()}/ns/pid"

    def remove_pause(self, pod_uid: str) -> None:
        d = self.state_dir / f"pause-{pod_uid}"
        pidf = d / "pid"
        if pidf.exists():
            try:
                os.kill(int(pidf.read_text()), signal.SIGKILL)  # pid 1 of the pod's namespace: all go
            except (ProcessLookupError, ValueError):
                pass
        shutil.rmtree(d, ignore_errors=True)

    def attach_socket(self, id: str) -> Path:
        """The shim's attach socket of an interactive (stdin/tty) container."""
        return self.dir(id) / "attach.sock"

    def list(self) -> list[str]:
        return sorted(p.name for p in self.state_dir.iterdir() if (p / "config.json").exists())

    def meta(self, id: str) -> dict:
        f = self.dir(id) / "meta.json"
        return json.loads(f.read_text()) if f.exists() else {}
