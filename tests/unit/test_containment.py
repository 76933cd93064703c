"""Pure pieces of containment: subPath resolution that refuses to leave its volume, the
volumes the kubelet always mounts read-only, the pods' pids limit in both cgroup drivers,
finding our mounts in mountinfo, and the shim's open-beneath check."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from nanokube.host import mounts
from nanokube.host.cgroups import V1, V2
from nanokube.kubelet import volumes
from nanokube.runtime import shim


def test_subpath_inside_the_volume_resolves(tmp_path):
    vol = tmp_path / "vol"
    (vol / "a").mkdir(parents=True)
    (vol / "link").symlink_to("a")  # a symlink that stays inside is fine
    assert volumes.subpath_source(str(vol), "a") == str(vol / "a")
    assert volumes.subpath_source(str(vol), "link") == str(vol / "a")
    assert volumes.subpath_source(str(vol), "new/dir") == str(vol / "new" / "dir")


@pytest.mark.parametrize("sub", ["escape", "escape/x", "../outside", "/etc", "up"])
def test_subpath_leaving_the_volume_is_refused(tmp_path, sub):
    vol = tmp_path / "vol"
    vol.mkdir()
    (tmp_path / "outside").mkdir()
    (vol / "escape").symlink_to("/")
    (vol / "up").symlink_to("..")
    with pytest.raises(volumes.SubPathError):
        volumes.subpath_source(str(vol), sub)


def test_mounts_force_read_only_and_report_subpath_errors(tmp_path):
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "escape").symlink_to("/")
    pod = {"spec": {"volumes": [{"name": "s", "secret": {"secretName": "x"}}, {"name": "cm", "configMap": {"name": "y"}},
                                {"name": "p", "projected": {"sources": []}}, {"name": "e", "emptyDir": {}}]}}
    paths = {"s": "/kubelet/s", "cm": "/kubelet/cm", "p": "/kubelet/p", "e": str(vol)}
    c = {"name": "c", "volumeMounts": [{"name": n, "mountPath": f"/{n}"} for n in ("s", "cm", "p", "e")]}
    got = {m.target: m.readonly for m in volumes.mounts(c, paths, pod=pod)}
    assert got == {"/s": True, "/cm": True, "/p": True, "/e": False}
    inside = volumes.mounts({"name": "c", "volumeMounts": [{"name": "e", "mountPath": "/x", "subPath": "d"}]}, paths, pod=pod)
    assert inside[0].within == str(vol) and (vol / "d").is_dir()
    bad = {"name": "c", "volumeMounts": [{"name": "e", "mountPath": "/x", "subPath": "escape"}]}
    with pytest.raises(KeyError) as e:  # a KeyError: the kubelet reports CreateContainerConfigError
        volumes.mounts(bad, paths, pod=pod)
    assert str(e.value).startswith('failed to prepare subPath for volumeMount "e" of container "c"')


def test_prepare_puts_secret_and_projected_volumes_on_tmpfs(tmp_path):
    made: list[Path] = []
    pod = {"metadata": {"name": "p", "namespace": "d", "uid": "u"},
           "spec": {"volumes": [{"name": "s", "secret": {"secretName": "x", "defaultMode": 0o400}},
                                {"name": "e", "emptyDir": {}}, {"name": "cm", "configMap": {"name": "y"}}]}}
    objs = {("secrets", "x"): {"data": {"k": "dg=="}}, ("configmaps", "y"): {"data": {"k": "v"}}}
    out = volumes.prepare(pod, tmp_path, objs, tmpfs=made.append)
    assert made == [tmp_path / "volumes" / "s"]
    assert (Path(out["s"]) / "k").read_bytes() == b"v" and (Path(out["s"]) / "k").stat().st_mode & 0o777 == 0o400
    assert (Path(out["cm"]) / "k").stat().st_mode & 0o777 == 0o644  # upstream's defaultMode


@pytest.mark.parametrize("driver", ["v1", "v2"])
def test_pids_limit(tmp_path, driver):
    if driver == "v1":
        (tmp_path / "pids" / "pod1").mkdir(parents=True)
        (tmp_path / "cpu").mkdir()
        cg = V1(root={"pids": "/", "cpu": "/"}, fs=tmp_path)
        d = tmp_path / "pids" / "pod1"
    else:
        (tmp_path / "pod1").mkdir()
        cg = V2(root="/", fs=tmp_path)
        d = tmp_path / "pod1"
    (d / "pids.max").write_text("max\n")
    cg.set_pids_limit("pod1", 1024)
    assert (d / "pids.max").read_text() == "1024"
    cg.set_pids_limit("pod1", -1)
    assert (d / "pids.max").read_text() == "max"
    cg.set_pids_limit("nowhere", 5)  # no pids controller there: nothing to do


def test_mountinfo_parsing_and_prefixes():
    info = "\n".join([
        "22 1 8:1 / / rw - ext4 /dev/vda rw",
        "40 22 0:50 / /tmp/st/pods/u/volumes/s rw - tmpfs tmpfs rw",
        "41 22 0:51 / /tmp/st/pods/u/volumes/my\\040vol rw - tmpfs tmpfs rw",
        "42 40 0:52 / /tmp/st/pods/u/volumes/s/deeper rw - tmpfs tmpfs rw",
        "43 22 0:53 / /tmp/st/pods/u2 rw - tmpfs tmpfs rw",
    ])
    points = mounts.mount_points(info)
    assert "/tmp/st/pods/u/volumes/my vol" in points
    assert mounts.below(points, "/tmp/st/pods/u") == [
        "/tmp/st/pods/u/volumes/s/deeper", "/tmp/st/pods/u/volumes/my vol", "/tmp/st/pods/u/volumes/s"]
    assert mounts.below(points, "/tmp/st/pods/u2/") == ["/tmp/st/pods/u2"]


def test_shim_opens_subpaths_only_beneath_their_volume(tmp_path):
    vol = tmp_path / "vol"
    (vol / "ok").mkdir(parents=True)
    (vol / "escape").symlink_to(tmp_path)
    fd = shim.open_beneath(str(vol / "ok"), str(vol))
    try:
        assert os.readlink(f"/proc/self/fd/{fd}") == str(vol / "ok")
    finally:
        os.close(fd)
    with pytest.raises(PermissionError):
        shim.open_beneath(str(vol / "escape"), str(vol))
