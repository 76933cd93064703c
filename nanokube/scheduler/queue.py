"""The scheduling queue: kube-scheduler's activeQ, backoffQ and unschedulable pods.

- **active**: pods ready to be tried, highest priority first, then oldest first.
- **backoff**: pods that failed and wait out a per-pod back-off (1 s doubling to 10 s, as
  upstream's defaults) before they return to active.
- **unschedulable**: pods no node fits. They stay until a cluster event that could make
  them fit moves them (``move``: node added / changed, a pod deleted, ...), and at the
  latest after five minutes (upstream's podMaxInUnschedulablePodsDuration). Each remembers
  the plugins that rejected it, so an event moves only the pods it can help.

A move that happens while a pod is being scheduled is not lost: a pod whose cycle started
before the latest move goes to backoff rather than to unschedulable (upstream's
moveRequestCycle). Single-threaded asyncio: no locks.
"""
from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from dataclasses import dataclass, field
from typing import Callable

INITIAL_BACKOFF = 1.0
MAX_BACKOFF = 10.0
MAX_UNSCHEDULABLE = 300.0


@dataclass
class QueuedPod:
    key: str
    priority: int = 0
    added: float = field(default_factory=time.monotonic)
    attempts: int = 0
    rejected_by: frozenset[str] = frozenset()
    backoff_until: float = 0.0
    unschedulable_since: float = 0.0
    popped_cycle: int = 0


class SchedulingQueue:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic,
                 initial_backoff: float = INITIAL_BACKOFF, max_backoff: float = MAX_BACKOFF,
                 max_unschedulable: float = MAX_UNSCHEDULABLE):
        self.clock = clock
        self.initial_backoff, self.max_backoff, self.max_unschedulable = initial_backoff, max_backoff, max_unschedulable
        self._active: list[tuple[int, float, int, str]] = []   # heap of (-priority, added, seq, key)
        self._in_active: dict[str, QueuedPod] = {}
        self._backoff: dict[str, QueuedPod] = {}
        self._unschedulable: dict[str, QueuedPod] = {}
        self._in_flight: dict[str, QueuedPod] = {}
        self._seq = itertools.count()
        self._cycle = 0          # bumped per pop
        self._move_cycle = -1    # the cycle of the latest move request
        self._wake = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None

    # --- adding --------------------------------------------------------------------------
    def add(self, key: str, priority: int = 0) -> None:
        """A new or updated pending pod. An update moves an unschedulable pod back (its spec
        or labels may fit now), respecting its back-off."""
        if key in self._in_flight:
            self._in_flight[key].priority = priority
            return
        if key in self._in_active:
            return
        qp = self._backoff.get(key) or self._unschedulable.pop(key, None)
        if qp is None:
            self._push(QueuedPod(key, priority, self.clock()))
            return
        qp.priority = priority
        if key in self._backoff:
            return
        self._requeue(qp)

    def _push(self, qp: QueuedPod) -> None:
        self._backoff.pop(qp.key, None)
        self._unschedulable.pop(qp.key, None)
        self._in_active[qp.key] = qp
        heapq.heappush(self._active, (-qp.priority, qp.added, next(self._seq), qp.key))
        self._wake.set()

    def _requeue(self, qp: QueuedPod) -> None:
        """To backoff if its back-off has not expired yet, else to active."""
        if qp.backoff_until > self.clock():
            self._unschedulable.pop(qp.key, None)
            self._backoff[qp.key] = qp
            self._arm()
        else:
            self._push(qp)

    def delete(self, key: str) -> None:
        self._in_active.pop(key, None)   # its heap entry is skipped when popped
        self._backoff.pop(key, None)
        self._unschedulable.pop(key, None)
        self._in_flight.pop(key, None)

    # --- the cycle -----------------------------------------------------------------------
    async def pop(self) -> QueuedPod:
        while True:
            self._flush()
            while self._active:
                _, _, _, key = heapq.heappop(self._active)
                qp = self._in_active.pop(key, None)
                if qp is None:
                    continue
                self._cycle += 1
                qp.popped_cycle = self._cycle
                qp.attempts += 1
                self._in_flight[key] = qp
                return qp
            self._wake.clear()
            self._arm()
            try:  # wake now and then to flush pods unschedulable for too long
                await asyncio.wait_for(self._wake.wait(), 30)
            except asyncio.TimeoutError:
                pass

    def done(self, key: str) -> None:
        """Scheduled (or gone): forget it."""
        self._in_flight.pop(key, None)

    def unschedulable(self, key: str, rejected_by: set[str] | frozenset[str]) -> None:
        """No node fit: park it until an event may help (or back off, if one came meanwhile)."""
        qp = self._in_flight.pop(key, None)
        if qp is None:
            return
        qp.rejected_by = frozenset(rejected_by)
        qp.backoff_until = self.clock() + self._backoff_for(qp.attempts)
        if self._move_cycle >= qp.popped_cycle:
            self._backoff[key] = qp
            self._arm()
        else:
            qp.unschedulable_since = self.clock()
            self._unschedulable[key] = qp

    def error(self, key: str) -> None:
        """The cycle failed for another reason (an API error): retry after its back-off."""
        qp = self._in_flight.pop(key, None)
        if qp is None:
            return
        qp.backoff_until = self.clock() + self._backoff_for(qp.attempts)
        self._backoff[key] = qp
        self._arm()

    def _backoff_for(self, attempts: int) -> float:
        return min(self.initial_backoff * (2 ** max(0, attempts - 1)), self.max_backoff)

    # --- cluster events ------------------------------------------------------------------
    def move(self, plugins: set[str] | None = None) -> int:
        """Move the unschedulable pods some of whose rejecting plugins are in ``plugins``
        (all of them when None) to active or backoff. Returns how many moved."""
        self._move_cycle = self._cycle
        moved = [qp for qp in self._unschedulable.values()
                 if plugins is None or not qp.rejected_by or qp.rejected_by & plugins]
        for qp in moved:
            self._requeue(qp)
        return len(moved)

    def _flush(self) -> None:
        now = self.clock()
        for key, qp in list(self._backoff.items()):
            if qp.backoff_until <= now:
                self._push(qp)
        for key, qp in list(self._unschedulable.items()):
            if now - qp.unschedulable_since >= self.max_unschedulable:
                self._requeue(qp)

    def _arm(self) -> None:
        """Wake pop() when the earliest back-off expires."""
        if not self._backoff:
            return
        delay = max(0.0, min(qp.backoff_until for qp in self._backoff.values()) - self.clock())
        if self._timer is not None:
            self._timer.cancel()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._timer = loop.call_later(delay + 0.001, self._wake.set)

    # --- inspection ----------------------------------------------------------------------
    def __contains__(self, key: str) -> bool:
        return key in self._in_active or key in self._backoff or key in self._unschedulable or key in self._in_flight

    def __len__(self) -> int:
        return len(self._in_active) + len(self._backoff) + len(self._unschedulable)

    def pending(self) -> dict[str, list[str]]:
        return {"active": sorted(self._in_active), "backoff": sorted(self._backoff),
                "unschedulable": sorted(self._unschedulable)}
