"""ImageLocality: upstream's score (size x spread, 23 MB .. 1000 MB x containers), image name
normalization, and the kubelet's ``status.images`` that feeds it (nodestatus.NodeImages)."""
from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import pytest

from nanokube.kubelet.nodestatus import NodeImages, image_names, images_status, node_status
from nanokube.runtime.images import ImageStore
from nanokube.scheduler.framework import NodeInfo, Snapshot, schedule
from nanokube.scheduler.plugins import image_locality as il

MB = 1024 * 1024


def node(name: str, *images: tuple[list[str], int]) -> NodeInfo:
    st: dict[str, Any] = {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}
    if images:
        st["images"] = [{"names": names, "sizeBytes": size} for names, size in images]
    return NodeInfo({"metadata": {"name": name, "labels": {}}, "status": st})


def pod(*images: str, init: tuple[str, ...] = ()) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": f"c{i}", "image": im} for i, im in enumerate(images)]}
    if init:
        spec["initContainers"] = [{"name": f"i{i}", "image": im} for i, im in enumerate(init)]
    return {"metadata": {"name": "p", "namespace": "default"}, "spec": spec}


def scores(p: dict[str, Any], nodes: list[NodeInfo]) -> dict[str, int]:
    snap = Snapshot(nodes)
    st = il.pre_score(p, snap, snap.nodes)
    return {ni.name: il.score(p, ni, st) for ni in snap.nodes}


BUSYBOX = ["docker.io/library/busybox:latest", "busybox:latest"]
APP = ["registry.example.com/app:v1"]
BIG = ["docker.io/library/big:latest", "big:latest"]


@pytest.mark.parametrize("p, nodes, want", [
    # 500 MB on every node (spread 1): 100 * (500 - 23) / (1000 - 23) → 48
    (pod("big"), [node("a", (BIG, 500 * MB)), node("b", (BIG, 500 * MB)), node("c", (BIG, 500 * MB))],
     {"a": 48, "b": 48, "c": 48}),
    # on one node of three: 500 MB x 1/3 → 14; the others have nothing
    (pod("big"), [node("a", (BIG, 500 * MB)), node("b"), node("c")], {"a": 14, "b": 0, "c": 0}),
    # on two of three: 500 MB x 2/3 → 31
    (pod("big"), [node("a", (BIG, 500 * MB)), node("b", (BIG, 500 * MB)), node("c")], {"a": 31, "b": 31, "c": 0}),
    # 30 MB on one node of three scales to 10 MB: below the threshold
    (pod("big"), [node("a", (BIG, 30 * MB)), node("b"), node("c")], {"a": 0, "b": 0, "c": 0}),
    # below the 23 MB threshold counts as nothing
    (pod("busybox"), [node("a", (BUSYBOX, 2 * MB)), node("b")], {"a": 0, "b": 0}),
    # above 1000 MB x 1 container is capped at 100
    (pod("big"), [node("a", (BIG, 2000 * MB))], {"a": 100}),
    # init + app container: the cap is 1000 MB x 2; 1600 MB → 79
    (pod("big", init=("registry.example.com/app:v1",)), [node("a", (BIG, 800 * MB), (APP, 800 * MB))], {"a": 79}),
    # the same 800 MB with only one of the two images present: 800 / 2000 → 39
    (pod("big", init=("registry.example.com/app:v1",)), [node("a", (BIG, 800 * MB)), node("b", (BIG, 800 * MB))],
     {"a": 39, "b": 39}),
    # every container counts, also when they share an image: 3 x 20 MB = 60 MB of 3000 MB → 1
    (pod("big", "big", "big"), [node("a", (BIG, 20 * MB))], {"a": 1}),
    # a different tag is a different image
    (pod("big:2"), [node("a", (BIG, 500 * MB))], {"a": 0}),
    (pod("nothere"), [node("a", (BIG, 500 * MB))], {"a": 0}),
    # names on the node side are normalized too
    (pod("docker.io/library/big:latest"), [node("a", (["big"], 500 * MB))], {"a": 48}),
    (pod("registry.example.com/app:v1"), [node("a", (APP, 500 * MB))], {"a": 48}),
])
def test_score(p: dict[str, Any], nodes: list[NodeInfo], want: dict[str, int]) -> None:
    assert scores(p, nodes) == want


@pytest.mark.parametrize("ref", ["big", "big:latest", "docker.io/library/big:latest", "library/big",
                                 "docker.io/big", "index.docker.io/library/big:latest"])
