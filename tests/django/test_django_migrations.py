"""Migration 0002 on a table that already holds wave-1 rows, on SQLite and PostgreSQL:
rows keep working under the "default" endpoint, the same id may arrive for another
endpoint, and the values the envelope accepts fit (issue 11 items 5 and 6)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

import pytest
from django.core.management import call_command
from django.db import connections
from django.db.migrations.executor import MigrationExecutor

from iverton_webhooks import Status
from iverton_webhooks.contrib.django.store import DjangoStore
from tests.django.test_django_store import DATABASE_PARAMS

CREATED = datetime(2024, 1, 15, 10, 30, tzinfo=timezone.utc)
APP = "iverton_webhooks"


def migrate(alias: str, target: str) -> MigrationExecutor:
    executor = MigrationExecutor(connections[alias])
    executor.migrate([(APP, target)])
    return MigrationExecutor(connections[alias])


@pytest.fixture(params=DATABASE_PARAMS)
def using(request: pytest.FixtureRequest) -> Iterator[str]:
    alias: str = request.param
    if alias not in connections:
        pytest.skip("no PostgreSQL configured for this run")
    executor = migrate(alias, "0001_initial")
    old = executor.loader.project_state((APP, "0001_initial")).apps
    model = old.get_model(APP, "WebhookEvent")
    model.objects.using(alias).create(
        event_id="evt_old",
        type="deal.won",
        created_at=CREATED,
        received_at=CREATED,
        body=b'{"data": {"id": "deal_1"}}',
        status="dead",
        attempts=3,
        last_error="h: boom",
    )
    try:
        yield alias
    finally:
        # Leave the schema as every other test expects it (the latest), whatever happened.
        executor = MigrationExecutor(connections[alias])
        executor.migrate(executor.loader.graph.leaf_nodes(APP))


def test_old_rows_belong_to_the_default_endpoint_after_0002(using: str) -> None:
    migrate(using, "0002_endpoint")
    store = DjangoStore(using)
    event = store.get("evt_old")
    assert event is not None
    assert (event.endpoint, event.status, event.last_error) == ("default", Status.DEAD, "h: boom")
    assert store.replay("evt_old") is True
    assert store.due() == ["evt_old"]


def test_0002_drops_the_table_wide_unique_id_for_a_per_endpoint_one(using: str) -> None:
    migrate(using, "0002_endpoint")
    store = DjangoStore(using)
    assert store.record("evt_old", "deal.won", CREATED, b"{}") is False  # still a duplicate
    assert store.record("evt_old", "deal.won", CREATED, b"{}", endpoint="billing") is True
    assert store.count() == 2


def test_0002_widens_type_to_what_the_envelope_accepts(using: str) -> None:
    migrate(using, "0002_endpoint")
    store = DjangoStore(using)
    long_type = "t" * 255
    assert store.record("evt_long", long_type, CREATED, b'{"data": {"id": "a\\u0000b"}}')
    event = store.get("evt_long")
    assert event is not None
    assert event.type == long_type


@pytest.mark.django_db
def test_the_models_need_no_migration_that_is_not_written() -> None:
    # makemigrations --check exits non-zero when a model change has no migration.
    call_command("makemigrations", APP, "--check", "--dry-run", verbosity=0)
