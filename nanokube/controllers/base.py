"""What every controller shares: informers, a keyed work queue, and the run loop.

A controller declares its informers and handlers, and implements ``sync(key)``: read the
caches, compare desired with actual, act, and be safe to run twice (level-triggered, as
upstream's controllers are). Errors raise; the queue retries with back-off.
"""
from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from nanokube.client.informer import Informer, key_of
from nanokube.client.workqueue import WorkQueue, run_workers

Obj = dict[str, Any]


def now_rfc3339() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def controller_ref(obj: Obj) -> Obj | None:
    for o in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if o.get("controller"):
            return o
    return None


def is_pod_ready(pod: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def is_active(pod: Obj) -> bool:
    return (not (pod.get("metadata") or {}).get("deletionTimestamp")
            and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"))


class Controller:
    name = "controller"
    workers = 1

    def __init__(self, client: Any):
        self.client = client
        self.queue = WorkQueue()
        self.informers: list[Informer] = []

    def informer(self, resource: str, **kw: Any) -> Informer:
        inf = Informer(self.client, resource, **kw)
        self.informers.append(inf)
        return inf

    def enqueue(self, obj: Obj) -> None:
        self.queue.add(key_of(obj))

    def enqueue_handlers(self, inf: Informer) -> None:
        inf.add_handler(on_add=self.enqueue, on_update=lambda o, n: self.enqueue(n), on_delete=self.enqueue)

    async def sync(self, key: str) -> None:
        raise NotImplementedError

    async def run(self) -> None:
        tasks = [asyncio.create_task(i.run(), name=f"{self.name}-{i.resource}") for i in self.informers]
        try:
            await asyncio.gather(*(i.wait_synced() for i in self.informers))
            await run_workers(self.queue, self.sync, workers=self.workers, name=self.name)
        finally:
            for t in tasks:
                t.cancel()


def split_key(key: str) -> tuple[str | None, str]:
    ns, _, name = key.rpartition("/")
    return (ns or None), name
