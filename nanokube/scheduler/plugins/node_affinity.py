"""NodeAffinity: ``spec.nodeSelector`` and ``spec.affinity.nodeAffinity`` (upstream's plugin).

Filter: the node must carry every ``nodeSelector`` label AND match one of the
``requiredDuringSchedulingIgnoredDuringExecution`` node selector terms (terms ORed, the
requirements of a term ANDed; ``matchExpressions`` read the node's labels, ``matchFields``
its ``metadata.name``; an empty term matches nothing). Score: the summed weights of the
``preferredDuringSchedulingIgnoredDuringExecution`` terms the node matches, normalized so
the best node gets 100 (upstream's DefaultNormalizeScore).

Key design choice: the node selector matching (``requirement_matches`` / ``term_matches`` /
``terms_match``) lives here once and is shared — PersistentVolume node affinity
(volume_binding.py) and DaemonSet placement use the same rules. ``pre_filter`` reduces the
pod to a small tuple once per cycle, so a pod with no node constraints costs one tuple test
per node; ``filter`` also works with ``state=None`` (it then derives the same tuple itself).
"""
from __future__ import annotations

from typing import Any, Iterable

from nanokube.scheduler.framework import MAX_SCORE, SKIP, NodeInfo, Obj, Unresolvable

NAME = "NodeAffinity"
WEIGHT = 2
REASON = "node(s) didn't match Pod's node affinity/selector"


# -- node selector requirements (shared) ---------------------------------------------------------

def requirement_matches(req: Obj, values: dict[str, str]) -> bool:
    """One NodeSelectorRequirement against a node's labels (or fields), as upstream's
    ``nodeSelectorRequirementsAsSelector``: In / NotIn need values, Exists / DoesNotExist
    take none, Gt / Lt exactly one integer compared with an integer label value. A malformed
    requirement matches nothing."""
    key, op, vals = req.get("key", ""), req.get("operator"), req.get("values") or []
    if op == "In":
        return bool(vals) and key in values and values[key] in vals
    if op == "NotIn":
        return bool(vals) and (key not in values or values[key] not in vals)
    if op == "Exists":
        return not vals and key in values
    if op == "DoesNotExist":
        return not vals and key not in values
    if op in ("Gt", "Lt"):
        if len(vals) != 1 or key not in values:
            return False
        try:
            have, want = int(values[key]), int(vals[0])
        except ValueError:
            return False
        return have > want if op == "Gt" else have < want
    return False


def term_matches(term: Obj, labels: dict[str, str], name: str) -> bool:
    """A NodeSelectorTerm: every matchExpression (labels) and matchField (metadata.name)
    holds; a term with neither matches nothing."""
    exprs, fields = term.get("matchExpressions") or [], term.get("matchFields") or []
    if not exprs and not fields:
        return False
    if not all(requirement_matches(e, labels) for e in exprs):
        return False
    if fields:
        fvals = {"metadata.name": name}
        return all(f.get("key") == "metadata.name" and requirement_matches(f, fvals) for f in fields)
    return True


def terms_match(terms: Iterable[Obj], node: Obj) -> bool:
    """NodeSelectorTerms are ORed: does any of them match the node?"""
    md = node.get("metadata") or {}
    labels, name = md.get("labels") or {}, md.get("name", "")
    return any(term_matches(t, labels, name) for t in terms)


# -- the plugin ----------------------------------------------------------------------------------

# pre_filter state: (nodeSelector items, required terms or None); NONE = the pod sets neither.
Required = tuple[tuple[tuple[str, str], ...], "list[Obj] | None"]
NONE: Required = ((), None)


def required(pod: Obj) -> Required:
    spec = pod.get("spec") or {}
    sel = spec.get("nodeSelector")
    na = (spec.get("affinity") or {}).get("nodeAffinity") or {}
    req = na.get("requiredDuringSchedulingIgnoredDuringExecution")
    if not sel and req is None:
        return NONE
    terms = None if req is None else list(req.get("nodeSelectorTerms") or [])
    return tuple((sel or {}).items()), terms


def pre_filter(pod: Obj, snap: Any) -> Required:
    return required(pod)


def node_matches(req: Required, node: Obj) -> bool:
    sel, terms = req
    if sel:
        labels = (node.get("metadata") or {}).get("labels") or {}
        for k, v in sel:
            if labels.get(k) != v:
                return False
    return terms is None or terms_match(terms, node)


def filter(pod: Obj, ni: NodeInfo, state: Required | None) -> Unresolvable | None:
    req = required(pod) if state is None else state
    if req is NONE or node_matches(req, ni.node):
        return None
    return Unresolvable(REASON)


def preferred(pod: Obj) -> list[tuple[int, Obj]] | None:
    """(weight, term) of the preferred terms that can count; None when there are none."""
    na = (((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {})
    out = [(int(p.get("weight") or 0), p.get("preference") or {})
           for p in na.get("preferredDuringSchedulingIgnoredDuringExecution") or []]
    out = [(w, t) for w, t in out if w]
    return out or None


def pre_score(pod: Obj, snap: Any, feasible: list[NodeInfo]) -> Any:
    """The pod's preferred terms; SKIP without any (every node would score 0)."""
    return preferred(pod) or SKIP


def score(pod: Obj, ni: NodeInfo, state: list[tuple[int, Obj]] | None) -> int:
    if not state or state is SKIP:
        return 0
    labels, name = ni.labels, ni.name
    return sum(w for w, t in state if term_matches(t, labels, name))


def default_normalize_score(scores: dict[str, float], *, reverse: bool = False,
                            max_priority: int = MAX_SCORE) -> dict[str, int]:
    """Upstream's helper.DefaultNormalizeScore: scale so the highest score is max_priority
    (integer arithmetic); ``reverse`` flips it (max_priority - score). All zero stays zero,
    or becomes max_priority everywhere when reversed."""
    top = max((int(s) for s in scores.values()), default=0)
    if top <= 0:
        return {n: max_priority if reverse else int(s) for n, s in scores.items()}
    out = {}
    for n, s in scores.items():
        v = max_priority * int(s) // top
        out[n] = max_priority - v if reverse else v
    return out


def normalize(scores: dict[str, float], state: Any) -> dict[str, int]:
    return default_normalize_score(scores)
