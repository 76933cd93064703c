"""Removing what a local cluster's nodes left: containers and their shims, pod network
namespaces, cgroups, the ingress nginx. Used by ``nanokube down`` after the agents have stopped."""
from __future__ import annotations

import asyncio
from pathlib import Path

from nanokube.host.cgroups import detect, kill_all
from nanokube.network.podnet import teardown_all_in_state


def remove_node_leftovers(*, node_dir: Path, cgroup_prefix: str, netns: str | None = None) -> None:
    from nanokube.runtime.images import ImageStore
    from nanokube.runtime.runtime import Runtime
    cg = detect()
    kill_all(cg, cgroup_prefix)  # the containers; their shims then record the exit and end
    cdir = node_dir / "containers"
    if cdir.exists():
        rt = Runtime(state_dir=cdir, images=ImageStore(Path("/nonexistent")), cgroups=cg)

        async def remove_all() -> None:
            for cid in rt.list():
                await rt.remove(cid)
        asyncio.run(remove_all())
    teardown_all_in_state(node_dir / "net")
    from nanokube.host.mounts import unmount_below
    unmount_below(node_dir)  # the tmpfs of secret volumes
    from nanokube.network.ingress_agent import stop_leftover
    stop_leftover(node_dir / "ingress")  # the node's nginx, found by its pid file


def remove_cgroup_tree(rel: str) -> None:
    cg = detect()
    kill_all(cg, rel)
    cg.remove(rel)
