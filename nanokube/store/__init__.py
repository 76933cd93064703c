"""Revision-log storage: see base.py for the semantics, sqlite.py for the default backend."""
from .base import Compacted, Event, KeyExists, KeyNotFound, RevisionMismatch, Store
from .sqlite import MemoryStore, SqliteStore

__all__ = ["Compacted", "Event", "KeyExists", "KeyNotFound", "RevisionMismatch", "Store",
           "MemoryStore", "SqliteStore"]
