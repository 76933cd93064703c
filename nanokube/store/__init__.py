"""Revision-log storage: see base.py for the semantics, sqlite.py for the default backend,
etcd.py for etcd v3; ``open_datastore`` picks one from ``nanokube server --datastore``."""
from pathlib import Path

from .base import Compacted, Event, KeyExists, KeyNotFound, RevisionMismatch, Store
from .sqlite import MemoryStore, SqliteStore

__all__ = ["Compacted", "Event", "KeyExists", "KeyNotFound", "RevisionMismatch", "Store",
           "MemoryStore", "SqliteStore", "open_datastore"]


def open_datastore(url: str | None, *, default_path: Path) -> Store:
    """None: SQLite at default_path; ``sqlite:///PATH``; ``etcd://HOST:PORT[/prefix]``."""
    if not url:
        return SqliteStore(default_path)
    if url.startswith("sqlite://"):
        return SqliteStore(url[len("sqlite://"):] or default_path)
    if url.startswith("etcd://"):
        from .etcd import EtcdStore
        return EtcdStore(url)
    raise ValueError(f"unknown datastore {url!r} (want etcd://HOST:PORT[/prefix] or sqlite:///PATH)")
