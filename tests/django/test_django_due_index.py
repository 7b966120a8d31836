"""The due index (migration 0004): an insert builds no scratch table, the due queries
still use the index (SQLite and PostgreSQL), and it holds only unfinished events."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.db import connections

from iverton_webhooks import Status
from iverton_webhooks.contrib.django.models import WebhookEvent
from iverton_webhooks.contrib.django.store import DjangoStore
from iverton_webhooks.inbox.base import Verdict
from tests.django.test_django_store import CREATED, DATABASE_PARAMS, end_other_sessions

INDEX = "iverton_webhooks_due_v3"
Statements = list[tuple[str, Any]]


@pytest.fixture(params=DATABASE_PARAMS)
def store(request: pytest.FixtureRequest) -> Iterator[DjangoStore]:
    alias: str = request.param
    if alias not in connections:
        pytest.skip("no PostgreSQL configured for this run")
    made = DjangoStore(alias)
    yield made
    made.close()
    end_other_sessions(alias)


@contextmanager
def statements_of(alias: str) -> Iterator[Statements]:
    """Every statement the store sends on ``alias``, with its parameters."""
    seen: Statements = []

    def capture(execute: Callable[..., Any], sql: str, params: Any, many: bool, ctx: Any) -> Any:
        seen.append((sql, params))
        return execute(sql, params, many, ctx)

    with connections[alias].execute_wrapper(capture):
        yield seen


def explain(alias: str, prefix: str, sql: str, params: Any) -> list[str]:
    with connections[alias].cursor() as cursor:
        cursor.execute(prefix + sql, params)
        return [" ".join(str(cell) for cell in row) for row in cursor.fetchall()]


def test_an_insert_on_sqlite_builds_no_scratch_table(store: DjangoStore) -> None:
    if connections[store.using].vendor != "sqlite":
        pytest.skip("PostgreSQL tests a partial index's condition without a scratch table")
    with statements_of(store.using) as seen:
        assert store.record("evt_1", "deal.won", CREATED, b'{"data": {"id": "d_1"}}')
    inserts = [(sql, params) for sql, params in seen if sql.lstrip().upper().startswith("INSERT")]
    assert len(inserts) == 1
    program = explain(store.using, "EXPLAIN ", *inserts[0])
    # An IN list in the index's condition was coded as an ephemeral table per insert,
    # kept in a temporary file under SQLite's default temp_store.
    assert not [step for step in program if "OpenEphemeral" in step]


def test_due_queries_use_the_due_index_which_holds_only_unfinished_events(
    store: DjangoStore,
) -> None:
    for event_id in ("evt_a", "evt_b", "evt_c"):
        store.record(event_id, "deal.won", CREATED, b"{}")
    claim = store.claim("evt_a", 30.0)
    assert claim is not None
    assert store.finish(claim, {}, Verdict(Status.DONE))
    with statements_of(store.using) as seen:
        assert sorted(store.due(10)) == ["evt_b", "evt_c"]
        assert store.oldest_due() is not None
    reads = [(sql, params) for sql, params in seen if sql.lstrip().upper().startswith("SELECT")]
    assert len(reads) == 2
    connection = connections[store.using]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Three rows: the planner would scan the table; forbid that to see whether
            # the index is usable at all (its condition implied by the query).
            cursor.execute("SET enable_seqscan = off")
    prefix = "EXPLAIN " if connection.vendor == "postgresql" else "EXPLAIN QUERY PLAN "
    try:
        for sql, params in reads:
            plan = explain(store.using, prefix, sql, params)
            assert any(INDEX in step for step in plan), (sql, plan)
    finally:
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET enable_seqscan = on")
    table = connection.ops.quote_name(WebhookEvent._meta.db_table)
    hint = f"INDEXED BY {INDEX}" if connection.vendor == "sqlite" else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT event_id FROM {table} {hint} WHERE endpoint = 'default' "
            "AND due_at IS NOT NULL ORDER BY event_id"
        )
        assert cursor.fetchall() == [("evt_b",), ("evt_c",)]
