"""DjangoStore passes the shared store contract (``iverton_webhooks.store_contract``) on
SQLite and on a real PostgreSQL server, plus what is particular to Django: plain rows,
USE_TZ off, NUL-safe text columns, concurrent claims from threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from django.db import DatabaseError, connections

from iverton_webhooks import Status, Store
from iverton_webhooks._errors import StoreUnavailable
from iverton_webhooks.contrib.django import store as store_module
from iverton_webhooks.contrib.django.endpoint import fresh_connections
from iverton_webhooks.contrib.django.models import WebhookEvent
from iverton_webhooks.contrib.django.store import DjangoStore
from iverton_webhooks.inbox.base import HandlerOutcome, Verdict
from iverton_webhooks.store_contract import ContractClock, StoreContract
from tests.django.dj_helpers import ALIASES, db_mark

CREATED = datetime(2024, 1, 15, 10, 30, tzinfo=timezone.utc)

# Each database param flushes only its own database, and only this app's table.
DATABASE_PARAMS = [
    pytest.param("default", id="sqlite", marks=db_mark("default")),
    pytest.param("postgres", id="postgres", marks=[pytest.mark.postgres, db_mark("postgres")]),
]


class DjangoContract(StoreContract):
    """The contract on one database alias, flushed by pytest-django after each test."""

    alias = "default"

    def make_store(self, clock: ContractClock, tmp_path: Path) -> Store:
        if self.alias not in ALIASES:
            pytest.skip("no PostgreSQL configured for this run")
        return DjangoStore(self.alias, clock=clock)

    def cleanup_store(self, store: Store) -> None:
        store.close()
        end_other_sessions(self.alias)

    def write_unreadable_row(self, store: Store, event_id: str) -> None:
        # A time past year 9999, as a wave-1 receiver could store from a signed
        # "9999-12-31T23:59:59-14:00": the database holds it, Python cannot.
        store.record(event_id, "deal.won", CREATED, b"{}")
        connection = connections[self.alias]
        table = connection.ops.quote_name(WebhookEvent._meta.db_table)
        cast = "::timestamptz" if connection.vendor == "postgresql" else ""
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET created_at = %s{cast} WHERE event_id = %s",
                ["10000-01-01 13:59:59+00:00", event_id],
            )


@db_mark("default")
class TestDjangoStoreOnSQLite(DjangoContract):
    alias = "default"


@db_mark("postgres")
@pytest.mark.postgres
class TestDjangoStoreOnPostgres(DjangoContract):
    alias = "postgres"


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


# Values at the edge of what the envelope accepts (issue 11 item 6) -----------------


def test_nul_in_the_resource_id_does_not_refuse_the_event(store: DjangoStore) -> None:
    body = b'{"id": "evt_nul", "data": {"id": "deal\\u0000_1"}}'
    assert store.record("evt_nul", "deal.won", CREATED, body) is True
    assert row(store, "evt_nul").resource_id == "deal\\x00_1"
    event = store.get("evt_nul")
    assert event is not None
    assert event.body == body


def test_nul_in_errors_and_outcomes_is_kept(store: DjangoStore) -> None:
    store.record("evt_1", "deal.won", CREATED, b"{}")
    claim = store.claim("evt_1", 30)
    assert claim is not None
    outcomes = {"h": HandlerOutcome(ok=False, error="bad \x00 byte")}
    assert store.finish(claim, outcomes, Verdict(Status.DEAD, "h: bad \x00 byte")) is True
    event = store.get("evt_1")
    assert event is not None
    assert event.last_error == "h: bad \x00 byte"
    assert event.outcomes["h"].error == "bad \x00 byte"
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
    assert (quarantined.type, quarantined.last_error) == ("x\x00y", "NUL \x00 in body")


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


@db_mark("default")
def test_concurrent_writers_on_sqlite_never_meet_in_the_busy_handler() -> None:
    # Issue 15: requests and worker threads of one process queue on the store's write
    # lock instead of SQLite's busy handler (sleeps up to 100 ms a try). With no busy
    # wait allowed at all (busy_timeout 0), any two of this process's writers meeting in
    # SQLite would fail at once with "database is locked".
    if connections["default"].vendor != "sqlite":
        pytest.skip("the write lock is for SQLite")
    store = DjangoStore("default")
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work(n: int) -> None:
        with fresh_connections():
            connection = connections["default"]
            connection.ensure_connection()
            connection.connection.execute("PRAGMA busy_timeout = 0")
            start.wait(10)
            try:
                for k in range(25):
                    event_id = f"evt_{n}_{k}"
                    store.record(event_id, "deal.won", CREATED, b"{}")
                    store.record(event_id, "deal.won", CREATED, b"{}")
                    claim = store.claim(event_id, 30)
                    assert claim is not None
                    outcome = {"h": HandlerOutcome(ok=True, at=1.0)}
                    assert store.finish(claim, outcome, Verdict(Status.DONE))
            except BaseException as exc:
                errors.append(exc)
        for connection in connections.all(initialized_only=True):
            connection.close()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert store.stats() == {Status.DONE: 200}


@db_mark("default")
def test_the_write_lock_is_not_taken_inside_an_atomic_block() -> None:
    from django.db import transaction

    from iverton_webhooks.contrib.django import store as store_module

    if connections["default"].vendor != "sqlite":
        pytest.skip("the write lock is for SQLite")
    store = DjangoStore("default")
    store.record("evt_first", "deal.won", CREATED, b"{}")
    lock = store_module._write_lock("default")
    held: list[bool] = []
    # Another thread holds the lock: a write inside an atomic block must not wait for
    # it (its transaction may hold SQLite's lock that thread waits for).
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            taken.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert taken.wait(10)
        with transaction.atomic(using="default"):
            held.append(store.record("evt_in_atomic", "deal.won", CREATED, b"{}"))
    finally:
        release.set()
        holder.join(10)
    assert held == [True]


def test_a_claim_whose_row_cannot_be_read_gives_its_lease_back(
    store: DjangoStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Where an UPDATE returns no rows, the lease is taken in one statement and the row
    # read in the next: if the read fails, the event must be claimable again at once,
    # not when the lease runs out.
    store.record("evt_unread", "deal.won", CREATED, b"{}")

    def broken(sql: str, params: object) -> object:
        raise DatabaseError("connection lost")

    with monkeypatch.context() as patch:
        patch.setattr(store_module, "_returns_rows", lambda connection: False)
        patch.setattr(store, "_read", broken)
        with pytest.raises(StoreUnavailable):
            store.claim("evt_unread", 300.0)
    claim = store.claim("evt_unread", 300.0)
    assert claim is not None
    assert claim.event.attempts == 2


def test_where_sql_cannot_merge_outcomes_a_finish_reads_merges_and_writes_back(
    store: DjangoStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Databases other than SQLite and PostgreSQL: outcomes are merged in Python, and the
    # lease still guards both statements.
    monkeypatch.setattr(store_module, "_MERGE_OUTCOMES", {})
    monkeypatch.setattr(store_module, "_returns_rows", lambda connection: False)
    store.record("evt_merged", "deal.won", CREATED, b"{}")
    claim = store.claim("evt_merged", 300.0)
    assert claim is not None
    assert store.checkpoint(claim, {"a": HandlerOutcome(ok=True, at=1.0)})
    failed = {"b": HandlerOutcome(ok=False, error="boom", at=2.0)}
    assert store.finish(claim, failed, Verdict(Status.FAILED, "b: boom", retry_at=9.0))
    assert not store.finish(claim, failed, Verdict(Status.DONE))  # the lease is gone
    event = store.get("evt_merged")
    assert event is not None
    assert event.status is Status.FAILED
    assert event.outcomes == {"a": HandlerOutcome(ok=True, at=1.0), **failed}
