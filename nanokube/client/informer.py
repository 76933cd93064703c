"""Informer: a list+watch cache of one resource, with change handlers (client-go's shape).

``run()`` lists, then watches from the list's resourceVersion; when the watch ends or the
revision has been compacted (410) it relists and diffs the cache, firing the handlers for
what changed, so handlers see every change level-triggered even across reconnects. Cached
objects are shared: treat them as read-only and copy before changing.

``shared(client, resource, ...)`` is client-go's shared informer factory: every component of
a process that asks for the same (resource, namespace, selectors) on the same client gets one
informer — one cache, one watch — instead of a copy each (the server's dozen pod caches were
most of its memory). A shared informer runs while any of its users' ``run()`` does; a handler
added after it has synced is told of the cached objects as adds, as AddEventHandler does.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

from nanokube.api.errors import ApiError

log = logging.getLogger("nanokube.informer")
Obj = dict[str, Any]


def shared(client: Any, resource: str, *, namespace: str | None = None, label_selector: str | None = None,
           field_selector: str | None = None) -> "Informer":
    """The one informer of ``client`` for these arguments (made on first use)."""
    registry = client.__dict__.setdefault("_shared_informers", {}) if hasattr(client, "__dict__") else {}
    key = (resource, namespace, label_selector, field_selector)
    inf = registry.get(key)
    if inf is None:
        inf = registry[key] = Informer(client, resource, namespace=namespace, label_selector=label_selector,
                                       field_selector=field_selector)
    return inf


def key_of(obj: Obj) -> str:
    md = obj.get("metadata") or {}
    return f"{md['namespace']}/{md['name']}" if md.get("namespace") else md["name"]


class Informer:
    def __init__(self, client: Any, resource: str, *, namespace: str | None = None,
                 label_selector: str | None = None, field_selector: str | None = None):
        self.client, self.resource = client, resource
        self.namespace, self.label_selector, self.field_selector = namespace, label_selector, field_selector
        self._cache: dict[str, Obj] = {}
        self._handlers: list[tuple[Callable | None, Callable | None, Callable | None]] = []
        self._synced = asyncio.Event()
        self._users = 0
        self._loop_task: asyncio.Task | None = None

    def add_handler(self, *, on_add: Callable[[Obj], None] | None = None,
                    on_update: Callable[[Obj, Obj], None] | None = None,
                    on_delete: Callable[[Obj], None] | None = None) -> None:
        self._handlers.append((on_add, on_update, on_delete))
        if on_add is not None:
            for obj in list(self._cache.values()):
                try:
                    on_add(obj)
                except Exception:  # noqa: BLE001 - as _fire
                    log.exception("%s informer handler failed", self.resource)

    def get(self, key: str) -> Obj | None:
        return self._cache.get(key)

    def list(self) -> list[Obj]:
        return list(self._cache.values())

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    async def wait_synced(self) -> None:
        await self._synced.wait()

    def _fire(self, kind: int, *args: Obj) -> None:
        for h in self._handlers:
            fn = h[kind]
            if fn is not None:
                try:
                    fn(*args)
                except Exception:  # noqa: BLE001 - one bad handler must not stop the informer
                    log.exception("%s informer handler failed", self.resource)

    def _upsert(self, obj: Obj) -> None:
        k = key_of(obj)
        old = self._cache.get(k)
        self._cache[k] = obj
        if old is None:
            self._fire(0, obj)
        elif old.get("metadata", {}).get("resourceVersion") != obj.get("metadata", {}).get("resourceVersion"):
            self._fire(1, old, obj)

    def _remove(self, obj: Obj) -> None:
        old = self._cache.pop(key_of(obj), None)
        if old is not None:
            self._fire(2, obj)

    async def _relist(self) -> str:
        lst = await self.client.list(self.resource, namespace=self.namespace, label_selector=self.label_selector,
                                     field_selector=self.field_selector)
        fresh = {key_of(o): o for o in lst["items"]}
        for k in list(self._cache):
            if k not in fresh:
                self._remove(self._cache[k])
        for o in fresh.values():
            self._upsert(o)
        self._synced.set()
        return lst["metadata"]["resourceVersion"]

    async def run(self) -> None:
        """List and watch until cancelled; shared: the first user starts the loop, the last one
        to be cancelled stops it."""
        self._users += 1
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.get_running_loop().create_task(self._run(), name=f"informer-{self.resource}")
        try:
            await asyncio.shield(self._loop_task)
        finally:
            self._users -= 1
            if self._users == 0 and not self._loop_task.done():
                self._loop_task.cancel()

    async def _run(self) -> None:
        backoff = 0.05
        rv: str | None = None
        while True:
            try:
                if rv is None:
                    rv = await self._relist()
                async for typ, obj in self.client.watch(self.resource, namespace=self.namespace, resource_version=rv,
                                                        label_selector=self.label_selector,
                                                        field_selector=self.field_selector):
                    backoff = 0.05
                    if typ == "BOOKMARK":
                        rv = obj["metadata"]["resourceVersion"]
                        continue
                    if typ in ("ADDED", "MODIFIED"):
                        self._upsert(obj)
                    elif typ == "DELETED":
                        self._remove(obj)
                    rv = obj["metadata"].get("resourceVersion") or rv
            except asyncio.CancelledError:
                raise
            except ApiError as e:
                if e.code == 410:
                    rv = None
                    continue
                log.warning("%s watch failed: %s", self.resource, e)
                rv = None
            except Exception as e:  # noqa: BLE001 - connection trouble: back off and relist
                log.warning("%s watch interrupted: %r", self.resource, e)
                rv = None
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
