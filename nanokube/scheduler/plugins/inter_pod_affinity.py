"""Filter + Score InterPodAffinity: place a pod near (affinity) or away from (anti-affinity)
pods that match a label selector, per topology domain (any node label: hostname, zone, ...).

As upstream's plugin of that name. ``pre_filter`` counts, per topology pair (key, value),
three things once per pod: existing pods' required anti-affinity terms that match the
incoming pod, and existing pods matching the incoming pod's required affinity and
anti-affinity terms; ``filter`` is then a few dict lookups per node. The key design choice is
that a pod that uses no affinity, in a cluster where no pod has required anti-affinity, costs
one scan of the node list (``snap.have_pods_with_required_anti_affinity()``) and no pod walk;
``pre_filter`` returns None and ``filter`` returns at once. Scoring likewise only walks the
pods that have affinity unless the incoming pod has preferred terms of its own.

Term semantics: ``labelSelector`` (absent = matches nothing, ``{}`` = everything),
``topologyKey``, ``namespaces`` (default: the term owner's namespace, unless a
``namespaceSelector`` is given), ``namespaceSelector`` against ``snap.namespace_labels``
(``{}`` = all namespaces), and ``matchLabelKeys`` / ``mismatchLabelKeys`` merged into the
selector from the owner's labels (idempotent if the apiserver already merged them).
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

from nanokube.api.selectors import Requirement, from_label_selector, matches
from nanokube.scheduler.framework import MAX_SCORE, NodeInfo, Obj, Snapshot, Unresolvable

NAME = "InterPodAffinity"
WEIGHT = 2
# Upstream's InterPodAffinityArgs.hardPodAffinityWeight default: how much an existing pod's
# *required* affinity term that matches the incoming pod counts in scoring.
HARD_POD_AFFINITY_WEIGHT = 1

REASON_AFFINITY = "node(s) didn't match pod affinity rules"
REASON_ANTI_AFFINITY = "node(s) didn't match pod anti-affinity rules"
REASON_EXISTING_ANTI_AFFINITY = "node(s) didn't satisfy existing pods anti-affinity rules"

Pair = tuple[str, str]
LabelTest = Callable[[dict], bool]


def _never(labels: dict) -> bool:
    return False


def compile_selector(reqs: list[Requirement] | None) -> LabelTest:
    """A label selector as one fast predicate over a labels dict (None matches nothing).
    The common matchLabels-only selectors become plain dict lookups; the scheduler runs
    this once per existing pod for pods that use affinity or spreading, so it is hot."""
    if reqs is None:
        return _never
    if all(op == "=" for _, op, _ in reqs):
        pairs = tuple((k, vals[0]) for k, _, vals in reqs)
        if not pairs:
            return lambda labels: True
        if len(pairs) == 1:
            (k, v), = pairs
            return lambda labels: labels.get(k) == v
        return lambda labels: all(labels.get(k) == v for k, v in pairs)
    return lambda labels: matches(labels, reqs)


class Term:
    """One parsed (Weighted)PodAffinityTerm of an owner pod."""

    __slots__ = ("topology_key", "selector", "namespaces", "ns_selector", "weight", "_labels_ok")

    def __init__(self, topology_key: str, selector: list[Requirement] | None,
                 namespaces: frozenset[str], ns_selector: list[Requirement] | None, weight: int = 1):
        self.topology_key = topology_key
        self.selector = selector          # None: matches no pod (nil labelSelector)
        self.namespaces = namespaces
        self.ns_selector = ns_selector    # None: no namespaceSelector; []: every namespace
        self.weight = weight
        self._labels_ok = compile_selector(selector)

    def matches(self, pod: Obj, namespace_labels: dict[str, dict[str, str]]) -> bool:
        """Whether ``pod`` is one of the pods this term selects (namespace, then labels)."""
        meta = pod["metadata"]
        ns = meta.get("namespace", "")
        if ns not in self.namespaces and (
                self.ns_selector is None or not matches(namespace_labels.get(ns), self.ns_selector)):
            return False
        return self._labels_ok(meta.get("labels") or {})


def parse_term(owner: Obj, raw: Obj, *, weight: int = 1) -> Term:
    """A PodAffinityTerm of ``owner`` as a Term (pure)."""
    meta = owner["metadata"]
    sel_obj = raw.get("labelSelector")
    selector: list[Requirement] | None = None
    if sel_obj is not None:
        selector = from_label_selector(sel_obj)
        labels = meta.get("labels") or {}
        # matchLabelKeys / mismatchLabelKeys: upstream's apiserver merges these into the
        # selector at pod creation (and only into a non-nil selector); doing it here as well
        # is idempotent and covers pods that were stored unmerged.
        for key in raw.get("matchLabelKeys") or ():
            if key in labels:
                selector.append((key, "in", (labels[key],)))
        for key in raw.get("mismatchLabelKeys") or ():
            if key in labels:
                selector.append((key, "notin", (labels[key],)))
    ns_sel_obj = raw.get("namespaceSelector")
    ns_selector = None if ns_sel_obj is None else from_label_selector(ns_sel_obj)
    namespaces = raw.get("namespaces") or []
    if not namespaces and ns_selector is None:
        namespaces = [meta.get("namespace", "")]
    return Term(raw.get("topologyKey", ""), selector, frozenset(namespaces), ns_selector, weight)


def term_selects(owner: Obj, raw: Obj, pod: Obj, namespace_labels: dict[str, dict[str, str]]) -> bool:
    """``parse_term(owner, raw).matches(pod, namespace_labels)`` without building a Term: the
    hot path for existing pods' terms, which are read once per scheduling cycle. Checks the
    namespace first (most terms default to their owner's namespace), then the labels."""
    pmeta = pod["metadata"]
    ns = pmeta.get("namespace", "")
    namespaces, ns_sel = raw.get("namespaces"), raw.get("namespaceSelector")
    if namespaces or ns_sel is not None:
        if not ((namespaces and ns in namespaces) or (
                ns_sel is not None and matches(namespace_labels.get(ns), from_label_selector(ns_sel)))):
            return False
    elif ns != owner["metadata"].get("namespace", ""):
        return False
    sel = raw.get("labelSelector")
    if sel is None:
        return False
    labels = pmeta.get("labels") or {}
    for k, v in (sel.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    exprs = sel.get("matchExpressions")
    if exprs and not matches(labels, from_label_selector({"matchExpressions": exprs})):
        return False
    mlk, mmlk = raw.get("matchLabelKeys"), raw.get("mismatchLabelKeys")
    if mlk or mmlk:
        own = owner["metadata"].get("labels") or {}
        for key in mlk or ():
            if key in own and labels.get(key) != own[key]:
                return False
        for key in mmlk or ():
            if key in own and labels.get(key) == own[key]:
                return False
    return True


def _raw_required(pod: Obj, kind: str) -> list[Obj]:
    return (_affinity(pod).get(kind) or {}).get("requiredDuringSchedulingIgnoredDuringExecution") or []


def _raw_preferred(pod: Obj, kind: str) -> list[Obj]:
    return (_affinity(pod).get(kind) or {}).get("preferredDuringSchedulingIgnoredDuringExecution") or []


def _affinity(pod: Obj) -> Obj:
    return (pod.get("spec") or {}).get("affinity") or {}


def required_terms(pod: Obj, kind: str) -> list[Term]:
    """``kind`` is "podAffinity" or "podAntiAffinity"."""
    return [parse_term(pod, t) for t in _raw_required(pod, kind)]


def preferred_terms(pod: Obj, kind: str) -> list[Term]:
    return [parse_term(pod, t.get("podAffinityTerm") or {}, weight=int(t.get("weight") or 0))
            for t in _raw_preferred(pod, kind)]


def _matches_all(terms: list[Term], pod: Obj, namespace_labels: dict[str, dict[str, str]]) -> bool:
    return bool(terms) and all(t.matches(pod, namespace_labels) for t in terms)


def _bump(counts: dict[Pair, int], labels: dict[str, str], key: str, by: int = 1) -> None:
    value = labels.get(key)
    if value is not None:
        pair = (key, value)
        counts[pair] = counts.get(pair, 0) + by


# ---- filter ---------------------------------------------------------------------------------

class PreFilterState:
    __slots__ = ("affinity_terms", "anti_terms", "affinity_counts", "anti_counts",
                 "existing_anti_counts", "self_matches_affinity")

    def __init__(self) -> None:
        self.affinity_terms: list[Term] = []
        self.anti_terms: list[Term] = []
        self.affinity_counts: dict[Pair, int] = {}       # pods matching all our affinity terms
        self.anti_counts: dict[Pair, int] = {}           # pods matching one of our anti terms
        self.existing_anti_counts: dict[Pair, int] = {}  # existing pods' anti terms matching us
        self.self_matches_affinity = False


def pre_filter(pod: Obj, snap: Snapshot) -> PreFilterState | None:
    """The topology-pair counts ``filter`` needs, or None when there is nothing to check."""
    aff = _affinity(pod)
    has_own = bool(aff) and bool(
        (aff.get("podAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution")
        or (aff.get("podAntiAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution"))
    with_anti = snap.have_pods_with_required_anti_affinity()
    if not has_own and not with_anti:
        return None
    ns_labels = snap.namespace_labels
    s = PreFilterState()
    # Existing pods' required anti-affinity terms that match the incoming pod.
    for ni in with_anti:
        labels = ni.labels
        for existing in ni.pods_with_required_anti_affinity.values():
            for raw in _raw_required(existing, "podAntiAffinity"):
                if term_selects(existing, raw, pod, ns_labels):
                    _bump(s.existing_anti_counts, labels, raw.get("topologyKey", ""))
    if has_own:
        s.affinity_terms = required_terms(pod, "podAffinity")
        s.anti_terms = required_terms(pod, "podAntiAffinity")
        s.self_matches_affinity = _matches_all(s.affinity_terms, pod, ns_labels)
        _count_own_terms(s, snap)
    if not (s.affinity_terms or s.anti_terms or s.existing_anti_counts):
        return None
    return s


def _count_own_terms(s: PreFilterState, snap: Snapshot) -> None:
    """Count existing pods matching all of the pod's affinity terms, and each of its
    anti-affinity terms, per topology pair of their nodes.

    ``filter`` only asks whether a pair's count is 0 or not, so a node whose pairs are all
    known to be non-zero already is skipped, and a node's pod walk stops once every pair it
    can add to is non-zero: a zone-wide term costs one matching pod per zone, a hostname
    term one per node. The counts are therefore lower bounds, exact only in 0 vs. more."""
    ns_labels = snap.namespace_labels
    aff_terms, anti_terms = s.affinity_terms, s.anti_terms
    aff, anti = s.affinity_counts, s.anti_counts
    for ni in snap.nodes:
        labels = ni.labels
        aff_pairs = [(t.topology_key, labels[t.topology_key]) for t in aff_terms if t.topology_key in labels]
        need_aff = any(p not in aff for p in aff_pairs)
        need_anti = [(t, (t.topology_key, labels[t.topology_key])) for t in anti_terms
                     if t.topology_key in labels and (t.topology_key, labels[t.topology_key]) not in anti]
        if need_aff:
            for existing in ni.pods.values():
                if all(t.matches(existing, ns_labels) for t in aff_terms):
                    for p in aff_pairs:
                        aff[p] = aff.get(p, 0) + 1
                    break
        for t, p in need_anti:
            if p in anti:
                continue  # another term with the same key got there first
            matches_t = t.matches
            for existing in ni.pods.values():
                if matches_t(existing, ns_labels):
                    anti[p] = 1
                    break


def _satisfies_affinity(s: PreFilterState, labels: dict[str, str]) -> bool:
    pods_exist = True
    for t in s.affinity_terms:
        value = labels.get(t.topology_key)
        if value is None:
            return False  # every topology label of the terms must be on the node
        if s.affinity_counts.get((t.topology_key, value), 0) <= 0:
            pods_exist = False
    if pods_exist:
        return True
    # The first pod of a group with affinity to itself: no pod anywhere matches the terms,
    # but the pod matches them itself, so it may start the group (else it pends forever).
    return not s.affinity_counts and s.self_matches_affinity


def filter(pod: Obj, ni: NodeInfo, state: PreFilterState | None) -> str | None:
    if state is None:
        return None
    labels = ni.labels
    if state.affinity_terms and not _satisfies_affinity(state, labels):
        return Unresolvable(REASON_AFFINITY)
    for t in state.anti_terms:
        value = labels.get(t.topology_key)
        if value is not None and state.anti_counts.get((t.topology_key, value), 0) > 0:
            return REASON_ANTI_AFFINITY
    for (key, value), n in state.existing_anti_counts.items():
        if n > 0 and labels.get(key) == value:
            return REASON_EXISTING_ANTI_AFFINITY
    return None


# ---- score ----------------------------------------------------------------------------------

TopologyScore = dict[str, dict[str, int]]  # topology key → value → summed weight


def _add(scores: TopologyScore, labels: dict[str, str], key: str, by: int) -> None:
    value = labels.get(key)
    if value is not None and by:
        d = scores.setdefault(key, {})
        d[value] = d.get(value, 0) + by


def pre_score(pod: Obj, snap: Snapshot, feasible: list[NodeInfo]) -> TopologyScore | None:
    """Weights per topology domain, from the incoming pod's preferred terms and from existing
    pods' terms that match the incoming pod; None when nothing scores."""
    pref_aff = preferred_terms(pod, "podAffinity")
    pref_anti = preferred_terms(pod, "podAntiAffinity")
    has_constraints = bool(pref_aff or pref_anti)
    nodes: Iterable[NodeInfo] = snap.nodes if has_constraints else snap.have_pods_with_affinity()
    ns_labels = snap.namespace_labels
    scores: TopologyScore = {}
    for ni in nodes:
        labels = ni.labels
        if not labels:
            continue
        if has_constraints:
            # The incoming pod's preferred terms against every pod: count per node, add once.
            pods = ni.pods.values()
            for terms, sign in ((pref_aff, 1), (pref_anti, -1)):
                for t in terms:
                    if t.topology_key in labels:
                        n = sum(1 for p in pods if t.matches(p, ns_labels))
                        _add(scores, labels, t.topology_key, sign * t.weight * n)
        # Existing pods' terms that select the incoming pod.
        for existing in ni.pods_with_affinity.values():
            ex_aff = existing["spec"]["affinity"]
            pa, paa = ex_aff.get("podAffinity"), ex_aff.get("podAntiAffinity")
            if pa:
                for raw in pa.get("requiredDuringSchedulingIgnoredDuringExecution") or ():
                    if term_selects(existing, raw, pod, ns_labels):
                        _add(scores, labels, raw.get("topologyKey", ""), HARD_POD_AFFINITY_WEIGHT)
            for sign, part in ((1, pa), (-1, paa)):
                for w in (part or {}).get("preferredDuringSchedulingIgnoredDuringExecution") or ():
                    raw = w.get("podAffinityTerm") or {}
                    if term_selects(existing, raw, pod, ns_labels):
                        _add(scores, labels, raw.get("topologyKey", ""), sign * int(w.get("weight") or 0))
    return scores or None


def score(pod: Obj, ni: NodeInfo, state: TopologyScore | None) -> float:
    if not state:
        return 0
    labels = ni.labels
    total = 0
    for key, by_value in state.items():
        value = labels.get(key)
        if value is not None:
            total += by_value.get(value, 0)
    return total


def normalize(scores: dict[str, float], state: Any) -> dict[str, float]:
    """Min-max to 0..100 (upstream truncates to an integer)."""
    if not state or not scores:
        return {n: 0 for n in scores}
    lo, hi = min(scores.values()), max(scores.values())
    diff = hi - lo
    if diff <= 0:
        return {n: 0 for n in scores}
    return {n: int(MAX_SCORE * (s - lo) / diff) for n, s in scores.items()}
