"""The store going wrong under the receiver: 503, never a half-written event."""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from iverton_webhooks import Receiver, Router, SQLiteStore, Status, StoreUnavailable
from iverton_webhooks.samples import sample_body, sample_event
from tests.conftest import SECRET, signed_headers


def post(receiver: Receiver, body: bytes) -> int:
    return receiver.receive("POST", body, signed_headers(body)).status


def handled() -> Router:
    router = Router()
    router.on("*")(lambda event: None)
    return router


def test_held_exclusive_lock_gives_503_then_recovers(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    store = SQLiteStore(path, timeout=0.2)
    receiver = Receiver(SECRET, router=handled(), store=store, runner="inline")
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        assert post(receiver, sample_body("deal.won", id="evt_locked")) == 503
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert receiver.store.get("evt_locked") is None
    # The sender retries: now it goes through, exactly once.
    assert post(receiver, sample_body("deal.won", id="evt_locked")) == 200
    assert receiver.store.get("evt_locked").status is Status.DONE  # type: ignore[union-attr]


def test_read_only_connection_gives_503_and_writes_nothing(tmp_path: Path) -> None:
    # Works as root too: SQLite's own read-only mode refuses every write.
    path = tmp_path / "ro.db"
    SQLiteStore(path).close()

    class ReadOnlyStore(SQLiteStore):
        def _connect(self) -> sqlite3.Connection:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None)
            return conn

    receiver = Receiver(SECRET, store=ReadOnlyStore(path), runner="inline")
    assert post(receiver, sample_body("deal.won", id="evt_ro")) == 503
    assert SQLiteStore(path).count() == 0


def test_database_deleted_from_under_a_running_receiver_gives_503(tmp_path: Path) -> None:
    path = tmp_path / "gone" / "inbox.db"
    store = SQLiteStore(path)
    receiver = Receiver(SECRET, store=store, runner="inline")
    assert post(receiver, sample_body("deal.won")) == 200
    store._conn.execute("DROP TABLE iverton_events")
    assert post(receiver, sample_body("deal.won")) == 503


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_pruning_keeps_dedupe_within_retention_and_forgets_after(tmp_path: Path) -> None:
    clock, router, runs = Clock(), Router(), []
    router.on("*")(lambda event: runs.append(event.id))
    receiver = Receiver(
        SECRET,
        router=router,
        store=SQLiteStore(tmp_path / "prune.db", clock=clock),
        runner="inline",
        retention=timedelta(days=7),
    )
    body = sample_body("deal.won", id="evt_prune")
    assert post(receiver, body) == 200
    real_now = clock.now
    clock.now = real_now + timedelta(days=2).total_seconds()  # the sender's last retry, and more
    assert receiver.store.prune(clock.now - receiver.processor.retention.total_seconds()) == 0
    assert post(receiver, body) == 200
    assert runs == ["evt_prune"]  # still a duplicate

    clock.now = real_now + timedelta(days=8).total_seconds()
    assert receiver.store.prune(clock.now - receiver.processor.retention.total_seconds()) == 1
    assert post(receiver, body) == 200
    assert runs == ["evt_prune", "evt_prune"]  # forgotten: a replayed capture would run again


def test_max_age_refuses_a_replayed_capture_after_its_id_was_pruned(tmp_path: Path) -> None:
    receiver = Receiver(
        SECRET,
        store=SQLiteStore(tmp_path / "age.db"),
        runner="inline",
        retention=timedelta(days=7),
        max_age=timedelta(days=3),
    )
    captured = json.dumps(sample_event("deal.won", created_at="2026-01-01T00:00:00Z")).encode()
    reply = receiver.receive("POST", captured, signed_headers(captured))
    # Answered (the sender must not count it as a failure) but neither recorded nor run.
    assert (reply.status, json.loads(reply.body)) == (200, {"status": "expired"})
    assert receiver.store.count() == 0


def test_a_row_sqlite_holds_but_python_cannot_read_is_quarantined_by_recover(
    tmp_path: Path,
) -> None:
    # Wave 1: every read of such a row raised, so list() and the worker stopped on it.
    store = SQLiteStore(tmp_path / "poisoned.db")
    now = time.time()
    store._conn.execute(
        "INSERT INTO iverton_events (endpoint, id, type, created_at, received_at, body, "
        "due_at) VALUES ('default', 'evt_poison', 'deal.won', -1e15, ?, x'7b7d', ?)",
        (now, now),
    )
    runs: list[str] = []
    router = Router()
    router.on("*")(lambda event: runs.append(event.id))
    receiver = Receiver(SECRET, router=router, store=store, runner="inline")
    assert post(receiver, sample_body("deal.won", id="evt_fine")) == 200
    receiver.recover()
    assert runs == ["evt_fine"]
    listed = {event.id: event for event in store.list()}
    assert listed["evt_fine"].status is Status.DONE
    assert listed["evt_poison"].status is Status.QUARANTINED
    assert listed["evt_poison"].unreadable
    assert store.due() == []


def test_a_directory_that_cannot_be_made_raises_store_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    with pytest.raises(StoreUnavailable) as raised:
        SQLiteStore(blocker / "inbox.sqlite3")  # its "directory" is a file
    assert isinstance(raised.value.__cause__, OSError)


def test_a_read_only_database_raises_store_unavailable_not_the_driver_error(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ro.db"
    SQLiteStore(path).close()

    class ReadOnlyStore(SQLiteStore):
        def _connect(self) -> sqlite3.Connection:
            return sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None)

    store = ReadOnlyStore(path)
    with pytest.raises(StoreUnavailable, match="readonly") as raised:
        store.record("evt_ro", "deal.won", datetime.now(timezone.utc), b"{}")
    assert isinstance(raised.value.__cause__, sqlite3.OperationalError)
    assert store.count() == 0  # reading still works
    store.close()


def test_a_held_lock_raises_store_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    store = SQLiteStore(path, timeout=0.1)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreUnavailable, match="locked"):
            store.record("evt_locked", "deal.won", datetime.now(timezone.utc), b"{}")
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert store.record("evt_locked", "deal.won", datetime.now(timezone.utc), b"{}") is True
    store.close()
