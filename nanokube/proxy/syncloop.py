"""The loop kube-proxy and the NetworkPolicy agent share: sync now, then again when their
informers mark the world dirty (at most every ``min_sync_period``, so bursts batch), and a
full resync every ``full_resync_period`` that re-reads the kernel and repairs drift.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

log = logging.getLogger("nanokube.proxy")


async def sync_forever(sync: Callable[..., int], dirty: asyncio.Event, *, what: str, min_sync_period: float,
                       full_resync_period: float, wait_timeout: Callable[[], float] | None = None) -> None:
    """Run ``sync(full=...)`` (in a thread: it talks to the kernel) forever; a failed sync is
    retried after a second."""
    last_full = 0.0
    while True:
        full = time.monotonic() - last_full > full_resync_period
        dirty.clear()
        try:
            n = await asyncio.to_thread(sync, full=full)
            if full:
                last_full = time.monotonic()
            log.debug("%s sync: %d chains changed", what, n)
        except Exception as e:  # noqa: BLE001 - retry on the next round
            log.warning("%s sync failed: %s", what, e)
            await asyncio.sleep(1)
            continue
        await asyncio.sleep(min_sync_period)
        try:
            await asyncio.wait_for(dirty.wait(), timeout=wait_timeout() if wait_timeout else full_resync_period)
        except asyncio.TimeoutError:
            pass
