"""DjangoStore on the v2 store protocol, on SQLite and on a real PostgreSQL server: the
endpoint scoping, the new statuses, values at the edge of what the envelope accepts,
and what is particular to Django (plain rows, USE_TZ off, concurrent claims)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest
from django.db import connections

from iverton_webhooks import Status, Store
from iverton_webhooks.contrib.django.endpoint import fresh_connections
from iverton_webhooks.contrib.django.models import WebhookEvent
from iverton_webhooks.contrib.django.store import DjangoStore
from iverton_webhooks.inbox.base import HandlerOutcome, Verdict
from tests.django.dj_helpers import db_mark

CREATED = datetime(2024, 1, 15, 10, 30, tzinfo=timezone.utc)

# Each database param flushes only its own database, and only this app's table.
DATABASE_PARAMS = [
    pytest.param("default", id="sqlite", marks=db_mark("default")),
    pytest.param("postgres", id="postgres", marks=[pytest.mark.postgres, db_mark("postgres")]),
]


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def end_other_sessions(using: str) -> None:
    """Threads leave PostgreSQL sessions open: end them, so the test database can be
    dropped at the end of the run."""
    if connections[using].vendor == "postgresql":
        with connections[using].cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )


@pytest.fixture(params=DATABASE_PARAMS)
def using(request: pytest.FixtureRequest) -> str:
    alias: str = request.param
    if alias not in connections:
        pytest.skip("no PostgreSQL configured for this run")
    return alias


@pytest.fixture
def store(using: str) -> Iterator[DjangoStore]:
    made = DjangoStore(using, clock=Clock())
    assert isinstance(made, Store)
    yield made
    made.close()
    end_other_sessions(using)


def tick(store: DjangoStore, seconds: float) -> None:
    store.clock.now += seconds  # type: ignore[attr-defined]


def row(store: DjangoStore, event_id: str, endpoint: str = "default") -> WebhookEvent:
    return WebhookEvent.objects.using(store.using).get(event_id=event_id, endpoint=endpoint)


def test_rows_are_plain_django_rows(store: DjangoStore) -> None:
    store.record("evt_row", "deal.won", CREATED, b'{"data": {"id": "deal_9"}}')
    found = row(store, "evt_row")
    assert (found.status, found.resource_id, found.created_at) == ("pending", "deal_9", CREATED)
    assert (found.endpoint, found.type) == ("default", "deal.won")
    event = store.get("evt_row")
    assert event is not None
    assert (event.status, event.endpoint, event.unreadable) == (Status.PENDING, "default", None)


def test_naive_datetimes_when_use_tz_is_off(store: DjangoStore, settings: object) -> None:
    settings.USE_TZ = False  # type: ignore[attr-defined]
    settings.TIME_ZONE = "America/New_York"  # type: ignore[attr-defined]
    store.clock = time.time
    store.record("evt_naive", "deal.won", CREATED, b"{}")
    event = store.get("evt_naive")
    assert event is not None
    assert event.created_at == CREATED
    assert abs(event.received_at.timestamp() - time.time()) < 60


def test_one_id_is_a_separate_event_per_endpoint(store: DjangoStore) -> None:
    assert store.record("evt_1", "deal.won", CREATED, b"a", endpoint="crm") is True
    assert store.record("evt_1", "deal.won", CREATED, b"b", endpoint="billing") is True
    assert store.record("evt_1", "deal.won", CREATED, b"c", endpoint="crm") is False
    crm, billing = store.get("evt_1", endpoint="crm"), store.get("evt_1", endpoint="billing")
    assert crm is not None
    assert billing is not None
    assert (crm.body, crm.deliveries, crm.endpoint) == (b"a", 2, "crm")
    assert (billing.body, billing.deliveries, billing.endpoint) == (b"b", 1, "billing")
    assert store.get("evt_1") is None  # the default endpoint has no such event
    assert (store.count(), store.count(endpoint="crm"), store.count(endpoint="default")) == (
        2,
        1,
        0,
    )


def test_every_operation_is_scoped_by_endpoint(store: DjangoStore) -> None:
    store.record("evt_a", "deal.won", CREATED, b"{}", endpoint="a")
    store.record("evt_b", "deal.won", CREATED, b"{}", endpoint="b")
    assert store.due() == []
    assert store.due(endpoint="a") == ["evt_a"]
    assert store.claim("evt_a", 30, endpoint="b") is None
    assert store.claim("evt_a", 30) is None
    claim = store.claim("evt_a", 30, endpoint="a")
    assert claim is not None
    assert claim.event.endpoint == "a"
    assert store.finish(claim, {}, Verdict(Status.UNHANDLED)) is True
    assert [e.id for e in store.list(endpoint="a")] == ["evt_a"]
    assert [e.id for e in store.list()] == []
    assert {e.id for e in store.list(endpoint=None)} == {"evt_a", "evt_b"}
    assert store.stats(endpoint="a") == {Status.UNHANDLED: 1}
    assert store.stats(endpoint=None) == {Status.UNHANDLED: 1, Status.PENDING: 1}
    assert store.stats() == {}
    assert store.replay("evt_a", endpoint="b") is False
    assert store.resolve("evt_a") is False
    assert store.resolve("evt_a", endpoint="a") is True
    tick(store, 10)
    assert store.prune(store.clock(), endpoint="b") == 0
    assert store.prune(store.clock()) == 1  # every endpoint by default
    assert store.count() == 1


def test_lease_renew_and_lost_lease(store: DjangoStore) -> None:
    store.record("evt_1", "deal.won", CREATED, b"{}")
    first = store.claim("evt_1", 30)
    assert first is not None
    assert first.event.attempts == 1
    assert store.claim("evt_1", 30) is None
    tick(store, 20)
    assert store.renew(first, 30) is True
    tick(store, 20)
    assert store.due() == []  # renewed: still held
    tick(store, 11)
    assert store.due() == ["evt_1"]
    second = store.claim("evt_1", 30)
    assert second is not None
    assert second.event.attempts == 2
    assert store.renew(first, 30) is False
    assert store.checkpoint(first, {"h": HandlerOutcome(ok=True)}) is False
    assert store.finish(first, {}, Verdict(Status.DONE)) is False
    assert store.finish(second, {"h": HandlerOutcome(ok=True, at=1.0)}, Verdict(Status.DONE))
    event = store.get("evt_1")
    assert event is not None
    assert (event.status, event.succeeded_handlers) == (Status.DONE, frozenset({"h"}))
    assert event.processed_at is not None
    assert event.lease_until is None


def test_failed_retries_then_dead_then_replay_keeps_successes(store: DjangoStore) -> None:
    store.record("evt_1", "deal.won", CREATED, b"{}")
    claim = store.claim("evt_1", 30)
    assert claim is not None
    outcomes = {"ok": HandlerOutcome(ok=True), "bad": HandlerOutcome(ok=False, error="boom")}
    store.checkpoint(claim, {"ok": HandlerOutcome(ok=True)})
    verdict = Verdict.after_attempt(
        outcomes, matched=True, attempts=1, max_attempts=2, retry_at=store.clock() + 60
    )
    assert store.finish(claim, outcomes, verdict) is True
    failed = store.get("evt_1")
    assert failed is not None
    assert (failed.status, failed.last_error) == (Status.FAILED, "bad: boom")
    assert failed.next_attempt_at is not None
    assert store.claim("evt_1", 30) is None  # waits for its backoff
    tick(store, 61)
    claim = store.claim("evt_1", 30)
    assert claim is not None
    verdict = Verdict.after_attempt(
        outcomes, matched=True, attempts=2, max_attempts=2, retry_at=store.clock() + 60
    )
    store.finish(claim, {"bad": outcomes["bad"]}, verdict)
    dead = store.get("evt_1")
    assert dead is not None
    assert dead.status is Status.DEAD
    assert store.due() == []
    assert store.replay("evt_1") is True
    again = store.get("evt_1")
    assert again is not None
    assert (again.status, again.attempts) == (Status.PENDING, 0)
    assert again.succeeded_handlers == frozenset({"ok"})
    assert store.replay("evt_1") is False  # pending is not replayable
    claim = store.claim("evt_1", 30)
    assert claim is not None
    store.finish(claim, {}, Verdict(Status.DEAD, "x"))
    assert store.replay("evt_1", rerun_all=True) is True
    cleared = store.get("evt_1")
    assert cleared is not None
    assert cleared.outcomes == {}


def test_quarantined_events_are_recorded_finished_and_replayable(store: DjangoStore) -> None:
    body = b"not json \x00 at all"
    assert store.record(
        "sha256:abc", "", CREATED, body, status=Status.QUARANTINED, error="not JSON"
    )
    event = store.get("sha256:abc")
    assert event is not None
    assert (event.status, event.last_error, event.body) == (Status.QUARANTINED, "not JSON", body)
    assert event.processed_at is not None
    assert store.due() == []
    assert store.claim("sha256:abc", 30) is None
    assert store.stats() == {Status.QUARANTINED: 1}
    assert [e.id for e in store.list(status="quarantined")] == ["sha256:abc"]
    assert store.replay("sha256:abc") is True
    assert store.due() == ["sha256:abc"]


def test_unhandled_and_quarantined_can_be_resolved_pending_cannot(store: DjangoStore) -> None:
    store.record("evt_q", "x", CREATED, b"{", status=Status.QUARANTINED, error="bad")
    store.record("evt_p", "deal.won", CREATED, b"{}")
    store.record("evt_u", "new.type", CREATED, b"{}")
    claim = store.claim("evt_u", 30)
    assert claim is not None
    store.finish(claim, {}, Verdict(Status.UNHANDLED))
    assert store.resolve("evt_q") is True
    assert store.resolve("evt_u") is True
    assert store.resolve("evt_p") is False
    assert store.stats() == {Status.DONE: 2, Status.PENDING: 1}


def test_prune_deletes_only_finished_events(store: DjangoStore) -> None:
    for event_id in ("evt_done", "evt_unhandled", "evt_pending", "evt_failed"):
        store.record(event_id, "deal.won", CREATED, b"{}")
    store.record("evt_q", "", CREATED, b"{", status=Status.QUARANTINED, error="bad")
    verdicts = {
        "evt_done": Verdict(Status.DONE),
        "evt_unhandled": Verdict(Status.UNHANDLED),
        "evt_failed": Verdict(Status.FAILED, "boom", store.clock() + 999),
    }
    for event_id, verdict in verdicts.items():
        claim = store.claim(event_id, 30)
        assert claim is not None
        store.finish(claim, {}, verdict)
    assert store.prune(store.clock() - 1) == 0  # received after the cutoff
    tick(store, 10)
    assert store.prune(store.clock()) == 3
    assert {e.id for e in store.list(endpoint=None)} == {"evt_pending", "evt_failed"}


# Values at the edge of what the envelope accepts (issue 11 item 6) -----------------


def test_a_255_character_type_is_stored(store: DjangoStore) -> None:
    long_type = "deal." + "x" * 250
    assert store.record("evt_long", long_type, CREATED, b"{}") is True
    event = store.get("evt_long")
    assert event is not None
    assert event.type == long_type
    assert store.record("a" * 255, "deal.won", CREATED, b"{}") is True


def test_nul_in_the_resource_id_does_not_refuse_the_event(store: DjangoStore) -> None:
    body = b'{"id": "evt_nul", "data": {"id": "deal\\u0000_1"}}'
    assert store.record("evt_nul", "deal.won", CREATED, body) is True
    assert row(store, "evt_nul").resource_id == "deal\\x00_1"
    event = store.get("evt_nul")
    assert event is not None
    assert event.body == body


def test_nul_in_errors_and_outcomes_is_stored_escaped(store: DjangoStore) -> None:
    store.record("evt_1", "deal.won", CREATED, b"{}")
    claim = store.claim("evt_1", 30)
    assert claim is not None
    outcomes = {"h": HandlerOutcome(ok=False, error="bad \x00 byte")}
    assert store.finish(claim, outcomes, Verdict(Status.DEAD, "h: bad \x00 byte")) is True
    event = store.get("evt_1")
    assert event is not None
    assert event.last_error == "h: bad \\x00 byte"
    assert event.outcomes["h"].error == "bad \\x00 byte"
    assert (
        store.record(
            "sha256:1",
            "x\x00y",
            CREATED,
            b"\x00",
            status=Status.QUARANTINED,
            error="NUL \x00 in body",
        )
        is True
    )
    quarantined = store.get("sha256:1")
    assert quarantined is not None
    assert (quarantined.type, quarantined.last_error) == ("x\\x00y", "NUL \\x00 in body")


def test_an_unknown_status_in_a_row_is_shown_quarantined(store: DjangoStore) -> None:
    store.record("evt_1", "deal.won", CREATED, b"{}")
    WebhookEvent.objects.using(store.using).filter(event_id="evt_1").update(status="from_v9")
    event = store.get("evt_1")
    assert event is not None
    assert event.status is Status.QUARANTINED
    assert event.unreadable
    assert [e.id for e in store.list()] == ["evt_1"]
    assert store.stats() == {Status.QUARANTINED: 1}


def test_concurrent_claims_of_one_event_give_one_lease(store: DjangoStore) -> None:
    store.clock = time.time
    store.record("evt_race", "deal.won", CREATED, b"{}")
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


def test_concurrent_records_of_one_id_store_it_once(store: DjangoStore) -> None:
    results: list[bool] = []
    start = threading.Barrier(4)

    def record() -> None:
        start.wait(10)
        results.append(store.record("evt_storm", "deal.won", CREATED, b"{}"))
        for connection in connections.all(initialized_only=True):
            connection.close()

    threads = [threading.Thread(target=record) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(results) == [False, False, False, True]
    event = store.get("evt_storm")
    assert event is not None
    assert event.deliveries == 4
