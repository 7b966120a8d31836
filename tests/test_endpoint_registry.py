"""Endpoints kept in a store, beyond the contract: rotations from several processes at
once lose no update, and stores sharing a database keep their registries apart."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from iverton_webhooks.inbox import SQLiteStore
from iverton_webhooks.inbox.base import EndpointRegistry, Store
from tests.conftest import service_url
from tests.stores import delete_redis_prefix, drop_postgres_table, unique_name

PROCESSES = 4
ROTATIONS = 20


def open_store(kind: str, where: str) -> Store:
    if kind == "sqlite":
        return SQLiteStore(where)
    if kind == "postgres":
        from iverton_webhooks.inbox import PostgresStore

        return PostgresStore(service_url("postgres"), table=where)
    from iverton_webhooks.inbox import RedisStore

    return RedisStore(service_url("redis"), prefix=where)


def rotate_many(kind: str, where: str, worker: int, start: Any) -> None:
    store = open_store(kind, where)
    assert isinstance(store, EndpointRegistry)
    start.wait(60)  # every process ready: their rotations overlap
    for n in range(ROTATIONS):
        assert store.rotate_endpoint("shop_1", f"whsec_{worker}_{n}", 3600)
    store.close()


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("redis", marks=pytest.mark.redis),
    ]
)
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    kind: str = request.param
    if kind == "sqlite":
        yield kind, str(tmp_path / "inbox.sqlite3")
    elif kind == "postgres":
        table = unique_name("iverton_test")
        yield kind, table
        drop_postgres_table(service_url("postgres"), table)
    else:
        prefix = unique_name("iverton_test")
        yield kind, prefix
        delete_redis_prefix(service_url("redis"), prefix)


@pytest.mark.slow
def test_rotations_from_several_processes_lose_no_update(shared: tuple[str, str]) -> None:
    kind, where = shared
    store = open_store(kind, where)
    assert isinstance(store, EndpointRegistry)
    assert store.add_endpoint("shop_1", "whsec_first")
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(PROCESSES)
    workers = [
        context.Process(target=rotate_many, args=(kind, where, worker, start))
        for worker in range(PROCESSES)
    ]
    for process in workers:
        process.start()
    for process in workers:
        process.join(120)
    assert [process.exitcode for process in workers] == [0] * PROCESSES
    endpoint = store.get_endpoint("shop_1")
    assert endpoint is not None
    expected = {"whsec_first"} | {
        f"whsec_{worker}_{n}" for worker in range(PROCESSES) for n in range(ROTATIONS)
    }
    assert set(endpoint.valid_secrets(store.clock())) == expected
    assert len(endpoint.secrets) == len(expected)
    store.close()


@pytest.mark.postgres
def test_postgres_stores_with_different_tables_keep_their_own_endpoints() -> None:
    from iverton_webhooks.inbox import PostgresStore

    url, tables = service_url("postgres"), [unique_name("iverton_test") for _ in range(2)]
    first, second = (PostgresStore(url, table=table) for table in tables)
    try:
        assert first.add_endpoint("shop_1", "whsec_first")
        assert second.get_endpoint("shop_1") is None
        assert second.add_endpoint("shop_1", "whsec_second")
        assert second.rotate_endpoint("shop_1", "whsec_second_2", 60)
        found = first.get_endpoint("shop_1")
        assert found is not None
        assert found.valid_secrets(first.clock()) == ("whsec_first",)
        assert [e.name for e in second.list_endpoints()] == ["shop_1"]
        assert second.remove_endpoint("shop_1")
        assert first.get_endpoint("shop_1") is not None
    finally:
        for store, table in zip((first, second), tables, strict=True):
            store.close()
            drop_postgres_table(url, table)
