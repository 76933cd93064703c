"""etcd v3 revision-log store: ``nanokube server --datastore etcd://HOST:2379[/prefix]``.

The log is etcd's own MVCC history, so revisions ARE etcd's revisions: every write is one
etcd txn (one revision), guarded by a compare on the key (``create_revision == 0`` for a
create, ``mod_revision == <the revision we hold>`` for an update or delete), and the txn's
header revision must be exactly the one the store stamped into the value. Keys are stored
as ``<prefix><store key>`` (default prefix ``/nanokube``; store keys start with ``/``), values
as compact JSON, so one etcd can hold several clusters. On start every key under the prefix
is loaded into memory (paged ranges pinned to one revision) together with etcd's current
revision; reads never go to etcd. Watch replay reads etcd's history with a watch from a past
revision; when etcd has compacted that revision, the watch raises ``Compacted``. ``compact``
calls etcd's compaction API.

Key design choice: the client speaks etcd's v3 JSON gRPC gateway (``/v3/kv/txn``,
``/v3/kv/range``, ``/v3/kv/compaction``, ``/v3/watch``; served by Debian bookworm's etcd 3.4)
over a kept-alive ``http.client`` connection, i.e. the standard library and no new
dependency. The maintained asyncio client ``aetcd`` (grpc.aio) installs here, but the store's
writes are *synchronous* (the registry calls ``store.create`` under its asyncio lock and
expects the revision back), so an asyncio client would need a second event loop in a thread
for every write; a blocking request is simpler and just as correct. The price: a write
blocks the event loop for one etcd round trip (etcd commits, fsyncs its WAL, then answers:
an acknowledged write is in etcd before ``create``/``update``/``delete`` return). That is
meant for an etcd on loopback or the LAN; watch replay (rare: a watch resuming from an old
resourceVersion) blocks the same way.

Single writer: one nanokube server owns its prefix AND is the only writer to that etcd,
because the value carries its own ``resourceVersion`` and etcd's revision is global. A foreign
write shows up as a failed compare (mapped to ``KeyExists``/``RevisionMismatch``) or as a
revision skew (``RuntimeError``), never as silent corruption.
"""
from __future__ import annotations

import base64
import http.client
import json
from dataclasses import dataclass
from typing import Any, Iterator
from urllib.parse import urlsplit

from .base import Compacted, Event, KeyExists, KeyNotFound, RevisionMismatch, Store, _Entry

DEFAULT_PREFIX = "/nanokube"
PAGE = 1000  # keys per range request when loading


class EtcdError(RuntimeError):
    """etcd answered a request with an error (HTTP status != 200 or an ``error`` field)."""

    def __init__(self, path: str, status: int, body: Any):
        msg = body.get("message") or body.get("error") if isinstance(body, dict) else body
        super().__init__(f"etcd {path}: HTTP {status}: {msg}")
        self.status = status
        self.message = str(msg)


# -- pure helpers (unit-tested without etcd) ---------------------------------------------------
def parse_url(url: str) -> tuple[str, int, str]:
    """``etcd://host[:port][/prefix]`` → (host, port, key prefix); port defaults to 2379."""
    u = urlsplit(url)
    if u.scheme != "etcd" or not u.hostname:
        raise ValueError(f"not an etcd datastore URL (want etcd://HOST:PORT[/prefix]): {url!r}")
    prefix = u.path.rstrip("/") or DEFAULT_PREFIX
    return u.hostname, u.port or 2379, prefix


def b64(s: str | bytes) -> str:
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def unb64(s: str | None) -> bytes:
    return base64.b64decode(s) if s else b""


def prefix_end(prefix: bytes) -> bytes:
    """etcd's range_end for "every key starting with prefix" (the prefix + 1 in the last byte)."""
    p = bytearray(prefix)
    while p:
        if p[-1] < 0xFF:
            p[-1] += 1
            return bytes(p)
        p.pop()
    return b"\0"  # the whole keyspace


def encode_value(value: dict[str, Any]) -> str:
    return b64(json.dumps(value, separators=(",", ":")))


def txn_body(etcd_key: str, *, op: str, value: dict[str, Any] | None, prev_mod: int | None) -> dict[str, Any]:
    """A guarded one-op txn: create iff absent, update/delete iff mod_revision == prev_mod."""
    k = b64(etcd_key)
    if prev_mod is None:
        compare = {"key": k, "target": "CREATE", "result": "EQUAL", "create_revision": 0}
    else:
        compare = {"key": k, "target": "MOD", "result": "EQUAL", "mod_revision": prev_mod}
    if op == "PUT":
        assert value is not None
        success = {"request_put": {"key": k, "value": encode_value(value)}}
    else:
        success = {"request_delete_range": {"key": k}}
    return {"compare": [compare], "success": [success], "failure": [{"request_range": {"key": k}}]}


