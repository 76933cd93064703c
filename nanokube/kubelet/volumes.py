"""Pod volumes on the node: emptyDir, hostPath, configMap, secret, downwardAPI, projected
(secret, configMap, downwardAPI and serviceAccountToken sources — the ``kube-api-access-*``
volume every pod gets) and persistentVolumeClaim, bind-mounted into containers at their
volumeMounts (with subPath and readOnly).

A persistentVolumeClaim resolves claim → bound PersistentVolume → its ``hostPath`` (or
``local``) path on this node, created on first mount; a claim that is not bound yet is a
FailedMount and the pod waits. Local-path volumes live under the node's local-path root
(``<agent data dir>/volumes``, published as a node annotation for the provisioner); the
kubelet removes a directory there once its PersistentVolume is gone (reclaim Delete),
since the data lives on the node.

Each volume is a directory under the pod's kubelet dir (``volumes/<name>``), except hostPath,
which is the host's path. File-backed volumes hold one file per key (or per ``items``
entry), rewritten when the data changes. ServiceAccount tokens are fetched by the kubelet
(TokenRequest, bound to the pod) and handed in like the ConfigMaps and Secrets.
"""
from __future__ import annotations

import asyncio
import base64
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Callable

from nanokube.api.errors import ApiError
from nanokube.runtime.runtime import Mount

Obj = dict[str, Any]
log = logging.getLogger("nanokube.kubelet.volumes")
ROOT_ANNOTATION = "nanokube.io/local-path-root"
HOSTNAME_LABEL = "kubernetes.io/hostname"


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


def _object_data(kind: str, obj: Obj) -> dict[str, bytes]:
    if kind == "configMap":
        data = {k: s.encode() for k, s in (obj.get("data") or {}).items()}
        data.update({k: base64.b64decode(b) for k, b in (obj.get("binaryData") or {}).items()})
    else:
        data = {k: base64.b64decode(b) for k, b in (obj.get("data") or {}).items()}
        data.update({k: s.encode() for k, s in (obj.get("stringData") or {}).items()})
    return data


def _downward(pod: Obj, items: list[Obj]) -> tuple[dict[str, bytes], list[Obj]]:
    from .podspec import field_ref, resource_ref
    data: dict[str, bytes] = {}
    for it in items:
        if it.get("fieldRef"):
            path = it["fieldRef"].get("fieldPath", "")
            if path in ("metadata.labels", "metadata.annotations"):
                kv = (pod["metadata"].get(path.split(".")[1]) or {})
                text = "\n".join(f'{k}="{v}"' for k, v in sorted(kv.items()))
            else:
                st = pod.get("status") or {}
                text = field_ref(pod, path, pod_ip=st.get("podIP", ""), host_ip=st.get("hostIP", ""))
        elif it.get("resourceFieldRef"):
            ref = it["resourceFieldRef"]
            c = next((c for c in pod["spec"].get("containers") or [] if c["name"] == ref.get("containerName")), {})
            text = resource_ref(c, ref)
        else:
            continue
        data[it["path"]] = text.encode()
    return data, [{"key": it["path"], "path": it["path"]} for it in items if it["path"] in data]


def _projected(pod: Obj, v: Obj, d: Path, objects: dict[tuple[str, str], Any]) -> None:
    src = v["projected"]
    mode = src.get("defaultMode", 0o644)
    d.mkdir(parents=True, exist_ok=True)
    for source in src.get("sources") or []:
        if "serviceAccountToken" in source:
            path = source["serviceAccountToken"].get("path", "token")
            token = objects.get(("token", f"{v['name']}/{path}"))
            if token is None:
                raise VolumeError(f"failed to fetch token for volume {v['name']}")
            _write_files(d, {path: token.encode()}, None, mode)
        elif "downwardAPI" in source:
            data, items = _downward(pod, source["downwardAPI"].get("items") or [])
            _write_files(d, data, items, mode)
        elif "configMap" in source or "secret" in source:
            kind = "configMap" if "configMap" in source else "secret"
            ref = source[kind]
            obj = objects.get(("configmaps" if kind == "configMap" else "secrets", ref.get("name")))
            if obj is None:
                if ref.get("optional"):
                    continue
                raise VolumeError(f'{kind.lower()} "{ref.get("name")}" not found')
            _write_files(d, _object_data(kind, obj), ref.get("items"), mode)


def tokens_wanted(pod: Obj) -> list[tuple[str, Obj]]:
    """(key, serviceAccountToken source) of every projected token in the pod."""
    out = []
    for v in pod["spec"].get("volumes") or []:
        for source in (v.get("projected") or {}).get("sources") or []:
            if "serviceAccountToken" in source:
                out.append((f"{v['name']}/{source['serviceAccountToken'].get('path', 'token')}", source["serviceAccountToken"]))
    return out


