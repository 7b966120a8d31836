"""The store contract, run against every store: the worker's guarantees rest on it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from iverton_webhooks import SQLiteStore, Status, Store
from iverton_webhooks.inbox.base import HandlerOutcome
from tests.stores import STORE_PARAMS, STORES

CREATED = datetime(2024, 1, 15, 10, 30, tzinfo=timezone.utc)


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=STORE_PARAMS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with STORES[request.param](tmp_path, Clock()) as made:
        yield made


def tick(store: Store, seconds: float) -> None:
    store.clock.now += seconds  # type: ignore[attr-defined]


def record(store: Store, event_id: str = "evt_1", body: bytes = b"{}") -> bool:
    return store.record(event_id, "deal.won", CREATED, body)


def test_record_is_insert_if_absent_and_counts_deliveries(store: Store) -> None:
    assert record(store, body=b"first") is True
    assert record(store, body=b"second") is False
    event = store.get("evt_1")
    assert event is not None
    assert (event.body, event.deliveries, event.status) == (b"first", 2, Status.PENDING)
    assert event.created_at == CREATED
    assert store.count() == 1


def test_only_one_claim_at_a_time_and_lease_expiry_frees_it(store: Store) -> None:
    record(store)
    first = store.claim("evt_1", lease_seconds=30)
    assert first is not None
    assert first.event.attempts == 1
    assert store.claim("evt_1", lease_seconds=30) is None
    assert store.due() == []
    tick(store, 31)
    assert store.due() == ["evt_1"]
    second = store.claim("evt_1", lease_seconds=30)
    assert second is not None
    assert second.event.attempts == 2
    # The first worker woke up late: its token no longer counts.
    assert store.complete(first, {"h": HandlerOutcome(ok=True)}) is False
    assert store.complete(second, {"h": HandlerOutcome(ok=True)}) is True
    assert store.get("evt_1").status is Status.DONE  # type: ignore[union-attr]


def test_unknown_and_finished_events_are_not_claimable(store: Store) -> None:
    assert store.claim("evt_missing", 30) is None
    record(store)
    claim = store.claim("evt_1", 30)
    assert claim is not None
    store.complete(claim, {})
    tick(store, 3600)
    assert store.claim("evt_1", 30) is None
    assert store.due() == []


def test_outcomes_merge_across_checkpoint_fail_and_retry(store: Store) -> None:
    record(store)
    claim = store.claim("evt_1", 30)
    assert claim is not None
    assert store.checkpoint(claim, {"a": HandlerOutcome(ok=True, at=1.0)})
    assert store.fail(
        claim, {"b": HandlerOutcome(ok=False, error="boom")}, "b: boom", store.clock() + 100.0
    )
    failed = store.get("evt_1")
    assert failed is not None
    assert failed.status is Status.FAILED
    assert failed.succeeded_handlers == {"a"}
    assert failed.outcomes["b"].error == "boom"
    assert failed.last_error == "b: boom"
    assert store.claim("evt_1", 30) is None  # not due yet
    tick(store, 101)
    retry = store.claim("evt_1", 30)
    assert retry is not None
    assert retry.event.succeeded_handlers == {"a"}
    assert store.complete(retry, {"b": HandlerOutcome(ok=True)})
    done = store.get("evt_1")
    assert done is not None
    assert done.succeeded_handlers == {"a", "b"}
    assert done.last_error is None
    assert done.processed_at is not None


def test_dead_replay_and_resolve(store: Store) -> None:
    record(store, "evt_dead")
    record(store, "evt_other")
    claim = store.claim("evt_dead", 30)
    assert claim is not None
    store.fail(claim, {"a": HandlerOutcome(ok=True), "b": HandlerOutcome(ok=False)}, "b", None)
    assert [e.id for e in store.list(status="dead")] == ["evt_dead"]
    assert "evt_dead" not in store.due()
    assert store.replay("evt_other") is False  # pending: nothing to replay
    assert store.replay("evt_dead") is True
    replayed = store.get("evt_dead")
    assert replayed is not None
    assert (replayed.status, replayed.attempts) == (Status.PENDING, 0)
    assert replayed.succeeded_handlers == {"a"}
    assert "evt_dead" in store.due()
    claim = store.claim("evt_dead", 30)
    assert claim is not None
    store.fail(claim, {}, "still broken", None)
    assert store.resolve("evt_dead") is True
    assert store.get("evt_dead").status is Status.DONE  # type: ignore[union-attr]
    assert store.resolve("evt_other") is False
    assert store.replay("evt_dead", rerun_all=True) is True
    assert store.get("evt_dead").outcomes == {}  # type: ignore[union-attr]


def test_list_filters_newest_first(store: Store) -> None:
    for n in range(5):
        store.record(f"evt_{n}", "deal.won" if n % 2 else "contact.created", CREATED, b"{}")
        tick(store, 1)
    assert [e.id for e in store.list()] == ["evt_4", "evt_3", "evt_2", "evt_1", "evt_0"]
    assert [e.id for e in store.list(event_type="deal.won")] == ["evt_3", "evt_1"]
    assert [e.id for e in store.list(status=Status.PENDING, limit=2)] == ["evt_4", "evt_3"]
    assert store.list(status="done") == []


def test_prune_deletes_only_finished_events_received_before_the_cutoff(store: Store) -> None:
    for event_id in ("evt_old_done", "evt_old_pending", "evt_new_done"):
        record(store, event_id)
        if event_id.endswith("done"):
            claim = store.claim(event_id, 30)
            assert claim is not None
            store.complete(claim, {})
        if event_id == "evt_old_pending":
            tick(store, 1000)
    cutoff = store.clock() - 500
    assert store.prune(cutoff) == 1
    assert store.get("evt_old_done") is None
    assert store.get("evt_old_pending") is not None
    assert store.get("evt_new_done") is not None
    assert record(store, "evt_old_done") is True  # forgotten ids are new again


def test_concurrent_records_of_one_id_store_it_once(store: Store) -> None:
    results: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        for n in range(200):
            outcome = store.record(f"evt_{n}", "deal.won", CREATED, b"{}")
            with lock:
                results.append(outcome)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results.count(True) == 200
    assert len(results) == 800
    assert store.count() == 200
    assert {e.deliveries for e in store.list(limit=1000)} == {4}


def test_sqlite_file_is_in_wal_mode_and_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "inbox.sqlite3"
    first = SQLiteStore(path)
    first.record("evt_keep", "deal.won", CREATED, b'{"k":1}')
    first.close()
    again = SQLiteStore(path)
    assert again.get("evt_keep").body == b'{"k":1}'  # type: ignore[union-attr]
    assert again._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    again.close()


def test_a_later_success_replaces_an_earlier_failure_entirely(store: Store) -> None:
    record(store)
    claim = store.claim("evt_1", 30)
    assert claim is not None
    store.fail(claim, {"h": HandlerOutcome(ok=False, error="boom", at=1.0)}, "boom", store.clock())
    claim = store.claim("evt_1", 30)
    assert claim is not None
    store.complete(claim, {"h": HandlerOutcome(ok=True, at=2.0)})
    assert store.get("evt_1").outcomes == {"h": HandlerOutcome(ok=True, at=2.0)}  # type: ignore[union-attr]


def test_an_in_memory_sqlite_inbox_is_refused() -> None:
    from iverton_webhooks import ConfigurationError

    with pytest.raises(ConfigurationError, match="MemoryStore"):
        SQLiteStore(":memory:")