def header_revision(resp: dict[str, Any]) -> int:
    return int(resp.get("header", {}).get("revision", 0))


def events_from_watch(msg: dict[str, Any], *, prefix: str) -> tuple[list[Event], int]:
    """Store events (keys under prefix, prefix stripped) from one watch response message, and
    the highest revision it covered (for every key, so the caller knows how far etcd got)."""
    out: list[Event] = []
    top = 0
    for e in msg.get("events", []):
        kv = e["kv"]
        rev = int(kv["mod_revision"])
        top = max(top, rev)
        key = unb64(kv["key"]).decode(errors="replace")
        if not key.startswith(prefix + "/"):
            continue
        prev = e.get("prev_kv")
        prev_value = json.loads(unb64(prev["value"])) if prev and prev.get("value") else None
        if e.get("type", "PUT") == "DELETE":
            out.append(Event("DELETE", key[len(prefix):], prev_value, rev))
        else:
            created = int(kv.get("create_revision", 0)) == rev
            out.append(Event("PUT", key[len(prefix):], json.loads(unb64(kv["value"])), rev, created, prev_value))
    return out, top


class _Stale(ConnectionError):
    """The connection failed mid-request; whether etcd applied it is unknown."""


@dataclass
class _Conn:
    host: str
    port: int
    timeout: float
    _c: http.client.HTTPConnection | None = None

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """One JSON request on the kept-alive connection (opened on first use)."""
        if self._c is None:
            self._c = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            self._c.request("POST", path, body=json.dumps(body).encode(),
                            headers={"Content-Type": "application/json"})
            r = self._c.getresponse()
            raw = r.read()
        except (http.client.HTTPException, OSError) as e:
            self.close()
            # Whether etcd applied the request is unknown: the caller decides whether and
            # how to retry (reads just resend; writes check first, see EtcdStore._recover).
            raise _Stale(f"etcd at {self.host}:{self.port}: {path}: {e!r}") from e
        out = json.loads(raw) if raw else {}
        if r.status != 200 or "error" in out:
            raise EtcdError(path, r.status, out)
        return out

    def close(self) -> None:
        if self._c is not None:
            self._c.close()
            self._c = None


