"""The VMs' "host": a network namespace of the test's own, with its own libvirtd and virtlogd.

Key design choice: libvirt, vagrant and every check run inside one network namespace that
the test creates (``nkvm-<hex>``), so libvirt's bridges, NAT rules, dnsmasq, ip_forward and
the VMs' addresses never touch the host's own network; the namespace is the machine a
Vagrant user would sit at. Everything started in it is found again by ``ip netns pids`` and
ended by pid, so teardown removes exactly what this test made, also after a failure.

Pure helpers (``parse_*``, ``cluster_yaml``) are separate from the subprocess shell.
"""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
VAGRANT_DIR = REPO / "vagrant"
VAGRANT_HOME = Path(os.environ.get("NANOKUBE_VAGRANT_HOME", "/var/cache/nanokube/vagrant-home"))
BOX_NAME = "nanokube/debian12"
DAEMONS = ("libvirtd", "virtlogd")


# -- pure ------------------------------------------------------------------------------------
def parse_names(text: str) -> list[str]:
    """`virsh list --all --name` / `virsh net-list --all --name` output → names."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def parse_pids(text: str) -> list[int]:
    return [int(t) for t in text.split() if t.isdigit()]


def cluster_yaml(base: dict[str, Any], *, box: str, driver: str = "qemu") -> dict[str, Any]:
    """The repo's cluster.yaml with the offline box and the libvirt driver for this machine
    (TCG: nested /dev/kvm here hangs the stock Debian kernel)."""
    cfg = dict(base, box=box)
    lv = dict((base.get("providers") or {}).get("libvirt") or {}, driver=driver)
    if driver == "qemu":
        lv.update(cpu_mode="custom", cpu_model="qemu64")  # host-model needs KVM
    cfg["providers"] = dict(base.get("providers") or {}, libvirt=lv)
    return cfg


def daemons_outside(namespaces_of: dict[int, str | None]) -> list[int]:
    """pids of libvirt daemons that run in the root network namespace (namespace None)."""
    return [pid for pid, ns in namespaces_of.items() if ns is None]


# -- shell -----------------------------------------------------------------------------------
def _pids_named(name: str) -> list[int]:
    """Live processes called ``name`` (zombies are dead: a daemon's exited parent shows as one)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
                comm, state = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:][:1]
                if comm == name and state not in ("Z", "X"):
                    out.append(int(d.name))
            except (OSError, ValueError):
                pass
    return out


def _netns_of(pid: int) -> str | None:
    """The named netns a pid is in, None for the root namespace (or one without a name)."""
    r = subprocess.run(["ip", "netns", "identify", str(pid)], capture_output=True, text=True)
    return r.stdout.strip() or None


def libvirt_daemons_in_root_netns() -> list[int]:
    return daemons_outside({pid: _netns_of(pid) for d in DAEMONS for pid in _pids_named(d)})


@dataclass
class VmHost:
    name: str = field(default_factory=lambda: f"nkvm-{secrets.token_hex(3)}")
    started: bool = False
    networks_before: list[str] = field(default_factory=list)

    def run(self, *cmd: str, check: bool = True, timeout: float = 600, cwd: Path | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        r = subprocess.run(["ip", "netns", "exec", self.name, *cmd], capture_output=True, text=True,
                           timeout=timeout, cwd=cwd, env=env)
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} → {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
        return r

    def virsh(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run("virsh", "-q", "-c", "qemu:///system", *args, check=check, timeout=120)

    def start(self) -> None:
        if _pids_named("libvirtd") or _pids_named("virtlogd"):
            raise RuntimeError("a libvirtd/virtlogd already runs on this machine; not starting a second one")
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.started = True
        self.run("ip", "link", "set", "lo", "up")
        self.run("virtlogd", "-d")
        self.run("libvirtd", "-d")
        deadline = time.monotonic() + 60
        while self.virsh("version", check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError("libvirtd did not answer within 60s")
            time.sleep(0.5)
        self.networks_before = parse_names(self.virsh("net-list", "--all", "--name").stdout)

    def pids(self) -> list[int]:
        r = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True)
        return parse_pids(r.stdout)

    def stop(self) -> None:
        """Remove every domain, network and process this namespace holds, then the namespace."""
        if not self.started:
            return
        try:
            for dom in parse_names(self.virsh("list", "--all", "--name", check=False).stdout):
                if dom.startswith("vagrant_"):
                    self.virsh("destroy", dom, check=False)
                    self.virsh("undefine", dom, "--remove-all-storage", check=False)
            for net in parse_names(self.virsh("net-list", "--all", "--name", check=False).stdout):
                self.virsh("net-destroy", net, check=False)  # stops its dnsmasq, removes its bridge
                if net not in self.networks_before:
                    self.virsh("net-undefine", net, check=False)
        except Exception:  # noqa: BLE001 - still kill what runs and remove the namespace
            pass
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            pids = self.pids()
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait
            while self.pids() and time.monotonic() < deadline:
                time.sleep(0.2)
        subprocess.run(["ip", "netns", "del", self.name], check=False)
        self.started = False