def prepare(pod: Obj, base: Path, objects: dict[tuple[str, str], Any], *,
            tmpfs: Callable[[Path], None] | None = None) -> dict[str, str]:
    """Create every volume of the pod; returns {volume name: host path}. ``objects`` holds
    the ConfigMaps and Secrets the pod refers to, keyed (resource, name), None if missing,
    and its ServiceAccount tokens, keyed ("token", "<volume>/<path>"). ``tmpfs(dir)`` puts
    a tmpfs at a secret or projected volume's directory first (the kubelet passes
    host.mounts.mount_tmpfs: secrets stay off the node's disk, as upstream)."""
    out: dict[str, str] = {}
    for v in pod["spec"].get("volumes") or []:
        name = v["name"]
        d = base / "volumes" / name
        if tmpfs is not None and ("secret" in v or "projected" in v):
            tmpfs(d)
        if "emptyDir" in v:
            d.mkdir(parents=True, exist_ok=True)
            fs_group = (pod["spec"].get("securityContext") or {}).get("fsGroup")
            if fs_group is not None:  # group-owned by fsGroup, new files inherit it (setgid), as upstream
                os.chown(d, -1, int(fs_group))
                d.chmod(0o2777)
            else:
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
            _write_files(d, _object_data(kind, obj), src.get("items"), src.get("defaultMode", 0o644))
            out[name] = str(d)
        elif "downwardAPI" in v:
            data, items = _downward(pod, v["downwardAPI"].get("items") or [])
            _write_files(d, data, items, v["downwardAPI"].get("defaultMode", 0o644))
            out[name] = str(d)
        elif "projected" in v:
            _projected(pod, v, d, objects)
            out[name] = str(d)
        elif "persistentVolumeClaim" in v:
            out[name] = str(_claim_path(pod, v["persistentVolumeClaim"].get("claimName", ""), objects))
    return out


def _claim_path(pod: Obj, claim_name: str, objects: dict[tuple[str, str], Any]) -> Path:
    pvc = objects.get(("persistentvolumeclaims", claim_name))
    if pvc is None:
        raise VolumeError(f'persistentvolumeclaim "{claim_name}" not found')
    if pvc["metadata"].get("deletionTimestamp"):
        raise VolumeError(f'persistentvolumeclaim "{claim_name}" is being deleted')
    vname = (pvc.get("spec") or {}).get("volumeName")
    if not vname:
        raise VolumeError(f'persistentvolumeclaim "{claim_name}" is not bound yet')
    pv = objects.get(("persistentvolumes", vname))
    if pv is None:
        raise VolumeError(f'persistentvolume "{vname}" for claim "{claim_name}" not found')
    spec = pv.get("spec") or {}
    if not volume_on_node(pv, pod["spec"].get("nodeName") or ""):
        raise VolumeError(f'persistentvolume "{vname}" is not available on node {pod["spec"].get("nodeName")}')
    src = spec.get("hostPath") or spec.get("local")
    if not src or not src.get("path"):
        raise VolumeError(f'persistentvolume "{vname}": only hostPath and local volumes are supported')
    p = Path(src["path"])
    if not p.exists():
        if "local" in spec or src.get("type") not in ("DirectoryOrCreate", None, ""):
            raise VolumeError(f'persistentvolume "{vname}": path {p} does not exist on the node')
        p.mkdir(parents=True, exist_ok=True)
        p.chmod(0o777)  # any container user may write, as local-path-provisioner does
    return p


def volume_on_node(pv: Obj, node_name: str) -> bool:
    """The volume's hostname node affinity allows this node (terms on other labels are the
    scheduler's business: the kubelet has no labels to match them against)."""
    terms = ((((pv.get("spec") or {}).get("nodeAffinity") or {}).get("required") or {}).get("nodeSelectorTerms")) or []
    host_terms = [t for t in terms if all(e.get("key") == HOSTNAME_LABEL for e in t.get("matchExpressions") or [])
                  and not t.get("matchFields")]
    if not terms or len(host_terms) != len(terms):
        return True
    for t in host_terms:
        ok = True
        for e in t.get("matchExpressions") or []:
            vals = e.get("values") or []
            op = e.get("operator")
            ok = ok and ((op == "In" and node_name in vals) or (op == "NotIn" and node_name not in vals)
                         or op == "Exists")
        if ok:
            return True
    return False


