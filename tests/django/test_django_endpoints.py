"""How DjangoStore keeps registered endpoints on SQLite and PostgreSQL: one row per
endpoint, the missing table, naive times, and an admin that never shows a secret whole.
(The contract, run by test_django_store, tests what the registry does.)"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest
from django.db import connections
from django.test import Client

from iverton_webhooks._errors import StoreUnavailable
from iverton_webhooks.contrib.django.models import WebhookEndpoint
from iverton_webhooks.contrib.django.store import DjangoStore
from tests.django.dj_helpers import ALIASES, db_mark
from tests.django.test_django_store import end_other_sessions

ENDPOINTS = "/admin/iverton_webhooks/webhookendpoint/"
SECRET = "whsec_9f8a7b6c5d4e3f2a1b0c"
NEXT = "whsec_0a1b2c3d4e5f6a7b8c9d"
T0 = 1_800_000_000.25


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class DjangoEndpoints:
    alias = "default"

    @pytest.fixture
    def store(self) -> Iterator[DjangoStore]:
        if self.alias not in ALIASES:
            pytest.skip("no PostgreSQL configured for this run")
        made = DjangoStore(self.alias, clock=Clock())
        yield made
        made.close()
        end_other_sessions(self.alias)

    def test_an_endpoint_is_one_row(self, store: DjangoStore) -> None:
        assert store.add_endpoint("shop_1", SECRET)
        store.clock.now += 10  # type: ignore[attr-defined]
        assert store.rotate_endpoint("shop_1", NEXT, 60)
        row = WebhookEndpoint.objects.using(self.alias).get()
        assert (row.name, row.enabled) == ("shop_1", True)
        assert row.created_at == datetime.fromtimestamp(T0, timezone.utc)
        assert row.updated_at == datetime.fromtimestamp(T0 + 10, timezone.utc)
        assert json.loads(row.secrets) == [
            {"secret": NEXT, "valid_until": None},
            {"secret": SECRET, "valid_until": T0 + 70},
        ]
        assert SECRET not in str(row)

    def test_naive_times_when_use_tz_is_off(self, store: DjangoStore, settings: object) -> None:
        settings.USE_TZ = False  # type: ignore[attr-defined]
        settings.TIME_ZONE = "America/New_York"  # type: ignore[attr-defined]
        assert store.add_endpoint("shop_1", SECRET)
        found = store.get_endpoint("shop_1")
        assert found is not None
        assert found.created_at == pytest.approx(T0)

    def test_a_missing_table_says_to_migrate(self, store: DjangoStore) -> None:
        table = connections[self.alias].ops.quote_name(WebhookEndpoint._meta.db_table)
        with connections[self.alias].cursor() as cursor:
            cursor.execute(f"ALTER TABLE {table} RENAME TO iverton_endpoints_away")
        try:
            with pytest.raises(StoreUnavailable, match="migrate"):
                store.get_endpoint("shop_1")
            with pytest.raises(StoreUnavailable, match="migrate"):
                store.rotate_endpoint("shop_1", NEXT, 60)
        finally:
            with connections[self.alias].cursor() as cursor:
                cursor.execute(f"ALTER TABLE iverton_endpoints_away RENAME TO {table}")


@db_mark("default")
class TestDjangoEndpointsOnSQLite(DjangoEndpoints):
    alias = "default"


@db_mark("postgres")
@pytest.mark.postgres
class TestDjangoEndpointsOnPostgres(DjangoEndpoints):
    alias = "postgres"


@pytest.mark.django_db(transaction=True)
def test_the_admin_never_shows_a_secret_whole(admin_client: Client) -> None:
    store = DjangoStore("default", clock=Clock())
    assert store.add_endpoint("shop_\x1b[31m", SECRET)
    assert store.rotate_endpoint("shop_\x1b[31m", NEXT, 3600)
    row = WebhookEndpoint.objects.get()
    pages = [
        admin_client.get(ENDPOINTS),
        admin_client.get(f"{ENDPOINTS}{row.pk}/change/"),
        admin_client.get(f"{ENDPOINTS}{row.pk}/delete/"),
        admin_client.get(f"{ENDPOINTS}?q=shop"),
    ]
    assert [page.status_code for page in pages] == [200] * len(pages)
    for page in pages:
        text = page.content.decode()
        for secret in (SECRET, NEXT):
            assert secret not in text
            assert secret[:7] not in text
        assert "\x1b" not in text
    listing = pages[0].content.decode()
    assert "shop_\\x1b[31m" in listing
    assert "whsec_… current; whsec_… until 2027-01-15T09:00:00.250000+00:00" in listing
    # Secrets are typed into password fields that render no value.
    assert 'name="secret"' in admin_client.get(f"{ENDPOINTS}add/").content.decode()


@pytest.mark.django_db(transaction=True)
def test_the_admin_shows_any_grace_period(admin_client: Client) -> None:
    store = DjangoStore("default", clock=Clock())
    assert store.add_endpoint("shop_1", SECRET)
    assert store.rotate_endpoint("shop_1", NEXT, 1e300)  # past what a datetime holds
    page = admin_client.get(ENDPOINTS)
    assert page.status_code == 200
    assert "whsec_… until 1e+300" in page.content.decode()
