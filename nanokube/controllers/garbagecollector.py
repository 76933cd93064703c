"""Garbage collector: delete dependents whose owners are gone (background propagation),
and finish foreground deletions (garbagecollector.go, much reduced).

An object is garbage when none of its ownerReferences resolves to a live object with the
same uid. An owner marked with the ``foregroundDeletion`` finalizer has its dependents
deleted first; the finalizer comes off when none are left.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from nanokube.api.errors import ApiError
from nanokube.api.resources import for_kind

log = logging.getLogger("nanokube.gc")
Obj = dict[str, Any]
DEPENDENT_RESOURCES = ("pods", "replicasets", "jobs", "controllerrevisions", "persistentvolumeclaims")
OWNER_RESOURCES = ("replicationcontrollers", "replicasets", "deployments", "daemonsets", "jobs", "cronjobs", "statefulsets")


class GarbageCollector:
    def __init__(self, client: Any, *, period: float = 2.0):
        self.client = client
        self.period = period

    async def _owner_alive(self, ref: Obj, namespace: str | None, cache: dict) -> bool:
        r = for_kind(ref.get("apiVersion", ""), ref.get("kind", ""))
        if r is None:
            return True  # an owner kind we do not serve: never collect on its account
        key = (r.plural, namespace if r.namespaced else None, ref.get("name"))
        if key not in cache:
            try:
                cache[key] = await self.client.get(r.plural, ref["name"], namespace=key[1])
            except ApiError as e:
                if e.code != 404:
                    raise
                cache[key] = None
        owner = cache[key]
        return owner is not None and owner["metadata"].get("uid") == ref.get("uid")

    async def sweep(self) -> int:
        cache: dict = {}
        deleted = 0
        for res in DEPENDENT_RESOURCES:
            for obj in (await self.client.list(res))["items"]:
                md = obj["metadata"]
                refs = md.get("ownerReferences") or []
                if not refs or md.get("deletionTimestamp"):
                    continue
                alive = [await self._owner_alive(ref, md.get("namespace"), cache) for ref in refs]
                if not any(alive):
                    try:
                        await self.client.delete(res, md["name"], namespace=md.get("namespace"),
                                                 propagation_policy="Background")
                        deleted += 1
                    except ApiError as e:
                        if e.code != 404:
                            raise
        for res in OWNER_RESOURCES:
            for owner in (await self.client.list(res))["items"]:
                md = owner["metadata"]
                if not md.get("deletionTimestamp") or "foregroundDeletion" not in (md.get("finalizers") or []):
                    continue
                remaining = 0
                for dres in DEPENDENT_RESOURCES:
                    for dep in (await self.client.list(dres, namespace=md.get("namespace")))["items"]:
                        if any(r.get("uid") == md["uid"] for r in dep["metadata"].get("ownerReferences") or []):
                            remaining += 1
                            if not dep["metadata"].get("deletionTimestamp"):
                                await self.client.delete(dres, dep["metadata"]["name"], namespace=md.get("namespace"),
                                                         propagation_policy="Foreground")
                if not remaining:
                    fins = [f for f in md.get("finalizers") or [] if f != "foregroundDeletion"]
                    await self.client.patch(res, md["name"], {"metadata": {"finalizers": fins or None}},
                                            namespace=md.get("namespace"))
        return deleted

    async def run(self) -> None:
        while True:
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - next sweep
                log.warning("gc sweep: %r", e)
            await asyncio.sleep(self.period)
