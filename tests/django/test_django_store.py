"""DjangoStore passes the same store contract as the SQLite and memory stores
(tests/test_inbox.py and tests/test_worker.py, imported and run here), on SQLite and on
a real PostgreSQL server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest
from django.db import connections

from iverton_webhooks import Status, Store
from iverton_webhooks.contrib.django.endpoint import fresh_connections
from iverton_webhooks.contrib.django.store import DjangoStore
from tests.django.dj_helpers import db_mark

# The contract itself: every test takes a ``store`` fixture, defined below for Django.
from tests.test_inbox import (  # noqa: F401
    Clock,
    test_a_later_success_replaces_an_earlier_failure_entirely,
    test_concurrent_records_of_one_id_store_it_once,
    test_dead_replay_and_resolve,
    test_list_filters_newest_first,
    test_only_one_claim_at_a_time_and_lease_expiry_frees_it,
    test_outcomes_merge_across_checkpoint_fail_and_retry,
    test_prune_deletes_only_finished_events_received_before_the_cutoff,
    test_record_is_insert_if_absent_and_counts_deliveries,
    test_unknown_and_finished_events_are_not_claimable,
)
from tests.test_worker import (  # noqa: F401
    test_a_worker_that_died_holding_the_lease_is_recovered_after_expiry,
    test_always_failing_handler_goes_dead_then_replay_brings_it_back,
    test_fails_twice_then_succeeds_reruns_only_the_failing_handler,
    test_poison_event_that_kills_every_worker_goes_dead,
    test_retry_waits_for_its_backoff,
    test_slow_worker_that_lost_its_lease_does_not_overwrite,
)

# Each database param flushes only its own database, and only this app's table.
DATABASE_PARAMS = [
    pytest.param("default", id="sqlite", marks=db_mark("default")),
    pytest.param("postgres", id="postgres", marks=[pytest.mark.postgres, db_mark("postgres")]),
]


@pytest.fixture(params=DATABASE_PARAMS)
def using(request: pytest.FixtureRequest) -> str:
    alias: str = request.param
    if alias not in connections:
        pytest.skip("no PostgreSQL configured for this run")
    return alias


@pytest.fixture
def store(request: pytest.FixtureRequest, using: str) -> Iterator[Store]:
    # The inbox contract drives a fake clock; the worker tests run on real time.
    fake = "test_inbox" in request.node.function.__module__
    made = DjangoStore(using, clock=Clock() if fake else time.time)
    assert isinstance(made, Store)
    yield made
    made.close()
    if connections[using].vendor == "postgresql":
        # Threads of the contract's concurrency test leave sessions open: end them, so
        # the test database can be dropped.
        with connections[using].cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )


def test_rows_are_plain_django_rows(store: DjangoStore) -> None:
    created = datetime(2024, 1, 15, 10, 30, tzinfo=timezone.utc)
    store.record("evt_row", "deal.won", created, b'{"data": {"id": "deal_9"}}')
    from iverton_webhooks.contrib.django.models import WebhookEvent

    row = WebhookEvent.objects.using(store.using).get(event_id="evt_row")
    assert (row.status, row.resource_id, row.created_at) == ("pending", "deal_9", created)
    assert store.get("evt_row").status is Status.PENDING  # type: ignore[union-attr]


def test_naive_datetimes_when_use_tz_is_off(store: DjangoStore, settings: object) -> None:
    settings.USE_TZ = False  # type: ignore[attr-defined]
    created = datetime(2024, 1, 15, 10, 30, tzinfo=timezone.utc)
    store.record("evt_naive", "deal.won", created, b"{}")
    event = store.get("evt_naive")
    assert event is not None
    assert event.created_at == created
    assert abs(event.received_at.timestamp() - time.time()) < 60


def test_concurrent_claims_of_one_event_give_one_lease(store: DjangoStore) -> None:
    store.record("evt_race", "deal.won", datetime.now(timezone.utc), b"{}")
    winners: list[str] = []
    start = threading.Barrier(4)

    def claim() -> None:
        with fresh_connections():
            start.wait(10)
            claimed = store.claim("evt_race", 30)
            if claimed is not None:
                winners.append(claimed.token)
        for connection in connections.all(initialized_only=True):
            connection.close()

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(winners) == 1
