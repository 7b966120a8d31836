"""The store contract (iverton_webhooks.store_contract) run against the embedded stores,
plus what is specific to SQLite: its file, its schema versions and its write-ahead log."""

from __future__ import annotations

from pathlib import Path

from iverton_webhooks import SQLiteStore, Store
from iverton_webhooks.inbox.base import new_row
from iverton_webhooks.inbox.memory import MemoryStore
from iverton_webhooks.store_contract import ContractClock, StoreContract


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

    def write_unreadable_row(self, store: Store, event_id: str) -> None:
        assert isinstance(store, SQLiteStore)
        now = store.clock()
        # A created_at no datetime can hold, as a buggy or foreign writer might leave.
        store._conn.execute(
            "INSERT INTO iverton_events (endpoint, id, type, created_at, received_at, body, "
            "due_at) VALUES ('default', ?, 'deal.won', 1e20, ?, x'7b7d', ?)",
            (event_id, now, now),
        )