async def resolve_claims(client: Any, objects: dict[tuple[str, str], Any]) -> None:
    """Add the PersistentVolumes of the bound claims in ``objects`` (claim → volume)."""
    for (res, _), pvc in list(objects.items()):
        vname = ((pvc or {}).get("spec") or {}).get("volumeName") if res == "persistentvolumeclaims" else None
        if not vname:
            continue
        try:
            objects[("persistentvolumes", vname)] = await client.get("persistentvolumes", vname)
        except ApiError as e:
            if e.code != 404:
                raise
            objects[("persistentvolumes", vname)] = None


def local_path_root(data_dir: Path) -> Path:
    return data_dir / "volumes"


async def publish_local_path_root(client: Any, node_name: str, root: Path) -> None:
    """Tell the provisioner where this node keeps local-path volumes (a node annotation)."""
    root.mkdir(parents=True, exist_ok=True)
    await client.patch("nodes", node_name, {"metadata": {"annotations": {ROOT_ANNOTATION: str(root)}}})


def stale_local_paths(root: Path, live_volumes: set[str], in_use: set[str]) -> list[Path]:
    """Directories under the local-path root whose PersistentVolume is gone and that no pod mounts."""
    if not root.is_dir():
        return []
    return [d for d in sorted(root.iterdir()) if d.is_dir() and d.name.startswith("pvc-")
            and d.name not in live_volumes and str(d) not in in_use]


async def local_path_gc(client: Any, root: Path, in_use: Any, *, interval: float = 5.0) -> None:
    """Remove reclaimed local-path directories now and then; ``in_use()`` gives mounted paths."""
    while True:
        await asyncio.sleep(interval)
        try:
            live = {pv["metadata"]["name"] for pv in (await client.list("persistentvolumes"))["items"]}
            for d in stale_local_paths(root, live, set(in_use())):
                log.info("removing reclaimed local-path volume %s", d)
                await asyncio.to_thread(shutil.rmtree, d, True)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - next round
            log.warning("local-path cleanup: %r", e)


def referenced(pod: Obj) -> set[tuple[str, str]]:
    refs = set()
    for v in pod["spec"].get("volumes") or []:
        if "configMap" in v:
            refs.add(("configmaps", v["configMap"].get("name")))
        if "secret" in v:
            refs.add(("secrets", v["secret"].get("secretName")))
        if "persistentVolumeClaim" in v:
            refs.add(("persistentvolumeclaims", v["persistentVolumeClaim"].get("claimName")))
        for source in (v.get("projected") or {}).get("sources") or []:
            if "configMap" in source:
                refs.add(("configmaps", source["configMap"].get("name")))
            if "secret" in source:
                refs.add(("secrets", source["secret"].get("name")))
    return refs


class SubPathError(VolumeError, KeyError):
    """A subPath that leads out of its volume (a symlink the container planted): the container
    does not start (CreateContainerConfigError), as upstream since CVE-2017-1002101."""

    def __str__(self) -> str:
        return str(self.args[0])


# Volumes the kubelet writes: always mounted read-only, as upstream, so that a container
# cannot plant files (or symlinks) the kubelet would later write through.
KUBELET_WRITTEN = ("secret", "configMap", "downwardAPI", "projected")


def read_only_volumes(pod: Obj) -> set[str]:
    return {v["name"] for v in pod["spec"].get("volumes") or [] if any(k in v for k in KUBELET_WRITTEN)}


def subpath_source(volume: str, sub: str) -> str:
    """The host path of ``sub`` inside the volume at ``volume``, refused unless it resolves
    (symlinks followed) inside the volume. The shim checks again on what it opens."""
    root = os.path.realpath(volume)
    real = os.path.realpath(os.path.join(root, sub))
    if os.path.isabs(sub) or (real != root and not real.startswith(root + "/")):
        raise SubPathError(f"subPath {sub!r} resolves outside of its volume")
    return real


def mounts(c: Obj, paths: dict[str, str], *, pod: Obj | None = None) -> list[Mount]:
    out = []
    forced_ro = read_only_volumes(pod) if pod else set()
    for m in c.get("volumeMounts") or []:
        src = paths.get(m["name"])
        if src is None:
            raise VolumeError(f'volume "{m["name"]}" not found in the pod')
        within = None
        if m.get("subPath"):
            try:
                real = subpath_source(src, m["subPath"])
            except SubPathError as e:
                raise SubPathError(f'failed to prepare subPath for volumeMount "{m["name"]}" of container '
                                   f'"{c["name"]}": {e}') from None
            within = os.path.realpath(src)
            if not os.path.exists(real):
                os.makedirs(real, exist_ok=True)
            src = os.path.join(src, m["subPath"])
        out.append(Mount(src, m["mountPath"], bool(m.get("readOnly")) or m["name"] in forced_ro, within=within))
    return out
