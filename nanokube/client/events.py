"""Events: record what happened to an object, as ``kubectl describe`` and ``get events`` show.

Repeats of the same (object, reason, message) within a component bump ``count`` and
``lastTimestamp`` on one Event instead of creating another, as upstream's recorder does (its
correlator remembers, per process, which Event a repeat belongs to). An Event is named
``<object>.<creation time in hex nanoseconds>`` as upstream names them, so a plain ``kubectl get
events`` — which lists in name order — shows them in the order they happened.
Recording never raises: an event is a log line, not part of the work.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from typing import Any

from nanokube.api.errors import ApiError

log = logging.getLogger("nanokube.events")


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


_SEEN: dict[tuple, str] = {}  # (object uid, reason, message, component) → its Event's name
_SEEN_MAX = 4096              # the oldest are forgotten first: a repeat after that is a new Event


async def emit(client: Any, obj: dict[str, Any], *, reason: str, message: str, type: str = "Normal",
               component: str, host: str | None = None) -> None:
    md = obj.get("metadata") or {}
    ns = md.get("namespace") or "default"
    key = (md.get("uid"), reason, message, component)
    now = _now()
    try:
        name = _SEEN.get(key)
        if name is not None:
            try:
                ev = await client.get("events", name, namespace=ns)
                ev["count"] = ev.get("count", 1) + 1
                ev["lastTimestamp"] = now
                await client.update("events", ev, namespace=ns)
                return
            except ApiError as e:
                if e.code != 404:
                    raise
        name = f"{md.get('name')}.{time.time_ns():x}"
        _SEEN.pop(key, None)
        _SEEN[key] = name
        while len(_SEEN) > _SEEN_MAX:
            del _SEEN[next(iter(_SEEN))]
        source = {"component": component, **({"host": host} if host else {})}
        await client.create("events", {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": {"kind": obj.get("kind"), "namespace": md.get("namespace"), "name": md.get("name"),
                               "uid": md.get("uid"), "apiVersion": obj.get("apiVersion"),
                               "resourceVersion": md.get("resourceVersion")},
            "reason": reason, "message": message, "type": type, "count": 1,
            "firstTimestamp": now, "lastTimestamp": now, "source": source,
            "reportingComponent": component, "reportingInstance": host or "",
        }, namespace=ns)
    except Exception as e:  # noqa: BLE001 - never let an event break the caller
        log.debug("event %s/%s not recorded: %r", reason, md.get("name"), e)


class Recorder:
    """Events off the caller's path, in order: ``record`` queues and returns at once; one task
    writes them one after another (upstream's event broadcaster is asynchronous too). Used where
    a pod's start should not wait for its Pulled/Created/Started events."""

    def __init__(self, client: Any, *, component: str, host: str | None = None, limit: int = 1000):
        self.client, self.component, self.host = client, component, host
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self.limit = limit

    def record(self, obj: dict[str, Any], *, reason: str, message: str, type: str = "Normal") -> None:
        if self._queue is None:
            self._queue = asyncio.Queue()
        if self._queue.qsize() >= self.limit:  # the API is not keeping up: drop, as upstream's recorder does
            log.debug("event %s dropped: queue full", reason)
            return
        self._queue.put_nowait((obj, reason, message, type))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain(), name="events")

    async def _drain(self) -> None:
        while not self._queue.empty():
            obj, reason, message, type = self._queue.get_nowait()
            await emit(self.client, obj, reason=reason, message=message, type=type, component=self.component,
                       host=self.host)
