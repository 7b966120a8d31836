"""SQLiteStore's writers in several processes (gunicorn workers) queue on a lock file
beside the database instead of polling in SQLite's busy handler (issue 15)."""

from __future__ import annotations

import os
import threading
from datetime import datetime, timezone
from pathlib import Path

from iverton_webhooks import SQLiteStore
from tests.lock_holders import free_for_another_process, held_by_another_process, release

CREATED = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_a_write_waits_while_another_process_holds_the_lock_file(tmp_path: Path) -> None:
    path = tmp_path / "inbox.sqlite3"
    store = SQLiteStore(path)
    lock_file = f"{os.path.abspath(path)}.iverton-lock"
    outcome: list[object] = []

    def record() -> None:
        try:
            outcome.append(store.record("evt_waits", "deal.won", CREATED, b"{}"))
        except BaseException as exc:
            outcome.append(exc)

    with held_by_another_process(lock_file) as holder:
        thread = threading.Thread(target=record, daemon=True)
        thread.start()
        thread.join(0.5)
        assert outcome == []  # queued behind the other process: no error, no answer yet
        assert store.get("evt_waits") is None  # reads do not wait
        release(holder)
        thread.join(15)
    assert outcome == [True]
    assert store.get("evt_waits") is not None
    assert free_for_another_process(lock_file)  # given back after the write
    store.close()
