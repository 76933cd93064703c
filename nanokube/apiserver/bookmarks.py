"""Watch bookmarks: when to send them, what they say, and the watch-list parameter rules.

A watch opened with ``allowWatchBookmarks=true`` gets ``BOOKMARK`` events — an object of the
watched kind with nothing but ``metadata.resourceVersion`` — so a client whose selector
matches nothing for a long time still learns a recent revision to resume from instead of
hitting 410 Gone. The schedule is upstream's cacher's (``nextBookmarkTime``): every
``interval`` seconds, and once more 2 s before the watch's deadline so a client that times
out resumes from as close to now as possible.

Key design choice: a bookmark's revision must never run ahead of an event the watcher has
not seen yet. The apiserver samples the store's revision *before* waiting on the stream and
sends a bookmark only after that wait timed out with no event: the store broadcasts a commit
synchronously to every watcher's queue, and the stream task runs (and filters everything
queued) before the wait's timer fires, so every revision up to the sample has been looked at.

``NANOKUBE_WATCH_BOOKMARK_SECONDS`` overrides the interval (upstream: one minute; default
here 20 s), which lets tests see periodic bookmarks without waiting long.
"""
from __future__ import annotations

import os
from typing import Any

from nanokube.api.errors import ApiError

DEFAULT_INTERVAL = 20.0
PRE_TIMEOUT = 2.0  # upstream sends the last bookmark this long before the deadline
INITIAL_EVENTS_END = "k8s.io/initial-events-end"


def interval_from_env(environ: Any = None) -> float:
    raw = (os.environ if environ is None else environ).get("NANOKUBE_WATCH_BOOKMARK_SECONDS", "")
    try:
        v = float(raw)
    except ValueError:
        return DEFAULT_INTERVAL
    return v if v > 0 else DEFAULT_INTERVAL


def next_bookmark(now: float, *, deadline: float | None, interval: float) -> float | None:
    """When the next bookmark is due (None: no more before the deadline)."""
    due = now + interval
    if deadline is not None:
        due = min(due, deadline - PRE_TIMEOUT)
        if due < now:
            return None
    return due


def bookmark(kind: str, api_version: str, resource_version: int | str, *, initial_events_end: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"resourceVersion": str(resource_version)}
    if initial_events_end:
        meta["annotations"] = {INITIAL_EVENTS_END: "true"}
    return {"kind": kind, "apiVersion": api_version, "metadata": meta}


def check_watch_list(query: Any) -> None:
    """Upstream's ListOptions validation for a watch: ``sendInitialEvents`` needs
    ``resourceVersionMatch=NotOlderThan`` and ``allowWatchBookmarks=true``, and
    ``resourceVersionMatch`` on a watch needs ``sendInitialEvents``. 422 otherwise."""
    sie = query.get("sendInitialEvents")
    match = query.get("resourceVersionMatch")
    causes = []
    if sie is not None:
        if match != "NotOlderThan":
            causes.append(("resourceVersionMatch", f'Forbidden: sendInitialEvents requires setting resourceVersionMatch '
                                                   f'to NotOlderThan'))
        if query.get("allowWatchBookmarks") not in ("true", "1", "True"):
            causes.append(("allowWatchBookmarks", "Forbidden: sendInitialEvents requires setting allowWatchBookmarks to true"))
    elif match:
        causes.append(("resourceVersionMatch", "Forbidden: resourceVersionMatch is forbidden for watch unless "
                                               "sendInitialEvents is provided"))
    if causes:
        msg = "; ".join(f"{f}: {m}" for f, m in causes)
        if len(causes) > 1:
            msg = "[" + ", ".join(f"{f}: {m}" for f, m in causes) + "]"
        raise ApiError(422, "Invalid", f'ListOptions.meta.k8s.io "" is invalid: {msg}',
                       details={"group": "meta.k8s.io", "kind": "ListOptions",
                                "causes": [{"reason": "FieldValueForbidden", "message": m.split(": ", 1)[1], "field": f}
                                           for f, m in causes]})
