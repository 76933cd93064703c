"""Local images without root: reference parsing, whiteouts, config mapping, pull-policy wording,
and importing hand-written OCI layouts / docker save tarballs (layers, whiteouts, escapes)."""
from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from nanokube.runtime import images
from nanokube.runtime.images import (ImageImportError, ImageStore, InvalidReference, Reference, config_from_oci,
                                     import_image, parse_reference, pull_failure, read_layout, resolve_in_root,
                                     whiteout)


# -- references ---------------------------------------------------------------------------------

@pytest.mark.parametrize("ref,want", [
    ("nginx", Reference("nginx")),
    ("nginx:1.25", Reference("nginx", "1.25")),
    ("nginx:latest", Reference("nginx", "latest")),
    ("docker.io/library/nginx:1.25-alpine", Reference("nginx", "1.25-alpine")),
    ("docker.io/nginx", Reference("nginx")),
    ("index.docker.io/library/busybox", Reference("busybox")),
    ("library/python:3.11-slim", Reference("python", "3.11-slim")),
    ("python:3.12", Reference("python", "3.12")),
    ("nginx@sha256:" + "ab" * 32, Reference("nginx", "", "sha256:" + "ab" * 32)),
    ("nginx:1.25@sha256:" + "0" * 64, Reference("nginx", "1.25", "sha256:" + "0" * 64)),
    ("bitnami/nginx:1.2", Reference("bitnami/nginx", "1.2")),
    ("docker.io/bitnami/nginx", Reference("bitnami/nginx")),
    ("ghcr.io/org/app:v1", Reference("ghcr.io/org/app", "v1")),
    ("localhost/app", Reference("localhost/app")),
    ("localhost:5000/app:dev", Reference("localhost:5000/app", "dev")),
    ("registry.k8s.io/pause:3.9", Reference("pause", "3.9")),
    ("registry.k8s.io/e2e-test-images/agnhost:2.39", Reference("e2e-test-images/agnhost", "2.39")),
])
def test_parse_reference(ref: str, want: Reference) -> None:
    assert parse_reference(ref) == want


@pytest.mark.parametrize("ref", ["", "Nginx", "nginx:", "nginx:-x", "a..b", "/nginx", "nginx/", "nginx@sha256:12",
                                 "../etc", "nginx:" + "x" * 129, "a b"])
def test_invalid_references(ref: str) -> None:
    with pytest.raises(InvalidReference):
        parse_reference(ref)


def test_any_tag_and_digest_resolve_to_the_one_local_image(tmp_path: Path) -> None:
    d = tmp_path / "nginx"
    (d / "rootfs").mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"cmd": ["nginx", "-g", "daemon off;"], "entrypoint": ["/e.sh"],
                                               "env": ["A=1"], "workingDir": "/w", "user": "101", "id": "sha256:ff"}))
    store = ImageStore(tmp_path)
    for ref in ("nginx", "nginx:1.25", "docker.io/library/nginx:latest", "nginx@sha256:" + "1" * 64):
        img = store.resolve(ref)
        assert img is not None and img.name == "nginx", ref
    img = store.resolve("nginx")
    assert img is not None
    assert (img.config.entrypoint, img.config.cmd, img.config.env, img.config.working_dir, img.config.user) == \
        (["/e.sh"], ["nginx", "-g", "daemon off;"], ["A=1"], "/w", "101")
    assert store.resolve("nginxx") is None
    assert store.resolve("NGINX") is None  # invalid reference: not found, no exception
    assert store.list() == ["nginx"]
    assert store.remove("nginx:9") and store.resolve("nginx") is None and not store.remove("nginx")


# -- whiteouts and paths --------------------------------------------------------------------------

def test_whiteout_classification() -> None:
    assert whiteout("etc/.wh.passwd") == ("delete", "etc/passwd")
    assert whiteout("./.wh.tmp") == ("delete", "tmp")
    assert whiteout("var/lib/.wh..wh..opq") == ("opaque", "var/lib")
    assert whiteout(".wh..wh..opq") == ("opaque", "")
    assert whiteout("etc/passwd") is None
    assert whiteout("etc/x.wh.y") is None
    with pytest.raises(ImageImportError):
        whiteout("../.wh.x")


def test_resolve_in_root_keeps_symlinks_inside(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "usr/lib").mkdir(parents=True)
    os.symlink("/usr/lib", root / "lib")              # absolute: restarts at the image root
    os.symlink("../../../../..", root / "up")         # climbs: stops at the image root
    os.symlink("/", root / "slash")
    assert resolve_in_root(root, "lib/x.so") == root / "usr/lib/x.so"
    assert resolve_in_root(root, "up/etc/passwd") == root / "etc/passwd"
    assert resolve_in_root(root, "slash/etc", follow_last=True) == root / "etc"
    assert resolve_in_root(root, "lib") == root / "lib"  # the last part is not followed by default


# -- config and pull policy ---------------------------------------------------------------------

