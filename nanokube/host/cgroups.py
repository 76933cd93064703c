"""cgroups: one interface, a v1 and a v2 driver, rooted where this process already is.

The root of everything nanokube creates is the cgroup the calling process was started in
(per controller on v1, read from /proc/self/cgroup) — never elsewhere in the host's tree.
Resources use upstream's formulas: cpu.shares = milli*1024/1000 (min 2), CFS quota =
milli*100 µs per 100 ms period, memory limit in bytes; v2 maps them to cpu.weight, cpu.max
and memory.max. Plain file writes: cgroupspy models only v1 and would be a second way of
doing the same few writes, so neither driver uses it.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

CGROUP_FS = Path("/sys/fs/cgroup")
V1_CONTROLLERS = ("cpu", "memory", "pids")
PERIOD_US = 100_000


def own_cgroups() -> dict[str, str]:
    """controller (or "" for the v2 unified hierarchy) → this process's cgroup path."""
    out = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        for c in ctrls.split(",") if ctrls else [""]:
            out[c] = path
    return out


def shares(milli: int) -> int:
    return max(2, milli * 1024 // 1000)


def weight_from_shares(s: int) -> int:
    """Upstream's conversion from cpu.shares to cgroup v2 cpu.weight."""
    return 1 + ((s - 2) * 9999) // 262142


class CgroupDriver:
    version = 0

    def dirs(self, rel: str) -> list[Path]:
        raise NotImplementedError

    def create(self, rel: str) -> None:
        for d in self.dirs(rel):
            d.mkdir(parents=True, exist_ok=True)

    def set_resources(self, rel: str, *, cpu_request_milli: int | None = None, cpu_limit_milli: int | None = None,
                      memory_limit_bytes: int | None = None) -> None:
        raise NotImplementedError

    def procs_files(self, rel: str) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs(rel)]

    def add_process(self, rel: str, pid: int) -> None:
        for f in self.procs_files(rel):
            Path(f).write_text(str(pid))

    def pids(self, rel: str) -> set[int]:
        """Every process in the subtree (recursive)."""
        out: set[int] = set()
        for d in self.dirs(rel):
            if d.exists():
                for f in d.rglob("cgroup.procs"):
                    try:
                        out.update(int(x) for x in f.read_text().split())
                    except OSError:
                        pass
        return out

    def oom_files(self, rel: str) -> list[str]:
        """Files holding an ``oom_kill <count>`` line for the cgroup (read by the shim)."""
        raise NotImplementedError

    def oom_killed(self, rel: str) -> bool:
        for f in self.oom_files(rel):
            try:
                for line in Path(f).read_text().splitlines():
                    k, _, v = line.partition(" ")
                    if k == "oom_kill" and int(v) > 0:
                        return True
            except OSError:
                pass
        return False

    def remove(self, rel: str, *, timeout: float = 5.0) -> None:
        """Remove the subtree, children first; retries while the kernel still counts
        exiting processes in it."""
        for d in self.dirs(rel):
            if not d.exists():
                continue
            for sub in sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)) + [d]:
                deadline = time.monotonic() + timeout
                while True:
                    try:
                        sub.rmdir()
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.05)


class V1(CgroupDriver):
    version = 1

    def __init__(self, *, root: dict[str, str] | None = None):
        own = root or own_cgroups()
        self.roots = {c: CGROUP_FS / c / own.get(c, "/").lstrip("/") for c in V1_CONTROLLERS
                      if (CGROUP_FS / c).exists()}

    def dirs(self, rel: str) -> list[Path]:
        return [r / rel for r in self.roots.values()]

    def set_resources(self, rel: str, *, cpu_request_milli: int | None = None, cpu_limit_milli: int | None = None,
                      memory_limit_bytes: int | None = None) -> None:
        if "cpu" in self.roots:
            d = self.roots["cpu"] / rel
            (d / "cpu.shares").write_text(str(shares(cpu_request_milli or 0)))
            if cpu_limit_milli:
                (d / "cpu.cfs_period_us").write_text(str(PERIOD_US))
                (d / "cpu.cfs_quota_us").write_text(str(max(1000, cpu_limit_milli * PERIOD_US // 1000)))
        if memory_limit_bytes and "memory" in self.roots:
            (self.roots["memory"] / rel / "memory.limit_in_bytes").write_text(str(memory_limit_bytes))

    def oom_files(self, rel: str) -> list[str]:
        return [str(self.roots["memory"] / rel / "memory.oom_control")] if "memory" in self.roots else []


class V2(CgroupDriver):
    version = 2

    def __init__(self, *, root: str | None = None):
        self.root = CGROUP_FS / (root if root is not None else own_cgroups().get("", "/")).lstrip("/")

    def dirs(self, rel: str) -> list[Path]:
        return [self.root / rel]

    def create(self, rel: str) -> None:
        # Controllers must be enabled in every parent's subtree_control on the way down.
        d = self.root
        for part in Path(rel).parts:
            try:
                avail = set((d / "cgroup.controllers").read_text().split())
                want = [c for c in ("cpu", "memory", "pids") if c in avail]
                (d / "cgroup.subtree_control").write_text(" ".join("+" + c for c in want))
            except OSError:
                pass  # no internal processes rule: limits then apply from the first level that allows
            d = d / part
            d.mkdir(exist_ok=True)

    def set_resources(self, rel: str, *, cpu_request_milli: int | None = None, cpu_limit_milli: int | None = None,
                      memory_limit_bytes: int | None = None) -> None:
        d = self.root / rel
        try:
            if cpu_request_milli is not None:
                (d / "cpu.weight").write_text(str(weight_from_shares(shares(cpu_request_milli))))
            if cpu_limit_milli:
                (d / "cpu.max").write_text(f"{max(1000, cpu_limit_milli * PERIOD_US // 1000)} {PERIOD_US}")
            if memory_limit_bytes:
                (d / "memory.max").write_text(str(memory_limit_bytes))
        except FileNotFoundError:
            pass

    def oom_files(self, rel: str) -> list[str]:
        return [str(self.root / rel / "memory.events")]


def detect() -> CgroupDriver:
    """v2 when the unified hierarchy is the only one (or the memory controller is on it)."""
    if (CGROUP_FS / "cgroup.controllers").exists():
        return V2()
    return V1()


def kill_all(driver: CgroupDriver, rel: str, *, timeout: float = 5.0) -> None:
    """SIGKILL every process in the subtree until it is empty (for teardown)."""
    deadline = time.monotonic() + timeout
    while True:
        pids = driver.pids(rel)
        if not pids or time.monotonic() > deadline:
            return
        for p in pids:
            try:
                os.kill(p, 9)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
