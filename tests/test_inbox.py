"""The store contract (iverton_webhooks.store_contract) run against the embedded stores,
plus what is specific to SQLite: its file, its schema versions and its write-ahead log."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from iverton_webhooks import ConfigurationError, SQLiteStore, Status, Store
from iverton_webhooks.inbox.base import Verdict, new_row
from iverton_webhooks.inbox.memory import MemoryStore
from iverton_webhooks.inbox.sqlite import SCHEMA_VERSION
from iverton_webhooks.store_contract import ContractClock, StoreContract
from tests.stores import check_wave1_events_kept

CREATED = datetime(2024, 1, 15, 10, 30, tzinfo=timezone.utc)
#: What the write-ahead log may grow to: SQLite's checkpoint interval (1,000 pages of
#: 4 KiB) plus the commits that arrive while a checkpoint runs.
WAL_BOUND = 6 * 1024 * 1024


class TestMemoryStore(StoreContract):
    def make_store(self, clock: ContractClock, tmp_path: Path) -> Store:
        return MemoryStore(clock=clock)

    def write_unreadable_row(self, store: Store, event_id: str) -> None:
        assert isinstance(store, MemoryStore)
        row = new_row(
            endpoint="default",
            event_id=event_id,
            event_type="deal.won",
            created_at=1e20,  # far past what a datetime can hold
            body=b"{}",
            now=store.clock(),
        )
        store._rows[("default", event_id)] = {**row, "outcomes": {}}


class TestSQLiteStore(StoreContract):
    def make_store(self, clock: ContractClock, tmp_path: Path) -> Store:
        return SQLiteStore(tmp_path / "inbox.sqlite3", clock=clock)

    def make_unreachable_store(self, clock: ContractClock, tmp_path: Path) -> Store:
        # A store whose file became something SQLite cannot open (a directory), as a
        # volume unmounted or replaced under a running app leaves it.
        path = tmp_path / "gone.sqlite3"
        store = SQLiteStore(path, clock=clock)
        store.close()
        for leftover in tmp_path.glob("gone.sqlite3*"):
            leftover.unlink()
        path.mkdir()
        return store

    def write_unreadable_row(self, store: Store, event_id: str) -> None:
        assert isinstance(store, SQLiteStore)
        now = store.clock()
        # A created_at no datetime can hold, as a buggy or foreign writer might leave.
        store._conn.execute(
            "INSERT INTO iverton_events (endpoint, id, type, created_at, received_at, body, "
            "due_at) VALUES ('default', ?, 'deal.won', 1e20, ?, x'7b7d', ?)",
            (event_id, now, now),
        )


def test_sqlite_file_is_in_wal_mode_and_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "inbox.sqlite3"
    first = SQLiteStore(path)
    first.record("evt_keep", "deal.won", CREATED, b'{"k":1}')
    first.close()
    again = SQLiteStore(path)
    assert again.get("evt_keep").body == b'{"k":1}'  # type: ignore[union-attr]
    assert again._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert again._conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    again.close()


def test_an_in_memory_sqlite_inbox_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="MemoryStore"):
        SQLiteStore(":memory:")


# The wave-1 schema (commit 1b12079), as its SQLiteStore created it.
WAVE1_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS iverton_events (
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    created_at REAL NOT NULL,
    received_at REAL NOT NULL,
    body BLOB NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    deliveries INTEGER NOT NULL DEFAULT 1,
    due_at REAL,
    next_attempt_at REAL,
    lease_until REAL,
    lease_token TEXT,
    processed_at REAL,
    last_error TEXT,
    outcomes TEXT
);
CREATE INDEX IF NOT EXISTS iverton_events_due ON iverton_events (due_at)
    WHERE status IN ('pending', 'failed', 'processing');
"""


