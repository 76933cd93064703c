"""Probe workers: one asyncio task per (container, probe kind), like upstream's prober.

A worker waits ``initialDelaySeconds``, then probes every ``periodSeconds`` with
``timeoutSeconds``; the result flips only after ``successThreshold`` successes or
``failureThreshold`` failures in a row (defaults 1 and 3). Startup gates the other two.
Results land in a ``ProbeState`` the pod worker reads, and ``on_change`` asks for a sync.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from . import probes

log = logging.getLogger("nanokube.prober")
Obj = dict[str, Any]
# How late each probe started against its schedule (seconds), for /metrics.
JITTER: collections.deque[float] = collections.deque(maxlen=10000)
PROBES_RUN = collections.Counter()


def jitter_quantiles() -> dict[float, float]:
    xs = sorted(JITTER)
    if not xs:
        return {}
    return {q: xs[min(len(xs) - 1, int(q * len(xs)))] for q in (0.5, 0.9, 0.99)}


@dataclass
class ProbeState:
    started: bool = True           # startup probe passed (or there is none)
    ready: bool = True             # readiness (True without a readiness probe)
    failed_liveness: str | None = None  # message when liveness or startup failed for good
    tasks: list[asyncio.Task] = field(default_factory=list)

    def cancel(self) -> None:
        for t in self.tasks:
            t.cancel()
        self.tasks.clear()


def new_state(container: Obj) -> ProbeState:
    return ProbeState(started="startupProbe" not in container, ready="readinessProbe" not in container)


async def worker(kind: str, probe: Obj, state: ProbeState, target: Callable[[], probes.Target | None],
                 on_change: Callable[[], None], on_event: Callable[[str, str], Awaitable[None]]) -> None:
    period = max(1, int(probe.get("periodSeconds", 10)))
    success_needed = max(1, int(probe.get("successThreshold", 1)))
    failure_needed = max(1, int(probe.get("failureThreshold", 3)))
    await asyncio.sleep(int(probe.get("initialDelaySeconds", 0)))
    ok_run = fail_run = 0
    # Probes run on a fixed schedule (start + k*period), so a slow probe does not drift the rest.
    due = time.monotonic()
    while True:
        if kind != "startup" and not state.started:
            await asyncio.sleep(0.2)
            due = time.monotonic()
            continue
        t = target()
        if t is None:
            return
        JITTER.append(max(0.0, time.monotonic() - due))
        PROBES_RUN[kind] += 1
        try:
            ok, msg = await probes.run(probe, t)
        except Exception as e:  # noqa: BLE001 - a broken probe is a failed probe
            ok, msg = False, str(e)
        if ok:
            ok_run, fail_run = ok_run + 1, 0
        else:
            ok_run, fail_run = 0, fail_run + 1
            await on_event(kind, msg)
        if kind == "readiness":
            if ok and ok_run >= success_needed and not state.ready:
                state.ready = True
                on_change()
            elif not ok and fail_run >= failure_needed and state.ready:
                state.ready = False
                on_change()
        elif kind == "startup":
            if ok:
                state.started = True
                on_change()
                return
            if fail_run >= failure_needed:
                state.failed_liveness = f"Container {t.container['name']} failed startup probe, will be restarted"
                on_change()
                return
        elif kind == "liveness" and not ok and fail_run >= failure_needed:
            state.failed_liveness = f"Container {t.container['name']} failed liveness probe, will be restarted"
            on_change()
            return
        due += period
        now = time.monotonic()
        if due < now:  # fell behind (a probe longer than its period): skip to the next slot
            due = now + period - ((now - due) % period)
        await asyncio.sleep(due - now)
