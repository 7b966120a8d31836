"""Durable inboxes of received events, and `open_store`, which turns a URL into a store
through the schemes registered with `register_store` (one line below for each store of
this package). A store named by ``"module:Class"`` is imported on first use, so the core
needs neither psycopg nor redis-py installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING, Any

from .._errors import ConfigurationError
from .base import (
    AnswerCounter,
    Claim,
    CompleteStore,
    EndpointRecord,
    EndpointRegistry,
    EndpointSecret,
    HandlerOutcome,
    MarkAnswer,
    MarkKey,
    OpensFromURL,
    ResourceMarks,
    Status,
    Store,
    StoredEvent,
    StoreOperations,
    Verdict,
    missing_members,
    operations_of,
    rotated,
    store_edge,
)
from .memory import MemoryStore
from .sqlite import DEFAULT_PATH, SQLiteStore

if TYPE_CHECKING:
    # Re-exported (the redundant alias says so); at run time __getattr__ imports them.
    from .postgres import PostgresStore as PostgresStore
    from .redis import RedisStore as RedisStore

__all__ = [
    "AnswerCounter",
    "Claim",
    "CompleteStore",
    "EndpointRecord",
    "EndpointRegistry",
    "EndpointSecret",
    "HandlerOutcome",
    "MarkAnswer",
    "MarkKey",
    "MemoryStore",
    "OpensFromURL",
    "ResourceMarks",
    "SQLiteStore",
    "Status",
    "Store",
    "StoreOperations",
    "StoredEvent",
    "Verdict",
    "missing_inbox",
    "open_store",
    "operations_of",
    "register_store",
    "rotated",
    "store_edge",
]


@dataclass(frozen=True)
class _Registered:
    """A registered store: ``"module:Class"`` (a leading "." is this package) or the
    class itself, and the extra that installs its driver, if any."""

    store: str | type[OpensFromURL]
    extra: str | None

    @property
    def name(self) -> str:
        store = self.store
        return store.rpartition(":")[2] if isinstance(store, str) else store.__name__

    def imported(self) -> type[OpensFromURL]:
        """The store class (imported now if named by a string)."""
        if not isinstance(self.store, str):
            return self.store
        module, _, name = self.store.partition(":")
        found: type[OpensFromURL] = getattr(import_module(module, __name__), name)
        return found

    def load(self) -> type[OpensFromURL]:
        """`imported`, with a missing driver a `ConfigurationError` naming its extra."""
        try:
            return self.imported()
        except ImportError as exc:
            if self.extra is None:
                raise
            raise ConfigurationError(
                f"{self.name} needs an extra package ({exc.name or exc}): "
                f"pip install 'iverton-webhooks[{self.extra}]'"
            ) from exc


_SCHEMES: dict[str, _Registered] = {}


def register_store(
    *schemes: str, store: str | type[OpensFromURL], extra: str | None = None
) -> None:
    """Make `open_store` build ``store`` for URLs of each of ``schemes``.

    ``store`` is the class, or ``"package.module:Class"`` to import it on first use (a
    store whose driver is optional then costs nothing until a URL names it). The class
    has two classmethods: ``from_url(url)`` returns a store for the URL, and
    ``missing_inbox(url)`` says why no inbox exists there yet (None if one does), so
    read-only commands refuse a typo'd URL instead of creating an inbox. ``extra``:
    the ``pip install 'iverton-webhooks[extra]'`` that installs its driver.
    """
    for scheme in schemes:
        _SCHEMES[scheme] = _Registered(store, extra)


# The stores of this package: one line each.
register_store("memory", store=".memory:MemoryStore")
register_store("sqlite", store=".sqlite:SQLiteStore")
register_store("postgresql", "postgres", store=".postgres:PostgresStore", extra="postgres")
register_store("redis", "rediss", store=".redis:RedisStore", extra="redis")


def __getattr__(name: str) -> Any:
    # The registered stores not imported above (their drivers are optional extras); a
    # missing driver is the ImportError it is, naming the extra.
    for entry in _SCHEMES.values():
        if isinstance(entry.store, str) and entry.name == name:
            return entry.imported()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_store(spec: Store | str | None) -> Store:
    """``None`` -> SQLite file ``webhooks.sqlite3``; ``"sqlite:///rel.db"``,
    ``"sqlite:////abs/path.db"``, ``"memory://"``, ``"postgresql://user@host/db"``
    (``?table=name`` picks the table), ``"redis://host:6379/0"`` or ``"rediss://..."``
    (``?prefix=name`` picks the key prefix), or a scheme registered with
    `register_store`; a `Store` is returned as is."""
    if spec is None:
        return SQLiteStore(DEFAULT_PATH)
    if not isinstance(spec, str):
        if isinstance(spec, Store):
            return spec
        raise ConfigurationError(
            f"{spec!r} is not a Store (missing: {', '.join(missing_members(spec, Store))})"
        )
    scheme, sep, _ = spec.partition("://")
    if not sep:
        raise ConfigurationError(f"store URL {spec!r} has no scheme; try 'sqlite:///{spec}'")
    entry = _SCHEMES.get(scheme)
    if entry is None:
        known = ", ".join(f"'{name}://...'" for name in sorted(_SCHEMES))
        raise ConfigurationError(f"unsupported store URL scheme {scheme!r}: use one of {known}")
    return entry.load().from_url(spec)


def missing_inbox(url: str) -> str | None:
    """Why no inbox exists yet at store URL ``url``, or None if one does (or if the URL
    is not one `open_store` takes, or its driver is missing: opening it reports
    that). Opening a store creates its inbox; a read command checks this first."""
    scheme, sep, _ = url.partition("://")
    entry = _SCHEMES.get(scheme) if sep else None
    if entry is None:
        return None
    try:
        return entry.load().missing_inbox(url)
    except (ImportError, ConfigurationError):
        return None
