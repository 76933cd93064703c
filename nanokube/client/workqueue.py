"""A keyed, de-duplicating, rate-limited work queue (client-go's workqueue).

A key waiting in the queue is queued once however often it is added; a key being
processed is never handed to a second worker, and if it is added meanwhile it is processed
again after ``done``. Failures retry with per-key exponential back-off (5 ms doubling to
1000 s); ``forget`` resets it after a success.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

log = logging.getLogger("nanokube.workqueue")


class WorkQueue:
    def __init__(self, *, base_delay: float = 0.005, max_delay: float = 1000.0):
        self._queue: list[str] = []
        self._dirty: set[str] = set()
        self._processing: set[str] = set()
        self._failures: dict[str, int] = {}
        self._cond = asyncio.Condition()
        self._shutdown = False
        self.base_delay, self.max_delay = base_delay, max_delay
        self._timers: set[asyncio.TimerHandle] = set()

    def add(self, key: str) -> None:
        if self._shutdown or key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._queue.append(key)
            asyncio.get_event_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._cond:
            self._cond.notify()

    def add_after(self, key: str, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_event_loop()
        h: asyncio.TimerHandle | None = None

        def fire() -> None:
            self._timers.discard(h)  # type: ignore[arg-type]
            self.add(key)
        h = loop.call_later(delay, fire)
        self._timers.add(h)

    def add_rate_limited(self, key: str) -> None:
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        self.add_after(key, min(self.base_delay * (2 ** n), self.max_delay))

    def forget(self, key: str) -> None:
        self._failures.pop(key, None)

    def retries(self, key: str) -> int:
        return self._failures.get(key, 0)

    def __len__(self) -> int:
        return len(self._queue)

    def idle(self) -> bool:
        """Nothing queued and nothing being processed (tests wait for this)."""
        return not self._queue and not self._processing

    async def get(self) -> str | None:
        async with self._cond:
            while not self._queue and not self._shutdown:
                await self._cond.wait()
            if self._shutdown and not self._queue:
                return None
            key = self._queue.pop(0)
            self._processing.add(key)
            self._dirty.discard(key)
            return key

    def done(self, key: str) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            asyncio.get_event_loop().create_task(self._notify())

    def shutdown(self) -> None:
        self._shutdown = True
        for h in self._timers:
            h.cancel()
        asyncio.get_event_loop().create_task(self._notify_all())

    async def _notify_all(self) -> None:
        async with self._cond:
            self._cond.notify_all()


async def run_workers(queue: WorkQueue, sync: Callable[[str], Awaitable[None]], *, workers: int = 1,
                      name: str = "") -> None:
    async def worker() -> None:
        while True:
            key = await queue.get()
            if key is None:
                return
            try:
                await sync(key)
                queue.forget(key)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - the queue decides the retry
                log.warning("%s sync %s failed (retry %d): %r", name, key, queue.retries(key), e)
                queue.add_rate_limited(key)
            finally:
                queue.done(key)
    await asyncio.gather(*(worker() for _ in range(workers)))