def test_a_wave1_sqlite_inbox_is_upgraded_and_keeps_its_events(tmp_path: Path) -> None:
    path = tmp_path / "wave1.sqlite3"
    received = time.time()
    old = sqlite3.connect(path, isolation_level=None)
    old.execute("PRAGMA journal_mode=WAL")
    old.executescript(WAVE1_SQLITE_SCHEMA)
    # As wave 1's record() and complete() wrote them.
    for event_id in ("evt_old_1", "evt_old_2", "evt_old_done"):
        old.execute(
            "INSERT OR IGNORE INTO iverton_events "
            "(id, type, created_at, received_at, body, due_at) VALUES (?, ?, ?, ?, ?, ?)",
            (event_id, "deal.won", CREATED.timestamp(), received, b'{"k":1}', received),
        )
    old.execute(
        "UPDATE iverton_events SET status = 'done', outcomes = json_patch(coalesce(outcomes, "
        "'{}'), ?), processed_at = ?, due_at = NULL WHERE id = 'evt_old_done'",
        ('{"h":{"ok":true,"error":"","at":1.0}}', received),
    )
    old.close()

    # Several processes open the old file at once: one upgrades, the others wait for it.
    opened: list[SQLiteStore] = []
    threads = [threading.Thread(target=lambda: opened.append(SQLiteStore(path))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(opened) == 3
    store = opened[0]
    check_wave1_events_kept(store)
    assert store._conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    for each in opened:
        each.close()


def test_sqlite_due_queries_use_the_due_index_which_holds_only_unfinished_events(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(tmp_path / "due.sqlite3")
    for event_id in ("evt_a", "evt_b", "evt_c"):
        store.record(event_id, "deal.won", CREATED, b"{}")
    claim = store.claim("evt_a", 30.0)
    assert claim is not None
    store.finish(claim, {}, Verdict(Status.DONE))
    statements: list[str] = []
    store._conn.set_trace_callback(statements.append)
    assert sorted(store.due(10)) == ["evt_b", "evt_c"]
    assert store.oldest_due() is not None
    store._conn.set_trace_callback(None)
    reads = [sql for sql in statements if sql.lstrip().upper().startswith("SELECT")]
    assert len(reads) == 2
    for sql in reads:
        plan = store._conn.execute("EXPLAIN QUERY PLAN " + sql).fetchall()
        assert any("iverton_events_due" in step[-1] for step in plan), (sql, plan)
    indexed = store._conn.execute(
        "SELECT id FROM iverton_events INDEXED BY iverton_events_due "
        "WHERE endpoint = 'default' AND due_at IS NOT NULL ORDER BY id"
    ).fetchall()
    assert indexed == [("evt_b",), ("evt_c",)]
    store.close()


def test_sqlite_checkpoints_on_its_own_default_unless_told(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "default.sqlite3")
    assert store._conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
    store.close()
    given = SQLiteStore(tmp_path / "given.sqlite3", wal_pages=500)
    assert given._conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 500
    given.close()


def test_sqlite_wal_file_stays_within_a_few_megabytes(tmp_path: Path) -> None:
    path = tmp_path / "wal.sqlite3"
    store = SQLiteStore(path)
    body = b'{"data":"' + b"x" * 400 + b'"}'
    largest = 0
    for n in range(4000):
        store.record(f"evt_{n}", "deal.won", CREATED, body)
        if n % 100 == 0:
            largest = max(largest, os.path.getsize(f"{path}-wal"))
    largest = max(largest, os.path.getsize(f"{path}-wal"))
    store.close()
    # Checkpointing every 10,000 pages instead, this run grows the WAL past 20 MB.
    assert largest <= WAL_BOUND, f"the WAL reached {largest / 1e6:.1f} MB"


def test_sqlite_row_with_unparseable_outcomes_is_listed_and_can_be_quarantined(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(tmp_path / "bad.sqlite3")
    store.record("evt_bad", "deal.won", CREATED, b"{}")
    store.record("evt_ok", "deal.won", CREATED, b"{}")
    store._conn.execute("UPDATE iverton_events SET outcomes = 'not json' WHERE id = 'evt_bad'")
    assert {e.id: bool(e.unreadable) for e in store.list()} == {"evt_bad": True, "evt_ok": False}
    claim = store.claim("evt_bad", 30)
    assert claim is not None
    assert claim.event.unreadable
    assert store.finish(claim, {}, Verdict(Status.QUARANTINED, claim.event.unreadable))
    assert store.due() == ["evt_ok"]
    assert store.stats() == {Status.QUARANTINED: 1, Status.PENDING: 1}
    store.close()
