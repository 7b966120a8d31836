"""Durable inboxes of received events. :func:`open_store` turns a URL into a store.

:class:`PostgresStore` and :class:`RedisStore` are imported on first use, so the core
needs neither psycopg nor redis-py installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from ..errors import ConfigurationError
from .base import Claim, HandlerOutcome, Status, Store, StoredEvent, Verdict
from .memory import MemoryStore
from .sqlite import DEFAULT_PATH, SQLiteStore

if TYPE_CHECKING:
    # Re-exported (the redundant alias says so); at run time __getattr__ imports them.
    from .postgres import PostgresStore as PostgresStore
    from .redis import RedisStore as RedisStore

__all__ = [
    "Claim",
    "HandlerOutcome",
    "MemoryStore",
    "SQLiteStore",
    "Status",
    "Store",
    "StoredEvent",
    "Verdict",
    "open_store",
]

# name -> (module, extra that installs its client library)
_SERVER_STORES = {"PostgresStore": (".postgres", "postgres"), "RedisStore": (".redis", "redis")}


def __getattr__(name: str) -> Any:
    if name in _SERVER_STORES:
        from importlib import import_module

        return getattr(import_module(_SERVER_STORES[name][0], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _server_store(name: str) -> Any:
    try:
        return __getattr__(name)
    except ImportError as exc:
        extra = _SERVER_STORES[name][1]
        raise ConfigurationError(
            f"{name} needs an extra package ({exc.name or exc}): "
            f"pip install 'iverton-webhooks[{extra}]'"
        ) from exc


def _pop_query(url: str, key: str) -> tuple[str, str | None]:
    """Take our own option out of a URL's query, so the driver never sees it.

    The other parameters keep their exact spelling: libpq does not read ``+`` as a
    space, so decoding and re-encoding them could change their meaning.
    """
    base, _, query = url.partition("?")  # not urlsplit: it drops the "//" of "scheme:///db"
    kept, value = [], None
    for item in query.split("&") if query else []:
        name, _, raw = item.partition("=")
        if unquote(name) == key:
            value = unquote(raw)
        else:
            kept.append(item)
    return (f"{base}?{'&'.join(kept)}" if kept else base), value


def open_store(spec: Store | str | None) -> Store:
    """``None`` -> SQLite file ``webhooks.sqlite3``; ``"sqlite:///rel.db"``,
    ``"sqlite:////abs/path.db"``, ``"memory://"``, ``"postgresql://user@host/db"``
    (``?table=name`` picks the table), ``"redis://host:6379/0"`` or ``"rediss://..."``
    (``?prefix=name`` picks the key prefix); a :class:`Store` is returned as is."""
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
    if scheme in ("postgresql", "postgres"):
        url, table = _pop_query(spec, "table")
        postgres: type[PostgresStore] = _server_store("PostgresStore")
        return postgres(url) if table is None else postgres(url, table=table)
    if scheme in ("redis", "rediss"):
        url, prefix = _pop_query(spec, "prefix")
        redis: type[RedisStore] = _server_store("RedisStore")
        return redis(url) if prefix is None else redis(url, prefix=prefix)
    raise ConfigurationError(
        f"unsupported store URL scheme {scheme!r}: use 'sqlite:///path', 'memory://', "
        "'postgresql://...' or 'redis://...'"
    )
