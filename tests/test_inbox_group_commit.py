"""SQLiteStore group commit (issue 15): concurrent inserts of one process share one
transaction, and each insert is committed before its ``record`` returns."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from iverton_webhooks import SQLiteStore
from iverton_webhooks.inbox.sqlite import _Waiter

CREATED = datetime(2026, 1, 1, tzinfo=timezone.utc)


class TracedStore(SQLiteStore):
    """Records every write statement, to count the transactions."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.statements: list[str] = []
        super().__init__(*args, **kwargs)

    def _execute(self, statement: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        self.statements.append(statement.split()[0])
        return super()._execute(statement, params)


def test_concurrent_inserts_share_one_commit(tmp_path: Path) -> None:
    path = tmp_path / "inbox.sqlite3"
    store = TracedStore(path)
    store.record("evt_warm", "deal.won", CREATED, b"{}")
    # Another connection holds the write lock: the first insert waits for it, and the
    # ones arriving meanwhile queue behind it in this process.
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    results: dict[str, bool] = {}

    def record(event_id: str) -> None:
        results[event_id] = store.record(event_id, "deal.won", CREATED, b"{}")

    threads = [threading.Thread(target=record, args=(f"evt_{n}",)) for n in range(8)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while len(store._queue) < 7 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(store._queue) == 7  # one leads (waiting for the lock), seven wait for it
    assert results == {}  # nothing acknowledged while the database is locked
    blocker.execute("COMMIT")
    for thread in threads:
        thread.join(10)
    assert results == {f"evt_{n}": True for n in range(8)}
    # The leader's insert alone, then one transaction for the seven that queued.
    assert store.statements.count("BEGIN") == 1
    assert store.statements.count("INSERT") == 1 + 8
    assert store.count() == 9
    # Duplicates inside a group are counted, not inserted.
    assert store.record("evt_3", "deal.won", CREATED, b"{}") is False
    store.close()
    blocker.close()


def test_a_failing_group_fails_no_other_insert(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "inbox.sqlite3")
    good = {
        "endpoint": "default",
        "id": "evt_ok",
        "type": "deal.won",
        "created_at": 0.0,
        "received_at": 0.0,
        "body": b"{}",
    }
    # A row naming a column that does not exist fails the group's transaction; the
    # good row is then inserted on its own.
    waiters = [_Waiter(good), _Waiter({"nonexistent": 1})]
    store._insert_group(waiters)
    assert waiters[0].result() is True
    assert isinstance(waiters[1].error, sqlite3.OperationalError)
    assert store.get("evt_ok") is not None
    store.close()


CHILD = """
import sys, threading
from datetime import datetime, timezone
from iverton_webhooks import SQLiteStore
from iverton_webhooks.inbox.sqlite import _Waiter
store = SQLiteStore(sys.argv[1])
created = datetime(2026, 1, 1, tzinfo=timezone.utc)
lock = threading.Lock()
def work(t):
    n = 0
    while True:
        event_id = f"evt_{t}_{n}"
        if store.record(event_id, "deal.won", created, b'{"data": {}}'):
            with lock:
                sys.stdout.write(event_id + "\\n")
                sys.stdout.flush()
        n += 1
for t in range(16):
    threading.Thread(target=work, args=(t,), daemon=True).start()
threading.Event().wait()
"""


def test_every_acknowledged_insert_survives_sigkill(tmp_path: Path) -> None:
    """16 threads record concurrently (so in groups); each id is printed only after its
    ``record`` returned. SIGKILL mid-stream: every printed id is in the file."""
    path = tmp_path / "inbox.sqlite3"
    SQLiteStore(path).close()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert child.stdout is not None
    acked: list[str] = []
    deadline = time.monotonic() + 30
    while len(acked) < 3000 and time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        acked.append(line.strip())
    os.kill(child.pid, signal.SIGKILL)
    child.wait(10)
    # Lines already written by the child before it died were acknowledged too.
    acked += [line.strip() for line in child.stdout.read().splitlines() if line.strip()]
    assert len(acked) >= 1000
    conn = sqlite3.connect(path)
    stored = {row[0] for row in conn.execute("SELECT id FROM iverton_events")}
    conn.close()
    assert set(acked) <= stored
