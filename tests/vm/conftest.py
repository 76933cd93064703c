"""Opt-in VM tests (NANOKUBE_VM_TESTS=1): skipped, with no fixture run, without the variable.

``scripts/test-vm --prepare-only`` (apt packages, the cached box, the wheelhouse) runs once per
session before the first VM test; ``vm_host`` is the network namespace with its own libvirtd."""
from __future__ import annotations

import os
import subprocess
import time

import pytest

from .vmhost import REPO, VmHost, libvirt_daemons_in_root_netns

ENABLED = os.environ.get("NANOKUBE_VM_TESTS") == "1"


def pytest_collection_modifyitems(config, items):
    if ENABLED:
        return
    skip = pytest.mark.skip(reason="VM tests are opt-in: NANOKUBE_VM_TESTS=1 scripts/test, or scripts/test-vm")
    for item in items:
        if "tests/vm/" in str(item.fspath):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def vm_prepared():
    t0 = time.monotonic()
    r = subprocess.run([str(REPO / "scripts" / "test-vm"), "--prepare-only"], text=True, capture_output=True)
    print(r.stdout[-4000:], r.stderr[-4000:])
    print(f"\n[vm] prepare (packages, wheelhouse, box build and add) s: {time.monotonic() - t0:.1f}", flush=True)
    assert r.returncode == 0, "scripts/test-vm --prepare-only failed"


@pytest.fixture(scope="module")
def vm_host(vm_prepared):
    assert libvirt_daemons_in_root_netns() == [], "libvirt daemons run in the root network namespace"
    host = VmHost()
    try:
        host.start()
        yield host
    finally:
        host.stop()
        assert host.name not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert libvirt_daemons_in_root_netns() == []
