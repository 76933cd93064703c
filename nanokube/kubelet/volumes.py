"""Pod volumes on the node: emptyDir, hostPath, configMap and secret, bind-mounted into
containers at their volumeMounts (with subPath and readOnly).

Each volume is a directory under the pod's kubelet dir (``volumes/<name>``), except hostPath,
which is the host's path. configMap and secret volumes hold one file per key (or per
``items`` entry), rewritten when the data changes.
"""
from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

from nanokube.runtime.runtime import Mount

Obj = dict[str, Any]


class VolumeError(Exception):
    """The pod cannot start yet: reported as FailedMount."""


def _write_files(d: Path, data: dict[str, bytes], items: list[Obj] | None, mode: int) -> None:
    d.mkdir(parents=True, exist_ok=True)
    chosen = {i["key"]: i["path"] for i in items} if items else {k: k for k in data}
    for key, rel in chosen.items():
        if key not in data:
            raise VolumeError(f'configmap/secret key "{key}" not found')
        f = d / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        if not f.exists() or f.read_bytes() != data[key]:
            tmp = f.with_name(f".{f.name}.tmp")
            tmp.write_bytes(data[key])
            os.chmod(tmp, mode)
            tmp.replace(f)


def prepare(pod: Obj, base: Path, objects: dict[tuple[str, str], Obj | None]) -> dict[str, str]:
    """Create every volume of the pod; returns {volume name: host path}. ``objects`` holds
    the ConfigMaps and Secrets the pod refers to, keyed (resource, name), None if missing."""
    out: dict[str, str] = {}
    for v in pod["spec"].get("volumes") or []:
        name = v["name"]
        d = base / "volumes" / name
        if "emptyDir" in v:
            d.mkdir(parents=True, exist_ok=True)
            d.chmod(0o777)
            out[name] = str(d)
        elif "hostPath" in v:
            hp = v["hostPath"]
            p = Path(hp["path"])
            typ = hp.get("type", "")
            if typ == "DirectoryOrCreate":
                p.mkdir(parents=True, exist_ok=True)
            elif typ == "FileOrCreate" and not p.exists():
                p.parent.mkdir(parents=True, exist_ok=True)
                p.touch()
            elif typ in ("Directory", "File") and not p.exists():
                raise VolumeError(f"hostPath type check failed: {p} is not a {typ.lower()}")
            out[name] = str(p)
        elif "configMap" in v or "secret" in v:
            kind = "configMap" if "configMap" in v else "secret"
            src = v[kind]
            ref = src.get("name") if kind == "configMap" else src.get("secretName")
            obj = objects.get(("configmaps" if kind == "configMap" else "secrets", ref))
            if obj is None:
                if src.get("optional"):
                    d.mkdir(parents=True, exist_ok=True)
                    out[name] = str(d)
                    continue
                raise VolumeError(f'{"configmap" if kind == "configMap" else "secret"} "{ref}" not found')
            if kind == "configMap":
                data = {k: s.encode() for k, s in (obj.get("data") or {}).items()}
                data.update({k: base64.b64decode(b) for k, b in (obj.get("binaryData") or {}).items()})
            else:
                data = {k: base64.b64decode(b) for k, b in (obj.get("data") or {}).items()}
                data.update({k: s.encode() for k, s in (obj.get("stringData") or {}).items()})
            _write_files(d, data, src.get("items"), src.get("defaultMode", 0o644))
            out[name] = str(d)
    return out


def referenced(pod: Obj) -> set[tuple[str, str]]:
    refs = set()
    for v in pod["spec"].get("volumes") or []:
        if "configMap" in v:
            refs.add(("configmaps", v["configMap"].get("name")))
        if "secret" in v:
            refs.add(("secrets", v["secret"].get("secretName")))
    return refs


def mounts(c: Obj, paths: dict[str, str]) -> list[Mount]:
    out = []
    for m in c.get("volumeMounts") or []:
        src = paths.get(m["name"])
        if src is None:
            raise VolumeError(f'volume "{m["name"]}" not found in the pod')
        if m.get("subPath"):
            src = os.path.join(src, m["subPath"])
            if not os.path.exists(src):
                os.makedirs(src, exist_ok=True)
        out.append(Mount(src, m["mountPath"], bool(m.get("readOnly"))))
    return out
