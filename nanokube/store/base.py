"""The store interface: a revision log of key → JSON value, like etcd's and kine's.

Every write appends one revision. An object's ``resourceVersion`` is the revision that last
wrote it; compare-and-swap on it gives optimistic concurrency. Watches replay the log from a
revision and then follow live writes, so a client that lists at revision R and watches from R
sees every change exactly once. Backends: ``SqliteStore`` (embedded default) and
``MemoryStore`` (tests); both keep the latest value of every key in memory for reads and
differ only in how they persist the log.
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any, AsyncIterator


class KeyExists(Exception):
    pass


class KeyNotFound(Exception):
    pass


class RevisionMismatch(Exception):
    """Compare-and-swap failed: the key's current revision is not the expected one."""


class Compacted(Exception):
    """The requested start revision is older than the oldest one the log still holds."""

    def __init__(self, oldest: int):
        super().__init__(f"revision compacted; oldest available is {oldest}")
        self.oldest = oldest


@dataclass(frozen=True)
class Event:
    type: str  # "PUT" (create or update) or "DELETE"
    key: str
    value: dict[str, Any] | None  # the new value; for DELETE, the last value
    revision: int
    created: bool = False  # PUT that created the key
    prev_value: dict[str, Any] | None = None


@dataclass
class _Entry:
    value: dict[str, Any]
    mod_revision: int
    create_revision: int
    raw: str | None = None  # the value as compact JSON, once serialized (stored values never change)

    def to_json(self) -> str:
        if self.raw is None:
            self.raw = json.dumps(self.value, separators=(",", ":"))
        return self.raw


def _group(key: str) -> str | None:
    """A key's resource prefix: ``/registry/pods/ns/name`` → ``/registry/pods/`` (None if the
    key or prefix is shorter than that)."""
    i = key.find("/", key.find("/", 1) + 1)
    return key[:i + 1] if i > 0 else None


class _Index(dict):
    """key → entry, plus the keys of each resource prefix, so a LIST of one resource (or one
    namespace of it) reads that resource's keys only, not every key in the store."""

    def __init__(self) -> None:
        super().__init__()
        self.groups: dict[str, dict[str, None]] = {}

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in self:
            g = _group(key)
            if g is not None:
                self.groups.setdefault(g, {})[key] = None
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        g = _group(key)
        if g is not None and g in self.groups:
            self.groups[g].pop(key, None)

    def pop(self, key: str, *default: Any) -> Any:
        if key in self:
            v = self[key]
            del self[key]
            return v
        if default:
            return default[0]
        raise KeyError(key)

    def under(self, prefix: str) -> list[str]:
        """The keys that start with prefix."""
        g = _group(prefix)
        keys = self.groups.get(g, {}) if g is not None else self
        return [k for k in keys if k.startswith(prefix)]


class _Watcher:
    def __init__(self, prefix: str, maxsize: int):
        self.prefix = prefix
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize=maxsize)
        self.overflowed = False


class Store:
    """Shared in-memory index + broadcast; subclasses persist the log (``_persist``)."""

    WATCH_QUEUE = 10000

    def __init__(self) -> None:
        self._data: _Index = _Index()
        self._rev = 0
        self._watchers: set[_Watcher] = set()
        self._lock = asyncio.Lock()

    # -- persistence hooks -------------------------------------------------------------
    def _persist(self, ev: Event, entry: _Entry | None) -> None:
        raise NotImplementedError

    def _history(self, prefix: str, after: int) -> list[Event]:
        """Events with revision > after for keys under prefix, oldest first."""
        raise NotImplementedError

    def oldest_revision(self) -> int:
        return 0

    def close(self) -> None:
        pass

    # -- reads -----------------------------------------------------------------------------
    @property
    def revision(self) -> int:
        return self._rev

    def get(self, key: str) -> tuple[dict[str, Any], int] | None:
        e = self._data.get(key)
        return (e.value, e.mod_revision) if e else None

    def list(self, prefix: str, *, as_json: bool = False) -> tuple[list[tuple[str, dict[str, Any], Any]], int]:
        """(key, value, mod revision) under prefix, in key order; with ``as_json`` the third item is
        the value's compact JSON instead (serialized once per revision, so a LIST response joins
        strings rather than encoding every object again)."""
        data = self._data
        items = [(k, data[k].value, data[k].to_json() if as_json else data[k].mod_revision) for k in data.under(prefix)]
        items.sort(key=lambda t: t[0])
        return items, self._rev

    def count(self, prefix: str) -> int:
        return len(self._data.under(prefix))

    # -- writes ----------------------------------------------------------------------------
    def _commit(self, ev_type: str, key: str, value: dict[str, Any] | None, *, created: bool,
                prev: _Entry | None, set_rv) -> Event:
        rev = self._rev + 1
        if ev_type == "PUT":
            assert value is not None
            set_rv(value, rev)
            entry = _Entry(value, rev, prev.create_revision if prev else rev)
        else:
            entry = None
            assert prev is not None
            value = prev.value
        ev = Event(ev_type, key, value, rev, created, prev.value if prev else None)
        self._persist(ev, entry)  # raises → nothing changed in memory
        self._rev = rev
        if entry:
            self._data[key] = entry
        else:
            self._data.pop(key, None)
        self._broadcast(ev)
        return ev

    def create(self, key: str, value: dict[str, Any], *, set_rv) -> Event:
        """``set_rv(value, rev)`` stamps the revision into the value before it is stored."""
        if key in self._data:
            raise KeyExists(key)
        return self._commit("PUT", key, value, created=True, prev=None, set_rv=set_rv)

    def update(self, key: str, value: dict[str, Any], *, expected_revision: int | None, set_rv) -> Event:
        prev = self._data.get(key)
        if prev is None:
            raise KeyNotFound(key)
        if expected_revision is not None and prev.mod_revision != expected_revision:
            raise RevisionMismatch(key)
        return self._commit("PUT", key, value, created=False, prev=prev, set_rv=set_rv)

    def delete(self, key: str, *, expected_revision: int | None = None) -> Event:
        prev = self._data.get(key)
        if prev is None:
            raise KeyNotFound(key)
        if expected_revision is not None and prev.mod_revision != expected_revision:
            raise RevisionMismatch(key)
        return self._commit("DELETE", key, None, created=False, prev=prev, set_rv=None)

    # -- watch -----------------------------------------------------------------------------
    def _broadcast(self, ev: Event) -> None:
        for w in list(self._watchers):
            if not ev.key.startswith(w.prefix) or w.overflowed:
                continue
            try:
                w.queue.put_nowait(ev)
            except asyncio.QueueFull:
                # A consumer this slow must relist; end its stream rather than buffer forever.
                w.overflowed = True
                w.queue._queue.clear()  # type: ignore[attr-defined]
                w.queue.put_nowait(None)

    async def watch(self, prefix: str, *, after: int | None = None) -> AsyncIterator[Event]:
        """Events for keys under prefix with revision > after (default: from now on)."""
        w = _Watcher(prefix, self.WATCH_QUEUE)
        # Registering and reading the history happen with no await in between, so no event
        # falls in the gap between replay and live delivery.
        self._watchers.add(w)
        try:
            if after is not None and after < self._rev:
                if after < self.oldest_revision():
                    raise Compacted(self.oldest_revision())
                backlog = self._history(prefix, after)
                last = backlog[-1].revision if backlog else after
                for ev in backlog:
                    yield ev
            else:
                last = self._rev
            while True:
                ev = await w.queue.get()
                if ev is None:
                    return
                if ev.revision <= last:
                    continue
                yield ev
        finally:
            self._watchers.discard(w)
