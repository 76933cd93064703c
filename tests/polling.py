"""Polling until a condition holds, for the integration and VM tests."""
from __future__ import annotations

import time
from typing import Any, Callable


def wait_for(what: str, fn: Callable[[], Any], *, timeout: float, interval: float,
             context: Callable[[], str] = lambda: "") -> Any:
    """fn()'s first truthy result; an AssertionError from fn (a command that failed) is retried
    until the deadline. On timeout, AssertionError naming ``what``, the last result and
    ``context()`` (e.g. the cluster's log tails)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except AssertionError as e:
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}{context()}")
