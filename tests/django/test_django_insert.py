"""DjangoStore's insert converts each column itself (cheaper than the model's fields):
the values must be exactly what Django's own field conversion writes, on SQLite and
PostgreSQL, with USE_TZ on and off."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

import pytest
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper
from django.test import override_settings

from iverton_webhooks import Status
from iverton_webhooks.contrib.django.models import KEY_MAX_LENGTH, WebhookEvent
from iverton_webhooks.contrib.django.store import (
    DjangoStore,
    _Insert,
    _to_db,
    _utc_text,
    _watched,
    clean_text,
)
from iverton_webhooks.inbox.base import new_row
from tests.django.test_django_store import DATABASE_PARAMS

CREATED = datetime(2024, 1, 15, 10, 30, tzinfo=timezone.utc)
EPOCHS = [0.0, 0.5, 1_700_000_000.0, 1_700_000_000.000001, 1_705_314_600.123456, 253402300799.0]


@pytest.fixture(params=DATABASE_PARAMS)
def connection(request: pytest.FixtureRequest) -> BaseDatabaseWrapper:
    alias: str = request.param
    if alias not in connections:
        pytest.skip("no PostgreSQL configured for this run")
    return connections[alias]


def django_params(row: dict[str, Any], connection: BaseDatabaseWrapper) -> dict[str, Any]:
    """The same row through every model field's own get_db_prep_save."""
    out: dict[str, Any] = {}
    for field in WebhookEvent._meta.concrete_fields:
        name = "id" if field.attname == "event_id" else field.attname
        if field.name in ("id", "resource_id"):
            continue
        value = row.get(name, field.get_default())
        if field.attname in ("created_at", "received_at", "processed_at") and value is not None:
            value = _to_db(value)
        elif name == "type":
            value = clean_text(value, KEY_MAX_LENGTH)
        elif name == "last_error" and value is not None:
            value = clean_text(value)
        out[name] = field.get_db_prep_save(value, connection)
    return out


def comparable(value: Any) -> Any:
    # Binary and JSON adapters of a driver compare by identity: compare what they hold.
    if isinstance(value, memoryview):
        return bytes(value)
    inner = getattr(value, "obj", None)
    return value if inner is None else inner


@pytest.mark.parametrize("use_tz", [True, False], ids=["use_tz", "naive"])
@pytest.mark.parametrize("status", ["pending", "quarantined"])
def test_insert_params_are_what_the_model_fields_write(
    connection: BaseDatabaseWrapper, use_tz: bool, status: str
) -> None:
    with override_settings(USE_TZ=use_tz):
        insert = _Insert.of(connection)
        for epoch in EPOCHS:
            row = new_row(
                endpoint="default",
                event_id=f"evt_{epoch}",
                event_type="deal.won" if status == "pending" else "t" * 300,
                created_at=epoch,
                body=b'{"data": {"id": "d_1"}}',
                now=min(epoch + 1, EPOCHS[-1]),
                status=status,
                error=None if status == "pending" else "bad\x00json",
            )
            ours = insert.params(row, connection)
            ours.pop("resource_id")
            expected = django_params(row, connection)
            assert ours.keys() == expected.keys()
            for name, value in expected.items():
                assert comparable(ours[name]) == comparable(value), (name, epoch)


@pytest.mark.parametrize("epoch", EPOCHS)
def test_utc_text_is_djangos_sqlite_datetime(epoch: float) -> None:
    connection = connections["default"]
    assert connection.vendor == "sqlite"
    assert _utc_text(epoch) == connection.ops.adapt_datetimefield_value(_to_db(epoch))


@pytest.mark.parametrize("status", ["pending", "quarantined"])
def test_the_insert_binds_no_none_and_stores_null(
    connection: BaseDatabaseWrapper, status: str
) -> None:
    """A None is written into the statement as NULL (the sqlite3 driver binds one only
    after a failed attribute lookup); what is stored is the same."""
    store = DjangoStore(connection.alias)
    executed: list[tuple[str, Any]] = []

    def spy(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        executed.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(spy):
        assert store.record(
            "evt_nulls",
            "deal.won",
            CREATED,
            b'{"data": {"id": "d_1"}}',
            status=Status(status),
            error=None if status == "pending" else "bad",
        )
    inserts = [(sql, params) for sql, params in executed if sql.startswith("INSERT")]
    assert len(inserts) == 1
    sql, params = inserts[0]
    referenced = set(re.findall(r"%\((\w+)\)s", sql))
    assert "body" in referenced
    assert [name for name in referenced if params[name] is None] == [], sql
    stored = WebhookEvent.objects.using(connection.alias).get(event_id="evt_nulls")
    assert (stored.lease_until, stored.lease_token, stored.next_attempt_at) == (None, None, None)
    assert stored.resource_id == "d_1"
    assert stored.status == status
    assert (stored.processed_at is None) == (status == "pending")
    assert stored.last_error == (None if status == "pending" else "bad")


def _record_one(store: DjangoStore, event_id: str) -> None:
    assert store.record(event_id, "deal.won", CREATED, b'{"data": {"id": "d_1"}}')


@pytest.mark.django_db
def test_an_unwatched_sqlite_insert_goes_to_the_driver() -> None:
    connection = connections["default"]
    assert connection.vendor == "sqlite"
    assert not _watched(connection)  # nothing set up to watch: the fast path
    _record_one(DjangoStore("default"), "evt_direct")
    assert WebhookEvent.objects.get(event_id="evt_direct").resource_id == "d_1"


def test_an_execute_wrapper_sees_the_insert(connection: BaseDatabaseWrapper) -> None:
    seen: list[str] = []

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        seen.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        assert _watched(connection)
        _record_one(DjangoStore(connection.alias), "evt_wrapped")
    assert any(sql.startswith("INSERT") for sql in seen)


def test_the_debug_cursor_logs_the_insert(connection: BaseDatabaseWrapper) -> None:
    connection.force_debug_cursor = True
    try:
        assert _watched(connection)
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
        assert _watched(connection)
        _record_one(store, "evt_toolbar")
    assert opened
    executed: list[str] = []
    django_execute = CursorWrapper.execute

    def execute(self: CursorWrapper, sql: str, params: Any = None) -> Any:
        executed.append(sql)
        return django_execute(self, sql, params)

    with monkeypatch.context() as patch:
        patch.setattr(CursorWrapper, "execute", execute)
        assert _watched(connection)
        _record_one(store, "evt_sentry")
    assert any(sql.startswith("INSERT") for sql in executed)
    assert not _watched(connection)
