"""Every store the contract tests run against. A server-backed store is a marked param,
so it is skipped (or, in CI, failed) when its server does not answer."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from iverton_webhooks import MemoryStore, SQLiteStore, Store
from tests.conftest import service_url

StoreFactory = Callable[[Path, Callable[[], float]], Any]


@contextmanager
def memory_store(tmp_path: Path, clock: Callable[[], float]) -> Iterator[Store]:
    yield MemoryStore(clock=clock)


@contextmanager
def sqlite_store(tmp_path: Path, clock: Callable[[], float]) -> Iterator[Store]:
    store = SQLiteStore(tmp_path / "inbox.sqlite3", clock=clock)
    yield store
    store.close()


def unique_name(stem: str) -> str:
    """A table name or key prefix no other test run uses."""
    return f"{stem}_{secrets.token_hex(6)}"


def drop_postgres_table(url: str, table: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))
        # The store notes each table's schema version in a shared table: forget it too.
        if conn.execute("SELECT to_regclass('iverton_schema')").fetchone()[0] is not None:
            conn.execute("DELETE FROM iverton_schema WHERE table_name = %s", (table,))
        # Endpoints are registered in a shared table, keyed by the events table's name.
        if conn.execute("SELECT to_regclass('iverton_endpoints')").fetchone()[0] is not None:
            conn.execute("DELETE FROM iverton_endpoints WHERE scope = %s", (table,))


def delete_redis_prefix(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        # The store puts every key under the hash tag "{prefix}"; [{] keeps the glob literal.
        batch = list(client.scan_iter(match=f"[{{]{prefix}}}:*", count=1000))
        while batch:
            client.delete(*batch[:1000])
            batch = batch[1000:]
    finally:
        client.close()


@contextmanager
def postgres_store(tmp_path: Path, clock: Callable[[], float]) -> Iterator[Store]:
    from iverton_webhooks.inbox import PostgresStore

    url, table = service_url("postgres"), unique_name("iverton_test")
    store = PostgresStore(url, table=table, clock=clock)
    try:
        yield store
    finally:
        store.close()
        drop_postgres_table(url, table)


@contextmanager
def redis_store(tmp_path: Path, clock: Callable[[], float]) -> Iterator[Store]:
    from iverton_webhooks.inbox import RedisStore

    url, prefix = service_url("redis"), unique_name("iverton_test")
    store = RedisStore(url, prefix=prefix, clock=clock)
    try:
        yield store
    finally:
        store.close()
        delete_redis_prefix(url, prefix)


WAVE1_CREATED = datetime(2024, 1, 15, 10, 30, tzinfo=timezone.utc)


def check_wave1_events_kept(store: Store) -> None:
    """After opening an inbox wave 1 wrote (evt_old_1 and evt_old_2 pending, evt_old_done
    done with handler "h"): every event kept, listed, and the pending ones claimable;
    the new (endpoint, id) key in force."""
    from iverton_webhooks import Status
    from iverton_webhooks.inbox.base import Verdict

    listed = store.list()
    assert [e.id for e in listed] == ["evt_old_done", "evt_old_2", "evt_old_1"]
    assert {e.endpoint for e in listed} == {"default"}
    assert (listed[0].status, listed[0].succeeded_handlers) == (Status.DONE, {"h"})
    assert (listed[1].body, listed[1].created_at) == (b'{"k":1}', WAVE1_CREATED)
    assert sorted(store.due()) == ["evt_old_1", "evt_old_2"]
    claim = store.claim("evt_old_1", 30)
    assert claim is not None
    assert store.finish(claim, {}, Verdict(Status.DONE))
    # The new key: the same id on another endpoint is another event.
    assert store.record("evt_old_2", "deal.won", WAVE1_CREATED, b"{}", endpoint="b") is True
    assert store.record("evt_old_2", "deal.won", WAVE1_CREATED, b"{}") is False
    assert store.stats(endpoint=None) == {Status.DONE: 2, Status.PENDING: 2}


#: name -> context-manager factory(tmp_path, clock) yielding a fresh, empty store
STORES: dict[str, StoreFactory] = {
    "memory": memory_store,
    "sqlite": sqlite_store,
    "postgres": postgres_store,
    "redis": redis_store,
}

#: pytest params for every store, with the server marks where a server is needed
STORE_PARAMS = [
    pytest.param(name, marks=[getattr(pytest.mark, mark)] if mark else [])
    for name, mark in (
        ("memory", None),
        ("sqlite", None),
        ("postgres", "postgres"),
        ("redis", "redis"),
    )
]


class UnreadableRegistry:
    """Wraps a store; its endpoint registry cannot be read (a database gone away)."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def get_endpoint(self, name: str) -> Any:
        raise ConnectionError("registry unreachable")
