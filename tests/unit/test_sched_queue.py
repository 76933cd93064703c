"""The scheduling queue: priority order, back-off, unschedulable pods and the events that move them."""
import asyncio

import pytest

from nanokube.scheduler.queue import SchedulingQueue


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


async def pop_now(q):
    return await asyncio.wait_for(q.pop(), 0.5)


async def test_higher_priority_first_then_oldest():
    clock = Clock()
    q = SchedulingQueue(clock=clock)
    for key, prio in (("a", 0), ("b", 10), ("c", 0), ("d", 10)):
        q.add(key, prio)
        clock.t += 1
    assert [(await pop_now(q)).key for _ in range(4)] == ["b", "d", "a", "c"]


async def test_duplicates_are_queued_once():
    q = SchedulingQueue()
    q.add("a")
    q.add("a")
    assert (await pop_now(q)).key == "a"
    q.add("a")            # in flight: not queued a second time
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(q.pop(), 0.05)


async def test_unschedulable_waits_for_a_relevant_event():
    clock = Clock()
    q = SchedulingQueue(clock=clock)
    q.add("p")
    qp = await pop_now(q)
    q.unschedulable(qp.key, {"NodeResourcesFit"})
    assert q.pending()["unschedulable"] == ["p"]
    assert q.move({"InterPodAffinity"}) == 0          # cannot help a pod short of cpu
    assert q.pending()["unschedulable"] == ["p"]
    clock.t += 5                                        # back-off (1 s after one attempt) is over
    assert q.move(None) == 1
    assert (await pop_now(q)).key == "p"


async def test_move_during_backoff_goes_to_backoff_then_active():
    clock = Clock()
    q = SchedulingQueue(clock=clock)
    q.add("p")
    for attempt in range(3):
        qp = await pop_now(q)
        q.unschedulable(qp.key, {"NodeAffinity"})
        q.move(None)                                     # back-off 1, 2, 4 s not over yet
        assert q.pending()["backoff"] == ["p"]
        clock.t += 2 ** attempt
    assert (await pop_now(q)).key == "p"


async def test_a_move_while_in_flight_is_not_lost():
    clock = Clock()
    q = SchedulingQueue(clock=clock)
    q.add("p")
    qp = await pop_now(q)
    q.move(None)                                         # e.g. a node was added meanwhile
    q.unschedulable(qp.key, {"NodeResourcesFit"})
    assert q.pending()["backoff"] == ["p"]               # not parked among the unschedulable


async def test_update_of_an_unschedulable_pod_requeues_it_and_delete_forgets_it():
    clock = Clock()
    q = SchedulingQueue(clock=clock)
    q.add("p")
    q.unschedulable((await pop_now(q)).key, {"NodeAffinity"})
    clock.t += 2
    q.add("p")                                           # its spec changed
    assert q.pending()["active"] == ["p"]
    q.delete("p")
    assert len(q) == 0 and "p" not in q


async def test_unschedulable_pods_are_retried_after_the_maximum_wait():
    clock = Clock()
    q = SchedulingQueue(clock=clock, max_unschedulable=60)
    q.add("p")
    q.unschedulable((await pop_now(q)).key, {"NodeAffinity"})
    clock.t += 61
    assert (await pop_now(q)).key == "p"
