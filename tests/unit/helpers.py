"""Helpers for control-plane unit tests that run real controllers over the memory store."""
import asyncio


async def until(fn, timeout: float = 10.0):
    """Await ``fn()`` until it returns something truthy (bounded: AssertionError after ``timeout``)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        v = await fn()
        if v:
            return v
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met; last {v!r}")
        await asyncio.sleep(0.02)