def test_config_from_oci() -> None:
    cfg = config_from_oci({"architecture": "amd64", "config": {
        "Entrypoint": ["/docker-entrypoint.sh"], "Cmd": ["nginx", "-g", "daemon off;"],
        "Env": ["PATH=/usr/bin", "NGINX_VERSION=1.25.3"], "WorkingDir": "/app", "User": "101:101"}})
    assert cfg.entrypoint == ["/docker-entrypoint.sh"] and cfg.cmd == ["nginx", "-g", "daemon off;"]
    assert cfg.env == ["PATH=/usr/bin", "NGINX_VERSION=1.25.3"]
    assert (cfg.working_dir, cfg.user) == ("/app", "101:101")
    empty = config_from_oci({"config": {"Entrypoint": None, "Cmd": None}})
    assert (empty.entrypoint, empty.cmd, empty.env, empty.working_dir, empty.user) == ([], [], [], "/", "")


def test_pull_failure_wording_follows_upstream() -> None:
    never = pull_failure("nosuch", "Never")
    assert never.reason == "ErrImageNeverPull"
    assert never.message == 'Container image "nosuch" is not present with pull policy of Never'
    for policy in ("IfNotPresent", "Always", None):
        f = pull_failure("nosuch:1.0", policy)
        assert f.reason == "ErrImagePull" and f.retry
        assert f.event.startswith('Failed to pull image "nosuch:1.0": ')
        assert '"nosuch:1.0"' in f.message
    bad = pull_failure("Not/Valid", "IfNotPresent")
    assert bad.reason == "InvalidImageName" and "invalid reference format" in bad.message


def test_pull_backoff_doubles_to_five_minutes() -> None:
    seq, b = [], 0.0
    for _ in range(8):
        b = images.next_pull_backoff(b)
        seq.append(b)
    assert seq == [10, 20, 40, 80, 160, 300, 300, 300]


# -- import -------------------------------------------------------------------------------------

