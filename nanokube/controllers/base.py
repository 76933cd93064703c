"""What every controller shares: informers, a keyed work queue, and the run loop.

A controller declares its informers and handlers, and implements ``sync(key)``: read the
caches, compare desired with actual, act, and be safe to run twice (level-triggered, as
upstream's controllers are). Errors raise; the queue retries with back-off.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any, Callable

from nanokube.client.informer import Informer, key_of, shared
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
        inf = shared(self.client, resource, **kw)
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


async def create_pods(client: Any, owner: Obj, pods: list[Obj], pending: dict[str, float], *, component: str) -> None:
    """Create ``owner``'s pods concurrently, as upstream's controllers do: each is recorded in
    ``pending`` (the controller's expectations) before its create, and forgotten again if the
    create fails; SuccessfulCreate / FailedCreate events; the first error raises (retry)."""
    from nanokube.api.errors import ApiError
    from nanokube.client.events import emit

    async def one(pod: Obj) -> None:
        pending[pod["metadata"]["name"]] = time.monotonic()
        try:
            created = await client.create("pods", pod, namespace=owner["metadata"]["namespace"])
        except ApiError as e:
            pending.pop(pod["metadata"]["name"], None)
            await emit(client, owner, reason="FailedCreate", type="Warning", component=component,
                       message=f"Error creating: {e.message}")
            raise
        await emit(client, owner, reason="SuccessfulCreate", component=component,
                   message=f"Created pod: {created['metadata']['name']}")
    results = await asyncio.gather(*(one(p) for p in pods), return_exceptions=True)
    errs = [r for r in results if isinstance(r, Exception)]
    if errs:
        raise errs[0]


async def delete_pod(client: Any, owner: Obj, pod: Obj, *, component: str) -> bool:
    """Delete one of ``owner``'s pods with a SuccessfulDelete event; False if it was gone."""
    from nanokube.api.errors import ApiError
    from nanokube.client.events import emit
    md = pod["metadata"]
    try:
        await client.delete("pods", md["name"], namespace=md["namespace"])
    except ApiError as e:
        if e.code != 404:
            raise
        return False
    await emit(client, owner, reason="SuccessfulDelete", component=component, message=f"Deleted pod: {md['name']}")
    return True


def split_key(key: str) -> tuple[str | None, str]:
    ns, _, name = key.rpartition("/")
    return (ns or None), name