def test_spellings_of_one_image_score_alike(ref: str) -> None:
    assert scores(pod(ref), [node("a", (BIG, 500 * MB))]) == {"a": 48}


@pytest.mark.parametrize("ref, canon", [
    ("busybox", "docker.io/library/busybox:latest"),
    ("busybox:latest", "docker.io/library/busybox:latest"),
    ("docker.io/library/busybox:latest", "docker.io/library/busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36"),
    ("bitnami/nginx", "docker.io/bitnami/nginx:latest"),
    ("registry-1.docker.io/bitnami/nginx:1", "docker.io/bitnami/nginx:1"),
    ("localhost:5000/app", "localhost:5000/app:latest"),
    ("ghcr.io/org/app:v2", "ghcr.io/org/app:v2"),
    ("busybox@sha256:abc", "docker.io/library/busybox@sha256:abc"),
])
def test_canonical(ref: str, canon: str) -> None:
    assert il.canonical(ref) == canon
    assert ref in il.aliases(ref) and all(il.canonical(a) == canon for a in il.aliases(ref))


def test_prefers_the_node_with_the_image() -> None:
    snap = Snapshot([node("a"), node("b", (BIG, 600 * MB)), node("c")])
    assert {schedule(pod("big"), snap, [il], random.Random(s)).node for s in range(10)} == {"b"}


# -- the kubelet side: status.images --------------------------------------------------------------

@pytest.mark.parametrize("name, tag, names", [
    ("busybox", "latest", ["docker.io/library/busybox:latest", "busybox:latest"]),
    ("bitnami/nginx", "1.25", ["docker.io/bitnami/nginx:1.25", "bitnami/nginx:1.25"]),
    ("ghcr.io/org/app", "v1", ["ghcr.io/org/app:v1"]),
])
def test_image_names(name: str, tag: str, names: list[str]) -> None:
    assert image_names(name, tag) == names
    assert len({il.canonical(n) for n in names}) == 1     # every reported name is the same image


def test_images_status_largest_first_and_capped() -> None:
    got = images_status([("a", "latest", 10), ("b", "latest", 30), ("c", "v1", 20)], limit=2)
    assert got == [{"names": ["docker.io/library/b:latest", "b:latest"], "sizeBytes": 30},
                   {"names": ["docker.io/library/c:v1", "c:v1"], "sizeBytes": 20}]


def _image(root: Path, name: str, files: dict[str, int], tag: str | None = None) -> Path:
    d = root / name
    for rel, size in files.items():
        f = d / "rootfs" / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"x" * size)
    cfg: dict[str, Any] = {"cmd": ["sh"]}
    if tag:
        cfg["tag"] = tag
    (d / "config.json").write_text(json.dumps(cfg))
    return d


def test_node_images_sizes_cached_per_image_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _image(tmp_path, "busybox", {"bin/busybox": 3000, "etc/passwd": 100})
    app = _image(tmp_path, "ghcr.io/org/app", {"app": 5000}, tag="v1")
    import nanokube.kubelet.nodestatus as ns
    calls: list[Path] = []
    real = ns.tree_size
    monkeypatch.setattr(ns, "tree_size", lambda p: calls.append(p) or real(p))
    ni = NodeImages(ImageStore(tmp_path))
    want = [{"names": ["ghcr.io/org/app:v1"], "sizeBytes": 5000},
            {"names": ["docker.io/library/busybox:latest", "busybox:latest"], "sizeBytes": 3100}]
    assert ni.status() == want
    assert ni.status() == want
    assert len(calls) == 2                                  # once per image, not per status
    (app / "rootfs" / "more").write_bytes(b"y" * 1000)      # re-imported: new config.json stamp
    (app / "config.json").write_text(json.dumps({"tag": "v2"}))
    st = (app / "config.json").stat()
    os.utime(app / "config.json", ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))
    assert ni.status()[0] == {"names": ["ghcr.io/org/app:v2"], "sizeBytes": 6000}
    assert len(calls) == 3


def test_node_status_carries_images() -> None:
    imgs = [{"names": ["busybox:latest"], "sizeBytes": 1}]
    st = node_status(node_ip="10.0.0.1", node_name="n", capacity={"cpu": "1"}, kubelet_port=10250, images=imgs)
    assert st["images"] == imgs
    assert "images" not in node_status(node_ip="10.0.0.1", node_name="n", capacity={"cpu": "1"}, kubelet_port=10250)
