"""Every store the contract tests run against. A server-backed store is a marked param,
so it is skipped (or, in CI, failed) when its server does not answer."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from iverton_webhooks import MemoryStore, SQLiteStore, Store

StoreFactory = Callable[[Path, Callable[[], float]], Any]


@contextmanager
def memory_store(tmp_path: Path, clock: Callable[[], float]) -> Iterator[Store]:
    yield MemoryStore(clock=clock)


@contextmanager
def sqlite_store(tmp_path: Path, clock: Callable[[], float]) -> Iterator[Store]:
    store = SQLiteStore(tmp_path / "inbox.sqlite3", clock=clock)
    yield store
    store.close()


#: name -> context-manager factory(tmp_path, clock) yielding a fresh, empty store
STORES: dict[str, StoreFactory] = {
    "memory": memory_store,
    "sqlite": sqlite_store,
}

#: pytest params for every store, with the server marks where a server is needed
STORE_PARAMS = [
    pytest.param(name, marks=[getattr(pytest.mark, mark)] if mark else [])
    for name, mark in (("memory", None), ("sqlite", None))
]
