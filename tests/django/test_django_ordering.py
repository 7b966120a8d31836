"""Newest-only handlers on DjangoStore (SQLite and PostgreSQL): the interleavings of
tests/test_newest_only.py, each worker thread on its own connection, and the admin
showing a superseded outcome."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import connections
from django.test import Client
from hypothesis import HealthCheck, given, settings

from iverton_webhooks import Router
from iverton_webhooks._processor import Processor
from iverton_webhooks.contrib.django.endpoint import fresh_connections
from iverton_webhooks.contrib.django.models import WebhookEvent
from iverton_webhooks.contrib.django.store import DjangoStore
from iverton_webhooks.events import parse_envelope
from tests.django.dj_helpers import ALIASES, db_mark
from tests.django.test_django_store import end_other_sessions
from tests.ordering_checks import Delivery, SkewedClock, Workers, deliveries, delivery


class Interleaved:
    alias = "default"

    @pytest.fixture
    def workers(self) -> Iterator[tuple[Workers, SkewedClock]]:
        if self.alias not in ALIASES:
            pytest.skip("no PostgreSQL configured for this run")
        clock = SkewedClock()
        store = DjangoStore(self.alias, clock=clock)
        made = Workers(store, process_context=fresh_connections)
        yield made, clock
        made.close()
        store.close()
        connections.close_all()
        end_other_sessions(self.alias)

    @settings(
        max_examples=8,
        deadline=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.differing_executors,  # one test body, run once per database
        ],
    )
    @given(plan=deliveries())
    def test_every_resource_ends_at_its_newest_event(
        self, workers: tuple[Workers, SkewedClock], plan: list[Delivery]
    ) -> None:
        found, clock = workers
        found.run(clock, plan)


@db_mark("default")
class TestOnSQLite(Interleaved):
    alias = "default"


@db_mark("postgres")
@pytest.mark.postgres
class TestOnPostgres(Interleaved):
    alias = "postgres"


@pytest.mark.django_db(transaction=True)
def test_the_admin_shows_a_superseded_outcome(admin_client: Client) -> None:
    router = Router()
    router.add(lambda event: None, "deal.updated", name="sync_deal", newest_only=True)
    store = DjangoStore("default")
    processor = Processor(store, router)
    older = delivery(0, 1)
    for sent in (delivery(0, 5), older):  # the older one arrives last
        envelope = parse_envelope(sent.body)
        store.record(sent.event_id, envelope.type, envelope.created_at, sent.body)
        processor.process(sent.event_id)
    processor.close()
    row = WebhookEvent.objects.get(event_id=older.event_id)
    assert row.status == "done"
    assert row.outcomes["sync_deal"]["superseded"] is True
    page = admin_client.get(f"/admin/iverton_webhooks/webhookevent/{row.pk}/change/")
    assert page.status_code == 200
    assert "<td>sync_deal</td><td>superseded</td>" in page.content.decode()