def layer(entries: list[tuple[str, str, object]], *, gz: bool = False) -> bytes:
    """A layer tar from (kind, name, data): kind f (bytes), d, l (symlink target), h (hard link)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as tf:
        for kind, name, data in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = 1700000000
            if kind == "f":
                assert isinstance(data, bytes)
                ti.size, ti.mode = len(data), 0o755 if name.endswith(".sh") or name.startswith("bin/") else 0o644
                tf.addfile(ti, io.BytesIO(data))
                continue
            if kind == "d":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            elif kind == "l":
                ti.type, ti.linkname = tarfile.SYMTYPE, str(data)
            elif kind == "h":
                ti.type, ti.linkname = tarfile.LNKTYPE, str(data)
            tf.addfile(ti)
    return buf.getvalue()


def oci_archive(path: Path, layers: list[bytes], config: dict, *, ref_name: str = "", docker: bool = False,
                as_dir: bool = False) -> Path:
    """Write an OCI image layout (or a docker save archive) by hand."""
    files: dict[str, bytes] = {}

    def blob(data: bytes) -> str:
        d = hashlib.sha256(data).hexdigest()
        files[f"blobs/sha256/{d}"] = data
        return f"sha256:{d}"
    cfg = json.dumps(config).encode()
    cfg_d = blob(cfg)
    layer_ds = [blob(data) for data in layers]
    if docker:
        files["manifest.json"] = json.dumps([{"Config": f"blobs/sha256/{cfg_d[7:]}",
                                              "RepoTags": [ref_name] if ref_name else [],
                                              "Layers": [f"blobs/sha256/{d[7:]}" for d in layer_ds]}]).encode()
    else:
        man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                          "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg_d,
                                     "size": len(cfg)},
                          "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d,
                                      "size": len(layers[i])} for i, d in enumerate(layer_ds)]}).encode()
        man_d = blob(man)
        entry: dict = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": man_d, "size": len(man)}
        if ref_name:
            entry["annotations"] = {"org.opencontainers.image.ref.name": ref_name}
        files["index.json"] = json.dumps({"schemaVersion": 2, "manifests": [entry]}).encode()
        files["oci-layout"] = b'{"imageLayoutVersion": "1.0.0"}'
    if as_dir:
        for name, data in files.items():
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            (path / name).write_bytes(data)
        return path
    with tarfile.open(path, "w") as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return path


CONFIG = {"architecture": "amd64", "os": "linux",
          "config": {"Entrypoint": ["/bin/sh", "-c"], "Cmd": ["cat /data/new"], "Env": ["GREETING=hi"],
                     "WorkingDir": "/work", "User": "1000"},
          "rootfs": {"type": "layers", "diff_ids": []}}

BASE = layer([("d", "bin", None), ("f", "bin/tool.sh", b"#!/bin/sh\necho tool\n"), ("l", "bin/alias", "tool.sh"),
              ("d", "etc", None), ("f", "etc/old", b"old"), ("f", "etc/keep", b"keep"),
              ("d", "data", None), ("f", "data/a", b"a"), ("d", "data/sub", None), ("f", "data/sub/b", b"b"),
              ("d", "usr/lib", None), ("l", "lib", "/usr/lib"), ("h", "bin/tool-link", "bin/tool.sh")])
# The opaque marker comes *after* a file of the same layer: it must hide only the layer below.
TOP = layer([("f", "data/new", b"new"), ("f", "data/.wh..wh..opq", b""), ("f", "etc/.wh.old", b""),
             ("f", "lib/libx.so", b"x"), ("f", "etc/keep", b"kept")], gz=True)


@pytest.mark.parametrize("kind", ["oci-tar", "oci-dir", "docker"])
def test_import_applies_layers_and_whiteouts(tmp_path: Path, kind: str) -> None:
    src = tmp_path / ("layout" if kind == "oci-dir" else "image.tar")
    if kind == "oci-dir":
        src.mkdir()
    oci_archive(src, [BASE, TOP], CONFIG, ref_name="example.com/demo:v2", docker=kind == "docker",
                as_dir=kind == "oci-dir")
    store_dir = tmp_path / "images"
    img = import_image(src, store_dir)
    assert (img.name, img.tag) == ("example.com/demo", "v2")
    r = img.rootfs
    assert sorted(p.name for p in (r / "data").iterdir()) == ["new"]          # opaque dir: lower content gone
    assert not (r / "etc/old").exists() and (r / "etc/keep").read_text() == "kept"
    assert os.readlink(r / "bin/alias") == "tool.sh" and (r / "bin/tool.sh").stat().st_mode & 0o777 == 0o755
    assert (r / "usr/lib/libx.so").read_text() == "x" and os.readlink(r / "lib") == "/usr/lib"
    assert (r / "bin/tool-link").stat().st_ino == (r / "bin/tool.sh").stat().st_ino
    assert img.config.entrypoint == ["/bin/sh", "-c"] and img.config.cmd == ["cat /data/new"]
    assert (img.config.env, img.config.working_dir, img.config.user) == (["GREETING=hi"], "/work", "1000")
    assert img.id == "sha256:" + hashlib.sha256(json.dumps(CONFIG).encode()).hexdigest()
    store = ImageStore(store_dir)
    assert store.list() == ["example.com/demo"]
    assert store.resolve("example.com/demo:anything") is not None
    assert not [p for p in store_dir.iterdir() if p.name.startswith(".tmp")]


def test_import_name_option_and_bare_tag_annotation(tmp_path: Path) -> None:
    src = oci_archive(tmp_path / "i.tar", [BASE], CONFIG, ref_name="1.0")
    with pytest.raises(ImageImportError, match="--name"):
        import_image(src, tmp_path / "images")  # "1.0" is a tag, not a name
    img = import_image(src, tmp_path / "images", name="demo")
    assert (img.name, img.tag) == ("demo", "1.0")
    again = import_image(src, tmp_path / "images", name="docker.io/library/demo:2")  # replaces it
    assert (again.name, again.tag) == ("demo", "2") and ImageStore(tmp_path / "images").list() == ["demo"]


def test_import_refuses_escapes(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dotdot = layer([("f", "../../escape", b"x")])
    with pytest.raises(ImageImportError, match="escapes"):
        import_image(oci_archive(tmp_path / "a.tar", [dotdot], CONFIG), tmp_path / "images", name="a")
    # A symlink to a host path, then a write through it: lands inside the rootfs instead.
    planted = layer([("l", "evil", str(outside)), ("f", "evil/pwned", b"x")])
    img = import_image(oci_archive(tmp_path / "b.tar", [planted], CONFIG), tmp_path / "images", name="b")
    assert not (outside / "pwned").exists()
    assert (img.rootfs / outside.relative_to("/") / "pwned").read_text() == "x"
    assert not [p for p in (tmp_path / "images").iterdir() if p.name.startswith(".tmp")]


def test_read_layout_rejects_non_images() -> None:
    files = {"hello.txt": b"hi"}
    with pytest.raises(ImageImportError, match="manifest.json"):
        read_layout(lambda n: files[n], lambda n: n in files)
    files = {"oci-layout": b'{"imageLayoutVersion": "2.0.0"}', "index.json": b"{}"}
    with pytest.raises(ImageImportError, match="version"):
        read_layout(lambda n: files[n], lambda n: n in files)


def test_import_of_a_non_image_fails_cleanly(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not a tar at all" * 100)
    with pytest.raises(ImageImportError, match="not a usable image archive"):
        import_image(junk, tmp_path / "images", name="junk")
    no_layer = oci_archive(tmp_path / "l.tar", [BASE], CONFIG, docker=True)
    with tarfile.open(no_layer) as tf:  # the same archive minus its layer blob
        gone = f"blobs/sha256/{hashlib.sha256(BASE).hexdigest()}"
        keep = [(m, tf.extractfile(m).read()) for m in tf.getmembers() if m.name != gone]
    with tarfile.open(no_layer, "w") as tf:
        for m, data in keep:
            tf.addfile(m, io.BytesIO(data))
    with pytest.raises(ImageImportError, match="not in the archive"):
        import_image(no_layer, tmp_path / "images", name="nolayer")
    assert not (tmp_path / "images").exists() or not list((tmp_path / "images").iterdir())
