"""Label selectors: parse the string form (``a=b,c!=d,e in (x,y),!f``) and match labels.

A parsed selector is a list of requirements ``(key, op, values)``; the same matcher serves
the apiserver's ``labelSelector`` queries and controllers' ``spec.selector`` objects.
"""
from __future__ import annotations

import re
from typing import Any

Requirement = tuple[str, str, tuple[str, ...]]
_SET = re.compile(r"^\s*(!?)\s*([A-Za-z0-9_./-]+)\s*(?:(notin|in)\s*\(([^)]*)\))?\s*$")


def _split(s: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    out, depth, cur = [], 0, ""
    for ch in s:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return [t.strip() for t in out if t.strip()]


def parse_label_selector(s: str) -> list[Requirement]:
    reqs: list[Requirement] = []
    for term in _split(s or ""):
        m = re.match(r"^([A-Za-z0-9_./-]+)\s*(==|=|!=)\s*([A-Za-z0-9_.-]*)$", term)
        if m:
            op = "!=" if m.group(2) == "!=" else "="
            reqs.append((m.group(1), op, (m.group(3),)))
            continue
        m = _SET.match(term)
        if not m:
            raise ValueError(f"invalid label selector term {term!r}")
        neg, key, op, vals = m.groups()
        if op:
            if neg:
                raise ValueError(f"invalid label selector term {term!r}")
            reqs.append((key, op, tuple(v.strip() for v in vals.split(",") if v.strip())))
        else:
            reqs.append((key, "!" if neg else "exists", ()))
    return reqs


def matches(labels: dict[str, str] | None, reqs: list[Requirement]) -> bool:
    labels = labels or {}
    for key, op, vals in reqs:
        has = key in labels
        v = labels.get(key)
        if op == "=" and v != vals[0]:
            return False
        if op == "!=" and has and v == vals[0]:
            return False
        if op == "in" and v not in vals:
            return False
        if op == "notin" and has and v in vals:
            return False
        if op == "exists" and not has:
            return False
        if op == "!" and has:
            return False
    return True


def from_label_selector(sel: dict[str, Any] | None) -> list[Requirement]:
    """A ``metav1.LabelSelector`` (matchLabels + matchExpressions) as requirements."""
    sel = sel or {}
    reqs: list[Requirement] = [(k, "=", (v,)) for k, v in (sel.get("matchLabels") or {}).items()]
    for e in sel.get("matchExpressions") or []:
        op = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}[e["operator"]]
        reqs.append((e["key"], op, tuple(e.get("values") or ())))
    return reqs


def to_string(sel: dict[str, Any] | None) -> str:
    """A ``metav1.LabelSelector`` in the query-string form."""
    parts = []
    for key, op, vals in from_label_selector(sel):
        if op in ("=", "!="):
            parts.append(f"{key}{op}{vals[0]}")
        elif op in ("in", "notin"):
            parts.append(f"{key} {op} ({','.join(vals)})")
        else:
            parts.append(key if op == "exists" else f"!{key}")
    return ",".join(parts)
