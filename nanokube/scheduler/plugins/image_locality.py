"""ImageLocality: prefer nodes that already have the pod's container images (upstream's plugin).

Per node: sum, over the pod's containers (init and app) whose image the node reports in
``status.images``, of ``size * nodes_with_image / total_nodes`` (the spread factor damps the
pull towards the few nodes holding a big image); clamp the sum to [23 MB, 1000 MB x number of
containers] and map that range linearly onto 0..100 (upstream's calculatePriority).

Key design choice: image names are compared in one canonical form, so ``busybox``,
``busybox:latest`` and ``docker.io/library/busybox:latest`` are the same image. ``pre_score``
expands each of the pod's images into every spelling of it once (``aliases``, memoized: a pure
function of a string), then one pass over the snapshot's nodes is plain dict lookups — no name
is parsed per node — and records which nodes hold which image and how many do.
"""
from __future__ import annotations

import functools
from typing import Any

from nanokube.scheduler.framework import MAX_SCORE, SKIP, NodeInfo, Obj

NAME = "ImageLocality"
WEIGHT = 1
MB = 1024 * 1024
MIN_THRESHOLD = 23 * MB
MAX_CONTAINER_THRESHOLD = 1000 * MB
DOCKER_HUB = "docker.io"
_HUB_ALIASES = ("docker.io", "index.docker.io", "registry-1.docker.io")


@functools.lru_cache(maxsize=2048)
def canonical(ref: str) -> str:
    """``busybox`` → ``docker.io/library/busybox:latest``; a reference with a registry keeps it;
    ``:latest`` is added when there is no tag and no digest (upstream's normalizedImageName)."""
    name, at, digest = ref.partition("@")
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        domain, path = first, rest
    else:
        domain, path = DOCKER_HUB, name
    if domain in _HUB_ALIASES:
        domain = DOCKER_HUB
        if "/" not in path:
            path = "library/" + path
    if at:
        return f"{domain}/{path}@{digest}"
    if ":" not in path.rsplit("/", 1)[-1]:
        path += ":latest"
    return f"{domain}/{path}"


@functools.lru_cache(maxsize=1024)
def aliases(ref: str) -> frozenset[str]:
    """Every spelling of the image ``ref`` names (all have the same ``canonical``)."""
    canon = canonical(ref)
    domain, _, rest = canon.partition("/")
    paths = [rest]
    if rest.endswith(":latest"):
        paths.append(rest[:-len(":latest")])
    domains = [domain + "/"]
    if domain == DOCKER_HUB:
        domains = ["", *(d + "/" for d in _HUB_ALIASES)]
        paths += [p[len("library/"):] for p in paths if p.startswith("library/")]
    return frozenset(c for d in domains for p in paths if canonical(c := d + p) == canon)


def pod_images(pod: Obj) -> list[str]:
    """The canonical image of every container, init containers first."""
    spec = pod.get("spec") or {}
    return [canonical(c["image"]) for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])
            if c.get("image")]


def calculate_priority(sum_scores: int, num_containers: int) -> int:
    max_threshold = MAX_CONTAINER_THRESHOLD * num_containers
    s = min(max(sum_scores, MIN_THRESHOLD), max_threshold)
    return MAX_SCORE * (s - MIN_THRESHOLD) // (max_threshold - MIN_THRESHOLD)


def node_scores(images: list[str], on_node: dict[str, dict[str, int]], total_nodes: int) -> dict[str, int]:
    """Pure: node name → score, from which nodes hold which of the pod's images (and sizes)."""
    num: dict[str, int] = {}
    for found in on_node.values():
        for c in found:
            num[c] = num.get(c, 0) + 1
    out = {}
    for name, found in on_node.items():
        total = 0
        for c in images:
            size = found.get(c)
            if size is not None:
                total += int(size * (num[c] / total_nodes))
        if total > MIN_THRESHOLD:   # at or below it the score is 0 (the common small image)
            out[name] = calculate_priority(total, len(images))
    return out


def pre_score(pod: Obj, snap: Any, feasible: list[NodeInfo]) -> Any:
    """The score of every node holding one of the pod's images (the spread factor needs all
    nodes, not only the feasible ones); the rest score 0. SKIP when no node scores."""
    images = pod_images(pod)
    if not images:
        return SKIP
    get = {a: c for c in set(images) for a in aliases(c)}.get   # any spelling → canonical
    on_node: dict[str, dict[str, int]] = {}
    for name, ni in snap.by_name.items():
        found: dict[str, int] | None = None
        for img in (ni.node.get("status") or {}).get("images") or ():
            for n in img.get("names") or ():
                c = get(n)
                if c is not None:
                    if found is None:
                        found = {}
                    found.setdefault(c, int(img.get("sizeBytes") or 0))
                    break      # the other names of this entry are the same image
        if found:
            on_node[name] = found
    return node_scores(images, on_node, len(snap.nodes)) or SKIP


def score(pod: Obj, ni: NodeInfo, state: dict[str, int] | None) -> int:
    return state.get(ni.name, 0) if isinstance(state, dict) else 0
