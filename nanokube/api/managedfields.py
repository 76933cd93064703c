"""Field ownership for server-side apply: ``metadata.managedFields`` and the apply merge.

What upstream's structured-merge-diff does for kube-apiserver, written for our plain JSON
objects: every write records, per field manager, the set of fields it set; an *apply*
merges a partial config into the live object, removes fields the applier set before and
has dropped now (unless another manager owns them), and refuses to change a field another
manager owns (409 ``Conflict``) unless forced, which moves the ownership.

Key design choice: a field set is a Python ``set`` of paths, each path a tuple of
already-encoded FieldsV1 elements (``"f:spec"``, ``'k:{"name":"nginx"}'``, ``'v:"x"'``), so
set algebra is native and the FieldsV1 trie is a cheap fold of the set. There is no typed
schema: list semantics come from the strategic-merge table (``schema.merge_key_for``):
lists with a merge key are associative ("map"), key-less merge lists are sets, every other
list is atomic; a few LabelSelector-like maps are atomic as upstream's ``structType=atomic``.
Everything here is pure (objects in, objects out, ``now`` injected); the registry does I/O.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Iterable

from nanokube.api.schema import merge_key_for

Obj = dict[str, Any]
Path = tuple[str, ...]
FieldSet = set[Path]

APPLY, UPDATE = "Apply", "Update"
BEFORE_FIRST_APPLY = "before-first-apply"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
CSA_SSA_MANAGER = "kubectl"  # upstream's lastApplied{Manager,Updater} act only for this manager
# Metadata that is the system's, never a manager's (upstream's stripMeta).
_META_STRIP = frozenset({"name", "namespace", "creationTimestamp", "selfLink", "uid", "clusterName", "generation",
                         "managedFields", "resourceVersion"})
_TOP_STRIP = frozenset({"apiVersion", "kind"})
# Maps that are replaced whole (upstream: LabelSelector and NodeSelector are structType=atomic,
# Service.spec.selector and Pod.spec.nodeSelector are mapType=atomic).
_ATOMIC_MAPS = frozenset({"selector", "labelSelector", "namespaceSelector", "podSelector", "nodeSelector",
                          "requiredDuringSchedulingIgnoredDuringExecution"})
# listMapKeys where upstream's list-map keys differ from the single patch merge key, with the
# keys' defaults (so an applied port without ``protocol`` matches the defaulted live one).
_KEY_DEFAULTS = {"protocol": "TCP"}
_MISSING = object()


class ApplyConflict(Exception):
    """Fields another manager owns with a different value; ``conflicts`` is [(manager id, path)]."""

    def __init__(self, conflicts: list[tuple["ManagerId", Path]]):
        super().__init__(conflict_message(conflicts))
        self.conflicts = conflicts


class ApplyError(ValueError):
    """The applied config cannot be merged (e.g. duplicate or key-less list-map items)."""


# -- list and map semantics -------------------------------------------------------------------
@lru_cache(maxsize=4096)
def list_type(fpath: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    """("map", keys) | ("set", ()) | ("atomic", ()) for the list at ``fpath`` (kind, field names...)."""
    key, strategy = merge_key_for(fpath)
    if key is None:
        return ("set", ()) if strategy == "merge" else ("atomic", ())
    last = fpath[-1]
    if last == "ports":
        return "map", (key, "protocol")
    if last == "topologySpreadConstraints":
        return "map", ("topologyKey", "whenUnsatisfiable")
    return "map", (key,)


def _atomic_map(fpath: tuple[str, ...]) -> bool:
    return fpath[-1] in _ATOMIC_MAPS and len(fpath) > 2


def _key_elem(item: Any, keys: tuple[str, ...]) -> str | None:
    if not isinstance(item, dict):
        return None
    kv = {}
    for k in keys:
        v = item.get(k, _KEY_DEFAULTS.get(k))
        if v is None:
            return None
        kv[k] = v
    return "k:" + json.dumps(kv, sort_keys=True, separators=(",", ":"))


def _value_elem(v: Any) -> str:
    return "v:" + json.dumps(v, sort_keys=True, separators=(",", ":"))


def _keyed(items: list, keys: tuple[str, ...]) -> dict[str, Any] | None:
    """Items by their key element, or None when a key is missing or repeated (then the list is
    handled as atomic: the safe reading of a list we cannot key)."""
    out: dict[str, Any] = {}
    for it in items:
        e = _key_elem(it, keys)
        if e is None or e in out:
            return None
        out[e] = it
    return out


# -- field sets -------------------------------------------------------------------------------
def strip(obj: Obj | None, *, ignore: Iterable[str] = ()) -> Obj:
    """A shallow view of ``obj`` without the fields no manager owns (and ``ignore``d top-level ones)."""
    if not obj:
        return {}
    ign = set(ignore)
    out = {k: v for k, v in obj.items() if k not in _TOP_STRIP and k not in ign}
    md = out.get("metadata")
    if isinstance(md, dict):
        md = {k: v for k, v in md.items() if k not in _META_STRIP}
        if md:
            out["metadata"] = md
        else:
            out.pop("metadata")
    return out


def to_field_set(obj: Obj, *, kind: str) -> FieldSet:
    """The fields an applied config sets (upstream's ToFieldSet): leaves, empty maps, nulls,
    atomic lists/maps, list-map items themselves and set members. Expects a stripped object."""
    out: FieldSet = set()
    _fs_map(obj, (), (kind,), out)
    return out


def _fs_map(m: dict, path: Path, fpath: tuple[str, ...], out: FieldSet) -> None:
    for k, v in m.items():
        p, fp = path + ("f:" + k,), fpath + (k,)
        if isinstance(v, dict):
            if not v or _atomic_map(fp):
                out.add(p)
            else:
                _fs_map(v, p, fp, out)
        elif isinstance(v, list):
            _fs_list(v, p, fp, out)
        else:
            out.add(p)


def _fs_list(items: list, path: Path, fpath: tuple[str, ...], out: FieldSet) -> None:
    lt, keys = list_type(fpath)
    if lt == "map":
        by_key = _keyed(items, keys)
        if by_key is None:
            raise ApplyError(f"{path_string(path)}: associative list with keys {list(keys)} has an element that "
                             "omits a key field or repeats a key")
        for e, it in by_key.items():
            ip = path + (e,)
            out.add(ip)
            _fs_map(it, ip, fpath, out)
    elif lt == "set":
        for it in items:
            out.add(path + (_value_elem(it),))
    else:
        out.add(path)


def _all(v: Any, path: Path, fpath: tuple[str, ...], out: FieldSet) -> None:
    """Every node of a subtree that appeared or vanished (compare marks each node)."""
    out.add(path)
    if isinstance(v, dict):
        if _atomic_map(fpath):
            return
        for k, c in v.items():
            _all(c, path + ("f:" + k,), fpath + (k,), out)
    elif isinstance(v, list):
        lt, keys = list_type(fpath)
        if lt == "map":
            by_key = _keyed(v, keys)
            if by_key is not None:
                for e, it in by_key.items():
                    _all(it, path + (e,), fpath, out)
        elif lt == "set":
            for it in v:
                out.add(path + (_value_elem(it),))


@dataclass
class Comparison:
    added: FieldSet = field(default_factory=set)
    modified: FieldSet = field(default_factory=set)
    removed: FieldSet = field(default_factory=set)

    def changed(self) -> FieldSet:
        return self.added | self.modified


def compare(lhs: Obj, rhs: Obj, *, kind: str) -> Comparison:
    """What changed from ``lhs`` to ``rhs`` (both stripped), as upstream's typed Compare."""
    c = Comparison()
    if lhs != rhs:
        _cmp_map(lhs, rhs, (), (kind,), c)
    return c


def _cmp(lv: Any, rv: Any, path: Path, fpath: tuple[str, ...], c: Comparison) -> None:
    if lv == rv:
        return
    if isinstance(lv, dict) and isinstance(rv, dict) and not _atomic_map(fpath):
        _cmp_map(lv, rv, path, fpath, c)
    elif isinstance(lv, list) and isinstance(rv, list):
        lt, keys = list_type(fpath)
        if lt == "map":
            lk, rk = _keyed(lv, keys), _keyed(rv, keys)
            if lk is not None and rk is not None:
                for e, it in rk.items():
                    old = lk.get(e, _MISSING)
                    if old is _MISSING:
                        _all(it, path + (e,), fpath, c.added)
                    else:
                        _cmp(old, it, path + (e,), fpath, c)
                for e, it in lk.items():
                    if e not in rk:
                        _all(it, path + (e,), fpath, c.removed)
                return
        elif lt == "set":
            ls, rs = {_value_elem(x) for x in lv}, {_value_elem(x) for x in rv}
            c.added.update(path + (e,) for e in rs - ls)
            c.removed.update(path + (e,) for e in ls - rs)
            return
        c.modified.add(path)
    else:
        c.modified.add(path)


def _cmp_map(lv: dict, rv: dict, path: Path, fpath: tuple[str, ...], c: Comparison) -> None:
    for k, v in rv.items():
        old = lv.get(k, _MISSING)
        if old is _MISSING:
            _all(v, path + ("f:" + k,), fpath + (k,), c.added)
        else:
            _cmp(old, v, path + ("f:" + k,), fpath + (k,), c)
    for k, v in lv.items():
        if k not in rv:
            _all(v, path + ("f:" + k,), fpath + (k,), c.removed)


# -- FieldsV1 encoding ------------------------------------------------------------------------
def encode_fields(fs: FieldSet) -> Obj:
    """A field set as the FieldsV1 trie: ``{}`` marks a member leaf, ``"."`` a member with children."""
    root: Obj = {}
    members: list[Obj] = []
    for p in fs:
        node = root
        for e in p:
            node = node.setdefault(e, {})
        members.append(node)
    # A member that also has children says so with "."; a childless member is just {}.
    for node in members:
        if node and "." not in node:
            node["."] = {}
    return _sorted_trie(root)


def _sorted_trie(node: Obj) -> Obj:
    return {k: _sorted_trie(node[k]) for k in sorted(node)}  # "." first, then f:, k:, v:


def decode_fields(trie: Any) -> FieldSet:
    if not isinstance(trie, dict):
        raise ValueError("fieldsV1 must be an object")
    out: FieldSet = set()
    _decode(trie, (), out)
    return out


def _decode(node: dict, path: Path, out: FieldSet) -> None:
    for e, child in node.items():
        if e == ".":
            if path:
                out.add(path)
            continue
        if not isinstance(child, dict) or e[:2] not in ("f:", "k:", "v:", "i:"):
            raise ValueError(f"invalid fieldsV1 element {e!r}")
        if child:
            _decode(child, path + (e,), out)
        else:
            out.add(path + (e,))


def path_string(path: Path) -> str:
    """Upstream's fieldpath.Path.String(): ``.spec.containers[name="nginx"].image``."""
    parts = []
    for e in path:
        t, rest = e[:2], e[2:]
        if t == "f:":
            parts.append("." + rest)
        elif t == "k:":
            kv = json.loads(rest)
            parts.append("[" + ",".join(f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in kv.items()) + "]")
        elif t == "v:":
            parts.append(f"[={rest}]")
        else:
            parts.append(f"[{rest}]")
    return "".join(parts)


# -- managers ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ManagerId:
    """Upstream's manager identifier: apply entries are one per manager whatever the version."""
    manager: str
    operation: str
    api_version: str = ""
    subresource: str = ""

    def describe(self) -> str:
        """As upstream's printManager (time is never part of the identifier)."""
        s = json.dumps(self.manager)
        if self.subresource:
            s += f" with subresource {json.dumps(self.subresource)}"
        if self.operation == UPDATE:
            s += f" using {self.api_version}"
        return s


@dataclass
class Entry:
    fields: FieldSet
    api_version: str
    time: str | None


Managed = dict[ManagerId, Entry]


def decode_managed(entries: Any) -> Managed:
    """``metadata.managedFields`` → managers; ValueError when it is not valid."""
    if not isinstance(entries, list):
        raise ValueError("managedFields must be a list")
    out: Managed = {}
    for e in entries:
        if not isinstance(e, dict):
            raise ValueError("managedFields entries must be objects")
        op = e.get("operation")
        if op not in (APPLY, UPDATE):
            raise ValueError(f"invalid operation {op!r}")
        if e.get("fieldsType", "FieldsV1") != "FieldsV1":
            raise ValueError(f"invalid fieldsType {e.get('fieldsType')!r}")
        av = e.get("apiVersion") or ""
        mid = ManagerId(e.get("manager") or "", op, av if op == UPDATE else "", e.get("subresource") or "")
        if mid in out:
            raise ValueError(f"duplicate manager {mid}")
        out[mid] = Entry(decode_fields(e.get("fieldsV1") or {}), av, e.get("time"))
    return out


def encode_managed(managed: Managed) -> list[Obj]:
    out = []
    for mid, e in managed.items():
        if not e.fields:
            continue
        d: Obj = {"manager": mid.manager, "operation": mid.operation, "apiVersion": e.api_version}
        if e.time:
            d["time"] = e.time
        d["fieldsType"] = "FieldsV1"
        d["fieldsV1"] = encode_fields(e.fields)
        if mid.subresource:
            d["subresource"] = mid.subresource
        out.append(d)
    # Upstream's order: Apply before Update, then by time, manager, version, subresource.
    out.sort(key=lambda d: (d["operation"], d.get("time") or "", d["manager"], d["apiVersion"], d.get("subresource", "")))
    return out


def is_reset(entries: Any) -> bool:
    """``[]`` or ``[{}]`` in a write means "drop all managedFields" (upstream's isResetManagedFields)."""
    return isinstance(entries, list) and (entries == [] or entries == [{}])


def base_managed(old: Obj | None, new: Obj) -> Managed:
    """The ownership a write starts from: the request's own managedFields when it carries a
    valid non-empty set (a client editing them on purpose), else the stored object's."""
    want = (new.get("metadata") or {}).get("managedFields")
    if is_reset(want):
        return {}
    if want:
        try:
            m = decode_managed(want)
            if any(e.fields for e in m.values()):
                return m
        except ValueError:
            pass
    try:
        return decode_managed(((old or {}).get("metadata") or {}).get("managedFields") or [])
    except ValueError:
        return {}


def _set_managed(obj: Obj, managed: Managed) -> None:
    enc = encode_managed(managed)
    md = obj.setdefault("metadata", {})
    if enc:
        md["managedFields"] = enc
    else:
        md.pop("managedFields", None)


def _zero_like(new: Obj) -> Obj:
    """What upstream compares a create against: the zero value of the Go type, whose non-omitempty
    structs (metadata, spec, status, a template's metadata/spec, containers) exist but are empty,
    so a creator owns their fields but not those nodes themselves."""
    z: Obj = {}
    for k in ("metadata", "spec", "status"):
        if isinstance(new.get(k), dict):
            z[k] = {}
    spec = new.get("spec")
    if isinstance(spec, dict):
        tpl = spec.get("template")
        if isinstance(tpl, dict):
            z["spec"]["template"] = {k: ({} if k != "spec" else {"containers": []})
                                     for k in ("metadata", "spec") if isinstance(tpl.get(k), dict)}
        if isinstance(spec.get("containers"), list):
            z["spec"]["containers"] = []
    return z


# -- operations -------------------------------------------------------------------------------
def record_update(old: Obj | None, new: Obj, *, manager: str, api_version: str, kind: str, now: str,
                  subresource: str = "", ignore: Iterable[str] = ()) -> None:
    """Record an Update (create, PUT, non-apply PATCH) in ``new``'s managedFields: the fields it
    added or changed become ``manager``'s, taken from every other manager; removed fields
    leave every manager. Updates never conflict.

    This runs on every write, so it works on the encoded entries: an entry is decoded (and
    re-encoded) only when the change touches it, found by walking its trie per changed path."""
    entries = _base_entries(old, new)
    if old is None and not entries:
        # A create with no ownership sent: everything it holds is the creator's; build the
        # trie in one walk (the common write, so the fast path).
        trie = _created_trie(strip(new, ignore=ignore), _zero_like(new), (kind,))
        md = new.setdefault("metadata", {})
        if trie:
            d: Obj = {"manager": manager, "operation": UPDATE, "apiVersion": api_version, "time": now,
                      "fieldsType": "FieldsV1", "fieldsV1": trie}
            if subresource:
                d["subresource"] = subresource
            md["managedFields"] = [d]
        else:
            md.pop("managedFields", None)
        return
    c = compare(strip(old, ignore=ignore) if old is not None else _zero_like(new), strip(new, ignore=ignore), kind=kind)
    changed = c.changed()
    if changed or c.removed:
        drop = changed | c.removed
        me = (manager, UPDATE, api_version, subresource)
        out, mine = [], None
        for e in entries:
            if _entry_id(e) == me:
                mine = e
                continue
            fv = e.get("fieldsV1") or {}
            if any(_trie_has(fv, p) for p in drop):
                fs = _decode_or_empty(fv) - drop
                if fs:
                    out.append({**e, "fieldsV1": encode_fields(fs)})
            else:
                out.append(e)
        mine_fv = (mine or {}).get("fieldsV1") or {}
        if any(_trie_has(mine_fv, p) for p in c.removed) or not all(_trie_has(mine_fv, p) for p in changed):
            fs = (_decode_or_empty(mine_fv) - c.removed) | changed
            mine_fv = encode_fields(fs) if fs else {}
        if mine_fv:
            d: Obj = {"manager": manager, "operation": UPDATE, "apiVersion": api_version,
                      "time": now if changed else (mine or {}).get("time"), "fieldsType": "FieldsV1", "fieldsV1": mine_fv}
            if subresource:
                d["subresource"] = subresource
            out.append(d)
        out.sort(key=lambda d: (d.get("operation") or "", d.get("time") or "", d.get("manager") or "",
                                d.get("apiVersion") or "", d.get("subresource") or ""))
        entries = out
    md = new.setdefault("metadata", {})
    if entries:
        md["managedFields"] = entries
    else:
        md.pop("managedFields", None)


def _created_trie(v: dict, zero: dict, fpath: tuple[str, ...]) -> Obj:
    """FieldsV1 of everything in ``v`` compared with the zero object ``zero`` (nodes that exist
    in ``zero`` are not members themselves, as ``compare`` + ``encode_fields`` would say)."""
    out: Obj = {}
    for k, c in v.items():
        fp = fpath + (k,)
        z = zero.get(k, _MISSING)
        if z is _MISSING:
            out["f:" + k] = _added_trie(c, fp)
        elif isinstance(z, dict) and isinstance(c, dict):
            sub = _created_trie(c, z, fp)
            if sub:
                out["f:" + k] = sub
        elif isinstance(z, list) and isinstance(c, list) and c:
            lt, keys = list_type(fp)
            by_key = _keyed(c, keys) if lt == "map" else None
            if by_key is not None:
                out["f:" + k] = {e: _added_trie(it, fp) for e, it in by_key.items()}
            else:
                out["f:" + k] = {}
    return out


def _added_trie(v: Any, fpath: tuple[str, ...]) -> Obj:
    """FieldsV1 of a subtree that is new as a whole: every node is a member."""
    if isinstance(v, dict):
        if not v or _atomic_map(fpath):
            return {}
        out: Obj = {".": {}}
        for k, c in v.items():
            out["f:" + k] = _added_trie(c, fpath + (k,))
        return out
    if isinstance(v, list) and v:
        lt, keys = list_type(fpath)
        if lt == "map":
            by_key = _keyed(v, keys)
            if by_key is not None:
                out = {".": {}}
                for e, it in by_key.items():
                    out[e] = _added_trie(it, fpath)
                return out
        elif lt == "set":
            out = {".": {}}
            for it in v:
                out[_value_elem(it)] = {}
            return out
    return {}


def _entry_id(e: Obj) -> tuple[str, str, str, str]:
    op = e.get("operation") or ""
    return (e.get("manager") or "", op, (e.get("apiVersion") or "") if op == UPDATE else "", e.get("subresource") or "")


def _entries_ok(entries: Any) -> bool:
    if not isinstance(entries, list):
        return False
    seen = set()
    for e in entries:
        if not isinstance(e, dict) or e.get("operation") not in (APPLY, UPDATE) or \
                e.get("fieldsType", "FieldsV1") != "FieldsV1" or not isinstance(e.get("fieldsV1", {}), dict):
            return False
        i = _entry_id(e)
        if i in seen:
            return False
        seen.add(i)
    return True


def _base_entries(old: Obj | None, new: Obj) -> list[Obj]:
    """As ``base_managed``, on the encoded entries."""
    want = (new.get("metadata") or {}).get("managedFields")
    have = ((old or {}).get("metadata") or {}).get("managedFields") or []
    if is_reset(want):
        return []
    if want and want != have and _entries_ok(want) and any(e.get("fieldsV1") for e in want):
        return want
    return have if _entries_ok(have) else []


def _trie_has(trie: Obj, path: Path) -> bool:
    node = trie
    for e in path:
        node = node.get(e)
        if node is None:
            return False
    return not node or "." in node


def _decode_or_empty(trie: Any) -> FieldSet:
    try:
        return decode_fields(trie)
    except ValueError:
        return set()


@dataclass
class ApplyResult:
    obj: Obj
    changed: bool


def apply(live: Obj | None, config: Obj, *, manager: str, api_version: str, kind: str, now: str,
          force: bool = False, subresource: str = "", ignore: Iterable[str] = ()) -> ApplyResult:
    """Server-side apply of ``config`` (a partial object) to ``live`` (None: it does not exist).

    Returns the merged object carrying the new managedFields. Raises ApplyConflict when the
    config changes fields other managers own and ``force`` is false; ApplyError on a config
    that cannot be keyed. The same manager's fields that are no longer in the config are
    removed unless another manager owns them (upstream's prune)."""
    ignore = tuple(ignore)
    cfg_set = to_field_set(strip(config, ignore=ignore), kind=kind)
    # What is merged keeps the identity (kind, name, namespace) but no system metadata.
    cfg = {k: v for k, v in config.items() if k not in ignore}
    if isinstance(cfg.get("metadata"), dict):
        cfg["metadata"] = {k: v for k, v in cfg["metadata"].items() if k in ("name", "namespace") or k not in _META_STRIP}
    live_obj: Obj = copy.deepcopy(live) if live is not None else {}
    managed = base_managed(None, live_obj) if live is not None else {}
    if live is not None and not managed:
        # An object nobody owns yet: its current fields are "before-first-apply"'s, so an apply
        # can neither silently drop them nor take them over without a conflict.
        fs = compare(_zero_like(live_obj), strip(live_obj, ignore=ignore), kind=kind).changed()
        if fs:
            managed[ManagerId(BEFORE_FIRST_APPLY, UPDATE, api_version)] = Entry(fs, api_version, now)
    me = ManagerId(manager, APPLY, "", subresource)
    last = managed.get(me)
    merged = _merge_map(live_obj, copy.deepcopy(cfg), (kind,))
    managed[me] = Entry(cfg_set, api_version, last.time if last else None)
    if last is not None and last.fields - cfg_set:
        owned: FieldSet = set()
        for e in managed.values():
            owned |= e.fields
        _prune(merged, _trie(last.fields), _trie(owned), (kind,))
    c = compare(strip(live, ignore=ignore), strip(merged, ignore=ignore), kind=kind)  # live_obj was merged into
    changed = c.changed()
    conflicts: list[tuple[ManagerId, Path]] = []
    for mid, e in managed.items():
        if mid == me:
            continue
        for p in sorted(e.fields & changed):
            conflicts.append((mid, p))
    if conflicts and not force:
        raise ApplyConflict(conflicts)
    for mid, e in managed.items():
        if mid != me:
            e.fields = e.fields - changed - c.removed
    did_change = bool(changed or c.removed) or live is None
    if did_change or last is None or last.fields != cfg_set:
        managed[me].time = now
    managed[me].api_version = api_version
    _set_managed(merged, managed)
    return ApplyResult(merged, did_change)


def _merge_map(live: dict, cfg: dict, fpath: tuple[str, ...]) -> dict:
    for k, v in cfg.items():
        if v is None:
            live.pop(k, None)
            continue
        cur = live.get(k, _MISSING)
        live[k] = v if cur is _MISSING else _merge(cur, v, fpath + (k,))
    return live


def _merge(cur: Any, v: Any, fpath: tuple[str, ...]) -> Any:
    if isinstance(cur, dict) and isinstance(v, dict) and not _atomic_map(fpath):
        return _merge_map(cur, v, fpath)
    if isinstance(cur, list) and isinstance(v, list):
        lt, keys = list_type(fpath)
        if lt == "map":
            have = _keyed(cur, keys)
            if have is not None:
                out = list(cur)
                pos = {e: i for i, e in enumerate(have)}
                for it in v:
                    e = _key_elem(it, keys)
                    if e in pos:
                        out[pos[e]] = _merge_map(out[pos[e]], it, fpath)
                    else:
                        pos[e] = len(out)
                        out.append(it)
                return out
        elif lt == "set":
            out = list(cur)
            seen = {_value_elem(x) for x in cur}
            out += [x for x in v if _value_elem(x) not in seen]
            return out
    return v


def _trie(fs: FieldSet) -> Obj:
    """Paths as a nested dict: a key is there when it, or something below it, is in the set."""
    root: Obj = {}
    for p in fs:
        node = root
        for e in p:
            node = node.setdefault(e, {})
    return root


def _prune(node: Any, last: Obj, owned: Obj, fpath: tuple[str, ...]) -> None:
    """Remove from ``node`` what the applier owned last time (``last``) and nobody owns now."""
    if isinstance(node, dict):
        for k in list(node):
            e = "f:" + k
            if e not in last:
                continue
            if e not in owned:
                del node[k]
            else:
                _prune(node[k], last[e], owned[e], fpath + (k,))
    elif isinstance(node, list):
        lt, keys = list_type(fpath)
        if lt == "map":
            keep = []
            for it in node:
                e = _key_elem(it, keys)
                if e is not None and e in last and e not in owned:
                    continue
                if e is not None and e in last:
                    _prune(it, last[e], owned[e], fpath)
                keep.append(it)
            node[:] = keep
        elif lt == "set":
            node[:] = [x for x in node if not ((e := _value_elem(x)) in last and e not in owned)]


def conflict_message(conflicts: list[tuple[ManagerId, Path]]) -> str:
    """Upstream's getConflictMessage."""
    if len(conflicts) == 1:
        mid, p = conflicts[0]
        return f"Apply failed with 1 conflict: conflict with {mid.describe()}: {path_string(p)}"
    by: dict[str, list[str]] = {}
    for mid, p in conflicts:
        by.setdefault(mid.describe(), []).append(path_string(p))
    msgs = []
    for m in sorted(by):
        msgs.append(f"conflicts with {m}:")
        msgs += [f"- {p}" for p in by[m]]
    return f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(msgs)


def conflict_causes(conflicts: list[tuple[ManagerId, Path]]) -> list[Obj]:
    return [{"reason": "FieldManagerConflict", "message": f"conflict with {mid.describe()}", "field": path_string(p)}
            for mid, p in conflicts]


def last_applied_allowed(live: Obj, *, kind: str) -> FieldSet:
    """Fields kubectl's server-side apply may take from client-side apply without a conflict
    (upstream's lastAppliedManager): those in the last-applied annotation whose live value
    still equals it."""
    raw = ((live.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED)
    if not raw:
        return set()
    try:
        last = json.loads(raw)
        if not isinstance(last, dict):
            return set()
        fs = to_field_set(strip(last), kind=kind)
    except (ValueError, ApplyError):
        return set()
    return fs - compare(strip(last), strip(live), kind=kind).modified


def set_last_applied(obj: Obj, config: Obj) -> None:
    """After kubectl's server-side apply to an object that has the last-applied annotation, set it
    to the applied config (upstream's lastAppliedUpdater), so a later client-side ``kubectl
    apply`` diffs against what was applied last. The annotation keeps its owner."""
    anns = (obj.get("metadata") or {}).get("annotations") or {}
    if LAST_APPLIED not in anns:
        return
    bare = copy.deepcopy(config)
    cann = (bare.get("metadata") or {}).get("annotations")
    if isinstance(cann, dict):
        cann.pop(LAST_APPLIED, None)
    anns[LAST_APPLIED] = json.dumps(bare, sort_keys=True, separators=(",", ":")) + "\n"