class EtcdStore(Store):
    """The Store contract on etcd v3; see the module docstring."""

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        super().__init__()
        self.url = url
        host, port, self.prefix = parse_url(url)
        self._conn = _Conn(host, port, timeout)
        self._timeout = timeout
        self._compact_rev = 0
        self._unsure = False  # a write failed with no answer: check etcd before the next one
        self._load()

    # -- start -------------------------------------------------------------------------------
    def _load(self) -> None:
        start = (self.prefix + "/").encode()
        end = prefix_end(start)
        rev = 0
        while True:
            body: dict[str, Any] = {"key": b64(start), "range_end": b64(end), "limit": PAGE}
            if rev:
                body["revision"] = rev  # every page from the same snapshot
            resp = self._request("/v3/kv/range", body)
            rev = rev or header_revision(resp)
            kvs = resp.get("kvs", [])
            for kv in kvs:
                key = unb64(kv["key"]).decode()[len(self.prefix):]
                self._data[key] = _Entry(json.loads(unb64(kv["value"])), int(kv["mod_revision"]),
                                         int(kv["create_revision"]))
            if not resp.get("more") or not kvs:
                break
            start = unb64(kvs[-1]["key"]) + b"\0"
        self._rev = rev

    def _request(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            return self._conn.post(path, body)
        except _Stale:
            return self._conn.post(path, body)  # reads are idempotent

    # -- writes ------------------------------------------------------------------------------
    def _etcd_key(self, key: str) -> str:
        if not key.startswith("/"):
            raise ValueError(f"store keys must start with '/': {key!r}")
        return self.prefix + key

    def _persist(self, ev: Event, entry: _Entry | None) -> None:
        old = self._data.get(ev.key)
        ekey = self._etcd_key(ev.key)
        body = txn_body(ekey, op=ev.type, value=ev.value if ev.type == "PUT" else None,
                        prev_mod=old.mod_revision if old else None)
        if self._unsure:
            self._check_in_sync()
        try:
            resp = self._conn.post("/v3/kv/txn", body)
        except _Stale:
            self._unsure = True
            resp = self._recover(ekey, ev, body)
            self._unsure = False
        if not resp.get("succeeded"):
            # Our memory disagrees with etcd: someone else wrote under our prefix.
            if ev.created:
                raise KeyExists(ev.key)
            rng = (resp.get("responses") or [{}])[0].get("response_range", {})
            raise RevisionMismatch(ev.key) if rng.get("kvs") else KeyNotFound(ev.key)
        got = header_revision(resp)
        if got != ev.revision:
            raise RuntimeError(f"etcd revision skew: wrote revision {got}, expected {ev.revision} "
                               "(another client writes to this etcd; nanokube must be its only writer)")

    def _check_in_sync(self) -> None:
        """After a write that got no answer (etcd down): go on only if etcd is still at our
        revision, i.e. that write never landed. Otherwise memory and etcd have diverged."""
        got = header_revision(self._conn.post("/v3/kv/range", {"key": b64(self.prefix + "/")}))
        if got != self._rev:
            raise RuntimeError(f"etcd is at revision {got}, this store at {self._rev}: an unacknowledged "
                               "write landed or another client wrote; restart the server to reload from etcd")
        self._unsure = False

    def _recover(self, ekey: str, ev: Event, body: dict[str, Any]) -> dict[str, Any]:
        """The connection broke during a txn: find out whether it was applied, else resend."""
        resp = self._conn.post("/v3/kv/range", {"key": b64(ekey)})
        kvs = resp.get("kvs", [])
        applied = (int(kvs[0]["mod_revision"]) == ev.revision if kvs else
                   ev.type == "DELETE" and header_revision(resp) == ev.revision)
        if applied:
            return {"succeeded": True, "header": {"revision": str(ev.revision)}}
        return self._conn.post("/v3/kv/txn", body)

    # -- history and compaction -------------------------------------------------------------
    def _history(self, prefix: str, after: int) -> list[Event]:
        """Events after ``after`` from etcd's MVCC history, read with a watch.

        The watch covers the whole keyspace, not just our prefix: every revision up to ours
        then has at least one event, so reading stops exactly at ``self.revision`` (a watch
        only on our prefix could not tell "no more events" from "not yet")."""
        target = self._rev
        if after >= target:
            return []
        out: list[Event] = []
        for msg in self._watch_stream(after + 1):
            if msg.get("compact_revision") and int(msg["compact_revision"]) > 0:
                raise Compacted(int(msg["compact_revision"]))
            if msg.get("canceled"):
                raise EtcdError("/v3/watch", 200, msg.get("cancel_reason") or "watch canceled")
            evs, top = events_from_watch(msg, prefix=self.prefix)
            out.extend(e for e in evs if e.revision <= target and e.key.startswith(prefix))
            if top >= target:
                return out
        raise EtcdError("/v3/watch", 200, f"watch stream ended before revision {target}")

    def _watch_stream(self, start_revision: int) -> Iterator[dict[str, Any]]:
        c = http.client.HTTPConnection(self._conn.host, self._conn.port, timeout=self._timeout)
        try:
            req = {"create_request": {"key": b64(b"\0"), "range_end": b64(b"\0"),
                                      "start_revision": start_revision, "prev_kv": True}}
            c.request("POST", "/v3/watch", body=json.dumps(req).encode(),
                      headers={"Content-Type": "application/json"})
            r = c.getresponse()
            if r.status != 200:
                raise EtcdError("/v3/watch", r.status, r.read().decode(errors="replace"))
            while True:
                line = r.readline()
                if not line:
                    return
                if not line.strip():
                    continue
                msg = json.loads(line)
                if "error" in msg:
                    raise EtcdError("/v3/watch", r.status, msg["error"])
                yield msg.get("result", {})
        finally:
            c.close()

    def oldest_revision(self) -> int:
        return self._compact_rev

    def compact(self, before: int) -> int:
        """Compact etcd's history up to ``before``; returns how many revisions it dropped."""
        before = min(before, self._rev)
        if before <= self._compact_rev:
            return 0
        try:
            self._request("/v3/kv/compaction", {"revision": before, "physical": True})
        except EtcdError as e:
            if "compacted" not in e.message:
                raise
            # Already compacted at least this far (by an earlier run of this server).
        dropped = before - self._compact_rev
        self._compact_rev = before
        return dropped

    def close(self) -> None:
        self._conn.close()
