"""cgroups: one interface, a v1 and a v2 driver, rooted where this process already is.

The root of everything nanokube creates is the cgroup the calling process was started in
(per controller on v1, read from /proc/self/cgroup) — never elsewhere in the host's tree.
Resources use upstream's formulas: cpu.shares = milli*1024/1000 (min 2), CFS quota =
milli*100 µs per 100 ms period, memory limit in bytes; v2 maps them to cpu.weight, cpu.max
and memory.max. A pod's process count is capped by pids.max (the kubelet's podPidsLimit),
the same file in both versions. Plain file writes: cgroupspy models only v1 and would be a
second way of doing the same few writes, so neither driver uses it.

``usage(rel)`` reads what the kubelet's stats sampler needs, as cAdvisor computes it:
cumulative CPU time (v1 cpuacct.usage, v2 cpu.stat usage_usec) and the memory working set
(usage minus inactive file pages: v1 memory.usage_in_bytes - total_inactive_file, v2
memory.current - inactive_file). ``host_usage()`` is the same pair for the whole machine,
from /proc/stat and /proc/meminfo.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import NamedTuple

CGROUP_FS = Path("/sys/fs/cgroup")
V1_CONTROLLERS = ("cpu", "cpuacct", "memory", "pids")  # cpuacct: per-container CPU time (often co-mounted with cpu)
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


class Usage(NamedTuple):
    cpu_ns: int              # cumulative CPU time
    memory_bytes: int        # memory usage, page cache included
    working_set_bytes: int   # usage minus inactive file pages (what the OOM killer cannot just drop)


def stat_value(text: str, key: str) -> int:
    """The value of ``key`` in a flat-keyed file such as memory.stat or cpu.stat (0 if absent)."""
    for line in text.splitlines():
        k, _, v = line.partition(" ")
        if k == key:
            return int(v)
    return 0


def working_set(usage: int, inactive_file: int) -> int:
    return max(0, usage - inactive_file)


def host_usage(*, proc: Path = Path("/proc")) -> Usage:
    """The whole machine: busy CPU time from /proc/stat (all but idle and iowait), memory used
    (MemTotal - MemFree) and working set (that minus Inactive(file)) from /proc/meminfo."""
    ticks = [int(x) for x in (proc / "stat").read_text().splitlines()[0].split()[1:]]
    busy = sum(ticks[:8]) - ticks[3] - (ticks[4] if len(ticks) > 4 else 0)  # user..steal, without idle, iowait
    mem = {}
    for line in (proc / "meminfo").read_text().splitlines():
        k, _, v = line.partition(":")
        mem[k] = int(v.split()[0]) * 1024
    used = mem["MemTotal"] - mem["MemFree"]
    return Usage(busy * 1_000_000_000 // os.sysconf("SC_CLK_TCK"), used, working_set(used, mem.get("Inactive(file)", 0)))


class CgroupDriver:
    version = 0

    def dirs(self, rel: str) -> list[Path]:
        raise NotImplementedError

    def usage(self, rel: str) -> Usage | None:
        """CPU time and memory of the cgroup's subtree, or None when it does not exist."""
        raise NotImplementedError

    def create(self, rel: str) -> None:
        for d in self.dirs(rel):
            d.mkdir(parents=True, exist_ok=True)

    def set_resources(self, rel: str, *, cpu_request_milli: int | None = None, cpu_limit_milli: int | None = None,
                      memory_limit_bytes: int | None = None) -> None:
        raise NotImplementedError

    def procs_files(self, rel: str) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs(rel)]

    def pids_dir(self, rel: str) -> Path | None:
        """The cgroup's directory in the pids controller, None where there is none."""
        return None

    def set_pids_limit(self, rel: str, limit: int | None) -> None:
        """pids.max (the kubelet's podPidsLimit): forks beyond it fail with EAGAIN; None or
        a negative limit means no limit ("max"). Same file on v1 and v2."""
        d = self.pids_dir(rel)
        if d is not None and (d / "pids.max").exists():
            (d / "pids.max").write_text("max" if limit is None or limit < 0 else str(limit))

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

    def __init__(self, *, root: dict[str, str] | None = None, fs: Path = CGROUP_FS):
        own = root or own_cgroups()
        self.roots = {c: fs / c / own.get(c, "/").lstrip("/") for c in V1_CONTROLLERS
                      if (fs / c).exists()}

    def dirs(self, rel: str) -> list[Path]:
        # co-mounted controllers (cpu,cpuacct) reach one directory by two names: use it once
        out: dict[str, Path] = {}
        for r in self.roots.values():
            out.setdefault(os.path.realpath(r), r / rel)
        return list(out.values())

    def usage(self, rel: str) -> Usage | None:
        if "cpuacct" not in self.roots or "memory" not in self.roots:
            return None
        cpu, mem = self.roots["cpuacct"] / rel, self.roots["memory"] / rel
        try:
            cpu_ns = int((cpu / "cpuacct.usage").read_text())
            used = int((mem / "memory.usage_in_bytes").read_text())
            inactive = stat_value((mem / "memory.stat").read_text(), "total_inactive_file")
        except (FileNotFoundError, NotADirectoryError):
            return None
        return Usage(cpu_ns, used, working_set(used, inactive))

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

    def pids_dir(self, rel: str) -> Path | None:
        return self.roots["pids"] / rel if "pids" in self.roots else None


class V2(CgroupDriver):
    version = 2

    def __init__(self, *, root: str | None = None, fs: Path = CGROUP_FS):
        self.root = fs / (root if root is not None else own_cgroups().get("", "/")).lstrip("/")

    def dirs(self, rel: str) -> list[Path]:
        return [self.root / rel]

    def usage(self, rel: str) -> Usage | None:
        d = self.root / rel
        try:
            cpu_ns = stat_value((d / "cpu.stat").read_text(), "usage_usec") * 1000
            used = int((d / "memory.current").read_text())
            inactive = stat_value((d / "memory.stat").read_text(), "inactive_file")
        except (FileNotFoundError, NotADirectoryError):
            return None
        return Usage(cpu_ns, used, working_set(used, inactive))

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

    def pids_dir(self, rel: str) -> Path | None:
        return self.root / rel


def detect(*, root: str | None = None) -> CgroupDriver:
    """v2 when the unified hierarchy is the only one (or the memory controller is on it).

    ``root`` (an absolute cgroup path, as upstream kubelet's --cgroup-root) replaces the default,
    this process's own cgroup. Real hosts under systemd on v2 need it: a service's cgroup holds
    the agent itself, and v2's no-internal-processes rule then forbids enabling controllers for
    pod cgroups below it (so memory.max would not exist), whereas the root cgroup is exempt."""
    if (CGROUP_FS / "cgroup.controllers").exists():
        return V2(root=root)
    return V1(root=None if root is None else {c: root for c in V1_CONTROLLERS})


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
