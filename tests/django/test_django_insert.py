"""DjangoStore's insert-if-absent runs through Django's own cursor: whatever watches
Django's queries (execute wrappers, the debug cursor, a wrapped ``cursor`` or
``CursorWrapper.execute``) sees it, and the stored row is what the model's own save
would have written, on SQLite and PostgreSQL, with USE_TZ on and off. A database
without ``ON CONFLICT`` gets the ORM's insert in a savepoint."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper
from django.test import override_settings

from iverton_webhooks import Status
from iverton_webhooks.contrib.django import store as store_module
from iverton_webhooks.contrib.django.models import WebhookEvent
from iverton_webhooks.contrib.django.store import DjangoStore
from tests.django.test_django_store import DATABASE_PARAMS

CREATED = datetime(2024, 1, 15, 10, 30, tzinfo=timezone.utc)
EPOCHS = [0.5, 1_700_000_000.0, 1_700_000_000.000001, 1_705_314_600.123456, 253402300799.0]
#: Every column but the key and the insert's own.
COMPARED = [
    f.attname for f in WebhookEvent._meta.concrete_fields if f.name not in ("id", "event_id")
]


@pytest.fixture(params=DATABASE_PARAMS)
def connection(request: pytest.FixtureRequest) -> BaseDatabaseWrapper:
    alias: str = request.param
    if alias not in connections:
        pytest.skip("no PostgreSQL configured for this run")
    return connections[alias]


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("use_tz", [True, False], ids=["use_tz", "naive"])
@pytest.mark.parametrize("status", ["pending", "quarantined"])
def test_a_recorded_row_is_what_the_model_save_writes(
    connection: BaseDatabaseWrapper, use_tz: bool, status: str
) -> None:
    alias = connection.alias
    with override_settings(USE_TZ=use_tz):
        for n, epoch in enumerate(EPOCHS):
            store = DjangoStore(alias, clock=Clock(epoch))
            created = datetime.fromtimestamp(epoch, timezone.utc)
            error = None if status == "pending" else "bad json"
            assert store.record(
                f"evt_{n}",
                "deal.won",
                created,
                b'{"data": {"id": "d_1"}}',
                status=Status(status),
                error=error,
            )
            ours = WebhookEvent.objects.using(alias).get(event_id=f"evt_{n}")
            # The same row through the ORM's save, with each field's own conversion.
            WebhookEvent.objects.using(alias).create(
                **{
                    name: getattr(ours, name)
                    for name in COMPARED
                    if name not in ("endpoint", "body")
                },
                endpoint="orm",
                event_id=f"evt_{n}",
                body=bytes(ours.body),
            )
            theirs = WebhookEvent.objects.using(alias).get(event_id=f"evt_{n}", endpoint="orm")
            for name in COMPARED:
                if name != "endpoint":
                    assert getattr(ours, name) == getattr(theirs, name), (name, epoch)
            assert ours.resource_id == "d_1"
            assert ours.status == status
            assert ours.last_error == error
            assert (ours.processed_at is None) == (status == "pending")


def _record_one(store: DjangoStore, event_id: str) -> None:
    assert store.record(event_id, "deal.won", CREATED, b'{"data": {"id": "d_1"}}')


def test_an_execute_wrapper_sees_the_insert(connection: BaseDatabaseWrapper) -> None:
    seen: list[str] = []

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        seen.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        _record_one(DjangoStore(connection.alias), "evt_wrapped")
    assert any(sql.startswith("INSERT") for sql in seen)


def test_the_debug_cursor_logs_the_insert(connection: BaseDatabaseWrapper) -> None:
    connection.force_debug_cursor = True
    try:
        _record_one(DjangoStore(connection.alias), "evt_logged")
        logged = [query["sql"] for query in connection.queries]
    finally:
        connection.force_debug_cursor = False
    assert any(sql.startswith("INSERT") and "evt_logged" in sql for sql in logged)


@pytest.mark.django_db
def test_a_wrapped_cursor_sees_the_insert(monkeypatch: pytest.MonkeyPatch) -> None:
    """As django-debug-toolbar wraps a connection's ``cursor`` and Sentry wraps
    ``CursorWrapper.execute``: either way the insert goes through them."""
    connection = connections["default"]
    store = DjangoStore("default")
    opened: list[bool] = []
    django_cursor = connection.cursor

    def cursor() -> Any:
        opened.append(True)
        return django_cursor()

    with monkeypatch.context() as patch:
        patch.setattr(connection, "cursor", cursor)
        _record_one(store, "evt_toolbar")
    assert opened
    executed: list[str] = []
    django_execute = CursorWrapper.execute

    def execute(self: CursorWrapper, sql: str, params: Any = None) -> Any:
        executed.append(sql)
        return django_execute(self, sql, params)

    with monkeypatch.context() as patch:
        patch.setattr(CursorWrapper, "execute", execute)
        _record_one(store, "evt_sentry")
    assert any(sql.startswith("INSERT") for sql in executed)


def test_a_duplicate_counts_a_delivery_and_leaves_a_transaction_usable(
    connection: BaseDatabaseWrapper,
) -> None:
    store = DjangoStore(connection.alias)
    with transaction.atomic(using=connection.alias):  # as under ATOMIC_REQUESTS
        assert store.record("evt_twice", "deal.won", CREATED, b"{}") is True
        assert store.record("evt_twice", "deal.won", CREATED, b"{}") is False
        assert store.count() == 1  # the transaction still works
    row = WebhookEvent.objects.using(connection.alias).get(event_id="evt_twice")
    assert row.deliveries == 2


def test_a_database_without_on_conflict_gets_the_orm_insert(
    connection: BaseDatabaseWrapper, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "_ON_CONFLICT_VENDORS", frozenset())
    store = DjangoStore(connection.alias)
    statements: list[str] = []

    def spy(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        statements.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(spy):
        assert store.record("evt_orm", "deal.won", CREATED, b'{"data": {"id": "d_2"}}') is True
        with transaction.atomic(using=connection.alias):
            assert store.record("evt_orm", "deal.won", CREATED, b"{}") is False
            assert store.count() == 1
    assert not any("ON CONFLICT" in sql for sql in statements)
    row = WebhookEvent.objects.using(connection.alias).get(event_id="evt_orm")
    assert (row.deliveries, row.resource_id, row.status) == (2, "d_2", "pending")
