"""Durable inboxes of received events. :func:`open_store` turns a URL into a store."""

from __future__ import annotations

from ..errors import ConfigurationError
from .base import Claim, HandlerOutcome, Status, Store, StoredEvent
from .memory import MemoryStore
from .sqlite import DEFAULT_PATH, SQLiteStore

__all__ = [
    "Claim",
    "HandlerOutcome",
    "MemoryStore",
    "SQLiteStore",
    "Status",
    "Store",
    "StoredEvent",
    "open_store",
]


def open_store(spec: Store | str | None) -> Store:
    """``None`` -> SQLite file ``webhooks.sqlite3``; ``"sqlite:///rel.db"``,
    ``"sqlite:////abs/path.db"``, ``"memory://"``; a :class:`Store` is returned as is."""
    if spec is None:
        return SQLiteStore(DEFAULT_PATH)
    if not isinstance(spec, str):
        if isinstance(spec, Store):
            return spec
        raise ConfigurationError(f"{spec!r} is not a Store")
    scheme, sep, rest = spec.partition("://")
    if not sep:
        raise ConfigurationError(f"store URL {spec!r} has no scheme; try 'sqlite:///{spec}'")
    if scheme == "memory":
        return MemoryStore()
    if scheme == "sqlite":
        path = rest[1:] if rest.startswith("/") else rest
        return SQLiteStore(path or DEFAULT_PATH)
    raise ConfigurationError(
        f"unsupported store URL scheme {scheme!r}: use 'sqlite:///path' or 'memory://'"
    )
