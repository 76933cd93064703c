"""Host-local IPAM: addresses of a node's pod CIDR, one file per allocation.

A file ``<ip>`` holding the pod uid is the record, so an agent restart neither loses nor
doubles an address, and the same uid gets its address back. ``.1`` is the bridge's.
"""
from __future__ import annotations

import ipaddress
import os
from pathlib import Path


class Exhausted(Exception):
    pass


class Ipam:
    def __init__(self, state_dir: Path, cidr: str):
        self.dir = state_dir
        self.net = ipaddress.ip_network(cidr)
        self.dir.mkdir(parents=True, exist_ok=True)

    @property
    def gateway(self) -> str:
        return str(self.net.network_address + 1)

    def lookup(self, uid: str) -> str | None:
        for f in self.dir.iterdir():
            if f.read_text() == uid:
                return f.name
        return None

    def allocate(self, uid: str) -> str:
        have = self.lookup(uid)
        if have:
            return have
        for host in list(self.net.hosts())[1:]:
            f = self.dir / str(host)
            try:
                fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(uid)
            return str(host)
        raise Exhausted(f"no free address in {self.net}")

    def release(self, uid: str) -> None:
        for f in self.dir.iterdir():
            if f.read_text() == uid:
                f.unlink()

    def allocations(self) -> dict[str, str]:
        return {f.read_text(): f.name for f in self.dir.iterdir()}
