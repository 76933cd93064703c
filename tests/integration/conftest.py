"""Integration fixtures: a real `nanokube up --isolated` cluster per test module.

Each cluster gets a unique name and its own state directory; the fixture snapshots the
host's kernel objects before `up` and checks after `down` that they are exactly as before.
Traffic only ever goes to addresses inside the namespaces the cluster created.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from tests import polling

ROOT = Path(__file__).resolve().parents[2]
NANOKUBE = [sys.executable, "-m", "nanokube"]


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("integration tests need root")


def snapshot() -> dict[str, set[str]]:
    """Kernel objects that look like nanokube's, plus the root namespace's own state."""
    def lines(*argv: str) -> set[str]:
        r = subprocess.run(argv, capture_output=True, text=True)
        return set(r.stdout.splitlines())
    cg = set()
    for base in Path("/sys/fs/cgroup").iterdir():
        for p in base.rglob("nanokube*"):
            if p.is_dir():
                cg.add(str(p))
    mounts = {l.split()[1] for l in Path("/proc/mounts").read_text().splitlines()
              if "nanokube" in l or "/nkp-" in l or "/nk-" in l}
    procs = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "nanokube" in cmd and (" server" in cmd or " agent" in cmd or "runtime.shim" in cmd
                                      or "runtime/shim.py" in cmd or "nk-monitor" in cmd):
                procs.add(f"{d.name} {cmd}")
    return {
        "netns": {l.split()[0] for l in lines("ip", "netns", "list") if l.startswith("nk")},
        "links": {l.split(":")[1].strip().split("@")[0] for l in lines("ip", "-o", "link") if ": nk" in l},
        "root_links": lines("ip", "-o", "link"),
        "root_routes": lines("ip", "route"),
        # comments carry a timestamp and chain policies carry packet counters: compare the rules
        "root_iptables": {re.sub(r"\[\d+:\d+\]", "", l) for save in ("iptables-legacy-save", "iptables-nft-save")
                          for l in lines(save) if not l.startswith("#")},
        "cgroups": cg,
        "mounts": mounts,
        "processes": procs,
    }


class Cluster:
    def __init__(self, name: str, state_dir: Path, nodes: int):
        self.name, self.state_dir, self.nodes = name, state_dir, nodes

    def _base(self, cmd: str) -> list[str]:
        return NANOKUBE + [cmd, "--cluster", self.name, "--state-dir", str(self.state_dir)]

    def kubectl(self, *args: str, check: bool = True, input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        r = subprocess.run(self._base("kubectl") + ["--", *args], capture_output=True, text=True, input=input,
                           timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({r.returncode}): {r.stderr}{r.stdout}")
        return r

    def kjson(self, *args: str) -> dict:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def host(self, *cmd: str, node: str | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
        argv = self._base("exec") + (["--node", node] if node else []) + ["--", *cmd]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)

    def wget(self, url: str, *, node: str | None = None) -> str | None:
        # busybox wget crashes with -T; bound it with the timeout applet instead.
        r = self.host("busybox", "timeout", "5", "busybox", "wget", "-qO-", url, node=node, timeout=15)
        return r.stdout if r.returncode == 0 else None

    def wait_for(self, what: str, fn, *, timeout: float = 60, interval: float = 0.5):
        return polling.wait_for(what, fn, timeout=timeout, interval=interval, context=lambda: "\n" + self.logs_tail())

    def logs_tail(self) -> str:
        out = []
        for f in sorted((self.state_dir / self.name / "logs").glob("*.log")):
            lines = f.read_text(errors="replace").splitlines()[-25:]
            out.append(f"--- {f.name}\n" + "\n".join(lines))
        return "\n".join(out)


def start_cluster(tmp_path_factory, nodes: int = 3, *, extra: tuple[str, ...] = ()) -> Cluster:
    _need_root()
    # NK_TEST_CLUSTER_PREFIX lets whoever runs the tests tell their clusters apart (default "t").
    name = os.environ.get("NK_TEST_CLUSTER_PREFIX", "t") + secrets.token_hex(3)
    state = tmp_path_factory.mktemp("nk")
    c = Cluster(name, state, nodes)
    r = subprocess.run(NANOKUBE + ["up", "--isolated", "--detach", "--nodes", str(nodes), "--cluster", name,
                                   "--state-dir", str(state), "--timeout", "90", *extra],
                       capture_output=True, text=True, timeout=150)
    if r.returncode != 0:
        tail = c.logs_tail()
        subprocess.run(NANOKUBE + ["down", "--cluster", name, "--state-dir", str(state)], capture_output=True)
        raise AssertionError(f"nanokube up failed: {r.stdout}{r.stderr}\n{tail}")
    return c


def stop_cluster(c: Cluster) -> subprocess.CompletedProcess:
    return subprocess.run(NANOKUBE + ["down", "--cluster", c.name, "--state-dir", str(c.state_dir)],
                          capture_output=True, text=True, timeout=120)


def server_argv(c: Cluster) -> tuple[int, list[str]]:
    """The running server's pid and command line, exactly as `up` started it (read it before
    stopping the server, to start it again the same way with ``restart_server``)."""
    pid = int((c.state_dir / c.name / "pids" / "server.pid").read_text())
    return pid, [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")]


def restart_server(c: Cluster, argv: list[str], *, timeout: float = 60) -> subprocess.Popen:
    """Start the cluster's server again with ``argv``, logging where `up` logs and recording its
    pid so that `down` stops it; return once it answers /readyz."""
    with open(c.state_dir / c.name / "logs" / "server.log", "ab") as log:
        p = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    (c.state_dir / c.name / "pids" / "server.pid").write_text(str(p.pid))
    c.wait_for("the restarted server to be ready",
               lambda: p.poll() is None and c.kubectl("get", "--raw", "/readyz", check=False).returncode == 0,
               timeout=timeout, interval=0.2)
    return p


@pytest.fixture(scope="module")
def one_node_cluster(tmp_path_factory):
    """A 1-node cluster for one test module, taken down after it."""
    c = start_cluster(tmp_path_factory, nodes=1)
    yield c
    stop_cluster(c)
