"""Local images: a root filesystem directory plus an OCI-style config, by name; OCI/docker import.

An image lives in ``<root>/<name>/`` as ``rootfs/`` plus ``config.json`` (entrypoint, cmd, env,
workingDir, user, id, tag). There is no registry, so the key design choice is: **one local image
per repository name, and any tag or digest resolves to it** — ``nginx``, ``nginx:1.25``,
``docker.io/library/nginx:latest`` and ``nginx@sha256:...`` all name ``<root>/nginx``. The tag an
image was imported under is recorded (``nanokube image ls`` shows it) but selects nothing.

``import_image`` unpacks an OCI image layout (directory or tarball) or a ``docker save`` tarball:
layers are applied in order with OCI whiteouts (``.wh.NAME`` deletes NAME of the layers below,
``.wh..wh..opq`` empties its directory of them), every path resolved inside the new rootfs so
that no entry — nor a symlink planted by an earlier one — can write outside it.

Pure pieces (reference parsing, whiteout classification, config mapping, the pull decision and
its back-off) are separate from the filesystem work so they can be unit-tested.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import stat
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Iterator

# -- references ---------------------------------------------------------------------------------

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_DOMAIN = rf"(?:{_LABEL}(?:\.{_LABEL})*(?::[0-9]+)?)"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REF = re.compile(
    rf"^(?:(?P<domain>{_DOMAIN})/)?(?P<path>{_COMPONENT}(?:/{_COMPONENT})*)"
    rf"(?::(?P<tag>[\w][\w.-]{{0,127}}))?(?:@(?P<digest>{_DIGEST}))?$")
# Registries whose images are the "familiar" local names (docker.io/library/nginx -> nginx).
_FAMILIAR = ("docker.io", "index.docker.io", "registry-1.docker.io")
_K8S = ("registry.k8s.io", "k8s.gcr.io")


class InvalidReference(ValueError):
    pass


@dataclass(frozen=True)
class Reference:
    name: str          # the local name: "nginx", "bitnami/nginx", "ghcr.io/org/app"
    tag: str = ""      # "" when the reference has none
    digest: str = ""   # "sha256:..." when given


def parse_reference(ref: str) -> Reference:
    """Parse an image reference the way docker/distribution does and map it to a local name.

    A first component counts as a registry domain if it has a dot or a port or is localhost
    (docker's rule). ``docker.io/library/x`` and ``docker.io/x`` become ``x``; images under
    registry.k8s.io keep their path (``registry.k8s.io/pause`` -> ``pause``)."""
    m = _REF.match(ref or "")
    if not m or len(ref) > 255:
        raise InvalidReference(f'couldn\'t parse image reference "{ref}": invalid reference format')
    domain, path = m.group("domain"), m.group("path")
    if domain and not ("." in domain or ":" in domain or domain == "localhost"):
        path, domain = f"{domain}/{path}", None  # "bitnami/nginx": the first part is a path
    if domain and domain.lower() != domain and domain.split(":")[0].lower() in _FAMILIAR + _K8S:
        domain = domain.lower()
    if domain in _FAMILIAR or domain is None:
        name = path[len("library/"):] if path.startswith("library/") else path
    elif domain in _K8S:
        name = path
    else:
        name = f"{domain}/{path}"
    return Reference(name=name, tag=m.group("tag") or "", digest=m.group("digest") or "")


def normalize(ref: str) -> str:
    """``docker.io/library/busybox:1.36@sha256:...`` -> ``busybox`` (the local image name)."""
    return parse_reference(ref).name


# -- the store ----------------------------------------------------------------------------------

@dataclass
class ImageConfig:
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    working_dir: str = "/"
    user: str = ""


@dataclass
class Image:
    name: str
    rootfs: Path
    config: ImageConfig
    id: str = ""
    tag: str = "latest"


def config_from_json(raw: dict[str, Any]) -> ImageConfig:
    """Our config.json (lower-case keys) -> ImageConfig."""
    return ImageConfig(entrypoint=list(raw.get("entrypoint") or []), cmd=list(raw.get("cmd") or []),
                       env=list(raw.get("env") or []), working_dir=raw.get("workingDir") or "/",
                       user=raw.get("user") or "")


def config_from_oci(raw: dict[str, Any]) -> ImageConfig:
    """An OCI / docker image config blob (``{"config": {"Entrypoint": ...}}``) -> ImageConfig."""
    c = raw.get("config") or raw.get("container_config") or {}
    return ImageConfig(entrypoint=list(c.get("Entrypoint") or []), cmd=list(c.get("Cmd") or []),
                       env=list(c.get("Env") or []), working_dir=c.get("WorkingDir") or "/",
                       user=c.get("User") or "")


def short_id(image_id: str) -> str:
    """``sha256:abcdef...`` or ``x@sha256:abcdef...`` -> the first 12 hex digits."""
    return image_id.rsplit(":", 1)[-1][:12]


class ImageStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self._cache: dict[str, tuple[float, Image]] = {}

    def dir_of(self, ref: str) -> Path:
        return self.root / parse_reference(ref).name

    def resolve(self, ref: str) -> Image | None:
        """The local image a reference names, or None (also for an invalid reference)."""
        try:
            name = normalize(ref)
        except InvalidReference:
            return None
        d = self.root / name
        try:
            stamp = (d / "config.json").stat().st_mtime
        except OSError:
            return None
        hit = self._cache.get(name)
        if hit and hit[0] == stamp:  # rebuilt images get a new config.json, so a new stamp
            return hit[1]
        if not (d / "rootfs").is_dir():
            return None
        raw = json.loads((d / "config.json").read_text())
        img = Image(name, d / "rootfs", config_from_json(raw), id=raw.get("id", f"nanokube.local/{name}"),
                    tag=raw.get("tag") or "latest")
        self._cache[name] = (stamp, img)
        return img

    def list(self) -> list[str]:
        """Names of all local images (names may have slashes: ``ghcr.io/org/app``)."""
        if not self.root.exists():
            return []
        out: list[str] = []

        def walk(d: Path, prefix: str, depth: int) -> None:
            for p in sorted(d.iterdir()):
                if p.name.startswith(".") or not p.is_dir() or p.is_symlink():
                    continue
                if (p / "rootfs").is_dir() and (p / "config.json").is_file():
                    out.append(prefix + p.name)
                elif depth < 4:
                    walk(p, f"{prefix}{p.name}/", depth + 1)
        walk(self.root, "", 0)
        return sorted(out)

    def remove(self, ref: str) -> bool:
        d = self.dir_of(ref)
        if not (d / "config.json").is_file():
            return False
        shutil.rmtree(d)
        self._cache.pop(parse_reference(ref).name, None)
        return True


def tree_size(path: Path) -> int:
    """Bytes used by regular files under path (hard links counted once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                st = os.lstat(os.path.join(dirpath, f))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def human_size(n: int) -> str:
    """Like ``crictl images``: 1.2MB, 71.4MB, 1.1GB (powers of 1000)."""
    for unit, div in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n}B"


# -- pull policy --------------------------------------------------------------------------------

@dataclass(frozen=True)
class PullFailure:
    """What the kubelet reports for a container whose image it cannot provide."""
    reason: str        # ErrImageNeverPull | ErrImagePull | InvalidImageName
    message: str       # the container's waiting message
    event: str         # the Warning event's message
    retry: bool        # whether a later "pull" may succeed (back-off applies)


def pull_failure(ref: str, policy: str | None) -> PullFailure:
    """Upstream's wording for an image that is not present locally. There is no registry, so
    a pull (policy Always or IfNotPresent) always fails; the image may still be built or
    imported later, which the next attempt after the back-off picks up."""
    try:
        r = parse_reference(ref)
    except InvalidReference as e:
        msg = f'Failed to apply default image tag "{ref}": {e}'
        return PullFailure("InvalidImageName", msg, msg, retry=False)
    if policy == "Never":
        msg = f'Container image "{ref}" is not present with pull policy of Never'
        return PullFailure("ErrImageNeverPull", msg, msg, retry=True)
    full = f"{r.name}:{r.tag or 'latest'}" + (f"@{r.digest}" if r.digest else "")
    err = (f'image "{full}" is not present locally and nanokube has no registry to pull from '
           f'(load it with "nanokube image import" or build it with rootfs/build)')
    return PullFailure("ErrImagePull", err, f'Failed to pull image "{ref}": {err}', retry=True)


PULL_BACKOFF_START = 10.0   # upstream kubelet: image pull back-off starts at 10s ...
PULL_BACKOFF_MAX = 300.0    # ... and doubles up to 5 minutes


def next_pull_backoff(current: float) -> float:
    return PULL_BACKOFF_START if current <= 0 else min(current * 2, PULL_BACKOFF_MAX)


# -- import: reading an OCI layout or docker save archive --------------------------------------

class ImageImportError(ValueError):
    """A file that is not an image we can import (bad layout, missing blob, ...)."""


@dataclass
class Layout:
    """What an archive says: the config blob, layer blobs bottom-up, and a name if it has one."""
    config: bytes
    layers: list[str]
    ref_name: str = ""   # a full reference (docker RepoTags, containerd's name annotation)
    ref_tag: str = ""    # a bare tag (OCI's org.opencontainers.image.ref.name is often just "1.0")


def _blob_path(digest: str) -> str:
    algo, _, hexd = digest.partition(":")
    if not re.fullmatch(r"[a-z0-9]+", algo) or not re.fullmatch(r"[0-9a-fA-F]+", hexd):
        raise ImageImportError(f"bad digest {digest!r}")
    return f"blobs/{algo}/{hexd}"


def _pick_manifest(index: dict[str, Any], read: Callable[[str], bytes]) -> tuple[dict[str, Any], str]:
    """Follow an OCI index (possibly nested) to one image manifest: linux/amd64 if there is a
    choice, else the first. Returns (manifest, ref name annotation)."""
    name = ""
    for _ in range(4):
        mans = index.get("manifests") or []
        if not mans:
            raise ImageImportError("index.json lists no manifests")
        pick = next((m for m in mans if (m.get("platform") or {}).get("architecture") in ("amd64", None)
                     and (m.get("platform") or {}).get("os") in ("linux", None)), mans[0])
        ann = pick.get("annotations") or {}
        name = name or ann.get("io.containerd.image.name") or ann.get("org.opencontainers.image.ref.name", "")
        doc = json.loads(read(_blob_path(pick["digest"])))
        if "layers" in doc:
            return doc, name
        index = doc
    raise ImageImportError("index.json nests too deeply")


def read_layout(read: Callable[[str], bytes], exists: Callable[[str], bool]) -> Layout:
    """Pure: from an archive's files (by path) to a Layout. ``docker save`` archives have
    manifest.json (preferred: it names the layers in order and carries RepoTags); OCI image
    layouts have oci-layout + index.json."""
    if exists("manifest.json"):
        man = json.loads(read("manifest.json"))
        if not isinstance(man, list) or not man:
            raise ImageImportError("manifest.json is not a docker save manifest")
        m = man[0]
        tags = m.get("RepoTags") or []
        return Layout(config=read(m["Config"]), layers=list(m.get("Layers") or []), ref_name=tags[0] if tags else "")
    if exists("index.json"):
        if exists("oci-layout"):
            ver = json.loads(read("oci-layout")).get("imageLayoutVersion", "")
            if not str(ver).startswith("1."):
                raise ImageImportError(f"unsupported OCI layout version {ver!r}")
        manifest, name = _pick_manifest(json.loads(read("index.json")), read)
        full = "/" in name or ":" in name
        return Layout(config=read(_blob_path(manifest["config"]["digest"])),
                      layers=[_blob_path(layer["digest"]) for layer in manifest.get("layers") or []],
                      ref_name=name if full else "", ref_tag="" if full else name)
    raise ImageImportError("neither manifest.json (docker save) nor index.json (OCI layout) found")


class _Source:
    """Files of an archive by path: a directory or a (possibly compressed) tarball."""

    def __init__(self, path: Path):
        self.path = path
        self.tar: tarfile.TarFile | None = None
        self.members: dict[str, tarfile.TarInfo] = {}
        if path.is_file():
            self.tar = tarfile.open(path, "r:*")
            for m in self.tar.getmembers():
                self.members[_clean(m.name) or "."] = m
        elif not path.is_dir():
            raise ImageImportError(f"{path}: no such file or directory")

    def exists(self, name: str) -> bool:
        name = _clean(name)
        return name in self.members if self.tar else (self.path / name).is_file()

    def open(self, name: str) -> IO[bytes]:
        name = _clean(name)
        if self.tar is not None:
            m = self.members.get(name)
            f = self.tar.extractfile(m) if m is not None else None
            if f is None:
                raise ImageImportError(f"{name}: not in the archive")
            return f
        p = (self.path / name).resolve()
        if not str(p).startswith(str(self.path.resolve()) + os.sep):
            raise ImageImportError(f"{name}: outside the layout")
        try:
            return open(p, "rb")
        except OSError as e:
            raise ImageImportError(f"{name}: {e.strerror}") from e

    def read(self, name: str) -> bytes:
        with self.open(name) as f:
            return f.read()

    def close(self) -> None:
        if self.tar is not None:
            self.tar.close()


# -- import: applying layers --------------------------------------------------------------------

WHITEOUT_PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"


def _clean(name: str) -> str:
    """A tar member name as a relative path without ``.`` parts; raises on ``..`` parts."""
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ImageImportError(f"{name!r}: path escapes the image")
    return "/".join(parts)


def whiteout(name: str) -> tuple[str, str] | None:
    """Classify a layer entry: ("opaque", dir) for ``dir/.wh..wh..opq``, ("delete", path) for
    ``dir/.wh.NAME`` (path = dir/NAME), None for an ordinary entry."""
    path = _clean(name)
    head, _, base = path.rpartition("/")
    if base == OPAQUE:
        return ("opaque", head)
    if base.startswith(WHITEOUT_PREFIX):
        target = base[len(WHITEOUT_PREFIX):]
        if not target or target in (".", ".."):
            raise ImageImportError(f"{name!r}: bad whiteout")
        return ("delete", f"{head}/{target}" if head else target)
    return None


def resolve_in_root(root: Path, rel: str, *, follow_last: bool = False) -> Path:
    """The host path for ``rel`` inside ``root``, resolving symlinks as if root were ``/``
    (absolute targets restart at root, ``..`` stops at root) — like a chroot, so an image's
    own symlinks (lib64 -> /usr/lib64) work and none can point the extractor outside."""
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    done: list[str] = []
    hops = 0
    while parts:
        p = parts.pop(0)
        if p == "..":
            if done:
                done.pop()
            continue
        cur = root.joinpath(*done, p)
        if (parts or follow_last) and cur.is_symlink():
            hops += 1
            if hops > 40:
                raise ImageImportError(f"{rel}: too many levels of symbolic links")
            target = os.readlink(cur)
            if target.startswith("/"):
                done = []
            parts = [q for q in target.split("/") if q not in ("", ".")] + parts
            continue
        done.append(p)
    return root.joinpath(*done)


def _remove(path: Path) -> None:
    if path.is_symlink() or not path.is_dir():
        try:
            path.unlink()
        except FileNotFoundError:
            pass
    else:
        shutil.rmtree(path)


def _layer_entries(open_layer: Callable[[], IO[bytes]]) -> Iterator[tuple[tarfile.TarFile, tarfile.TarInfo]]:
    with open_layer() as raw:
        head = raw.read(4)
    with open_layer() as raw:
        if head.startswith(b"\x28\xb5\x2f\xfd"):
            raise ImageImportError("zstd-compressed layers are not supported (re-save with gzip or no compression)")
        stream: IO[bytes] = gzip.GzipFile(fileobj=raw) if head.startswith(b"\x1f\x8b") else raw
        with tarfile.open(fileobj=stream, mode="r|") as tf:
            for m in tf:
                yield tf, m


def apply_layer(root: Path, open_layer: Callable[[], IO[bytes]]) -> None:
    """Apply one layer to root: first its whiteouts (they hide only the layers below, whatever
    their place in the tar), then its entries."""
    for _tf, m in _layer_entries(open_layer):
        w = whiteout(m.name)
        if w is None:
            continue
        kind, rel = w
        if kind == "opaque":
            d = resolve_in_root(root, rel, follow_last=True)
            if d.is_dir() and not d.is_symlink():
                for child in list(d.iterdir()):
                    _remove(child)
        else:
            head, _, base = rel.rpartition("/")
            _remove(resolve_in_root(root, head, follow_last=True) / base)
    for tf, m in _layer_entries(open_layer):
        if whiteout(m.name) is None and _clean(m.name):
            _extract(root, tf, m)


def _extract(root: Path, tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
    rel = _clean(m.name)
    head, _, base = rel.rpartition("/")
    parent = resolve_in_root(root, head, follow_last=True)
    parent.mkdir(parents=True, exist_ok=True)
    dest = parent / base
    if m.isdir():
        if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
            _remove(dest)
        dest.mkdir(exist_ok=True)
    else:
        if dest.is_symlink() or dest.exists():
            _remove(dest)
        if m.isreg():
            src = tf.extractfile(m)
            assert src is not None
            with open(dest, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
        elif m.issym():
            os.symlink(m.linkname, dest)
        elif m.islnk():
            target = resolve_in_root(root, _clean(m.linkname))
            if not target.exists() or target.is_dir():
                raise ImageImportError(f"{m.name}: hard link to missing {m.linkname!r}")
            os.link(target, dest)
            return  # the inode already has its owner, mode and times
        elif m.isfifo():
            os.mkfifo(dest)
        elif m.ischr() or m.isblk():
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
            try:
                os.mknod(dest, kind | 0o600, os.makedev(m.devmajor, m.devminor))
            except PermissionError:
                return  # containers get their own /dev; a node we may not make is no loss
        else:
            return
    try:
        os.lchown(dest, m.uid, m.gid)
    except PermissionError:
        pass  # not root: keep our own ids
    if not m.issym():
        os.chmod(dest, m.mode & 0o7777)  # after chown, which clears setuid bits
        os.utime(dest, (m.mtime, m.mtime))


def _safe_name(name: str) -> str:
    r = parse_reference(name)
    if any(p.startswith(".") for p in r.name.split("/")):
        raise InvalidReference(f'invalid image name "{name}"')
    return r.name


def import_image(src: Path, images_dir: Path, *, name: str | None = None) -> Image:
    """Import an OCI layout (dir or tar) or a docker save tarball as a local image, replacing
    one of the same name. ``name`` (``NAME[:TAG]``) overrides the name the archive carries.
    A malformed archive raises ImageImportError (never a half-written image)."""
    try:
        return _import_image(src, images_dir, name=name)
    except (tarfile.TarError, EOFError, KeyError, TypeError, AttributeError, json.JSONDecodeError) as e:
        raise ImageImportError(f"{src}: not a usable image archive: {type(e).__name__}: {e}") from e


def _import_image(src: Path, images_dir: Path, *, name: str | None) -> Image:
    source = _Source(Path(src))
    try:
        layout = read_layout(source.read, source.exists)
        want = name or layout.ref_name
        if not want or not _REF.match(want):
            raise ImageImportError("the archive names no image (or only a tag): give one with --name NAME:TAG")
        ref = parse_reference(want)
        local = _safe_name(want)
        tag = ref.tag or layout.ref_tag or "latest"
        try:
            raw_cfg = json.loads(layout.config)
        except ValueError as e:
            raise ImageImportError(f"image config is not JSON: {e}") from e
        cfg = config_from_oci(raw_cfg)
        images_dir = Path(images_dir)
        images_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp.import.", dir=images_dir))
        os.chmod(tmp, 0o755)
        try:
            rootfs = tmp / "rootfs"
            rootfs.mkdir()
            os.chmod(rootfs, 0o755)
            for layer in layout.layers:
                apply_layer(rootfs, lambda layer=layer: source.open(layer))
            for d in ("proc", "sys", "dev", "tmp", "etc", cfg.working_dir):  # docker makes WorkingDir too
                p = resolve_in_root(rootfs, d, follow_last=True)
                if not p.exists():
                    p.mkdir(parents=True)
                    os.chmod(p, 0o1777 if d == "tmp" else 0o755)
            image_id = "sha256:" + hashlib.sha256(layout.config).hexdigest()
            (tmp / "config.json").write_text(json.dumps({
                "entrypoint": cfg.entrypoint, "cmd": cfg.cmd, "env": cfg.env, "workingDir": cfg.working_dir,
                "user": cfg.user, "id": image_id, "tag": tag, "source": "import"}, indent=1))
            out = images_dir / local
            out.parent.mkdir(parents=True, exist_ok=True)
            old = out.with_name(out.name + ".old")
            if old.exists():
                shutil.rmtree(old)
            if out.exists():
                out.rename(old)
            tmp.rename(out)
            if old.exists():
                shutil.rmtree(old)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    finally:
        source.close()
    img = ImageStore(images_dir).resolve(local)
    assert img is not None
    return img
