"""``detect(root=...)``: the agent's --cgroup-root replaces "this process's cgroup" as the root
of the pod tree (systemd services on cgroup v2 use the root cgroup, as upstream's kubepods)."""
from __future__ import annotations

from pathlib import Path

from nanokube.host import cgroups


def test_v2_root_is_the_given_cgroup_path(tmp_path, monkeypatch):
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    monkeypatch.setattr(cgroups, "CGROUP_FS", tmp_path)
    monkeypatch.setattr(cgroups, "own_cgroups", lambda: {"": "/system.slice/nanokube-agent.service"})
    default, rooted = cgroups.detect(), cgroups.detect(root="/")
    assert isinstance(default, cgroups.V2) and isinstance(rooted, cgroups.V2)
    assert default.root == Path("/sys/fs/cgroup/system.slice/nanokube-agent.service")
    assert rooted.root == Path("/sys/fs/cgroup")
    assert rooted.procs_files("nanokube/podX") == ["/sys/fs/cgroup/nanokube/podX/cgroup.procs"]


def test_v2_pod_cgroup_below_the_root_gets_controllers_and_memory_max(tmp_path):
    drv = cgroups.V2(root="/", fs=tmp_path)
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    drv.create("nanokube/pod1")
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"
    (tmp_path / "nanokube" / "pod1" / "memory.max").write_text("max")
    drv.set_resources("nanokube/pod1", memory_limit_bytes=32 * 1024 * 1024)
    assert (tmp_path / "nanokube" / "pod1" / "memory.max").read_text() == str(32 * 1024 * 1024)
