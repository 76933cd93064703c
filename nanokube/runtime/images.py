"""Local images: a root filesystem directory plus an OCI-style config, by name.

``busybox``, ``busybox:1.36`` and ``docker.io/library/busybox:latest`` all name the local
``busybox`` image: there is no registry, so the tag selects nothing (yet).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ImageConfig:
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    working_dir: str = "/"


@dataclass
class Image:
    name: str
    rootfs: Path
    config: ImageConfig
    id: str = ""


def normalize(ref: str) -> str:
    """``docker.io/library/busybox:1.36@sha256:...`` → ``busybox``."""
    ref = ref.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    name = last.split(":", 1)[0]
    prefix = ref[: len(ref) - len(last)].rstrip("/")
    for p in ("docker.io/library", "docker.io", "library", "index.docker.io/library", "registry.k8s.io", ""):
        if prefix == p:
            return name
    return f"{prefix}/{name}"


class ImageStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self._cache: dict[str, tuple[float, Image]] = {}

    def resolve(self, ref: str) -> Image | None:
        name = normalize(ref)
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
        cfg = ImageConfig(entrypoint=raw.get("entrypoint") or [], cmd=raw.get("cmd") or [], env=raw.get("env") or [],
                          working_dir=raw.get("workingDir") or "/")
        img = Image(name, d / "rootfs", cfg, id=raw.get("id", f"nanokube.local/{name}"))
        self._cache[name] = (stamp, img)
        return img

    def list(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if (p / "rootfs").is_dir()) if self.root.exists() else []
