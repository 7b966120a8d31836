"""How DjangoStore keeps newest-only marks on SQLite and PostgreSQL: one row per mark,
the missing table, and the read-only admin."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import connections
from django.test import Client

from iverton_webhooks._errors import StoreUnavailable
from iverton_webhooks.contrib.django.models import ResourceMark
from iverton_webhooks.contrib.django.store import DjangoStore
from iverton_webhooks.inbox.base import MarkKey
from tests.django.dj_helpers import ALIASES, db_mark
from tests.django.test_django_store import end_other_sessions

MARKS = "/admin/iverton_webhooks/resourcemark/"
KEY = MarkKey("default", "deal/d_1", "sync_deal")
T0 = 1_700_000_000.123456
#: One ulp after T0: kept with fewer than 17 significant digits, it would be T0.
LATER = T0 + 2.384185791015625e-07


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.654321

    def __call__(self) -> float:
        return self.now


class DjangoMarks:
    """How DjangoStore keeps marks (the contract, run by test_django_store, tests what
    they do)."""

    alias = "default"

    @pytest.fixture
    def store(self) -> Iterator[DjangoStore]:
        if self.alias not in ALIASES:
            pytest.skip("no PostgreSQL configured for this run")
        made = DjangoStore(self.alias, clock=Clock())
        yield made
        made.close()
        end_other_sessions(self.alias)

    def test_a_mark_is_one_row(self, store: DjangoStore) -> None:
        store.take_mark(KEY, LATER, "evt_2", "w1", 30)
        store.release_mark(KEY, "w1", (LATER, "evt_2"))
        store.take_mark(KEY, T0, "evt_1", "w2", 30)
        row = ResourceMark.objects.using(self.alias).get()
        assert (row.endpoint, row.resource, row.handler) == KEY
        assert (row.applied_at, row.applied_id, row.holder) == (LATER, "evt_2", None)

    def test_a_missing_table_says_to_migrate(self, store: DjangoStore) -> None:
        table = connections[self.alias].ops.quote_name(ResourceMark._meta.db_table)
        with connections[self.alias].cursor() as cursor:
            cursor.execute(f"ALTER TABLE {table} RENAME TO iverton_marks_away")
        try:
            with pytest.raises(StoreUnavailable, match="migrate"):
                store.take_mark(KEY, T0, "evt_1", "w1", 30)
        finally:
            with connections[self.alias].cursor() as cursor:
                cursor.execute(f"ALTER TABLE iverton_marks_away RENAME TO {table}")


@db_mark("default")
class TestDjangoMarksOnSQLite(DjangoMarks):
    alias = "default"


@db_mark("postgres")
@pytest.mark.postgres
class TestDjangoMarksOnPostgres(DjangoMarks):
    alias = "postgres"


@pytest.mark.django_db(transaction=True)
def test_the_admin_lists_marks_read_only_with_odd_text_escaped(admin_client: Client) -> None:
    store = DjangoStore("default", clock=Clock())
    key = MarkKey("default", "deal/\x1b[31m", "sync_deal")
    store.take_mark(key, T0, "evt_1", "w1", 30)
    store.release_mark(key, "w1", (T0, "evt_1"))
    page = admin_client.get(MARKS).content.decode()
    assert "deal/\\x1b[31m" in page
    assert "\x1b" not in page
    assert "evt_1" in page
    assert "2023-11-14T22:13:20.123456+00:00" in page
    row = ResourceMark.objects.get()
    assert admin_client.get(f"{MARKS}{row.pk}/change/").status_code == 200  # view only
    assert admin_client.get(f"{MARKS}add/").status_code == 403
