"""The resource quota controller: keeps every ResourceQuota's ``status.hard`` and
``status.used`` current.

Admission (apiserver/quota.py) refreshes usage when objects are created; this controller
catches everything else — deletions, pods turning terminal, a changed ``spec.hard`` — and
resyncs every quota periodically, like upstream's (default 5 min; shorter here since a
recount of a namespace is cheap). Usage is recomputed from the informer caches with the same
pure function admission uses (``quota.compute_used``), so both always agree.
"""
from __future__ import annotations

import asyncio
import copy
from typing import Any

from nanokube.api.errors import ApiError
from nanokube.apiserver import quota
from .base import Controller, split_key

Obj = dict[str, Any]
# What a quota can count, watched so that a change re-syncs the quotas of its namespace.
WATCHED = ("pods", "services", "configmaps", "secrets", "persistentvolumeclaims")


class ResourceQuotaController(Controller):
    name = "resourcequota"

    def __init__(self, client: Any, *, resync: float = 30.0):
        super().__init__(client)
        self.resync = resync
        self.quotas = self.informer("resourcequotas")
        self.enqueue_handlers(self.quotas)
        self.objects = {p: self.informer(p) for p in WATCHED}
        for inf in self.objects.values():
            inf.add_handler(on_add=self._touch, on_update=lambda o, n: self._touch(n), on_delete=self._touch)

    def _touch(self, obj: Obj) -> None:
        ns = (obj.get("metadata") or {}).get("namespace")
        for qu in self.quotas.list():
            if qu["metadata"].get("namespace") == ns:
                self.enqueue(qu)

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.resync)
            for qu in self.quotas.list():
                self.enqueue(qu)

    async def run(self) -> None:
        await asyncio.gather(super().run(), self._ticker())

    async def _listed(self, plural: str, ns: str) -> list[Obj]:
        if plural in self.objects:
            return [o for o in self.objects[plural].list() if o["metadata"].get("namespace") == ns]
        return (await self.client.list(plural, namespace=ns))["items"]

    async def sync(self, key: str) -> None:
        qu = self.quotas.get(key)
        if qu is None:
            return
        ns, _ = split_key(key)
        plurals = {p for k in ((qu.get("spec") or {}).get("hard") or {}) if (p := quota.plural_for(k))}
        objects = {p: await self._listed(p, ns or "") for p in plurals}
        st = quota.desired_status(qu, objects)
        if qu.get("status") != st:
            new = copy.deepcopy(qu)
            new["status"] = st
            try:
                await self.client.update("resourcequotas", new, namespace=ns, subresource="status")
            except ApiError as e:
                if e.code != 404:
                    raise
