"""The three patch formats kubectl sends: JSON merge (RFC 7386), JSON patch (RFC 6902) and
Kubernetes' strategic merge patch.

Strategic merge differs from a JSON merge in lists: lists whose field has a merge key
(containers by ``name``, ports by ``containerPort``, ...) are merged element by element,
honouring the ``$patch``, ``$setElementOrder/…``, ``$retainKeys`` and
``$deleteFromPrimitiveList/…`` directives that ``kubectl apply`` computes. The merge keys
come from the schema table in ``schema.py`` (upstream's ``patchMergeKey`` struct tags).
"""
from __future__ import annotations

import copy
from typing import Any

from nanokube.api.schema import merge_key_for

_MISSING = object()


def json_merge_patch(doc: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(doc) if isinstance(doc, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = json_merge_patch(out.get(k), v)
    return out


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ValueError(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc: Any, parts: list[str]) -> Any:
    for p in parts:
        if isinstance(doc, list):
            doc = doc[int(p)]
        elif isinstance(doc, dict):
            if p not in doc:
                raise ValueError(f"path component {p!r} not found")
            doc = doc[p]
        else:
            raise ValueError(f"cannot descend into {type(doc).__name__} at {p!r}")
    return doc


def json_patch(doc: Any, ops: list[dict[str, Any]]) -> Any:
    doc = copy.deepcopy(doc)
    for op in ops:
        kind = op.get("op")
        parts = _pointer(op.get("path", ""))

        def put(target_parts: list[str], value: Any, *, replace: bool) -> None:
            nonlocal doc
            if not target_parts:
                doc = value
                return
            parent = _walk(doc, target_parts[:-1])
            last = target_parts[-1]
            if isinstance(parent, list):
                if last == "-" and not replace:
                    parent.append(value)
                    return
                i = int(last)
                if replace:
                    parent[i] = value
                elif 0 <= i <= len(parent):
                    parent.insert(i, value)
                else:
                    raise ValueError(f"index {i} out of range")
            elif isinstance(parent, dict):
                if replace and last not in parent:
                    raise ValueError(f"replace: path {op.get('path')!r} does not exist")
                parent[last] = value
            else:
                raise ValueError(f"cannot set a field of {type(parent).__name__}")

        def remove(target_parts: list[str]) -> Any:
            parent = _walk(doc, target_parts[:-1])
            last = target_parts[-1]
            if isinstance(parent, list):
                return parent.pop(int(last))
            if last not in parent:
                raise ValueError(f"remove: path {'/'.join(target_parts)!r} does not exist")
            return parent.pop(last)

        if kind == "add":
            put(parts, copy.deepcopy(op["value"]), replace=False)
        elif kind == "remove":
            remove(parts)
        elif kind == "replace":
            put(parts, copy.deepcopy(op["value"]), replace=True)
        elif kind in ("move", "copy"):
            src = _pointer(op["from"])
            value = remove(src) if kind == "move" else copy.deepcopy(_walk(doc, src))
            put(parts, value, replace=False)
        elif kind == "test":
            if _walk(doc, parts) != op.get("value"):
                raise ValueError(f"test failed at {op.get('path')!r}")
        else:
            raise ValueError(f"unknown JSON patch operation {kind!r}")
    return doc


def strategic_merge_patch(doc: Any, patch: Any, schemas: Any = None, api_version: str = "", kind: str = "") -> Any:
    return _smp(copy.deepcopy(doc), patch, (kind,))


def _smp(doc: Any, patch: Any, path: tuple[str, ...]) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(doc, dict):
        doc = {}
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return None
    retain = patch.get("$retainKeys")
    for k, v in patch.items():
        if k.startswith("$setElementOrder/") or k in ("$patch", "$retainKeys"):
            continue
        if k.startswith("$deleteFromPrimitiveList/"):
            field = k.split("/", 1)[1]
            if isinstance(doc.get(field), list):
                doc[field] = [x for x in doc[field] if x not in v]
            continue
        if v is None:
            doc.pop(k, None)
            continue
        cur = doc.get(k, _MISSING)
        if isinstance(v, dict):
            merged = _smp(cur if cur is not _MISSING else {}, v, path + (k,))
            if merged is None:
                doc.pop(k, None)
            else:
                doc[k] = merged
        elif isinstance(v, list):
            doc[k] = _merge_list(cur if isinstance(cur, list) else [], v, path + (k,),
                                 patch.get(f"$setElementOrder/{k}"))
        else:
            doc[k] = copy.deepcopy(v)
    for k in list(patch):
        if k.startswith("$setElementOrder/"):
            field = k.split("/", 1)[1]
            if field not in patch and isinstance(doc.get(field), list):
                doc[field] = _merge_list(doc[field], [], path + (field,), patch[k])
    if isinstance(retain, list):
        for k in list(doc):
            if k not in retain:
                doc.pop(k)
    return doc


def _merge_list(cur: list, patch: list, path: tuple[str, ...], order: list | None) -> list:
    key, strategy = merge_key_for(path)
    if strategy == "merge" and key is None:
        # A primitive list merged as a set (finalizers): union, patch order last.
        out = list(cur)
        for x in patch:
            if isinstance(x, dict) and x.get("$patch"):
                continue
            if x not in out:
                out.append(x)
        return _order_primitive(out, order)
    if key is None:
        if any(isinstance(x, dict) and x.get("$patch") == "replace" for x in patch):
            return [x for x in patch if not (isinstance(x, dict) and "$patch" in x)]
        return copy.deepcopy(patch)
    out = [copy.deepcopy(x) for x in cur]
    for item in patch:
        if not isinstance(item, dict):
            continue
        if item.get("$patch") == "replace":
            return [x for x in patch if not (isinstance(x, dict) and x.get("$patch"))]
        kv = item.get(key)
        idx = next((i for i, x in enumerate(out) if isinstance(x, dict) and x.get(key) == kv), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                out.pop(idx)
            continue
        if idx is None:
            out.append({k: v for k, v in copy.deepcopy(item).items() if v is not None})
        else:
            out[idx] = _smp(out[idx], item, path)
    if order:
        rank = {o.get(key) if isinstance(o, dict) else o: i for i, o in enumerate(order)}
        ordered = sorted((x for x in out if x.get(key) in rank), key=lambda x: rank[x.get(key)])
        rest = [x for x in out if x.get(key) not in rank]
        out = ordered + rest
    return out


def _order_primitive(items: list, order: list | None) -> list:
    if not order:
        return items
    rank = {o: i for i, o in enumerate(order)}
    return sorted((x for x in items if x in rank), key=lambda x: rank[x]) + [x for x in items if x not in rank]
